//! Clients of a cluster: keys through it (following MOVED) and redis-benchmark.

use super::*;

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

impl Cluster {
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
}
