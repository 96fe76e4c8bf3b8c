//! `inspect --expect-env` against live processes whose sockets carry known options (set by the
//! processes themselves) under an empty library named like ours: what the process's environment
//! asks for under each override, KEEPALIVE_PORTS, KEEPALIVE_PROGRAMS and the master switch,
//! `auto`, invalid values, and the live environ of a process that blanked its block.

mod common;

use std::os::unix::process::CommandExt as _;
use std::process::Command;

use common::*;
use serde_json::{Value, json};

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
