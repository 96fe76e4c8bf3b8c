//! The units, started by a real systemd (issue 11): Debian bookworm's systemd as PID 1 in
//! `systemd-nspawn`, the project's own `.deb` installed in it with `dpkg -i`, and then what an
//! operator does, step by step as docs/systemd.md says: Debian's `redis-server.service` with
//! the drop-in, three `redis-cluster@` nodes, a node on another "host" (a network namespace,
//! through a `NetworkNamespacePath=` drop-in) that dies.
//!
//! Every value is read back from the live sockets of the units' processes by
//! `keepalive-preload inspect` run inside the container; dead peers are real (iptables DROP in
//! and out in the peer's namespace: no FIN, no RST). Needs root, systemd-container and
//! debootstrap (scripts/test installs them); the first run builds the container's tree with
//! debootstrap (cached under /var/tmp). Never skips. Times are printed: run with --nocapture.
//!
//! A new case is a `#[test]` that takes `serial()`, boots a `Container`, installs the package
//! and drives it with `sh`, `systemctl`, `systemctl_edit` and `journal`; the container is
//! killed and its cgroups removed when the handle drops, also when the test fails.

mod systemd_support;

use std::time::{Duration, Instant};

use systemd_support::{Container, serial};

/// The shipped units' values and their bound: KEEPIDLE + KEEPINTVL x KEEPCNT = 11 s.
const SHIPPED: Values = Values {
    idle: 5,
    interval: 2,
    count: 3,
    user_timeout_ms: 11000,
};
const SHIPPED_BOUND_S: f64 = 11.0;
/// Polling (100 ms) and scheduling on a loaded 2-core machine.
const SLACK_S: f64 = 1.5;
/// How long the dead peer's link is watched without the library: well past the bound, well
/// short of Redis' own 30 + 3 x 10 s.
const BASELINE_OBSERVE_S: f64 = 20.0;

const PORTS: [u16; 3] = [40001, 40002, 40003];
const PASSWORD: &str = "kpsd-secret-7f3a";
const EXAMPLE_CONFIG: &str = "/usr/share/doc/keepalive-preload/examples/redis-cluster/node.conf";
const EXAMPLE_DROPIN: &str =
    "/usr/share/doc/keepalive-preload/examples/redis-server.service.d/keepalive-preload.conf";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Values {
    idle: u32,
    interval: u32,
    count: u32,
    user_timeout_ms: u32,
}

/// One socket of `keepalive-preload inspect --json`.
#[derive(Debug, Clone)]
struct Socket {
    local: String,
    remote: String,
    state: String,
    role: String,
    keepalive: bool,
    values: Option<Values>,
}

impl Socket {
    fn local_port(&self) -> u16 {
        port(&self.local)
    }
    fn remote_port(&self) -> u16 {
        port(&self.remote)
    }
    fn remote_host(&self) -> &str {
        host(&self.remote)
    }
}

fn port(address: &str) -> u16 {
    address
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or(0)
}

fn host(address: &str) -> &str {
    address
        .rsplit_once(':')
        .map_or("", |(host, _)| host.trim_matches(['[', ']']))
}

/// A flat field of one JSON line: string, number, boolean or null (None).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &line[start..];
    let value = if let Some(quoted) = rest.strip_prefix('"') {
        &quoted[..quoted.find('"')?]
    } else {
        rest[..rest.find([',', '}']).unwrap_or(rest.len())].trim()
    };
    (value != "null").then_some(value)
}

/// Every TCP socket of a process in the container, read from the live sockets.
fn sockets(c: &Container, pid: u32) -> Vec<Socket> {
    let run = c.exec(&format!("keepalive-preload inspect --json {pid}"));
    // 1: some socket lacks keepalive (the runs without the library); 2: an error.
    assert!(
        matches!(run.status, Some(0 | 1)),
        "inspect {pid}: {:?}\n{}",
        run.status,
        run.stderr
    );
    run.stdout
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| {
            let number = |key| field(line, key).and_then(|v| v.parse::<u32>().ok());
            let values = match (
                number("idle"),
                number("interval"),
                number("count"),
                number("user_timeout_ms"),
            ) {
                (Some(idle), Some(interval), Some(count), Some(user_timeout_ms)) => Some(Values {
                    idle,
                    interval,
                    count,
                    user_timeout_ms,
                }),
                _ => None,
            };
            Socket {
                local: field(line, "local").unwrap_or("").to_owned(),
                remote: field(line, "remote").unwrap_or("").to_owned(),
                state: field(line, "state").unwrap_or("").to_owned(),
                role: field(line, "role").unwrap_or("").to_owned(),
                keepalive: field(line, "keepalive") == Some("true"),
                values,
            }
        })
        .collect()
}

/// `redis-cli -h HOST -p PORT ARGS`, with the password when given.
fn cli(c: &Container, host: &str, port: u16, auth: Option<&str>, args: &str) -> String {
    let auth = auth.map_or(String::new(), |password| {
        format!("REDISCLI_AUTH='{password}' ")
    });
    c.sh(&format!("{auth}redis-cli -h {host} -p {port} {args}"))
}

fn info_field(info: &str, key: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.trim_end().strip_prefix(&format!("{key}:")))
        .map(str::to_owned)
}

/// Waits for cluster_state:ok on every node.
fn wait_cluster_ok(c: &Container, nodes: &[(&str, u16)], auth: Option<&str>) {
    let started = Instant::now();
    for &(host, port) in nodes {
        c.wait_for(
            &format!("cluster_state:ok on {host}:{port}"),
            Duration::from_secs(60),
            || {
                let run = c.exec(&format!(
                    "REDISCLI_AUTH='{}' redis-cli -h {host} -p {port} cluster info",
                    auth.unwrap_or("")
                ));
                run.stdout.contains("cluster_state:ok").then_some(())
            },
        );
    }
    println!(
        "cluster_state:ok on {} nodes after {:.1} s",
        nodes.len(),
        started.elapsed().as_secs_f64()
    );
}

/// The established cluster-bus links of a node on `port` (bus port + 10000): inbound ones to
/// its bus port, outbound ones to another node's bus port.
fn bus_links(c: &Container, pid: u32, port: u16) -> Vec<Socket> {
    let bus_ports: Vec<u16> = PORTS.iter().map(|p| p + 10000).collect();
    sockets(c, pid)
        .into_iter()
        .filter(|s| s.state == "ESTABLISHED")
        .filter(|s| {
            s.local_port() == port + 10000
                || (bus_ports.contains(&s.remote_port()) && s.remote_port() != port + 10000)
        })
        .collect()
}

/// Waits until every node has its 4 bus links (2 in, 2 out), then asserts each carries
/// `expected`. Returns how many links were checked.
fn assert_bus_links(c: &Container, units: &[(String, u16)], expected: Values) -> usize {
    let mut checked = 0;
    for (unit, port) in units {
        let pid = c.main_pid(unit);
        let links = c.wait_for(
            &format!("{unit}: 2 inbound and 2 outbound bus links"),
            Duration::from_secs(30),
            || {
                let links = bus_links(c, pid, *port);
                let inbound = links
                    .iter()
                    .filter(|s| s.local_port() == port + 10000)
                    .count();
                (inbound >= 2 && links.len() - inbound >= 2).then_some(links)
            },
        );
        for link in &links {
            let direction = if link.local_port() == port + 10000 {
                "in "
            } else {
                "out"
            };
            println!(
                "{unit} bus-{direction} {} -> {}: keepalive={} {:?}",
                link.local, link.remote, link.keepalive, link.values
            );
            assert!(
                link.keepalive && link.values == Some(expected),
                "{unit}: bus link {} -> {} carries keepalive={} {:?}, expected {expected:?}",
                link.local,
                link.remote,
                link.keepalive,
                link.values
            );
            checked += 1;
        }
    }
    checked
}

fn cluster_units() -> Vec<(String, u16)> {
    PORTS
        .iter()
        .map(|port| (format!("redis-cluster@{port}"), *port))
        .collect()
}

/// The library's path as the package installed it (dpkg -L).
fn installed_library(c: &Container) -> String {
    c.sh("dpkg -L keepalive-preload | grep '/libkeepalive_preload\\.so$'")
        .trim()
        .to_owned()
}

fn mapped(c: &Container, pid: u32, library: &str) -> bool {
    c.sh(&format!("cat /proc/{pid}/maps"))
        .lines()
        .any(|line| line.ends_with(library) && line.contains(" r-xp "))
}

/// A bad value is refused: the start fails, systemd does not retry it, and `systemctl status`
/// shows the reason (the defect: Restart= reran the failing check until the start limit and
/// status showed only "Start request repeated too quickly").
fn assert_refused(c: &Container, unit: &str, reason: &str) {
    let restart = c.systemctl(&format!("restart {unit}"));
    assert!(
        !restart.success(),
        "{unit} started with a bad value:\n{}",
        restart.stdout
    );
    // systemd would retry after RestartSec= (100 ms); give it time to.
    std::thread::sleep(Duration::from_secs(3));
    let status = c.systemctl(&format!("status {unit}"));
    println!(
        "systemctl status {unit} with a bad value:\n{}",
        status.stdout
    );
    assert_eq!(c.property(unit, "NRestarts"), "0", "{unit} was restarted");
    assert_eq!(c.property(unit, "ActiveState"), "failed");
    assert_eq!(c.property(unit, "Result"), "exit-code");
    assert!(
        status.stdout.contains(reason),
        "systemctl status {unit} does not show {reason:?}"
    );
    assert!(!status.stdout.contains("Start request repeated too quickly"));
}

#[test]
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
    c.sh("setsid redis-cli -p 6379 subscribe kpsd >/dev/null 2>&1 </dev/null &");
    let sockets = c.wait_for(
        "the subscriber's link on redis-server",
        Duration::from_secs(10),
        || {
            let all = sockets(&c, pid);
            all.iter()
                .any(|s| s.role == "accepted" && s.state == "ESTABLISHED")
                .then_some(all)
        },
    );
    for socket in &sockets {
        println!(
            "redis-server {} {} {} {:?}",
            socket.role, socket.local, socket.state, socket.values
        );
        assert!(
            socket.keepalive && socket.values == Some(SHIPPED),
            "redis-server socket {socket:?}"
        );
    }
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

/// What became of node 1's two bus links to the peer after it was blackholed.
struct Partition {
    inbound_gone_s: Option<f64>,
    outbound_gone_s: Option<f64>,
}

/// Blackholes the peer namespace (iptables DROP in and out: no FIN, no RST), publishes on node 1,
/// and watches the survivor's two bus links to it (in: peer -> :50001, out: -> peer:50003) for
/// up to `observe_s`, by their addresses, with `ss` in the survivor's namespace. Times count
/// from before the blackhole command starts (they include its own run time).
fn partition(c: &Container, expected: Option<Values>, observe_s: f64) -> Partition {
    let pid = c.main_pid("redis-cluster@40001");
    let (inbound, outbound) = c.wait_for(
        "node 1's bus links to and from the peer",
        Duration::from_secs(30),
        || {
            let links = bus_links(c, pid, 40001);
            let from_peer = |s: &&Socket| s.remote_host() == "10.77.0.2";
            let inbound = links
                .iter()
                .filter(from_peer)
                .find(|s| s.local_port() == 50001)?
                .clone();
            let outbound = links
                .iter()
                .filter(from_peer)
                .find(|s| s.remote_port() == 50003)?
                .clone();
            Some((inbound, outbound))
        },
    );
    for (what, link) in [("inbound", &inbound), ("outbound", &outbound)] {
        println!(
            "node 1 {what} bus link {} -> {}: keepalive={} {:?}",
            link.local, link.remote, link.keepalive, link.values
        );
        if let Some(expected) = expected {
            assert!(
                link.keepalive && link.values == Some(expected),
                "{what} link {link:?}"
            );
        }
    }
    let t0 = Instant::now();
    // A PUBLISH on node 1 right after the blackhole goes out on every outbound bus link: data
    // in flight from t = 0, so that the outbound time measures TCP_USER_TIMEOUT, not when Redis
    // next happens to ping the peer (up to ~2 s later).
    c.sh(&format!(
        "ip netns exec kpsd-peer sh -c 'iptables -I INPUT -j DROP && iptables -I OUTPUT -j DROP' && \
         REDISCLI_AUTH='{PASSWORD}' redis-cli -h 10.77.0.1 -p 40001 publish kpsd-dead-peer now >/dev/null"
    ));
    let mut result = Partition {
        inbound_gone_s: None,
        outbound_gone_s: None,
    };
    while t0.elapsed().as_secs_f64() < observe_s
        && (result.inbound_gone_s.is_none() || result.outbound_gone_s.is_none())
    {
        let ss = c.sh("ss -Htn state established");
        let up = |link: &Socket| {
            ss.lines().any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.contains(&link.local.as_str()) && fields.contains(&link.remote.as_str())
            })
        };
        let now = t0.elapsed().as_secs_f64();
        if result.inbound_gone_s.is_none() && !up(&inbound) {
            result.inbound_gone_s = Some(now);
        }
        if result.outbound_gone_s.is_none() && !up(&outbound) {
            result.outbound_gone_s = Some(now);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    c.sh("ip netns exec kpsd-peer iptables -F");
    let show = |gone: Option<f64>| {
        gone.map_or(format!("ESTABLISHED at {observe_s:.0} s"), |s| {
            format!("gone after {s:.2} s")
        })
    };
    println!(
        "peer blackholed: inbound link {}, outbound link {}",
        show(result.inbound_gone_s),
        show(result.outbound_gone_s)
    );
    result
}

#[test]
fn dead_peer_through_the_units_on_two_hosts() {
    let _serial = serial();
    let c = Container::boot("deadpeer");
    c.install_package();
    // A second "host": a network namespace with a veth to the container's own.
    c.sh("ip netns add kpsd-peer && \
         ip link add kpsd-host type veth peer name kpsd-peer0 netns kpsd-peer && \
         ip addr add 10.77.0.1/24 dev kpsd-host && ip link set kpsd-host up && \
         ip -n kpsd-peer addr add 10.77.0.2/24 dev kpsd-peer0 && \
         ip -n kpsd-peer link set kpsd-peer0 up && ip -n kpsd-peer link set lo up");
    c.sh("mkdir -p /etc/systemd/system/redis-cluster@40003.service.d");
    c.write(
        "/etc/systemd/system/redis-cluster@40003.service.d/netns.conf",
        b"[Service]\nNetworkNamespacePath=/run/netns/kpsd-peer\n",
    );
    // Every node with a config file from the shipped example: a password, without which
    // protected mode denies the clients of other hosts.
    c.sh("install -d -o redis -g redis -m 0750 /etc/redis/cluster");
    for port in PORTS {
        c.sh(&format!(
            "install -o redis -g redis -m 0640 {EXAMPLE_CONFIG} /etc/redis/cluster/{port}.conf && \
             sed -i 's/CHANGE-ME/{PASSWORD}/' /etc/redis/cluster/{port}.conf && \
             echo CONFIG=/etc/redis/cluster/{port}.conf > /etc/redis/cluster/{port}.env"
        ));
    }
    let units = cluster_units();
    let names: Vec<&str> = units.iter().map(|(unit, _)| unit.as_str()).collect();
    c.sh(&format!(
        "systemctl daemon-reload && systemctl enable --now {}",
        names.join(" ")
    ));
    let nodes = [
        ("10.77.0.1", 40001),
        ("10.77.0.1", 40002),
        ("10.77.0.2", 40003),
    ];
    // Created from the other host, as an operator of a multi-host cluster would.
    let create = c.exec(&format!(
        "ip netns exec kpsd-peer env REDISCLI_AUTH='{PASSWORD}' redis-cli --cluster create \
         10.77.0.1:40001 10.77.0.1:40002 10.77.0.2:40003 --cluster-yes"
    ));
    assert!(
        create.success() && !create.stdout.contains("DENIED"),
        "redis-cli --cluster create from the peer host:\n{}\n{}",
        create.stdout,
        create.stderr
    );
    wait_cluster_ok(&c, &nodes, Some(PASSWORD));

    // With the library: the shipped values on the links, the dead peer's links gone within
    // the unit's bound.
    let with = partition(&c, Some(SHIPPED), SHIPPED_BOUND_S + 5.0);
    let inbound = with
        .inbound_gone_s
        .expect("inbound link to the dead peer still there");
    assert!(
        inbound <= SHIPPED_BOUND_S + SLACK_S,
        "inbound link gone after {inbound:.2} s, bound {SHIPPED_BOUND_S} s"
    );
    let outbound = with
        .outbound_gone_s
        .expect("outbound link to the dead peer still there");
    assert!(
        outbound <= SHIPPED_BOUND_S + SLACK_S,
        "outbound link gone after {outbound:.2} s, bound {SHIPPED_BOUND_S} s"
    );

    // A replica on the other host: protected mode would deny its replication link to node 1's
    // client port without the example's password. (From here on the peer host has two nodes;
    // the inbound bus link watched below is either one's: a dead peer's.)
    wait_cluster_ok(&c, &nodes, Some(PASSWORD));
    c.sh(&format!(
        "install -o redis -g redis -m 0640 {EXAMPLE_CONFIG} /etc/redis/cluster/40004.conf && \
         sed -i 's/CHANGE-ME/{PASSWORD}/' /etc/redis/cluster/40004.conf && \
         echo CONFIG=/etc/redis/cluster/40004.conf > /etc/redis/cluster/40004.env && \
         mkdir -p /etc/systemd/system/redis-cluster@40004.service.d && \
         cp /etc/systemd/system/redis-cluster@40003.service.d/netns.conf \
            /etc/systemd/system/redis-cluster@40004.service.d/ && \
         systemctl daemon-reload && systemctl enable --now redis-cluster@40004"
    ));
    let master = cli(&c, "10.77.0.1", 40001, Some(PASSWORD), "cluster myid");
    let add = c.exec(&format!(
        "ip netns exec kpsd-peer env REDISCLI_AUTH='{PASSWORD}' redis-cli --cluster add-node \
         10.77.0.2:40004 10.77.0.1:40001 --cluster-slave --cluster-master-id {}",
        master.trim()
    ));
    assert!(
        add.success(),
        "add a replica on the peer host:\n{}\n{}",
        add.stdout,
        add.stderr
    );
    c.wait_for(
        "the replica's link to its master up",
        Duration::from_secs(60),
        || {
            let info = cli(&c, "10.77.0.2", 40004, Some(PASSWORD), "info replication");
            (info_field(&info, "master_link_status").as_deref() == Some("up")).then_some(())
        },
    );
    let replica = c.main_pid("redis-cluster@40004");
    let link = sockets(&c, replica)
        .into_iter()
        .find(|s| s.state == "ESTABLISHED" && s.remote == "10.77.0.1:40001")
        .expect("the replica's replication link to 10.77.0.1:40001");
    println!(
        "replica on the peer host: replication link {} -> {}: keepalive={} {:?}",
        link.local, link.remote, link.keepalive, link.values
    );
    assert!(link.keepalive && link.values == Some(SHIPPED), "{link:?}");

    // Without the library (an operator's override empties LD_PRELOAD): the inbound link
    // outlives the bound by far.
    c.systemctl_edit("redis-cluster@", "[Service]\nEnvironment=LD_PRELOAD=\n");
    c.sh(&format!("systemctl restart {}", names.join(" ")));
    wait_cluster_ok(&c, &nodes, Some(PASSWORD));
    let pid = c.main_pid("redis-cluster@40001");
    assert!(!mapped(&c, pid, &installed_library(&c)));
    let without = partition(&c, None, BASELINE_OBSERVE_S);
    assert!(
        without.inbound_gone_s.is_none(),
        "without the library the inbound link went after {:?} s",
        without.inbound_gone_s
    );
    println!(
        "dead peer through redis-cluster@: with the library inbound {inbound:.2} s, outbound \
         {outbound:.2} s (bound {SHIPPED_BOUND_S} s); without: inbound ESTABLISHED at \
         {BASELINE_OBSERVE_S} s, outbound {:?}",
        without.outbound_gone_s
    );
}
