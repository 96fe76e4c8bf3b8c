//! A real Redis Cluster under the library (issue 5), on the cluster fixture `redis-fixture`.
//!
//! Every value is read back from the live sockets of the redis-server processes by
//! `keepalive-preload inspect --json` (pidfd_getfd + getsockopt), as typed links. Dead peers are
//! real: a node's network namespace is blackholed with iptables DROP in and out.
//!
//! Needs root and redis-server, redis-tools, iptables and python3-redis; without them the tests
//! fail, never skip. They run one at a time (`serial`): the times they measure must not compete
//! for the CPU. `cargo test --test redis_cluster -- --nocapture` shows the measured times.

use std::time::{Duration, Instant};

use redis_fixture::{Cluster, DeadPeerOptions, Kind, Link, Ports, Reply, Values, require, serial};

/// Values that differ from the kernel's (7200/75/9, 0) and from Redis' (30/10/3, 300/100/3).
const OURS: Values = Values::on(41, 7, 5, 12345);
const OUR_VARS: [&str; 4] = [
    "KEEPIDLE=41",
    "KEEPINTVL=7",
    "KEEPCNT=5",
    "KEEPALIVE_USER_TIMEOUT=12345",
];
/// Redis 7.0 on every inbound cluster-bus link: keepalive of 2 x cluster-node-timeout (30 s).
const REDIS_BUS: Values = Values::on(30, 10, 3, 0);
/// Redis on every client link: tcp-keepalive 300.
const REDIS_CLIENT: Values = Values::on(300, 100, 3, 0);

/// The dead-peer configuration of the issue and its bounds.
const DEAD_PEER_VARS: [&str; 5] = [
    "KEEPIDLE=2",
    "KEEPINTVL=1",
    "KEEPCNT=3",
    "KEEPALIVE_USER_TIMEOUT=3s",
    "KEEPALIVE_OVERRIDE=yes",
];
const DEAD_PEER_VALUES: Values = Values::on(2, 1, 3, 3000);
const INBOUND_BOUND: Duration = Duration::from_secs(6);
const OUTBOUND_BOUND: Duration = Duration::from_millis(4500);
const BASELINE_OBSERVE: Duration = Duration::from_secs(20);

/// Redis' own keepalive with our user timeout (Redis 7.0.15 sets none of its own).
const fn with_our_timeout(v: Values) -> Values {
    Values::on(v.idle, v.interval, v.count, OURS.user_timeout_ms)
}

/// Client links of our own to every node (PING answered), held open while links are read.
fn hold_clients(cluster: &Cluster) -> Vec<redis_fixture::Conn> {
    (1..=cluster.nodes().len())
        .map(|i| {
            let mut conn = cluster.connect(i);
            let pong = conn.call(&["PING"]).expect("PING");
            assert_eq!(pong, Reply::Status("PONG".into()), "node {i}");
            conn
        })
        .collect()
}

/// Panics with every link that does not carry `expected(link)`, listing them all.
fn assert_links(links: &[Link], what: &str, expected: impl Fn(&Link) -> Option<Values>) {
    let checked: Vec<(&Link, Values)> = links
        .iter()
        .filter_map(|l| Some((l, expected(l)?)))
        .collect();
    let wrong: Vec<String> = checked
        .iter()
        .filter(|(l, want)| l.values != *want)
        .map(|(l, want)| format!("{l}, want {want}"))
        .collect();
    assert!(!checked.is_empty(), "{what}: no link checked");
    assert!(
        wrong.is_empty(),
        "{what}: {} of {} links wrong:\n{}",
        wrong.len(),
        checked.len(),
        wrong.join("\n")
    );
    println!("{what}: {} links checked", checked.len());
}

#[test]
#[ignore = "needs root: Redis nodes in network namespaces, iptables; scripts/test runs it"]
fn override_yes_every_bus_replication_and_client_link_carries_our_values() {
    let _serial = serial();
    require();
    let cluster = Cluster::builder("override-yes")
        .replicas(1)
        .with_library()
        .vars(OUR_VARS)
        .vars(["KEEPALIVE_OVERRIDE=yes"])
        .start();
    let _clients = hold_clients(&cluster);
    let links = cluster.meshed_links();
    cluster.assert_full_mesh(&links);
    for kind in [Kind::BusIn, Kind::BusOut, Kind::Client, Kind::Replication] {
        assert_links(&links, &format!("override=yes {}", kind.name()), |l| {
            l.is(kind).then_some(OURS)
        });
    }
    // Nothing of any redis-server is left out: listeners and every other TCP socket too.
    assert_links(&links, "override=yes every socket", |_| Some(OURS));
    cluster.stop();
}

#[test]
#[ignore = "needs root: Redis nodes in network namespaces, iptables; scripts/test runs it"]
fn override_no_inbound_bus_keeps_redis_values_outbound_carries_ours() {
    let _serial = serial();
    require();
    let cluster = Cluster::builder("override-no")
        .with_library()
        .vars(OUR_VARS)
        .vars(["KEEPALIVE_OVERRIDE=no"])
        .start();
    let _clients = hold_clients(&cluster);
    let links = cluster.meshed_links();
    cluster.assert_full_mesh(&links);
    assert_links(&links, "override=no bus-in (Redis' own)", |l| {
        l.is(Kind::BusIn).then_some(with_our_timeout(REDIS_BUS))
    });
    assert_links(&links, "override=no bus-out (ours)", |l| {
        l.is(Kind::BusOut).then_some(OURS)
    });
    assert_links(&links, "override=no client (Redis' tcp-keepalive)", |l| {
        l.is(Kind::Client).then_some(with_our_timeout(REDIS_CLIENT))
    });
    cluster.stop();
}

#[test]
#[ignore = "needs root: Redis nodes in network namespaces, iptables; scripts/test runs it"]
fn ports_filter_on_bus_ports_leaves_client_links_to_redis() {
    let _serial = serial();
    require();
    // KEEPALIVE_PORTS names the bus ports alone.
    let ports = Ports::free(3);
    let cluster = Cluster::builder("ports")
        .ports(ports.clone())
        .with_library()
        .vars(OUR_VARS)
        .vars([
            "KEEPALIVE_OVERRIDE=yes".to_owned(),
            format!("KEEPALIVE_PORTS={}", ports.bus_list()),
        ])
        .start();
    let _clients = hold_clients(&cluster);
    let links = cluster.meshed_links();
    cluster.assert_full_mesh(&links);
    for kind in [Kind::BusIn, Kind::BusOut] {
        assert_links(&links, &format!("ports=bus {} (ours)", kind.name()), |l| {
            l.is(kind).then_some(OURS)
        });
    }
    assert_links(
        &links,
        "ports=bus client (Redis' own, no user timeout)",
        |l| l.is(Kind::Client).then_some(REDIS_CLIENT),
    );
    cluster.stop();
}

#[test]
#[ignore = "needs root: Redis nodes in network namespaces, iptables; scripts/test runs it"]
fn dead_peer_with_library_links_and_subscribers_go_within_bound_then_heal() {
    let _serial = serial();
    require();
    let cluster = Cluster::builder("deadpeer-lib")
        .netns()
        .with_library()
        .vars(DEAD_PEER_VARS)
        .start();
    cluster.write_keys("kp", 300);
    let before = cluster.meshed_links();
    cluster.assert_full_mesh(&before);
    assert_links(&before, "dead-peer config, before", |l| {
        l.established().then_some(DEAD_PEER_VALUES)
    });

    let r = cluster.dead_peer(DeadPeerOptions {
        subscribers: true,
        until_gone: true,
        observe: Duration::from_secs(15),
        ..DeadPeerOptions::default()
    });
    println!("dead peer with the library: {r}");
    let inbound = r
        .inbound_gone
        .expect("inbound bus link never went within 15 s");
    let outbound = r
        .outbound_gone
        .expect("outbound bus link never went within 15 s");
    assert!(
        inbound <= INBOUND_BOUND,
        "inbound bus link gone after {inbound:?}"
    );
    assert!(
        outbound <= OUTBOUND_BOUND,
        "outbound bus link gone after {outbound:?}"
    );
    for s in &r.subscribers {
        let gone = s
            .gone
            .unwrap_or_else(|| panic!("{} still connected: {s:?}", s.name));
        assert!(
            gone <= INBOUND_BOUND,
            "{} still connected after {gone:?}",
            s.name
        );
        assert!(s.exited, "{} subscriber did not exit: {s:?}", s.name);
    }
    assert_eq!(r.subscribers.len(), 2);

    // dead_peer healed the partition: the cluster comes back, new links carry our values.
    let t = Instant::now();
    cluster.wait_ok(Duration::from_secs(60));
    cluster.wait_mesh(Duration::from_secs(60));
    println!(
        "heal -> cluster_state:ok and full mesh in {:.2?}",
        t.elapsed()
    );
    let after = cluster.links();
    cluster.assert_full_mesh(&after);
    assert_links(&after, "dead-peer config, after heal", |l| {
        l.established().then_some(DEAD_PEER_VALUES)
    });
    let fresh = after
        .iter()
        .filter(|l| l.is(Kind::BusIn) || l.is(Kind::BusOut))
        .filter(|l| {
            !before
                .iter()
                .any(|b| b.local == l.local && b.remote == l.remote)
        })
        .count();
    assert!(fresh >= 2, "no new bus link after the heal");
    println!("{fresh} new bus links after the heal, all with {DEAD_PEER_VALUES}");
    cluster.check_keys("kp", 300);
    cluster.stop();
}

#[test]
#[ignore = "needs root: Redis nodes in network namespaces, iptables; scripts/test runs it"]
fn dead_peer_without_library_links_and_subscribers_stay() {
    let _serial = serial();
    require();
    let cluster = Cluster::builder("deadpeer-plain").netns().start();
    let links = cluster.meshed_links();
    cluster.assert_full_mesh(&links);
    // Without the library: Redis' own values, outbound links without keepalive.
    assert_links(&links, "no library bus-in", |l| {
        l.is(Kind::BusIn).then_some(REDIS_BUS)
    });
    assert_links(&links, "no library bus-out", |l| {
        l.is(Kind::BusOut).then_some(Values::off())
    });
    let r = cluster.dead_peer(DeadPeerOptions {
        subscribers: true,
        observe: BASELINE_OBSERVE,
        ..DeadPeerOptions::default()
    });
    println!("dead peer without the library: {r}");
    assert!(
        r.observed >= BASELINE_OBSERVE,
        "observed only {:?}",
        r.observed
    );
    assert!(
        r.inbound_at_end,
        "without the library the inbound link must still be there at {:?}: {r:?}",
        r.observed
    );
    assert_eq!(r.subscribers.len(), 2);
    for s in &r.subscribers {
        assert!(
            !s.exited && s.established_at_end,
            "without the library the {} subscriber must still be subscribed: {s:?}",
            s.name
        );
    }
    cluster.stop();
}

#[test]
#[ignore = "needs root: Redis nodes in network namespaces, iptables; scripts/test runs it"]
fn benchmark_load_under_library_no_errors_fds_back() {
    let _serial = serial();
    require();
    let cluster = Cluster::builder("load")
        .with_library()
        .vars(DEAD_PEER_VARS)
        .start();
    let b = cluster.benchmark(20_000, 20, true);
    println!("redis-benchmark --cluster under the library: {b}");
    assert!(b.success, "redis-benchmark failed: {b:?}");
    assert!(b.errors.is_empty(), "errors: {:?}", b.errors);
    assert!(!b.results.is_empty(), "no results: {b:?}");
    assert_eq!(
        b.fds_before, b.fds_after,
        "descriptors not back to their start count"
    );
    // The cluster is still whole and configured after the load.
    let links = cluster.meshed_links();
    cluster.assert_full_mesh(&links);
    assert_links(&links, "after the load", |l| {
        l.established().then_some(DEAD_PEER_VALUES)
    });
    cluster.stop();
}
