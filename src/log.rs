//! Diagnostics on standard error: one line per event, formatted in a stack buffer and written
//! with a single write(2), so logging from a hook neither allocates nor locks.

use std::fmt::{self, Write};

use keepalive_config::{LogLevel, PREFIX};

use crate::sys;

const LINE_CAPACITY: usize = 512;

/// A line buffer that silently truncates what does not fit.
struct Line {
    bytes: [u8; LINE_CAPACITY],
    length: usize,
}

impl Write for Line {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let room = LINE_CAPACITY - 1 - self.length; // keep one byte for the newline
        let taken = text.len().min(room);
        self.bytes[self.length..self.length + taken].copy_from_slice(&text.as_bytes()[..taken]);
        self.length += taken;
        Ok(())
    }
}

/// Writes one line when `$configured` lets `$level` through; the message is only formatted
/// then, so a filtered-out line costs a hook one comparison.
macro_rules! log_line {
    ($configured:expr, $level:expr, $($message:tt)+) => {
        if $crate::log::enabled($configured, $level) {
            $crate::log::emit_with_pid(format_args!($($message)+));
        }
    };
}
pub(crate) use log_line;

pub fn enabled(configured: LogLevel, level: LogLevel) -> bool {
    configured >= level && level != LogLevel::Off
}

#[cold]
#[inline(never)]
pub fn emit_with_pid(message: fmt::Arguments<'_>) {
    emit(format_args!("{PREFIX}[{}]: {message}", sys::pid()));
}

/// Writes a line that already carries its own prefix (configuration errors keep the exact
/// form `keepalive-preload: VAR="value" …; not applied`).
pub fn raw(text: &str) {
    emit(format_args!("{text}"));
}

fn emit(message: fmt::Arguments<'_>) {
    let mut line = Line {
        bytes: [0; LINE_CAPACITY],
        length: 0,
    };
    let _ = line.write_fmt(message);
    line.bytes[line.length] = b'\n';
    sys::write_stderr(&line.bytes[..=line.length]);
}
