//! The kernel's keepalive timings for sockets nobody configured (this network namespace's
//! net.ipv4.tcp_keepalive_* sysctls): what tells a value the program set from an untouched one
//! when a socket is configured late (`Override::settle`).
//!
//! Learnt once, from a socket nobody has touched yet — the first TCP socket the program makes,
//! before the library sets anything on it — or else from a throwaway socket at the first moment
//! they are needed (an inherited listener's first accept). The library reads no files.

use core::ffi::c_int;
use core::sync::atomic::{AtomicU32, Ordering};

use keepalive_config::{KernelDefaults, SocketOption};

use crate::sys;

/// 0 while unknown (the sysctls cannot be 0).
static IDLE: AtomicU32 = AtomicU32::new(0);
static INTERVAL: AtomicU32 = AtomicU32::new(0);
static COUNT: AtomicU32 = AtomicU32::new(0);

fn known() -> Option<KernelDefaults> {
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

/// The timings, learnt from a throwaway socket if no untouched one was met yet; Linux's own
/// defaults if even that fails.
pub fn defaults() -> KernelDefaults {
    if let Some(defaults) = known() {
        return defaults;
    }
    if let Some(scratch) = sys::ScratchSocket::open() {
        learn_from_untouched(scratch.fd());
    }
    known().unwrap_or_default()
}
