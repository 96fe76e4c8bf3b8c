//! Support of `tests/redis_cluster.rs`: start and stop clusters through `scripts/redis-cluster`,
//! read its tab-separated output, and the systemd checks. The library and the command are
//! found (or built) by `testkit`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use testkit::{command, library, require_root, scratch_path, tool};

/// Where the Debian package (and the units) put the library and the command.
pub const INSTALLED_LIBRARY: &str = "/usr/lib/x86_64-linux-gnu/libkeepalive_preload.so";
pub const INSTALLED_COMMAND: &str = "/usr/bin/keepalive-preload";

static SERIAL: Mutex<()> = Mutex::new(());

/// One heavy test at a time; a failed test does not block the others.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn harness_path() -> PathBuf {
    repo().join("scripts").join("redis-cluster")
}

/// Root and the tools of the Redis tests, or a failure that says what is missing.
pub fn require() {
    require_root("network namespaces, iptables, pidfd_getfd of redis-server");
    for (program, package) in [
        ("redis-server", "redis-server"),
        ("redis-cli", "redis-tools"),
        ("redis-benchmark", "redis-tools"),
        ("iptables", "iptables"),
        ("ip", "iproute2"),
    ] {
        tool(program, package);
    }
    let python = Command::new("/usr/bin/python3")
        .args(["-c", "import redis"])
        .status();
    assert!(
        python.is_ok_and(|status| status.success()),
        "/usr/bin/python3 with the redis module is missing: apt-get install python3-redis"
    );
}

/// The harness with `args`, then the cluster's state directory (so `args` end in `--dir`).
pub fn harness(args: &[&str], cluster: &Cluster) -> Command {
    let mut command = harness_command();
    command.args(args).arg(&cluster.dir);
    command
}

fn harness_command() -> Command {
    let mut harness = Command::new(harness_path());
    harness.env("KEEPALIVE_PRELOAD_BIN", command());
    harness
}

/// Runs the command; its stdout, or a panic with everything it printed.
pub fn run_ok(mut command: Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `key=value` lines.
pub fn kv(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The keepalive options of one socket as `keepalive-preload inspect` reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Values {
    pub keepalive: bool,
    pub idle: u32,
    pub interval: u32,
    pub count: u32,
    pub user_timeout_ms: u32,
}

impl Values {
    pub const fn on(idle: u32, interval: u32, count: u32, user_timeout_ms: u32) -> Self {
        Self {
            keepalive: true,
            idle,
            interval,
            count,
            user_timeout_ms,
        }
    }

    /// A socket nobody configured, in a fresh namespace: the kernel's defaults.
    pub const fn off() -> Self {
        Self {
            keepalive: false,
            idle: 7200,
            interval: 75,
            count: 9,
            user_timeout_ms: 0,
        }
    }
}

impl fmt::Display for Values {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "keepalive={} {}/{}/{} user_timeout={}ms",
            if self.keepalive { "on" } else { "off" },
            self.idle,
            self.interval,
            self.count,
            self.user_timeout_ms
        )
    }
}

/// One TCP socket of a node, from `redis-cluster links --format tsv`.
#[derive(Clone, Debug)]
pub struct Link {
    pub node: u32,
    /// bus-in, bus-out, client-in, repl-out, listen-bus, listen-client, other
    pub kind: String,
    pub peer: Option<u32>,
    pub local: String,
    pub remote: Option<String>,
    pub state: String,
    pub values: Option<Values>,
}

fn dash<T: std::str::FromStr>(field: &str) -> Option<T> {
    if field == "-" {
        None
    } else {
        field.parse().ok()
    }
}

fn parse_links(tsv: &str) -> Vec<Link> {
    let mut lines = tsv.lines();
    let header: Vec<&str> = lines.next().expect("links header").split('\t').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
    };
    let (node, kind, peer, local, remote, state) = (
        col("node"),
        col("kind"),
        col("peer"),
        col("local"),
        col("remote"),
        col("state"),
    );
    let (keepalive, idle, interval, count, user_timeout) = (
        col("keepalive"),
        col("idle"),
        col("interval"),
        col("count"),
        col("user_timeout_ms"),
    );
    lines
        .filter(|line| !line.is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let values = match f[keepalive] {
                "-" => None,
                on => Some(Values {
                    keepalive: on == "true",
                    idle: dash(f[idle]).unwrap_or(0),
                    interval: dash(f[interval]).unwrap_or(0),
                    count: dash(f[count]).unwrap_or(0),
                    user_timeout_ms: dash(f[user_timeout]).unwrap_or(0),
                }),
            };
            Link {
                node: f[node].parse().expect("node"),
                kind: f[kind].to_owned(),
                peer: dash(f[peer]),
                local: f[local].to_owned(),
                remote: dash(f[remote]),
                state: f[state].to_owned(),
                values,
            }
        })
        .collect()
}

#[derive(Clone, Debug)]
pub struct Node {
    pub index: u32,
    pub ip: String,
    pub port: u16,
    pub bus_port: u16,
    pub pid: u32,
    pub netns: Option<String>,
    pub hub: Option<String>,
}

fn parse_nodes(tsv: &str) -> Vec<Node> {
    tsv.lines()
        .skip(1)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            Node {
                index: f[0].parse().expect("index"),
                ip: f[1].to_owned(),
                port: f[2].parse().expect("port"),
                bus_port: f[3].parse().expect("bus port"),
                pid: f[4].parse().expect("pid"),
                netns: dash(f[5]),
                hub: dash(f[6]),
            }
        })
        .collect()
}

/// A cluster started by the harness; stopped (and checked gone) by `down`, or on drop.
pub struct Cluster {
    pub dir: PathBuf,
    nodes: Vec<Node>,
    down: bool,
}

impl Cluster {
    /// `redis-cluster up` with `extra` arguments, the library when `with_library`, and `env`.
    pub fn up(name: &str, extra: &[&str], with_library: bool, env: &[String]) -> Self {
        let dir = scratch_path(name);
        let mut command = harness_command();
        command.arg("up").arg("--dir").arg(&dir).args(extra);
        if with_library {
            command.arg("--library").arg(library());
        }
        for var in env {
            command.arg("--env").arg(var);
        }
        let started = Instant::now();
        let out = command.output().expect("run redis-cluster up");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "redis-cluster up {extra:?} failed:\n{stderr}"
        );
        let mut cluster = Cluster {
            dir,
            nodes: Vec::new(),
            down: false,
        };
        cluster.nodes = parse_nodes(&run_ok(harness(&["nodes", "--dir"], &cluster)));
        println!(
            "[{name}] {} in {:.1?}",
            stderr.trim().trim_start_matches("redis-cluster: "),
            started.elapsed()
        );
        cluster
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Every socket of every node with its values, once the bus mesh is complete.
    pub fn links(&self) -> Vec<Link> {
        let links = parse_links(&run_ok(harness(
            &["links", "--format", "tsv", "--wait", "30", "--dir"],
            self,
        )));
        assert!(!links.is_empty(), "no sockets found");
        links
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let log = self
                .dir
                .join(format!("node{}", node.index))
                .join("redis.log");
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("--- node {} ({})\n", node.index, log.display()));
            for line in tail.iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Stops everything and checks that no process and no namespace of it is left.
    pub fn down(mut self) {
        self.down = true;
        run_ok(harness(&["down", "--dir"], &self));
        assert_nothing_left(&self.nodes);
        assert!(!self.dir.exists(), "{} not removed", self.dir.display());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.down {
            return;
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let _ = harness(&["down", "--dir"], self).status();
    }
}

fn process_runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().next() != Some("Z"))
        })
        .unwrap_or(false)
}

fn namespaces() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn assert_nothing_left(nodes: &[Node]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for node in nodes {
        while process_runs(node.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            !process_runs(node.pid),
            "node {} (pid {}) still runs",
            node.index,
            node.pid
        );
    }
    let left = namespaces();
    for name in nodes.iter().flat_map(|n| [&n.netns, &n.hub]).flatten() {
        assert!(!left.contains(name), "namespace {name} not deleted");
    }
}

/// `up --netns` interrupted with SIGINT while it starts nodes: it exits 130 and leaves no
/// process and no namespace behind.
pub fn interrupted_up_leaves_nothing() {
    let dir = scratch_path("interrupted");
    let mut child = harness_command()
        .args(["up", "--netns", "--nodes", "6", "--dir"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start redis-cluster up");
    let cluster = Cluster {
        dir: dir.clone(),
        nodes: Vec::new(),
        down: true,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let nodes = loop {
        let out = harness(&["nodes", "--dir"], &cluster)
            .output()
            .expect("nodes");
        let nodes = parse_nodes(&String::from_utf8_lossy(&out.stdout));
        if nodes.len() >= 2 {
            break nodes;
        }
        assert!(Instant::now() < deadline, "up started no node within 30 s");
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "up ended before it was interrupted"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "up did not end within 30 s of SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().expect("stderr"), &mut stderr)
        .expect("read stderr");
    // It may have finished the whole cluster just before the signal: then it exits 0 and the
    // test tears it down; either way nothing may be left after that.
    if status.success() {
        run_ok(harness(&["down", "--dir"], &cluster));
    } else {
        assert_eq!(status.code(), Some(130), "{stderr}");
        println!(
            "interrupted after {} node(s) started: {}",
            nodes.len(),
            stderr.trim()
        );
    }
    // Namespaces of the nodes not yet started existed too: none with this run's tag is left.
    let tag = nodes[0]
        .hub
        .as_deref()
        .and_then(|hub| hub.strip_suffix("-hub"))
        .expect("hub namespace")
        .to_owned();
    assert_nothing_left(&nodes);
    let left: Vec<String> = namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&tag))
        .collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// systemd

fn unit_dir() -> PathBuf {
    repo().join("systemd")
}

/// `Key=value` assignments of a unit file, continuation lines joined.
fn assignments(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let line = line.trim();
        if pending.is_empty() && (line.starts_with('#') || line.starts_with(';')) {
            continue;
        }
        if let Some(start) = line.strip_suffix('\\') {
            pending.push_str(start);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        if let Some((key, value)) = pending.split_once('=') {
            if !pending.starts_with('[') {
                out.push((key.trim().to_owned(), value.trim().to_owned()));
            }
        }
        pending.clear();
    }
    out
}

fn exec_paths(assigned: &[(String, String)]) -> Vec<String> {
    assigned
        .iter()
        .filter(|(k, _)| k == "ExecPaths")
        .flat_map(|(_, v)| {
            v.split_whitespace()
                .map(|p| p.trim_start_matches('-').to_owned())
        })
        .collect()
}

fn environment(assigned: &[(String, String)]) -> Vec<(String, String)> {
    assigned
        .iter()
        .filter(|(k, _)| k == "Environment")
        .flat_map(|(_, v)| {
            v.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Absolute paths a unit names as programs, the library and exec paths: each exists here or
/// is where the package installs it; and the library lies under an ExecPaths= entry.
fn check_unit_paths(name: &str, assigned: &[(String, String)], base: &[(String, String)]) {
    let mut named = Vec::new();
    for (key, value) in assigned {
        if key.starts_with("Exec") && key != "ExecPaths" {
            let program = value.trim_start_matches(['-', '@', ':', '+', '!']);
            named.push(program.split_whitespace().next().unwrap_or("").to_owned());
        }
    }
    let env = environment(assigned);
    let preload: Vec<String> = env
        .iter()
        .filter(|(k, _)| k == "LD_PRELOAD")
        // ld.so expands $LIB to the multiarch directory (the units name /usr/$LIB/...).
        .map(|(_, v)| v.replace("/$LIB/", "/lib/x86_64-linux-gnu/"))
        .collect();
    assert_eq!(preload, [INSTALLED_LIBRARY], "{name}: LD_PRELOAD");
    named.extend(preload.iter().cloned());
    named.extend(exec_paths(assigned));
    for path in &named {
        assert!(path.starts_with('/'), "{name}: {path} is not absolute");
        assert!(
            Path::new(path).exists() || path == INSTALLED_LIBRARY || path == INSTALLED_COMMAND,
            "{name}: {path} neither exists nor is an installed path of the package"
        );
    }
    assert!(
        named.iter().any(|p| p == INSTALLED_COMMAND),
        "{name}: runs no `keepalive-preload check`"
    );
    // NoExecPaths=/: ld.so ignores a preloaded library outside ExecPaths=.
    let all: Vec<(String, String)> = base.iter().chain(assigned).cloned().collect();
    if all.iter().any(|(k, v)| k == "NoExecPaths" && v == "/") {
        let allowed = exec_paths(&all);
        for lib in &preload {
            assert!(
                allowed
                    .iter()
                    .any(|p| lib == p || lib.starts_with(&format!("{p}/"))),
                "{name}: {lib} is not under ExecPaths {allowed:?}"
            );
        }
    }
    println!("{name}: names {named:?}");
}

fn verify(unit: &Path) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(unit)
        .output()
        .expect("run systemd-analyze verify (apt-get install systemd)")
}

/// The unit and the drop-in (with Debian's redis-server.service) pass `systemd-analyze
/// verify`, and the paths they name are the package's.
pub fn systemd_paths_check() {
    // The package installs exactly where the units look.
    let manifest = std::fs::read_to_string(repo().join("cli/Cargo.toml")).expect("cli/Cargo.toml");
    for path in [INSTALLED_LIBRARY, INSTALLED_COMMAND] {
        assert!(
            manifest.contains(&format!("\"{}\"", &path[1..])),
            "cli/Cargo.toml does not install {path}"
        );
    }
    let debian = Path::new("/lib/systemd/system/redis-server.service");
    let debian_text = std::fs::read_to_string(debian)
        .expect("Debian's redis-server.service (apt-get install redis-server)");
    let cluster_text = std::fs::read_to_string(unit_dir().join("redis-cluster@.service")).unwrap();
    let dropin_text =
        std::fs::read_to_string(unit_dir().join("redis-server.service.d/keepalive-preload.conf"))
            .unwrap();
    check_unit_paths("redis-cluster@.service", &assignments(&cluster_text), &[]);
    check_unit_paths(
        "redis-server.service.d/keepalive-preload.conf",
        &assignments(&dropin_text),
        &assignments(&debian_text),
    );

    // verify checks that programs exist: where the package is not installed, name the built
    // command instead, as scripts/install rewrites the paths for its PREFIX.
    let rewrite = |text: &str| {
        if Path::new(INSTALLED_COMMAND).exists() {
            text.to_owned()
        } else {
            text.replace(INSTALLED_COMMAND, &command().to_string_lossy())
        }
    };
    let tmp = scratch_path("systemd");
    std::fs::create_dir_all(tmp.join("redis-server.service.d")).unwrap();
    std::fs::copy(debian, tmp.join("redis-server.service")).unwrap();
    std::fs::write(tmp.join("redis-cluster@.service"), rewrite(&cluster_text)).unwrap();
    let dropin = tmp.join("redis-server.service.d/keepalive-preload.conf");
    std::fs::write(&dropin, rewrite(&dropin_text)).unwrap();
    for unit in ["redis-server.service", "redis-cluster@7001.service"] {
        let out = verify(&tmp.join(unit));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "systemd-analyze verify {unit}: {}\n{stderr}",
            out.status
        );
        println!("systemd-analyze verify {unit}: ok");
    }
    // The drop-in really was part of that verification: a broken copy fails it.
    std::fs::write(
        &dropin,
        format!("{}\nExecStart=/bin/true\n", rewrite(&dropin_text)),
    )
    .unwrap();
    let out = verify(&tmp.join("redis-server.service"));
    assert!(
        !out.status.success(),
        "verify did not read the drop-in beside the unit"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

fn free_port_pair() -> u16 {
    for port in (19100..19900).step_by(7) {
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10000) {
            return port;
        }
    }
    panic!("no free port pair");
}

/// A flat JSON number or boolean field of one `inspect --json` line.
fn json_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &line[start..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim_matches('"'))
}

/// The unit's ExecStartPre and ExecStart, run by hand with its Environment= (the library and
/// variables), NOTIFY_SOCKET and %i = a free port: `check` passes, redis-server under the
/// library reports READY=1 (Type=notify), and its sockets carry the unit's values.
pub fn unit_exec_start_notifies_ready() {
    let text = std::fs::read_to_string(unit_dir().join("redis-cluster@.service")).unwrap();
    let assigned = assignments(&text);
    let port = free_port_pair();
    let tmp = scratch_path("notify");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut env: Vec<(String, String)> = environment(&assigned);
    for (key, value) in &mut env {
        if key == "LD_PRELOAD" {
            *value = library().to_string_lossy().into_owned();
        }
    }
    let exec_start = &assigned
        .iter()
        .find(|(k, _)| k == "ExecStart")
        .expect("ExecStart")
        .1;
    let state_dir = format!("/var/lib/redis-cluster/{port}");
    let argv: Vec<String> = exec_start
        .replace("%i", &port.to_string())
        .replace(&state_dir, &tmp.to_string_lossy())
        .split_whitespace()
        .filter(|arg| *arg != "$CONFIG")
        .map(str::to_owned)
        .collect();
    assert!(
        argv.windows(2).any(|w| w == ["--supervised", "systemd"])
            && argv.windows(2).any(|w| w == ["--daemonize", "no"]),
        "ExecStart: {argv:?}"
    );

    let clean = |command: &mut Command| {
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    };
    let mut check = Command::new(command());
    check.arg("check");
    clean(&mut check);
    check.envs(env.iter().cloned());
    let checked = run_ok(check);
    println!("ExecStartPre: {}", checked.trim());

    let socket_path = tmp.join("notify.sock");
    let notify = UnixDatagram::bind(&socket_path).expect("bind NOTIFY_SOCKET");
    notify
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut server = Command::new(&argv[0]);
    clean(&mut server);
    // Loopback only in tests; the command line wins over the unit's defaults.
    server
        .args(&argv[1..])
        .args(["--bind", "127.0.0.1", "--save", ""])
        .envs(env.iter().cloned())
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let started = Instant::now();
    let mut child = server.spawn().expect("start redis-server");
    let mut messages = String::new();
    while !messages.contains("READY=1") && started.elapsed() < Duration::from_secs(15) {
        let mut buf = [0u8; 4096];
        if let Ok(n) = notify.recv(&mut buf) {
            messages.push_str(&String::from_utf8_lossy(&buf[..n]));
            messages.push('\n');
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("redis-server exited: {status}; messages: {messages}");
        }
    }
    let ready = started.elapsed();
    let inspect = Command::new(command())
        .args(["inspect", &child.id().to_string(), "--json"])
        .output();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(
        messages.contains("READY=1"),
        "no READY=1 within 15 s: {messages:?}"
    );
    println!("READY=1 after {ready:.2?}");
    let inspect = inspect.expect("keepalive-preload inspect");
    let json = String::from_utf8_lossy(&inspect.stdout);
    let listeners: Vec<&str> = json
        .lines()
        .filter(|line| line.contains("\"LISTEN\""))
        .collect();
    assert!(!listeners.is_empty(), "no listener inspected: {json}");
    let want = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    for line in listeners {
        assert_eq!(json_field(line, "keepalive"), Some("true"), "{line}");
        assert_eq!(json_field(line, "idle"), want("KEEPIDLE"), "{line}");
        assert_eq!(json_field(line, "interval"), want("KEEPINTVL"), "{line}");
        assert_eq!(json_field(line, "count"), want("KEEPCNT"), "{line}");
        let (idle, interval, count): (u32, u32, u32) = (
            want("KEEPIDLE").unwrap().parse().unwrap(),
            want("KEEPINTVL").unwrap().parse().unwrap(),
            want("KEEPCNT").unwrap().parse().unwrap(),
        );
        // KEEPALIVE_USER_TIMEOUT=auto: IDLE + INTVL x CNT seconds.
        if want("KEEPALIVE_USER_TIMEOUT") == Some("auto") {
            let expected = ((idle + interval * count) * 1000).to_string();
            assert_eq!(
                json_field(line, "user_timeout_ms"),
                Some(expected.as_str()),
                "{line}"
            );
        }
    }
}
