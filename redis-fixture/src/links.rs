//! What each TCP socket of a node is: typed links, classified from what `inspect` reads.

use super::*;

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

impl Cluster {
    /// The (node, kind, peer) bus links missing from a full mesh.
    pub(crate) fn missing_from_mesh(&self, links: &[Link]) -> Vec<(usize, Kind, usize)> {
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

    pub(crate) fn classify(&self, sockets: &[Socket]) -> Vec<Link> {
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
}
