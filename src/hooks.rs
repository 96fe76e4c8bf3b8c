//! The exported hooks: each calls the real function exactly once, returns exactly what it
//! returned with the errno it set, and runs the policy around it through `quietly`.

use std::ffi::{c_int, c_void};
use std::mem::size_of;
use std::panic::{AssertUnwindSafe, catch_unwind};

use libc::{sockaddr, socklen_t};

use crate::{fdstate, policy, real, sys};

/// Runs library work beside a real call: errno is left as it was, and a panic in our code is
/// caught here instead of unwinding into the host program.
fn quietly<T: Default>(work: impl FnOnce() -> T) -> T {
    let errno = sys::SavedErrno::save();
    let outcome = catch_unwind(AssertUnwindSafe(work)).unwrap_or_default();
    errno.restore();
    outcome
}

/// # Safety
/// The C `socket` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int {
    let real = real::socket();
    // SAFETY: the program's own call, forwarded unchanged.
    let fd = unsafe { real(domain, kind, protocol) };
    if fd >= 0 && !policy::socket_fast(fd, domain, kind, protocol) {
        socket_in_general(fd, domain, kind, protocol);
    }
    fd
}

/// socket()'s general path (init not done yet, address filters, debug log), kept out of
/// the hook so that the fast path saves fewer registers.
#[cold]
#[inline(never)]
fn socket_in_general(fd: c_int, domain: c_int, kind: c_int, protocol: c_int) {
    quietly(|| policy::after_socket(fd, domain, kind, protocol));
}

/// # Safety
/// The C `connect` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, address: *const sockaddr, length: socklen_t) -> c_int {
    let real = real::connect();
    if policy::connect_may_decide(fd) {
        // SAFETY: the program passes an address readable for `length` bytes, as connect requires.
        quietly(|| unsafe { policy::before_connect(fd, address, length) });
    }
    // SAFETY: the program's own call, forwarded unchanged.
    unsafe { real(fd, address, length) }
}

/// # Safety
/// The C `listen` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    let real = real::listen();
    quietly(|| policy::before_listen(fd));
    // SAFETY: the program's own call, forwarded unchanged.
    let result = unsafe { real(fd, backlog) };
    if result == 0 {
        quietly(|| policy::after_listen(fd));
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
    let real = real::accept();
    // SAFETY: accept reads *length too (or it is null).
    let offered = unsafe { policy::offered_length(length) };
    // SAFETY: the program's own call, forwarded unchanged.
    let accepted = unsafe { real(fd, address, length) };
    if accepted >= 0 && !policy::accept_fast(fd, accepted) {
        // SAFETY: the kernel has just filled address/length (or both are null).
        quietly(|| unsafe { policy::after_accept(fd, accepted, address, offered, length) });
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
    let real = real::accept4();
    // SAFETY: accept reads *length too (or it is null).
    let offered = unsafe { policy::offered_length(length) };
    // SAFETY: the program's own call, forwarded unchanged.
    let accepted = unsafe { real(fd, address, length, flags) };
    if accepted >= 0 && !policy::accept_fast(fd, accepted) {
        // SAFETY: the kernel has just filled address/length (or both are null).
        quietly(|| unsafe { policy::after_accept(fd, accepted, address, offered, length) });
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
    let real = real::setsockopt();
    // SAFETY: the program passes a value readable for `length` bytes, as setsockopt requires.
    let replacement =
        quietly(|| unsafe { policy::setsockopt_replacement(fd, level, name, value, length) });
    match replacement {
        // SAFETY: the program's call with its int replaced by ours, per KEEPALIVE_OVERRIDE.
        Some(chosen) => unsafe {
            real(
                fd,
                level,
                name,
                (&raw const chosen).cast(),
                size_of::<c_int>() as socklen_t,
            )
        },
        // SAFETY: the program's own call, forwarded unchanged.
        None => unsafe { real(fd, level, name, value, length) },
    }
}

/// # Safety
/// The C `close` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    let real = real::close();
    // Before the real close: once it returns, another thread may get this number back.
    fdstate::forget(fd);
    // SAFETY: the program's own call, forwarded unchanged.
    unsafe { real(fd) }
}

/// # Safety
/// The C `dup2` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup2(from: c_int, to: c_int) -> c_int {
    let real = real::dup2();
    // SAFETY: the program's own call, forwarded unchanged.
    let result = unsafe { real(from, to) };
    if result >= 0 {
        fdstate::copy(from, result);
    }
    result
}

/// # Safety
/// The C `dup3` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup3(from: c_int, to: c_int, flags: c_int) -> c_int {
    let real = real::dup3();
    // SAFETY: the program's own call, forwarded unchanged.
    let result = unsafe { real(from, to, flags) };
    if result >= 0 {
        fdstate::copy(from, result);
    }
    result
}
