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

pub mod inspect;
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

pub use inspect::{Socket, Values, inspect, try_inspect};
pub use resp::{Conn, Reply};
pub use sys::{Proc, Recorded, clean_leftovers, namespaces, records, state_root, teardown_all};

/// `cluster-node-timeout` of every node.
pub const NODE_TIMEOUT_MS: u32 = 15_000;
/// The /24 of the namespaces: the hub's bridge is .1, node i is .(10 + i).
pub const SUBNET: [u8; 3] = [10, 213, 0];
/// In namespaces node i listens on 7000 + i and its bus on 17000 + i.
pub const NETNS_PORT_BASE: u16 = 7000;

const SUBSCRIBER_PY: &str = r#"
import sys, redis
host, port, channel = sys.argv[1], int(sys.argv[2]), sys.argv[3]
p = redis.Redis(host=host, port=port).pubsub()
p.subscribe(channel)
try:
    for m in p.listen():
        print("message", m, flush=True)
except Exception as e:
    print(f"python subscriber: connection failed: {type(e).__name__}: {e}", flush=True)
    sys.exit(1)
"#;

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

/// A random number (std's hasher keys are random per process and per call).
fn random() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// Ports of the nodes: node i listens on `client[i - 1]` and its bus on `bus[i - 1]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ports {
    pub client: Vec<u16>,
    pub bus: Vec<u16>,
}

impl Ports {
    /// Loopback ports for `nodes` nodes that were free on 127.0.0.1 a moment ago, in the range
    /// of `REDIS_FIXTURE_PORTS` (`LOW-HIGH`, default 20000-31999, below the ephemeral ports):
    /// client ports from its lower half, bus ports from its upper half, so that every client
    /// port lies below every bus port.
    pub fn free(nodes: usize) -> Self {
        let range = std::env::var("REDIS_FIXTURE_PORTS").unwrap_or_else(|_| "20000-31999".into());
        let (low, high) = range
            .split_once('-')
            .and_then(|(l, h)| Some((l.parse::<u16>().ok()?, h.parse::<u16>().ok()?)))
            .filter(|(l, h)| l < h)
            .unwrap_or_else(|| panic!("REDIS_FIXTURE_PORTS={range}: expected LOW-HIGH"));
        let half = (high - low).div_ceil(2);
        // From a random place in each half onwards (wrapping), the first free ports.
        let pick = |first: u16| -> Vec<u16> {
            let start = random() % u64::from(half);
            (0..u64::from(half))
                .map(|k| first + ((start + k) % u64::from(half)) as u16)
                .filter(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
                .take(nodes)
                .collect()
        };
        let ports = Self {
            client: pick(low),
            bus: pick(low + half),
        };
        assert!(
            ports.client.len() == nodes && ports.bus.len() == nodes,
            "REDIS_FIXTURE_PORTS={range}: not {nodes} free ports in each half"
        );
        ports
    }

    /// Inside namespaces: 7000 + i and 17000 + i.
    fn netns(nodes: usize) -> Self {
        let ports = |base: u16| (1..=nodes as u16).map(|i| base + i).collect();
        Self {
            client: ports(NETNS_PORT_BASE),
            bus: ports(NETNS_PORT_BASE + 10_000),
        }
    }

    /// The bus ports, comma-separated, for `KEEPALIVE_PORTS`.
    pub fn bus_list(&self) -> String {
        let ports: Vec<String> = self.bus.iter().map(u16::to_string).collect();
        ports.join(",")
    }
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
        let tag = format!("{:06x}", random() & 0xff_ffff);
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

/// What a TCP socket of a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// The node's end of the bus link a peer connected.
    BusIn,
    /// The bus link the node connected to a peer.
    BusOut,
    /// A client's link to the node's client port.
    Client,
    /// A replica's link to its master.
    Replication,
    /// A listening socket.
    Listener,
    Other,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::BusIn => "bus-in",
            Kind::BusOut => "bus-out",
            Kind::Client => "client",
            Kind::Replication => "replication",
            Kind::Listener => "listener",
            Kind::Other => "other",
        }
    }
}

/// One TCP socket of one node, with the values read from it.
#[derive(Clone, Debug)]
pub struct Link {
    pub node: usize,
    pub kind: Kind,
    /// The node at the other end (bus and replication links).
    pub peer: Option<usize>,
    pub local: SocketAddr,
    pub remote: Option<SocketAddr>,
    pub state: String,
    pub values: Values,
}

impl Link {
    pub fn established(&self) -> bool {
        self.state == "ESTABLISHED"
    }

    pub fn is(&self, kind: Kind) -> bool {
        self.established() && self.kind == kind
    }

    /// `node 1 bus-in 10.213.0.11:17001 -> 10.213.0.13:39776`: which link, without its values.
    pub fn endpoints(&self) -> String {
        format!(
            "node {} {} {} -> {}",
            self.node,
            self.kind.name(),
            self.local,
            self.remote.map_or("-".to_owned(), |r| r.to_string())
        )
    }

    /// What [`Cluster::watch`] needs to follow this link.
    pub fn watched(&self, cluster: &Cluster) -> Watched {
        Watched {
            pid: cluster.node(self.node).pid,
            local: self.local,
            remote: self.remote.expect("a connected link"),
        }
    }
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "node {} {} {} -> {} ({}, peer {}): {}",
            self.node,
            self.kind.name(),
            self.local,
            self.remote.map_or("-".to_owned(), |r| r.to_string()),
            self.state,
            self.peer.map_or("-".to_owned(), |p| p.to_string()),
            self.values
        )
    }
}

/// A TCP link of a process to follow: [`Cluster::watch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watched {
    pub pid: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// A `redis-cli subscribe` or redis-py subscriber, in the hub namespace; stopped on drop.
pub struct Subscriber {
    /// `redis-cli` or `python`.
    pub name: &'static str,
    pub pid: u32,
    /// Its link to the node, found once it was subscribed.
    pub link: Watched,
    pub log: PathBuf,
    child: Child,
    tag: String,
}

impl Subscriber {
    /// Still running (and not yet reaped).
    pub fn running(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    /// The last lines it printed, joined by ` | `.
    pub fn output(&self) -> String {
        tail(&self.log, 3).lines().collect::<Vec<_>>().join(" | ")
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        sys::stop_proc(&self.tag, &mut self.child);
    }
}

/// What became of a subscriber while a node was blackholed.
#[derive(Clone, Debug)]
pub struct SubscriberOutcome {
    pub name: &'static str,
    /// When its link stopped being ESTABLISHED (or it exited), after the blackhole.
    pub gone: Option<Duration>,
    pub exited: bool,
    pub established_at_end: bool,
    /// The last lines it printed.
    pub output: String,
}

/// How [`Cluster::dead_peer`] runs.
#[derive(Clone, Copy, Debug)]
pub struct DeadPeerOptions {
    pub victim: usize,
    pub survivor: usize,
    /// redis-cli and redis-py subscribers to the victim, in the hub namespace.
    pub subscribers: bool,
    /// The subscribers under the cluster's library (and variables).
    pub subscribers_under_library: bool,
    /// Stop watching as soon as everything is gone.
    pub until_gone: bool,
    /// Watch at most this long.
    pub observe: Duration,
    /// PUBLISH on the survivor right after the blackhole, so that data is in flight on its
    /// outbound link from t = 0.
    pub publish: bool,
    /// Leave the victim blackholed.
    pub keep_blackhole: bool,
}

impl Default for DeadPeerOptions {
    fn default() -> Self {
        Self {
            victim: 3,
            survivor: 1,
            subscribers: false,
            subscribers_under_library: true,
            until_gone: false,
            observe: Duration::from_secs(20),
            publish: true,
            keep_blackhole: false,
        }
    }
}

/// How long the survivor's links to a blackholed victim (and the subscribers) lasted.
#[derive(Clone, Debug)]
pub struct DeadPeer {
    pub observed: Duration,
    pub inbound_link: Link,
    pub outbound_link: Link,
    pub inbound_gone: Option<Duration>,
    pub outbound_gone: Option<Duration>,
    pub inbound_at_end: bool,
    pub outbound_at_end: bool,
    pub subscribers: Vec<SubscriberOutcome>,
}

impl DeadPeer {
    pub fn subscriber(&self, name: &str) -> &SubscriberOutcome {
        self.subscribers
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} subscriber in {self:?}"))
    }
}

fn gone_text(gone: Option<Duration>, at_end: bool) -> String {
    match gone {
        Some(t) => format!("gone after {:.2} s", t.as_secs_f64()),
        None => format!(
            "still there ({} at the end)",
            if at_end { "ESTABLISHED" } else { "gone" }
        ),
    }
}

impl std::fmt::Display for DeadPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (inbound, outbound) = (&self.inbound_link, &self.outbound_link);
        let show = |a: Option<SocketAddr>| a.map_or("-".to_owned(), |a| a.to_string());
        writeln!(
            f,
            "node {} blackholed, node {} watched for {:.2} s:",
            outbound.peer.unwrap_or(0),
            outbound.node,
            self.observed.as_secs_f64()
        )?;
        writeln!(
            f,
            "  inbound bus link  {:<44} {}",
            format!("{} -> {}", show(inbound.remote), inbound.local),
            gone_text(self.inbound_gone, self.inbound_at_end)
        )?;
        writeln!(
            f,
            "  outbound bus link {:<44} {}",
            format!("{} -> {}", outbound.local, show(outbound.remote)),
            gone_text(self.outbound_gone, self.outbound_at_end)
        )?;
        for s in &self.subscribers {
            writeln!(
                f,
                "  subscriber {:<9} {} ({}): {}",
                s.name,
                gone_text(s.gone, s.established_at_end),
                if s.exited { "exited" } else { "running" },
                s.output
            )?;
        }
        Ok(())
    }
}

/// `redis-benchmark --cluster` against a cluster: [`Cluster::benchmark`].
#[derive(Clone, Debug)]
pub struct Benchmark {
    pub success: bool,
    pub took: Duration,
    /// Lines of its output that mention an error.
    pub errors: Vec<String>,
    /// Its `requests per second` lines.
    pub results: Vec<String>,
    /// Open descriptors of every node before and (after it settled) after.
    pub fds_before: Vec<usize>,
    pub fds_after: Vec<usize>,
}

impl std::fmt::Display for Benchmark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "redis-benchmark {} in {:.2} s, {} error line(s) {:?}",
            if self.success { "succeeded" } else { "failed" },
            self.took.as_secs_f64(),
            self.errors.len(),
            self.errors.iter().take(5).collect::<Vec<_>>()
        )?;
        for result in &self.results {
            writeln!(f, "  {result}")?;
        }
        write!(
            f,
            "  open descriptors per node: {:?} before, {:?} after",
            self.fds_before, self.fds_after
        )
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

    /// The (node, kind, peer) bus links missing from a full mesh.
    fn missing_from_mesh(&self, links: &[Link]) -> Vec<(usize, Kind, usize)> {
        let have: BTreeSet<(usize, Kind, usize)> = links
            .iter()
            .filter(|l| l.established())
            .filter_map(|l| Some((l.node, l.kind, l.peer?)))
            .collect();
        let n = self.nodes.len();
        (1..=n)
            .flat_map(|i| (1..=n).filter(move |&j| j != i).map(move |j| (i, j)))
            .flat_map(|(i, j)| [(i, Kind::BusOut, j), (i, Kind::BusIn, j)])
            .filter(|want| !have.contains(want))
            .collect()
    }

    /// Waits until every node has an ESTABLISHED inbound and outbound bus link with every other;
    /// how long that took.
    pub fn wait_mesh(&self, timeout: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let missing = self.missing_from_mesh(&self.links());
            if missing.is_empty() {
                return started.elapsed();
            }
            self.check_alive();
            assert!(
                started.elapsed() < timeout,
                "[{}] bus mesh incomplete after {timeout:?}; missing {missing:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Panics unless every node has an ESTABLISHED inbound and outbound bus link with every
    /// other in `links`.
    pub fn assert_full_mesh(&self, links: &[Link]) {
        let missing = self.missing_from_mesh(links);
        assert!(
            missing.is_empty(),
            "bus mesh incomplete; missing {missing:?}"
        );
    }

    /// Every TCP socket of every node, classified, with the values `inspect` reads.
    pub fn links(&self) -> Vec<Link> {
        let pids: Vec<u32> = self.nodes.iter().map(|n| n.pid).collect();
        let sockets = inspect(&self.command, &pids);
        self.classify(&sockets)
    }

    /// Every link, once the bus mesh is complete (at most 30 s).
    pub fn meshed_links(&self) -> Vec<Link> {
        self.wait_mesh(Duration::from_secs(30));
        self.links()
    }

    fn classify(&self, sockets: &[Socket]) -> Vec<Link> {
        let by_bus: BTreeMap<SocketAddr, usize> =
            self.nodes.iter().map(|n| (n.bus_addr(), n.index)).collect();
        let by_client: BTreeMap<SocketAddr, usize> =
            self.nodes.iter().map(|n| (n.addr(), n.index)).collect();
        let by_ip: BTreeMap<IpAddr, usize> = self
            .nodes
            .iter()
            .filter(|n| n.netns.is_some())
            .map(|n| (IpAddr::V4(n.ip), n.index))
            .collect();
        let by_pid: BTreeMap<u32, usize> = self.nodes.iter().map(|n| (n.pid, n.index)).collect();
        // Which node holds the socket local -> remote: the peer of an inbound link on loopback.
        let ends: BTreeMap<(SocketAddr, SocketAddr), usize> = sockets
            .iter()
            .filter_map(|s| Some(((s.local?, s.remote?), *by_pid.get(&s.pid)?)))
            .collect();
        let mut links = Vec::new();
        for socket in sockets {
            let (Some(&node), Some(local)) = (by_pid.get(&socket.pid), socket.local) else {
                continue;
            };
            let remote = socket.remote;
            let other_end = || {
                let remote = remote?;
                ends.get(&(remote, local))
                    .copied()
                    .or_else(|| by_ip.get(&remote.ip()).copied())
            };
            let (kind, peer) = if socket.state == "LISTEN" {
                (Kind::Listener, None)
            } else if let Some(&peer) = remote.as_ref().and_then(|r| by_bus.get(r)) {
                (Kind::BusOut, Some(peer))
            } else if by_bus.get(&local) == Some(&node) {
                (Kind::BusIn, other_end())
            } else if let Some(&peer) = remote.as_ref().and_then(|r| by_client.get(r)) {
                (Kind::Replication, Some(peer))
            } else if by_client.get(&local) == Some(&node) {
                (Kind::Client, None)
            } else {
                (Kind::Other, None)
            };
            links.push(Link {
                node,
                kind,
                peer,
                local,
                remote,
                state: socket.state.clone(),
                values: socket.values,
            });
        }
        links.sort_by_key(|l| (l.node, l.kind, l.peer, l.local, l.remote));
        links
    }

    /// Drops every packet in and out of node `index`'s `eth0`, inside its namespace: no FIN, no
    /// RST, the node is simply gone for the others.
    pub fn blackhole(&self, index: usize) {
        assert!(self.hub.is_some(), "blackhole needs nodes in namespaces");
        for rule in [["INPUT", "-i"], ["OUTPUT", "-o"]] {
            let mut iptables = self.node_command(index, "iptables");
            iptables.args(["-w", "5", "-I", rule[0], rule[1], "eth0", "-j", "DROP"]);
            sys::run(&mut iptables, Duration::from_secs(15));
        }
        self.lock_blackholed().insert(index);
    }

    /// Removes node `index`'s blackhole.
    pub fn heal(&self, index: usize) {
        for rule in [["INPUT", "-i"], ["OUTPUT", "-o"]] {
            loop {
                let mut iptables = self.node_command(index, "iptables");
                iptables.args(["-w", "5", "-D", rule[0], rule[1], "eth0", "-j", "DROP"]);
                if !sys::run_status(&mut iptables, Duration::from_secs(15))
                    .status
                    .success()
                {
                    break;
                }
            }
        }
        self.lock_blackholed().remove(&index);
    }

    /// Heals every blackholed node.
    pub fn heal_all(&self) {
        let blackholed: Vec<usize> = self.lock_blackholed().iter().copied().collect();
        for index in blackholed {
            self.heal(index);
        }
    }

    fn lock_blackholed(&self) -> MutexGuard<'_, BTreeSet<usize>> {
        self.blackholed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A `redis-cli subscribe` and a redis-py subscriber to node `index`, where the clients are
    /// (under the cluster's library when `under_library`), once both are subscribed.
    pub fn subscribers(&self, index: usize, under_library: bool) -> Vec<Subscriber> {
        let node = self.node(index);
        let (ip, port) = (node.ip.to_string(), node.port.to_string());
        let mut subscribers = Vec::new();
        for (name, program, args) in [
            (
                "redis-cli",
                "redis-cli",
                vec!["-h", &ip, "-p", &port, "subscribe", "kp-cli"],
            ),
            (
                "python",
                "/usr/bin/python3",
                vec!["-c", SUBSCRIBER_PY, &ip, &port, "kp-py"],
            ),
        ] {
            let mut command = self.client_command(program, under_library);
            command.args(&args);
            let log = self.dir.join(format!("subscriber-{name}.log"));
            let (child, proc) = sys::spawn(&self.tag, &mut command, &log);
            subscribers.push(Subscriber {
                name,
                pid: proc.pid,
                link: Watched {
                    pid: proc.pid,
                    local: node.addr(),
                    remote: node.addr(),
                },
                log,
                child,
                tag: self.tag.clone(),
            });
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut conn = self.connect(index);
        loop {
            let reply = conn.call(&["PUBSUB", "NUMSUB", "kp-cli", "kp-py"]);
            if let Ok(Reply::Array(Some(items))) = &reply
                && items.get(1) == Some(&Reply::Integer(1))
                && items.get(3) == Some(&Reply::Integer(1))
            {
                break;
            }
            for subscriber in &mut subscribers {
                assert!(
                    subscriber.running(),
                    "{} subscriber exited:\n{}",
                    subscriber.name,
                    tail(&subscriber.log, 20)
                );
            }
            assert!(
                Instant::now() < deadline,
                "subscribers not subscribed after 15 s: {reply:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        for subscriber in &mut subscribers {
            let sockets = inspect(&self.command, &[subscriber.pid]);
            let links: Vec<&Socket> = sockets
                .iter()
                .filter(|s| s.established() && s.remote == Some(node.addr()))
                .collect();
            assert_eq!(
                links.len(),
                1,
                "{} subscriber: expected one link to {}: {sockets:?}",
                subscriber.name,
                node.addr()
            );
            subscriber.link = Watched {
                pid: subscriber.pid,
                local: links[0].local.expect("local address"),
                remote: node.addr(),
            };
        }
        subscribers
    }

    /// Which of `watched` are ESTABLISHED now (a process that is gone holds none).
    pub fn established(&self, watched: &[Watched]) -> Vec<bool> {
        let mut pids: Vec<u32> = watched.iter().map(|w| w.pid).collect();
        pids.sort_unstable();
        pids.dedup();
        let sockets = try_inspect(&self.command, &pids).unwrap_or_else(|_| {
            // One of them ended: read the others one by one.
            pids.iter()
                .flat_map(|&pid| try_inspect(&self.command, &[pid]).unwrap_or_default())
                .collect()
        });
        watched
            .iter()
            .map(|w| {
                sockets.iter().any(|s| {
                    s.pid == w.pid
                        && s.established()
                        && s.local == Some(w.local)
                        && s.remote == Some(w.remote)
                })
            })
            .collect()
    }

    /// Follows `watched` every 50 ms until `observe` after `t0` (or, with `until_gone`, until
    /// none is left): when each stopped being ESTABLISHED, after `t0`.
    pub fn watch(
        &self,
        watched: &[Watched],
        t0: Instant,
        observe: Duration,
        until_gone: bool,
    ) -> Vec<Option<Duration>> {
        let mut gone: Vec<Option<Duration>> = vec![None; watched.len()];
        loop {
            let pending: Vec<usize> = (0..watched.len()).filter(|&i| gone[i].is_none()).collect();
            if !pending.is_empty() {
                let subset: Vec<Watched> = pending.iter().map(|&i| watched[i]).collect();
                let now = self.established(&subset);
                let t = t0.elapsed();
                for (&i, up) in pending.iter().zip(now) {
                    if !up {
                        gone[i] = Some(t);
                    }
                }
            }
            let t = t0.elapsed();
            if (until_gone && gone.iter().all(Option::is_some)) || t >= observe {
                return gone;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Blackholes `victim` and times how long `survivor`'s inbound and outbound bus links to it
    /// (and, on request, a redis-cli and a redis-py subscriber to it) stay ESTABLISHED; heals it
    /// afterwards unless told not to.
    pub fn dead_peer(&self, options: DeadPeerOptions) -> DeadPeer {
        let DeadPeerOptions {
            victim, survivor, ..
        } = options;
        self.wait_mesh(Duration::from_secs(30));
        let links = self.links();
        let one = |kind: Kind| {
            let mine: Vec<&Link> = links
                .iter()
                .filter(|l| l.node == survivor && l.peer == Some(victim) && l.is(kind))
                .collect();
            assert_eq!(
                mine.len(),
                1,
                "expected one {} link from node {survivor} to node {victim}: {mine:?}",
                kind.name()
            );
            mine[0].clone()
        };
        let (inbound, outbound) = (one(Kind::BusIn), one(Kind::BusOut));
        let mut subscribers = if options.subscribers {
            self.subscribers(victim, options.subscribers_under_library)
        } else {
            Vec::new()
        };
        let mut watched = vec![inbound.watched(self), outbound.watched(self)];
        watched.extend(subscribers.iter().map(|s| s.link));
        let mut publisher = options.publish.then(|| self.connect(survivor));
        let t0 = Instant::now();
        self.blackhole(victim);
        if let Some(conn) = &mut publisher {
            // One PUBLISH on the survivor goes to every peer over its outbound bus links, so
            // data is in flight to the victim from t = 0: the outbound link's time then shows
            // the retransmission bound (TCP_USER_TIMEOUT), not when Redis happens to ping next.
            conn.call(&["PUBLISH", "kp-traffic", "blackholed"])
                .expect("PUBLISH on the survivor");
        }
        let gone = self.watch(&watched, t0, options.observe, options.until_gone);
        let observed = t0.elapsed();
        let at_end = self.established(&watched);
        let outcomes = subscribers
            .iter_mut()
            .enumerate()
            .map(|(i, s)| {
                let running = s.running();
                SubscriberOutcome {
                    name: s.name,
                    gone: gone[2 + i],
                    exited: !running,
                    established_at_end: running && at_end[2 + i],
                    output: s.output(),
                }
            })
            .collect();
        drop(subscribers);
        if !options.keep_blackhole {
            self.heal(victim);
        }
        DeadPeer {
            observed,
            inbound_link: inbound,
            outbound_link: outbound,
            inbound_gone: gone[0],
            outbound_gone: gone[1],
            inbound_at_end: at_end[0],
            outbound_at_end: at_end[1],
            subscribers: outcomes,
        }
    }

    fn cluster_call(&self, conns: &mut BTreeMap<SocketAddr, Conn>, args: &[&str]) -> Reply {
        let mut addr = self.nodes[0].addr();
        for _ in 0..5 {
            let conn = conns.entry(addr).or_insert_with(|| {
                self.try_connect(addr)
                    .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
            });
            let reply = conn
                .call(args)
                .unwrap_or_else(|e| panic!("{args:?} on {addr}: {e}"));
            match &reply {
                Reply::Error(e) if e.starts_with("MOVED") => {
                    let to = e.split_whitespace().nth(2).unwrap_or_default();
                    addr = to.parse().unwrap_or_else(|_| panic!("MOVED to {to:?}"));
                }
                _ => return reply,
            }
        }
        panic!("{args:?}: moved too often");
    }

    /// Writes `PREFIX:i` = `value-i` for i < count through the cluster (following MOVED).
    pub fn write_keys(&self, prefix: &str, count: usize) {
        let mut conns = BTreeMap::new();
        for i in 0..count {
            let (key, value) = (format!("{prefix}:{i}"), format!("value-{i}"));
            let reply = self.cluster_call(&mut conns, &["SET", &key, &value]);
            assert_eq!(reply, Reply::Status("OK".into()), "SET {key}");
        }
    }

    /// Reads back what [`Cluster::write_keys`] wrote.
    pub fn check_keys(&self, prefix: &str, count: usize) {
        let mut conns = BTreeMap::new();
        let mut wrong = Vec::new();
        for i in 0..count {
            let key = format!("{prefix}:{i}");
            let reply = self.cluster_call(&mut conns, &["GET", &key]);
            if reply != Reply::Bulk(Some(format!("value-{i}"))) {
                wrong.push(format!("{key} = {reply:?}"));
            }
        }
        assert!(
            wrong.is_empty(),
            "{} of {count} keys wrong or missing, e.g. {}",
            wrong.len(),
            wrong[0]
        );
    }

    /// Open descriptors of every node.
    pub fn fd_counts(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .map(|n| {
                std::fs::read_dir(format!("/proc/{}/fd", n.pid))
                    .map(|d| d.count())
                    .unwrap_or(0)
            })
            .collect()
    }

    /// `redis-benchmark --cluster` for `requests` requests from `clients` clients (under the
    /// cluster's library when `under_library`); descriptors before and, once they settled (at
    /// most 15 s), after.
    pub fn benchmark(&self, requests: u32, clients: u32, under_library: bool) -> Benchmark {
        let fds_before = self.fd_counts();
        let first = &self.nodes[0];
        let mut bench = self.client_command("redis-benchmark", under_library);
        bench.args(["--cluster", "-h", &first.ip.to_string(), "-p"]);
        bench.arg(first.port.to_string());
        bench.args(["-n", &requests.to_string(), "-c", &clients.to_string()]);
        bench.args(["-r", "100000", "-t", "set,get,incr,lpush,lpop", "-q"]);
        let started = Instant::now();
        let output = sys::run_status(&mut bench, Duration::from_secs(120));
        let took = started.elapsed();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .replace('\r', "\n");
        let errors = text
            .lines()
            .filter(|l| l.to_ascii_lowercase().contains("err"))
            .map(|l| l.trim().to_owned())
            .collect();
        let results = text
            .lines()
            .filter(|l| l.contains("requests per second"))
            .map(|l| l.trim().to_owned())
            .collect();
        let deadline = Instant::now() + Duration::from_secs(15);
        let fds_after = loop {
            let now = self.fd_counts();
            if now == fds_before || Instant::now() > deadline {
                break now;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        self.check_alive();
        Benchmark {
            success: output.status.success(),
            took,
            errors,
            results,
            fds_before,
            fds_after,
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
