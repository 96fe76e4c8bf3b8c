//! The exported hooks. Each calls the real function exactly once, first (before it, at most a
//! look at the argument values), and returns exactly what it returned with the errno it set;
//! the library's work comes after, only once the kernel has accepted the call, and never reads
//! the program's memory: what it needs to know (addresses, values) it asks the kernel.
//! (Its own system calls are raw and leave errno alone.)

use core::ffi::{c_int, c_void};

use libc::{sockaddr, socklen_t};

use keepalive_config::SocketOption;

use crate::{policy, real};

/// errno right after the real call, for the one case that depends on it.
fn errno() -> c_int {
    // SAFETY: __errno_location has no preconditions and returns this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// # Safety
/// The C `socket` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int {
    // Judged from the arguments (values, not memory) before the call: less to keep across it.
    let tcp = policy::is_tcp_request(domain, kind, protocol);
    // SAFETY: the program's own call, forwarded unchanged.
    let fd = unsafe { real::socket()(domain, kind, protocol) };
    if tcp && fd >= 0 {
        policy::after_tcp_socket(fd);
    }
    fd
}

/// # Safety
/// The C `connect` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, address: *const sockaddr, length: socklen_t) -> c_int {
    // SAFETY: the program's own call, forwarded unchanged.
    let result = unsafe { real::connect()(fd, address, length) };
    // EINPROGRESS (nonblocking) and EINTR (a blocking one interrupted by a signal): the kernel
    // took the address and the connection goes on without the program waiting for it.
    // EALREADY: an earlier interrupted call's connection is still under way.
    if result == 0 || matches!(errno(), libc::EINPROGRESS | libc::EINTR | libc::EALREADY) {
        policy::after_connect(fd);
    }
    result
}

/// # Safety
/// The C `listen` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    // SAFETY: the program's own call, forwarded unchanged.
    let result = unsafe { real::listen()(fd, backlog) };
    if result == 0 {
        policy::after_listen(fd);
    }
    result
}

/// # Safety
/// The C `accept` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept(
    fd: c_int,
    address: *mut sockaddr,
    length: *mut socklen_t,
) -> c_int {
    // SAFETY: the program's own call, forwarded unchanged.
    let accepted = unsafe { real::accept()(fd, address, length) };
    if accepted >= 0 {
        policy::after_accept(fd, accepted);
    }
    accepted
}

/// # Safety
/// The C `accept4` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    address: *mut sockaddr,
    length: *mut socklen_t,
    flags: c_int,
) -> c_int {
    // SAFETY: the program's own call, forwarded unchanged.
    let accepted = unsafe { real::accept4()(fd, address, length, flags) };
    if accepted >= 0 {
        policy::after_accept(fd, accepted);
    }
    accepted
}

/// # Safety
/// The C `setsockopt` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    length: socklen_t,
) -> c_int {
    // Judged from the arguments (values, not memory) before the call: most options (and under
    // the default policy ours too) need nothing after it, and then the hook is only a jump to
    // the real function; the rest goes on in a function of its own.
    if policy::may_watch_setsockopt(level, name) {
        // SAFETY: the program's own call, forwarded unchanged.
        return unsafe { setsockopt_watched(fd, level, name, value, length) };
    }
    // SAFETY: the program's own call, forwarded unchanged.
    unsafe { real::setsockopt()(fd, level, name, value, length) }
}

/// A setsockopt that may need work after the real call.
///
/// # Safety
/// The C `setsockopt` contract.
#[inline(never)]
unsafe extern "C" fn setsockopt_watched(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    length: socklen_t,
) -> c_int {
    // SAFETY: the program's own call, forwarded unchanged.
    let result = unsafe { real::setsockopt()(fd, level, name, value, length) };
    if result == 0 {
        match SocketOption::from_level_and_name(level, name) {
            // What the program asked for is read back from the kernel, not from `value`: the
            // library never touches the program's memory, even after the kernel accepted it.
            Some(option) => policy::after_setsockopt(fd, option),
            // Not ours: only here because the library was not loaded when last asked.
            None => policy::loaded_since(),
        }
    }
    result
}
