//! kp-bench: the workloads `scripts/bench` measures, each a tight loop of plain libc calls so
//! that an `LD_PRELOAD` library sees exactly the calls a C program would make.
//!
//! ```text
//! kp-bench tcp-socket  ITERATIONS         socket(AF_INET, SOCK_STREAM, 0) + close
//! kp-bench udp-socket  ITERATIONS         socket(AF_INET, SOCK_DGRAM, 0) + close
//! kp-bench unix-socket ITERATIONS         socket(AF_UNIX, SOCK_STREAM, 0) + close
//! kp-bench tcp-connect ITERATIONS [PORT]  socket + connect + accept + close + close on
//!                                         127.0.0.1 (PORT 0 or absent: the kernel picks)
//! kp-bench tcp-setsockopt ITERATIONS [SECONDS]
//!                                         setsockopt(TCP_KEEPIDLE, SECONDS, default 30) on
//!                                         one TCP socket, the program's own call
//! kp-bench spawn       ITERATIONS PROGRAM [ARGS...]
//!                                         posix_spawn + waitpid; the child gets
//!                                         LD_PRELOAD=$KP_BENCH_CHILD_PRELOAD when that is set
//! ```
//!
//! `kp-bench spawn-mix ITERATIONS PROGRAM [ARGS...]` runs PROGRAM ITERATIONS times under each
//! of the setups listed in $KP_BENCH_MIX (separated by `|`; each is an LD_PRELOAD value, `-`
//! for none, then optional extra NAME=VALUE words), one spawn of each in turn (A B C, C B A, …),
//! and prints `setup=K runs=N cpu_ns_per_run=X` per setup: the CPU time of the children alone
//! (wait4's rusage), so that start-up costs are compared spawn by spawn.
//!
//! `kp-bench alternate tcp-connect|tcp-setsockopt ITERATIONS BLOCKS CGROUP_A CGROUP_B [ARG_A ARG_B]`
//! builds the workload once in each cgroup (cgroup2 directories: the process moves itself
//! between them; ARG_A/ARG_B are each one's PORT or SECONDS), then runs BLOCKS pairs of blocks
//! of ITERATIONS iterations, A B, B A, …, each in its own cgroup, and prints one line per pair,
//! `a_ns=X b_ns=Y` (CPU time per iteration): two settings compared milliseconds apart.
//!
//! And three helpers that are not timed loops (they print their own lines):
//!
//! ```text
//! kp-bench hold SOCKETS                   SOCKETS TCP sockets on 127.0.0.1 (SOCKETS/2
//!                                         connections, both ends, plus the listener), then
//!                                         `ready pid=PID sockets=N` and waits for EOF on stdin
//! kp-bench echo-server ADDRESS PORT       echoes every byte on every connection (a thread each)
//! kp-bench dead-peer ADDRESS PORT idle|data
//!                                         connects, sends one byte and reads its echo, prints
//!                                         `connected pid=PID`, waits for a line on stdin (the
//!                                         peer is blackholed by then), sends one byte more when
//!                                         `data`, and blocks in recv until the kernel drops the
//!                                         connection: prints `gone after=SECONDS error=TEXT`
//! ```
//!
//! Prints one line, `WORKLOAD iterations=N warmup=W ns_per_iteration=X cpu_ns_per_iteration=Y`
//! (wall time; CPU time of the process and its children), on standard output:
//! W = min(N/10, 1000) untimed iterations run first, so a process runs N + W iterations in
//! all (what the script divides instruction and syscall differences by).

use std::ffi::{CString, c_char, c_int};
use std::mem::size_of;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::ptr;
use std::time::Instant;

use keepalive_config::sockaddr;

mod helpers;

type Loop = Box<dyn FnMut() -> Result<(), String>>;

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("kp-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> String {
    "usage: kp-bench {tcp-socket|udp-socket|unix-socket|tcp-connect [PORT]|tcp-setsockopt [SECONDS]|spawn PROGRAM [ARGS...]} ITERATIONS\n       \
     kp-bench hold SOCKETS | echo-server ADDRESS PORT | dead-peer ADDRESS PORT idle|data"
        .to_owned()
}

fn parse<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{what} must be a whole number, not {text:?}"))
}

fn run(args: Vec<String>) -> Result<(), String> {
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["hold", sockets] => return helpers::hold(parse(sockets, "SOCKETS")?),
        ["echo-server", address, port] => {
            return helpers::echo_server(address, parse(port, "PORT")?);
        }
        ["spawn-mix", iterations, program, arguments @ ..] => {
            return spawn_mix(parse(iterations, "ITERATIONS")?, program, arguments);
        }
        [
            "alternate",
            workload,
            iterations,
            blocks,
            with,
            without,
            rest @ ..,
        ] => {
            return alternate(
                workload,
                parse(iterations, "ITERATIONS")?,
                parse(blocks, "BLOCKS")?,
                [with, without],
                rest,
            );
        }
        ["dead-peer", address, port, mode] => {
            return helpers::dead_peer(address, parse(port, "PORT")?, mode);
        }
        _ => {}
    }
    let [workload, iterations, rest @ ..] = args.as_slice() else {
        return Err(usage());
    };
    let iterations: u64 = iterations
        .parse()
        .map_err(|_| format!("ITERATIONS must be a whole number, not {iterations:?}"))?;
    let mut body: Loop = match (workload.as_str(), rest) {
        ("tcp-socket", []) => Box::new(|| socket_close(libc::AF_INET, libc::SOCK_STREAM)),
        ("udp-socket", []) => Box::new(|| socket_close(libc::AF_INET, libc::SOCK_DGRAM)),
        ("unix-socket", []) => Box::new(|| socket_close(libc::AF_UNIX, libc::SOCK_STREAM)),
        ("tcp-connect", []) => tcp_connect(0)?,
        ("tcp-connect", [port]) => {
            tcp_connect(port.parse().map_err(|_| format!("bad port {port:?}"))?)?
        }
        ("tcp-setsockopt", []) => tcp_setsockopt(30)?,
        ("tcp-setsockopt", [seconds]) => tcp_setsockopt(
            seconds
                .parse()
                .map_err(|_| format!("bad seconds {seconds:?}"))?,
        )?,
        ("spawn", [program, arguments @ ..]) => spawn(program, arguments)?,
        _ => return Err(usage()),
    };
    let warmup = (iterations / 10).min(1000);
    for _ in 0..warmup {
        body()?;
    }
    let start = Instant::now();
    let cpu_start = cpu_nanos();
    for _ in 0..iterations {
        body()?;
    }
    let cpu = cpu_nanos() - cpu_start;
    let elapsed = start.elapsed();
    let per = |nanos: f64| nanos / iterations.max(1) as f64;
    println!(
        "{workload} iterations={iterations} warmup={warmup} ns_per_iteration={:.1} cpu_ns_per_iteration={:.1}",
        per(elapsed.as_nanos() as f64),
        per(cpu),
    );
    Ok(())
}

/// CPU time (user + system) of this process and of its waited-for children, in nanoseconds:
/// unlike wall time, it does not count the time other processes on a busy machine take.
fn cpu_nanos() -> f64 {
    let mut own = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: own is writable.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut own) };
    // SAFETY: all-zero is a valid rusage.
    let mut children: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: children is writable.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut children) };
    let micros = |time: libc::timeval| time.tv_sec as f64 * 1e6 + time.tv_usec as f64;
    own.tv_sec as f64 * 1e9
        + own.tv_nsec as f64
        + (micros(children.ru_utime) + micros(children.ru_stime)) * 1e3
}

fn last_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn check(result: c_int, what: &str) -> Result<c_int, String> {
    if result < 0 {
        Err(last_error(what))
    } else {
        Ok(result)
    }
}

fn close(fd: c_int) -> Result<(), String> {
    // SAFETY: fd is a descriptor this program opened and owns.
    check(unsafe { libc::close(fd) }, "close").map(drop)
}

fn socket_close(domain: c_int, kind: c_int) -> Result<(), String> {
    // SAFETY: plain socket creation.
    let fd = check(unsafe { libc::socket(domain, kind, 0) }, "socket")?;
    close(fd)
}

/// `address` as the kernel takes it (the one conversion, `keepalive_config::sockaddr`): the
/// bytes and their length.
fn encoded(address: SocketAddr) -> ([u8; sockaddr::V6_LENGTH], libc::socklen_t) {
    let mut bytes = [0; sockaddr::V6_LENGTH];
    let length = sockaddr::encode(address, &mut bytes);
    (bytes, length as libc::socklen_t)
}

fn set_option<T>(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: &T,
    what: &str,
) -> Result<(), String> {
    // SAFETY: value is a live T and the length says so.
    let result = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            ptr::from_ref(value).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    check(result, what).map(drop)
}

/// A loopback listener, then per iteration: a client socket connects, the listener accepts,
/// both close. The listener lingers with a zero timeout, which accepted sockets inherit, so
/// closing the accepted side first resets the connection: no TIME_WAIT piles up, and the
/// ephemeral ports last for any number of iterations.
fn tcp_connect(port: u16) -> Result<Loop, String> {
    // SAFETY: plain socket creation.
    let listener = check(
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) },
        "socket",
    )?;
    set_option(
        listener,
        libc::SOL_SOCKET,
        libc::SO_REUSEADDR,
        &1 as &c_int,
        "SO_REUSEADDR",
    )?;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    set_option(
        listener,
        libc::SOL_SOCKET,
        libc::SO_LINGER,
        &linger,
        "SO_LINGER",
    )?;
    let (address, length) = encoded(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    // SAFETY: address holds an encoded socket address of the length given.
    let bound = unsafe { libc::bind(listener, address.as_ptr().cast(), length) };
    check(bound, "bind")?;
    // SAFETY: plain listen on our socket.
    check(unsafe { libc::listen(listener, 128) }, "listen")?;
    let mut named = [0u8; sockaddr::STORAGE_LENGTH];
    let mut named_length = named.len() as libc::socklen_t;
    // SAFETY: named/named_length describe a writable buffer any address fits in.
    let result =
        unsafe { libc::getsockname(listener, named.as_mut_ptr().cast(), &mut named_length) };
    check(result, "getsockname")?;
    let bound = named
        .get(..named_length as usize)
        .and_then(sockaddr::decode)
        .ok_or("getsockname: not an IP address")?;
    let (address, length) = encoded(bound);
    Ok(Box::new(move || {
        // SAFETY: plain socket creation.
        let client = check(
            unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) },
            "socket",
        )?;
        // SAFETY: address holds the listener's encoded address, of the length given.
        let connected = unsafe { libc::connect(client, address.as_ptr().cast(), length) };
        check(connected, "connect")?;
        // SAFETY: null address and length are allowed.
        let accepted = check(
            unsafe { libc::accept(listener, ptr::null_mut(), ptr::null_mut()) },
            "accept",
        )?;
        close(accepted)?;
        close(client)
    }))
}

/// One TCP socket, then per iteration the program's own setsockopt(TCP_KEEPIDLE): the call a
/// `KEEPALIVE_OVERRIDE` policy (the library's hook, or an eBPF cgroup/setsockopt program) sees.
fn tcp_setsockopt(seconds: c_int) -> Result<Loop, String> {
    // SAFETY: plain socket creation.
    let fd = check(
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) },
        "socket",
    )?;
    Ok(Box::new(move || {
        set_option(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_KEEPIDLE,
            &seconds,
            "TCP_KEEPIDLE",
        )
    }))
}

/// The order of `count` setups in round `round`: A B C, then C B A, and so on (the same order
/// as scripts/benchlib/core.py's `interleaved`): no setup always first, a linear drift falls on
/// all alike.
fn interleaved(round: u64, count: usize) -> Vec<usize> {
    if round & 1 == 0 {
        (0..count).collect()
    } else {
        (0..count).rev().collect()
    }
}

/// Moves this process into a cgroup2 directory.
fn join_cgroup(directory: &str) -> Result<(), String> {
    std::fs::write(
        format!("{directory}/cgroup.procs"),
        std::process::id().to_string(),
    )
    .map_err(|e| format!("joining {directory}: {e}"))
}

/// `alternate`: see the module documentation.
fn alternate(
    workload: &str,
    iterations: u64,
    blocks: u64,
    cgroups: [&str; 2],
    rest: &[&str],
) -> Result<(), String> {
    let mut bodies = Vec::new();
    for (index, cgroup) in cgroups.iter().enumerate() {
        join_cgroup(cgroup)?;
        let argument = rest.get(index).copied();
        let body: Loop = match (workload, argument) {
            ("tcp-connect", port) => tcp_connect(parse(port.unwrap_or("0"), "PORT")?)?,
            ("tcp-setsockopt", seconds) => {
                tcp_setsockopt(parse(seconds.unwrap_or("30"), "SECONDS")?)?
            }
            _ => return Err(usage()),
        };
        bodies.push(body);
    }
    for (index, body) in bodies.iter_mut().enumerate() {
        join_cgroup(cgroups[index])?;
        for _ in 0..iterations {
            body()?;
        }
    }
    for pair in 0..blocks {
        let mut nanos = [0f64; 2];
        for index in interleaved(pair, 2) {
            join_cgroup(cgroups[index])?;
            let start = cpu_nanos();
            for _ in 0..iterations {
                bodies[index]()?;
            }
            nanos[index] = (cpu_nanos() - start) / iterations.max(1) as f64;
        }
        println!("a_ns={:.1} b_ns={:.1}", nanos[0], nanos[1]);
    }
    Ok(())
}

/// `spawn-mix`: see the module documentation.
fn spawn_mix(iterations: u64, program: &str, arguments: &[&str]) -> Result<(), String> {
    let mix = std::env::var("KP_BENCH_MIX").map_err(|_| "KP_BENCH_MIX is not set".to_owned())?;
    let mut setups = Vec::new();
    for setup in mix.split('|') {
        let mut words = setup.split_whitespace();
        let preload = words.next().unwrap_or("-");
        let mut extra: Vec<String> = words.map(str::to_owned).collect();
        if preload != "-" {
            extra.push(format!("LD_PRELOAD={preload}"));
        }
        setups.push(child_spawner(program, arguments, &extra)?);
    }
    let mut cpu = vec![0u128; setups.len()];
    for round in 0..iterations {
        for index in interleaved(round, setups.len()) {
            cpu[index] += setups[index]()?;
        }
    }
    for (index, total) in cpu.iter().enumerate() {
        println!(
            "setup={index} runs={iterations} cpu_ns_per_run={:.1}",
            *total as f64 / iterations.max(1) as f64
        );
    }
    Ok(())
}

type Spawner = Box<dyn FnMut() -> Result<u128, String>>;

/// A closure that spawns PROGRAM with this environment (less LD_PRELOAD) plus `extra`, waits
/// for it, and returns the child's CPU time (user + system) in nanoseconds.
fn child_spawner(program: &str, arguments: &[&str], extra: &[String]) -> Result<Spawner, String> {
    let to_c = |text: &str| CString::new(text).map_err(|_| format!("NUL in {text:?}"));
    let program = to_c(program)?;
    let mut argv_owned = vec![program.clone()];
    for argument in arguments {
        argv_owned.push(to_c(argument)?);
    }
    let mut env_owned: Vec<CString> = Vec::new();
    for (name, value) in std::env::vars() {
        if name != "LD_PRELOAD" && name != "KP_BENCH_MIX" {
            env_owned.push(to_c(&format!("{name}={value}"))?);
        }
    }
    for word in extra {
        env_owned.push(to_c(word)?);
    }
    let mut argv: Vec<*mut c_char> = argv_owned.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv.push(ptr::null_mut());
    let mut envp: Vec<*mut c_char> = env_owned.iter().map(|e| e.as_ptr().cast_mut()).collect();
    envp.push(ptr::null_mut());
    Ok(Box::new(move || {
        let _owners = (&argv_owned, &env_owned);
        let mut pid: libc::pid_t = 0;
        // SAFETY: program, argv and envp are NUL-terminated and live across the call.
        let spawned = unsafe {
            libc::posix_spawn(
                &mut pid,
                program.as_ptr(),
                ptr::null(),
                ptr::null(),
                argv.as_ptr(),
                envp.as_ptr(),
            )
        };
        if spawned != 0 {
            return Err(format!(
                "posix_spawn: {}",
                std::io::Error::from_raw_os_error(spawned)
            ));
        }
        let mut status: c_int = 0;
        // SAFETY: all-zero is a valid rusage.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our child; status and usage are writable.
        check(
            unsafe { libc::wait4(pid, &mut status, 0, &mut usage) },
            "wait4",
        )?;
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            return Err(format!("child exited with status {status:#x}"));
        }
        let micros = |time: libc::timeval| time.tv_sec as u128 * 1_000_000 + time.tv_usec as u128;
        Ok((micros(usage.ru_utime) + micros(usage.ru_stime)) * 1000)
    }))
}

unsafe extern "C" {
    static environ: *const *const c_char;
}

/// posix_spawn of PROGRAM with ARGS and this process's environment (plus LD_PRELOAD from
/// KP_BENCH_CHILD_PRELOAD), then waitpid; the child must exit 0.
fn spawn(program: &str, arguments: &[String]) -> Result<Loop, String> {
    let to_c = |text: &str| CString::new(text).map_err(|_| format!("NUL in {text:?}"));
    let program = to_c(program)?;
    let mut argv_owned = vec![program.clone()];
    for argument in arguments {
        argv_owned.push(to_c(argument)?);
    }
    let mut env_owned: Vec<CString> = Vec::new();
    let preload = std::env::var("KP_BENCH_CHILD_PRELOAD").unwrap_or_default();
    // SAFETY: environ is the NUL-terminated array of this process's environment strings,
    // read before any thread exists.
    unsafe {
        let mut entry = environ;
        while !(*entry).is_null() {
            let text = std::ffi::CStr::from_ptr(*entry);
            if !text.to_bytes().starts_with(b"LD_PRELOAD=") {
                env_owned.push(text.to_owned());
            }
            entry = entry.add(1);
        }
    }
    if !preload.is_empty() {
        env_owned.push(to_c(&format!("LD_PRELOAD={preload}"))?);
    }
    // The pointers stay valid: moving the vectors into the closure does not move the strings.
    let mut argv: Vec<*mut c_char> = argv_owned.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv.push(ptr::null_mut());
    let mut envp: Vec<*mut c_char> = env_owned.iter().map(|e| e.as_ptr().cast_mut()).collect();
    envp.push(ptr::null_mut());
    Ok(Box::new(move || {
        let _owners = (&argv_owned, &env_owned);
        let mut pid: libc::pid_t = 0;
        // SAFETY: program, argv and envp are NUL-terminated and live across the call.
        let spawned = unsafe {
            libc::posix_spawn(
                &mut pid,
                program.as_ptr(),
                ptr::null(),
                ptr::null(),
                argv.as_ptr(),
                envp.as_ptr(),
            )
        };
        if spawned != 0 {
            return Err(format!(
                "posix_spawn: {}",
                std::io::Error::from_raw_os_error(spawned)
            ));
        }
        let mut status: c_int = 0;
        // SAFETY: pid is our child; status is writable.
        check(unsafe { libc::waitpid(pid, &mut status, 0) }, "waitpid")?;
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            return Err(format!("child exited with status {status:#x}"));
        }
        Ok(())
    }))
}
