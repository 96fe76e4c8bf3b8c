//! A real redis-server cluster node in a cgroup with the policy, meeting a node outside it:
//! Redis 7 sets 30/10/3 itself right after accept4 on every inbound cluster-bus link and nothing
//! on the outbound ones. Under KEEPALIVE_OVERRIDE=yes both links of the node in the cgroup read
//! back the policy's values (through `keepalive-preload inspect`, which judges them by the
//! attached policy: the node has no library), while the node outside keeps Redis' own.

mod bpfkit;
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bpfkit::TestCgroup;
use serde_json::Value;

/// Client ports and cluster-bus ports (cluster-port) of the two nodes.
const INSIDE: (u16, u16) = (43701, 43711);
const OUTSIDE: (u16, u16) = (43702, 43712);

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node_args(dir: &testkit::TempDir, (port, bus): (u16, u16)) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--cluster-port",
        &bus.to_string(),
        "--bind",
        "127.0.0.1",
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        &format!("nodes-{port}.conf"),
        "--cluster-node-timeout",
        "15000",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        dir.0.to_str().unwrap(),
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect()
}

fn command(port: u16, words: &[&str]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to redis");
    let mut request = format!("*{}\r\n", words.len());
    for word in words {
        request.push_str(&format!("${}\r\n{word}\r\n", word.len()));
    }
    stream.write_all(request.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buffer = [0u8; 4096];
    let read = stream.read(&mut buffer).unwrap();
    String::from_utf8_lossy(&buffer[..read]).into_owned()
}

fn wait_ready(port: u16) {
    bpfkit::wait_for_listener(&format!("127.0.0.1:{port}"));
}

fn inspect(pid: u32) -> Vec<Value> {
    let output = common::capture(
        bpfkit::keepalive()
            .args(["inspect", "--json"])
            .arg(pid.to_string()),
    );
    common::stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn port_of(address: &Value) -> Option<u16> {
    address.as_str()?.rsplit(':').next()?.parse().ok()
}

/// The node's inbound and outbound bus links to the other node, once both exist.
fn bus_links(pid: u32, bus: u16, peer_bus: u16) -> Option<(Value, Value)> {
    let sockets = inspect(pid);
    let inbound = sockets.iter().find(|socket| {
        port_of(&socket["local"]) == Some(bus) && socket["state"] == "ESTABLISHED"
    })?;
    let outbound = sockets.iter().find(|socket| {
        port_of(&socket["remote"]) == Some(peer_bus) && socket["state"] == "ESTABLISHED"
    })?;
    Some((inbound.clone(), outbound.clone()))
}

fn values(socket: &Value) -> [i64; 5] {
    [
        i64::from(socket["keepalive"].as_bool().unwrap()),
        socket["idle"].as_i64().unwrap(),
        socket["interval"].as_i64().unwrap(),
        socket["count"].as_i64().unwrap(),
        socket["user_timeout_ms"].as_i64().unwrap(),
    ]
}

#[test]
#[ignore = "needs root: cgroups, bpf(2), pidfd_getfd; scripts/test runs it"]
fn redis_cluster_node_in_a_cgroup_carries_the_policy_on_its_bus_links() {
    common::require_root("cgroups, eBPF and pidfd_getfd");
    let redis = testkit::tool("redis-server", "redis-server");
    let dir = testkit::TempDir::new("kpb-redis");
    let cgroup = TestCgroup::new("redis");
    cgroup.attach_ok(&bpfkit::DEAD_PEER_POLICY, &[]);
    let args = node_args(&dir, INSIDE);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let inside = Node(
        cgroup
            .command(&redis, &args)
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server"),
    );
    let outside = Node(
        Command::new(&redis)
            .args(node_args(&dir, OUTSIDE))
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server"),
    );
    wait_ready(INSIDE.0);
    wait_ready(OUTSIDE.0);
    let reply = command(
        INSIDE.0,
        &[
            "CLUSTER",
            "MEET",
            "127.0.0.1",
            &OUTSIDE.0.to_string(),
            &OUTSIDE.1.to_string(),
        ],
    );
    assert!(reply.starts_with("+OK"), "{reply}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let (inbound, outbound) = loop {
        if let Some(links) = bus_links(inside.0.id(), INSIDE.1, OUTSIDE.1) {
            break links;
        }
        assert!(
            Instant::now() < deadline,
            "no bus links: {:?}",
            inspect(inside.0.id())
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for (what, link) in [("inbound", &inbound), ("outbound", &outbound)] {
        assert_eq!(values(link), [1, 2, 1, 3, 3000], "{what} bus link: {link}");
        assert_eq!(link["verdict"], "ok", "{what}: {link}");
        assert_eq!(link["library"], false);
    }
    // The node outside: Redis' own 30/10/3 on its inbound link, nothing on its outbound one.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (theirs_in, theirs_out) = loop {
        if let Some(links) = bus_links(outside.0.id(), OUTSIDE.1, INSIDE.1) {
            break links;
        }
        assert!(
            Instant::now() < deadline,
            "no bus links on the node outside"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(values(&theirs_in), [1, 30, 10, 3, 0], "{theirs_in}");
    assert_eq!(values(&theirs_out)[0], 0, "{theirs_out}");
    let status = bpfkit::status_of(&cgroup.path).unwrap();
    assert!(
        status["counters"]["replaced"].as_u64().unwrap() >= 3,
        "{status}"
    );
}
