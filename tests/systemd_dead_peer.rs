//! A dead peer through the units, under a real systemd (issue 11): Debian bookworm's systemd as
//! PID 1 in `systemd-nspawn`, the project's own `.deb` installed in it with `dpkg -i`, and then
//! what an operator does, as docs/systemd.md says: three `redis-cluster@` nodes, a node on
//! another "host" (a network namespace, through a `NetworkNamespacePath=` drop-in) that dies.
//! With the library the dead peer's links go within the shipped units' bound; without it
//! (`LD_PRELOAD=` emptied) they outlive it by far.
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

use systemd_support::readback::{Socket, Values, sockets};
use systemd_support::redis::{
    EXAMPLE_CONFIG, PASSWORD, PORTS, SHIPPED, bus_links, cli, cluster_units, info_field,
    wait_cluster_ok,
};
use systemd_support::units::{installed_library, mapped};
use systemd_support::{Container, serial};

/// The shipped units' bound: KEEPIDLE + KEEPINTVL x KEEPCNT = 11 s.
const SHIPPED_BOUND_S: f64 = 11.0;
/// Polling (100 ms) and scheduling on a loaded 2-core machine.
const SLACK_S: f64 = 1.5;
/// How long the dead peer's link is watched without the library: well past the bound, well
/// short of Redis' own 30 + 3 x 10 s.
const BASELINE_OBSERVE_S: f64 = 20.0;

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
#[ignore = "needs root: boots systemd in systemd-nspawn; scripts/test runs it"]
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
