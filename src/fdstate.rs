//! What the library decided about each file descriptor, kept in a fixed table of atomics:
//! no allocation and no lock in a hook, and a forked child inherits it along with its fds.
//!
//! Every socket()/accept() through the hooks writes its slot afresh, close() clears it and
//! dup2()/dup3() copy it, so a reused fd number does not carry an old decision into another
//! file. (Descriptors closed where no hook sees it — inside libc, close_range() — can leave a
//! stale slot; the override path therefore checks the socket is TCP before it substitutes.)
//! Descriptors at or above [`SLOTS`] are always `Unknown`: they are still configured at
//! socket()/accept(), but the program's own setsockopt calls on them pass through unchanged.

use std::ffi::c_int;
use std::sync::atomic::{AtomicU16, Ordering};

use crate::policy::SocketOption;

pub const SLOTS: usize = 65536;

static TABLE: [AtomicU16; SLOTS] = [const { AtomicU16::new(0) }; SLOTS];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not created through our hooks (inherited, dup'ed, received) or beyond the table.
    Unknown,
    /// Not ours to touch: not TCP, or excluded by a filter.
    Ignored,
    /// TCP, waiting for connect() or listen() to tell whether the filters match.
    Pending,
    /// A listener whose port matched; each accepted socket is judged by its peer address.
    JudgeEachPeer,
    /// Configured by us (or inherited from a listener we configured).
    Managed,
}

const VERDICT_BITS: u16 = 0b111;
const VERDICTS: [Verdict; 5] = [
    Verdict::Unknown,
    Verdict::Ignored,
    Verdict::Pending,
    Verdict::JudgeEachPeer,
    Verdict::Managed,
];

#[derive(Clone, Copy, Debug)]
pub struct FdState(u16);

impl FdState {
    /// A socket just created or accepted: nothing decided, nothing set by the program (its
    /// slot may still hold what an earlier file of the same number left there).
    pub const FRESH: Self = Self(0);

    pub fn verdict(self) -> Verdict {
        VERDICTS
            .get(usize::from(self.0 & VERDICT_BITS))
            .copied()
            .unwrap_or(Verdict::Unknown)
    }

    /// Whether the program set this option itself before we configured the socket.
    pub fn program_set(self, option: SocketOption) -> bool {
        self.0 & program_bit(option) != 0
    }
}

fn program_bit(option: SocketOption) -> u16 {
    1 << (3 + option as u16)
}

fn slot(fd: c_int) -> Option<&'static AtomicU16> {
    TABLE.get(usize::try_from(fd).ok()?)
}

pub fn get(fd: c_int) -> FdState {
    FdState(slot(fd).map_or(0, |slot| slot.load(Ordering::Acquire)))
}

/// Records a fresh decision; forgets which options the program had set.
pub fn set(fd: c_int, verdict: Verdict) {
    if let Some(slot) = slot(fd) {
        slot.store(verdict as u16, Ordering::Release);
    }
}

pub fn mark_program_set(fd: c_int, option: SocketOption) {
    if let Some(slot) = slot(fd) {
        slot.fetch_or(program_bit(option), Ordering::AcqRel);
    }
}

/// The fd is being closed: whatever reuses its number starts unknown.
pub fn forget(fd: c_int) {
    set(fd, Verdict::Unknown);
}

/// `to` now refers to the same socket as `from` (dup2/dup3).
pub fn copy(from: c_int, to: c_int) {
    if let Some(slot) = slot(to) {
        slot.store(get(from).0, Ordering::Release);
    }
}
