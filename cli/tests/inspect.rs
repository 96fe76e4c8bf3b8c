//! `inspect` against live processes whose sockets carry known options (set by the processes
//! themselves, so these tests do not depend on the library's behaviour).

mod common;

use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};

use common::*;
use serde_json::{Value, json};

/// Listener with keepalive 30/10/3 (accepted sockets inherit it), a connection to it whose
/// client sets 40/11/4 and a 5000 ms user timeout, an IPv6 listener and an IPv6 connection,
/// and a UDP socket that inspect must leave out.
fn all_on() -> Value {
    let on = json!({"keepalive": 1, "idle": 30, "interval": 10, "count": 3});
    json!([
        {"kind": "listen", "name": "l4", "host": "127.0.0.1", "opts": on},
        {"kind": "connect", "name": "c4", "to": "l4",
         "opts": {"keepalive": 1, "idle": 40, "interval": 11, "count": 4, "user_timeout_ms": 5000}},
        {"kind": "listen", "name": "l6", "host": "::1", "opts": on},
        {"kind": "connect", "name": "c6", "to": "l6", "opts": on},
        {"kind": "udp", "name": "udp"},
    ])
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes; scripts/test runs it"]
fn table_lists_every_tcp_socket_aligned_and_exits_0() {
    require_root(INSPECT_NEEDS_ROOT);
    let holder = holder(&all_on(), &[]);
    let output = inspect(&[&holder.pid.to_string()]);
    let text = stdout(&output);
    assert_eq!(code(&output), 0, "{text}{}", stderr(&output));
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with(&format!("pid {} python3", holder.pid))
            && lines[0].ends_with("libkeepalive_preload not mapped"),
        "{text}"
    );
    let header = lines[1];
    assert!(header.starts_with("FD  STATE"), "{text}");
    // Six TCP sockets (the UDP one is left out), one row each.
    let rows = &lines[2..];
    assert_eq!(rows.len(), 6, "{text}");
    for column in [
        "STATE",
        "LOCAL",
        "REMOTE",
        "KEEPALIVE",
        "IDLE",
        "USER_TIMEOUT",
        "VERDICT",
    ] {
        let at = header.find(column).unwrap();
        for row in rows {
            assert!(
                row.len() > at && row.as_bytes()[at - 1] == b' ' && row.as_bytes()[at] != b' ',
                "column {column} is not aligned:\n{text}"
            );
        }
    }
    let row = |fd: i32| {
        rows.iter()
            .find(|row| row.split_whitespace().next() == Some(&fd.to_string()))
            .unwrap_or_else(|| panic!("no row for fd {fd}:\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    let l4 = format!("127.0.0.1:{}", holder.port("l4"));
    assert_eq!(
        &row(holder.fd("l4"))[1..],
        [
            "LISTEN",
            &l4,
            "-",
            "listening",
            "on",
            "30s",
            "10s",
            "3",
            "0ms",
            "ok"
        ]
    );
    let c4 = row(holder.fd("c4"));
    assert_eq!(
        &c4[1..],
        [
            "ESTABLISHED",
            &format!("127.0.0.1:{}", holder.port("c4")),
            &l4,
            "outgoing",
            "on",
            "40s",
            "11s",
            "4",
            "5000ms",
            "ok"
        ]
    );
    let a4 = row(holder.fd("c4-accepted"));
    assert_eq!(
        &a4[3..],
        [
            format!("127.0.0.1:{}", holder.port("c4")).as_str(),
            "accepted",
            "on",
            "30s",
            "10s",
            "3",
            "0ms",
            "ok"
        ]
    );
    let l6 = row(holder.fd("l6"));
    assert_eq!(l6[2], format!("[::1]:{}", holder.port("l6")));
    assert!(
        !text.contains(&format!("\n{} ", holder.fd("udp"))),
        "{text}"
    );
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes; scripts/test runs it"]
fn json_is_one_object_per_socket_with_the_documented_keys() {
    require_root(INSPECT_NEEDS_ROOT);
    let holder = holder(&all_on(), &[]);
    let output = inspect(&["--json", &holder.pid.to_string()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 6, "{lines:#?}");
    for line in &lines {
        for key in [
            "pid",
            "fd",
            "family",
            "local",
            "remote",
            "state",
            "keepalive",
            "idle",
            "interval",
            "count",
            "user_timeout_ms",
            "library",
            "verdict",
        ] {
            assert!(line.get(key).is_some(), "{key} missing in {line}");
        }
        assert_eq!(line["pid"], holder.pid);
        assert_eq!(line["library"], false);
        assert!(
            line.get("expected").is_none(),
            "expected only with --expect-env: {line}"
        );
    }
    let l4 = by_fd(&lines, holder.fd("l4"));
    assert_eq!(l4["family"], "ipv4");
    assert_eq!(l4["local"], format!("127.0.0.1:{}", holder.port("l4")));
    assert_eq!(l4["remote"], Value::Null);
    assert_eq!(l4["state"], "LISTEN");
    assert_eq!(
        (
            &l4["keepalive"],
            &l4["idle"],
            &l4["interval"],
            &l4["count"],
            &l4["user_timeout_ms"]
        ),
        (&json!(true), &json!(30), &json!(10), &json!(3), &json!(0))
    );
    let c4 = by_fd(&lines, holder.fd("c4"));
    assert_eq!(c4["state"], "ESTABLISHED");
    assert_eq!(c4["remote"], format!("127.0.0.1:{}", holder.port("l4")));
    assert_eq!(
        (
            &c4["idle"],
            &c4["interval"],
            &c4["count"],
            &c4["user_timeout_ms"]
        ),
        (&json!(40), &json!(11), &json!(4), &json!(5000))
    );
    assert_eq!(c4["verdict"], "ok");
    let a6 = by_fd(&lines, holder.fd("c6-accepted"));
    assert_eq!(a6["family"], "ipv6");
    assert_eq!(a6["local"], format!("[::1]:{}", holder.port("l6")));
    assert_eq!(a6["remote"], format!("[::1]:{}", holder.port("c6")));
    assert_eq!(a6["role"], "accepted");
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes; scripts/test runs it"]
fn a_socket_without_keepalive_exits_1() {
    require_root(INSPECT_NEEDS_ROOT);
    let spec = json!([
        {"kind": "listen", "name": "l", "host": "127.0.0.1", "opts": {"keepalive": 1}},
        {"kind": "connect", "name": "c", "to": "l", "opts": {"keepalive": 0}},
    ]);
    let holder = holder(&spec, &[]);
    let output = inspect(&[&holder.pid.to_string()]);
    assert_eq!(code(&output), 1, "{}", stdout(&output));
    let text = stdout(&output);
    let client = text
        .lines()
        .find(|row| row.split_whitespace().next() == Some(&holder.fd("c").to_string()))
        .unwrap();
    assert!(
        client.contains(" off ") && client.ends_with("missing"),
        "{text}"
    );
    let output = inspect(&["--json", &holder.pid.to_string()]);
    assert_eq!(code(&output), 1);
    let lines = json_lines(&output);
    assert_eq!(by_fd(&lines, holder.fd("c"))["verdict"], "missing");
    assert_eq!(by_fd(&lines, holder.fd("c"))["keepalive"], false);
    assert_eq!(by_fd(&lines, holder.fd("c-accepted"))["verdict"], "ok");
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes; scripts/test runs it"]
fn errors_exit_2_with_a_clear_message() {
    require_root(INSPECT_NEEDS_ROOT);
    // No such process.
    let output = inspect(&["2147483646"]);
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("pid 2147483646: no such process"),
        "{}",
        stderr(&output)
    );

    // A thread id: this test runs on one of the test harness's threads.
    let pid = std::process::id();
    let thread = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .find(|tid| *tid != pid.to_string());
    if let Some(thread) = thread {
        let output = inspect(&[&thread]);
        assert_eq!(code(&output), 2);
        assert!(
            stderr(&output).contains(&format!("pid {thread}: is a thread of process {pid}")),
            "{}",
            stderr(&output)
        );
    }

    // Without the rights of ptrace: an unprivileged user inspecting a root process.
    let holder = holder(&all_on(), &[]);
    let output = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            BIN,
            "inspect",
        ])
        .arg(holder.pid.to_string())
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(code(&output), 2, "{}{}", stdout(&output), stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains(&format!("pid {}: not permitted", holder.pid))
            && message.contains("ptrace"),
        "{message}"
    );

    // One good pid and one bad: the good one is still reported, the status is 2.
    let output = inspect(&["--json", &holder.pid.to_string(), "2147483646"]);
    assert_eq!(code(&output), 2);
    assert_eq!(json_lines(&output).len(), 6);
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes; scripts/test runs it"]
fn statically_linked_process_is_read_and_reported_without_the_library() {
    require_root(INSPECT_NEEDS_ROOT);
    let dir = TempDir::new("static");
    let program = gcc(&dir, "static-holder", STATIC_HOLDER, &["-static", "-O1"]);
    let file = Command::new("file").arg(&program).output();
    if let Ok(file) = file {
        assert!(
            stdout(&file).contains("statically linked"),
            "{}",
            stdout(&file)
        );
    }
    // Preloaded as a unit would: the loader of a static program never reads LD_PRELOAD.
    let library = fake_library(&dir);
    let library = library.to_str().unwrap();
    let mut command = Command::new(&program);
    command.stdin(Stdio::piped());
    let holder = start_holder(command, &[("KEEPIDLE", "30"), ("LD_PRELOAD", library)]);
    let output = inspect(&["--json", &holder.pid.to_string()]);
    assert_eq!(
        code(&output),
        1,
        "listener and accepted socket have no keepalive"
    );
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines.iter().all(|line| line["library"] == false));
    let client = by_fd(&lines, holder.fd("client"));
    assert_eq!(
        (
            &client["keepalive"],
            &client["idle"],
            &client["interval"],
            &client["count"]
        ),
        (&json!(true), &json!(30), &json!(10), &json!(3))
    );
    assert_eq!(
        client["remote"],
        format!("127.0.0.1:{}", holder.port("listener"))
    );
    assert_eq!(by_fd(&lines, holder.fd("listener"))["verdict"], "missing");

    let output = inspect(&["--expect-env", &holder.pid.to_string()]);
    assert_eq!(code(&output), 1);
    let text = stdout(&output);
    assert!(text.contains("libkeepalive_preload not mapped"), "{text}");
    assert!(
        text.contains("PROBLEM: the library should act in this process")
            && text.contains("its LD_PRELOAD names the library: a statically linked program"),
        "{text}"
    );
    assert!(text.contains("idle=30s"), "{text}");
}

/// The holder under an empty library named like ours, with `env`: every socket is made by
/// `spec` with the options it gives.
fn mapped_holder(dir: &TempDir, spec: &Value, env: &[(&str, &str)]) -> Holder {
    let library = fake_library(dir);
    let library = library.to_str().unwrap().to_owned();
    let mut env = env.to_vec();
    env.push(("LD_PRELOAD", &library));
    holder(spec, &env)
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes; scripts/test runs it"]
fn expect_env_override_yes_wants_exact_values() {
    require_root(INSPECT_NEEDS_ROOT);
    let dir = TempDir::new("yes");
    let exact =
        json!({"keepalive": 1, "idle": 31, "interval": 11, "count": 4, "user_timeout_ms": 5000});
    let spec = json!([
        {"kind": "listen", "name": "l", "host": "127.0.0.1", "opts": exact},
        {"kind": "connect", "name": "c", "to": "l", "opts": exact},
    ]);
    let env = [
        ("KEEPALIVE_OVERRIDE", "yes"),
        ("KEEPIDLE", "31"),
        ("KEEPINTVL", "11s"),
        ("KEEPCNT", "4"),
        ("KEEPALIVE_USER_TIMEOUT", "5s"),
    ];
    let holder = mapped_holder(&dir, &spec, &env);
    let output = inspect(&["--expect-env", "--json", &holder.pid.to_string()]);
    assert_eq!(code(&output), 0, "{}{}", stdout(&output), stderr(&output));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 3);
    for line in &lines {
        assert_eq!(line["library"], true);
        assert_eq!(line["verdict"], "ok", "{line}");
        assert_eq!(
            line["expected"],
            json!({"keepalive": true, "idle": 31, "interval": 11, "count": 4, "user_timeout_ms": 5000})
        );
    }

    // The same configuration, but the program put its own idle time on the client.
    let spec = json!([
        {"kind": "listen", "name": "l", "host": "127.0.0.1", "opts": exact},
        {"kind": "connect", "name": "c", "to": "l",
         "opts": {"keepalive": 1, "idle": 60, "interval": 11, "count": 4, "user_timeout_ms": 5000}},
    ]);
    let holder = mapped_holder(&dir, &spec, &env);
    let output = inspect(&["--expect-env", "--json", &holder.pid.to_string()]);
    assert_eq!(code(&output), 1);
    let lines = json_lines(&output);
    let client = by_fd(&lines, holder.fd("c"));
    assert_eq!(client["verdict"], "differs");
    assert_eq!(client["differences"], json!(["idle"]));
    let output = inspect(&["--expect-env", &holder.pid.to_string()]);
    let text = stdout(&output);
    assert!(text.contains("differs (idle 60s not 31s)"), "{text}");
    assert!(text.contains("override=yes"), "{text}");
    assert!(text.contains("libkeepalive_preload mapped from"), "{text}");
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes; scripts/test runs it"]
fn expect_env_tighten_accepts_smaller_values_and_no_only_wants_keepalive() {
    require_root(INSPECT_NEEDS_ROOT);
    let dir = TempDir::new("tighten");
    let spec = json!([
        {"kind": "listen", "name": "l", "host": "127.0.0.1", "opts": {"keepalive": 1, "idle": 20}},
        {"kind": "connect", "name": "c", "to": "l", "opts": {"keepalive": 1, "idle": 120}},
    ]);
    let env = [("KEEPALIVE_OVERRIDE", "tighten"), ("KEEPIDLE", "60")];
    let holder = mapped_holder(&dir, &spec, &env);
    let output = inspect(&["--expect-env", "--json", &holder.pid.to_string()]);
    assert_eq!(code(&output), 1);
    let lines = json_lines(&output);
    assert_eq!(by_fd(&lines, holder.fd("l"))["verdict"], "ok", "20 <= 60");
    assert_eq!(
        by_fd(&lines, holder.fd("c-accepted"))["verdict"],
        "ok",
        "inherits 20"
    );
    assert_eq!(
        by_fd(&lines, holder.fd("c"))["verdict"],
        "differs",
        "120 > 60"
    );

    // Under override=no the program's own value is reported, not a failure.
    let env = [("KEEPIDLE", "60")];
    let holder = mapped_holder(&dir, &spec, &env);
    let output = inspect(&["--expect-env", "--json", &holder.pid.to_string()]);
    assert_eq!(code(&output), 0, "{}", stdout(&output));
    let lines = json_lines(&output);
    let client = by_fd(&lines, holder.fd("c"));
    assert_eq!(client["verdict"], "ok");
    assert_eq!(client["differences"], json!(["idle"]));
    let text = stdout(&inspect(&["--expect-env", &holder.pid.to_string()]));
    assert!(
        text.contains("ok (set by the program: idle 120s not 60s)"),
        "{text}"
    );
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes; scripts/test runs it"]
fn expect_env_ports_filter_uses_remote_port_outgoing_and_local_port_accepted() {
    require_root(INSPECT_NEEDS_ROOT);
    let dir = TempDir::new("ports");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let on = json!({"keepalive": 1, "idle": 45});
    let spec = json!([
        {"kind": "listen", "name": "bus", "host": "127.0.0.1", "port": port, "opts": on},
        {"kind": "connect", "name": "peer", "to": "bus", "opts": on},
        {"kind": "listen", "name": "clients", "host": "127.0.0.1"},
        {"kind": "connect", "name": "client", "to": "clients"},
    ]);
    let ports = port.to_string();
    let env = [("KEEPALIVE_PORTS", ports.as_str()), ("KEEPIDLE", "45")];
    let holder = mapped_holder(&dir, &spec, &env);
    let output = inspect(&["--expect-env", "--json", &holder.pid.to_string()]);
    assert_eq!(code(&output), 0, "{}", stdout(&output));
    let lines = json_lines(&output);
    let verdict = |name: &str| {
        let line = by_fd(&lines, holder.fd(name));
        (
            line["role"].as_str().unwrap().to_owned(),
            line["verdict"].as_str().unwrap().to_owned(),
        )
    };
    let pair = |role: &str, verdict: &str| (role.to_owned(), verdict.to_owned());
    assert_eq!(verdict("bus"), pair("listening", "ok"));
    assert_eq!(verdict("peer"), pair("outgoing", "ok"));
    assert_eq!(verdict("peer-accepted"), pair("accepted", "ok"));
    assert_eq!(verdict("clients"), pair("listening", "not-targeted"));
    assert_eq!(verdict("client"), pair("outgoing", "not-targeted"));
    assert_eq!(verdict("client-accepted"), pair("accepted", "not-targeted"));
    assert_eq!(by_fd(&lines, holder.fd("client"))["expected"], Value::Null);
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes; scripts/test runs it"]
fn expect_env_program_list_and_master_switch() {
    require_root(INSPECT_NEEDS_ROOT);
    let spec = json!([
        {"kind": "listen", "name": "l", "host": "127.0.0.1"},
        {"kind": "connect", "name": "c", "to": "l"},
    ]);
    // Not in KEEPALIVE_PROGRAMS: nothing is targeted and the library need not be mapped.
    let holder = holder(&spec, &[("KEEPALIVE_PROGRAMS", "redis-server")]);
    let output = inspect(&["--expect-env", "--json", &holder.pid.to_string()]);
    assert_eq!(code(&output), 0, "{}", stdout(&output));
    assert!(
        json_lines(&output)
            .iter()
            .all(|line| line["verdict"] == "not-targeted")
    );
    let text = stdout(&inspect(&["--expect-env", &holder.pid.to_string()]));
    assert!(
        text.contains("the library does not act in this process"),
        "{text}"
    );

    // Named by argv[0]'s base name: targeted, so the missing keepalive and library fail.
    let holder_named = {
        let mut command = Command::new(python());
        command
            .arg0("python3")
            .args(["-c", HOLDER, &spec.to_string()]);
        start_holder(command, &[("KEEPALIVE_PROGRAMS", "python3")])
    };
    let output = inspect(&["--expect-env", "--json", &holder_named.pid.to_string()]);
    assert_eq!(code(&output), 1);
    assert!(
        json_lines(&output)
            .iter()
            .all(|line| line["verdict"] == "missing")
    );
    assert!(
        stderr(&output).contains("is not mapped: its LD_PRELOAD does not name the library"),
        "{}",
        stderr(&output)
    );

    let holder = holder_off(&spec);
    let output = inspect(&["--expect-env", &holder.pid.to_string()]);
    assert_eq!(code(&output), 0, "{}", stdout(&output));
}

fn holder_off(spec: &Value) -> Holder {
    holder(spec, &[("KEEPALIVE", "off")])
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes; scripts/test runs it"]
fn expect_env_resolves_auto_with_the_kernel_defaults() {
    require_root(INSPECT_NEEDS_ROOT);
    let dir = TempDir::new("auto");
    let read = |name: &str| -> u32 {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let expected_ms = (30 + read("tcp_keepalive_intvl") * read("tcp_keepalive_probes")) * 1000;
    let spec = json!([
        {"kind": "listen", "name": "l", "host": "127.0.0.1",
         "opts": {"keepalive": 1, "idle": 30, "user_timeout_ms": expected_ms}},
    ]);
    let env = [
        ("KEEPALIVE_OVERRIDE", "yes"),
        ("KEEPIDLE", "30"),
        ("KEEPALIVE_USER_TIMEOUT", "auto"),
    ];
    let holder = mapped_holder(&dir, &spec, &env);
    let output = inspect(&["--expect-env", "--json", &holder.pid.to_string()]);
    assert_eq!(code(&output), 0, "{}", stdout(&output));
    let line = &json_lines(&output)[0];
    assert_eq!(line["expected"]["user_timeout_ms"], expected_ms);
    assert_eq!(line["expected"]["interval"], Value::Null);
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes; scripts/test runs it"]
fn invalid_values_in_the_process_environment_are_reported() {
    require_root(INSPECT_NEEDS_ROOT);
    let dir = TempDir::new("invalid");
    let spec =
        json!([{"kind": "listen", "name": "l", "host": "127.0.0.1", "opts": {"keepalive": 1}}]);
    let holder = mapped_holder(&dir, &spec, &[("KEEPIDLE", "10abc")]);
    let output = inspect(&["--expect-env", &holder.pid.to_string()]);
    assert_eq!(code(&output), 0, "{}", stdout(&output));
    assert!(
        stdout(&output)
            .contains("its environment has KEEPIDLE=\"10abc\" is not a whole number of seconds"),
        "{}",
        stdout(&output)
    );
}

/// A connect still in progress (SYN-SENT: the listener's accept queue is full, so the SYNs are
/// dropped) has no peer for getpeername; inspect still shows where it goes and judges its
/// KEEPALIVE_PORTS role by that remote port.
#[test]
#[ignore = "needs root: pidfd_getfd on other processes; scripts/test runs it"]
fn connecting_sockets_show_their_remote_address() {
    require_root(INSPECT_NEEDS_ROOT);
    const SYN_SENT: &str = r#"
import json, os, socket as S, sys, time
l = S.socket(); l.bind(("127.0.0.1", 0)); l.listen(0)
out = [["l", l.fileno(), l.getsockname()[1]]]
keep = []
for i in range(3):
    c = S.socket(); c.setblocking(False)
    c.setsockopt(S.SOL_SOCKET, S.SO_KEEPALIVE, 1)
    try:
        c.connect(l.getsockname())
    except BlockingIOError:
        pass
    keep.append(c)
    out.append(["c%d" % i, c.fileno(), 0])
time.sleep(0.2)
print(json.dumps({"pid": os.getpid(), "sockets": out}), flush=True)
sys.stdin.read()
"#;
    let mut command = Command::new(python());
    command.args(["-c", SYN_SENT]);
    let holder = start_holder(command, &[]);
    let port = holder.port("l");
    let output = inspect(&["--json", &holder.pid.to_string()]);
    let lines = json_lines(&output);
    let last = by_fd(&lines, holder.fd("c2"));
    assert_eq!(last["state"], "SYN-SENT", "{lines:#?}");
    assert_eq!(last["remote"], format!("127.0.0.1:{port}"));
    assert_eq!(last["role"], "outgoing");
}

/// Like Redis's setproctitle: copy the environment to the heap, point environ at the copy and
/// blank the original block, so /proc/PID/environ shows nothing.
const RETITLED_HOLDER: &str = r#"
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
extern char **environ;
int main(void) {
    int n = 0;
    while (environ[n]) n++;
    char **copy = malloc((n + 1) * sizeof *copy);
    char *begin = n ? environ[0] : 0, *end = begin;
    for (int i = 0; i < n; i++) {
        copy[i] = strdup(environ[i]);
        char *after = environ[i] + strlen(environ[i]) + 1;
        if (after > end) end = after;
    }
    copy[n] = 0;
    if (begin) memset(begin, 0, end - begin);
    environ = copy;
    int one = 1, idle = 45;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(l, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(l, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 4) || getsockname(l, (struct sockaddr *)&a, &len)) return 3;
    printf("{\"pid\":%d,\"sockets\":[[\"l\",%d,%d]]}\n", (int)getpid(), l, ntohs(a.sin_port));
    fflush(stdout);
    char buf[64];
    while (read(0, buf, sizeof buf) > 0) {}
    return 0;
}
"#;

#[test]
#[ignore = "needs root: pidfd_getfd on other processes; scripts/test runs it"]
fn expect_env_reads_the_live_environ_of_a_process_that_blanked_its_block() {
    require_root(INSPECT_NEEDS_ROOT);
    let dir = TempDir::new("retitled");
    let program = gcc(&dir, "retitled", RETITLED_HOLDER, &[]);
    let library = fake_library(&dir);
    let library = library.to_str().unwrap();
    let env = [
        ("KEEPALIVE_OVERRIDE", "yes"),
        ("KEEPIDLE", "45"),
        ("LD_PRELOAD", library),
    ];
    let holder = start_holder(Command::new(&program), &env);
    let environ = std::fs::read(format!("/proc/{}/environ", holder.pid)).unwrap();
    assert!(
        !environ.contains(&b'='),
        "the program blanked its environment block"
    );
    let output = inspect(&["--expect-env", "--json", &holder.pid.to_string()]);
    assert_eq!(code(&output), 0, "{}{}", stdout(&output), stderr(&output));
    let line = &json_lines(&output)[0];
    assert_eq!(line["expected"]["idle"], 45, "{line}");
    assert_eq!(line["library"], true);
    let text = stdout(&inspect(&["--expect-env", &holder.pid.to_string()]));
    assert!(
        text.contains("override=yes") && text.contains("its live environ"),
        "{text}"
    );
}

/// Runs argv[2..] with pidfd_getfd failing with errno argv[1] (a seccomp filter): ENOSYS as on
/// Linux < 5.6, EPERM as without the rights of ptrace.
const FAILING_PIDFD_GETFD: &str = r#"
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
SYS_pidfd_getfd, ERRNO = 438, int(sys.argv[1])
program = b"".join([
    struct.pack("HBBI", 0x20, 0, 0, 0),                    # A = seccomp_data.nr
    struct.pack("HBBI", 0x15, 0, 1, SYS_pidfd_getfd),      # if A == pidfd_getfd
    struct.pack("HBBI", 0x06, 0, 0, 0x00050000 | ERRNO),   #   return ERRNO
    struct.pack("HBBI", 0x06, 0, 0, 0x7fff0000),           # return ALLOW
])
filters = ctypes.create_string_buffer(program)
class Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Program(4, ctypes.addressof(filters))
if libc.prctl(38, 1, 0, 0, 0) or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0):
    sys.exit("seccomp: errno %d" % ctypes.get_errno())
os.execv(sys.argv[2], sys.argv[2:])
"#;

#[test]
#[ignore = "needs root: pidfd_getfd on other processes; scripts/test runs it"]
fn pidfd_getfd_failures_are_clear_errors() {
    require_root(INSPECT_NEEDS_ROOT);
    let holder = holder(&all_on(), &[]);
    for (errno, message) in [
        ("38", "this kernel has no pidfd_getfd (Linux >= 5.6 needed"),
        (
            "1",
            "not permitted to duplicate its sockets: pidfd_getfd needs the rights of ptrace",
        ),
    ] {
        let output = Command::new(python())
            .args(["-c", FAILING_PIDFD_GETFD, errno, BIN, "inspect"])
            .arg(holder.pid.to_string())
            .output()
            .unwrap();
        assert_eq!(code(&output), 2, "{}{}", stdout(&output), stderr(&output));
        assert!(
            stderr(&output).contains(&format!("pid {}: {message}", holder.pid)),
            "{}",
            stderr(&output)
        );
    }
}
