//! Redis in the container: the shipped units' values, the ports and password of the
//! `redis-cluster@` nodes, the shipped examples, and `redis-cli` on top of them (cluster state,
//! the cluster-bus links and the values they carry).

use std::time::{Duration, Instant};

use super::Container;
use super::readback::{Socket, Values, sockets};

/// The shipped units' values; their bound, KEEPIDLE + KEEPINTVL x KEEPCNT, is 11 s.
pub const SHIPPED: Values = Values {
    idle: 5,
    interval: 2,
    count: 3,
    user_timeout_ms: 11000,
};

pub const PORTS: [u16; 3] = [40001, 40002, 40003];
pub const PASSWORD: &str = "kpsd-secret-7f3a";
pub const EXAMPLE_CONFIG: &str =
    "/usr/share/doc/keepalive-preload/examples/redis-cluster/node.conf";
pub const EXAMPLE_DROPIN: &str =
    "/usr/share/doc/keepalive-preload/examples/redis-server.service.d/keepalive-preload.conf";

/// `redis-cli -h HOST -p PORT ARGS`, with the password when given.
pub fn cli(c: &Container, host: &str, port: u16, auth: Option<&str>, args: &str) -> String {
    let auth = auth.map_or(String::new(), |password| {
        format!("REDISCLI_AUTH='{password}' ")
    });
    c.sh(&format!("{auth}redis-cli -h {host} -p {port} {args}"))
}

pub fn info_field(info: &str, key: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.trim_end().strip_prefix(&format!("{key}:")))
        .map(str::to_owned)
}

/// Waits for cluster_state:ok on every node.
pub fn wait_cluster_ok(c: &Container, nodes: &[(&str, u16)], auth: Option<&str>) {
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
pub fn bus_links(c: &Container, pid: u32, port: u16) -> Vec<Socket> {
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
pub fn assert_bus_links(c: &Container, units: &[(String, u16)], expected: Values) -> usize {
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

pub fn cluster_units() -> Vec<(String, u16)> {
    PORTS
        .iter()
        .map(|port| (format!("redis-cluster@{port}"), *port))
        .collect()
}

/// Starts a `redis-cli subscribe CHANNEL` on the redis-server at `port` in the container and
/// returns the sockets of the server (`pid`) once the subscriber's link is established.
pub fn subscribed(c: &Container, pid: u32, port: u16, channel: &str) -> Vec<Socket> {
    c.sh(&format!(
        "setsid redis-cli -p {port} subscribe {channel} >/dev/null 2>&1 </dev/null &"
    ));
    c.wait_for(
        "the subscriber's link on redis-server",
        Duration::from_secs(10),
        || {
            let all = sockets(c, pid);
            all.iter()
                .any(|s| s.role == "accepted" && s.state == "ESTABLISHED")
                .then_some(all)
        },
    )
}

/// Prints each socket (`what`: whose) and asserts it has keepalive with `expected`.
pub fn assert_all_carry(all: &[Socket], what: &str, expected: Values) {
    for socket in all {
        println!(
            "{what} {} {} {} {:?}",
            socket.role, socket.local, socket.state, socket.values
        );
        assert!(
            socket.keepalive && socket.values == Some(expected),
            "{what} socket {socket:?}"
        );
    }
}
