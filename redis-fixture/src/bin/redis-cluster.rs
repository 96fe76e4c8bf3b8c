//! `redis-cluster`: the operator's side of the Redis Cluster fixture (`scripts/redis-cluster`
//! builds and runs it).
//!
//!     redis-cluster demo [--library PATH]      # the README's demo: without vs with the library
//!     redis-cluster up [OPTIONS]               # a cluster until Ctrl-C
//!     redis-cluster links [OPTIONS] [--all]    # a cluster, every link with its values, stopped
//!     redis-cluster deadpeer [OPTIONS] [--victim 3] [--survivor 1] [--subscribers] [--observe 20]
//!
//! OPTIONS: --nodes N, --replicas R, --netns, --library PATH, --env NAME=VALUE (repeatable).
//! The library defaults to the one beside this binary; the `keepalive-preload` command that
//! reads the sockets to `KEEPALIVE_PRELOAD_BIN`, else the one beside this binary. Every process
//! it starts is ended and every namespace deleted when it finishes, fails or is interrupted.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use redis_fixture::{Builder, Cluster, DeadPeer, DeadPeerOptions, Kind, Link};

const DEMO_VARS: [&str; 5] = [
    "KEEPIDLE=2",
    "KEEPINTVL=1",
    "KEEPCNT=3",
    "KEEPALIVE_USER_TIMEOUT=3s",
    "KEEPALIVE_OVERRIDE=yes",
];

fn main() -> ExitCode {
    guard_signals();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprintln!("usage: redis-cluster demo|up|links|deadpeer [OPTIONS] (see --help)");
        return ExitCode::from(2);
    };
    let options = match Options::parse(rest) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("redis-cluster: {error}");
            return ExitCode::from(2);
        }
    };
    let needs_root = matches!(command.as_str(), "demo" | "up" | "links" | "deadpeer");
    // SAFETY: geteuid has no preconditions.
    if needs_root && unsafe { libc::geteuid() } != 0 {
        eprintln!("redis-cluster: needs root (network namespaces, iptables, pidfd_getfd)");
        return ExitCode::FAILURE;
    }
    match command.as_str() {
        "demo" => demo(&options),
        "up" => up(&options),
        "links" => links(&options),
        "deadpeer" => deadpeer(&options),
        "-h" | "--help" | "help" => {
            println!("{}", HELP.trim());
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("redis-cluster: unknown command {other:?} (demo, up, links, deadpeer)");
            ExitCode::from(2)
        }
    }
}

const HELP: &str = "
redis-cluster: Redis Cluster nodes with and without keepalive-preload (scripts/redis-cluster)

  demo [--library PATH]          two 3-node clusters, without and with the library: the values of
                                 every bus link, then node 3 blackholed in both (about 30 s)
  up [OPTIONS]                   start a cluster, print its nodes, keep it until Ctrl-C
  links [OPTIONS] [--all]        start a cluster, print every link with its values, stop it
  deadpeer [OPTIONS] [--victim N] [--survivor N] [--subscribers] [--observe S] [--until-gone]
           [--no-publish]        start a cluster in namespaces, blackhole the victim, time the
                                 survivor's links to it (and the subscribers'), stop it

OPTIONS: --nodes N  --replicas R  --netns  --library PATH  --env NAME=VALUE (repeatable)
Needs root (namespaces, iptables, pidfd_getfd). Everything it starts is stopped and deleted
when it ends, fails or is interrupted.
";

#[derive(Debug, Default)]
struct Options {
    nodes: usize,
    replicas: usize,
    netns: bool,
    library: Option<PathBuf>,
    env: Vec<String>,
    all: bool,
    victim: Option<usize>,
    survivor: Option<usize>,
    subscribers: bool,
    observe: Option<f64>,
    until_gone: bool,
    no_publish: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Self::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            let number = |text: String, name: &str| {
                text.parse::<usize>()
                    .map_err(|_| format!("{name} {text}: not a number"))
            };
            match arg.as_str() {
                "--nodes" => options.nodes = number(value(arg)?, arg)?,
                "--replicas" => options.replicas = number(value(arg)?, arg)?,
                "--netns" => options.netns = true,
                "--library" => options.library = Some(PathBuf::from(value(arg)?)),
                "--env" => options.env.push(value(arg)?),
                "--all" => options.all = true,
                "--victim" => options.victim = Some(number(value(arg)?, arg)?),
                "--survivor" => options.survivor = Some(number(value(arg)?, arg)?),
                "--subscribers" => options.subscribers = true,
                "--observe" => {
                    let text = value(arg)?;
                    options.observe = Some(text.parse().map_err(|_| format!("--observe {text}"))?);
                }
                "--until-gone" => options.until_gone = true,
                "--no-publish" => options.no_publish = true,
                // The wrapper's: it built (or did not build) before running this.
                "--no-build" => {}
                other => return Err(format!("unknown option {other:?}")),
            }
        }
        Ok(options)
    }

    fn builder(&self, name: &str) -> Builder {
        let mut builder = Cluster::builder(name)
            .nodes(self.nodes)
            .replicas(self.replicas)
            .command(command_path())
            .vars(&self.env);
        if self.netns {
            builder = builder.netns();
        }
        if let Some(library) = &self.library {
            builder = builder.library(absolute(library));
        } else if !self.env.is_empty() {
            builder = builder.library(default_library());
        }
        builder
    }
}

fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

fn beside_me(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().expect("a directory").join(name)
}

fn default_library() -> PathBuf {
    beside_me("libkeepalive_preload.so")
}

fn command_path() -> PathBuf {
    std::env::var_os("KEEPALIVE_PRELOAD_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| beside_me("keepalive-preload"))
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Ctrl-C, SIGTERM and SIGHUP end every process and namespace this run made, then exit 130; so
/// does a panic (which aborts here, so that no `Drop` would run).
fn guard_signals() {
    // SAFETY: plain signal-mask calls on a zeroed set, before any other thread exists.
    let set = unsafe {
        // A shell starts background jobs with SIGINT ignored, and an ignored signal never
        // reaches sigwait: `kill -INT` must still stop such a run cleanly. (SIGHUP keeps what it
        // has: under nohup a cluster of `up` outlives the terminal.)
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::spawn(move || {
        let mut signal = 0;
        // SAFETY: sigwait on the set this process blocked.
        unsafe { libc::sigwait(&set, &mut signal) };
        INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        eprintln!("redis-cluster: interrupted (signal {signal}); stopping everything it started");
        redis_fixture::teardown_all();
        std::process::exit(130);
    });
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
            // What the signal thread tears down fails under our feet; it exits with 130.
            loop {
                std::thread::park();
            }
        }
        default(info);
        redis_fixture::teardown_all();
    }));
}

fn check_paths(library: &std::path::Path) -> Result<(), String> {
    if !library.is_file() {
        return Err(format!(
            "{}: not built (cargo build --release -p keepalive-preload)",
            library.display()
        ));
    }
    let command = command_path();
    if !command.is_file() {
        return Err(format!(
            "{}: the keepalive-preload command is not built (cargo build --release -p keepalive-preload-cli)",
            command.display()
        ));
    }
    Ok(())
}

/// When a watched thing went (if it did) and whether it was ESTABLISHED at the end.
type Outcome = fn(&DeadPeer) -> (Option<Duration>, bool);

fn demo(options: &Options) -> ExitCode {
    let started = Instant::now();
    let library = absolute(options.library.as_deref().unwrap_or(&default_library()));
    if let Err(error) = check_paths(&library) {
        eprintln!("redis-cluster: {error}");
        return ExitCode::FAILURE;
    }
    println!(
        "== two 3-node clusters, each node in a network namespace of its own (veth + bridge, 10.213.0.0/24):\n   \
         without: plain redis-server\n   with:    LD_PRELOAD={}\n            {}",
        library.display(),
        DEMO_VARS.join(" ")
    );
    let start = |label: &str, builder: Builder| {
        let cluster = builder.netns().quiet().start();
        println!(
            "   {:<8} cluster_state:ok on every node after {:.2} s",
            format!("{label}:"),
            cluster.up_time().as_secs_f64()
        );
        cluster
    };
    let base = || Cluster::builder("demo").command(command_path());
    let without = start("without", base());
    let with = start("with", base().library(&library).vars(DEMO_VARS));

    println!(
        "\n== every cluster-bus link: keepalive idle/interval/count (s) and TCP_USER_TIMEOUT,\n   \
         read from the live sockets by `keepalive-preload inspect`"
    );
    let bus = |cluster: &Cluster| -> std::collections::BTreeMap<(usize, Kind, usize), Link> {
        cluster
            .links()
            .into_iter()
            .filter(|l| l.is(Kind::BusIn) || l.is(Kind::BusOut))
            .filter_map(|l| Some(((l.node, l.kind, l.peer?), l)))
            .collect()
    };
    let (w, x) = (bus(&without), bus(&with));
    println!(
        "{:>4} {:<8} {:>4}   {:<27} with the library",
        "node", "link", "peer", "without the library"
    );
    let keys: std::collections::BTreeSet<_> = w.keys().chain(x.keys()).copied().collect();
    for key in keys {
        let show = |links: &std::collections::BTreeMap<_, Link>| {
            links
                .get(&key)
                .map_or("missing".to_owned(), |l| l.values.summary())
        };
        println!(
            "{:>4} {:<8} {:>4}   {:<27} {}",
            key.0,
            key.1.name(),
            key.2,
            show(&w),
            show(&x)
        );
    }

    println!(
        "\n== dead peer: node 3 blackholed (iptables DROP in and out in its namespace) in both clusters at once;\n   \
         node 1's links to it and two pub/sub subscribers to it (redis-cli subscribe, redis-py)\n   \
         watched for up to 20 s"
    );
    let run = |cluster: &Cluster, until_gone: bool| {
        cluster.dead_peer(DeadPeerOptions {
            subscribers: true,
            until_gone,
            ..DeadPeerOptions::default()
        })
    };
    let (w, x) = std::thread::scope(|scope| {
        let w = scope.spawn(|| run(&without, false));
        let x = scope.spawn(|| run(&with, true));
        (
            w.join().expect("dead peer without the library"),
            x.join().expect("dead peer with the library"),
        )
    });
    println!("{:<24} {:<32} with the library", "", "without the library");
    let show = |r: &DeadPeer, gone: Option<Duration>, at_end: bool| match gone {
        Some(t) => format!("gone after {:.2} s", t.as_secs_f64()),
        None => format!(
            "{} at {:.0} s",
            if at_end { "ESTABLISHED" } else { "gone" },
            r.observed.as_secs_f64()
        ),
    };
    let rows: [(&str, Outcome); 4] = [
        ("inbound bus link", |r| (r.inbound_gone, r.inbound_at_end)),
        ("outbound bus link", |r| {
            (r.outbound_gone, r.outbound_at_end)
        }),
        ("redis-cli subscribe", |r| {
            let s = r.subscriber("redis-cli");
            (s.gone, s.established_at_end)
        }),
        ("redis-py subscriber", |r| {
            let s = r.subscriber("python");
            (s.gone, s.established_at_end)
        }),
    ];
    for (name, field) in rows {
        let ((wg, we), (xg, xe)) = (field(&w), field(&x));
        println!("{name:<24} {:<32} {}", show(&w, wg, we), show(&x, xg, xe));
    }
    println!(
        "   without the library Redis itself closes the outbound link, cluster-node-timeout/2 after its\n   \
         unanswered PING; nothing closes the inbound link for Redis' 30 + 3 x 10 s of keepalive,\n   \
         nor the subscribers' (redis-cli: 15 + 3 x 5 s; redis-py: none)."
    );
    let last = |r: &DeadPeer, name: &str| {
        r.subscriber(name)
            .output
            .rsplit(" | ")
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    println!("   redis-cli with the library: {}", last(&x, "redis-cli"));
    println!("   redis-py with the library:  {}", last(&x, "python"));
    without.stop();
    with.stop();
    println!(
        "\ndemo finished in {:.0} s; every process it started is stopped and its namespaces are deleted",
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}

fn up(options: &Options) -> ExitCode {
    let cluster = options.builder("up").start();
    println!("index\taddress\tbus\tpid\tnamespace");
    for node in cluster.nodes() {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            node.index,
            node.addr(),
            node.bus_addr(),
            node.pid,
            node.netns.as_deref().unwrap_or("-")
        );
    }
    match cluster.hub() {
        Some(hub) => println!(
            "clients: ip netns exec {hub} redis-cli -c -h {} -p {}",
            cluster.node(1).ip,
            cluster.node(1).port
        ),
        None => println!("clients: redis-cli -c -p {}", cluster.node(1).port),
    }
    println!("running until Ctrl-C");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn links(options: &Options) -> ExitCode {
    let cluster = options.builder("links").start();
    let links = cluster.meshed_links();
    println!(
        "{:>4} {:<12} {:>4}  {:<21} {:<21} {:<11} keepalive idle/intvl/cnt, user timeout",
        "node", "link", "peer", "local", "remote", "state"
    );
    for link in links {
        if link.kind == Kind::Listener && !options.all {
            continue;
        }
        println!(
            "{:>4} {:<12} {:>4}  {:<21} {:<21} {:<11} {}",
            link.node,
            link.kind.name(),
            link.peer.map_or("-".to_owned(), |p| p.to_string()),
            link.local,
            link.remote.map_or("-".to_owned(), |r| r.to_string()),
            link.state,
            link.values.summary()
        );
    }
    cluster.stop();
    ExitCode::SUCCESS
}

fn deadpeer(options: &Options) -> ExitCode {
    let cluster = options.builder("deadpeer").netns().start();
    let defaults = DeadPeerOptions::default();
    let r = cluster.dead_peer(DeadPeerOptions {
        victim: options.victim.unwrap_or(defaults.victim),
        survivor: options.survivor.unwrap_or(defaults.survivor),
        subscribers: options.subscribers,
        until_gone: options.until_gone,
        observe: options
            .observe
            .map_or(defaults.observe, Duration::from_secs_f64),
        publish: !options.no_publish,
        ..defaults
    });
    print!("{r}");
    cluster.stop();
    ExitCode::SUCCESS
}
