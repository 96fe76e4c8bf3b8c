//! `inspect`: read every TCP socket of live processes through pidfd_getfd and judge whether it
//! carries the keepalive it should.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStringExt;
use std::process::ExitCode;

use clap::Args;
use keepalive_config::Role as TargetRole;
use keepalive_config::{Config, ConfigError, KernelDefaults, Override, PREFIX};

use crate::check::kernel_defaults;
use crate::settings::{Filters, parse_kept};
use crate::{EXIT_ERROR, Failure, environ, sys};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Processes to inspect.
    #[arg(value_name = "PID", required = true, num_args = 1.., value_parser = clap::value_parser!(i32).range(1..))]
    pids: Vec<i32>,
    /// One JSON object per socket (JSON Lines) instead of the table.
    #[arg(long)]
    json: bool,
    /// Compare each socket with what the library should have done under the configuration in
    /// the process's own environment (/proc/PID/environ, or its live environ when a title
    /// rewrite blanked that).
    #[arg(long)]
    expect_env: bool,
}

/// The file name the library is recognised by in /proc/PID/maps.
pub const LIBRARY_STEM: &str = "libkeepalive_preload";

const TCP_LISTEN: u8 = 10;
const TCP_CLOSE: u8 = 7;

/// One TCP socket as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Socket {
    pub fd: i32,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    pub ipv6: bool,
    pub state: u8,
    pub keepalive: bool,
    pub idle: u32,
    pub interval: u32,
    pub count: u32,
    pub user_timeout_ms: u32,
}

/// What a process is and holds.
#[derive(Debug)]
pub struct Process {
    pub pid: i32,
    pub exe: Option<String>,
    pub argv0: Option<String>,
    /// The path the library is mapped from, when it is.
    pub library: Option<String>,
    pub sockets: Vec<Socket>,
    /// /proc/PID/maps as read.
    pub maps: String,
}

/// The configuration in a process's environment, with what it implies for the process.
#[derive(Debug)]
pub struct Expectation {
    pub config: Config<'static>,
    pub errors: Vec<ConfigError<'static>>,
    /// The lookup structures of its filters.
    pub filters: Filters,
    pub kernel: KernelDefaults,
    /// KEEPALIVE is on and KEEPALIVE_PROGRAMS (if set) names this program.
    pub acts: bool,
    /// Where the variables were read.
    pub source: String,
    /// LD_PRELOAD in that environment.
    pub preload: Option<String>,
    /// The library must be mapped for the configuration to act (false under an eBPF policy).
    pub needs_library: bool,
}

/// How the socket came to be, which decides the port a filter looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Listening,
    /// Local port is a port this process listens on.
    Accepted,
    Outgoing,
    /// Neither bound to a listening port nor connected: not judged by filters yet.
    Unconnected,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Listening => "listening",
            Role::Accepted => "accepted",
            Role::Outgoing => "outgoing",
            Role::Unconnected => "unconnected",
        }
    }
}

/// Values the library should have put on a socket; `None` = not configured, not compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    pub idle: Option<u32>,
    pub interval: Option<u32>,
    pub count: Option<u32>,
    pub user_timeout_ms: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// SO_KEEPALIVE is off on a socket that should carry keepalive.
    Missing,
    /// A value differs from the configuration where KEEPALIVE_OVERRIDE says it should not.
    Differs,
    NotTargeted,
}

impl Verdict {
    fn name(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Missing => "missing",
            Verdict::Differs => "differs",
            Verdict::NotTargeted => "not-targeted",
        }
    }

    fn fails(self) -> bool {
        matches!(self, Verdict::Missing | Verdict::Differs)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    pub role: Role,
    pub expected: Option<Expected>,
    pub verdict: Verdict,
    /// Configured values the socket does not carry: (field, actual, expected).
    pub differences: Vec<(&'static str, u32, u32)>,
}

pub fn inspect(args: &InspectArgs) -> Result<ExitCode, Failure> {
    let mut worst = 0u8;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut first = true;
    for &pid in &args.pids {
        let report = read_process(pid).and_then(|process| {
            // An eBPF policy on the process's cgroup is what the kernel enforces: judge by it.
            let expectation = if let Some(policy) = crate::bpf::expectation_for(pid) {
                Some(policy)
            } else if args.expect_env {
                Some(read_expectation(pid, &process)?)
            } else {
                None
            };
            Ok((process, expectation))
        });
        let (process, expectation) = match report {
            Ok(report) => report,
            Err(Failure(message)) => {
                eprintln!("{PREFIX}: inspect: pid {pid}: {message}");
                worst = EXIT_ERROR;
                continue;
            }
        };
        let judgements = judge_process(&process, expectation.as_ref());
        let library_problem = expectation
            .as_ref()
            .filter(|expectation| {
                expectation.acts && expectation.needs_library && process.library.is_none()
            })
            .map(library_missing_message);
        let failed = library_problem.is_some() || judgements.iter().any(|j| j.verdict.fails());
        if failed {
            worst = worst.max(1);
        }
        let text = if args.json {
            for error in expectation.iter().flat_map(|e| &e.errors) {
                eprintln!(
                    "{PREFIX}: inspect: pid {pid}: its environment has {}",
                    strip_prefix(error)
                );
            }
            if let Some(problem) = &library_problem {
                eprintln!("{PREFIX}: inspect: pid {pid}: {problem}");
            }
            json_lines(&process, expectation.as_ref(), &judgements)
        } else {
            let mut text = String::new();
            if !first {
                text.push('\n');
            }
            text.push_str(&table(
                &process,
                expectation.as_ref(),
                &judgements,
                library_problem.as_deref(),
            ));
            text
        };
        first = false;
        // A closed stdout (inspect ... | head) is not worth a panic.
        if out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            return Ok(ExitCode::from(worst.max(EXIT_ERROR)));
        }
    }
    Ok(ExitCode::from(worst))
}

fn strip_prefix(error: &ConfigError) -> String {
    let line = error.to_string();
    line.strip_prefix(&format!("{PREFIX}: "))
        .map(str::to_owned)
        .unwrap_or(line)
}

/// Why the library should be there and is not, with the likely cause.
fn library_missing_message(expectation: &Expectation) -> String {
    let named = expectation
        .preload
        .as_deref()
        .is_some_and(|preload| preload.contains(LIBRARY_STEM));
    let cause = if named {
        "its LD_PRELOAD names the library: a statically linked program, secure-execution mode \
         (setuid, file capabilities) or a missing file kept the loader from loading it"
    } else {
        "its LD_PRELOAD does not name the library (and neither does /etc/ld.so.preload)"
    };
    format!(
        "the library should act in this process (KEEPALIVE on, not excluded by \
         KEEPALIVE_PROGRAMS) but {LIBRARY_STEM} is not mapped: {cause}"
    )
}

/// Everything `inspect` reads about one process.
pub fn read_process(pid: i32) -> Result<Process, Failure> {
    let proc_dir = format!("/proc/{pid}");
    let status = std::fs::read_to_string(format!("{proc_dir}/status"))
        .map_err(|error| proc_error(pid, "read its status", &error))?;
    if let Some(tgid) = status
        .lines()
        .find_map(|line| line.strip_prefix("Tgid:"))
        .map(str::trim)
        .filter(|tgid| *tgid != pid.to_string())
    {
        return Err(Failure::new(format!(
            "is a thread of process {tgid}; inspect {tgid}"
        )));
    }
    let entries = std::fs::read_dir(format!("{proc_dir}/fd"))
        .map_err(|error| proc_error(pid, "list its file descriptors", &error))?;
    let mut socket_fds = Vec::new();
    for entry in entries.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        // A descriptor closed meanwhile is simply gone.
        if let Ok(target) = std::fs::read_link(entry.path())
            && target
                .as_os_str()
                .as_encoded_bytes()
                .starts_with(b"socket:[")
        {
            socket_fds.push(fd);
        }
    }
    socket_fds.sort_unstable();
    let maps = std::fs::read_to_string(format!("{proc_dir}/maps"))
        .map_err(|error| proc_error(pid, "read its memory map", &error))?;
    let library = mapped_library(&maps);
    let exe = std::fs::read_link(format!("{proc_dir}/exe"))
        .ok()
        .map(|path| path.display().to_string());
    let argv0 = std::fs::read(format!("{proc_dir}/cmdline"))
        .ok()
        .and_then(|bytes| {
            let first = bytes.split(|&byte| byte == 0).next()?.to_vec();
            (!first.is_empty()).then(|| String::from_utf8_lossy(&first).into_owned())
        });

    let mut sockets = Vec::new();
    if !socket_fds.is_empty() {
        let pidfd = sys::pidfd_open(pid).map_err(|error| match error.raw_os_error() {
            Some(libc::ENOSYS) => Failure::new(
                "this kernel has no pidfd_open (Linux >= 5.3 needed, and pidfd_getfd >= 5.6)",
            ),
            Some(libc::ESRCH) => Failure::new("no such process (it exited)"),
            _ => Failure::new(format!("pidfd_open failed: {error}")),
        })?;
        for fd in socket_fds {
            let dup = match sys::pidfd_getfd(pidfd.as_fd(), fd) {
                Ok(dup) => dup,
                // Closed between listing and duplicating.
                Err(error) if error.raw_os_error() == Some(libc::EBADF) => continue,
                Err(error) => return Err(getfd_error(&error)),
            };
            match read_socket(fd, dup.as_fd()) {
                Ok(Some(socket)) => sockets.push(socket),
                Ok(None) => {}
                Err(error) => {
                    return Err(Failure::new(format!("reading its fd {fd} failed: {error}")));
                }
            }
        }
        let net = NetTable::default();
        for socket in sockets.iter_mut().filter(|socket| socket.remote.is_none()) {
            // getpeername says ENOTCONN while a connect is in progress: /proc/PID/net/tcp knows.
            if matches!(socket.state, 2 | 3) {
                socket.remote = net.remote(pid, socket);
            }
        }
    }
    Ok(Process {
        pid,
        exe,
        argv0,
        library,
        sockets,
        maps,
    })
}

fn proc_error(pid: i32, what: &str, error: &io::Error) -> Failure {
    match error.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ESRCH) => Failure::new("no such process"),
        Some(libc::EACCES) | Some(libc::EPERM) => Failure::new(format!(
            "not permitted to {what} (/proc/{pid}): inspect needs the rights of ptrace over \
             the process (run as its user with kernel.yama.ptrace_scope allowing it, or as root)"
        )),
        _ => Failure::new(format!("cannot {what} (/proc/{pid}): {error}")),
    }
}

fn getfd_error(error: &io::Error) -> Failure {
    match error.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => Failure::new(
            "not permitted to duplicate its sockets: pidfd_getfd needs the rights of ptrace \
             over the process (PTRACE_MODE_ATTACH: its user and kernel.yama.ptrace_scope \
             allowing it, or CAP_SYS_PTRACE; run as root)",
        ),
        Some(libc::ENOSYS) => Failure::new(
            "this kernel has no pidfd_getfd (Linux >= 5.6 needed to read another process's sockets)",
        ),
        Some(libc::ESRCH) => Failure::new("no such process (it exited)"),
        _ => Failure::new(format!("pidfd_getfd failed: {error}")),
    }
}

/// The TCP socket behind `dup`, or `None` for any other kind of socket.
fn read_socket(fd: i32, dup: BorrowedFd<'_>) -> io::Result<Option<Socket>> {
    let int = |level, name| sys::getsockopt_int(dup, level, name);
    let domain = int(libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    let kind = int(libc::SOL_SOCKET, libc::SO_TYPE)?;
    let protocol = int(libc::SOL_SOCKET, libc::SO_PROTOCOL)?;
    if !matches!(domain, libc::AF_INET | libc::AF_INET6)
        || kind != libc::SOCK_STREAM
        || protocol != libc::IPPROTO_TCP
    {
        return Ok(None);
    }
    let unsigned = |level, name| int(level, name).map(|value| value.max(0) as u32);
    Ok(Some(Socket {
        fd,
        local: sys::local_address(dup).ok(),
        remote: sys::peer_address(dup).ok(),
        ipv6: domain == libc::AF_INET6,
        state: sys::tcp_state(dup)?,
        keepalive: int(libc::SOL_SOCKET, libc::SO_KEEPALIVE)? != 0,
        idle: unsigned(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE)?,
        interval: unsigned(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL)?,
        count: unsigned(libc::IPPROTO_TCP, libc::TCP_KEEPCNT)?,
        user_timeout_ms: unsigned(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT)?,
    }))
}

/// The path of the first executable mapping whose file name starts with `libkeepalive_preload`.
/// Only an executable one counts: when ld.so fails to load a preloaded library (e.g. from a
/// noexec mount) it says "ignored" but leaves its first, read-only mapping behind.
pub fn mapped_library(maps: &str) -> Option<String> {
    maps.lines().find_map(|line| {
        // address perms offset dev inode pathname (the path may contain spaces)
        let mut fields = line.splitn(6, char::is_whitespace);
        let executable = fields.nth(1)?.contains('x');
        let path = fields.nth(3)?.trim_start();
        let name = path.rsplit('/').next()?;
        (executable && path.starts_with('/') && name.starts_with(LIBRARY_STEM))
            .then(|| path.to_owned())
    })
}

/// /proc/PID/net/tcp{,6}, read only when a connecting socket needs its peer.
#[derive(Default)]
struct NetTable {
    rows: std::cell::OnceCell<Vec<(u64, SocketAddr, SocketAddr)>>,
}

impl NetTable {
    fn remote(&self, pid: i32, socket: &Socket) -> Option<SocketAddr> {
        let inode = socket_inode(pid, socket.fd)?;
        let rows = self.rows.get_or_init(|| {
            ["tcp", "tcp6"]
                .iter()
                .filter_map(|name| std::fs::read_to_string(format!("/proc/{pid}/net/{name}")).ok())
                .flat_map(|text| {
                    text.lines()
                        .skip(1)
                        .filter_map(parse_net_row)
                        .collect::<Vec<_>>()
                })
                .collect()
        });
        rows.iter()
            .find(|(row_inode, _, _)| *row_inode == inode)
            .map(|&(_, _, remote)| remote)
            .filter(|remote| remote.port() != 0)
    }
}

fn socket_inode(pid: i32, fd: i32) -> Option<u64> {
    let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let text = target.to_str()?;
    text.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// One row of /proc/net/tcp or tcp6: inode, local and remote address.
fn parse_net_row(line: &str) -> Option<(u64, SocketAddr, SocketAddr)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let local = parse_net_address(fields.get(1)?)?;
    let remote = parse_net_address(fields.get(2)?)?;
    let inode = fields.get(9)?.parse().ok()?;
    Some((inode, local, remote))
}

/// `0100007F:1F90` (IPv4) or 32 hex digits (IPv6): 32-bit words in host order, port in hex.
fn parse_net_address(text: &str) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for chunk in address.as_bytes().chunks(8) {
        let word = u32::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The configuration in /proc/PID/environ, as the library parsed it at load.
fn read_expectation(pid: i32, process: &Process) -> Result<Expectation, Failure> {
    let environ = std::fs::read(format!("/proc/{pid}/environ"))
        .map_err(|error| proc_error(pid, "read its environment", &error))?;
    let mut entries: Vec<Vec<u8>> = environ
        .split(|&byte| byte == 0)
        .filter(|entry| entry.contains(&b'='))
        .map(<[u8]>::to_vec)
        .collect();
    let mut source = format!("/proc/{pid}/environ");
    if entries.is_empty() {
        // Blanked by a process-title rewrite (Redis does it), or really empty.
        match environ::from_memory(pid, &process.maps, process.exe.as_deref()) {
            Ok(live) => {
                entries = live;
                source = format!(
                    "its live environ (/proc/{pid}/environ is blank: the process rewrote its title)"
                );
            }
            Err(error) => {
                source = format!(
                    "/proc/{pid}/environ, which is blank (its live environ is unreadable: {error})"
                );
            }
        }
    }
    let variables: HashMap<String, OsString> = entries
        .iter()
        .filter_map(|entry| {
            let at = entry.iter().position(|&byte| byte == b'=')?;
            let name = std::str::from_utf8(&entry[..at]).ok()?.to_owned();
            Some((name, OsString::from_vec(entry[at + 1..].to_vec())))
        })
        .collect();
    let parsed = parse_kept(|name| variables.get(name).cloned());
    let acts = parsed.config.enabled && parsed.config.acts_in_program(program_names(process));
    Ok(Expectation {
        filters: Filters::new(&parsed.config),
        config: parsed.config,
        errors: parsed.errors.iter().copied().collect(),
        kernel: kernel_defaults(),
        acts,
        source,
        preload: variables
            .get("LD_PRELOAD")
            .map(|preload| preload.to_string_lossy().into_owned()),
        needs_library: true,
    })
}

/// What KEEPALIVE_PROGRAMS is matched against: the executable, argv[0], and argv[0]'s first
/// word (a rewritten title such as `redis-server 127.0.0.1:6379`; names have no spaces).
fn program_names(process: &Process) -> impl Iterator<Item = &str> {
    let title = process
        .argv0
        .as_deref()
        .and_then(|argv0| argv0.split_whitespace().next());
    process
        .exe
        .as_deref()
        .into_iter()
        .chain(process.argv0.as_deref())
        .chain(title)
}

/// Roles, expectations and verdicts for every socket of a process.
pub fn judge_process(process: &Process, expectation: Option<&Expectation>) -> Vec<Judgement> {
    let listening: Vec<u16> = process
        .sockets
        .iter()
        .filter(|socket| socket.state == TCP_LISTEN)
        .filter_map(|socket| socket.local.map(|address| address.port()))
        .collect();
    process
        .sockets
        .iter()
        .map(|socket| {
            let role = role(socket, &listening);
            match expectation {
                None => Judgement {
                    role,
                    expected: None,
                    verdict: if socket.keepalive {
                        Verdict::Ok
                    } else {
                        Verdict::Missing
                    },
                    differences: Vec::new(),
                },
                Some(expectation) => judge(socket, role, expectation),
            }
        })
        .collect()
}

fn role(socket: &Socket, listening: &[u16]) -> Role {
    let local_port = socket
        .local
        .map(|address| address.port())
        .filter(|&port| port != 0);
    if socket.state == TCP_LISTEN {
        Role::Listening
    } else if local_port.is_some_and(|port| listening.contains(&port)) && socket.state != TCP_CLOSE
    {
        Role::Accepted
    } else if socket.remote.is_some() {
        Role::Outgoing
    } else {
        Role::Unconnected
    }
}

/// Whether the library should act on this socket: the one targeting rule of
/// `keepalive-config`, with the role this process's listening ports imply.
pub fn targeted(expectation: &Expectation, role: Role, socket: &Socket) -> bool {
    if !expectation.acts {
        return false;
    }
    let targeting = expectation.filters.targeting();
    if !targeting.filters_by_address() {
        return true;
    }
    let role = match role {
        Role::Listening => TargetRole::Listening,
        Role::Accepted => TargetRole::Accepted,
        Role::Outgoing => TargetRole::Connecting,
        // Not judged by the filters until it connects or listens.
        Role::Unconnected => return false,
    };
    targeting
        .decide(role, socket.local, socket.remote)
        .targeted()
}

pub fn judge(socket: &Socket, role: Role, expectation: &Expectation) -> Judgement {
    let config = &expectation.config;
    if !targeted(expectation, role, socket) {
        return Judgement {
            role,
            expected: None,
            verdict: Verdict::NotTargeted,
            differences: Vec::new(),
        };
    }
    let expected = Expected {
        idle: config.idle,
        interval: config.interval,
        count: config.count,
        user_timeout_ms: config.user_timeout_ms(expectation.kernel),
    };
    let policy = config.override_policy;
    let differences: Vec<(&'static str, u32, u32)> = [
        ("idle", socket.idle, expected.idle),
        ("interval", socket.interval, expected.interval),
        ("count", socket.count, expected.count),
        (
            "user_timeout_ms",
            socket.user_timeout_ms,
            expected.user_timeout_ms,
        ),
    ]
    .into_iter()
    .filter_map(|(field, actual, wanted)| {
        let wanted = wanted?;
        let looser = if field == "user_timeout_ms" {
            // 0 disables the timeout: looser than any configured value.
            actual == 0 || actual > wanted
        } else {
            actual > wanted
        };
        let differs = match policy {
            Override::Tighten => looser,
            Override::Yes | Override::No => actual != wanted,
        };
        differs.then_some((field, actual, wanted))
    })
    .collect();
    let verdict = if !socket.keepalive {
        Verdict::Missing
    } else if policy != Override::No && !differences.is_empty() {
        Verdict::Differs
    } else {
        Verdict::Ok
    };
    Judgement {
        role,
        expected: Some(expected),
        verdict,
        differences,
    }
}

pub fn state_name(state: u8) -> &'static str {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN-SENT",
        3 => "SYN-RECV",
        4 => "FIN-WAIT-1",
        5 => "FIN-WAIT-2",
        6 => "TIME-WAIT",
        7 => "CLOSE",
        8 => "CLOSE-WAIT",
        9 => "LAST-ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW-SYN-RECV",
        _ => "UNKNOWN",
    }
}

/// `127.0.0.1:17001`, `[::1]:17000` (without scope or flow info).
pub fn show_address(address: &SocketAddr) -> String {
    match address {
        SocketAddr::V4(v4) => v4.to_string(),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

/// The name people know the process by: argv[0]'s first word (a rewritten title keeps its
/// name there), else the executable's, as a base name.
fn program_name(process: &Process) -> String {
    process
        .argv0
        .as_deref()
        .and_then(|argv0| argv0.split_whitespace().next())
        .or(process.exe.as_deref())
        .map(|path| path.rsplit('/').next().unwrap_or(path).to_owned())
        .unwrap_or_else(|| "?".to_owned())
}

pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_option(value: Option<u32>) -> String {
    value.map_or_else(|| "null".to_owned(), |value| value.to_string())
}

/// One JSON object per socket, one per line.
pub fn json_lines(
    process: &Process,
    expectation: Option<&Expectation>,
    judgements: &[Judgement],
) -> String {
    let mut out = String::new();
    for (socket, judgement) in process.sockets.iter().zip(judgements) {
        let _ = write!(
            out,
            "{{\"pid\":{},\"fd\":{},\"program\":{},\"family\":\"{}\",\"local\":{},\"remote\":{},\"state\":\"{}\",\"role\":\"{}\",\"keepalive\":{},\"idle\":{},\"interval\":{},\"count\":{},\"user_timeout_ms\":{},\"library\":{}",
            process.pid,
            socket.fd,
            json_string(&program_name(process)),
            if socket.ipv6 { "ipv6" } else { "ipv4" },
            socket
                .local
                .map_or("null".to_owned(), |a| json_string(&show_address(&a))),
            socket
                .remote
                .map_or("null".to_owned(), |a| json_string(&show_address(&a))),
            state_name(socket.state),
            judgement.role.name(),
            socket.keepalive,
            socket.idle,
            socket.interval,
            socket.count,
            socket.user_timeout_ms,
            process.library.is_some(),
        );
        if expectation.is_some() {
            match judgement.expected {
                None => out.push_str(",\"expected\":null"),
                Some(expected) => {
                    let _ = write!(
                        out,
                        ",\"expected\":{{\"keepalive\":true,\"idle\":{},\"interval\":{},\"count\":{},\"user_timeout_ms\":{}}}",
                        json_option(expected.idle),
                        json_option(expected.interval),
                        json_option(expected.count),
                        json_option(expected.user_timeout_ms),
                    );
                }
            }
            let differences: Vec<String> = judgement
                .differences
                .iter()
                .map(|(field, _, _)| json_string(field))
                .collect();
            let _ = write!(out, ",\"differences\":[{}]", differences.join(","));
        }
        let _ = writeln!(out, ",\"verdict\":\"{}\"}}", judgement.verdict.name());
    }
    out
}

fn show_value(field: &str, value: u32) -> String {
    match field {
        "count" => value.to_string(),
        "user_timeout_ms" => format!("{value}ms"),
        _ => format!("{value}s"),
    }
}

fn show_expected(expected: Option<Expected>) -> String {
    let Some(expected) = expected else {
        return "-".to_owned();
    };
    let mut text = String::from("on");
    for (field, label, value) in [
        ("idle", "idle", expected.idle),
        ("interval", "intvl", expected.interval),
        ("count", "cnt", expected.count),
        ("user_timeout_ms", "uto", expected.user_timeout_ms),
    ] {
        if let Some(value) = value {
            let _ = write!(text, " {label}={}", show_value(field, value));
        }
    }
    text
}

fn show_verdict(judgement: &Judgement, policy: Option<Override>) -> String {
    let mut text = judgement.verdict.name().to_owned();
    if !judgement.differences.is_empty() {
        let what: Vec<String> = judgement
            .differences
            .iter()
            .map(|&(field, actual, wanted)| {
                format!(
                    "{field} {} not {}",
                    show_value(field, actual),
                    show_value(field, wanted)
                )
            })
            .collect();
        let how = if policy == Some(Override::No) {
            "set by the program: "
        } else {
            ""
        };
        let _ = write!(text, " ({how}{})", what.join(", "));
    }
    text
}

/// The human report of one process: a header and an aligned table.
pub fn table(
    process: &Process,
    expectation: Option<&Expectation>,
    judgements: &[Judgement],
    library_problem: Option<&str>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "pid {} {} ({}): {}",
        process.pid,
        program_name(process),
        process.exe.as_deref().unwrap_or("executable unknown"),
        match &process.library {
            Some(path) => format!("{LIBRARY_STEM} mapped from {path}"),
            None => format!("{LIBRARY_STEM} not mapped"),
        }
    );
    if let Some(expectation) = expectation {
        let _ = writeln!(
            out,
            "configuration in its environment: {}",
            expectation.config.summary(expectation.kernel)
        );
        let _ = writeln!(out, "read from {}", expectation.source);
        for error in &expectation.errors {
            let _ = writeln!(out, "its environment has {}", strip_prefix(error));
        }
        if !expectation.acts {
            let _ = writeln!(
                out,
                "the library does not act in this process (KEEPALIVE off or program not in KEEPALIVE_PROGRAMS)"
            );
        }
        if let Some(problem) = library_problem {
            let _ = writeln!(out, "PROBLEM: {problem}");
        }
    }
    if process.sockets.is_empty() {
        let _ = writeln!(out, "no TCP sockets");
        return out;
    }
    let mut header = vec![
        "FD",
        "STATE",
        "LOCAL",
        "REMOTE",
        "ROLE",
        "KEEPALIVE",
        "IDLE",
        "INTVL",
        "CNT",
        "USER_TIMEOUT",
    ];
    if expectation.is_some() {
        header.push("EXPECTED");
    }
    header.push("VERDICT");
    let policy = expectation.map(|expectation| expectation.config.override_policy);
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|&cell| cell.to_owned()).collect()];
    for (socket, judgement) in process.sockets.iter().zip(judgements) {
        let mut row = vec![
            socket.fd.to_string(),
            state_name(socket.state).to_owned(),
            socket.local.map_or("-".to_owned(), |a| show_address(&a)),
            socket.remote.map_or("-".to_owned(), |a| show_address(&a)),
            judgement.role.name().to_owned(),
            if socket.keepalive { "on" } else { "off" }.to_owned(),
            show_value("idle", socket.idle),
            show_value("interval", socket.interval),
            show_value("count", socket.count),
            show_value("user_timeout_ms", socket.user_timeout_ms),
        ];
        if expectation.is_some() {
            row.push(show_expected(judgement.expected));
        }
        row.push(show_verdict(judgement, policy));
        rows.push(row);
    }
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in &rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column + 1 == columns {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[column]);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(state: u8, local: &str, remote: Option<&str>, keepalive: bool) -> Socket {
        Socket {
            fd: 3,
            local: Some(local.parse().unwrap()),
            remote: remote.map(|r| r.parse().unwrap()),
            ipv6: false,
            state,
            keepalive,
            idle: 30,
            interval: 10,
            count: 3,
            user_timeout_ms: 0,
        }
    }

    fn expectation(pairs: &[(&str, &str)]) -> Expectation {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        let parsed = parse_kept(|name| map.get(name).map(OsString::from));
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        Expectation {
            acts: parsed.config.enabled,
            filters: Filters::new(&parsed.config),
            config: parsed.config,
            errors: Vec::new(),
            kernel: KernelDefaults::default(),
            source: "test".to_owned(),
            preload: None,
            needs_library: true,
        }
    }

    #[test]
    fn net_rows_decode_like_the_kernel_prints_them() {
        let row = "   0: 0100007F:1F90 0100007F:D431 02 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 100 0 0 10 0";
        let (inode, local, remote) = parse_net_row(row).unwrap();
        assert_eq!(inode, 123456);
        assert_eq!(local.to_string(), "127.0.0.1:8080");
        assert_eq!(remote.to_string(), "127.0.0.1:54321");
        let v6 = parse_net_address("00000000000000000000000001000000:4268").unwrap();
        assert_eq!(show_address(&v6), "[::1]:17000");
    }

    #[test]
    fn maps_find_the_library_by_file_name() {
        let maps = "7f00-7f01 r-xp 00000000 08:01 42   /usr/lib/x86_64-linux-gnu/libc.so.6\n\
                    7f02-7f03 r-xp 00000000 08:01 43   /opt/my dir/libkeepalive_preload.so\n";
        assert_eq!(
            mapped_library(maps).as_deref(),
            Some("/opt/my dir/libkeepalive_preload.so")
        );
        assert_eq!(
            mapped_library("7f00-7f01 r-xp 00000000 08:01 42 /usr/lib/libkeepalive.so\n"),
            None
        );
        // What a failed preload (noexec mount) leaves behind is not the library loaded.
        assert_eq!(
            mapped_library("7f00-7f01 r--p 00000000 00:27 2   /mnt/libkeepalive_preload.so\n"),
            None
        );
    }

    #[test]
    fn roles_from_listening_ports() {
        let listening = [17000];
        assert_eq!(
            role(&socket(10, "0.0.0.0:17000", None, true), &listening),
            Role::Listening
        );
        assert_eq!(
            role(
                &socket(1, "127.0.0.1:17000", Some("127.0.0.1:40000"), true),
                &listening
            ),
            Role::Accepted
        );
        assert_eq!(
            role(
                &socket(1, "127.0.0.1:40000", Some("127.0.0.1:17000"), true),
                &listening
            ),
            Role::Outgoing
        );
        assert_eq!(
            role(&socket(7, "0.0.0.0:0", None, true), &listening),
            Role::Unconnected
        );
    }

    #[test]
    fn ports_filter_uses_remote_port_for_outgoing_and_local_for_accepted() {
        let expectation = expectation(&[("KEEPALIVE_PORTS", "17000-17999")]);
        let outgoing = socket(1, "127.0.0.1:40000", Some("127.0.0.1:17001"), true);
        assert!(targeted(&expectation, Role::Outgoing, &outgoing));
        let accepted = socket(1, "127.0.0.1:6379", Some("127.0.0.1:17001"), true);
        assert!(!targeted(&expectation, Role::Accepted, &accepted));
        let unconnected = socket(7, "0.0.0.0:0", None, true);
        assert!(!targeted(&expectation, Role::Unconnected, &unconnected));
        let off = Expectation {
            acts: false,
            ..expectation
        };
        assert!(!targeted(&off, Role::Outgoing, &outgoing));
    }

    #[test]
    fn nets_filter_uses_the_peer_and_skips_listeners() {
        let expectation = expectation(&[("KEEPALIVE_NETS", "10.0.0.0/8")]);
        let inside = socket(1, "10.0.0.1:6379", Some("10.1.1.1:40000"), true);
        let outside = socket(1, "127.0.0.1:6379", Some("127.0.0.1:40000"), true);
        assert!(targeted(&expectation, Role::Accepted, &inside));
        assert!(!targeted(&expectation, Role::Accepted, &outside));
        assert!(!targeted(
            &expectation,
            Role::Listening,
            &socket(10, "0.0.0.0:6379", None, true)
        ));
    }

    #[test]
    fn policies_judge_values() {
        let actual = socket(1, "127.0.0.1:40000", Some("127.0.0.1:17001"), true); // 30/10/3, uto 0
        let yes = expectation(&[
            ("KEEPALIVE_OVERRIDE", "yes"),
            ("KEEPIDLE", "30"),
            ("KEEPCNT", "3"),
        ]);
        assert_eq!(judge(&actual, Role::Outgoing, &yes).verdict, Verdict::Ok);
        let yes = expectation(&[("KEEPALIVE_OVERRIDE", "yes"), ("KEEPIDLE", "60")]);
        let judgement = judge(&actual, Role::Outgoing, &yes);
        assert_eq!(judgement.verdict, Verdict::Differs);
        assert_eq!(judgement.differences, vec![("idle", 30, 60)]);
        let tighten = expectation(&[("KEEPALIVE_OVERRIDE", "tighten"), ("KEEPIDLE", "60")]);
        assert_eq!(
            judge(&actual, Role::Outgoing, &tighten).verdict,
            Verdict::Ok
        );
        let tighten = expectation(&[("KEEPALIVE_OVERRIDE", "tighten"), ("KEEPIDLE", "20")]);
        assert_eq!(
            judge(&actual, Role::Outgoing, &tighten).verdict,
            Verdict::Differs
        );
        let tighten = expectation(&[
            ("KEEPALIVE_OVERRIDE", "tighten"),
            ("KEEPALIVE_USER_TIMEOUT", "5s"),
        ]);
        assert_eq!(
            judge(&actual, Role::Outgoing, &tighten).verdict,
            Verdict::Differs
        );
        let no = expectation(&[("KEEPIDLE", "60")]);
        let judgement = judge(&actual, Role::Outgoing, &no);
        assert_eq!(judgement.verdict, Verdict::Ok);
        assert_eq!(judgement.differences.len(), 1);
        let off = socket(1, "127.0.0.1:40000", Some("127.0.0.1:17001"), false);
        assert_eq!(judge(&off, Role::Outgoing, &no).verdict, Verdict::Missing);
        let auto = expectation(&[
            ("KEEPALIVE_OVERRIDE", "yes"),
            ("KEEPIDLE", "30"),
            ("KEEPALIVE_USER_TIMEOUT", "auto"),
        ]);
        let judgement = judge(&actual, Role::Outgoing, &auto);
        assert_eq!(
            judgement.expected.unwrap().user_timeout_ms,
            Some((30 + 75 * 9) * 1000)
        );
    }

    #[test]
    fn programs_match_a_rewritten_title() {
        let process = Process {
            pid: 1,
            exe: Some("/usr/bin/redis-check-rdb".to_owned()),
            argv0: Some("redis-server 127.0.0.1:6379".to_owned()),
            library: None,
            sockets: Vec::new(),
            maps: String::new(),
        };
        let listed = expectation(&[("KEEPALIVE_PROGRAMS", "redis-server")]);
        assert!(listed.config.acts_in_program(program_names(&process)));
        assert_eq!(program_name(&process), "redis-server");
        let unlisted = expectation(&[("KEEPALIVE_PROGRAMS", "redis-sentinel")]);
        assert!(!unlisted.config.acts_in_program(program_names(&process)));
    }

    #[test]
    fn json_strings_escape() {
        assert_eq!(json_string("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}
