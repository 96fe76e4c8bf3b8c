//! errno, saved and put back around the little libc work the library does (at load, and when
//! a hook resolves its real function). Everything else goes through raw system calls, which
//! never touch it.

use core::ffi::c_int;

fn slot() -> *mut c_int {
    // SAFETY: __errno_location has no preconditions and returns this thread's errno.
    unsafe { libc::__errno_location() }
}

pub fn set(value: c_int) {
    // SAFETY: the slot is this thread's errno, valid for the thread's life.
    unsafe { *slot() = value }
}

/// errno as it was; `restore` puts it back.
pub struct Saved(c_int);

impl Saved {
    pub fn now() -> Self {
        // SAFETY: as in `set`.
        Self(unsafe { *slot() })
    }

    pub fn restore(self) {
        set(self.0);
    }
}
