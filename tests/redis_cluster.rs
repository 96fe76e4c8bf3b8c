//! A real Redis Cluster under the library (issue 5), driven by `scripts/redis-cluster`.
//!
//! Every value is read back from the live sockets of the redis-server processes by
//! `keepalive-preload inspect --json` (pidfd_getfd + getsockopt), through the harness' `links`.
//! Dead peers are real: a node's network namespace is blackholed with iptables DROP in and out.
//!
//! These tests need root (namespaces, iptables, pidfd_getfd) and redis-server, redis-tools,
//! iptables and python3-redis; without them they fail, never skip (CI runs as root). They run
//! one at a time (`SERIAL`): the timings they measure must not compete with each other for the
//! CPU. Measured times are printed, so `cargo test -- --nocapture` shows them in CI logs.

mod redis_support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use redis_support::{
    Cluster, Link, Values, harness, kv, require, run_ok, serial, systemd_paths_check,
};

/// Values that differ from the kernel's (7200/75/9, 0) and from Redis' (30/10/3, 300/100/3).
const OURS: Values = Values::on(41, 7, 5, 12345);
const OUR_ENV: [&str; 4] = [
    "KEEPIDLE=41",
    "KEEPINTVL=7",
    "KEEPCNT=5",
    "KEEPALIVE_USER_TIMEOUT=12345",
];
/// Redis 7.0 on every inbound cluster-bus link: keepalive of 2 x cluster-node-timeout (30 s).
const REDIS_BUS: (u32, u32, u32) = (30, 10, 3);
/// Redis on every client link: tcp-keepalive 300.
const REDIS_CLIENT: (u32, u32, u32) = (300, 100, 3);

/// The dead-peer configuration of the issue and its bounds.
const DEAD_PEER_ENV: [&str; 5] = [
    "KEEPIDLE=2",
    "KEEPINTVL=1",
    "KEEPCNT=3",
    "KEEPALIVE_USER_TIMEOUT=3s",
    "KEEPALIVE_OVERRIDE=yes",
];
const DEAD_PEER_VALUES: Values = Values::on(2, 1, 3, 3000);
const INBOUND_BOUND_S: f64 = 6.0;
const OUTBOUND_BOUND_S: f64 = 4.5;
const BASELINE_OBSERVE_S: f64 = 20.0;

fn with_override(policy: &str) -> Vec<String> {
    let mut env: Vec<String> = OUR_ENV.iter().map(|s| s.to_string()).collect();
    env.push(format!("KEEPALIVE_OVERRIDE={policy}"));
    env
}

/// Client links of our own to every node (PING answered), held open while links are read.
fn hold_clients(cluster: &Cluster) -> Vec<TcpStream> {
    cluster
        .nodes()
        .iter()
        .map(|node| {
            let mut stream = TcpStream::connect((node.ip.as_str(), node.port))
                .unwrap_or_else(|e| panic!("connect to node {}: {e}", node.index));
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("read timeout");
            stream.write_all(b"PING\r\n").expect("PING");
            let mut reply = [0u8; 7];
            stream.read_exact(&mut reply).expect("PONG");
            assert_eq!(&reply, b"+PONG\r\n", "node {}", node.index);
            stream
        })
        .collect()
}

/// Panics with every link that does not carry `expected(link)`, listing them all.
fn assert_links(links: &[Link], what: &str, expected: impl Fn(&Link) -> Option<Values>) {
    let mut wrong = Vec::new();
    let mut checked = 0;
    for link in links {
        let Some(want) = expected(link) else { continue };
        checked += 1;
        if link.values != Some(want) {
            wrong.push(format!(
                "node {} {} {} -> {}: got {}, want {want}",
                link.node,
                link.kind,
                link.local,
                link.remote.as_deref().unwrap_or("-"),
                link.values
                    .map_or("no values".to_owned(), |v| v.to_string()),
            ));
        }
    }
    assert!(checked > 0, "{what}: no link checked");
    assert!(
        wrong.is_empty(),
        "{what}: {} of {checked} links wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    println!("{what}: {checked} links checked");
}

/// Every node has an ESTABLISHED inbound and an outbound bus link with every other node.
fn assert_full_mesh(cluster: &Cluster, links: &[Link]) {
    let n = cluster.nodes().len() as u32;
    let mut count: BTreeMap<(u32, &str, u32), u32> = BTreeMap::new();
    for link in links.iter().filter(|l| l.state == "ESTABLISHED") {
        if let (Some(peer), "bus-in" | "bus-out") = (link.peer, link.kind.as_str()) {
            *count
                .entry((link.node, link.kind.as_str(), peer))
                .or_default() += 1;
        }
    }
    for i in 1..=n {
        for j in (1..=n).filter(|&j| j != i) {
            for kind in ["bus-in", "bus-out"] {
                assert!(
                    count.get(&(i, kind, j)).copied().unwrap_or(0) >= 1,
                    "node {i} has no {kind} link with node {j}: {count:?}"
                );
            }
        }
    }
}

fn established(kind: &str) -> impl Fn(&Link) -> bool + '_ {
    move |l: &Link| l.state == "ESTABLISHED" && l.kind == kind
}

#[test]
fn override_yes_every_bus_replication_and_client_link_carries_our_values() {
    let _serial = serial();
    require();
    let env = with_override("yes");
    let cluster = Cluster::up("override-yes", &["--replicas", "1"], true, &env);
    let _clients = hold_clients(&cluster);
    let links = cluster.links();
    assert_full_mesh(&cluster, &links);
    for kind in ["bus-in", "bus-out", "client-in", "repl-out"] {
        let is = established(kind);
        assert_links(&links, &format!("override=yes {kind}"), |l| {
            is(l).then_some(OURS)
        });
    }
    // Nothing of any redis-server is left out: listeners and every other TCP socket too.
    assert_links(&links, "override=yes every socket", |_| Some(OURS));
    cluster.down();
}

#[test]
fn override_no_inbound_bus_keeps_redis_values_outbound_carries_ours() {
    let _serial = serial();
    require();
    let cluster = Cluster::up("override-no", &[], true, &with_override("no"));
    let _clients = hold_clients(&cluster);
    let links = cluster.links();
    assert_full_mesh(&cluster, &links);
    // Redis 7.0.15 sets no TCP_USER_TIMEOUT, so ours stays on every socket.
    let (i, v, c) = REDIS_BUS;
    let is_in = established("bus-in");
    assert_links(&links, "override=no bus-in (Redis' own)", |l| {
        is_in(l).then_some(Values::on(i, v, c, OURS.user_timeout_ms))
    });
    let is_out = established("bus-out");
    assert_links(&links, "override=no bus-out (ours)", |l| {
        is_out(l).then_some(OURS)
    });
    let (i, v, c) = REDIS_CLIENT;
    let is_client = established("client-in");
    assert_links(
        &links,
        "override=no client-in (Redis' tcp-keepalive)",
        |l| is_client(l).then_some(Values::on(i, v, c, OURS.user_timeout_ms)),
    );
    cluster.down();
}

#[test]
fn ports_filter_on_bus_ports_leaves_client_links_to_redis() {
    let _serial = serial();
    require();
    // On loopback the harness puts node i on base+i and its bus on base+10000+i with the base
    // in 10000..19000: 20000-29999 holds every bus port and no client port.
    let mut env = with_override("yes");
    env.push("KEEPALIVE_PORTS=20000-29999".to_owned());
    let cluster = Cluster::up("ports", &[], true, &env);
    for node in cluster.nodes() {
        assert!((20000..30000).contains(&node.bus_port) && node.port < 20000);
    }
    let _clients = hold_clients(&cluster);
    let links = cluster.links();
    assert_full_mesh(&cluster, &links);
    for kind in ["bus-in", "bus-out"] {
        let is = established(kind);
        assert_links(&links, &format!("ports=bus {kind} (ours)"), |l| {
            is(l).then_some(OURS)
        });
    }
    let (i, v, c) = REDIS_CLIENT;
    let is_client = established("client-in");
    assert_links(
        &links,
        "ports=bus client-in (Redis' own, no user timeout)",
        |l| is_client(l).then_some(Values::on(i, v, c, 0)),
    );
    cluster.down();
}

/// Blackholes node 3 with subscribers to it, watching node 1's links to it; `key=value` lines.
fn dead_peer(cluster: &Cluster, extra: &[&str]) -> String {
    let mut args = vec![
        "deadpeer",
        "--victim",
        "3",
        "--survivor",
        "1",
        "--subscribers",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--format", "kv", "--dir"]);
    run_ok(harness(&args, cluster))
}

#[test]
fn dead_peer_with_library_links_and_subscribers_go_within_bound_then_heal() {
    let _serial = serial();
    require();
    let env: Vec<String> = DEAD_PEER_ENV.iter().map(|s| s.to_string()).collect();
    let cluster = Cluster::up("deadpeer-lib", &["--netns"], true, &env);
    run_ok(harness(
        &["keys", "write", "--count", "300", "--dir"],
        &cluster,
    ));
    let before = cluster.links();
    assert_full_mesh(&cluster, &before);
    assert_links(&before, "dead-peer config, before", |l| {
        (l.state == "ESTABLISHED").then_some(DEAD_PEER_VALUES)
    });

    let out = dead_peer(&cluster, &["--until-gone", "--observe", "15"]);
    println!("dead peer with the library:\n{out}");
    let r = kv(&out);
    let secs = |key: &str| -> f64 {
        r[key]
            .parse()
            .unwrap_or_else(|_| panic!("{key}={} never went within 15 s\n{out}", r[key]))
    };
    let inbound = secs("inbound_gone_s");
    let outbound = secs("outbound_gone_s");
    assert!(
        inbound <= INBOUND_BOUND_S,
        "inbound bus link gone after {inbound} s > {INBOUND_BOUND_S}"
    );
    assert!(
        outbound <= OUTBOUND_BOUND_S,
        "outbound bus link gone after {outbound} s > {OUTBOUND_BOUND_S}"
    );
    for sub in ["redis_cli", "python"] {
        let gone = secs(&format!("sub_{sub}_gone_s"));
        assert!(
            gone <= INBOUND_BOUND_S,
            "{sub} subscriber still connected after {gone} s"
        );
        assert!(
            r[&format!("sub_{sub}_at_end")].starts_with("exited"),
            "{sub} subscriber did not exit: {out}"
        );
    }

    // deadpeer healed the partition: the cluster comes back, new links carry our values.
    let t = Instant::now();
    let ok = run_ok(harness(
        &["wait-ok", "--mesh", "--timeout", "60", "--dir"],
        &cluster,
    ));
    println!("{} (heal -> full mesh in {:.2?})", ok.trim(), t.elapsed());
    let after = cluster.links();
    assert_full_mesh(&cluster, &after);
    assert_links(&after, "dead-peer config, after heal", |l| {
        (l.state == "ESTABLISHED").then_some(DEAD_PEER_VALUES)
    });
    let fresh = after
        .iter()
        .filter(|l| l.state == "ESTABLISHED" && l.kind.starts_with("bus"))
        .filter(|l| {
            !before
                .iter()
                .any(|b| b.local == l.local && b.remote == l.remote)
        })
        .count();
    assert!(fresh >= 2, "no new bus link after the heal");
    println!("{fresh} new bus links after the heal, all with {DEAD_PEER_VALUES}");
    let check = run_ok(harness(
        &["keys", "check", "--count", "300", "--dir"],
        &cluster,
    ));
    println!("{}", check.trim());
    cluster.down();
}

#[test]
fn dead_peer_without_library_links_and_subscribers_stay() {
    let _serial = serial();
    require();
    let cluster = Cluster::up("deadpeer-plain", &["--netns"], false, &[]);
    let links = cluster.links();
    assert_full_mesh(&cluster, &links);
    // Without the library: Redis' own values, outbound links without keepalive.
    let (i, v, c) = REDIS_BUS;
    let is_in = established("bus-in");
    assert_links(&links, "no library bus-in", |l| {
        is_in(l).then_some(Values::on(i, v, c, 0))
    });
    let is_out = established("bus-out");
    assert_links(&links, "no library bus-out", |l| {
        is_out(l).then_some(Values::off())
    });
    let out = dead_peer(&cluster, &["--observe", &BASELINE_OBSERVE_S.to_string()]);
    println!("dead peer without the library:\n{out}");
    let r = kv(&out);
    let observed: f64 = r["observed_s"].parse().expect("observed_s");
    assert!(observed >= BASELINE_OBSERVE_S, "observed only {observed} s");
    assert_eq!(
        r["inbound_at_end"], "ESTABLISHED",
        "without the library the inbound link must still be there at {observed} s: {out}"
    );
    for sub in ["redis_cli", "python"] {
        assert_eq!(
            r[&format!("sub_{sub}_at_end")],
            "alive,ESTABLISHED",
            "without the library the {sub} subscriber must still be subscribed: {out}"
        );
    }
    cluster.down();
}

#[test]
fn benchmark_load_under_library_no_errors_fds_back() {
    let _serial = serial();
    require();
    let env: Vec<String> = DEAD_PEER_ENV.iter().map(|s| s.to_string()).collect();
    let cluster = Cluster::up("load", &[], true, &env);
    let out = harness(
        &[
            "load",
            "--requests",
            "20000",
            "--clients",
            "20",
            "--timeout",
            "120",
            "--client-library",
            "--dir",
        ],
        &cluster,
    )
    .output()
    .expect("run the harness");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    println!(
        "redis-benchmark --cluster under the library:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = kv(&text);
    assert_eq!(r["benchmark_exit"], "0", "{text}");
    assert_eq!(r["error_lines"], "0", "{text}");
    for (key, value) in &r {
        if key.starts_with("fds_node") {
            let (start, end) = value.split_once("->").expect("start->end");
            assert_eq!(
                start, end,
                "{key}: descriptors not back to their start count"
            );
        }
    }
    assert!(out.status.success(), "load failed: {text}");
    // The cluster is still whole and configured after the load.
    let links = cluster.links();
    assert_full_mesh(&cluster, &links);
    assert_links(&links, "after the load", |l| {
        (l.state == "ESTABLISHED").then_some(DEAD_PEER_VALUES)
    });
    cluster.down();
}

#[test]
fn harness_cleans_up_when_interrupted() {
    let _serial = serial();
    require();
    redis_support::interrupted_up_leaves_nothing();
}

#[test]
fn systemd_units_verify_and_name_installed_paths() {
    let _serial = serial();
    systemd_paths_check();
}

#[test]
fn systemd_unit_command_line_notifies_ready_under_library() {
    let _serial = serial();
    require();
    redis_support::unit_exec_start_notifies_ready();
}
