//! The small OS layer: every system call the library makes of its own goes through here, as a
//! raw `syscall` instruction. Nothing here touches errno (the kernel's result comes back in a
//! register), takes a lock, allocates, or goes through another library's hooks. The few libc
//! functions the library needs at load (dlsym, getenv, ...) are called from `runtime`.

use core::mem::{MaybeUninit, size_of};
use core::net::SocketAddr;

use keepalive_config::sockaddr;

use libc::{c_int, c_long, socklen_t};

/// `getsockopt(SOL_SOCKET, SO_PEERNAME)`: the peer address even while a connect() is still in
/// progress (getpeername() says ENOTCONN in SYN_SENT).
const SO_PEERNAME: c_int = 28;

/// A failed call's errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub c_int);

/// A system call with up to six arguments; returns the kernel's result (negative: -errno).
///
/// # Safety
/// The arguments must be what system call `number` expects; pointers valid for it.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn syscall6(number: c_long, args: [usize; 6]) -> isize {
    let result: isize;
    // SAFETY: the caller passes a valid system call; `syscall` clobbers only rcx and r11.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") number as isize => result,
            in("rdi") args[0],
            in("rsi") args[1],
            in("rdx") args[2],
            in("r10") args[3],
            in("r8") args[4],
            in("r9") args[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    result
}

/// A system call with five arguments (one register less to set than `syscall6`).
///
/// # Safety
/// As for `syscall6`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn syscall5(number: c_long, args: [usize; 5]) -> isize {
    let result: isize;
    // SAFETY: the caller passes a valid system call; `syscall` clobbers only rcx and r11.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") number as isize => result,
            in("rdi") args[0],
            in("rsi") args[1],
            in("rdx") args[2],
            in("r10") args[3],
            in("r8") args[4],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    result
}

/// On aarch64 the sixth register costs nothing worth a second function.
///
/// # Safety
/// As for `syscall6`.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn syscall5(number: c_long, [a, b, c, d, e]: [usize; 5]) -> isize {
    // SAFETY: as the caller's.
    unsafe { syscall6(number, [a, b, c, d, e, 0]) }
}

/// As above, for aarch64 (`svc 0`, number in x8).
///
/// # Safety
/// As above.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn syscall6(number: c_long, args: [usize; 6]) -> isize {
    let result: isize;
    // SAFETY: the caller passes a valid system call; `svc 0` clobbers only x0.
    unsafe {
        core::arch::asm!(
            "svc 0",
            in("x8") number,
            inlateout("x0") args[0] => result,
            in("x1") args[1],
            in("x2") args[2],
            in("x3") args[3],
            in("x4") args[4],
            in("x5") args[5],
            options(nostack),
        );
    }
    result
}

fn checked(result: isize) -> Result<usize, Errno> {
    usize::try_from(result).map_err(|_| Errno(c_int::try_from(-result).unwrap_or(libc::EINVAL)))
}

/// An int argument as the kernel takes it (sign-extended like the C ABI does).
fn int(value: c_int) -> usize {
    value as isize as usize
}

pub fn set_int(fd: c_int, level: c_int, name: c_int, value: c_int) -> Result<(), Errno> {
    set_int_at(fd, level, name, &value)
}

/// setsockopt of the int at `value` itself (the runtime's plan, without a copy to the stack).
#[inline(always)]
pub fn set_int_at(fd: c_int, level: c_int, name: c_int, value: &c_int) -> Result<(), Errno> {
    let length = size_of::<c_int>();
    let value: *const c_int = value;
    // SAFETY: setsockopt reads `length` bytes at `value`, a live int.
    let result = unsafe {
        syscall5(
            libc::SYS_setsockopt,
            [int(fd), int(level), int(name), value as usize, length],
        )
    };
    checked(result).map(|_| ())
}

pub fn get_int(fd: c_int, level: c_int, name: c_int) -> Result<c_int, Errno> {
    let mut value: c_int = 0;
    let mut length = size_of::<c_int>() as socklen_t;
    // SAFETY: getsockopt writes at most `length` bytes into `value` and the length back.
    let result = unsafe {
        syscall6(
            libc::SYS_getsockopt,
            [
                int(fd),
                int(level),
                int(name),
                (&raw mut value) as usize,
                (&raw mut length) as usize,
                0,
            ],
        )
    };
    checked(result).map(|_| value)
}

/// The socket's cookie: the kernel's identity of it, unique for the life of the system.
pub fn cookie(fd: c_int) -> Option<u64> {
    let mut value: u64 = 0;
    let mut length = size_of::<u64>() as socklen_t;
    // SAFETY: getsockopt writes at most `length` bytes into `value` and the length back.
    let result = unsafe {
        syscall6(
            libc::SYS_getsockopt,
            [
                int(fd),
                int(libc::SOL_SOCKET),
                int(libc::SO_COOKIE),
                (&raw mut value) as usize,
                (&raw mut length) as usize,
                0,
            ],
        )
    };
    checked(result).ok().map(|_| value)
}

/// True for a TCP socket (IPv4 or IPv6: SO_PROTOCOL is IPPROTO_TCP only on those).
pub fn is_tcp(fd: c_int) -> bool {
    get_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL) == Ok(libc::IPPROTO_TCP)
}

pub fn is_listening(fd: c_int) -> bool {
    get_int(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == Ok(1)
}

/// The socket's local address (getsockname).
pub fn local_address(fd: c_int) -> Option<SocketAddr> {
    address_query(|storage, length| {
        // SAFETY: getsockname writes at most *length bytes into storage and the length back.
        unsafe {
            syscall6(
                libc::SYS_getsockname,
                [int(fd), storage as usize, length as usize, 0, 0, 0],
            )
        }
    })
}

/// The socket's peer (getpeername), once connected.
pub fn peer_address(fd: c_int) -> Option<SocketAddr> {
    address_query(|storage, length| {
        // SAFETY: getpeername writes at most *length bytes into storage and the length back.
        unsafe {
            syscall6(
                libc::SYS_getpeername,
                [int(fd), storage as usize, length as usize, 0, 0, 0],
            )
        }
    })
}

/// The peer of a socket whose connect() may still be in progress (getpeername says ENOTCONN
/// in SYN_SENT; SO_PEERNAME does not). SO_PEERNAME refuses a buffer longer than the address,
/// so an IPv4 length is asked first and an IPv6 one only for an IPv6 socket.
pub fn connecting_peer_address(fd: c_int) -> Option<SocketAddr> {
    let ask = |length: usize| {
        address_query(|storage, written| {
            // SAFETY: *written is set to `length` (no more than the storage) before the call.
            unsafe { *written = length as socklen_t };
            // SAFETY: getsockopt writes at most *written bytes into storage and the length back.
            unsafe {
                syscall6(
                    libc::SYS_getsockopt,
                    [
                        int(fd),
                        int(libc::SOL_SOCKET),
                        int(SO_PEERNAME),
                        storage as usize,
                        written as usize,
                        0,
                    ],
                )
            }
        })
    };
    match ask(sockaddr::V4_LENGTH) {
        Some(SocketAddr::V4(v4)) => Some(SocketAddr::V4(v4)),
        _ => ask(sockaddr::V6_LENGTH),
    }
}

fn address_query(query: impl FnOnce(*mut u8, *mut socklen_t) -> isize) -> Option<SocketAddr> {
    let mut bytes = [0u8; sockaddr::STORAGE_LENGTH];
    let mut length = bytes.len() as socklen_t;
    checked(query(bytes.as_mut_ptr(), &raw mut length)).ok()?;
    sockaddr::decode(bytes.get(..usize::try_from(length).ok()?)?)
}

/// A throwaway IPv4 TCP socket, closed again at once (for reading the kernel's defaults).
pub struct ScratchSocket(c_int);

impl ScratchSocket {
    pub fn open() -> Option<Self> {
        let kind = libc::SOCK_STREAM | libc::SOCK_CLOEXEC;
        // SAFETY: socket takes three ints.
        let result = unsafe {
            syscall6(
                libc::SYS_socket,
                [int(libc::AF_INET), int(kind), 0, 0, 0, 0],
            )
        };
        let fd = checked(result).ok()?;
        Some(Self(c_int::try_from(fd).ok()?))
    }

    pub fn fd(&self) -> c_int {
        self.0
    }
}

impl Drop for ScratchSocket {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours, opened above and used by nothing else.
        unsafe { syscall6(libc::SYS_close, [int(self.0), 0, 0, 0, 0, 0]) };
    }
}

pub fn pid() -> c_int {
    // SAFETY: getpid takes no argument.
    let result = unsafe { syscall6(libc::SYS_getpid, [0; 6]) };
    c_int::try_from(result).unwrap_or(0)
}

/// Ends the process at once with `status` (before main: no atexit handler to run).
pub fn exit_now(status: c_int) -> ! {
    loop {
        // SAFETY: exit_group takes an int and does not return.
        unsafe { syscall6(libc::SYS_exit_group, [int(status), 0, 0, 0, 0, 0]) };
    }
}

/// /proc/self/exe into `buffer` (readlink: no file is opened).
pub fn executable_path(buffer: &mut [u8]) -> Option<&str> {
    let path = c"/proc/self/exe";
    // SAFETY: readlinkat writes at most buffer.len() bytes into buffer.
    let result = unsafe {
        syscall6(
            libc::SYS_readlinkat,
            [
                int(libc::AT_FDCWD),
                path.as_ptr() as usize,
                buffer.as_mut_ptr() as usize,
                buffer.len(),
                0,
                0,
            ],
        )
    };
    let length = checked(result).ok()?;
    core::str::from_utf8(buffer.get(..length)?).ok()
}

/// Anonymous memory for `bytes`, never freed (a table that lives as long as the process);
/// mmap takes no lock a fork could leave held.
pub fn map_memory(bytes: usize) -> Option<*mut u8> {
    let protection = libc::PROT_READ | libc::PROT_WRITE;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    // SAFETY: an anonymous private mapping touches no existing memory.
    let result = unsafe {
        syscall6(
            libc::SYS_mmap,
            [0, bytes, int(protection), int(flags), int(-1), 0],
        )
    };
    checked(result).ok().map(|address| address as *mut u8)
}

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
