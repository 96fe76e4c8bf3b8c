//! What the library learnt about a socket's role when it saw it made — accepted, or connected
//! by the program — for the one later question that depends on it: which port
//! KEEPALIVE_PORTS looks at when the program sets an option on a connected socket.
//!
//! Keyed by the socket's cookie (SO_COOKIE: the kernel's identity of the socket, never
//! reused), not by descriptor number, so an entry can be missing (evicted, or a socket the
//! library never saw) but never wrong. A miss falls back to the rule for an unknown role.
//! Direct-mapped atomics: no lock, no allocation, 8 KiB.

use core::sync::atomic::{AtomicU64, Ordering};

use keepalive_config::Role;

const SLOTS: usize = 1024;

/// Each slot: cookie << 1 | (1 when accepted); 0 when empty.
static TABLE: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

fn slot(cookie: u64) -> Option<&'static AtomicU64> {
    // Cookies are handed out in sequence: consecutive ones land in consecutive slots.
    TABLE.get(usize::try_from(cookie % SLOTS as u64).ok()?)
}

pub fn remember(cookie: u64, role: Role) {
    let accepted = u64::from(role == Role::Accepted);
    if let Some(slot) = slot(cookie) {
        slot.store(cookie << 1 | accepted, Ordering::Relaxed);
    }
}

pub fn recall(cookie: u64) -> Option<Role> {
    let entry = slot(cookie)?.load(Ordering::Relaxed);
    if entry >> 1 != cookie || cookie == 0 {
        return None;
    }
    Some(if entry & 1 == 1 {
        Role::Accepted
    } else {
        Role::Connecting
    })
}
