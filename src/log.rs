//! Diagnostics on standard error, one line per event, formatted in a stack buffer and written
//! with one system call — and only when that cannot hurt the host program:
//!
//! - only to the stderr the process had when the library loaded (same file, checked before
//!   every line), never to a descriptor that has since taken number 2, never into a TCP or UDP
//!   socket;
//! - never blocking: a socket gets MSG_DONTWAIT, anything else a zero-timeout poll first and
//!   RWF_NOWAIT where the file supports it;
//! - never raising SIGPIPE (MSG_NOSIGNAL, or the signal blocked for the write and taken back);
//! - errno untouched (raw system calls).
//!
//! A line that cannot be written at once is dropped and counted; the next line written says
//! how many were.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use keepalive_config::show::{Out, Show, signed};
use keepalive_config::text::put;
use keepalive_config::{LogLevel, PREFIX};

use crate::sys::{self, FileIdentity};

const LINE_CAPACITY: usize = 512;
const STDERR: i32 = 2;

/// Device and inode of the stderr the process had at load (0, 0: none, or not checked yet).
static STDERR_DEVICE: AtomicU64 = AtomicU64::new(0);
static STDERR_INODE: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU32 = AtomicU32::new(0);

/// Records which file stderr is, at load (before the first line, and before a hook can log).
pub fn begin() {
    if STDERR_INODE.load(Ordering::Acquire) != 0 {
        return;
    }
    if let Some(identity) = sys::identify(STDERR) {
        STDERR_DEVICE.store(identity.device, Ordering::Release);
        STDERR_INODE.store(identity.inode, Ordering::Release);
    }
}

pub fn enabled(configured: LogLevel, level: LogLevel) -> bool {
    configured >= level && level != LogLevel::Off
}

/// One `keepalive-preload[pid]: …` line when `configured` lets `level` through; `message`
/// writes the text after the prefix, and only runs then. (Inlined at each event: the
/// message then needs no function of its own.)
#[inline(always)]
pub fn event(configured: LogLevel, level: LogLevel, message: impl FnOnce(&mut Line)) {
    if enabled(configured, level) {
        let mut line = Line::event();
        message(&mut line);
        line.send();
    }
}

/// Writes a line that carries its own prefix (configuration errors keep the exact form
/// `keepalive-preload: VAR="value" …; not applied`).
pub fn line(message: impl FnOnce(&mut Line)) {
    let mut line = Line::new();
    message(&mut line);
    line.send();
}

/// Whether the line went out whole, at once, to the original stderr.
fn write_whole(bytes: &[u8]) -> bool {
    let device = STDERR_DEVICE.load(Ordering::Acquire);
    let inode = STDERR_INODE.load(Ordering::Acquire);
    let Some(now) = sys::identify(STDERR) else {
        return false;
    };
    if inode == 0 || (now.device, now.inode) != (device, inode) || is_network_socket(now) {
        return false;
    }
    let written = if now.mode & libc::S_IFMT == libc::S_IFSOCK {
        sys::send_now(STDERR, bytes)
    } else if sys::writable_now(STDERR) {
        sys::write_without_signal(STDERR, bytes)
    } else {
        return false;
    };
    written == Ok(bytes.len())
}

/// A TCP or UDP socket on fd 2 is a peer's connection (inetd-style), never a place for our
/// lines. (The journal's stream is a UNIX socket.)
fn is_network_socket(file: FileIdentity) -> bool {
    file.mode & libc::S_IFMT == libc::S_IFSOCK
        && matches!(
            sys::get_int(STDERR, libc::SOL_SOCKET, libc::SO_DOMAIN),
            Ok(libc::AF_INET | libc::AF_INET6)
        )
}

/// A line buffer that silently truncates what does not fit.
pub struct Line {
    bytes: [u8; LINE_CAPACITY],
    length: usize,
}

impl Line {
    fn new() -> Self {
        Self {
            bytes: [0; LINE_CAPACITY],
            length: 0,
        }
    }

    /// A line that starts `keepalive-preload[pid]: `.
    #[inline(never)]
    fn event() -> Self {
        let mut line = Self::new();
        line.put(PREFIX)
            .put("[")
            .number(sys::pid().into())
            .put("]: ");
        line
    }

    /// Writes the line (with how many were dropped before it), or counts it as dropped.
    #[inline(never)]
    fn send(&mut self) {
        let dropped = DROPPED.load(Ordering::Relaxed);
        if dropped > 0 {
            self.put(" [")
                .number(dropped.into())
                .put(" earlier lines dropped]");
        }
        if write_whole(self.finish()) {
            DROPPED.fetch_sub(dropped, Ordering::Relaxed);
        } else {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn put(&mut self, text: &str) -> &mut Self {
        self.text(text);
        self
    }

    pub fn number(&mut self, value: i64) -> &mut Self {
        signed(self, value);
        self
    }

    pub fn show(&mut self, value: &impl Show) -> &mut Self {
        value.show(self);
        self
    }

    /// The line with its newline (one byte is always kept for it).
    fn finish(&mut self) -> &[u8] {
        let end = self.length.min(LINE_CAPACITY - 1);
        if let Some(newline) = self.bytes.get_mut(end) {
            *newline = b'\n';
        }
        self.bytes.get(..=end).unwrap_or(&[])
    }
}

impl Out for Line {
    #[inline(never)]
    fn bytes(&mut self, bytes: &[u8]) {
        // Truncated to what fits, always keeping a byte for the newline.
        let room = (LINE_CAPACITY - 1).saturating_sub(self.length);
        let shown = bytes.get(..room).unwrap_or(bytes);
        if let Some(end) = put(&mut self.bytes, self.length, shown) {
            self.length = end;
        }
    }
}
