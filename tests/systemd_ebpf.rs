//! The eBPF policy's drop-in on a service (issue 11 item 4, issue 12 item 3), under a real
//! systemd: Debian bookworm's systemd as PID 1 in `systemd-nspawn` (with the arguments the
//! policy needs, `BPF_NSPAWN_ARGS`), the project's own `.deb` installed in it with `dpkg -i`,
//! and then what an operator does, step by step as docs/ebpf.md says: the drop-in on a
//! `DynamicUser=` service running a static test server (start, restart, stop, a bad value), and
//! the drop-in left behind by `dpkg -r`. The drop-in on Debian's `redis-server.service` and on a
//! socket-activated service is in tests/systemd_ebpf_services.rs.
//!
//! Every value is read back from the live sockets, by `keepalive-preload inspect` run inside the
//! container or by the test programs themselves (cli/tests/bpf/sock.c), and the policies from
//! `keepalive-preload bpf status --json`. Needs root, systemd-container and
//! debootstrap (scripts/test installs them); the first run builds the container's tree with
//! debootstrap (cached under /var/tmp). Never skips. Times are printed: run with --nocapture.
//!
//! A new case is a `#[test]` that takes `serial()`, boots a `Container`, installs the package
//! and drives it with `sh`, `systemctl`, `systemctl_edit` and `journal`; the container is
//! killed and its cgroups removed when the handle drops, also when the test fails.

mod systemd_support;

use std::time::{Duration, Instant};

use systemd_support::ebpf::{BPF_DROPIN, bpf_status, live_cgroup};
use systemd_support::readback::{Readback, Socket, Values, readbacks, sockets};
use systemd_support::redis::SHIPPED;
use systemd_support::units::assert_skipped;
use systemd_support::{BPF_NSPAWN_ARGS, Container, serial, static_sock};

const SOCK_UNIT: &str = "kpsb-sock.service";
const SOCK_PORT: u16 = 47101;
/// What the static server sets itself on every accepted socket right after accept4 (as Redis
/// does on its cluster-bus links): TCP_KEEPIDLE 30, TCP_KEEPINTVL 10, TCP_KEEPCNT 3.
const SERVER_OWN: Values = Values {
    idle: 30,
    interval: 10,
    count: 3,
    user_timeout_ms: 0,
};

/// Waits until the unit's server listens on SOCK_PORT.
fn wait_listening(c: &Container) {
    c.wait_for(
        &format!("{SOCK_UNIT} listening on :{SOCK_PORT}"),
        Duration::from_secs(10),
        || {
            let ss = c.sh(&format!("ss -Hltn 'sport = :{SOCK_PORT}'"));
            (!ss.trim().is_empty()).then_some(())
        },
    );
}

/// One client connection from outside the unit (a root shell of the container); the client's
/// own read-back and the accepted socket's, as the server printed it into the journal.
fn connect_once(c: &Container, pid: u32) -> (Readback, Readback) {
    let accepted_before = readbacks(&c.sh(&format!("journalctl -b --no-pager -o cat _PID={pid}")))
        .iter()
        .filter(|r| r.role == "accepted")
        .count();
    let client = readbacks(&c.sh(&format!(
        "/usr/local/bin/sock connect 127.0.0.1 {SOCK_PORT}"
    )));
    assert_eq!(client.len(), 1, "{client:?}");
    let accepted = c.wait_for(
        "the accepted socket's line in the journal",
        Duration::from_secs(10),
        || {
            readbacks(&c.sh(&format!("journalctl -b --no-pager -o cat _PID={pid}")))
                .into_iter()
                .filter(|r| r.role == "accepted")
                .nth(accepted_before)
        },
    );
    println!("client   {:?}\naccepted {accepted:?}", client[0]);
    (client[0].clone(), accepted)
}

/// The unit covered by one live policy with the drop-in's values; its cgroup id.
fn assert_covered(c: &Container, round: &str) -> u64 {
    let (dir, id, of_pid) = live_cgroup(c, SOCK_UNIT);
    let policies = bpf_status(c);
    println!("{round}: {SOCK_UNIT} in {dir} (cgroup {id}); bpf status: {policies:?}");
    assert!(
        dir.ends_with(&of_pid),
        "the main process is in {of_pid}, not in {dir}"
    );
    assert_eq!(
        policies.len(),
        1,
        "{round}: one policy expected (no stale one left): {policies:?}"
    );
    let policy = &policies[0];
    assert_eq!(policy.cgroup, dir, "{round}: {policy:?}");
    assert_eq!(
        policy.cgroup_id, id,
        "{round}: not the live cgroup: {policy:?}"
    );
    assert!(!policy.stale, "{round}: {policy:?}");
    assert_eq!(policy.values, Some(SHIPPED), "{round}: {policy:?}");
    assert_eq!(policy.override_policy, "yes", "{round}: {policy:?}");

    // A connection: the accepted socket carries the drop-in's values although the server set
    // its own right after accept4 (calls succeeded: the policy replaced the values in place).
    let pid = c.main_pid(SOCK_UNIT);
    let (client, accepted) = connect_once(c, pid);
    assert!(
        accepted.keepalive && accepted.values == SHIPPED,
        "{round}: accepted socket {accepted:?}, expected {SHIPPED:?}"
    );
    assert_eq!(accepted.calls, "-/0,0,0", "{round}: {accepted:?}");
    // The client is not in the unit's cgroup: the kernel's defaults, untouched.
    assert!(!client.keepalive, "{round}: client {client:?}");

    // The listener, read from the live socket, and judged by `inspect` against the policy.
    let listening: Vec<Socket> = sockets(c, pid)
        .into_iter()
        .filter(|s| s.role == "listening")
        .collect();
    assert_eq!(listening.len(), 1, "{round}: {listening:?}");
    assert!(
        listening[0].keepalive && listening[0].values == Some(SHIPPED),
        "{round}: listener {:?}",
        listening[0]
    );
    let inspect = c.exec(&format!("keepalive-preload inspect {pid}"));
    println!(
        "{round}: keepalive-preload inspect {pid}:\n{}",
        inspect.stdout
    );
    assert!(
        inspect.success() && inspect.stdout.contains("eBPF policy attached to"),
        "{round}: inspect {pid}: {:?}\n{}{}",
        inspect.status,
        inspect.stdout,
        inspect.stderr
    );
    id
}

#[test]
#[ignore = "needs root: boots systemd in systemd-nspawn; scripts/test runs it"]
fn ebpf_dropin_on_a_static_dynamic_user_service() {
    let _serial = serial();
    let sock = static_sock();
    let started = Instant::now();
    let c = Container::boot_with("kpsb-ebpf", BPF_NSPAWN_ARGS);
    c.install_package();
    c.copy_in(&sock, "/usr/local/bin/sock", 0o755);
    c.write(
        &format!("/etc/systemd/system/{SOCK_UNIT}"),
        format!(
            "[Unit]\nDescription=kpsb static test server\n[Service]\nDynamicUser=yes\n\
             ExecStart=/usr/local/bin/sock serve 127.0.0.1 {SOCK_PORT} 1000 post=6:4:{} \
             post=6:5:{} post=6:6:{}\n",
            SERVER_OWN.idle, SERVER_OWN.interval, SERVER_OWN.count
        )
        .as_bytes(),
    );

    // Without the drop-in the accepted socket carries the server's own values.
    c.sh(&format!(
        "systemctl daemon-reload && systemctl start {SOCK_UNIT}"
    ));
    wait_listening(&c);
    let (_, own) = connect_once(&c, c.main_pid(SOCK_UNIT));
    assert!(
        !own.keepalive && own.values == SERVER_OWN,
        "without the drop-in: {own:?}"
    );
    assert!(bpf_status(&c).is_empty());
    c.sh(&format!("systemctl stop {SOCK_UNIT}"));

    // docs/ebpf.md, step by step.
    c.sh(&format!(
        "mkdir -p /etc/systemd/system/{SOCK_UNIT}.d && \
         cp {BPF_DROPIN} /etc/systemd/system/{SOCK_UNIT}.d/ && \
         systemctl daemon-reload && systemctl start {SOCK_UNIT}"
    ));
    assert_eq!(c.property(SOCK_UNIT, "ActiveState"), "active");
    wait_listening(&c);
    let first = assert_covered(&c, "start");

    // A restart makes a new cgroup: attached to it before the server runs, the old one gone.
    c.sh(&format!("systemctl restart {SOCK_UNIT}"));
    wait_listening(&c);
    let second = assert_covered(&c, "restart");
    assert_ne!(first, second, "the restart kept the cgroup");

    // The stop removes the policy.
    c.sh(&format!("systemctl stop {SOCK_UNIT}"));
    assert_eq!(c.property(SOCK_UNIT, "ActiveState"), "inactive");
    let left = bpf_status(&c);
    assert!(left.is_empty(), "after stop: {left:?}");
    // A bad value in an operator's override: the start is skipped with the reason, nothing
    // attached.
    c.systemctl_edit(SOCK_UNIT, "[Service]\nEnvironment=KEEPIDLE=1e3\n");
    assert_skipped(&c, SOCK_UNIT, "KEEPIDLE=\"1e3\"");
    let left = bpf_status(&c);
    assert!(left.is_empty(), "after a refused start: {left:?}");
    c.sh(&format!(
        "rm /etc/systemd/system/{SOCK_UNIT}.d/override.conf && systemctl daemon-reload"
    ));

    let journal = c.journal(SOCK_UNIT);
    let ours: Vec<&str> = journal
        .lines()
        .filter(|line| line.contains("keepalive-preload"))
        .collect();
    println!(
        "{SOCK_UNIT}'s journal, keepalive-preload's lines:\n{}",
        ours.join("\n")
    );
    let before_bad_value = &journal[..journal.find("KEEPIDLE=\"1e3\"").unwrap_or(journal.len())];
    assert!(
        !before_bad_value.contains("Failed") && !before_bad_value.contains("status=2"),
        "{journal}"
    );
    println!(
        "eBPF drop-in under systemd: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The package removed, the eBPF drop-in left in /etc (as `dpkg -r` leaves an operator's
/// copies): as with the library's drop-in, the service still starts, without the policy (the
/// drop-in's shell guard says so in the journal: without it the missing command failed the
/// start, 203/EXEC), postrm names the copy, and nothing the command pinned outlives the package
/// (prerm detaches every policy: once the command is gone, `ExecStopPost=` is skipped).
#[test]
#[ignore = "needs root: boots systemd in systemd-nspawn; scripts/test runs it"]
fn ebpf_dropin_left_behind_after_dpkg_r() {
    let _serial = serial();
    let sock = static_sock();
    let c = Container::boot_with("kpsb-dpkgr", BPF_NSPAWN_ARGS);
    c.install_package();
    c.copy_in(&sock, "/usr/local/bin/sock", 0o755);
    c.write(
        &format!("/etc/systemd/system/{SOCK_UNIT}"),
        format!(
            "[Service]\nDynamicUser=yes\n\
             ExecStart=/usr/local/bin/sock serve 127.0.0.1 {SOCK_PORT} 1000\n"
        )
        .as_bytes(),
    );
    c.sh(&format!(
        "mkdir -p /etc/systemd/system/{SOCK_UNIT}.d && \
         cp {BPF_DROPIN} /etc/systemd/system/{SOCK_UNIT}.d/ && \
         systemctl daemon-reload && systemctl start {SOCK_UNIT}"
    ));
    assert_eq!(bpf_status(&c).len(), 1);
    // Where the policies are pinned: bpf attach mounted a bpffs there (/sys is read-only here).
    let pins = "/run/keepalive-preload/bpffs/keepalive-preload";
    c.sh(&format!("test -d {pins}/cgroup-*"));

    let removed = c.exec("dpkg -r keepalive-preload");
    println!(
        "dpkg -r: {:?}\n{}{}",
        removed.status, removed.stdout, removed.stderr
    );
    assert!(removed.success(), "dpkg -r: {removed:?}");
    let mut wrong = Vec::new();
    // prerm: the live policy detached (the service keeps running); postrm: the copy named.
    let left = c.sh(&format!("ls {pins} 2>/dev/null; true"));
    if !left.trim().is_empty() {
        wrong.push(format!("pinned right after dpkg -r: {left}"));
    }
    if !removed.stderr.contains(&format!(
        "/etc/systemd/system/{SOCK_UNIT}.d/keepalive-bpf.conf stays"
    )) {
        wrong.push("postrm does not name the eBPF drop-in left in /etc".to_owned());
    }
    let restart = c.systemctl(&format!("restart {SOCK_UNIT}"));
    if restart.success() {
        let journal = c.journal(SOCK_UNIT);
        let said = format!(
            "keepalive-preload is not installed: {SOCK_UNIT} starts without the eBPF policy"
        );
        if !journal.contains(&said) {
            wrong.push(format!("the journal does not say {said:?}:\n{journal}"));
        }
        if c.property(SOCK_UNIT, "ActiveState") != "active" {
            wrong.push(format!("{SOCK_UNIT} is not active after its restart"));
        }
    } else {
        wrong.push(format!(
            "{SOCK_UNIT} does not start after dpkg -r with the eBPF drop-in left in /etc:\n{}",
            c.systemctl(&format!("status {SOCK_UNIT}")).stdout
        ));
    }
    c.sh(&format!("systemctl stop {SOCK_UNIT}"));
    let left = c.sh(&format!("ls {pins} 2>/dev/null; true"));
    if !left.trim().is_empty() {
        wrong.push(format!(
            "pinned after dpkg -r and the unit's stop, with no command left to remove it: {left}"
        ));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
