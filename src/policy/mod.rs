//! What the library does around each hooked call. Every decision rests on what the kernel
//! says about the socket now (its protocol, addresses and option values), never on what the
//! library remembers about a descriptor number: numbers change hands behind its back.
//!
//! - No address filter: a TCP socket is configured right after socket(); accepted sockets
//!   inherit from their listener through the kernel.
//! - With KEEPALIVE_PORTS/KEEPALIVE_NETS: a socket is judged once its addresses are known,
//!   after a connect() the kernel accepted, after listen(), after accept().
//! - A socket configured late keeps values the program set, per KEEPALIVE_OVERRIDE
//!   (`Override::settle`); the program's own setsockopt follows `Override::replace`.

use core::ffi::c_int;
use core::net::SocketAddr;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use keepalive_config::{Decision, Override, Role, SocketOption};

mod report;

use report::{Applied, At, log_outcome, log_replaced};

use crate::kernel;
use crate::runtime::{self, Runtime};
use crate::sockets::{self, Record};
use crate::sys;

/// A TCP stream socket as socket() asks for one.
#[inline(always)]
pub fn is_tcp_request(domain: c_int, kind: c_int, protocol: c_int) -> bool {
    matches!(domain, libc::AF_INET | libc::AF_INET6)
        && kind & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) == libc::SOCK_STREAM
        && matches!(protocol, 0 | libc::IPPROTO_TCP)
}

/// After socket() made a TCP socket: without address filters it gets every planned option,
/// one setsockopt each (nobody has set anything on it yet). The common case stays in the hook.
#[inline(always)]
pub fn after_tcp_socket(fd: c_int) {
    match runtime::quick() {
        Some(runtime) => {
            kernel::learn_from_untouched(fd);
            // tests/panic_free.rs builds with this cfg to prove such a path fails the link.
            #[cfg(keepalive_panic_probe)]
            let _ = sys::set_int(fd, 1, 1, [1, 2, 3][fd as usize % 7]);
            for step in runtime.steps() {
                let _ = sys::set_int_at(fd, step.level, step.name, &step.value);
            }
        }
        None => after_tcp_socket_otherwise(fd),
    }
}

/// socket()'s other cases: the library not loaded yet, address filters, the debug log.
#[cold]
#[inline(never)]
fn after_tcp_socket_otherwise(fd: c_int) {
    let Some(runtime) = runtime::get() else {
        return;
    };
    if runtime.filters_by_address() {
        // Judged once connect(), listen() or accept() tells its addresses; meanwhile it is
        // a socket nobody has touched, the reference for what the program sets.
        kernel::learn_from_untouched(fd);
        return;
    }
    let mut applied = Applied::default();
    for &(option, value) in runtime.plan.steps() {
        let _ = sys::set_int(fd, option.level(), option.name(), value);
        // Shown as planned, whether or not the kernel took it.
        applied.record(option, value);
    }
    log_outcome(runtime.log, fd, At::Socket, Decision::Targeted, &applied);
}

/// After a connect() the kernel took (0, EINPROGRESS, EINTR, EALREADY): with address filters,
/// the socket is judged by its peer.
#[inline(always)]
pub fn after_connect(fd: c_int) {
    if let Some(runtime) = filtering() {
        judge_by_address(runtime, fd, Role::Connecting);
    }
}

/// After a successful listen(): with address filters, a listener on a listed port is
/// configured, so that the sockets it accepts inherit its options.
#[inline(always)]
pub fn after_listen(fd: c_int) {
    if let Some(runtime) = filtering() {
        judge_by_address(runtime, fd, Role::Listening);
    }
}

/// The runtime when it filters by address: only then do connect() and listen() need work, and
/// the hooks keep only this test.
#[inline(always)]
fn filtering() -> Option<&'static Runtime> {
    runtime::get().filter(|runtime| runtime.filters_by_address())
}

/// connect()'s and listen()'s work under address filters, in one copy for both: a connecting
/// socket is judged by its peer, a listener by its own address.
#[inline(never)]
fn judge_by_address(runtime: &Runtime, fd: c_int, role: Role) {
    if !sys::is_tcp(fd) {
        return; // UDP, UNIX: one getsockopt
    }
    let addresses = if role == Role::Listening {
        Addresses {
            local: sys::local_address(fd),
            peer: None,
        }
    } else {
        Addresses {
            local: None,
            peer: sys::connecting_peer_address(fd),
        }
    };
    if addresses.local.is_none() && addresses.peer.is_none() {
        return;
    }
    settle(runtime, fd, sys::cookie(fd), role, &addresses);
}

/// The accept witness once it alone can tell that an accepted socket needs nothing: its TCP
/// option name << 32 | the value ours leaves on it; 0 while that is not known (the library not
/// loaded yet, the kernel's default timings not learnt yet) or never (KEEPALIVE_PORTS, which
/// notes every accepted socket's role; SO_KEEPALIVE alone, which says nothing of the protocol).
/// Set from the runtime (fixed at load) and the kernel's defaults (fixed once learnt), never
/// from anything about a socket.
static ACCEPT_WITNESS: AtomicU64 = AtomicU64::new(0);

/// After a successful accept()/accept4() of `fd` from `listener`. One read tells whether the
/// new socket already carries our values (its listener was configured, and the kernel copied
/// them); otherwise it is judged and configured like any late socket, keeping what the program
/// set on the listener as the program's. The common case stays in the hook.
#[inline(always)]
pub fn after_accept(listener: c_int, fd: c_int) {
    let witness = ACCEPT_WITNESS.load(Ordering::Relaxed);
    let name = (witness >> 32) as c_int;
    if name == 0 {
        return after_accept_otherwise(listener, fd, None);
    }
    match sys::get_int(fd, libc::IPPROTO_TCP, name) {
        Err(_) => {} // a TCP-level option that cannot be read: not TCP (UNIX, ...)
        Ok(current) if current == witness as c_int => {} // ours: the listener was configured
        Ok(current) => after_accept_otherwise(listener, fd, Some(current)),
    }
}

/// after_accept's other cases; `read`: the witness's value, when the hook read it already.
#[inline(never)]
fn after_accept_otherwise(listener: c_int, fd: c_int, read: Option<c_int>) {
    let Some(runtime) = runtime::get() else {
        return;
    };
    let witness = runtime.witness;
    if witness == SocketOption::KeepAlive {
        // Only SO_KEEPALIVE is planned: it says nothing about the protocol, so ask first.
        if !sys::is_tcp(fd) || sys::get_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE) == Ok(1) {
            return;
        }
    } else {
        let read = match read {
            Some(current) => Ok(current),
            None => sys::get_int(fd, witness.level(), witness.name()),
        };
        let Ok(current) = read else {
            return; // a TCP-level option that cannot be read: not TCP (UNIX, ...)
        };
        let known = kernel::known();
        // Our value where it can be told from an untouched socket's: TCP_USER_TIMEOUT's always
        // (0 unless set, and ours never is), a timing's when it differs from the kernel's.
        let ours = runtime.plan.value(witness).filter(|&planned| {
            witness == SocketOption::UserTimeout
                || planned != witness.kernel_default(known.unwrap_or_default())
        });
        if let Some(ours) = ours
            // A timing's only once the kernel's own is known for good.
            && (witness == SocketOption::UserTimeout || known.is_some())
            && runtime.ports.is_none()
        {
            // From now on the hook decides this case alone.
            let word = (u64::from(witness.name().unsigned_abs()) << 32) | u64::from(ours as u32);
            ACCEPT_WITNESS.store(word, Ordering::Relaxed);
        }
        if ours == Some(current) {
            // Ours, and not merely the kernel's default that happens to equal it: the
            // listener was configured.
            if runtime.ports.is_some() {
                remember_role(runtime, sys::cookie(fd), Role::Accepted);
            }
            return;
        }
        if !sys::is_tcp(fd) {
            return; // MPTCP answers TCP-level options too
        }
    }
    let cookie = sys::cookie(fd);
    if let (Some(cookie), Some(of_listener)) = (cookie, recall(sys::cookie(listener))) {
        sockets::inherit(cookie, of_listener);
    }
    let addresses = Addresses {
        local: sys::local_address(fd),
        peer: sys::peer_address(fd),
    };
    settle(runtime, fd, cookie, Role::Accepted, &addresses);
}

/// Under KEEPALIVE_PORTS, which port counts on a connected socket depends on how it was
/// made: what the hooks saw is kept by the socket's identity for `targeted_now`.
fn remember_role(runtime: &Runtime, cookie: Option<u64>, role: Role) {
    if runtime.ports.is_some()
        && let Some(cookie) = cookie
    {
        sockets::remember_role(cookie, role);
    }
}

/// The socket's record, if the hooks kept one (called, not inlined: three callers).
#[inline(never)]
fn recall(cookie: Option<u64>) -> Option<Record> {
    sockets::recall(cookie?)
}

/// A socket's addresses, as far as the kernel told them.
struct Addresses {
    local: Option<SocketAddr>,
    peer: Option<SocketAddr>,
}

/// Judges a socket whose addresses are now known (after connect, listen or accept) and
/// configures it if the filters take it. It may already carry values: an option the program
/// set keeps or loses its value per KEEPALIVE_OVERRIDE, one it did not gets ours. What the
/// program set is known from its own setsockopt calls (the socket's record); without a record,
/// a value other than the kernel's default counts as the program's.
fn settle(runtime: &Runtime, fd: c_int, cookie: Option<u64>, role: Role, addresses: &Addresses) {
    // A listener's role needs no note: the kernel tells it (SO_ACCEPTCONN).
    if role != Role::Listening {
        remember_role(runtime, cookie, role);
    }
    let decision = if runtime.filters_by_address() {
        runtime
            .targeting()
            .decide(role, addresses.local, addresses.peer)
    } else {
        Decision::Targeted
    };
    let record = recall(cookie);
    let mut applied = Applied::default();
    if decision.targeted() {
        let kernel = kernel::defaults();
        for &(option, configured) in runtime.plan.steps() {
            let Ok(current) = sys::get_int(fd, option.level(), option.name()) else {
                continue;
            };
            let chosen = match record {
                Some(record) if record.program_set(option) => {
                    runtime.policy.replace(option, current, configured)
                }
                Some(_) => (current != configured).then_some(configured),
                None => runtime.policy.settle(option, current, kernel, configured),
            };
            let Some(value) = chosen else {
                continue;
            };
            if sys::set_int(fd, option.level(), option.name(), value).is_ok() {
                applied.record(option, value);
            }
        }
    }
    log_outcome(
        runtime.log,
        fd,
        At::Judged(role, addresses),
        decision,
        &applied,
    );
}

/// Which of the program's setsockopt calls can need work: bit `name` of the word of `level`
/// (SOL_SOCKET and IPPROTO_TCP; every other level is never ours). All set until the library
/// is loaded (then any of our options can: the load may be under way); then the options
/// `Runtime::watches`.
static WATCHED: [AtomicU32; 8] = {
    let mut levels = [const { AtomicU32::new(0) }; 8];
    levels[libc::SOL_SOCKET as usize] = AtomicU32::new(u32::MAX);
    levels[libc::IPPROTO_TCP as usize] = AtomicU32::new(u32::MAX);
    levels
};

/// Whether the program's setsockopt of (`level`, `name`) can need work, judged before the call
/// from the arguments alone: most options (TCP_NODELAY, ...) need none, and under the default
/// policy ours need none either, so the hook is then a jump to the real function.
#[inline(always)]
pub fn may_watch_setsockopt(level: c_int, name: c_int) -> bool {
    // A negative level or name becomes a large one: not ours.
    let Some(watched) = WATCHED.get(level as u32 as usize) else {
        return false;
    };
    let name = name as u32;
    name < 32 && (watched.load(Ordering::Relaxed) >> name) & 1 != 0
}

/// Narrows `WATCHED`, once the load is over (not while it is under way), to what the runtime
/// watches; to nothing when the library does nothing in this process (KEEPALIVE=off, a program
/// not in KEEPALIVE_PROGRAMS, secure execution).
fn publish_watched() {
    let words = (
        WATCHED.get(libc::SOL_SOCKET as usize),
        WATCHED.get(libc::IPPROTO_TCP as usize),
    );
    let (Some(socket), Some(tcp)) = words else {
        return;
    };
    if tcp.load(Ordering::Relaxed) != u32::MAX {
        return; // published already
    }
    let Some(runtime) = runtime::settled() else {
        return;
    };
    let (mut socket_watched, mut tcp_watched) = (0u32, 0u32);
    for option in SocketOption::ALL {
        let word = if option.level() == libc::IPPROTO_TCP {
            &mut tcp_watched
        } else {
            &mut socket_watched
        };
        if runtime.is_some_and(|runtime| runtime.watches(option)) {
            *word |= 1u32.checked_shl(option.name().unsigned_abs()).unwrap_or(0);
        }
    }
    socket.store(socket_watched, Ordering::Relaxed);
    // Last: it tells that the words are published.
    tcp.store(tcp_watched, Ordering::Relaxed);
}

/// After a setsockopt of another option that `may_watch_setsockopt` let through because the
/// library was not loaded then: once it is, such calls go straight to the real function.
pub fn loaded_since() {
    publish_watched();
}

/// After the program's own setsockopt of one of our options succeeded: it is remembered as the
/// program's (for a socket configured late, or accepted from this one), and under
/// KEEPALIVE_OVERRIDE=yes|tighten our value replaces the one it set on a targeted TCP socket.
#[inline(never)]
pub fn after_setsockopt(fd: c_int, option: SocketOption) {
    // Loads the library first if nobody has: then the words can be narrowed.
    let runtime = runtime::get();
    publish_watched();
    let Some(runtime) = runtime else {
        return;
    };
    if !runtime.watches(option) {
        return;
    }
    // Whose value it is matters where a socket is configured late: under a filter (any of the
    // program's sockets), else only a listener's SO_KEEPALIVE=0 that the accept witness cannot
    // see (`Runtime::notes`).
    let cookie = if runtime.notes(option) {
        sys::cookie(fd)
    } else {
        None
    };
    if let Some(cookie) = cookie {
        sockets::remember_program_set(cookie, option);
    }
    if runtime.policy == Override::No {
        return;
    }
    let Some(configured) = runtime.plan.value(option) else {
        return;
    };
    // The value the program set, as the kernel holds it now.
    let Ok(asked) = sys::get_int(fd, option.level(), option.name()) else {
        return;
    };
    let Some(chosen) = runtime.policy.replace(option, asked, configured) else {
        return;
    };
    // Not a TCP-level option's success: MPTCP sockets take them too.
    if !sys::is_tcp(fd) {
        return;
    }
    if runtime.filters_by_address() && !targeted_now(runtime, fd, cookie) {
        return;
    }
    let _ = sys::set_int(fd, option.level(), option.name(), chosen);
    log_replaced(runtime, fd, option, asked, chosen);
}

/// Whether the filters take a socket met at the program's setsockopt. One neither connected
/// (or connecting) nor listening is judged later, at connect/listen, where the program's value
/// is settled.
fn targeted_now(runtime: &Runtime, fd: c_int, cookie: Option<u64>) -> bool {
    let local = sys::local_address(fd);
    let (role, peer) = if sys::is_listening(fd) {
        (Role::Listening, None)
    } else {
        let Some(peer) = sys::connecting_peer_address(fd) else {
            return false;
        };
        let role = recall(cookie)
            .and_then(Record::role)
            .unwrap_or(Role::Connected);
        (role, Some(peer))
    };
    runtime.targeting().decide(role, local, peer).targeted()
}
