//! The probe's commands (see `USAGE` in main.rs).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::sys::{self, check, options};
use crate::usage_error;

/// Flags of the socket-pair commands.
struct PairArgs {
    listen: IpAddr,
    connect: Option<IpAddr>,
    port: u16,
    accept4: bool,
    nonblock: bool,
}

impl PairArgs {
    fn connect_ip(&self) -> IpAddr {
        self.connect.unwrap_or(match self.listen {
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            ip => ip,
        })
    }
}

/// Parses the pair flags out of `args`; returns them and the arguments it did not know.
fn pair_args(args: &[String]) -> (PairArgs, Vec<(String, String)>) {
    let mut parsed = PairArgs {
        listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
        connect: None,
        port: 0,
        accept4: false,
        nonblock: false,
    };
    let mut other = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = || {
            iter.next()
                .cloned()
                .unwrap_or_else(|| usage_error(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--v6" => parsed.listen = IpAddr::V6(Ipv6Addr::LOCALHOST),
            "--listen" => parsed.listen = parse(&value()),
            "--connect" => parsed.connect = Some(parse(&value())),
            "--port" => parsed.port = parse(&value()),
            "--accept4" => parsed.accept4 = true,
            "--nonblock" => parsed.nonblock = true,
            flag if flag.starts_with("--") => other.push((flag.to_owned(), value())),
            _ => usage_error(&format!("unexpected argument {arg:?}")),
        }
    }
    (parsed, other)
}

fn parse<T: std::str::FromStr>(text: &str) -> T {
    text.parse()
        .unwrap_or_else(|_| usage_error(&format!("cannot parse {text:?}")))
}

/// One socket of `report`: (domain, type, protocol), or None for socketpair.
fn kind(name: &str) -> Option<(i32, i32, i32)> {
    use libc::*;
    let flags = SOCK_NONBLOCK | SOCK_CLOEXEC;
    Some(match name {
        "tcp4" => (AF_INET, SOCK_STREAM, 0),
        "tcp4-proto" => (AF_INET, SOCK_STREAM, IPPROTO_TCP),
        "tcp4-flags" => (AF_INET, SOCK_STREAM | flags, 0),
        "tcp6" => (AF_INET6, SOCK_STREAM, 0),
        "tcp6-proto" => (AF_INET6, SOCK_STREAM, IPPROTO_TCP),
        "tcp6-flags" => (AF_INET6, SOCK_STREAM | flags, IPPROTO_TCP),
        "udp4" => (AF_INET, SOCK_DGRAM, 0),
        "udp6" => (AF_INET6, SOCK_DGRAM, 0),
        "raw4" => (AF_INET, SOCK_RAW, IPPROTO_TCP),
        "raw6" => (AF_INET6, SOCK_RAW, IPPROTO_TCP),
        "unix-stream" => (AF_UNIX, SOCK_STREAM, 0),
        "unix-dgram" => (AF_UNIX, SOCK_DGRAM, 0),
        "unix-seqpacket" => (AF_UNIX, SOCK_SEQPACKET, 0),
        "mptcp4" => (AF_INET, SOCK_STREAM, IPPROTO_MPTCP),
        "sctp4" => (AF_INET, SOCK_STREAM, IPPROTO_SCTP),
        "socketpair" => return None,
        _ => usage_error(&format!("unknown socket kind {name:?}")),
    })
}

pub fn report(args: &[String]) {
    for name in args {
        match kind(name) {
            Some((domain, kind, protocol)) => {
                let fd = sys::socket(domain, kind, protocol);
                if fd < 0 {
                    println!("{name} socket errno={}", sys::errno_name(sys::errno()));
                } else {
                    println!("{name} {}", options(fd));
                    sys::close(fd);
                }
            }
            None => {
                let mut fds = [0; 2];
                // SAFETY: fds has room for the two descriptors.
                let ret = unsafe {
                    libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr())
                };
                check(ret, "socketpair");
                for (index, fd) in fds.into_iter().enumerate() {
                    println!("{name}.{index} {}", options(fd));
                    sys::close(fd);
                }
            }
        }
    }
}

/// A listener, a client connected to it and the accepted socket.
struct Pair {
    listener: i32,
    client: i32,
    accepted: i32,
    /// Printed line about a nonblocking connect's result.
    connect_note: Option<String>,
}

/// SO_REUSEADDR before binding a given port: earlier connections on it may linger in
/// TIME_WAIT. (Only then, so that runs on an ephemeral port make no setsockopt call.)
fn reuse_address(fd: i32) {
    check(
        sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1),
        "setsockopt SO_REUSEADDR",
    );
}

impl Pair {
    /// Closes all three, so that a following command reuses their descriptor numbers. The
    /// client first: TIME_WAIT stays on its ephemeral port, not on the listening port.
    fn close(self) {
        for fd in [self.client, self.accepted, self.listener] {
            sys::close(fd);
        }
    }
}

fn make_pair(args: &PairArgs) -> Pair {
    let listener = check(
        sys::socket(sys::family(args.listen), libc::SOCK_STREAM, 0),
        "listener socket",
    );
    if args.port != 0 {
        reuse_address(listener);
    }
    check(
        sys::bind(listener, SocketAddr::new(args.listen, args.port)),
        "bind",
    );
    check(sys::listen(listener, 16), "listen");
    let port = sys::local_port(listener);
    let target = SocketAddr::new(args.connect_ip(), port);
    let mut kind = libc::SOCK_STREAM;
    if args.nonblock {
        kind |= libc::SOCK_NONBLOCK;
    }
    let client = check(
        sys::socket(sys::family(target.ip()), kind, 0),
        "client socket",
    );
    let outcome = sys::Outcome::of(|| i64::from(sys::connect(client, target)));
    let mut connect_note = None;
    if args.nonblock {
        connect_note = Some(format!("connect {outcome}"));
        if outcome.ret < 0 && outcome.errno == libc::EINPROGRESS {
            sys::poll_one(client, libc::POLLOUT, 5000);
            let error = sys::getsockopt_int(client, libc::SOL_SOCKET, libc::SO_ERROR);
            if error != Some(0) {
                eprintln!("kp-probe: nonblocking connect ended with SO_ERROR={error:?}");
                std::process::exit(1);
            }
        }
    } else if outcome.ret < 0 {
        sys::set_errno(outcome.errno);
        sys::die("connect");
    }
    let accepted = if args.accept4 {
        sys::accept4(listener, libc::SOCK_CLOEXEC)
    } else {
        sys::accept(listener)
    };
    check(accepted, "accept");
    Pair {
        listener,
        client,
        accepted,
        connect_note,
    }
}

pub fn pair(args: &[String]) {
    let (args, other) = pair_args(args);
    if let Some((flag, _)) = other.first() {
        usage_error(&format!("unknown flag {flag}"));
    }
    let pair = make_pair(&args);
    if let Some(note) = &pair.connect_note {
        println!("{note}");
    }
    println!("listener {}", options(pair.listener));
    println!("client {}", options(pair.client));
    println!("accepted {}", options(pair.accepted));
    pair.close();
}

/// The options a program may set itself, by the probe's flag name.
fn option_by_flag(flag: &str) -> Option<(&'static str, i32, i32)> {
    Some(match flag {
        "--keepalive" => ("SO_KEEPALIVE", libc::SOL_SOCKET, libc::SO_KEEPALIVE),
        "--idle" => ("TCP_KEEPIDLE", libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
        "--intvl" => ("TCP_KEEPINTVL", libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
        "--cnt" => ("TCP_KEEPCNT", libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
        "--user-timeout" => (
            "TCP_USER_TIMEOUT",
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
        ),
        _ => return None,
    })
}

pub fn program_sets(args: &[String]) {
    let (pair_args, other) = pair_args(args);
    let mut target = "accepted".to_owned();
    let mut sets = Vec::new();
    for (flag, value) in other {
        if flag == "--target" {
            target = value;
        } else if let Some(option) = option_by_flag(&flag) {
            sets.push((option, parse::<i32>(&value)));
        } else {
            usage_error(&format!("unknown flag {flag}"));
        }
    }
    let (fd, pair) = if target == "fresh" {
        let fd = check(
            sys::socket(sys::family(pair_args.listen), libc::SOCK_STREAM, 0),
            "socket",
        );
        (fd, None)
    } else {
        let pair = make_pair(&pair_args);
        let fd = match target.as_str() {
            "accepted" => pair.accepted,
            "client" => pair.client,
            "listener" => pair.listener,
            _ => usage_error(&format!("unknown target {target:?}")),
        };
        (fd, Some(pair))
    };
    for ((name, level, option), value) in sets {
        let outcome = sys::Outcome::of(|| i64::from(sys::setsockopt_int(fd, level, option, value)));
        println!("setsockopt {name}={value} {outcome}");
    }
    println!("{target} {}", options(fd));
    match pair {
        Some(pair) => pair.close(),
        None => sys::close(fd),
    }
}

pub fn listen_then_exec(args: &[String]) {
    let split = args.iter().position(|arg| arg == "--");
    let Some(split) = split else {
        usage_error("listen-then-exec needs -- CMD")
    };
    let mut v6 = false;
    let mut preload = None;
    let mut port = 0;
    let mut iter = args[..split].iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--v6" => v6 = true,
            "--port" => port = parse(iter.next().map_or("", String::as_str)),
            "--preload" => preload = iter.next().cloned(),
            _ => usage_error(&format!("unexpected argument {arg:?}")),
        }
    }
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };
    // No SOCK_CLOEXEC: the listener is inherited across exec.
    let fd = check(sys::socket(sys::family(ip), libc::SOCK_STREAM, 0), "socket");
    if port != 0 {
        reuse_address(fd);
    }
    check(sys::bind(fd, SocketAddr::new(ip, port)), "bind");
    check(sys::listen(fd, 16), "listen");
    let port = sys::local_port(fd).to_string();
    let command: Vec<String> = args[split + 1..]
        .iter()
        .map(|arg| {
            arg.replace("{fd}", &fd.to_string())
                .replace("{port}", &port)
        })
        .collect();
    if let Some(preload) = preload {
        // SAFETY: single-threaded at this point; nothing else reads the environment.
        unsafe { std::env::set_var("LD_PRELOAD", preload) };
    }
    exec(&command);
}

pub fn accept_inherited(args: &[String]) {
    let [fd, port, flags @ ..] = args else {
        usage_error("accept-inherited FD PORT [--v6] [--accept4] [--reuse-fd]")
    };
    let mut listener: i32 = parse(fd);
    let port: u16 = parse(port);
    let v6 = flags.iter().any(|flag| flag == "--v6");
    let accept4 = flags.iter().any(|flag| flag == "--accept4");
    if flags.iter().any(|flag| flag == "--reuse-fd") {
        // Move the inherited listener onto the number of a socket the library configured and
        // this program closed: what a program receiving a listener over SCM_RIGHTS or with
        // dup2 may do. The library must not take it for the socket it configured.
        let reused = check(sys::socket(libc::AF_INET, libc::SOCK_STREAM, 0), "socket");
        sys::close(reused);
        // SAFETY: dup2 on descriptors this program owns.
        check(unsafe { libc::dup2(listener, reused) }, "dup2");
        sys::close(listener);
        listener = reused;
    }
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };
    println!("listener {}", options(listener));
    let client = check(sys::socket(sys::family(ip), libc::SOCK_STREAM, 0), "socket");
    check(sys::connect(client, SocketAddr::new(ip, port)), "connect");
    let outcome = sys::Outcome::of(|| {
        i64::from(if accept4 {
            sys::accept4(listener, libc::SOCK_CLOEXEC)
        } else {
            sys::accept(listener)
        })
    });
    if outcome.ret < 0 {
        sys::set_errno(outcome.errno);
        sys::die("accept");
    }
    println!("accept errno={}", outcome.errno_text());
    println!("accepted {}", options(outcome.ret as i32));
}

pub fn threads(args: &[String]) {
    let [threads, per_thread, flags @ ..] = args else {
        usage_error("threads N M [--kind tcp4|tcp6]")
    };
    let threads: usize = parse(threads);
    let per_thread: usize = parse(per_thread);
    let domain = match flags {
        [] => libc::AF_INET,
        [flag, kind] if flag == "--kind" && kind == "tcp4" => libc::AF_INET,
        [flag, kind] if flag == "--kind" && kind == "tcp6" => libc::AF_INET6,
        _ => usage_error("threads N M [--kind tcp4|tcp6]"),
    };
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut seen: BTreeMap<[Option<i32>; 5], usize> = BTreeMap::new();
                barrier.wait();
                for _ in 0..per_thread {
                    let fd = check(sys::socket(domain, libc::SOCK_STREAM, 0), "socket");
                    *seen.entry(sys::option_values(fd)).or_default() += 1;
                    sys::close(fd);
                }
                seen
            })
        })
        .collect();
    let mut total: BTreeMap<[Option<i32>; 5], usize> = BTreeMap::new();
    for handle in handles {
        for (values, count) in handle.join().expect("thread panicked") {
            *total.entry(values).or_default() += count;
        }
    }
    let show = |value: Option<i32>| value.map_or_else(|| "-".to_owned(), |v| v.to_string());
    for (values, count) in total {
        println!(
            "{count} keepalive={} idle={} intvl={} cnt={} user_timeout={}",
            show(values[0]),
            show(values[1]),
            show(values[2]),
            show(values[3]),
            show(values[4]),
        );
    }
}

/// Prints what libkeepalive's test program prints: whether SO_KEEPALIVE is on and, if it is,
/// the three timings with the names padded to one width.
pub fn libkeepalive_test() {
    let fd = sys::socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_TCP);
    if fd < 0 {
        perror("socket()");
    }
    let read = |level, name| {
        sys::getsockopt_int(fd, level, name).unwrap_or_else(|| perror("getsockopt()"))
    };
    let on = read(libc::SOL_SOCKET, libc::SO_KEEPALIVE) != 0;
    println!("SO_KEEPALIVE is {}", if on { "ON" } else { "OFF" });
    if on {
        for (name, option) in [
            ("TCP_KEEPCNT", libc::TCP_KEEPCNT),
            ("TCP_KEEPIDLE", libc::TCP_KEEPIDLE),
            ("TCP_KEEPINTVL", libc::TCP_KEEPINTVL),
        ] {
            println!("{name:<13} = {}", read(libc::SOL_TCP, option));
        }
    }
    sys::close(fd);
}

fn perror(what: &str) -> ! {
    eprintln!("{what}: {}", std::io::Error::last_os_error());
    std::process::exit(1)
}

pub fn maps(args: &[String]) {
    let needle = args.first().map_or("keepalive_preload", String::as_str);
    // Bytes: a mapped file's path need not be UTF-8.
    let maps = std::fs::read("/proc/self/maps").unwrap_or_default();
    let maps = String::from_utf8_lossy(&maps);
    let found = maps.lines().any(|line| {
        line.split_whitespace()
            .nth(5)
            .is_some_and(|path| path.rsplit('/').next().unwrap_or("").contains(needle))
    });
    println!("maps {needle}={}", if found { "yes" } else { "no" });
}

pub fn env(args: &[String]) {
    for name in args {
        match std::env::var_os(name) {
            Some(value) => println!("{name}={}", value.to_string_lossy()),
            None => println!("{name} unset"),
        }
    }
}

pub fn setenv(args: &[String]) {
    let [name, value] = args else {
        usage_error("setenv NAME VALUE")
    };
    // SAFETY: the probe runs its commands on one thread; `threads` joins its threads first.
    unsafe { std::env::set_var(name, value) };
}

pub fn at_secure() {
    // SAFETY: getauxval has no preconditions.
    let secure = unsafe { libc::getauxval(libc::AT_SECURE) };
    println!("at_secure={secure}");
}

pub fn exit(args: &[String]) -> ! {
    let [code] = args else {
        usage_error("exit CODE")
    };
    use std::io::Write;
    std::io::stdout().flush().ok();
    std::process::exit(parse(code))
}

pub fn watch_die(args: &[String]) {
    let (pair_args, other) = pair_args(args);
    let mut blackhole = None;
    let mut timeout = 20u64;
    let mut send = false;
    for (flag, value) in other {
        match flag.as_str() {
            "--blackhole" => blackhole = Some(value),
            "--timeout" => timeout = parse(&value),
            "--send" => send = value == "yes",
            _ => usage_error(&format!("unknown flag {flag}")),
        }
    }
    let pair = make_pair(&pair_args);
    println!("client {}", options(pair.client));
    if let Some(command) = blackhole {
        let port = sys::local_port(pair.listener).to_string();
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(command.replace("{port}", &port))
            .status();
        if !status.as_ref().is_ok_and(|status| status.success()) {
            eprintln!("kp-probe: blackhole command failed: {status:?}");
            std::process::exit(1);
        }
    }
    let start = Instant::now();
    if send {
        let data = [b'x'; 16];
        // SAFETY: data is valid for reads of its length.
        unsafe { libc::send(pair.client, data.as_ptr().cast(), data.len(), 0) };
    }
    let deadline = Duration::from_secs(timeout);
    let mut buffer = [0u8; 64];
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        if left.is_zero() || !sys::poll_one(pair.client, libc::POLLIN, left.as_millis() as i32) {
            println!("alive after={}s", start.elapsed().as_secs());
            return;
        }
        // SAFETY: buffer is valid for writes of its length.
        let got = unsafe { libc::recv(pair.client, buffer.as_mut_ptr().cast(), buffer.len(), 0) };
        if got <= 0 {
            let errno = if got == 0 { 0 } else { sys::errno() };
            println!(
                "ended errno={} after={}ms",
                sys::errno_name(errno),
                start.elapsed().as_millis()
            );
            return;
        }
    }
}

pub fn exec(args: &[String]) -> ! {
    let Some(program) = args.first() else {
        usage_error("exec needs a command")
    };
    let owned: Vec<_> = args.iter().map(|arg| sys::cstring(arg)).collect();
    let mut argv: Vec<*const libc::c_char> = owned.iter().map(|arg| arg.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: argv is a NULL-terminated array of valid C strings that outlive the call.
    unsafe { libc::execvp(owned[0].as_ptr(), argv.as_ptr()) };
    sys::die(&format!("exec {program}"))
}

/// What the signal handler of `signal-storm` saw: calls, and sockets whose read-back differed.
static HANDLER_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static HANDLER_BAD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static EXPECTED_IDLE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn storm_handler(_: libc::c_int) {
    use std::sync::atomic::Ordering::Relaxed;
    let saved = sys::errno();
    let fd = sys::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
    if fd >= 0 {
        let keepalive = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE);
        let idle = sys::getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE);
        if keepalive != Some(1) || idle != Some(EXPECTED_IDLE.load(Relaxed)) {
            HANDLER_BAD.fetch_add(1, Relaxed);
        }
        sys::close(fd);
    }
    HANDLER_CALLS.fetch_add(1, Relaxed);
    sys::set_errno(saved);
}

/// `signal-storm N IDLE`: N sockets made in a loop while a 100 µs interval timer's handler
/// makes sockets too (interrupting the hooks at any point). Prints how many of each read back
/// something other than SO_KEEPALIVE=1 and TCP_KEEPIDLE=IDLE. A hook that locks or allocates
/// would deadlock or crash here.
pub fn signal_storm(args: &[String]) {
    use std::sync::atomic::Ordering::Relaxed;
    let [count, idle] = args else {
        usage_error("signal-storm N IDLE")
    };
    let count: usize = parse(count);
    EXPECTED_IDLE.store(parse(idle), Relaxed);
    // SAFETY: sigaction with a handler that only makes async-signal-safe calls (socket,
    // getsockopt, close) and touches atomics; setitimer with a valid interval.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = storm_handler as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&raw mut action.sa_mask);
        check(
            libc::sigaction(libc::SIGALRM, &raw const action, std::ptr::null_mut()),
            "sigaction",
        );
        let interval = libc::timeval {
            tv_sec: 0,
            tv_usec: 100,
        };
        let timer = libc::itimerval {
            it_interval: interval,
            it_value: interval,
        };
        check(
            libc::setitimer(libc::ITIMER_REAL, &raw const timer, std::ptr::null_mut()),
            "setitimer",
        );
    }
    let mut main_bad = 0;
    for _ in 0..count {
        let fd = check(sys::socket(libc::AF_INET, libc::SOCK_STREAM, 0), "socket");
        let keepalive = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE);
        let idle = sys::getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE);
        if keepalive != Some(1) || idle != Some(EXPECTED_IDLE.load(Relaxed)) {
            main_bad += 1;
        }
        sys::close(fd);
    }
    // SAFETY: disarming the timer and restoring the default action.
    unsafe {
        let off: libc::itimerval = std::mem::zeroed();
        libc::setitimer(libc::ITIMER_REAL, &raw const off, std::ptr::null_mut());
        libc::signal(libc::SIGALRM, libc::SIG_IGN);
    }
    let calls = HANDLER_CALLS.load(Relaxed);
    println!(
        "main-bad={main_bad} handler-bad={} handler-ran={}",
        HANDLER_BAD.load(Relaxed),
        calls > 0
    );
}
