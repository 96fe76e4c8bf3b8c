//! End to end: a program started by `run`, read back by `inspect --expect-env` (needs the
//! library itself, and root for inspect).

mod common;

use std::io::{Read as _, Write as _};
use std::process::Command;

use common::*;
use serde_json::json;

/// A listener, a connection to it, and the accepted side set to 30/10/3 by the program itself
/// the way Redis >= 7.0.9 does on its cluster-bus links.
fn redis_pattern() -> serde_json::Value {
    json!([
        {"kind": "listen", "name": "l", "host": "127.0.0.1"},
        {"kind": "connect", "name": "c", "to": "l",
         "accepted_opts": {"keepalive": 1, "idle": 30, "interval": 10, "count": 3}},
        {"kind": "listen", "name": "l6", "host": "::1"},
    ])
}

/// 45/9/4: none of them a kernel default or Redis's own value.
const TIMINGS: [&str; 6] = ["--idle", "45", "--interval", "9", "--count", "4"];

fn run_holder(options: &[&str]) -> Holder {
    let mut command = Command::new(BIN);
    command
        .arg("run")
        .args(options)
        .arg("--library")
        .arg(library())
        .args(["--", python(), "-c", HOLDER])
        .arg(redis_pattern().to_string());
    start_holder(command, &[])
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes; scripts/test runs it"]
fn override_yes_wins_over_the_program_and_inspect_agrees() {
    require_root(INSPECT_NEEDS_ROOT);
    let holder = run_holder(
        &[
            &TIMINGS[..],
            &["--user-timeout", "auto", "--override", "yes"],
        ]
        .concat(),
    );
    let output = inspect(&["--expect-env", "--json", &holder.pid.to_string()]);
    assert_eq!(code(&output), 0, "{}{}", stdout(&output), stderr(&output));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 4);
    for line in &lines {
        assert_eq!(line["library"], true);
        assert_eq!(line["verdict"], "ok", "{line}");
        assert_eq!(
            (
                &line["keepalive"],
                &line["idle"],
                &line["interval"],
                &line["count"],
                &line["user_timeout_ms"]
            ),
            (
                &json!(true),
                &json!(45),
                &json!(9),
                &json!(4),
                &json!((45 + 9 * 4) * 1000)
            ),
            "{line}"
        );
    }
    let table = stdout(&inspect(&["--expect-env", &holder.pid.to_string()]));
    assert!(table.contains("override=yes"), "{table}");
    assert!(
        table.contains("on idle=45s intvl=9s cnt=4 uto=81000ms"),
        "{table}"
    );
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes; scripts/test runs it"]
fn override_no_lets_the_program_win_and_inspect_reports_it() {
    require_root(INSPECT_NEEDS_ROOT);
    let holder = run_holder(&TIMINGS);
    let output = inspect(&["--expect-env", "--json", &holder.pid.to_string()]);
    assert_eq!(code(&output), 0, "{}{}", stdout(&output), stderr(&output));
    let lines = json_lines(&output);
    let accepted = by_fd(&lines, holder.fd("c-accepted"));
    assert_eq!(
        (&accepted["idle"], &accepted["interval"], &accepted["count"]),
        (&json!(30), &json!(10), &json!(3))
    );
    assert_eq!(accepted["verdict"], "ok");
    assert_eq!(
        accepted["differences"],
        json!(["idle", "interval", "count"])
    );
    let client = by_fd(&lines, holder.fd("c"));
    assert_eq!(
        (&client["idle"], &client["differences"]),
        (&json!(45), &json!([]))
    );
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes; scripts/test runs it"]
fn a_port_filter_leaves_other_sockets_alone() {
    require_root(INSPECT_NEEDS_ROOT);
    // Port 1: none of the sockets (ephemeral ports) matches it.
    let holder = run_holder(&["--idle", "45", "--ports", "1"]);
    let output = inspect(&["--expect-env", "--json", &holder.pid.to_string()]);
    assert_eq!(code(&output), 0, "{}", stdout(&output));
    let lines = json_lines(&output);
    for name in ["l", "c", "l6"] {
        let line = by_fd(&lines, holder.fd(name));
        assert_eq!(line["verdict"], "not-targeted", "{line}");
        assert_eq!(
            (&line["keepalive"], &line["idle"]),
            (&json!(false), &json!(7200)),
            "{line}"
        );
    }
}

/// A real redis-server started by `run`, with one client connected (this test): Redis puts
/// tcp-keepalive 300 (300/100/3) on every client link itself, and rewrites its process title,
/// blanking /proc/PID/environ.
struct Redis {
    child: std::process::Child,
    pid: i32,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis(options: &[&str]) -> Redis {
    let server = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .into_iter()
        .find(|path| std::path::Path::new(path).is_file())
        .expect("redis-server is needed (scripts/test installs Debian's redis-server)");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = Command::new(BIN);
    without_variables(&mut command);
    command
        .arg("run")
        .args(options)
        .arg("--library")
        .arg(library())
        .args([
            "--",
            server,
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args([
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            "",
        ])
        .stdout(std::process::Stdio::null());
    let child = command.spawn().expect("start redis-server");
    let pid = child.id() as i32;
    let redis = Redis { child, pid, port };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return redis;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("redis-server did not listen on {port}");
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes; scripts/test runs it"]
fn redis_client_links_under_both_policies() {
    require_root(INSPECT_NEEDS_ROOT);
    for (policy, idle, interval, count) in [("yes", 45, 9, 4), ("no", 300, 100, 3)] {
        let redis = redis(&[&TIMINGS[..], &["--override", policy]].concat());
        let client = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
        let client_port = client.local_addr().unwrap().port();
        // Redis accepts and configures the link in its event loop: a PING answered means done.
        let mut client = client;
        client.write_all(b"PING\r\n").unwrap();
        let mut pong = [0u8; 7];
        client.read_exact(&mut pong).unwrap();
        assert_eq!(&pong, b"+PONG\r\n");
        let output = inspect(&["--expect-env", "--json", &redis.pid.to_string()]);
        assert_eq!(
            code(&output),
            0,
            "{policy}: {}{}",
            stdout(&output),
            stderr(&output)
        );
        let lines = json_lines(&output);
        let link = lines
            .iter()
            .find(|line| line["remote"] == format!("127.0.0.1:{client_port}"))
            .unwrap_or_else(|| panic!("{policy}: no client link in {lines:#?}"));
        assert_eq!(link["program"], "redis-server");
        assert_eq!(link["role"], "accepted");
        assert_eq!(
            (
                &link["keepalive"],
                &link["idle"],
                &link["interval"],
                &link["count"]
            ),
            (&json!(true), &json!(idle), &json!(interval), &json!(count)),
            "{policy}: {link}"
        );
        assert_eq!(
            link["expected"]["idle"], 45,
            "{policy}: read from the live environ: {link}"
        );
        assert_eq!(link["verdict"], "ok");
        let differences = if policy == "no" {
            json!(["idle", "interval", "count"])
        } else {
            json!([])
        };
        assert_eq!(link["differences"], differences, "{policy}");
        drop(client);
    }
}
