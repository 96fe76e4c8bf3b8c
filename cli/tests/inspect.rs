//! `inspect` against live processes whose sockets carry known options (set by the processes
//! themselves, so these tests do not depend on the library's behaviour): the table, the JSON
//! lines, a socket without keepalive, a statically linked process and connecting sockets.
//! `--expect-env` is in `inspect_expect_env.rs`, errors in `inspect_errors.rs`.

mod common;

use std::process::{Command, Stdio};

use common::*;
use serde_json::{Value, json};

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
