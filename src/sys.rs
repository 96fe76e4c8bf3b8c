//! The small OS layer: every libc call the library makes, other than the program's own calls
//! forwarded by the hooks, goes through here.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::mem::{MaybeUninit, size_of};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use keepalive_config::KernelDefaults;
use libc::{sockaddr, sockaddr_in, sockaddr_in6, sockaddr_storage, socklen_t};

use crate::real;

/// errno as it was when saved; put back by `restore`, through the one slot lookup.
pub struct SavedErrno {
    slot: *mut c_int,
    value: c_int,
}

impl SavedErrno {
    pub fn save() -> Self {
        // SAFETY: __errno_location always returns this thread's valid errno slot.
        let slot = unsafe { libc::__errno_location() };
        // SAFETY: as above.
        Self {
            slot,
            value: unsafe { *slot },
        }
    }

    pub fn restore(self) {
        // SAFETY: the slot is this thread's errno, valid for the thread's life.
        unsafe { *self.slot = self.value }
    }
}

pub fn errno() -> c_int {
    // SAFETY: __errno_location always returns this thread's valid errno slot.
    unsafe { *libc::__errno_location() }
}

pub fn set_errno(value: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = value }
}

/// The result of a hooked call whose real function could not be resolved.
pub fn unavailable() -> c_int {
    set_errno(libc::ENOSYS);
    -1
}

/// True in secure-execution mode (setuid, setgid, file capabilities).
pub fn secure_execution() -> bool {
    // SAFETY: getauxval has no preconditions.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

pub fn pid() -> c_int {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

/// Ends the process at once (no atexit handlers: `main` has not run yet).
pub fn exit_now(status: c_int) -> ! {
    // SAFETY: _exit has no preconditions and does not return.
    unsafe { libc::_exit(status) }
}

/// Writes all of `bytes` to standard error, ignoring failures (diagnostics are best effort).
pub fn write_stderr(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: the pointer and length describe the live slice `bytes`.
        let written =
            unsafe { libc::write(libc::STDERR_FILENO, bytes.as_ptr().cast(), bytes.len()) };
        if written <= 0 {
            return;
        }
        bytes = &bytes[written as usize..];
    }
}

pub fn get_int(fd: c_int, level: c_int, name: c_int) -> Option<c_int> {
    let mut value: c_int = 0;
    let mut length = size_of::<c_int>() as socklen_t;
    // SAFETY: value and length are valid for writes of the sizes given.
    let result =
        unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &raw mut length) };
    (result == 0).then_some(value)
}

/// Sets int options through the real setsockopt (our own hook must not see our calls),
/// resolved once for a whole batch of options.
#[derive(Clone, Copy)]
pub struct OptionSetter(
    unsafe extern "C" fn(c_int, c_int, c_int, *const c_void, socklen_t) -> c_int,
);

impl OptionSetter {
    pub fn resolve() -> Self {
        Self(real::setsockopt())
    }

    /// Returns the errno of a failure.
    pub fn set(self, fd: c_int, level: c_int, name: c_int, value: c_int) -> Result<(), c_int> {
        // SAFETY: value is a live int and the length says so.
        let result = unsafe {
            (self.0)(
                fd,
                level,
                name,
                (&raw const value).cast(),
                size_of::<c_int>() as socklen_t,
            )
        };
        if result == 0 { Ok(()) } else { Err(errno()) }
    }
}

/// True for an AF_INET/AF_INET6 TCP socket (used on sockets the library did not create).
pub fn is_tcp(fd: c_int) -> bool {
    let domain = get_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN);
    matches!(domain, Some(libc::AF_INET | libc::AF_INET6))
        && get_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL) == Some(libc::IPPROTO_TCP)
}

pub fn local_address(fd: c_int) -> Option<SocketAddr> {
    // SAFETY: getsockname writes at most `length` bytes into the storage.
    socket_address(|storage, length| unsafe { libc::getsockname(fd, storage, length) })
}

pub fn peer_address(fd: c_int) -> Option<SocketAddr> {
    // SAFETY: getpeername writes at most `length` bytes into the storage.
    socket_address(|storage, length| unsafe { libc::getpeername(fd, storage, length) })
}

fn socket_address(
    query: impl FnOnce(*mut sockaddr, *mut socklen_t) -> c_int,
) -> Option<SocketAddr> {
    let mut storage = MaybeUninit::<sockaddr_storage>::zeroed();
    let mut length = size_of::<sockaddr_storage>() as socklen_t;
    if query(storage.as_mut_ptr().cast(), &raw mut length) != 0 {
        return None;
    }
    // SAFETY: the kernel wrote `length` bytes of a socket address into the zeroed storage.
    unsafe { decode_address(storage.as_ptr().cast(), length) }
}

/// Decodes an IPv4 or IPv6 socket address; `None` for any other family or a short length.
///
/// # Safety
/// `address` must be null or valid for reads of `length` bytes.
pub unsafe fn decode_address(address: *const sockaddr, length: socklen_t) -> Option<SocketAddr> {
    if address.is_null() || (length as usize) < size_of::<libc::sa_family_t>() {
        return None;
    }
    // SAFETY: at least the family field is readable (checked above); unaligned reads because
    // the program's buffer may be any byte array.
    let family = unsafe { (&raw const (*address).sa_family).read_unaligned() };
    match c_int::from(family) {
        libc::AF_INET if length as usize >= size_of::<sockaddr_in>() => {
            // SAFETY: the length covers a whole sockaddr_in.
            let v4 = unsafe { address.cast::<sockaddr_in>().read_unaligned() };
            let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 if length as usize >= size_of::<sockaddr_in6>() => {
            // SAFETY: the length covers a whole sockaddr_in6.
            let v6 = unsafe { address.cast::<sockaddr_in6>().read_unaligned() };
            let ip = Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// The kernel's keepalive timings for new sockets (this network namespace's sysctls), read
/// from a throwaway socket: the library reads no files.
pub fn kernel_defaults() -> Option<KernelDefaults> {
    let socket = real::socket();
    // SAFETY: plain socket creation with constant arguments.
    let fd = unsafe { socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    let read =
        |name| get_int(fd, libc::IPPROTO_TCP, name).and_then(|value| u32::try_from(value).ok());
    let defaults = (|| {
        Some(KernelDefaults {
            idle: read(libc::TCP_KEEPIDLE)?,
            interval: read(libc::TCP_KEEPINTVL)?,
            count: read(libc::TCP_KEEPCNT)?,
        })
    })();
    // SAFETY: fd is the socket created above and nothing else refers to it.
    unsafe { libc::close(fd) };
    defaults
}

/// The executable's path, from the /proc/self/exe link (a readlink: no file is opened).
pub fn executable_path(buffer: &mut [u8; 4096]) -> Option<&str> {
    // SAFETY: the buffer is writable for its whole length; readlink does not terminate it.
    let length = unsafe {
        libc::readlink(
            c"/proc/self/exe".as_ptr(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
        )
    };
    let length = usize::try_from(length).ok()?;
    std::str::from_utf8(&buffer[..length]).ok()
}

unsafe extern "C" {
    /// glibc's copy of argv[0].
    static program_invocation_name: *const c_char;
}

/// argv[0] as the program was started.
pub fn argv0() -> Option<&'static str> {
    // SAFETY: glibc sets program_invocation_name before any constructor runs; it points to
    // argv[0], which lives as long as the process, or is null.
    let name = unsafe { program_invocation_name };
    if name.is_null() {
        return None;
    }
    // SAFETY: non-null, NUL-terminated argv string.
    unsafe { CStr::from_ptr(name) }.to_str().ok()
}

/// The path this library was loaded from, as ld.so recorded it.
pub fn own_library_path() -> Option<&'static str> {
    let mut info = MaybeUninit::<libc::Dl_info>::zeroed();
    let anchor = own_library_path as *const c_void;
    // SAFETY: dladdr only fills `info` for an address inside a loaded object.
    if unsafe { libc::dladdr(anchor, info.as_mut_ptr()) } == 0 {
        return None;
    }
    // SAFETY: dladdr succeeded, so info is initialised; dli_fname lives as long as the
    // object stays loaded, which for a preload is the whole process.
    let name = unsafe { info.assume_init() }.dli_fname;
    if name.is_null() {
        return None;
    }
    // SAFETY: non-null, NUL-terminated string owned by ld.so.
    unsafe { CStr::from_ptr(name) }.to_str().ok()
}

/// setsockopt(fd, level, name, &value, 4) as one `syscall` instruction: no libc wrapper, and
/// errno is never touched (the kernel's result comes back in rax). True on success.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[inline(always)]
pub fn raw_set_int(fd: c_int, level: c_int, name: c_int, value: c_int) -> bool {
    let result: isize;
    // SAFETY: the setsockopt syscall reads 4 bytes at &value, which is live for the call.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") libc::SYS_setsockopt as isize => result,
            in("rdi") fd as isize,
            in("rsi") level as isize,
            in("rdx") name as isize,
            in("r10") &raw const value,
            in("r8") size_of::<c_int>(),
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack, readonly),
        );
    }
    result == 0
}

/// Elsewhere: the real setsockopt, with errno put back as it was.
#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
pub fn raw_set_int(fd: c_int, level: c_int, name: c_int, value: c_int) -> bool {
    let saved = SavedErrno::save();
    let done = OptionSetter::resolve().set(fd, level, name, value).is_ok();
    saved.restore();
    done
}
