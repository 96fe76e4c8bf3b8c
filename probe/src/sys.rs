//! The small OS layer of the probe: every call is a plain libc call, so what the tests see under
//! `LD_PRELOAD` is exactly one hooked call per step.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};

use keepalive_config::sockaddr;

/// The value errno is set to before every call whose errno the probe prints, so that a library
/// that writes errno after a successful call shows up.
pub const SENTINEL_ERRNO: i32 = libc::EDOM;

pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

pub fn set_errno(value: i32) {
    // SAFETY: __errno_location returns the calling thread's errno, always valid.
    unsafe { *libc::__errno_location() = value }
}

/// errno's symbolic name (EINVAL), or its number when the table does not know it.
pub fn errno_name(value: i32) -> String {
    let name = match value {
        0 => "0",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EINVAL => "EINVAL",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::EDOM => "EDOM",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EDESTADDRREQ => "EDESTADDRREQ",
        libc::EPROTOTYPE => "EPROTOTYPE",
        libc::ENOPROTOOPT => "ENOPROTOOPT",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::ESOCKTNOSUPPORT => "ESOCKTNOSUPPORT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ECONNRESET => "ECONNRESET",
        libc::EISCONN => "EISCONN",
        libc::ENOTCONN => "ENOTCONN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EALREADY => "EALREADY",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::EPIPE => "EPIPE",
        _ => return value.to_string(),
    };
    name.to_owned()
}

/// What one call returned, and errno right after it.
#[derive(Clone, Copy)]
pub struct Outcome {
    pub ret: i64,
    pub errno: i32,
}

impl Outcome {
    /// Runs `call` with errno set to [`SENTINEL_ERRNO`] first, and records errno after.
    pub fn of(call: impl FnOnce() -> i64) -> Self {
        set_errno(SENTINEL_ERRNO);
        let ret = call();
        Self {
            ret,
            errno: errno(),
        }
    }
}

impl Outcome {
    /// errno's name, or `unchanged` when the call left the sentinel in place.
    pub fn errno_text(&self) -> String {
        if self.errno == SENTINEL_ERRNO {
            "unchanged".to_owned()
        } else {
            errno_name(self.errno)
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ret={} errno={}", self.ret, self.errno_text())
    }
}

/// Prints `what failed errno=NAME` on stderr and exits 1.
pub fn die(what: &str) -> ! {
    let errno = errno();
    eprintln!("kp-probe: {what} failed errno={}", errno_name(errno));
    std::process::exit(1)
}

/// Ok(value) for a non-negative return, else dies naming `what`.
pub fn check(ret: i32, what: &str) -> i32 {
    if ret < 0 {
        die(what)
    }
    ret
}

pub fn socket(domain: i32, kind: i32, protocol: i32) -> i32 {
    // SAFETY: plain syscall wrapper, no pointers.
    unsafe { libc::socket(domain, kind, protocol) }
}

pub fn close(fd: i32) {
    // SAFETY: closing a descriptor this program owns.
    unsafe { libc::close(fd) };
}

pub fn getsockopt_int(fd: i32, level: i32, name: i32) -> Option<i32> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for writes of the sizes given.
    let ret = unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &raw mut len) };
    (ret == 0).then_some(value)
}

pub fn setsockopt_int(fd: i32, level: i32, name: i32, value: i32) -> i32 {
    setsockopt_len(fd, level, name, value, size_of::<libc::c_int>() as u32)
}

pub fn setsockopt_len(fd: i32, level: i32, name: i32, value: i32, len: u32) -> i32 {
    // The value first, then zeros: lengths up to 8 bytes read valid memory.
    let buffer: [libc::c_int; 2] = [value, 0];
    assert!(
        len as usize <= size_of_val(&buffer),
        "optlen {len} too large"
    );
    // SAFETY: buffer lives across the call and holds at least `len` readable bytes.
    unsafe { libc::setsockopt(fd, level, name, buffer.as_ptr().cast(), len) }
}

/// The five options the library manages, read back: `keepalive=1 idle=60 intvl=5 cnt=4
/// user_timeout=0`, with `-` for an option getsockopt refuses.
pub fn options(fd: i32) -> String {
    let show = |value: Option<i32>| value.map_or_else(|| "-".to_owned(), |v| v.to_string());
    format!(
        "keepalive={} idle={} intvl={} cnt={} user_timeout={}",
        show(getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE)),
        show(getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE)),
        show(getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL)),
        show(getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT)),
        show(getsockopt_int(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT
        )),
    )
}

/// The same five values as a tuple (for counting many sockets without formatting each).
pub fn option_values(fd: i32) -> [Option<i32>; 5] {
    [
        getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE),
        getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
        getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
        getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
        getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
    ]
}

/// A socket address in the C layout, in a buffer as large as a `sockaddr_storage` (the shared
/// conversion of `keepalive_config::sockaddr`).
pub struct RawAddr {
    pub storage: [u8; sockaddr::STORAGE_LENGTH],
    pub len: libc::socklen_t,
}

impl RawAddr {
    pub fn new(addr: SocketAddr) -> Self {
        let mut encoded = [0; sockaddr::V6_LENGTH];
        let len = sockaddr::encode(addr, &mut encoded);
        let mut storage = [0; sockaddr::STORAGE_LENGTH];
        storage[..encoded.len()].copy_from_slice(&encoded);
        Self {
            storage,
            len: len as libc::socklen_t,
        }
    }

    pub fn ptr(&self) -> *const libc::sockaddr {
        self.storage.as_ptr().cast()
    }
}

pub fn family(ip: IpAddr) -> i32 {
    match ip {
        IpAddr::V4(_) => libc::AF_INET,
        IpAddr::V6(_) => libc::AF_INET6,
    }
}

pub fn bind(fd: i32, addr: SocketAddr) -> i32 {
    let raw = RawAddr::new(addr);
    // SAFETY: raw holds a valid sockaddr of raw.len bytes.
    unsafe { libc::bind(fd, raw.ptr(), raw.len) }
}

pub fn connect(fd: i32, addr: SocketAddr) -> i32 {
    let raw = RawAddr::new(addr);
    // SAFETY: raw holds a valid sockaddr of raw.len bytes.
    unsafe { libc::connect(fd, raw.ptr(), raw.len) }
}

pub fn listen(fd: i32, backlog: i32) -> i32 {
    // SAFETY: plain syscall wrapper.
    unsafe { libc::listen(fd, backlog) }
}

pub fn accept(fd: i32) -> i32 {
    // SAFETY: null address pointers are allowed.
    unsafe { libc::accept(fd, std::ptr::null_mut(), std::ptr::null_mut()) }
}

pub fn accept4(fd: i32, flags: i32) -> i32 {
    // SAFETY: null address pointers are allowed.
    unsafe { libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), flags) }
}

/// The local port of a bound socket.
pub fn local_port(fd: i32) -> u16 {
    let mut bytes = [0u8; sockaddr::STORAGE_LENGTH];
    let mut len = bytes.len() as libc::socklen_t;
    // SAFETY: bytes and len are valid for writes of the sizes given.
    let ret = unsafe { libc::getsockname(fd, bytes.as_mut_ptr().cast(), &raw mut len) };
    check(ret, "getsockname");
    sockaddr::decode(&bytes[..len as usize]).map_or(0, |address| address.port())
}

/// Waits until `fd` is readable (`POLLIN`) or writable (`POLLOUT`), at most `ms`.
pub fn poll_one(fd: i32, events: i16, ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&raw mut pfd, 1, ms) > 0 }
}

pub fn cstring(text: &str) -> CString {
    CString::new(text).unwrap_or_else(|_| {
        eprintln!("kp-probe: argument contains a NUL byte: {text:?}");
        std::process::exit(64)
    })
}
