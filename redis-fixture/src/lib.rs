//! The one Redis Cluster fixture of keepalive-preload: used by the tests (`tests/redis_cluster.rs`,
//! `cli/tests/apply_cluster.rs`) and by the `redis-cluster` demo binary alike.
//!
//! A [`Cluster`] is N `redis-server` nodes in cluster mode, with or without the preload library
//! and its variables, each node in a network namespace of its own (a veth to a bridge in a hub
//! namespace, where the clients run) or all on loopback. It hands back typed [`Link`]s whose
//! addresses, states and keepalive values the project's own `keepalive-preload inspect --json`
//! reads from the live sockets; it blackholes and heals nodes (iptables DROP in the node's
//! namespace), starts pub/sub subscribers (`redis-cli subscribe` and redis-py), writes and reads
//! keys, and times dead links. Dropping it (also while a test panics) ends every process it
//! started and deletes every namespace it made; what an interrupted earlier run left behind is
//! deleted when the next cluster starts.
//!
//! Needs root for namespaces, iptables and for reading other processes' sockets.

mod clients;
mod dead_peer;
pub mod inspect;
mod links;
mod ports;
pub mod resp;
mod sys;

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use clients::Benchmark;
pub use dead_peer::{DeadPeer, DeadPeerOptions, Subscriber, SubscriberOutcome};
pub use inspect::{Socket, Values, inspect, try_inspect};
pub use links::{Kind, Link, Watched};
pub use ports::Ports;
pub use resp::{Conn, Reply};
pub use sys::{Proc, Recorded, clean_leftovers, namespaces, records, state_root, teardown_all};

/// `cluster-node-timeout` of every node.
pub const NODE_TIMEOUT_MS: u32 = 15_000;
/// The /24 of the namespaces: the hub's bridge is .1, node i is .(10 + i).
pub const SUBNET: [u8; 3] = [10, 213, 0];
/// In namespaces node i listens on 7000 + i and its bus on 17000 + i.
pub const NETNS_PORT_BASE: u16 = 7000;

static SERIAL: Mutex<()> = Mutex::new(());

/// One cluster test at a time in a test process: the times they measure must not compete for
/// the CPU. A failed test does not block the others.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Root and the tools of the Redis tests, or a failure that says what is missing.
pub fn require() {
    testkit::require_root("network namespaces, iptables, pidfd_getfd of redis-server");
    for (program, package) in [
        ("redis-server", "redis-server"),
        ("redis-cli", "redis-tools"),
        ("redis-benchmark", "redis-tools"),
        ("iptables", "iptables"),
        ("ip", "iproute2"),
    ] {
        testkit::tool(program, package);
    }
    let python = Command::new("/usr/bin/python3")
        .args(["-c", "import redis"])
        .status();
    assert!(
        python.is_ok_and(|status| status.success()),
        "/usr/bin/python3 with the redis module is missing: apt-get install python3-redis"
    );
}

/// How a cluster is made; [`Builder::start`] makes it.
#[derive(Clone, Debug)]
pub struct Builder {
    name: String,
    nodes: usize,
    replicas: usize,
    netns: bool,
    library: Option<PathBuf>,
    vars: Vec<(String, String)>,
    ports: Option<Ports>,
    command: Option<PathBuf>,
    timeout: Duration,
    quiet: bool,
}

impl Builder {
    /// Nodes (default 3, or 3 x (1 + replicas)).
    pub fn nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes;
        self
    }

    /// Replicas per master.
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// Each node in a network namespace of its own (blackhole needs it); else all on loopback.
    pub fn netns(mut self) -> Self {
        self.netns = true;
        self
    }

    /// `LD_PRELOAD` of this library into every redis-server.
    pub fn library(mut self, path: impl Into<PathBuf>) -> Self {
        self.library = Some(path.into());
        self
    }

    /// `LD_PRELOAD` of the shipped library (`testkit::library()`) into every redis-server.
    pub fn with_library(self) -> Self {
        self.library(testkit::library())
    }

    /// Library variables (`NAME=VALUE`) for every redis-server (and, on request, clients).
    pub fn vars<S: AsRef<str>>(mut self, vars: impl IntoIterator<Item = S>) -> Self {
        for var in vars {
            let var = var.as_ref();
            let (name, value) = var
                .split_once('=')
                .unwrap_or_else(|| panic!("{var}: expected NAME=VALUE"));
            self.vars.push((name.to_owned(), value.to_owned()));
        }
        self
    }

    /// Loopback ports (default: [`Ports::free`]).
    pub fn ports(mut self, ports: Ports) -> Self {
        self.ports = Some(ports);
        self
    }

    /// The `keepalive-preload` command that reads the sockets (default: `testkit::command()`).
    pub fn command(mut self, path: impl Into<PathBuf>) -> Self {
        self.command = Some(path.into());
        self
    }

    /// How long to wait for `cluster_state:ok` and the full bus mesh (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// No line on stderr when the cluster is up.
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// Starts the nodes, creates the cluster and waits for `cluster_state:ok` on every node and
    /// for the full bus mesh. Panics (after tearing down what it made) when it cannot.
    pub fn start(self) -> Cluster {
        for cleaned in clean_leftovers() {
            eprintln!("redis-fixture: deleted the leftovers of an earlier run: {cleaned}");
        }
        let nodes = match self.nodes {
            0 => 3 * (1 + self.replicas),
            n => n,
        };
        assert!(
            nodes >= 3 * (1 + self.replicas),
            "{nodes} nodes are too few for {} replica(s) per master",
            self.replicas
        );
        if let Some(library) = &self.library {
            assert!(library.is_file(), "{}: no such library", library.display());
        }
        let command = self.command.clone().unwrap_or_else(testkit::command);
        let started = Instant::now();
        let tag = format!("{:06x}", ports::random() & 0xff_ffff);
        let dir = state_root().join(&tag);
        sys::register(&tag, &dir);
        // From here on a panic drops the cluster, which tears down what exists.
        let mut cluster = Cluster {
            name: self.name.clone(),
            tag: tag.clone(),
            dir: dir.clone(),
            nodes: Vec::new(),
            hub: None,
            library: self.library.clone(),
            vars: self.vars.clone(),
            command,
            up: Duration::ZERO,
            blackholed: Mutex::new(BTreeSet::new()),
            stopped: false,
        };
        let ports = if self.netns {
            cluster.hub = Some(cluster.make_namespaces(nodes));
            Ports::netns(nodes)
        } else {
            self.ports.clone().unwrap_or_else(|| Ports::free(nodes))
        };
        assert!(
            ports.client.len() >= nodes && ports.bus.len() >= nodes,
            "{ports:?}: too few for {nodes} nodes"
        );
        for index in 1..=nodes {
            cluster.start_node(index, &ports, self.netns);
        }
        for node in &cluster.nodes {
            cluster.wait_ping(node);
        }
        let mut create = cluster.client_command("redis-cli", false);
        create
            .arg("--cluster")
            .arg("create")
            .args(cluster.nodes.iter().map(|n| n.addr().to_string()))
            .args([
                "--cluster-replicas",
                &self.replicas.to_string(),
                "--cluster-yes",
            ]);
        sys::run(&mut create, Duration::from_secs(90));
        cluster.wait_ok(self.timeout);
        cluster.wait_mesh(self.timeout);
        cluster.up = started.elapsed();
        if !self.quiet {
            eprintln!(
                "redis-fixture: [{}] {} node(s) up in {:.2?} ({}; {})",
                cluster.name,
                nodes,
                cluster.up,
                match &cluster.hub {
                    Some(_) => format!("namespaces {PREFIX}-{tag}-*", PREFIX = sys::PREFIX),
                    None => format!(
                        "loopback, client ports {:?}, bus ports {:?}",
                        ports.client, ports.bus
                    ),
                },
                cluster.describe_library()
            );
        }
        cluster
    }
}

/// One redis-server of a cluster.
#[derive(Clone, Debug)]
pub struct Node {
    /// 1, 2, ...
    pub index: usize,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub bus_port: u16,
    pub pid: u32,
    /// Its namespace, when the cluster has one per node.
    pub netns: Option<String>,
    pub dir: PathBuf,
    /// The start time that tells this process from a later one with its PID.
    start: u64,
}

impl Node {
    /// Still running (not exited, not a zombie).
    pub fn running(&self) -> bool {
        sys::Proc {
            pid: self.pid,
            start: self.start,
        }
        .alive()
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.port))
    }

    /// Where the other nodes connect their bus links.
    pub fn bus_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.bus_port))
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("redis.log")
    }
}

/// A running cluster; dropping it ends every process and deletes every namespace it made.
pub struct Cluster {
    name: String,
    tag: String,
    dir: PathBuf,
    nodes: Vec<Node>,
    hub: Option<String>,
    library: Option<PathBuf>,
    vars: Vec<(String, String)>,
    command: PathBuf,
    up: Duration,
    blackholed: Mutex<BTreeSet<usize>>,
    stopped: bool,
}

impl Cluster {
    /// A cluster named `name` (in messages) to be started.
    pub fn builder(name: &str) -> Builder {
        Builder {
            name: name.to_owned(),
            nodes: 0,
            replicas: 0,
            netns: false,
            library: None,
            vars: Vec::new(),
            ports: None,
            command: None,
            timeout: Duration::from_secs(60),
            quiet: false,
        }
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Node `index` (1-based).
    pub fn node(&self, index: usize) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.index == index)
            .unwrap_or_else(|| panic!("no node {index}"))
    }

    /// How long the start took, to the full mesh.
    pub fn up_time(&self) -> Duration {
        self.up
    }

    /// The hub namespace (where clients run), when the nodes have namespaces.
    pub fn hub(&self) -> Option<&str> {
        self.hub.as_deref()
    }

    /// Every namespace of the cluster.
    pub fn namespaces(&self) -> Vec<String> {
        self.hub
            .iter()
            .cloned()
            .chain(self.nodes.iter().filter_map(|n| n.netns.clone()))
            .collect()
    }

    /// The cluster's state directory (node directories and logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn library(&self) -> Option<&Path> {
        self.library.as_deref()
    }

    /// `LD_PRELOAD` and the variables of processes under the cluster's library (none without).
    pub fn library_env(&self) -> Vec<(String, String)> {
        let Some(library) = &self.library else {
            return Vec::new();
        };
        let mut env = vec![("LD_PRELOAD".to_owned(), library.display().to_string())];
        env.extend(self.vars.iter().cloned());
        env
    }

    fn describe_library(&self) -> String {
        match &self.library {
            Some(library) => format!(
                "library {} {}",
                library.display(),
                self.vars
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            None => "no library".to_owned(),
        }
    }

    fn make_namespaces(&self, nodes: usize) -> String {
        let hub = format!("{}-{}-hub", sys::PREFIX, self.tag);
        let bridge = format!("{}-br", sys::PREFIX);
        let hub_ip = format!("{}.{}.{}.1/24", SUBNET[0], SUBNET[1], SUBNET[2]);
        sys::add_netns(&self.tag, &hub);
        sys::ip(&["-n", &hub, "link", "add", &bridge, "type", "bridge"]);
        sys::ip(&["-n", &hub, "addr", "add", &hub_ip, "dev", &bridge]);
        sys::ip(&["-n", &hub, "link", "set", &bridge, "up"]);
        sys::ip(&["-n", &hub, "link", "set", "lo", "up"]);
        for i in 1..=nodes {
            let ns = format!("{}-{}-n{i}", sys::PREFIX, self.tag);
            let veth = format!("v{i}");
            let ip = format!("{}.{}.{}.{}/24", SUBNET[0], SUBNET[1], SUBNET[2], 10 + i);
            sys::add_netns(&self.tag, &ns);
            sys::ip(&[
                "-n", &hub, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]);
            sys::ip(&["-n", &hub, "link", "set", &veth, "master", &bridge]);
            sys::ip(&["-n", &hub, "link", "set", &veth, "up"]);
            sys::ip(&["-n", &ns, "addr", "add", &ip, "dev", "eth0"]);
            sys::ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            sys::ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        hub
    }

    fn start_node(&mut self, index: usize, ports: &Ports, netns: bool) {
        let (ip, netns) = if netns {
            (
                Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], 10 + index as u8),
                Some(format!("{}-{}-n{index}", sys::PREFIX, self.tag)),
            )
        } else {
            (Ipv4Addr::LOCALHOST, None)
        };
        let dir = self.dir.join(format!("node{index}"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let (port, bus_port) = (ports.client[index - 1], ports.bus[index - 1]);
        let conf = dir.join("redis.conf");
        std::fs::write(
            &conf,
            format!(
                "# written by redis-fixture\nbind {ip}\nport {port}\ncluster-port {bus_port}\n\
                 protected-mode no\ndaemonize no\ncluster-enabled yes\n\
                 cluster-config-file nodes.conf\ncluster-node-timeout {NODE_TIMEOUT_MS}\n\
                 tcp-keepalive 300\ndir {}\nlogfile \"\"\nsave \"\"\nappendonly no\n",
                dir.display()
            ),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", conf.display()));
        let mut server = sys::in_netns(sys::command("redis-server"), netns.as_deref());
        server.arg(&conf);
        inspect::without_library(&mut server);
        server.envs(self.library_env());
        let log = dir.join("redis.log");
        let (_child, proc) = sys::spawn(&self.tag, &mut server, &log);
        self.nodes.push(Node {
            index,
            ip,
            port,
            bus_port,
            pid: proc.pid,
            netns,
            dir,
            start: proc.start,
        });
    }

    fn wait_ping(&self, node: &Node) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let pong = self
                .try_connect(node.addr())
                .and_then(|mut conn| conn.call(&["PING"]));
            if matches!(pong, Ok(Reply::Status(ref s)) if s == "PONG") {
                return;
            }
            self.check_alive();
            assert!(
                Instant::now() < deadline,
                "node {} does not answer PING ({pong:?}):\n{}",
                node.index,
                tail(&node.log(), 20)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Panics with its log when a node exited.
    pub fn check_alive(&self) {
        for node in &self.nodes {
            assert!(
                node.running(),
                "node {} (pid {}) exited:\n{}",
                node.index,
                node.pid,
                tail(&node.log(), 30)
            );
        }
    }

    /// A TCP connection to `addr` made where the clients are (the hub namespace, or here).
    pub fn tcp(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        let connect = move || TcpStream::connect_timeout(&addr, Duration::from_secs(5));
        match &self.hub {
            None => connect(),
            Some(hub) => {
                let path = format!("/var/run/netns/{hub}");
                let file = std::fs::File::open(&path)?;
                // A thread of its own enters the namespace; the socket stays in it.
                std::thread::spawn(move || {
                    // SAFETY: setns on an open namespace descriptor affects this thread only.
                    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    connect()
                })
                .join()
                .expect("connect thread")
            }
        }
    }

    fn try_connect(&self, addr: SocketAddr) -> std::io::Result<Conn> {
        Conn::new(self.tcp(addr)?)
    }

    /// A Redis connection to node `index` from where the clients are.
    pub fn connect(&self, index: usize) -> Conn {
        let node = self.node(index);
        self.try_connect(node.addr())
            .unwrap_or_else(|e| panic!("connect to node {index} ({}): {e}", node.addr()))
    }

    /// `program` run where the clients are (the hub namespace, or here), in its own session,
    /// without the library unless `under_library` (then with the cluster's library and
    /// variables).
    pub fn client_command(&self, program: &str, under_library: bool) -> Command {
        let mut command = sys::in_netns(sys::command(program), self.hub.as_deref());
        inspect::without_library(&mut command);
        if under_library {
            command.envs(self.library_env());
        }
        command
    }

    /// `program` run inside node `index`'s namespace (or here on loopback), without the library.
    pub fn node_command(&self, index: usize, program: &str) -> Command {
        let mut command = sys::in_netns(sys::command(program), self.node(index).netns.as_deref());
        inspect::without_library(&mut command);
        command
    }

    /// The CLUSTER INFO field `cluster_state` of every node (None: no answer).
    pub fn states(&self) -> Vec<Option<String>> {
        self.nodes
            .iter()
            .map(|node| {
                let info = self
                    .try_connect(node.addr())
                    .and_then(|mut conn| conn.call(&["CLUSTER", "INFO"]))
                    .ok()?;
                info.text()?
                    .lines()
                    .find_map(|line| line.trim().strip_prefix("cluster_state:"))
                    .map(str::to_owned)
            })
            .collect()
    }

    /// Waits for `cluster_state:ok` on every node; how long that took.
    pub fn wait_ok(&self, timeout: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let states = self.states();
            if states.iter().all(|s| s.as_deref() == Some("ok")) {
                return started.elapsed();
            }
            self.check_alive();
            assert!(
                started.elapsed() < timeout,
                "[{}] cluster_state not ok on every node after {timeout:?}: {states:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of every node's log.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            out.push_str(&format!(
                "--- node {} ({})\n{}",
                node.index,
                node.log().display(),
                tail(&node.log(), 15)
            ));
        }
        out
    }

    /// Stops everything and checks that no process, no namespace and no file of it is left.
    pub fn stop(mut self) {
        self.stopped = true;
        let errors = sys::teardown_tag(&self.tag, false);
        assert!(errors.is_empty(), "[{}] teardown: {errors:?}", self.name);
        self.assert_gone();
    }

    /// Panics unless every process and namespace of the cluster is gone.
    pub fn assert_gone(&self) {
        for node in &self.nodes {
            assert!(
                !node.running(),
                "node {} (pid {}) still runs",
                node.index,
                node.pid
            );
        }
        let left = namespaces();
        for name in self.namespaces() {
            assert!(!left.contains(&name), "namespace {name} not deleted");
        }
        assert!(!self.dir.exists(), "{} not removed", self.dir.display());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        if std::thread::panicking() {
            eprintln!("[{}] node logs:\n{}", self.name, self.logs());
        }
        for error in sys::teardown_tag(&self.tag, false) {
            eprintln!("redis-fixture: [{}] teardown: {error}", self.name);
        }
    }
}

/// The last `lines` lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let mut out = all[all.len().saturating_sub(lines)..].join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(netns: bool) -> Cluster {
        let mut cluster = Cluster {
            name: "unit".into(),
            tag: "unit-not-registered".into(),
            dir: PathBuf::from("/nonexistent"),
            nodes: Vec::new(),
            hub: None,
            library: None,
            vars: Vec::new(),
            command: PathBuf::from("keepalive-preload"),
            up: Duration::ZERO,
            blackholed: Mutex::new(BTreeSet::new()),
            stopped: true,
        };
        let ports = if netns {
            Ports::netns(2)
        } else {
            Ports {
                client: vec![20001, 20002],
                bus: vec![26001, 26002],
            }
        };
        for index in 1..=2 {
            cluster.nodes.push(Node {
                index,
                ip: if netns {
                    Ipv4Addr::new(10, 213, 0, 10 + index as u8)
                } else {
                    Ipv4Addr::LOCALHOST
                },
                port: ports.client[index - 1],
                bus_port: ports.bus[index - 1],
                pid: 100 + index as u32,
                netns: netns.then(|| format!("kpf-unit-n{index}")),
                dir: PathBuf::new(),
                start: 0,
            });
        }
        cluster
    }

    fn socket(pid: u32, local: &str, remote: Option<&str>, state: &str) -> Socket {
        Socket {
            pid,
            fd: 3,
            program: "redis-server".into(),
            local: Some(local.parse().unwrap()),
            remote: remote.map(|r| r.parse().unwrap()),
            state: state.into(),
            values: Values::off(),
            library: false,
        }
    }

    #[test]
    fn loopback_links_find_their_peer_from_the_other_end() {
        let c = cluster(false);
        let links = c.classify(&[
            socket(101, "127.0.0.1:26001", None, "LISTEN"),
            socket(
                101,
                "127.0.0.1:40000",
                Some("127.0.0.1:26002"),
                "ESTABLISHED",
            ),
            socket(
                102,
                "127.0.0.1:26002",
                Some("127.0.0.1:40000"),
                "ESTABLISHED",
            ),
            socket(
                102,
                "127.0.0.1:41000",
                Some("127.0.0.1:20001"),
                "ESTABLISHED",
            ),
            socket(
                101,
                "127.0.0.1:20001",
                Some("127.0.0.1:41000"),
                "ESTABLISHED",
            ),
            socket(
                101,
                "127.0.0.1:20001",
                Some("127.0.0.1:50000"),
                "ESTABLISHED",
            ),
        ]);
        let got: Vec<(usize, Kind, Option<usize>)> =
            links.iter().map(|l| (l.node, l.kind, l.peer)).collect();
        assert_eq!(
            got,
            [
                (1, Kind::BusOut, Some(2)),
                (1, Kind::Client, None),
                (1, Kind::Client, None),
                (1, Kind::Listener, None),
                (2, Kind::BusIn, Some(1)),
                (2, Kind::Replication, Some(1)),
            ]
        );
    }

    #[test]
    fn namespace_links_find_their_peer_by_address_when_the_other_end_is_gone() {
        let c = cluster(true);
        let links = c.classify(&[socket(
            101,
            "10.213.0.11:17001",
            Some("10.213.0.12:39000"),
            "ESTABLISHED",
        )]);
        assert_eq!((links[0].kind, links[0].peer), (Kind::BusIn, Some(2)));
        let mesh = c.missing_from_mesh(&links);
        assert_eq!(
            mesh,
            [
                (1, Kind::BusOut, 2),
                (2, Kind::BusOut, 1),
                (2, Kind::BusIn, 1)
            ]
        );
    }

    #[test]
    fn resp_replies_decode() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 64];
            let n = std::io::Read::read(&mut stream, &mut request).unwrap();
            assert_eq!(&request[..n], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
            std::io::Write::write_all(
                &mut stream,
                b"*4\r\n$3\r\nabc\r\n:7\r\n$-1\r\n-MOVED 1 10.213.0.12:7002\r\n",
            )
            .unwrap();
        });
        let mut conn = Conn::new(TcpStream::connect(addr).unwrap()).unwrap();
        let reply = conn.call(&["GET", "k"]).unwrap();
        server.join().unwrap();
        assert_eq!(
            reply,
            Reply::Array(Some(vec![
                Reply::Bulk(Some("abc".into())),
                Reply::Integer(7),
                Reply::Bulk(None),
                Reply::Error("MOVED 1 10.213.0.12:7002".into()),
            ]))
        );
    }

    #[test]
    fn free_ports_put_every_client_port_below_every_bus_port() {
        let ports = Ports::free(6);
        assert_eq!((ports.client.len(), ports.bus.len()), (6, 6));
        assert!(
            ports.client.iter().max() < ports.bus.iter().min(),
            "{ports:?}"
        );
        assert_eq!(ports.bus_list().split(',').count(), 6);
    }
}
