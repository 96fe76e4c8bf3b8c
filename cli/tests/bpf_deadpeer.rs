//! The measurement as a test: a Go pub/sub subscriber (static, net.Dial, a hand-written
//! RESP client) of a real redis-server that is then blackholed (iptables DROP in and out in the
//! server's network namespace: no FIN, no RST). In a cgroup with the policy 2/1/3 and a 3 s user
//! timeout it notices within 4 s; outside it (Go's own 15 s keepalive: about 150 s) it is still
//! waiting at 10 s. Needs root, iproute2, iptables, redis-server and golang-go.

mod bpfkit;
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bpfkit::TestCgroup;

const REDIS_PORT: u16 = 43601;

/// A network namespace with a veth link to this one; removed (with its processes) on drop.
struct Namespace {
    name: String,
    server: Option<Child>,
}

impl Namespace {
    fn new(octet: u32) -> Self {
        let id = std::process::id();
        let name = format!("kpb-dp-{id}");
        let (host, inner) = (format!("kpbh{id}"), format!("kpbn{id}"));
        let ip = |args: &[&str]| {
            bpfkit::run_ok(Command::new(testkit::tool("ip", "iproute2")).args(args));
        };
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        ip(&["netns", "add", &name]);
        let namespace = Self { name, server: None };
        ip(&["link", "add", &host, "type", "veth", "peer", "name", &inner]);
        ip(&["link", "set", &inner, "netns", &namespace.name]);
        ip(&["addr", "add", &format!("10.251.{octet}.1/30"), "dev", &host]);
        ip(&["link", "set", &host, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", namespace.name.as_str(), "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&[
            "addr",
            "add",
            &format!("10.251.{octet}.2/30"),
            "dev",
            &inner,
        ]);
        inside(&["link", "set", &inner, "up"]);
        inside(&["link", "set", "lo", "up"]);
        namespace
    }

    fn exec(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Some(server) = &mut self.server {
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Starts a subscriber and waits for its "subscribed"; its later lines arrive on the channel.
fn subscribe(mut command: Command) -> (Child, mpsc::Receiver<(Instant, String)>) {
    let mut child = command
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("start the subscriber");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "subscribed", "{line}");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = sender.send((Instant::now(), line));
        }
    });
    (child, receiver)
}

#[test]
#[ignore = "needs root: cgroups, bpf(2), network namespaces; scripts/test runs it"]
fn go_subscriber_notices_a_blackholed_server_within_the_bound() {
    common::require_root("network namespaces, iptables, cgroups and eBPF");
    let redis = testkit::tool("redis-server", "redis-server");
    testkit::tool("iptables", "iptables");
    let octet = 100 + std::process::id() % 100;
    let mut namespace = Namespace::new(octet);
    let server_ip = format!("10.251.{octet}.2");
    namespace.server = Some(
        namespace
            .exec(redis.to_str().unwrap())
            .args(["--port", &REDIS_PORT.to_string(), "--bind", &server_ip])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server"),
    );
    let address = format!("{server_ip}:{REDIS_PORT}");
    bpfkit::wait_for_listener(&address);
    let go = bpfkit::go("subscriber");
    let cgroup = TestCgroup::new("deadpeer");
    cgroup.attach_ok(&bpfkit::DEAD_PEER_POLICY, &[]);
    let (mut with, with_lines) = subscribe(cgroup.command(&go, &[&address, "kpb"]));
    let (mut without, without_lines) = subscribe({
        let mut command = Command::new(&go);
        command.args([&address, "kpb"]);
        command
    });
    std::thread::sleep(Duration::from_millis(300));
    for chain in ["INPUT", "OUTPUT"] {
        bpfkit::run_ok(namespace.exec("iptables").args(["-I", chain, "-j", "DROP"]));
    }
    let blackholed = Instant::now();
    let (at, line) = with_lines
        .recv_timeout(Duration::from_secs(30))
        .expect("the subscriber under the policy never noticed");
    let noticed = at.duration_since(blackholed);
    eprintln!(
        "with the policy: {line} ({:.2} s after the blackhole)",
        noticed.as_secs_f64()
    );
    assert!(line.starts_with("gone after"), "{line}");
    assert!(
        noticed <= Duration::from_secs(4),
        "2/1/3 and a 3 s user timeout: noticed after {noticed:?}, more than 4 s"
    );
    let _ = with.wait();
    // Without the policy Go's own keepalive (15 s, then 15 s probes) leaves it waiting.
    let still =
        without_lines.recv_timeout(Duration::from_secs(10).saturating_sub(blackholed.elapsed()));
    assert!(
        still.is_err(),
        "without the policy it noticed early: {still:?}"
    );
    assert!(
        without.try_wait().unwrap().is_none(),
        "still waiting at 10 s"
    );
    eprintln!(
        "without the policy: still subscribed {:.1} s after the blackhole",
        blackholed.elapsed().as_secs_f64()
    );
    let _ = without.kill();
    let _ = without.wait();
}
