//! `apply` when something is wrong: bad input is one clear line, status 2, and changes nothing;
//! a socket closed while `apply` runs is skipped, not an error; a socket that cannot be changed
//! is named and the status is 1. Against live processes that never loaded the library, every
//! value read back from the live sockets with `inspect --json`.

mod apply_support;
mod common;

use std::process::{Command, Stdio};

use apply_support::*;
use common::*;
use serde_json::{Value, json};

#[test]
#[ignore = "needs root: pidfd_getfd on other processes, setpriv, cgroups; scripts/test runs it"]
fn bad_input_is_one_clear_line_status_2_and_changes_nothing() {
    require_root(NEEDS_ROOT);
    let holder = holder(&sockets(), &[]);
    let pid = holder.pid.to_string();
    let with_ours = |extra: &[&str]| {
        let mut args = OURS.to_vec();
        args.extend_from_slice(extra);
        apply(&args)
    };

    // A missing process, named after a good one: the good one is not changed either.
    let output = with_ours(&[&pid, "2147483646"]);
    assert_one_error(&output, "pid 2147483646: no such process");
    assert_untouched(&holder);

    // A process without a TCP socket.
    let mut sleeper = Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("start sleep");
    let output = with_ours(&[&pid, &sleeper.id().to_string()]);
    assert_one_error(
        &output,
        &format!(
            "pid {}: sleep has no TCP socket (no socket at all)",
            sleeper.id()
        ),
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    // Only a UDP socket.
    let udp = common::holder(&json!([{"kind": "udp", "name": "udp"}]), &[]);
    let output = with_ours(&[&udp.pid.to_string()]);
    assert_one_error(&output, "has no TCP socket (1 socket, not TCP)");

    // A thread: one of this test's own, alive until the check is done (another test's thread
    // could exit meanwhile).
    let me = std::process::id();
    let (tid_sender, tid) = std::sync::mpsc::channel();
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let helper = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        let _ = tid_sender.send(unsafe { libc::gettid() });
        let _ = wait.recv();
    });
    let thread = tid.recv().expect("the helper thread's id").to_string();
    let output = with_ours(&[&thread]);
    let _ = done.send(());
    helper.join().expect("the helper thread");
    assert_one_error(
        &output,
        &format!("pid {thread}: is a thread of process {me}; apply to {me}"),
    );

    // Without the rights of ptrace: an unprivileged user against a root process.
    let mut args = vec![
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        BIN,
        "apply",
    ];
    args.extend(OURS);
    args.push(&pid);
    let mut unprivileged = Command::new("setpriv");
    without_variables(&mut unprivileged);
    let output = unprivileged
        .args(&args)
        .output()
        .expect("setpriv (util-linux)");
    assert_one_error(&output, &format!("pid {pid}: not permitted"));
    let message = stderr(&output);
    assert!(
        message.contains("rights of ptrace") && message.contains("as root"),
        "{message}"
    );
    assert_untouched(&holder);

    // Bad values, each one line naming the option and what it accepts.
    for (option, value, what) in [
        (
            "--idle",
            "0",
            "--idle \"0\" (sets KEEPIDLE) is not a whole number of seconds in 1..32767; nothing changed",
        ),
        (
            "--interval",
            "1e3",
            "--interval \"1e3\" (sets KEEPINTVL) is not a whole number of seconds",
        ),
        (
            "--count",
            "128",
            "--count \"128\" (sets KEEPCNT) is not a whole number in 1..127",
        ),
        (
            "--user-timeout",
            "-1",
            "--user-timeout \"-1\" (sets KEEPALIVE_USER_TIMEOUT) is not milliseconds",
        ),
        (
            "--override",
            "always",
            "--override \"always\" (sets KEEPALIVE_OVERRIDE) is not one of no, yes, tighten",
        ),
        (
            "--ports",
            "0-10",
            "--ports \"0-10\" (sets KEEPALIVE_PORTS) is not accepted",
        ),
        (
            "--nets",
            "10.0.0.0/33",
            "--nets \"10.0.0.0/33\" (sets KEEPALIVE_NETS) is not accepted",
        ),
    ] {
        let output = apply(&[option, value, &pid]);
        assert_one_error(&output, what);
    }
    // From the environment.
    let output = capture(
        command()
            .args(["apply", &pid])
            .env("KEEPIDLE", "10abc")
            .env("KEEPALIVE_OVERRIDE", "yes"),
    );
    assert_one_error(
        &output,
        "KEEPIDLE=\"10abc\" in this environment is not a whole number of seconds",
    );
    let output = capture(
        command()
            .args(["apply", "--idle", "41", &pid])
            .env("KEEPALIVE", "off"),
    );
    assert_one_error(&output, "KEEPALIVE is off in this environment");
    assert_untouched(&holder);

    // --unit: systemd does not run here (or the unit does not exist where it does).
    let output = with_ours(&["--unit", "kpa-no-such-unit.service"]);
    let err = stderr(&output);
    assert_eq!(code(&output), 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--unit kpa-no-such-unit.service: systemd is not running on this machine")
            || err.contains("--unit kpa-no-such-unit.service: no such unit"),
        "{err}"
    );
    // --cgroup that does not exist.
    let output = with_ours(&["--cgroup", "/kpa-no-such-group"]);
    assert_one_error(&output, "control group /kpa-no-such-group: not found");
    // Neither PIDs nor a unit: clap's usage error, status 2.
    let output = with_ours(&[]);
    assert_eq!(code(&output), 2);
    assert_untouched(&holder);
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes, setpriv, cgroups; scripts/test runs it"]
fn a_socket_closed_while_apply_runs_is_skipped_not_an_error() {
    require_root(NEEDS_ROOT);
    // 1,500 connections (3,001 TCP sockets) that the process closes from the highest descriptor
    // down, one pair every 100 µs, once told to: apply walks up from the lowest, so the two
    // meet and apply finds descriptors it listed already closed. Closed descriptors are not
    // reused (nothing new is opened), so each one is really gone, not another socket.
    let port = port(1);
    let script = format!(
        r#"
import os, resource, socket as S, struct, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
l = S.socket(); l.setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", {port})); l.listen(4096)
pairs = []
for _ in range(1500):
    c = S.create_connection(("127.0.0.1", {port})); a, _ = l.accept(); pairs.append((c, a))
print(os.getpid(), flush=True)
sys.stdin.readline()
# Closed with a reset (linger 0): no TIME_WAIT left on ports other tests may want.
RESET = struct.pack("ii", 1, 0)
for c, a in reversed(pairs):
    for s in (c, a):
        s.setsockopt(S.SOL_SOCKET, S.SO_LINGER, RESET); s.close()
    time.sleep(0.0001)
print("closed", flush=True)
sys.stdin.readline()
"#
    );
    let mut child = Command::new(python())
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python3");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut lines, &mut line).expect("pid");
    let pid = line.trim().to_owned();
    let mut args = OURS.to_vec();
    args.extend(["--override", "yes", "--json", &pid]);
    let mut run = command();
    run.arg("apply").args(&args);
    feed(&mut stdin, "go\n");
    let output = capture(&mut run);
    line.clear();
    std::io::BufRead::read_line(&mut lines, &mut line).expect("closed");
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let reported = json_lines(&output);
    let count = |result: &str| reported.iter().filter(|l| l["result"] == result).count();
    println!(
        "{} sockets listed: {} changed, {} closed meanwhile; {}",
        reported.len(),
        count("changed"),
        count("closed"),
        stderr(&output).trim()
    );
    assert!(
        count("closed") > 0,
        "no socket closed meanwhile: {reported:#?}"
    );
    assert!(count("changed") > 0);
    assert_eq!(count("changed") + count("closed"), reported.len());
    for closed in reported.iter().filter(|l| l["result"] == "closed") {
        assert_eq!(closed["detail"], Value::Null, "{closed}");
        assert!(closed.get("keepalive").is_none(), "{closed}");
    }
}

/// Makes the command's own `setsockopt(TCP_KEEPCNT)` fail with EPERM (an LD_PRELOAD shim on
/// `apply` itself), as a security module or a cgroup setsockopt program could.
const REFUSE_KEEPCNT: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
int setsockopt(int fd, int level, int name, const void *value, socklen_t len) {
    static int (*real)(int, int, int, const void *, socklen_t);
    if (level == IPPROTO_TCP && name == TCP_KEEPCNT) { errno = EPERM; return -1; }
    if (!real) real = dlsym(RTLD_NEXT, "setsockopt");
    return real(fd, level, name, value, len);
}
"#;

#[test]
#[ignore = "needs root: pidfd_getfd on other processes, setpriv, cgroups; scripts/test runs it"]
fn a_socket_that_cannot_be_changed_is_named_and_exits_1() {
    require_root(NEEDS_ROOT);
    let dir = TempDir::new("apply-refuse");
    let shim = gcc(&dir, "refuse.so", REFUSE_KEEPCNT, &["-shared", "-fPIC"]);
    let holder = holder(&sockets(), &[]);
    let pid = holder.pid.to_string();
    let mut args = OURS.to_vec();
    args.extend(["--override", "yes", &pid]);
    let output = capture(command().arg("apply").args(&args).env("LD_PRELOAD", &shim));
    let text = stdout(&output);
    assert_eq!(code(&output), 1, "{text}{}", stderr(&output));
    assert!(
        text.contains("FAILED: TCP_KEEPCNT 5: Operation not permitted"),
        "{text}"
    );
    assert!(
        text.contains("6 TCP sockets in 1 process: 0 changed, 0 already as configured, 0 not targeted, 6 failed"),
        "{text}"
    );
    // Everything else was set all the same: idle, interval, user timeout and keepalive.
    let read = read_back(&holder);
    assert_eq!(*value_of(&read, "l4"), (true, 41, 7, 9, 12345));
    assert_eq!(*value_of(&read, "c4"), (true, 41, 7, 3, 12345));
}
