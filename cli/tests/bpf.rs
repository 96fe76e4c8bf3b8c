//! `keepalive-preload bpf`: the policy enforced by eBPF on a cgroup, on programs no preload
//! reaches (static C, static Go, io_uring) and on ordinary ones (Python), active and passive
//! sockets, the override policy on a Redis-like server, updates, detach, stale links, bad input
//! and `inspect`. Needs root, cgroup2, clang-built programs, gcc, liburing-dev and golang-go:
//! CI has them; a test that cannot run fails.

mod bpfkit;
mod common;

use std::net::TcpStream;
use std::process::{Command, Stdio};

use bpfkit::{DEFAULTS, Peer, Readback, TestCgroup, keepalive, port, status_of};
use keepalive_config::{Override, SocketOption};

const PORTS: (u16, u16) = (43000, 43199);
const POLICY: [(&str, &str); 4] = [
    ("KEEPIDLE", "2"),
    ("KEEPINTVL", "1"),
    ("KEEPCNT", "3"),
    ("KEEPALIVE_USER_TIMEOUT", "3s"),
];
const CONFIGURED: [i32; 5] = [1, 2, 1, 3, 3000];

fn python() -> std::path::PathBuf {
    std::path::PathBuf::from(common::python())
}

const PYTHON_CLIENT: &str = "
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
g = c.getsockopt
print('role=client peer=- calls=- keepalive=%d idle=%d intvl=%d cnt=%d uto=%d' % (
    g(socket.SOL_SOCKET, socket.SO_KEEPALIVE), g(6, socket.TCP_KEEPIDLE),
    g(6, socket.TCP_KEEPINTVL), g(6, socket.TCP_KEEPCNT), g(6, 18)))
";

fn one(lines: Vec<Readback>) -> Readback {
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines.into_iter().next().unwrap()
}

#[test]
#[ignore = "needs root: cgroups and bpf(2); scripts/test runs it"]
fn clients_no_preload_reaches_are_configured() {
    let cgroup = TestCgroup::new("clients");
    cgroup.attach_ok(&POLICY, &["--override", "yes"]);
    let peer = Peer::new("127.0.0.1", port(PORTS.0, PORTS.1));
    let port = peer.port.to_string();
    let address = format!("127.0.0.1:{port}");
    let sock = bpfkit::sock();
    // Outside the cgroup nothing changes.
    let outside = bpfkit::readbacks(&bpfkit::run_ok(Command::new(sock).args([
        "connect",
        "127.0.0.1",
        &port,
    ])));
    assert_eq!(one(outside).values, DEFAULTS);
    let cases: Vec<(&str, Readback)> = vec![
        (
            "static C",
            one(cgroup.run(sock, &["connect", "127.0.0.1", &port])),
        ),
        (
            "static Go (net.Dial sets 15/15 itself)",
            one(cgroup.run(&bpfkit::go("client"), &[&address])),
        ),
        (
            "io_uring (IORING_OP_SOCKET + IORING_OP_CONNECT)",
            one(cgroup.run(bpfkit::uring(), &["127.0.0.1", &port])),
        ),
        (
            "Python",
            one(cgroup.run(&python(), &["-c", PYTHON_CLIENT, "127.0.0.1", &port])),
        ),
    ];
    for (what, readback) in &cases {
        assert_eq!(readback.values, CONFIGURED, "{what}: {readback:?}");
    }
    let status = status_of(&cgroup.path).expect("the policy is listed");
    assert!(
        status["counters"]["connected"].as_u64().unwrap() >= 4,
        "{status}"
    );
    assert_eq!(status["values"]["idle"], 2);
    assert_eq!(status["stale"], false);
}

#[test]
#[ignore = "needs root: cgroups and bpf(2); scripts/test runs it"]
fn go_keeps_its_own_values_under_no_and_loses_them_under_tighten() {
    let cgroup = TestCgroup::new("go");
    let peer = Peer::new("127.0.0.1", port(PORTS.0, PORTS.1));
    let address = format!("127.0.0.1:{}", peer.port);
    let go = bpfkit::go("client");
    // Go sets SO_KEEPALIVE and 15 s idle and interval after connecting.
    cgroup.attach_ok(
        &[("KEEPIDLE", "20"), ("KEEPINTVL", "5"), ("KEEPCNT", "4")],
        &[],
    );
    assert_eq!(one(cgroup.run(&go, &[&address])).values, [1, 15, 15, 4, 0]);
    cgroup.attach_ok(
        &[("KEEPIDLE", "20"), ("KEEPINTVL", "5"), ("KEEPCNT", "4")],
        &["--override", "tighten"],
    );
    assert_eq!(one(cgroup.run(&go, &[&address])).values, [1, 15, 5, 4, 0]);
}

/// A Redis-like server: 30/10/3 right after accept4 on every accepted socket, in the cgroup;
/// the client is outside. Under each policy the accepted socket reads back what
/// `Override::replace` says; the listener carries the configured values.
#[test]
#[ignore = "needs root: cgroups and bpf(2); scripts/test runs it"]
fn redis_like_server_under_yes_tighten_and_no() {
    let configured = [1, 2, 20, 5, 3000];
    let redis = [
        (SocketOption::Idle, 30),
        (SocketOption::Interval, 10),
        (SocketOption::Count, 3),
    ];
    for (policy, name) in [
        (Override::Yes, "yes"),
        (Override::Tighten, "tighten"),
        (Override::No, "no"),
    ] {
        let cgroup = TestCgroup::new("redislike");
        cgroup.attach_ok(&bpfkit::mixed_policy(name), &[]);
        let port = port(PORTS.0, PORTS.1).to_string();
        let server = cgroup.serve(&[
            "127.0.0.1",
            &port,
            "1",
            "post=6:4:30",
            "post=6:5:10",
            "post=6:6:3",
        ]);
        let client = TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap();
        let lines = server.finish();
        drop(client);
        let accepted = lines
            .iter()
            .find(|l| l.role == "accepted")
            .expect("accepted");
        let listener = lines
            .iter()
            .find(|l| l.role == "listener")
            .expect("listener");
        let mut expected = configured;
        for (option, asked) in redis {
            let index = SocketOption::ALL.iter().position(|o| *o == option).unwrap();
            expected[index] = policy
                .replace(option, asked, configured[index])
                .unwrap_or(asked);
        }
        assert_eq!(accepted.calls, "-/0,0,0", "{name}");
        assert_eq!(accepted.values, expected, "override {name}: {accepted:?}");
        assert_eq!(listener.values, configured, "override {name}: {listener:?}");
    }
}

#[test]
#[ignore = "needs root: cgroups and bpf(2); scripts/test runs it"]
fn options_set_before_connect_follow_the_policy() {
    let cgroup = TestCgroup::new("preconnect");
    let peer = Peer::new("127.0.0.1", port(PORTS.0, PORTS.1));
    let port = peer.port.to_string();
    let sock = bpfkit::sock();
    let args = ["connect", "127.0.0.1", &port, "pre=6:4:30", "pre=1:9:0"];
    cgroup.attach_ok(&POLICY, &[]);
    // no: the program's idle and its SO_KEEPALIVE=0 stay; the rest is ours.
    assert_eq!(one(cgroup.run(sock, &args)).values, [0, 30, 1, 3, 3000]);
    cgroup.attach_ok(&POLICY, &["--override", "yes"]);
    assert_eq!(one(cgroup.run(sock, &args)).values, CONFIGURED);
}

#[test]
#[ignore = "needs root: cgroups and bpf(2); scripts/test runs it"]
fn attach_again_updates_in_place_and_detach_restores_defaults() {
    let cgroup = TestCgroup::new("update");
    let peer = Peer::new("127.0.0.1", port(PORTS.0, PORTS.1));
    let port = peer.port.to_string();
    let sock = bpfkit::sock();
    let connect = ["connect", "127.0.0.1", port.as_str()];
    cgroup.attach_ok(&POLICY, &[]);
    let before = status_of(&cgroup.path).unwrap();
    assert_eq!(one(cgroup.run(sock, &connect)).values, CONFIGURED);
    let output = cgroup.attach(&POLICY, &["--idle", "5", "--user-timeout", "auto"]);
    assert_eq!(common::code(&output), 0, "{}", common::stderr(&output));
    assert!(
        common::stdout(&output).contains("updated"),
        "{}",
        common::stdout(&output)
    );
    let after = status_of(&cgroup.path).unwrap();
    // The same links (updated, never detached), new values.
    assert_eq!(before["links"][0]["id"], after["links"][0]["id"]);
    assert_eq!(before["links"][1]["id"], after["links"][1]["id"]);
    assert_eq!(
        one(cgroup.run(sock, &connect)).values,
        [1, 5, 1, 3, (5 + 3) * 1000] // auto: idle + interval × count
    );
    let output = cgroup.detach();
    assert_eq!(common::code(&output), 0, "{}", common::stderr(&output));
    assert!(status_of(&cgroup.path).is_none());
    assert_eq!(one(cgroup.run(sock, &connect)).values, DEFAULTS);
}

#[test]
#[ignore = "needs root: cgroups and bpf(2); scripts/test runs it"]
fn a_listener_from_before_an_update_gives_its_accepted_sockets_the_new_policy() {
    // The listener was configured by the first policy; the update keeps the accept witness's
    // value (TCP_USER_TIMEOUT 3 s) and changes the count: the accepted socket must not be
    // taken for configured on the witness alone.
    let cgroup = TestCgroup::new("listenupdate");
    cgroup.attach_ok(&POLICY, &["--override", "yes"]);
    let port = port(PORTS.0, PORTS.1).to_string();
    let server = cgroup.serve(&["127.0.0.1", &port, "1"]);
    cgroup.attach_ok(&POLICY, &["--override", "yes", "--count", "4"]);
    let client = TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap();
    let lines = server.finish();
    drop(client);
    let role = |name: &str| lines.iter().find(|l| l.role == name).expect(name).clone();
    assert_eq!(role("listener").values, CONFIGURED);
    assert_eq!(role("accepted").values, [1, 2, 1, 4, 3000]);
}

#[test]
#[ignore = "needs root: cgroups and bpf(2); scripts/test runs it"]
fn a_removed_cgroup_leaves_a_stale_policy_that_detach_stale_removes() {
    let cgroup = TestCgroup::new("stale");
    cgroup.attach_ok(&POLICY, &[]);
    let id = status_of(&cgroup.path).unwrap()["cgroup_id"].clone();
    std::fs::remove_dir(&cgroup.path).unwrap();
    let stale = status_of(&cgroup.path).expect("still listed");
    assert_eq!(stale["stale"], true, "{stale}");
    // The kernel releases a removed cgroup's programs asynchronously: the links turn defunct
    // (cgroup_id 0) shortly after.
    let defunct = (0..100).any(|_| {
        let now = status_of(&cgroup.path).expect("still listed");
        let all = now["links"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["defunct"] == true);
        if !all {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        all
    });
    assert!(defunct, "{}", status_of(&cgroup.path).unwrap());
    let text = bpfkit::run_ok(keepalive().args(["bpf", "status"]));
    assert!(text.contains("STALE"), "{text}");
    // A unit restart: the same path, a new cgroup. Attaching replaces the stale entry.
    std::fs::create_dir(&cgroup.path).unwrap();
    cgroup.attach_ok(&POLICY, &[]);
    let fresh = status_of(&cgroup.path).unwrap();
    assert_ne!(fresh["cgroup_id"], id);
    assert_eq!(fresh["stale"], false);
    std::fs::remove_dir(&cgroup.path).unwrap();
    bpfkit::run_ok(keepalive().args(["bpf", "detach", "--stale"]));
    assert!(status_of(&cgroup.path).is_none());
    std::fs::create_dir(&cgroup.path).unwrap();
}

fn assert_one_error(output: &std::process::Output, what: &str, needle: &str) {
    let stderr = common::stderr(output);
    assert_eq!(common::code(output), 2, "{what}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{what}: one line: {stderr}");
    assert!(stderr.contains(needle), "{what}: {stderr}");
}

#[test]
#[ignore = "needs root: cgroups and bpf(2); scripts/test runs it"]
fn bad_input_is_one_error_with_status_2_and_attaches_nothing() {
    let cgroup = TestCgroup::new("bad");
    let bin = common::BIN;
    let missing = cgroup.path.join("kpb-no-such-child");
    let output = common::capture(
        keepalive()
            .args(["bpf", "attach", "--cgroup"])
            .arg(&missing),
    );
    assert_one_error(&output, "missing cgroup", "no cgroup");
    for (what, variables, options, needle) in [
        ("bad idle", vec![], vec!["--idle", "0"], "KEEPIDLE=\"0\""),
        (
            "bad override",
            vec![],
            vec!["--override", "always"],
            "KEEPALIVE_OVERRIDE",
        ),
        (
            "bad nets",
            vec![("KEEPALIVE_NETS", "10.0.0.0/33")],
            vec![],
            "KEEPALIVE_NETS",
        ),
        (
            "a variable for processes",
            vec![("KEEPALIVE_PROGRAMS", "redis-server")],
            vec![],
            "KEEPALIVE_PROGRAMS",
        ),
        (
            "a variable for processes",
            vec![("KEEPALIVE_INHERIT", "no")],
            vec![],
            "KEEPALIVE_INHERIT",
        ),
    ] {
        let output = cgroup.attach(&variables, &options);
        assert_one_error(&output, what, needle);
    }
    let output = common::capture(
        keepalive()
            .args(["bpf", "attach", "--unit", "kpb-no-such.service"])
            .env("SYSTEMD_IGNORE_CHROOT", "1"),
    );
    assert_eq!(common::code(&output), 2, "{}", common::stderr(&output));
    // No root.
    let output = common::capture(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", bin])
            .args(["bpf", "attach", "--cgroup"])
            .arg(&cgroup.path),
    );
    assert_one_error(&output, "no root", "needs root");
    // cgroup v1 only: a mount namespace where /sys/fs/cgroup is a tmpfs with no cgroup2 in it.
    let output = common::capture(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount -t tmpfs kpb-v1 /sys/fs/cgroup && mkdir /sys/fs/cgroup/kpb && exec \"$@\"")
            .args(["sh", bin, "bpf", "attach", "--cgroup", "/sys/fs/cgroup/kpb"]),
    );
    assert_one_error(&output, "cgroup v1 only", "cgroup v1 only");
    assert!(status_of(&cgroup.path).is_none(), "nothing attached");
}

#[test]
#[ignore = "needs root: cgroups and bpf(2); scripts/test runs it"]
fn inspect_judges_sockets_by_the_policy_without_the_library() {
    let cgroup = TestCgroup::new("inspect");
    cgroup.attach_ok(&POLICY, &["--override", "yes"]);
    let peer = Peer::new("127.0.0.1", port(PORTS.0, PORTS.1));
    let script = format!(
        "import socket, sys, time\nc = socket.create_connection(('127.0.0.1', {}))\nc.setsockopt(6, socket.TCP_KEEPIDLE, 30)\nprint('ready', flush=True)\ntime.sleep(60)\n",
        peer.port
    );
    let mut child = cgroup
        .command(&python(), &["-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");
    let output = common::capture(
        keepalive()
            .args(["inspect", "--json"])
            .arg(child.id().to_string()),
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        common::code(&output),
        0,
        "{}{}",
        common::stdout(&output),
        common::stderr(&output)
    );
    let sockets: Vec<serde_json::Value> = common::stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(sockets.len(), 1, "{sockets:?}");
    let socket = &sockets[0];
    assert_eq!(socket["library"], false);
    assert_eq!(
        socket["idle"], 2,
        "Python's own 30 replaced under yes: {socket}"
    );
    assert_eq!(socket["expected"]["idle"], 2);
    assert_eq!(socket["verdict"], "ok");
}

/// io_uring's own setsockopt (SOCKET_URING_OP_SETSOCKOPT) reaches the cgroup/setsockopt program
/// like setsockopt(2) does.
#[test]
#[ignore = "needs root: cgroups and bpf(2); scripts/test runs it"]
fn io_uring_setsockopt_follows_the_override_policy() {
    let cgroup = TestCgroup::new("uring");
    cgroup.attach_ok(&POLICY, &["--override", "yes"]);
    let peer = Peer::new("127.0.0.1", port(PORTS.0, PORTS.1));
    let port = peer.port.to_string();
    let uring = bpfkit::uring();
    let outside = one(bpfkit::readbacks(&bpfkit::run_ok(
        Command::new(uring).args(["127.0.0.1", &port, "30"]),
    )));
    assert_eq!(
        outside.calls, "0",
        "the ring's setsockopt works: {outside:?}"
    );
    assert_eq!(outside.values[1], 30, "{outside:?}");
    let inside = one(cgroup.run(uring, &["127.0.0.1", &port, "30"]));
    assert_eq!(inside.calls, "0", "{inside:?}");
    assert_eq!(inside.values, CONFIGURED, "replaced under yes: {inside:?}");
}

/// KEEPALIVE=off (the library's master switch) attaches a policy that leaves every socket alone.
/// (The cgroup is named as systemd and /proc/PID/cgroup name it: its path in the hierarchy.)
#[test]
#[ignore = "needs root: cgroups and bpf(2); scripts/test runs it"]
fn keepalive_off_leaves_sockets_alone() {
    let cgroup = TestCgroup::new("off");
    let name = cgroup.path.file_name().unwrap().to_str().unwrap();
    let mut command = keepalive();
    command
        .args(["bpf", "attach", "--override", "yes", "--cgroup"])
        .arg(format!("/{name}"))
        .envs(POLICY)
        .env("KEEPALIVE", "off");
    let output = common::capture(&mut command);
    assert_eq!(common::code(&output), 0, "{}", common::stderr(&output));
    let peer = Peer::new("127.0.0.1", port(PORTS.0, PORTS.1));
    let port = peer.port.to_string();
    let readback = one(cgroup.run(
        bpfkit::sock(),
        &["connect", "127.0.0.1", &port, "post=6:4:30"],
    ));
    assert_eq!(readback.values, [0, 30, 75, 9, 0]);
    assert_eq!(status_of(&cgroup.path).unwrap()["enabled"], false);
}

/// `ExecStopPost=… bpf detach --unit %n` after the unit's cgroup is gone: the policy recorded for
/// a cgroup of the unit's name is removed.
#[test]
#[ignore = "needs root: cgroups and bpf(2); scripts/test runs it"]
fn detach_of_a_unit_whose_cgroup_is_gone_removes_its_policy() {
    let unit = format!("kpb-unit-{}.service", std::process::id());
    let path = bpfkit::unified_root().join(&unit);
    std::fs::create_dir(&path).unwrap();
    let cgroup = TestCgroup { path };
    cgroup.attach_ok(&POLICY, &[]);
    std::fs::remove_dir(&cgroup.path).unwrap();
    assert!(status_of(&cgroup.path).is_some());
    let output = common::capture(keepalive().args(["bpf", "detach", "--unit", &unit]));
    assert_eq!(common::code(&output), 0, "{}", common::stderr(&output));
    assert!(status_of(&cgroup.path).is_none());
    std::fs::create_dir(&cgroup.path).unwrap();
}
