//! The units, started by a real systemd (issue 11): Debian bookworm's systemd as PID 1 in
//! `systemd-nspawn`, the project's own `.deb` installed in it with `dpkg -i`, and then what an
//! operator does, step by step as docs/systemd.md says: Debian's `redis-server.service` with
//! the drop-in, three `redis-cluster@` nodes; `apply --unit` on a running service without the
//! library, and the `--unit` names systemctl refuses. A node on another "host" that dies is in
//! tests/systemd_dead_peer.rs, the eBPF policy's drop-in in tests/systemd_ebpf*.rs.
//!
//! Every value is read back from the live sockets of the units' processes by
//! `keepalive-preload inspect` run inside the container. Needs root, systemd-container and
//! debootstrap (scripts/test installs them); the first run builds the container's tree with
//! debootstrap (cached under /var/tmp). Never skips. Times are printed: run with --nocapture.
//!
//! A new case is a `#[test]` that takes `serial()`, boots a `Container`, installs the package
//! and drives it with `sh`, `systemctl`, `systemctl_edit` and `journal`; the container is
//! killed and its cgroups removed when the handle drops, also when the test fails.

mod systemd_support;

use std::time::{Duration, Instant};

use systemd_support::readback::{Values, parse_sockets, sockets};
use systemd_support::redis::{
    EXAMPLE_CONFIG, EXAMPLE_DROPIN, PASSWORD, PORTS, SHIPPED, assert_all_carry, assert_bus_links,
    cli, cluster_units, info_field, subscribed, wait_cluster_ok,
};
use systemd_support::units::{assert_refused, installed_library, mapped};
use systemd_support::{Container, serial};

#[test]
#[ignore = "needs root: boots systemd in systemd-nspawn; scripts/test runs it"]
fn debian_redis_server_with_the_dropin() {
    let _serial = serial();
    let c = Container::boot("debian");
    c.install_package();
    let library = installed_library(&c);
    assert_eq!(c.property("redis-server", "Restart"), "always");

    // docs/systemd.md, step by step.
    c.sh(&format!(
        "mkdir -p /etc/systemd/system/redis-server.service.d && \
         cp {EXAMPLE_DROPIN} /etc/systemd/system/redis-server.service.d/ && \
         systemctl daemon-reload && systemctl restart redis-server"
    ));
    assert_eq!(c.property("redis-server", "ActiveState"), "active");
    let pid = c.main_pid("redis-server");
    assert!(
        mapped(&c, pid, &library),
        "{library} is not mapped into redis-server"
    );
    println!("redis-server (PID {pid}) maps {library}");

    // A client link: Redis sets its own tcp-keepalive (300/100/3) on it, the drop-in's
    // KEEPALIVE_OVERRIDE=yes makes the library's values win.
    let sockets = subscribed(&c, pid, 6379, "kpsd");
    assert_all_carry(&sockets, "redis-server", SHIPPED);
    let inspect = c.exec(&format!("keepalive-preload inspect --expect-env {pid}"));
    println!(
        "keepalive-preload inspect --expect-env {pid}:\n{}",
        inspect.stdout
    );
    assert!(
        inspect.success(),
        "inspect --expect-env: {:?}\n{}",
        inspect.status,
        inspect.stderr
    );

    // The library's own line, written by the server process at load (KEEPALIVE_LOG=info), and
    // the check's before it.
    let own = c.sh(&format!("journalctl -b --no-pager -o cat _PID={pid}"));
    let expected_line = "idle=5s interval=2s count=3 user_timeout=auto=11000ms override=yes";
    assert!(
        own.lines()
            .any(|line| line.contains("keepalive-preload") && line.contains(expected_line)),
        "no configuration line of the library from redis-server (PID {pid}) in the journal:\n{own}"
    );
    let journal = c.journal("redis-server");
    assert!(
        journal.contains(&format!("library {library} is loaded")),
        "{journal}"
    );

    // A bad value, as an operator would make it.
    c.systemctl_edit("redis-server", "[Service]\nEnvironment=KEEPIDLE=1e3\n");
    assert_refused(&c, "redis-server", "KEEPIDLE=\"1e3\"");
    c.sh("rm /etc/systemd/system/redis-server.service.d/override.conf && systemctl daemon-reload && systemctl restart redis-server");
    assert_eq!(c.property("redis-server", "ActiveState"), "active");

    // The package removed, the drop-in left in /etc: Redis still starts (without the library).
    let removed = c.exec("dpkg -r keepalive-preload");
    assert!(removed.success(), "dpkg -r: {}", removed.stderr);
    assert!(
        removed
            .stderr
            .contains("redis-server.service.d/keepalive-preload.conf stays"),
        "postrm does not name the drop-in left in /etc:\n{}",
        removed.stderr
    );
    c.sh("test -f /etc/systemd/system/redis-server.service.d/keepalive-preload.conf");
    let restart = c.systemctl("restart redis-server");
    assert!(
        restart.success(),
        "redis-server does not start after dpkg -r keepalive-preload:\n{}\n{}",
        restart.stderr,
        c.systemctl("status redis-server").stdout
    );
    assert_eq!(c.property("redis-server", "ActiveState"), "active");
    assert_eq!(cli(&c, "127.0.0.1", 6379, None, "ping").trim(), "PONG");
    let pid = c.main_pid("redis-server");
    assert!(!mapped(&c, pid, &library));
    // Not silently: ld.so says so in the journal (the drop-in's comment used to say otherwise).
    let journal = c.journal("redis-server");
    let last_start = &journal[journal.rfind("Starting redis-server").unwrap_or(0)..];
    assert!(
        last_start.contains("cannot be preloaded"),
        "no ld.so error in the journal of the start without the package:\n{last_start}"
    );
    println!("after dpkg -r: redis-server active, PID {pid}; its journal:\n{last_start}");
}

#[test]
#[ignore = "needs root: boots systemd in systemd-nspawn; scripts/test runs it"]
fn redis_cluster_template_three_nodes() {
    let _serial = serial();
    let c = Container::boot("cluster");
    c.install_package();
    let units = cluster_units();
    let names: Vec<&str> = units.iter().map(|(unit, _)| unit.as_str()).collect();
    c.sh(&format!("systemctl enable --now {}", names.join(" ")));
    // No CONFIG: no config file argument at all (an empty ${CONFIG} was taken for one, "/").
    for port in PORTS {
        let info = cli(&c, "127.0.0.1", port, None, "info server");
        assert_eq!(
            info_field(&info, "config_file").as_deref(),
            Some(""),
            "node {port}"
        );
    }
    let nodes: Vec<(&str, u16)> = PORTS.iter().map(|port| ("127.0.0.1", *port)).collect();
    c.sh(
        "redis-cli --cluster create 127.0.0.1:40001 127.0.0.1:40002 127.0.0.1:40003 --cluster-yes",
    );
    wait_cluster_ok(&c, &nodes, None);
    let ids: Vec<String> = PORTS
        .iter()
        .map(|port| {
            cli(&c, "127.0.0.1", *port, None, "cluster myid")
                .trim()
                .to_owned()
        })
        .collect();
    let checked = assert_bus_links(&c, &units, SHIPPED);
    println!("{checked} bus links carry {SHIPPED:?}");
    assert_eq!(checked, 12);

    // `systemctl edit redis-cluster@`: every node, after a restart, which keeps nodes.conf.
    c.systemctl_edit(
        "redis-cluster@",
        "[Service]\nEnvironment=KEEPIDLE=7 KEEPINTVL=3 KEEPCNT=4\n",
    );
    c.sh(&format!("systemctl restart {}", names.join(" ")));
    wait_cluster_ok(&c, &nodes, None);
    for (port, id) in PORTS.iter().zip(&ids) {
        assert_eq!(
            &cli(&c, "127.0.0.1", *port, None, "cluster myid").trim(),
            id
        );
        c.sh(&format!(
            "grep -q myself /var/lib/redis-cluster/{port}/nodes.conf"
        ));
    }
    let edited = Values {
        idle: 7,
        interval: 3,
        count: 4,
        user_timeout_ms: 19000,
    };
    assert_eq!(assert_bus_links(&c, &units, edited), 12);

    // A config file, as the shipped example says, and CONFIG REWRITE into it.
    c.sh(&format!(
        "install -d -o redis -g redis -m 0750 /etc/redis/cluster && \
         install -o redis -g redis -m 0640 {EXAMPLE_CONFIG} /etc/redis/cluster/40001.conf && \
         sed -i 's/CHANGE-ME/{PASSWORD}/' /etc/redis/cluster/40001.conf && \
         echo 'maxmemory 123mb' >> /etc/redis/cluster/40001.conf && \
         echo CONFIG=/etc/redis/cluster/40001.conf > /etc/redis/cluster/40001.env && \
         systemctl restart redis-cluster@40001"
    ));
    let auth = Some(PASSWORD);
    let info = cli(&c, "127.0.0.1", 40001, auth, "info server");
    assert_eq!(
        info_field(&info, "config_file").as_deref(),
        Some("/etc/redis/cluster/40001.conf")
    );
    assert!(cli(&c, "127.0.0.1", 40001, auth, "config get maxmemory").contains("128974848"));
    cli(&c, "127.0.0.1", 40001, auth, "config set maxmemory 77mb");
    let rewrite = cli(&c, "127.0.0.1", 40001, auth, "config rewrite");
    assert_eq!(rewrite.trim(), "OK", "CONFIG REWRITE");
    c.sh("grep -qx 'maxmemory 77mb' /etc/redis/cluster/40001.conf");
    c.sh("systemctl restart redis-cluster@40001");
    assert!(cli(&c, "127.0.0.1", 40001, auth, "config get maxmemory").contains("80740352"));
    assert_eq!(
        cli(&c, "127.0.0.1", 40001, auth, "cluster myid").trim(),
        ids[0]
    );
    println!("CONFIG file and CONFIG REWRITE: ok");

    // A bad value in one node's override.
    c.systemctl_edit("redis-cluster@40002", "[Service]\nEnvironment=KEEPCNT=0\n");
    assert_refused(&c, "redis-cluster@40002", "KEEPCNT=\"0\"");
    c.sh("rm /etc/systemd/system/redis-cluster@40002.service.d/override.conf && systemctl daemon-reload && systemctl restart redis-cluster@40002");
    assert_eq!(c.property("redis-cluster@40002", "ActiveState"), "active");
}

// `apply --unit` on a running service without the library (issue 11).

const REDIS_UNIT: &str = "kpsb-redis.service";
const REDIS_PORT: u16 = 47201;

#[test]
#[ignore = "needs root: boots systemd in systemd-nspawn; scripts/test runs it"]
fn apply_to_a_running_redis_unit_without_the_library() {
    let _serial = serial();
    let started = Instant::now();
    let c = Container::boot("kpsb-apply");
    c.install_package();
    let library = installed_library(&c);
    // A service started without the library: a transient unit, as `systemd-run` makes one.
    c.sh(&format!(
        "systemd-run --unit {REDIS_UNIT} /usr/bin/redis-server --port {REDIS_PORT} --save '' \
         --appendonly no"
    ));
    c.wait_for("redis-server answering", Duration::from_secs(10), || {
        let run = c.exec(&format!("redis-cli -p {REDIS_PORT} ping"));
        (run.stdout.trim() == "PONG").then_some(())
    });
    let pid = c.main_pid(REDIS_UNIT);
    assert!(!mapped(&c, pid, &library), "{library} in redis-server");
    let before = subscribed(&c, pid, REDIS_PORT, "kpsb");
    for socket in &before {
        println!(
            "before apply: {} {} {} keepalive={} {:?}",
            socket.role, socket.local, socket.remote, socket.keepalive, socket.values
        );
    }
    // Redis' own tcp-keepalive (300 s, so 300/100/3) on its client link; nothing on the listeners.
    let redis_own = Values {
        idle: 300,
        interval: 100,
        count: 3,
        user_timeout_ms: 0,
    };
    for socket in &before {
        match socket.role.as_str() {
            "accepted" => assert!(
                socket.keepalive && socket.values == Some(redis_own),
                "{socket:?}"
            ),
            "listening" => assert!(!socket.keepalive, "{socket:?}"),
            _ => panic!("{socket:?}"),
        }
    }

    let expected = Values {
        idle: 2,
        interval: 1,
        count: 3,
        user_timeout_ms: 3000,
    };
    let applied = c.exec(&format!(
        "keepalive-preload apply --unit {REDIS_UNIT} --idle 2 --interval 1 --count 3 \
         --user-timeout 3s --override yes --json"
    ));
    println!(
        "apply --unit {REDIS_UNIT} ({:?}):\n{}{}",
        applied.status, applied.stdout, applied.stderr
    );
    assert_eq!(applied.status, Some(0), "{}", applied.stderr);
    let reported = parse_sockets(&applied.stdout);
    assert_eq!(reported.len(), before.len(), "{}", applied.stdout);
    for socket in &reported {
        assert!(
            socket.keepalive && socket.values == Some(expected),
            "apply reported {socket:?}"
        );
    }

    // Read back from the live sockets: the client link and the listeners.
    let after = sockets(&c, pid);
    assert_eq!(after.len(), before.len(), "{after:?}");
    for role in ["accepted", "listening"] {
        assert!(
            after.iter().any(|s| s.role == role),
            "no {role} socket: {after:?}"
        );
    }
    for socket in &after {
        println!(
            "after apply: {} {} {} keepalive={} {:?}",
            socket.role, socket.local, socket.remote, socket.keepalive, socket.values
        );
        assert!(
            socket.keepalive && socket.values == Some(expected),
            "after apply: {socket:?}"
        );
    }
    // Again, as text: nothing left to change.
    let again = c.exec(&format!(
        "keepalive-preload apply --unit {REDIS_UNIT} --idle 2 --interval 1 --count 3 \
         --user-timeout 3s --override yes"
    ));
    println!(
        "apply --unit {REDIS_UNIT} again ({:?}):\n{}{}",
        again.status, again.stdout, again.stderr
    );
    assert_eq!(again.status, Some(0), "{}", again.stderr);
    assert_eq!(sockets(&c, pid).len(), after.len());
    assert_eq!(c.main_pid(REDIS_UNIT), pid, "redis-server was restarted");
    assert_eq!(
        c.exec(&format!("redis-cli -p {REDIS_PORT} ping"))
            .stdout
            .trim(),
        "PONG"
    );

    // A unit that does not exist: status 2 and one line.
    let missing = c.exec("keepalive-preload apply --unit no-such.service --idle 2");
    println!(
        "apply --unit no-such.service ({:?}): {}",
        missing.status, missing.stderr
    );
    assert_eq!(missing.status, Some(2), "{missing:?}");
    assert!(missing.stdout.is_empty(), "{missing:?}");
    let lines: Vec<&str> = missing.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{missing:?}");
    assert!(
        lines[0].contains("no-such.service") && lines[0].contains("no such unit"),
        "{missing:?}"
    );
    println!("apply --unit: {:.1} s", started.elapsed().as_secs_f64());
}

/// `--unit` with a name systemctl refuses: exit status 2 and one line, as for a unit that does
/// not exist (systemctl's own two-line error is not passed through).
#[test]
#[ignore = "needs root: boots systemd in systemd-nspawn; scripts/test runs it"]
fn unit_name_errors_are_one_line() {
    let _serial = serial();
    let c = Container::boot("kpsb-names");
    c.install_package();
    let mut wrong = Vec::new();
    for command in [
        "apply --unit no-such.service --idle 2",
        "apply --unit 'bad name!' --idle 2",
        "bpf attach --unit no-such.service",
        "bpf attach --unit 'bad name!'",
        "bpf detach --unit 'bad name!'",
    ] {
        let run = c.exec(&format!("keepalive-preload {command}"));
        println!(
            "keepalive-preload {command} ({:?}):\n{}",
            run.status, run.stderr
        );
        if run.status != Some(2) || run.stderr.lines().count() != 1 || !run.stdout.is_empty() {
            wrong.push(format!("keepalive-preload {command}: {run:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "not exit status 2 with one line:\n{}",
        wrong.join("\n")
    );
}
