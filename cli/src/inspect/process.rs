//! Collecting: a process's TCP sockets, read through duplicates of its descriptors
//! (pidfd_open + pidfd_getfd), and what /proc says about the process.

use std::io::{self};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};

use crate::library::mapped_library;
use crate::{Failure, sys};

use super::proc_net::NetTable;
use super::state::TcpState;

/// One TCP socket as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Socket {
    pub fd: i32,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    pub ipv6: bool,
    pub state: TcpState,
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

/// Everything `inspect` reads about one process.
pub fn read_process(pid: i32) -> Result<Process, Failure> {
    let proc_dir = format!("/proc/{pid}");
    let status = std::fs::read_to_string(format!("{proc_dir}/status"))
        .map_err(|error| proc_error(pid, "read its status", &error))?;
    if let Some(tgid) = thread_of(&status, pid) {
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
    let (exe, argv0) = names(pid);

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
            if socket.state.connecting() {
                socket.remote = net.remote(pid, socket.fd);
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

/// The process whose thread `pid` is, when /proc/PID/status says it is not a process itself.
pub fn thread_of(status: &str, pid: i32) -> Option<&str> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Tgid:"))
        .map(str::trim)
        .filter(|tgid| *tgid != pid.to_string())
}

/// The executable and argv[0] of `pid`, where readable.
pub fn names(pid: i32) -> (Option<String>, Option<String>) {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|path| path.display().to_string());
    let argv0 = std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|bytes| {
            let first = bytes.split(|&byte| byte == 0).next()?.to_vec();
            (!first.is_empty()).then(|| String::from_utf8_lossy(&first).into_owned())
        });
    (exe, argv0)
}

pub(super) fn proc_error(pid: i32, what: &str, error: &io::Error) -> Failure {
    match error.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ESRCH) => Failure::new("no such process"),
        Some(libc::EACCES) | Some(libc::EPERM) => Failure::new(format!(
            "not permitted to {what} (/proc/{pid}): inspect needs the rights of ptrace over \
             the process (run as its user with kernel.yama.ptrace_scope allowing it, or as root)"
        )),
        _ => Failure::new(format!("cannot {what} (/proc/{pid}): {error}")),
    }
}

pub fn getfd_error(error: &io::Error) -> Failure {
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
pub fn read_socket(fd: i32, dup: BorrowedFd<'_>) -> io::Result<Option<Socket>> {
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
        state: TcpState::from_kernel(sys::tcp_state(dup)?),
        keepalive: int(libc::SOL_SOCKET, libc::SO_KEEPALIVE)? != 0,
        idle: unsigned(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE)?,
        interval: unsigned(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL)?,
        count: unsigned(libc::IPPROTO_TCP, libc::TCP_KEEPCNT)?,
        user_timeout_ms: unsigned(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT)?,
    }))
}
