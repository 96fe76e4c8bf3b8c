//! The system calls behind the diagnostics: which file fd 2 is, and one write that neither
//! blocks nor raises SIGPIPE.

use core::mem::{MaybeUninit, size_of};

use libc::{c_int, c_long};

use super::{Errno, checked, int, syscall6};

/// What fd 2 is: device, inode and file type, to tell whether it is still the stderr the
/// process started with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileIdentity {
    pub device: u64,
    pub inode: u64,
    pub mode: u32,
}

pub fn identify(fd: c_int) -> Option<FileIdentity> {
    let mut status = MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstatat with AT_EMPTY_PATH and an empty path fills `status` for `fd`.
    let result = unsafe {
        syscall6(
            fstatat_number(),
            [
                int(fd),
                c"".as_ptr() as usize,
                status.as_mut_ptr() as usize,
                int(libc::AT_EMPTY_PATH),
                0,
                0,
            ],
        )
    };
    checked(result).ok()?;
    // SAFETY: zeroed stat is valid and the kernel filled it.
    let status = unsafe { status.assume_init() };
    Some(FileIdentity {
        device: status.st_dev,
        inode: status.st_ino,
        mode: status.st_mode,
    })
}

#[cfg(target_arch = "x86_64")]
fn fstatat_number() -> c_long {
    libc::SYS_newfstatat
}

#[cfg(target_arch = "aarch64")]
fn fstatat_number() -> c_long {
    libc::SYS_newfstatat
}

/// send(fd, bytes, MSG_DONTWAIT | MSG_NOSIGNAL): never blocks, never raises SIGPIPE.
pub fn send_now(fd: c_int, bytes: &[u8]) -> Result<usize, Errno> {
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    // SAFETY: sendto reads bytes.len() bytes of the live slice.
    let result = unsafe {
        syscall6(
            libc::SYS_sendto,
            [
                int(fd),
                bytes.as_ptr() as usize,
                bytes.len(),
                int(flags),
                0,
                0,
            ],
        )
    };
    checked(result)
}

/// Whether `fd` can take a write now without blocking (poll with a zero timeout); false when
/// its reader is gone (POLLERR) or it is hung up.
pub fn writable_now(fd: c_int) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ppoll reads and writes the one pollfd and reads the timeout.
    let result = unsafe {
        syscall6(
            libc::SYS_ppoll,
            [
                (&raw mut poll) as usize,
                1,
                (&raw const zero) as usize,
                0,
                0,
                0,
            ],
        )
    };
    checked(result) == Ok(1)
        && poll.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) == 0
        && poll.revents & libc::POLLOUT != 0
}

/// One write of `bytes` that neither blocks (RWF_NOWAIT where the file supports it; the caller
/// polled first) nor raises SIGPIPE on this thread (blocked for the call; one it caused is
/// taken back, one that was pending before is left alone).
pub fn write_without_signal(fd: c_int, bytes: &[u8]) -> Result<usize, Errno> {
    let pipe_signal = sigset_of(libc::SIGPIPE);
    let mut old = 0u64;
    let set_size = size_of::<u64>();
    // SAFETY: rt_sigprocmask reads the new set and writes the old one (kernel sigset: 8 bytes).
    unsafe {
        syscall6(
            libc::SYS_rt_sigprocmask,
            [
                int(libc::SIG_BLOCK),
                (&raw const pipe_signal) as usize,
                (&raw mut old) as usize,
                set_size,
                0,
                0,
            ],
        )
    };
    let mut pending = 0u64;
    // SAFETY: rt_sigpending writes the pending set.
    unsafe {
        syscall6(
            libc::SYS_rt_sigpending,
            [(&raw mut pending) as usize, set_size, 0, 0, 0, 0],
        )
    };
    let vector = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    // SAFETY: pwritev2 reads the one iovec, which describes the live slice; offset -1 means
    // the file's current position, like write().
    let mut result = unsafe {
        syscall6(
            libc::SYS_pwritev2,
            [
                int(fd),
                (&raw const vector) as usize,
                1,
                usize::MAX,
                usize::MAX,
                int(libc::RWF_NOWAIT),
            ],
        )
    };
    if result == -(libc::EOPNOTSUPP as isize) {
        // SAFETY: write reads bytes.len() bytes of the live slice.
        result = unsafe {
            syscall6(
                libc::SYS_write,
                [int(fd), bytes.as_ptr() as usize, bytes.len(), 0, 0, 0],
            )
        };
    }
    if result == -(libc::EPIPE as isize) && pending & pipe_signal == 0 {
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: rt_sigtimedwait reads the set and the timeout; no siginfo is asked for.
        unsafe {
            syscall6(
                libc::SYS_rt_sigtimedwait,
                [
                    (&raw const pipe_signal) as usize,
                    0,
                    (&raw const zero) as usize,
                    set_size,
                    0,
                    0,
                ],
            )
        };
    }
    // SAFETY: as above, restoring the thread's mask.
    unsafe {
        syscall6(
            libc::SYS_rt_sigprocmask,
            [
                int(libc::SIG_SETMASK),
                (&raw const old) as usize,
                0,
                set_size,
                0,
                0,
            ],
        )
    };
    checked(result)
}

/// The kernel's 64-bit signal set holding one signal.
fn sigset_of(signal: c_int) -> u64 {
    1u64.checked_shl(u32::try_from(signal - 1).unwrap_or(0))
        .unwrap_or(0)
}
