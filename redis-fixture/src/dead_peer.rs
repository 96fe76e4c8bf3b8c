//! Dead peers: blackhole and heal, subscribers, watching links go.

use super::*;

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

impl Cluster {
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

    pub(crate) fn lock_blackholed(&self) -> MutexGuard<'_, BTreeSet<usize>> {
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
}
