//! What the eBPF policy tests share: a scratch cgroup (`kpb-…`) with its policy removed on drop,
//! running programs inside it, the test programs (static C, io_uring C, static Go) built once per
//! test binary, and the read-back lines they print.
#![allow(dead_code)] // each test file uses its own part

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use testkit::is_static;

use crate::common;

/// The unified (cgroup2) hierarchy: /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid system.
pub fn unified_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if mounts.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let separator = fields.iter().position(|field| *field == "-");
            fields.get(4) == Some(&root)
                && separator.and_then(|at| fields.get(at + 1)) == Some(&"cgroup2")
        }) {
            return PathBuf::from(root);
        }
    }
    panic!(
        "no cgroup2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified: the eBPF policy needs it"
    );
}

/// A cgroup of its own; on drop its policy is detached, its processes killed, and it is removed.
pub struct TestCgroup {
    pub path: PathBuf,
}

impl TestCgroup {
    pub fn new(tag: &str) -> Self {
        Self::with_prefix("kpb", tag)
    }

    /// Like `new`, named `PREFIX-tag-…` (the review tests use their own prefix, `kpbr`).
    pub fn with_prefix(prefix: &str, tag: &str) -> Self {
        common::require_root("cgroups and eBPF programs");
        let path = unified_root().join(format!(
            "{prefix}-{tag}-{}-{}",
            std::process::id(),
            testkit::unique()
        ));
        std::fs::create_dir(&path)
            .unwrap_or_else(|error| panic!("create {}: {error}", path.display()));
        Self { path }
    }

    /// `bpf attach --cgroup` with these variables in its environment and these options.
    pub fn attach(&self, variables: &[(&str, &str)], options: &[&str]) -> Output {
        let mut command = keepalive();
        command.args(["bpf", "attach", "--cgroup"]).arg(&self.path);
        command.args(options);
        for (name, value) in variables {
            command.env(name, value);
        }
        common::capture(&mut command)
    }

    /// Attaches and asserts it worked.
    pub fn attach_ok(&self, variables: &[(&str, &str)], options: &[&str]) {
        let output = self.attach(variables, options);
        assert_eq!(
            common::code(&output),
            0,
            "bpf attach failed: {}{}",
            common::stdout(&output),
            common::stderr(&output)
        );
    }

    pub fn detach(&self) -> Output {
        common::capture(
            keepalive()
                .args(["bpf", "detach", "--cgroup"])
                .arg(&self.path),
        )
    }

    /// `program args…` started inside this cgroup (the shell joins it, then execs).
    pub fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg("echo 0 > \"$1/cgroup.procs\" && shift && exec \"$@\"")
            .arg("sh")
            .arg(&self.path)
            .arg(program)
            .args(args);
        command
    }

    /// `sock serve ADDR PORT COUNT …` inside the cgroup, once it listens; `finish` collects
    /// its read-back lines after the connections were made.
    pub fn serve(&self, args: &[&str]) -> Server {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        let mut child = self
            .command(sock(), &all)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "listening");
        Server { child, stdout }
    }

    /// Runs a program inside the cgroup and returns its read-back lines.
    pub fn run(&self, program: &Path, args: &[&str]) -> Vec<Readback> {
        readbacks(&run_ok(&mut self.command(program, args)))
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = self.detach();
        for _ in 0..50 {
            if let Ok(procs) = std::fs::read_to_string(self.path.join("cgroup.procs")) {
                for pid in procs.split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            if std::fs::remove_dir(&self.path).is_ok() || !self.path.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// A `sock serve` running in a cgroup.
pub struct Server {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Server {
    /// Waits for it to accept its connections and exit; its read-back lines.
    pub fn finish(mut self) -> Vec<Readback> {
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        assert!(self.child.wait().unwrap().success(), "{rest}");
        readbacks(&rest)
    }
}

/// Waits (up to 10 s) until something accepts connections at `address`.
pub fn wait_for_listener(address: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(address).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {address}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The command with none of the variables in its environment.
pub fn keepalive() -> Command {
    common::command()
}

pub fn run_ok(command: &mut Command) -> String {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// One socket as a test program prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readback {
    pub role: String,
    pub peer: String,
    /// Each setsockopt's result, before and after connect (`pre/post`).
    pub calls: String,
    /// keepalive, idle, intvl, cnt, user timeout
    pub values: [i32; 5],
}

pub fn readbacks(text: &str) -> Vec<Readback> {
    text.lines()
        .filter(|line| line.starts_with("role="))
        .map(|line| {
            let fields: HashMap<&str, &str> = line
                .split_whitespace()
                .filter_map(|field| field.split_once('='))
                .collect();
            let int = |name: &str| -> i32 {
                fields
                    .get(name)
                    .and_then(|value| value.parse().ok())
                    .unwrap_or_else(|| panic!("no {name} in {line:?}"))
            };
            Readback {
                role: fields["role"].to_owned(),
                peer: fields.get("peer").copied().unwrap_or("-").to_owned(),
                calls: fields.get("calls").copied().unwrap_or("-").to_owned(),
                values: [
                    int("keepalive"),
                    int("idle"),
                    int("intvl"),
                    int("cnt"),
                    int("uto"),
                ],
            }
        })
        .collect()
}

/// The dead-peer policy: 2/1/3 and a 3 s user timeout, the program's values overridden.
pub const DEAD_PEER_POLICY: [(&str, &str); 5] = [
    ("KEEPIDLE", "2"),
    ("KEEPINTVL", "1"),
    ("KEEPCNT", "3"),
    ("KEEPALIVE_USER_TIMEOUT", "3s"),
    ("KEEPALIVE_OVERRIDE", "yes"),
];

/// Values that make `tighten` keep some of a program's 30/10/3 and replace others: idle 2,
/// interval 20, count 5, user timeout 3000 ms, under the override policy `name`.
pub fn mixed_policy(name: &str) -> [(&str, &str); 5] {
    [
        ("KEEPIDLE", "2"),
        ("KEEPINTVL", "20"),
        ("KEEPCNT", "5"),
        ("KEEPALIVE_USER_TIMEOUT", "3000"),
        ("KEEPALIVE_OVERRIDE", name),
    ]
}

/// What a socket nobody configured reads back (Linux's defaults; the tests assume the sysctls
/// are not changed on the test machine).
pub const DEFAULTS: [i32; 5] = [0, 7200, 75, 9, 0];

/// A port of this test binary's share of 43000-43999 that was free a moment ago.
pub fn port(first: u16, last: u16) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    for _ in first..=last {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % (last - first + 1);
        let port = first + offset;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {first}-{last}");
}

/// A listener outside every test cgroup that accepts and holds whatever connects.
pub struct Peer {
    pub port: u16,
}

impl Peer {
    pub fn new(address: &str, port: u16) -> Self {
        let listener = TcpListener::bind((address, port))
            .unwrap_or_else(|error| panic!("listen on {address}:{port}: {error}"));
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                held.push(stream);
                if held.len() > 256 {
                    held.remove(0);
                }
            }
        });
        Self { port }
    }
}

/// Where the test programs are built: target/<profile>/kpb-build (rebuilt by every test
/// process, so never stale; nothing left in /tmp).
fn build_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = testkit::profile_dir().join("kpb-build");
        std::fs::create_dir_all(&dir).expect("create build dir");
        dir
    })
}

fn source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/bpf")
        .join(name)
}

fn gcc(name: &str, file: &str, flags: &[&str]) -> PathBuf {
    let out = build_dir().join(name);
    let output = Command::new("gcc")
        .args(["-O1", "-Wall", "-o"])
        .arg(&out)
        .arg(source(file))
        .args(flags)
        .output()
        .expect("gcc is needed (scripts/test installs gcc, libc6-dev and liburing-dev)");
    assert!(
        output.status.success(),
        "gcc {file} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

/// The static C test program (tests/bpf/sock.c).
pub fn sock() -> &'static Path {
    static SOCK: OnceLock<PathBuf> = OnceLock::new();
    SOCK.get_or_init(|| {
        let path = gcc("sock", "sock.c", &["-static"]);
        assert!(is_static(&path), "{} is not static", path.display());
        path
    })
}

/// The setsockopt edge-case program (tests/bpf/edge.c), static.
pub fn edge() -> &'static Path {
    static EDGE: OnceLock<PathBuf> = OnceLock::new();
    EDGE.get_or_init(|| gcc("edge", "edge.c", &["-static"]))
}

/// The io_uring client (tests/bpf/uring.c, liburing-dev).
pub fn uring() -> &'static Path {
    static URING: OnceLock<PathBuf> = OnceLock::new();
    URING.get_or_init(|| gcc("uring", "uring.c", &["-luring"]))
}

/// A Go program of tests/bpf, built static (CGO_ENABLED=0) with the standard library only, the
/// Go caches in a scratch directory, offline.
pub fn go(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let out = build_dir().join(name);
    if built.iter().any(|done| done == name) {
        return out;
    }
    let cache = build_dir().join("go-cache");
    let output = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(source(&format!("{name}.go")))
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", cache.join("build"))
        .env("GOPATH", cache.join("path"))
        .env("GO111MODULE", "off")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("HOME", &cache)
        .output()
        .expect("go is needed (scripts/test installs golang-go)");
    assert!(
        output.status.success(),
        "go build {name}.go failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(is_static(&out), "{} is not static", out.display());
    built.push(name.to_owned());
    out
}

/// `bpf status --json`.
pub fn status() -> serde_json::Value {
    let text = run_ok(keepalive().args(["bpf", "status", "--json"]));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("status JSON {text:?}: {error}"))
}

/// The entry of `bpf status --json` for a cgroup, if any.
pub fn status_of(path: &Path) -> Option<serde_json::Value> {
    status()["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .find(|policy| policy["cgroup"].as_str() == path.to_str())
        .cloned()
}
