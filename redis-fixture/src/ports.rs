//! Loopback ports of the nodes, picked free.

use super::*;

/// A random number (std's hasher keys are random per process and per call).
pub(crate) fn random() -> u64 {
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
    pub(crate) fn netns(nodes: usize) -> Self {
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
