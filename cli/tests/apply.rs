//! `apply` against live processes that never loaded the library: Python holders whose sockets
//! carry values the holder set itself (or none). Every value is read back from the live sockets
//! with `inspect --json`; every expected value differs from the kernel's 7200/75/9/0.

mod apply_support;
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use apply_support::*;
use common::*;
use serde_json::{Value, json};

/// An IPv4 and an IPv6 listener (no options) on ports of the apply range, each with a connection
/// whose client set its own values: c4 300/100/3 (Redis' tcp-keepalive, looser than ours
/// everywhere but the count), c6 20/3/8 with a 60 s user timeout (tighter idle and interval,
/// looser count and user timeout). Accepted sockets carry nothing. And a UDP socket.
fn sockets() -> Value {
    let base = port(2);
    json!([
        {"kind": "listen", "name": "l4", "host": "127.0.0.1", "port": base},
        {"kind": "connect", "name": "c4", "to": "l4",
         "opts": {"keepalive": 1, "idle": 300, "interval": 100, "count": 3}},
        {"kind": "listen", "name": "l6", "host": "::1", "port": base + 1},
        {"kind": "connect", "name": "c6", "to": "l6",
         "opts": {"keepalive": 1, "idle": 20, "interval": 3, "count": 8, "user_timeout_ms": 60000}},
        {"kind": "udp", "name": "udp"},
    ])
}

const PROGRAM_C4: Values = (true, 300, 100, 3, 0);
const PROGRAM_C6: Values = (true, 20, 3, 8, 60000);
const UNSET: [&str; 4] = ["l4", "c4-accepted", "l6", "c6-accepted"];

fn read_back(holder: &Holder) -> Vec<(String, Values)> {
    let lines = inspect_json(holder.pid);
    assert_eq!(lines.len(), 6, "six TCP sockets: {lines:#?}");
    holder
        .sockets
        .iter()
        .filter(|(name, _, _)| name != "udp")
        .map(|(name, fd, _)| (name.clone(), values(by_fd(&lines, *fd))))
        .collect()
}

fn value_of<'a>(read: &'a [(String, Values)], name: &str) -> &'a Values {
    &read
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} in {read:?}"))
        .1
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes, setpriv, cgroups; scripts/test runs it"]
fn every_policy_sets_listeners_connected_and_accepted_sockets_ipv4_and_ipv6() {
    require_root(NEEDS_ROOT);
    // policy, then what c4 and c6 carry afterwards (the others always get ours).
    let cases: [(&str, Values, Values); 3] = [
        // no: a value the program set stays; an option left at the kernel's default is ours.
        ("no", (true, 300, 100, 3, 12345), PROGRAM_C6),
        ("yes", OUR_VALUES, OUR_VALUES),
        ("tighten", (true, 41, 7, 3, 12345), (true, 20, 3, 5, 12345)),
    ];
    for (policy, c4, c6) in cases {
        let holder = holder(&sockets(), &[]);
        let before = read_back(&holder);
        for name in UNSET {
            assert_eq!(*value_of(&before, name), KERNEL, "{name} before");
        }
        assert_eq!(*value_of(&before, "c4"), PROGRAM_C4);
        assert_eq!(*value_of(&before, "c6"), PROGRAM_C6);

        let mut args = OURS.to_vec();
        args.extend(["--override", policy, "--json"]);
        let pid = holder.pid.to_string();
        args.push(&pid);
        let output = apply(&args);
        assert_eq!(code(&output), 0, "{policy}: {}", stderr(&output));
        let reported = json_lines(&output);
        assert_eq!(reported.len(), 6, "{policy}: {reported:#?}");

        let after = read_back(&holder);
        for name in UNSET {
            assert_eq!(*value_of(&after, name), OUR_VALUES, "{policy}: {name}");
        }
        assert_eq!(*value_of(&after, "c4"), c4, "{policy}: c4");
        assert_eq!(*value_of(&after, "c6"), c6, "{policy}: c6");
        // What apply reported is what the sockets now carry.
        for (name, values_now) in &after {
            let line = by_fd(&reported, holder.fd(name));
            assert_eq!(values(line), *values_now, "{policy}: {name}: {line}");
            assert_eq!(values(&line["after"]), *values_now, "{policy}: {name}");
            assert_eq!(
                values(&line["before"]),
                *value_of(&before, name),
                "{policy}: {name}"
            );
        }
        let l6 = by_fd(&reported, holder.fd("l6"));
        assert_eq!(
            (&l6["family"], &l6["state"], &l6["role"], &l6["result"]),
            (
                &json!("ipv6"),
                &json!("LISTEN"),
                &json!("listening"),
                &json!("changed")
            )
        );
        assert_eq!(
            by_fd(&reported, holder.fd("c4-accepted"))["role"],
            "accepted"
        );
        assert_eq!(by_fd(&reported, holder.fd("c4"))["role"], "outgoing");
        if policy == "no" {
            let c6 = by_fd(&reported, holder.fd("c6"));
            assert_eq!(c6["result"], "unchanged", "{c6}");
            assert_eq!(
                c6["kept"],
                json!(["idle", "intvl", "cnt", "user_timeout"]),
                "{c6}"
            );
        }

        // A second run finds everything as configured and changes nothing.
        let again = apply(&args);
        assert_eq!(code(&again), 0, "{}", stderr(&again));
        for line in json_lines(&again) {
            assert_eq!(line["result"], "unchanged", "{policy}: {line}");
        }
        assert_eq!(read_back(&holder), after, "{policy}: second run");
    }
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes, setpriv, cgroups; scripts/test runs it"]
fn table_shows_before_and_after_and_dry_run_changes_nothing() {
    require_root(NEEDS_ROOT);
    let holder = holder(&sockets(), &[]);
    let pid = holder.pid.to_string();
    let mut args = OURS.to_vec();
    args.extend(["--override", "yes", "--dry-run", &pid]);
    let output = apply(&args);
    let text = stdout(&output);
    assert_eq!(code(&output), 0, "{text}{}", stderr(&output));
    assert!(
        text.starts_with(
            "keepalive-preload: apply --dry-run: setting keepalive=on idle=41s intvl=7s cnt=5 \
             user_timeout=12345ms; override=yes; ports=any; nets=any\n"
        ),
        "{text}"
    );
    let row = |text: &str, name: &str| {
        text.lines()
            .find(|line| line.split_whitespace().next() == Some(&holder.fd(name).to_string()))
            .unwrap_or_else(|| panic!("no row for {name}:\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        text.contains("BEFORE") && text.contains("WOULD BE"),
        "{text}"
    );
    assert!(
        row(&text, "l4").contains(
            "off 7200/75/9 0ms on 41/7/5 12345ms would set keepalive idle intvl cnt user_timeout"
        ),
        "{text}"
    );
    assert!(
        row(&text, "c4")
            .contains("on 300/100/3 0ms on 41/7/5 12345ms would set idle intvl cnt user_timeout"),
        "{text}"
    );
    assert!(
        text.contains("6 TCP sockets in 1 process: 6 would change"),
        "{text}"
    );
    // Nothing changed.
    let read = read_back(&holder);
    assert_eq!(*value_of(&read, "l4"), KERNEL);
    assert_eq!(*value_of(&read, "c4"), PROGRAM_C4);

    // The real run prints the values read back.
    args.retain(|arg| *arg != "--dry-run");
    let output = apply(&args);
    let text = stdout(&output);
    assert_eq!(code(&output), 0, "{text}");
    assert!(text.contains("AFTER"), "{text}");
    assert!(
        row(&text, "c6-accepted").contains(
            "off 7200/75/9 0ms on 41/7/5 12345ms set keepalive idle intvl cnt user_timeout"
        ),
        "{text}"
    );
    assert!(
        text.contains("6 TCP sockets in 1 process: 6 changed"),
        "{text}"
    );
    assert_eq!(*value_of(&read_back(&holder), "l4"), OUR_VALUES);
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes, setpriv, cgroups; scripts/test runs it"]
fn ports_and_nets_select_sockets_like_the_library() {
    require_root(NEEDS_ROOT);
    let holder = holder(&sockets(), &[]);
    let pid = holder.pid.to_string();
    let l4_port = holder.port("l4").to_string();
    // KEEPALIVE_PORTS: the listener's local port, the outgoing socket's remote port, the
    // accepted socket's local port.
    let mut args = OURS.to_vec();
    args.extend(["--override", "yes", "--ports", &l4_port, "--json", &pid]);
    let output = apply(&args);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let reported = json_lines(&output);
    let read = read_back(&holder);
    for name in ["l4", "c4", "c4-accepted"] {
        assert_eq!(*value_of(&read, name), OUR_VALUES, "{name}");
    }
    assert_eq!(*value_of(&read, "l6"), KERNEL);
    assert_eq!(*value_of(&read, "c6-accepted"), KERNEL);
    assert_eq!(*value_of(&read, "c6"), PROGRAM_C6);
    let l6 = by_fd(&reported, holder.fd("l6"));
    assert_eq!(l6["result"], "not-targeted");
    assert_eq!(l6["detail"], "port not in KEEPALIVE_PORTS");

    // KEEPALIVE_NETS: connected sockets whose peer is in the network; listeners are left to
    // their accepted sockets.
    let holder = holder_again();
    let pid = holder.pid.to_string();
    let mut args = OURS.to_vec();
    args.extend(["--override", "yes", "--nets", "::1/128", "--json", &pid]);
    let output = apply(&args);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let reported = json_lines(&output);
    let read = read_back(&holder);
    assert_eq!(*value_of(&read, "c6"), OUR_VALUES);
    assert_eq!(*value_of(&read, "c6-accepted"), OUR_VALUES);
    for name in ["l4", "c4-accepted", "l6"] {
        assert_eq!(*value_of(&read, name), KERNEL, "{name}");
    }
    assert_eq!(*value_of(&read, "c4"), PROGRAM_C4);
    assert_eq!(
        by_fd(&reported, holder.fd("c4"))["detail"],
        "peer not in KEEPALIVE_NETS"
    );
}

fn holder_again() -> Holder {
    holder(&sockets(), &[])
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes, setpriv, cgroups; scripts/test runs it"]
fn the_environment_configures_without_options_and_options_win_over_it() {
    require_root(NEEDS_ROOT);
    let holder = holder(&sockets(), &[]);
    let pid = holder.pid.to_string();
    let output = capture(command().args(["apply", "--idle", "41", &pid]).envs([
        ("KEEPIDLE", "99"),
        ("KEEPINTVL", "7"),
        ("KEEPCNT", "5"),
        ("KEEPALIVE_USER_TIMEOUT", "12345ms"),
        ("KEEPALIVE_OVERRIDE", "yes"),
    ]));
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    for (name, values) in read_back(&holder) {
        assert_eq!(values, OUR_VALUES, "{name}");
    }
    // `auto`: IDLE + INTVL x CNT seconds, from the environment alone.
    let holder = holder_again();
    let output = capture(command().args(["apply", &holder.pid.to_string()]).envs([
        ("KEEPIDLE", "41"),
        ("KEEPINTVL", "7"),
        ("KEEPCNT", "5"),
        ("KEEPALIVE_USER_TIMEOUT", "auto"),
    ]));
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let read = read_back(&holder);
    assert_eq!(*value_of(&read, "l6"), (true, 41, 7, 5, 76_000));
    // Override unset = no: the program's values stay, the user timeout it left is ours.
    assert_eq!(*value_of(&read, "c4"), (true, 300, 100, 3, 76_000));
}

/// Asserts status 2, exactly one line on stderr containing `what`, nothing on stdout.
fn assert_one_error(output: &std::process::Output, what: &str) {
    let err = stderr(output);
    assert_eq!(code(output), 2, "{what}: {}{err}", stdout(output));
    assert_eq!(err.lines().count(), 1, "one line for {what}: {err}");
    assert!(err.contains(what), "{what} not in: {err}");
    assert!(err.starts_with("keepalive-preload: apply"), "{err}");
    assert!(stdout(output).is_empty(), "{}", stdout(output));
}

fn assert_untouched(holder: &Holder) {
    let read = read_back(holder);
    for name in UNSET {
        assert_eq!(*value_of(&read, name), KERNEL, "{name} was changed");
    }
    assert_eq!(*value_of(&read, "c4"), PROGRAM_C4);
    assert_eq!(*value_of(&read, "c6"), PROGRAM_C6);
}

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

/// The cgroup v2 hierarchy: /sys/fs/cgroup (unified) or /sys/fs/cgroup/unified (hybrid).
fn cgroup2_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("/proc/self/mounts");
    mounts
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.get(2) == Some(&"cgroup2"))
        .map(|fields| PathBuf::from(fields[1]))
        .expect("a cgroup2 hierarchy is mounted")
}

/// A control group of the test's own, emptied (processes moved back) and removed on drop.
struct Group {
    root: PathBuf,
    path: PathBuf,
}

impl Group {
    fn new(root: &Path, name: &str) -> Self {
        let path = root.join(name);
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Self {
            root: root.to_path_buf(),
            path,
        }
    }

    fn adopt(&self, pid: i32) {
        std::fs::write(self.path.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("move {pid} into {}: {e}", self.path.display()));
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let mut groups = vec![self.path.clone()];
        if let Ok(entries) = std::fs::read_dir(&self.path) {
            groups.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        for group in groups.iter().rev() {
            let procs = std::fs::read_to_string(group.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines() {
                let _ = std::fs::write(self.root.join("cgroup.procs"), pid);
            }
            let _ = std::fs::remove_dir(group);
        }
    }
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes, setpriv, cgroups; scripts/test runs it"]
fn cgroup_covers_every_process_of_the_group_and_its_subgroups() {
    require_root(NEEDS_ROOT);
    let root = cgroup2_root();
    let name = format!("kpa-apply-{}", std::process::id());
    let group = Group::new(&root, &name);
    let sub = Group::new(&group.path, "sub");
    let first = holder(&sockets(), &[]);
    let second = holder(&sockets(), &[]);
    // A process without sockets in the group is no error when a unit or group is given.
    let mut sleeper = Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .spawn()
        .expect("start sleep");
    group.adopt(first.pid);
    sub.adopt(second.pid);
    group.adopt(sleeper.id() as i32);

    let mut args = OURS.to_vec();
    args.extend(["--override", "yes", "--json", "--cgroup"]);
    let directory = group.path.to_string_lossy().into_owned();
    args.push(&directory);
    let output = apply(&args);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let reported = json_lines(&output);
    assert_eq!(reported.len(), 12, "{reported:#?}");
    for holder in [&first, &second] {
        for (name, values) in read_back(holder) {
            assert_eq!(values, OUR_VALUES, "pid {} {name}", holder.pid);
        }
    }
    assert!(
        stderr(&output).contains("12 TCP sockets in 3 processes: 12 changed"),
        "{}",
        stderr(&output)
    );

    // The group named as /proc/PID/cgroup shows it, found under the cgroup mounts.
    let third = holder(&sockets(), &[]);
    group.adopt(third.pid);
    let relative = format!("/{name}");
    let output = apply(&["--override", "yes", "--idle", "41", "--cgroup", &relative]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(
        *value_of(&read_back(&third), "l4"),
        (true, 41, 75, 9, 0),
        "{}",
        stdout(&output)
    );
    drop(sub);
    drop(group);
    assert!(!root.join(&name).exists(), "group {name} left behind");

    // An empty group is an error.
    let empty = Group::new(&root, &format!("kpa-apply-empty-{}", std::process::id()));
    let path = empty.path.to_string_lossy().into_owned();
    let output = apply(&["--idle", "41", "--cgroup", &path]);
    assert_one_error(&output, "has no process");
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

#[test]
#[ignore = "needs root: pidfd_getfd on other processes, setpriv, cgroups; scripts/test runs it"]
fn a_socket_shared_by_two_processes_or_two_descriptors_is_changed_once() {
    require_root(NEEDS_ROOT);
    // A listener and a connection, the connection dup'ed, then the process forks: parent and
    // child hold the same three sockets (by inode), the parent under two descriptors each.
    let port = port(1);
    let script = format!(
        r#"
import os, socket as S, sys
l = S.socket(); l.setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", {port})); l.listen(8)
c = S.create_connection(("127.0.0.1", {port})); a, _ = l.accept()
extra = os.dup(c.fileno())
child = os.fork()
if child == 0:
    sys.stdin.read(); os._exit(0)
print('{{"pid": %d, "sockets": [["child", %d, 0], ["l", %d, 0], ["c", %d, 0], ["a", %d, 0], ["dup", %d, 0]]}}'
      % (os.getpid(), child, l.fileno(), c.fileno(), a.fileno(), extra), flush=True)
sys.stdin.read()
"#
    );
    let mut command = Command::new(python());
    command.arg("-c").arg(script);
    let holder = start_holder(command, &[]);
    let (parent, child) = (holder.pid.to_string(), holder.fd("child").to_string());
    let mut args = OURS.to_vec();
    args.extend(["--json", &parent, &child]);
    let output = apply(&args);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let reported = json_lines(&output);
    let changed: Vec<&Value> = reported
        .iter()
        .filter(|l| l["result"] == "changed")
        .collect();
    assert_eq!(changed.len(), 3, "{reported:#?}");
    assert!(changed.iter().all(|l| l["pid"] == holder.pid));
    let same: Vec<&Value> = reported
        .iter()
        .filter(|l| l["result"] == "same-socket")
        .collect();
    assert_eq!(
        same.len(),
        5,
        "the dup, and the child's four: {reported:#?}"
    );
    let dup = reported
        .iter()
        .find(|l| l["pid"] == holder.pid && l["fd"] == holder.fd("dup"))
        .expect("the dup'ed descriptor");
    assert_eq!(
        dup["detail"],
        format!("the socket of pid {} fd {}", holder.pid, holder.fd("c"))
    );
    assert!(
        stderr(&output).contains("3 TCP sockets in 2 processes: 3 changed"),
        "{}",
        stderr(&output)
    );
    for line in inspect_json(holder.fd("child")) {
        assert_eq!(values(&line), OUR_VALUES, "the child's view: {line}");
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

#[test]
#[ignore = "needs root: pidfd_getfd on other processes, setpriv, cgroups; scripts/test runs it"]
fn apply_afterwards_and_the_library_from_the_start_agree_under_every_policy() {
    require_root(NEEDS_ROOT);
    let library = library();
    let library = library.to_string_lossy();
    for policy in ["no", "yes", "tighten"] {
        // The same program twice: once under the library with the variables, once plain and
        // then `apply` with the same values as options.
        let preloaded = holder(
            &sockets(),
            &[
                ("LD_PRELOAD", &library),
                ("KEEPIDLE", "41"),
                ("KEEPINTVL", "7"),
                ("KEEPCNT", "5"),
                ("KEEPALIVE_USER_TIMEOUT", "12345"),
                ("KEEPALIVE_OVERRIDE", policy),
            ],
        );
        let plain = holder(&sockets(), &[]);
        let pid = plain.pid.to_string();
        let mut args = OURS.to_vec();
        args.extend(["--override", policy, &pid]);
        let output = apply(&args);
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        let (with_library, with_apply) = (read_back(&preloaded), read_back(&plain));
        assert_eq!(with_library, with_apply, "{policy}: library vs apply");
        // And neither is the kernel's or the program's alone.
        assert_eq!(*value_of(&with_apply, "l4"), OUR_VALUES, "{policy}");
        println!("{policy}: {with_apply:?}");
    }
}
