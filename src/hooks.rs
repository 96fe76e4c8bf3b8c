//! The exported hooks. Each calls the real function exactly once, first, and returns exactly
//! what it returned with the errno it set; the library's work comes after, only on success,
//! and reads nothing of the program's memory that the kernel has not just read successfully.
//! (Its own system calls are raw and leave errno alone.)

use core::ffi::{c_int, c_void};

use libc::{sockaddr, socklen_t};

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
    if result == 0 || errno() == libc::EINPROGRESS {
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
        policy::after_accept(accepted);
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
        policy::after_accept(accepted);
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
    // SAFETY: the program's own call, forwarded unchanged.
    let result = unsafe { real::setsockopt()(fd, level, name, value, length) };
    if result == 0
        && let Some(option) = policy::watches_setsockopt(level, name)
    {
        // SAFETY: the kernel has just read an int at `value` for this option (it refuses a
        // shorter length or an unreadable address), so the same read is valid.
        let asked = unsafe { value.cast::<c_int>().read_unaligned() };
        policy::after_setsockopt(fd, option, asked);
    }
    result
}
