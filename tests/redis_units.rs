//! The Redis systemd units of the package: `systemd-analyze verify` of `redis-cluster@.service`
//! and of Debian's `redis-server.service` with our drop-in beside it, the paths they name, and
//! the unit's command line run by hand under the library (READY=1, the unit's values on the
//! listeners, read back by `keepalive-preload inspect`). The units on a real systemd: the
//! `tests/systemd_*.rs`.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{command, library, scratch_path};

/// Where the Debian package (and the units) put the library and the command.
const INSTALLED_LIBRARY: &str = "/usr/lib/x86_64-linux-gnu/libkeepalive_preload.so";
const INSTALLED_COMMAND: &str = "/usr/bin/keepalive-preload";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the command; its stdout, or a panic with everything it printed.
fn run_ok(mut command: Command) -> String {
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
        if let Some((key, value)) = pending.split_once('=')
            && !pending.starts_with('[')
        {
            out.push((key.trim().to_owned(), value.trim().to_owned()));
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
#[test]
fn systemd_units_verify_and_name_installed_paths() {
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

/// The unit's ExecStartPre and ExecStart, run by hand with its Environment= (the library and
/// variables), NOTIFY_SOCKET and %i = a free port: `check` passes, redis-server under the
/// library reports READY=1 (Type=notify), and its sockets carry the unit's values.
#[test]
#[ignore = "needs root: Redis under the unit sandbox; scripts/test runs it"]
fn systemd_unit_command_line_notifies_ready_under_library() {
    let _serial = redis_fixture::serial();
    redis_fixture::require();
    unit_exec_start_notifies_ready();
}

fn unit_exec_start_notifies_ready() {
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
    let sockets = redis_fixture::try_inspect(&command(), &[child.id()]);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(
        messages.contains("READY=1"),
        "no READY=1 within 15 s: {messages:?}"
    );
    println!("READY=1 after {ready:.2?}");
    let sockets = sockets.expect("keepalive-preload inspect");
    let listeners: Vec<&redis_fixture::Socket> =
        sockets.iter().filter(|s| s.state == "LISTEN").collect();
    assert!(!listeners.is_empty(), "no listener inspected: {sockets:?}");
    let want = |key: &str| -> u32 {
        env.iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| panic!("the unit sets no numeric {key}"))
    };
    let (idle, interval, count) = (want("KEEPIDLE"), want("KEEPINTVL"), want("KEEPCNT"));
    // KEEPALIVE_USER_TIMEOUT=auto: IDLE + INTVL x CNT seconds.
    let auto = env
        .iter()
        .any(|(k, v)| k == "KEEPALIVE_USER_TIMEOUT" && v == "auto");
    for socket in listeners {
        let v = socket.values;
        assert!(v.keepalive, "{socket:?}");
        assert_eq!(
            (v.idle, v.interval, v.count),
            (idle, interval, count),
            "{socket:?}"
        );
        if auto {
            assert_eq!(
                v.user_timeout_ms,
                (idle + interval * count) * 1000,
                "{socket:?}"
            );
        }
    }
}
