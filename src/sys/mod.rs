//! The small OS layer: every system call the library makes of its own goes through here, as a
//! raw `syscall` instruction (the stderr ones in `stderr.rs`). Nothing here touches errno (the kernel's result comes back in a
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
pub(super) unsafe fn syscall6(number: c_long, args: [usize; 6]) -> isize {
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
pub(super) unsafe fn syscall6(number: c_long, args: [usize; 6]) -> isize {
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

pub(super) fn checked(result: isize) -> Result<usize, Errno> {
    usize::try_from(result).map_err(|_| Errno(c_int::try_from(-result).unwrap_or(libc::EINVAL)))
}

/// An int argument as the kernel takes it (sign-extended like the C ABI does).
pub(super) fn int(value: c_int) -> usize {
    value as isize as usize
}

#[inline(never)]
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

#[inline(never)]
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
#[inline(never)]
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

/// This thread's id.
pub fn tid() -> c_int {
    // SAFETY: gettid takes no argument.
    let result = unsafe { syscall6(libc::SYS_gettid, [0; 6]) };
    c_int::try_from(result).unwrap_or(0)
}

/// Gives the processor to another thread for a moment.
pub fn yield_now() {
    // SAFETY: sched_yield takes no argument.
    unsafe { syscall6(libc::SYS_sched_yield, [0; 6]) };
}

pub fn pid() -> c_int {
    // SAFETY: getpid takes no argument.
    let result = unsafe { syscall6(libc::SYS_getpid, [0; 6]) };
    c_int::try_from(result).unwrap_or(0)
}

/// Ends the process at once with `status` (before main: no atexit handler to run).
#[inline(always)]
pub fn exit_now(status: c_int) -> ! {
    loop {
        // SAFETY: exit_group takes an int and does not return.
        unsafe { syscall6(libc::SYS_exit_group, [int(status), 0, 0, 0, 0, 0]) };
    }
}

/// /proc/self/exe into `buffer` (readlink: no file is opened; the buffer need not be
/// initialised, only what the kernel wrote is read): the path's bytes, UTF-8 or not.
pub fn executable_path(buffer: &mut [MaybeUninit<u8>]) -> Option<&[u8]> {
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
    let length = checked(result).ok()?.min(buffer.len());
    // SAFETY: the kernel initialised the first `length` bytes of the buffer.
    Some(unsafe { core::slice::from_raw_parts(buffer.as_ptr().cast::<u8>(), length) })
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

mod stderr;
pub use stderr::{FileIdentity, identify, send_now, writable_now, write_without_signal};
