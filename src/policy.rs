//! Decides which sockets get which options, and applies them.
//!
//! - No address filter: a TCP socket is configured right after socket(); accepted sockets
//!   inherit from their listener through the kernel.
//! - With KEEPALIVE_PORTS/KEEPALIVE_NETS: the decision waits until an address is known —
//!   connect() (remote side, before the SYN), listen() (local port) or accept() (peer).
//! - An accepted socket whose listener we did not configure (inherited across exec, socket
//!   activation) is configured at accept.
//! - The program's own setsockopt on a configured socket follows KEEPALIVE_OVERRIDE.

use std::ffi::{c_int, c_void};
use std::fmt;
use std::mem::size_of;
use std::net::SocketAddr;

use keepalive_config::{LogLevel, Override};
use libc::{sockaddr, socklen_t};

use crate::fdstate::{self, FdState, Verdict};
use crate::log;
use crate::runtime::{self, Runtime, Step};
use crate::sys;

/// The options the library manages, in the order it applies them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketOption {
    KeepAlive,
    Idle,
    Interval,
    Count,
    UserTimeout,
}

impl SocketOption {
    pub const COUNT: usize = 5;
    pub const ALL: [Self; Self::COUNT] = [
        Self::KeepAlive,
        Self::Idle,
        Self::Interval,
        Self::Count,
        Self::UserTimeout,
    ];

    pub fn level_and_name(self) -> (c_int, c_int) {
        match self {
            Self::KeepAlive => (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
            Self::Idle => (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
            Self::Interval => (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
            Self::Count => (libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
            Self::UserTimeout => (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
        }
    }

    fn from_level_and_name(level: c_int, name: c_int) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|option| option.level_and_name() == (level, name))
    }

    fn label(self) -> &'static str {
        match self {
            Self::KeepAlive => "keepalive",
            Self::Idle => "idle",
            Self::Interval => "intvl",
            Self::Count => "cnt",
            Self::UserTimeout => "user_timeout",
        }
    }

    /// Whether the kernel would accept `value` (a rejected value is never replaced, so the
    /// program's call fails exactly as it would without us).
    fn kernel_accepts(self, value: c_int) -> bool {
        match self {
            Self::KeepAlive => true,
            Self::Idle | Self::Interval => (1..=32767).contains(&value),
            Self::Count => (1..=127).contains(&value),
            Self::UserTimeout => value >= 0,
        }
    }

    /// The more aggressive of two accepted values.
    fn tighter(self, asked: c_int, configured: c_int) -> c_int {
        match self {
            Self::KeepAlive => c_int::from(asked != 0 || configured != 0),
            Self::UserTimeout if asked == 0 => configured, // 0 means "never time out"
            _ => asked.min(configured),
        }
    }
}

/// A TCP stream socket as the library defines it.
fn is_tcp_request(domain: c_int, kind: c_int, protocol: c_int) -> bool {
    matches!(domain, libc::AF_INET | libc::AF_INET6)
        && kind & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) == libc::SOCK_STREAM
        && matches!(protocol, 0 | libc::IPPROTO_TCP)
}

/// socket()'s fast path, once the runtime is published for it (no address filter, no debug
/// log): records the verdict and makes one raw setsockopt per planned option. Touches neither
/// errno nor anything that can panic. False when the general path must run instead.
#[inline(always)]
pub fn socket_fast(fd: c_int, domain: c_int, kind: c_int, protocol: c_int) -> bool {
    let Some(runtime) = runtime::loaded() else {
        return false;
    };
    if !is_tcp_request(domain, kind, protocol) {
        fdstate::set(fd, Verdict::Ignored);
        return true;
    }
    fdstate::set(fd, Verdict::Managed);
    for step in runtime.plan() {
        let _ = sys::raw_set_int(fd, step.level, step.name, step.value);
    }
    true
}

/// Whether connect() can change anything: only a socket still waiting for an address.
#[inline(always)]
pub fn connect_may_decide(fd: c_int) -> bool {
    fdstate::get(fd).verdict() == Verdict::Pending
}

/// accept()'s fast path: a socket accepted from a listener already judged inherits its
/// verdict (the kernel copied the options). False when the general path must run.
#[inline(always)]
pub fn accept_fast(listener: c_int, fd: c_int) -> bool {
    if runtime::loaded().is_none() {
        return false;
    }
    let verdict = fdstate::get(listener).verdict();
    if !matches!(verdict, Verdict::Managed | Verdict::Ignored) {
        return false;
    }
    fdstate::set(fd, verdict);
    true
}

pub fn after_socket(fd: c_int, domain: c_int, kind: c_int, protocol: c_int) {
    let Some(runtime) = runtime::active() else {
        return;
    };
    if !is_tcp_request(domain, kind, protocol) {
        fdstate::set(fd, Verdict::Ignored);
    } else if runtime.filters_by_address() {
        fdstate::set(fd, Verdict::Pending);
    } else {
        configure(runtime, fd, FdState::FRESH, Event::Socket);
    }
}

/// Runs before the real connect, so that the SYN already carries the socket's settings.
///
/// # Safety
/// `address` is what the program passes to connect(): null or readable for `length` bytes.
pub unsafe fn before_connect(fd: c_int, address: *const sockaddr, length: socklen_t) {
    let state = fdstate::get(fd);
    if state.verdict() != Verdict::Pending {
        return;
    }
    let Some(runtime) = runtime::active() else {
        return;
    };
    // SAFETY: guaranteed by the caller; the kernel is about to read the same bytes.
    let Some(peer) = (unsafe { sys::decode_address(address, length) }) else {
        return; // AF_UNSPEC or unreadable: undecided until a real address comes.
    };
    judge(
        runtime,
        fd,
        state,
        Some(peer.port()),
        Some(peer),
        Event::Connect(peer),
    );
}

/// Runs before the real listen: a bound socket's local port decides for every connection it
/// will accept, so accepted sockets inherit the options from the first handshake on.
pub fn before_listen(fd: c_int) {
    decide_listener(fd);
}

/// Runs after a successful listen, for a socket that was not bound before (its port is only
/// chosen by listen itself).
pub fn after_listen(fd: c_int) {
    decide_listener(fd);
}

fn decide_listener(fd: c_int) {
    let state = fdstate::get(fd);
    if state.verdict() != Verdict::Pending {
        return;
    }
    let Some(runtime) = runtime::active() else {
        return;
    };
    let Some(local) = sys::local_address(fd).filter(|local| local.port() != 0) else {
        return;
    };
    if !port_matches(runtime, local.port()) {
        skip(
            runtime,
            fd,
            Event::Listen(local),
            "port not in KEEPALIVE_PORTS",
        );
    } else if runtime.nets.is_some() {
        fdstate::set(fd, Verdict::JudgeEachPeer);
    } else {
        configure(runtime, fd, state, Event::Listen(local));
    }
}

/// Runs after a successful accept/accept4 that returned `fd` from `listener`.
///
/// # Safety
/// `address`/`length` are what the program passed to accept (null, or just filled by the
/// kernel), and `offered` is what `length` held before the call.
pub unsafe fn after_accept(
    listener: c_int,
    fd: c_int,
    address: *const sockaddr,
    offered: socklen_t,
    length: *const socklen_t,
) {
    let Some(runtime) = runtime::active() else {
        return;
    };
    let verdict = fdstate::get(listener).verdict();
    match verdict {
        Verdict::Ignored => return fdstate::set(fd, verdict),
        Verdict::Managed => {
            // The kernel copied the listener's options into the new socket.
            fdstate::set(fd, verdict);
            if runtime.log >= LogLevel::Debug {
                // SAFETY: guaranteed by the caller.
                let peer = unsafe { accepted_peer(address, offered, length) };
                let event = Event::Accept(peer);
                log::log_line!(
                    runtime.log,
                    LogLevel::Debug,
                    "fd {fd} configured at {event}: inherited from listener fd {listener}"
                );
            }
            return;
        }
        Verdict::JudgeEachPeer => {}
        Verdict::Unknown | Verdict::Pending if sys::is_tcp(fd) => {}
        Verdict::Unknown | Verdict::Pending => return fdstate::set(fd, Verdict::Ignored),
    }
    // SAFETY: guaranteed by the caller.
    let given = unsafe { accepted_peer(address, offered, length) };
    let peer = given.or_else(|| runtime.nets.as_ref().and_then(|_| sys::peer_address(fd)));
    // From a listener we judged, the port already matched; otherwise it is the local one.
    let port = match (&runtime.ports, verdict) {
        (Some(_), Verdict::Unknown | Verdict::Pending) => {
            Some(sys::local_address(fd).map_or(0, |local| local.port()))
        }
        _ => None,
    };
    judge(runtime, fd, FdState::FRESH, port, peer, Event::Accept(peer));
}

/// The peer address accept() wrote for the program, if it asked for one.
///
/// # Safety
/// As for `after_accept`.
unsafe fn accepted_peer(
    address: *const sockaddr,
    offered: socklen_t,
    length: *const socklen_t,
) -> Option<SocketAddr> {
    if length.is_null() {
        return None;
    }
    // SAFETY: the kernel has just written the length there; it reports the full address size
    // even when it truncated the address to the `offered` bytes of the program's buffer.
    let written = unsafe { *length }.min(offered);
    // SAFETY: `written` bytes of the program's buffer hold the (possibly truncated) address.
    unsafe { sys::decode_address(address, written) }
}

/// The size of the program's address buffer, read before accept overwrites it.
///
/// # Safety
/// `length` is what the program passes to accept: null or valid for reads.
pub unsafe fn offered_length(length: *const socklen_t) -> socklen_t {
    // SAFETY: guaranteed by the caller; accept reads the same value.
    unsafe { length.as_ref() }.copied().unwrap_or(0)
}

/// Decides a socket by its port (`None`: already checked) and its peer address.
fn judge(
    runtime: &Runtime,
    fd: c_int,
    state: FdState,
    port: Option<u16>,
    peer: Option<SocketAddr>,
    event: Event,
) {
    if !port.is_none_or(|port| port_matches(runtime, port)) {
        skip(runtime, fd, event, "port not in KEEPALIVE_PORTS");
    } else if !nets_match(runtime, peer) {
        skip(runtime, fd, event, "peer not in KEEPALIVE_NETS");
    } else {
        configure(runtime, fd, state, event);
    }
}

fn port_matches(runtime: &Runtime, port: u16) -> bool {
    runtime
        .ports
        .as_ref()
        .is_none_or(|ports| ports.contains(port))
}

fn nets_match(runtime: &Runtime, peer: Option<SocketAddr>) -> bool {
    match (&runtime.nets, peer) {
        (None, _) => true,
        (Some(nets), Some(peer)) => nets.contains(peer.ip()),
        (Some(_), None) => false,
    }
}

fn skip(runtime: &Runtime, fd: c_int, event: Event, why: &str) {
    fdstate::set(fd, Verdict::Ignored);
    log::log_line!(
        runtime.log,
        LogLevel::Debug,
        "fd {fd} skipped at {event}: {why}"
    );
}

/// The call at which a socket was judged, for the debug log.
#[derive(Clone, Copy)]
enum Event {
    Socket,
    Connect(SocketAddr),
    Listen(SocketAddr),
    Accept(Option<SocketAddr>),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Socket => f.write_str("socket()"),
            Self::Connect(peer) => write!(f, "connect() to {peer}"),
            Self::Listen(local) => write!(f, "listen() on {local}"),
            Self::Accept(Some(peer)) => write!(f, "accept() from {peer}"),
            Self::Accept(None) => f.write_str("accept()"),
        }
    }
}

/// Applies every configured option, one setsockopt each, and marks the socket managed.
/// Options the program already set on a pending socket follow KEEPALIVE_OVERRIDE.
/// (The common case, a new socket without address filters, takes `socket_fast` instead.)
fn configure(runtime: &Runtime, fd: c_int, state: FdState, event: Event) {
    fdstate::set(fd, Verdict::Managed);
    let setter = sys::OptionSetter::resolve();
    let mut applied = Applied::default();
    for &Step {
        option,
        level,
        name,
        value: configured,
    } in runtime.plan()
    {
        let value = if !state.program_set(option) {
            configured
        } else {
            match runtime.policy {
                Override::No => continue,
                Override::Yes => configured,
                Override::Tighten => match sys::get_int(fd, level, name) {
                    Some(current) => option.tighter(current, configured),
                    None => continue,
                },
            }
        };
        match setter.set(fd, level, name, value) {
            Ok(()) => applied.values[option as usize] = Some(value),
            Err(errno) => log::log_line!(
                runtime.log,
                LogLevel::Debug,
                "fd {fd}: setting {} to {value} failed with errno {errno}",
                option.label(),
            ),
        }
    }
    log::log_line!(
        runtime.log,
        LogLevel::Debug,
        "fd {fd} configured at {event}:{applied}"
    );
}

/// The values a configure() call set, for the debug log.
#[derive(Default)]
struct Applied {
    values: [Option<c_int>; SocketOption::COUNT],
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (option, value) in SocketOption::ALL.into_iter().zip(self.values) {
            if let Some(value) = value {
                write!(f, " {}={value}", option.label())?;
            }
        }
        Ok(())
    }
}

/// The value to pass instead of the program's own in setsockopt, if any.
///
/// # Safety
/// `value`/`length` are what the program passes to setsockopt: `value` is null or readable
/// for `length` bytes.
pub unsafe fn setsockopt_replacement(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    length: socklen_t,
) -> Option<c_int> {
    let option = SocketOption::from_level_and_name(level, name)?;
    let verdict = fdstate::get(fd).verdict();
    if matches!(verdict, Verdict::Pending | Verdict::JudgeEachPeer) {
        // Remembered for the moment the socket is judged (see `configure`).
        fdstate::mark_program_set(fd, option);
        return None;
    }
    if verdict != Verdict::Managed {
        return None;
    }
    let runtime = runtime::active()?;
    let configured = runtime.setting(option)?;
    if runtime.policy == Override::No || value.is_null() || (length as usize) < size_of::<c_int>() {
        return None;
    }
    // SAFETY: guaranteed by the caller; the kernel would read the same int.
    let asked = unsafe { value.cast::<c_int>().read_unaligned() };
    if !option.kernel_accepts(asked) {
        return None;
    }
    let chosen = match runtime.policy {
        Override::Tighten => option.tighter(asked, configured),
        Override::Yes | Override::No => configured,
    };
    // A number the table still marks as ours may have been reused out of our sight (closed
    // inside libc, close_range): substitute only on a TCP socket.
    if chosen == asked || !sys::is_tcp(fd) {
        return None;
    }
    log::log_line!(
        runtime.log,
        LogLevel::Debug,
        "fd {fd}: program set {}={asked}, applying {chosen} (KEEPALIVE_OVERRIDE={})",
        option.label(),
        runtime.policy.name(),
    );
    Some(chosen)
}
