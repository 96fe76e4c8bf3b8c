//! The kernel's keepalive timings for sockets nobody configured (this network namespace's
//! net.ipv4.tcp_keepalive_* sysctls): what tells a value the program set from an untouched one
//! when a socket is configured late (`Override::settle`).
//!
//! Learnt once, from a socket nobody has touched yet: the first TCP socket the program makes,
//! before the library sets anything on it. Until then Linux's own defaults stand in. (Only
//! `auto` with a timing left to the kernel reads them from a throwaway socket at load.) The
//! library reads no files.

use core::ffi::c_int;
use core::sync::atomic::{AtomicU32, Ordering};

use keepalive_config::{KernelDefaults, SocketOption};

use crate::sys;

/// 0 while unknown (the sysctls cannot be 0).
static IDLE: AtomicU32 = AtomicU32::new(0);
static INTERVAL: AtomicU32 = AtomicU32::new(0);
static COUNT: AtomicU32 = AtomicU32::new(0);

/// The timings once learnt.
pub fn known() -> Option<KernelDefaults> {
    let defaults = KernelDefaults {
        idle: IDLE.load(Ordering::Relaxed),
        interval: INTERVAL.load(Ordering::Relaxed),
        count: COUNT.load(Ordering::Relaxed),
    };
    (defaults.idle != 0 && defaults.interval != 0 && defaults.count != 0).then_some(defaults)
}

/// Reads the timings of `fd`, a TCP socket nobody has set options on, unless already known
/// (one load once they are: socket()'s common case calls it for every TCP socket).
#[inline(always)]
pub fn learn_from_untouched(fd: c_int) {
    if COUNT.load(Ordering::Relaxed) != 0 {
        return;
    }
    learn_now(fd);
}

#[cold]
#[inline(never)]
fn learn_now(fd: c_int) {
    let read = |option: SocketOption| {
        sys::get_int(fd, option.level(), option.name())
            .ok()
            .and_then(|value| u32::try_from(value).ok())
    };
    if let (Some(idle), Some(interval), Some(count)) = (
        read(SocketOption::Idle),
        read(SocketOption::Interval),
        read(SocketOption::Count),
    ) {
        IDLE.store(idle, Ordering::Relaxed);
        INTERVAL.store(interval, Ordering::Relaxed);
        // Last: `learn_from_untouched` tests it alone.
        COUNT.store(count, Ordering::Release);
    }
}

/// The timings once learnt, else Linux's own defaults. Never opens a socket: a hook must not
/// take a descriptor number, and a sandbox may forbid socket() (see `at_load`).
pub fn defaults() -> KernelDefaults {
    known().unwrap_or_default()
}

/// At load, for `KEEPALIVE_USER_TIMEOUT=auto` with a timing left to the kernel (the value is
/// needed before any socket exists): learnt from a throwaway socket, before `main`.
pub fn at_load() -> KernelDefaults {
    if known().is_none()
        && let Some(scratch) = sys::ScratchSocket::open()
    {
        learn_now(scratch.fd());
    }
    defaults()
}
