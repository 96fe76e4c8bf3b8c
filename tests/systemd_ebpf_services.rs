//! The eBPF policy's drop-in on a service (issue 11 item 4, issue 12 item 3), under a real
//! systemd: Debian bookworm's systemd as PID 1 in `systemd-nspawn` (with the arguments the
//! policy needs, `BPF_NSPAWN_ARGS`), the project's own `.deb` installed in it with `dpkg -i`,
//! and then what an operator does, step by step as docs/ebpf.md says: the drop-in on
//! Debian's sandboxed `redis-server.service`, alone and with the library's drop-in, and on a
//! socket-activated service, whose listener is made in the socket unit's cgroup (the remedy: the
//! shipped `[Socket]` drop-in). The drop-in on a service of its own making is in
//! tests/systemd_ebpf.rs.
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

use std::time::Duration;

use systemd_support::ebpf::{
    BPF_DROPIN, BPF_SOCKET_DROPIN, assert_only_policy_on_live_cgroup, bpf_status, live_cgroup_dir,
};
use systemd_support::readback::readbacks;
use systemd_support::redis::{EXAMPLE_DROPIN, SHIPPED, assert_all_carry, subscribed};
use systemd_support::units::{assert_skipped, installed_library, mapped};
use systemd_support::{BPF_NSPAWN_ARGS, Container, serial, static_activated, static_sock};

/// The socket-activated service's port.
const ACT_PORT: u16 = 47102;

/// The eBPF drop-in on Debian's `redis-server.service` (sandboxed, `Restart=always`, the
/// library not loaded): its client link, read from the live socket, carries the drop-in's
/// values over Redis' own tcp-keepalive; then with the library's drop-in as well, both with
/// the same values. A bad value is refused without retries, the reason in `systemctl status`:
/// `bpf attach` runs from `ExecCondition=`, whose exit status 2 skips the start (the unit ends
/// inactive), where a failing `ExecStartPre=` was rerun by `Restart=always` until the start
/// limit and the status showed only "Start request repeated too quickly".
#[test]
#[ignore = "needs root: boots systemd in systemd-nspawn; scripts/test runs it"]
fn ebpf_dropin_on_debian_redis_server() {
    let _serial = serial();
    let c = Container::boot_with("kpsb-redis", BPF_NSPAWN_ARGS);
    c.install_package();
    let library = installed_library(&c);
    c.sh(&format!(
        "mkdir -p /etc/systemd/system/redis-server.service.d && \
         cp {BPF_DROPIN} /etc/systemd/system/redis-server.service.d/ && \
         systemctl daemon-reload && systemctl restart redis-server"
    ));
    let pid = c.main_pid("redis-server");
    assert!(!mapped(&c, pid, &library));
    assert_only_policy_on_live_cgroup(&c, "redis-server");
    let all = subscribed(&c, pid, 6379, "kpsb");
    assert_all_carry(&all, "redis-server under the eBPF policy", SHIPPED);

    // With the library's drop-in too (docs/ebpf.md: both act, with the same values).
    c.sh(&format!(
        "cp {EXAMPLE_DROPIN} /etc/systemd/system/redis-server.service.d/ && \
         systemctl daemon-reload && systemctl restart redis-server"
    ));
    let pid = c.main_pid("redis-server");
    assert!(mapped(&c, pid, &library), "{library} not in redis-server");
    assert_only_policy_on_live_cgroup(&c, "redis-server");
    let all = subscribed(&c, pid, 6379, "kpsb");
    assert_all_carry(
        &all,
        "redis-server with the library and the eBPF policy",
        SHIPPED,
    );
    let inspect = c.exec(&format!("keepalive-preload inspect {pid}"));
    assert!(inspect.success(), "inspect {pid}: {inspect:?}");

    // A bad value, as an operator would make it.
    assert_eq!(c.property("redis-server", "Restart"), "always");
    c.systemctl_edit("redis-server", "[Service]\nEnvironment=KEEPIDLE=1e3\n");
    assert_skipped(&c, "redis-server", "KEEPIDLE=\"1e3\"");
    // Nothing live. With the library's drop-in too, KEEPALIVE_STRICT=yes makes the library stop
    // the stop's `bpf detach` as well (the bad value is in its environment): the old cgroup's
    // policy stays, stale, until the next start or `bpf detach --stale` (docs/ebpf.md).
    let left = bpf_status(&c);
    println!("after the skipped start: {left:?}");
    assert!(
        left.iter().all(|p| p.stale),
        "a live policy after a skipped start: {left:?}"
    );
}

/// The eBPF drop-in on a socket-activated service (`kpsb-act.socket`, `Accept=no`): systemd
/// makes the listener in the socket unit's cgroup, outside the service's, and a socket belongs
/// to the cgroup it was made in (an accepted one to its listener's), so neither program of the
/// service's policy runs for the connections the service accepts. `bpf attach` says so in the
/// service's journal, in one line naming `kpsb-act.socket` and the remedy; the remedy, the
/// shipped `keepalive-bpf-socket.conf` in `kpsb-act.socket.d/`, covers the listener and the
/// accepted connection, silences the line, and its stop removes the policy.
#[test]
#[ignore = "needs root: boots systemd in systemd-nspawn; scripts/test runs it"]
fn ebpf_dropin_on_a_socket_activated_service() {
    let _serial = serial();
    let server = static_activated();
    let sock = static_sock();
    let c = Container::boot_with("kpsb-act", BPF_NSPAWN_ARGS);
    c.install_package();
    c.copy_in(&server, "/usr/local/bin/activated", 0o755);
    c.copy_in(&sock, "/usr/local/bin/sock", 0o755);
    c.write(
        "/etc/systemd/system/kpsb-act.socket",
        format!("[Socket]\nListenStream=127.0.0.1:{ACT_PORT}\n").as_bytes(),
    );
    c.write(
        "/etc/systemd/system/kpsb-act.service",
        b"[Service]\nDynamicUser=yes\nExecStart=/usr/local/bin/activated\n",
    );
    c.sh(&format!(
        "mkdir -p /etc/systemd/system/kpsb-act.service.d && \
         cp {BPF_DROPIN} /etc/systemd/system/kpsb-act.service.d/ && \
         systemctl daemon-reload && systemctl start kpsb-act.socket"
    ));
    let client = readbacks(&c.sh(&format!("/usr/local/bin/sock connect 127.0.0.1 {ACT_PORT}")));
    assert_eq!(client.len(), 1, "{client:?}");
    let lines = c.wait_for(
        "the accepted socket's line in the journal",
        Duration::from_secs(10),
        || {
            let lines = readbacks(&c.journal("kpsb-act.service"));
            lines.iter().any(|r| r.role == "accepted").then_some(lines)
        },
    );
    assert_only_policy_on_live_cgroup(&c, "kpsb-act.service");
    let accepted = lines.iter().find(|r| r.role == "accepted").unwrap();
    let listener = lines.iter().find(|r| r.role == "listener").unwrap();
    println!("socket-activated: listener {listener:?}\naccepted {accepted:?}");
    // Not covered: the connection carries the server's own values, keepalive off...
    assert!(
        !accepted.keepalive && accepted.values != SHIPPED,
        "covered after all: {accepted:?}"
    );
    // ...and bpf attach said so, in one line naming the socket unit and the remedy.
    let journal = c.journal("kpsb-act.service");
    let said: Vec<&str> = journal
        .lines()
        .filter(|line| line.contains("kpsb-act.socket"))
        .collect();
    println!("bpf attach on kpsb-act.service said: {said:?}");
    assert_eq!(
        said.len(),
        1,
        "one line naming kpsb-act.socket expected:\n{journal}"
    );
    for needle in [
        "keepalive-preload: kpsb-act.service is socket-activated by kpsb-act.socket",
        "/usr/share/doc/keepalive-preload/examples/keepalive-bpf-socket.conf",
        "/etc/systemd/system/kpsb-act.socket.d/",
    ] {
        assert!(said[0].contains(needle), "{needle:?} not in {:?}", said[0]);
    }

    // The remedy, as the line and docs/ebpf.md give it: the [Socket] drop-in on the socket unit.
    c.sh(&format!(
        "systemctl stop kpsb-act.socket kpsb-act.service && \
         mkdir -p /etc/systemd/system/kpsb-act.socket.d && \
         cp {BPF_SOCKET_DROPIN} /etc/systemd/system/kpsb-act.socket.d/ && \
         systemctl daemon-reload && systemctl start kpsb-act.socket"
    ));
    let socket_dir = live_cgroup_dir(&c, "kpsb-act.socket");
    readbacks(&c.sh(&format!("/usr/local/bin/sock connect 127.0.0.1 {ACT_PORT}")));
    let (pid, lines) = c.wait_for(
        "the accepted socket's line in the journal, with the socket unit's drop-in",
        Duration::from_secs(10),
        || {
            let pid = c.property("kpsb-act.service", "MainPID");
            let lines = readbacks(&c.sh(&format!("journalctl -b --no-pager -o cat _PID={pid}")));
            lines
                .iter()
                .any(|r| r.role == "accepted")
                .then_some((pid, lines))
        },
    );
    println!("with the [Socket] drop-in: {lines:?}");
    for line in &lines {
        assert!(
            line.keepalive && line.values == SHIPPED,
            "with the drop-in on kpsb-act.socket: {line:?}"
        );
    }
    let policies = bpf_status(&c);
    assert!(
        policies.iter().any(|p| p.cgroup == socket_dir && !p.stale),
        "no policy on {socket_dir}: {policies:?}"
    );
    // The service's attach, this time, has nothing to say about the socket unit.
    let journal = c.sh("journalctl -b --no-pager -o cat _SYSTEMD_UNIT=kpsb-act.service");
    let said = journal
        .lines()
        .filter(|line| line.contains("kpsb-act.socket"))
        .count();
    assert_eq!(
        said, 1,
        "the line again, with the socket unit covered (after PID {pid}):\n{journal}"
    );
    c.sh("systemctl stop kpsb-act.socket kpsb-act.service");
    let left = bpf_status(&c);
    assert!(left.is_empty(), "after stop: {left:?}");
}
