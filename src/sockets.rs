//! What the hooks saw happen to a socket that the kernel cannot tell later: how it was made
//! (accepted, or connected by the program: which port KEEPALIVE_PORTS looks at) and which of
//! our options the program set on it itself (what KEEPALIVE_OVERRIDE=no keeps when the socket,
//! or one accepted from it, is configured late).
//!
//! Keyed by the socket's cookie (SO_COOKIE: the kernel's identity of it, never reused), not by
//! descriptor number, so a record can be missing (evicted, or a socket the library never saw)
//! but never wrong; a missing one falls back to what the kernel's values say. Direct-mapped
//! atomics updated with compare-and-swap: no lock, no allocation, 8 KiB — mapped at a process's
//! start, and only when the configuration keeps records (as .bss it would be a mapping of its
//! own in every process, needed or not).

use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use crate::sys;

use keepalive_config::{Role, SocketOption};

const SLOTS: usize = 1024;
const FLAG_BITS: u32 = 8;
/// Bits 0..5: the options the program set. Bit 6: the role is known; bit 7: it is Accepted.
const ROLE_KNOWN: u64 = 1 << 6;
const ROLE_ACCEPTED: u64 = 1 << 7;

type Table = [AtomicU64; SLOTS];

/// Each slot: cookie << 8 | flags; 0 when empty. Null unless `prepare` mapped it.
static TABLE: AtomicPtr<Table> = AtomicPtr::new(core::ptr::null_mut());

/// The table, if the configuration keeps records.
fn table() -> Option<&'static Table> {
    // SAFETY: null, or a mapping of a zeroed Table (all slots empty) published below, never
    // unmapped.
    unsafe { TABLE.load(Ordering::Acquire).as_ref() }
}

/// Maps the table, at a process's start, when the configuration keeps records
/// (`Runtime::keeps_records`). Never later, a dlopen included: a mapping made while the
/// program runs could land where the program still holds a pointer into memory it unmapped,
/// and a hooked call given that pointer would then succeed where it fails with EFAULT without
/// the library (tests/do_no_harm_pointers.rs, tests/do_no_harm_dlopen_mappings.rs).
/// Without a table (the mapping failed) records are missing, which they may always be.
pub fn prepare() {
    if table().is_some() {
        return;
    }
    if let Some(fresh) = sys::map_memory(core::mem::size_of::<Table>()) {
        TABLE.store(fresh.cast(), Ordering::Release);
    }
}

/// What is known of one socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record(u64);

impl Record {
    pub fn role(self) -> Option<Role> {
        let role = if self.0 & ROLE_ACCEPTED != 0 {
            Role::Accepted
        } else {
            Role::Connecting
        };
        (self.0 & ROLE_KNOWN != 0).then_some(role)
    }

    pub fn program_set(self, option: SocketOption) -> bool {
        self.0 & option_bit(option) != 0
    }

    /// The options the program set, without the role: what a socket accepted from a listener
    /// inherits of the listener's record.
    pub fn options_only(self) -> Self {
        Self(self.0 & (ROLE_KNOWN - 1))
    }
}

fn option_bit(option: SocketOption) -> u64 {
    1 << (option as u32)
}

fn slot(table: &'static Table, cookie: u64) -> Option<&'static AtomicU64> {
    // Cookies are handed out in sequence: consecutive ones land in consecutive slots.
    table.get(usize::try_from(cookie % SLOTS as u64).ok()?)
}

/// The record of `cookie`, if its slot still holds it.
pub fn recall(cookie: u64) -> Option<Record> {
    let entry = slot(table()?, cookie)?.load(Ordering::Acquire);
    (cookie != 0 && entry >> FLAG_BITS == cookie).then_some(Record(entry & 0xff))
}

/// Adds `flags` to the record of `cookie` (a new record replaces whatever else held the slot).
/// One copy for all three callers: inlined, the compare-and-swap loop would be repeated at
/// every call site.
#[inline(never)]
fn add(cookie: u64, flags: u64) {
    let Some(slot) = table().and_then(|table| slot(table, cookie)) else {
        return;
    };
    let mut current = slot.load(Ordering::Acquire);
    loop {
        let kept = if current >> FLAG_BITS == cookie {
            current & 0xff
        } else {
            0
        };
        let new = cookie << FLAG_BITS | kept | flags;
        match slot.compare_exchange_weak(current, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return,
            Err(seen) => current = seen,
        }
    }
}

pub fn remember_role(cookie: u64, role: Role) {
    let accepted = if role == Role::Accepted {
        ROLE_ACCEPTED
    } else {
        0
    };
    add(cookie, ROLE_KNOWN | accepted);
}

pub fn remember_program_set(cookie: u64, option: SocketOption) {
    add(cookie, option_bit(option));
}

/// Copies what the program set on a listener to a socket accepted from it (the kernel copied
/// the values; this keeps the knowledge of whose they are).
pub fn inherit(cookie: u64, from: Record) {
    add(cookie, from.options_only().0);
}
