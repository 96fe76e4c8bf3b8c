//! `apply` on a Redis Cluster started without the library, each node in a network namespace of
//! its own (the cluster fixture `redis-fixture`): applied to the survivors (nodes 1 and 2), then
//! node 3 blackholed (iptables DROP in and out in its namespace). The survivors' inbound and
//! outbound bus links to node 3, all made before `apply`, are gone within the configured bound
//! (2/1/3 + 3 s: 6 s), while node 3's own inbound link from node 1, which `apply` did not touch
//! (Redis' 30/10/3), is still ESTABLISHED long after.
//!
//! Needs root (namespaces, iptables, pidfd_getfd) and the tools of the cluster fixture
//! (`redis_fixture::require`); without them it fails, never skips. Links, values and states are read by this
//! build's `inspect`, through the fixture.

mod apply_support;
mod common;

use std::time::{Duration, Instant};

use apply_support::apply;
use common::{BIN, code, stderr, stdout};
use redis_fixture::{Cluster, Kind, Link, Values, Watched};

const BOUND: Duration = Duration::from_secs(6);
/// How long after the blackhole the untouched link must still be there (Redis' 30/10/3 keeps
/// it about 60 s).
const CONTROL: Duration = Duration::from_secs(12);
const DEAD_PEER: [&str; 10] = [
    "--idle",
    "2",
    "--interval",
    "1",
    "--count",
    "3",
    "--user-timeout",
    "3s",
    "--override",
    "yes",
];
const DEAD_PEER_VALUES: Values = Values::on(2, 1, 3, 3000);
const REDIS_BUS_IN: Values = Values::on(30, 10, 3, 0);

fn is_bus(link: &Link) -> bool {
    link.is(Kind::BusIn) || link.is(Kind::BusOut)
}

#[test]
#[ignore = "needs root: Redis nodes in network namespaces, iptables, pidfd_getfd; scripts/test runs it"]
fn survivors_drop_links_to_a_blackholed_node_within_the_bound_after_apply() {
    redis_fixture::require();
    let cluster = Cluster::builder("apply-cluster")
        .netns()
        .command(BIN)
        .start();

    // Before: Redis' own values (30/10/3 inbound, nothing outbound).
    let before = cluster.meshed_links();
    let to_victim: Vec<Link> = before
        .iter()
        .filter(|l| is_bus(l) && l.node != 3 && l.peer == Some(3))
        .cloned()
        .collect();
    for survivor in [1, 2] {
        for kind in [Kind::BusIn, Kind::BusOut] {
            assert!(
                to_victim
                    .iter()
                    .any(|l| l.node == survivor && l.kind == kind),
                "node {survivor} has no {} link to node 3: {to_victim:?}",
                kind.name()
            );
        }
    }
    let control = before
        .iter()
        .find(|l| l.node == 3 && l.is(Kind::BusIn) && l.peer == Some(1))
        .expect("node 3's inbound bus link from node 1")
        .clone();
    for link in before.iter().filter(|l| l.is(Kind::BusIn)) {
        assert_eq!(link.values, REDIS_BUS_IN, "before apply: {link}");
    }

    // apply on the survivors only.
    let (pid1, pid2) = (
        cluster.node(1).pid.to_string(),
        cluster.node(2).pid.to_string(),
    );
    let mut args = DEAD_PEER.to_vec();
    args.extend([pid1.as_str(), pid2.as_str()]);
    let output = apply(&args);
    println!("{}", stdout(&output));
    assert_eq!(code(&output), 0, "{}", stderr(&output));

    let after = cluster.links();
    let applied: Vec<&Link> = after.iter().filter(|l| is_bus(l) && l.node != 3).collect();
    for link in &applied {
        assert_eq!(link.values, DEAD_PEER_VALUES, "after apply: {link}");
    }
    assert!(
        applied.len() >= 8,
        "only {} bus links of nodes 1 and 2",
        applied.len()
    );
    for link in after.iter().filter(|l| l.established() && l.node == 3) {
        assert_ne!(
            link.values, DEAD_PEER_VALUES,
            "node 3 was not applied to: {link}"
        );
    }
    // The links to node 3 are the ones made before apply.
    for link in &to_victim {
        assert!(
            after
                .iter()
                .any(|a| a.established() && a.local == link.local && a.remote == link.remote),
            "{link} is not the link of before"
        );
    }

    // Blackhole node 3 and publish one message on each survivor right after, so that data is
    // in flight on their outbound links from t = 0: the time then shows TCP_USER_TIMEOUT, not
    // when Redis next pings. Every link is watched every 50 ms from just before the blackhole;
    // node 3's inbound link from node 1, which apply did not touch, as control.
    let mut watched: Vec<(Link, Watched)> = to_victim
        .iter()
        .map(|l| (l.clone(), l.watched(&cluster)))
        .collect();
    watched.push((control.clone(), control.watched(&cluster)));
    let targets: Vec<Watched> = watched.iter().map(|(_, w)| *w).collect();
    assert!(
        cluster.established(&targets).iter().all(|&up| up),
        "a watched link is not ESTABLISHED before the blackhole: {watched:?}"
    );
    let mut publishers = [cluster.connect(1), cluster.connect(2)];
    let t0 = Instant::now();
    let gone_at = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| cluster.watch(&targets, t0, CONTROL, false));
        cluster.blackhole(3);
        println!(
            "blackhole in place {:.2?} after the watch began",
            t0.elapsed()
        );
        for publisher in &mut publishers {
            publisher
                .call(&["PUBLISH", "kpa", "blackholed"])
                .expect("PUBLISH on a survivor");
        }
        watcher.join().expect("the watcher")
    });
    cluster.heal(3);
    for ((link, _), gone) in watched.iter().zip(&gone_at) {
        println!(
            "{}: {}",
            link.endpoints(),
            gone.map_or(format!("ESTABLISHED at {CONTROL:?}"), |t| format!(
                "gone after {t:.2?}"
            ))
        );
    }
    let (control_gone, survivors_gone) = gone_at.split_last().expect("watched links");
    for ((link, _), gone) in watched.iter().zip(survivors_gone) {
        let link = link.endpoints();
        let gone = gone.unwrap_or_else(|| panic!("{link} still there at {CONTROL:?}"));
        assert!(gone <= BOUND, "{link} gone only after {gone:?}");
    }
    assert_eq!(
        *control_gone, None,
        "the link apply did not touch must outlive the bound"
    );

    // Healed, the cluster is whole again and answers.
    let ok = cluster.wait_ok(Duration::from_secs(60));
    cluster.wait_mesh(Duration::from_secs(60));
    println!("cluster_state:ok {ok:.2?} after the heal, full mesh again");
    cluster.write_keys("kpa", 50);
    cluster.check_keys("kpa", 50);
    cluster.stop();
}
