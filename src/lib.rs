//! keepalive-preload: an `LD_PRELOAD` library that gives every TCP socket of the host program
//! SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT and TCP_USER_TIMEOUT, configured
//! once from the environment (see README.md), without changing anything else the program sees.
//!
//! `#![no_std]` with `panic = "abort"`: it needs only libc.so.6 (so it loads into musl
//! programs too), and a release build fails to link if any panic path is left in it.

// `cargo clippy --all-targets` checks a test build too, which links std.
#![cfg_attr(not(test), no_std)]

mod errno;
mod hooks;
mod kernel;
mod log;
mod policy;
mod process;
mod real;

mod runtime;
mod sockets;
mod sys;

/// Reads the configuration at load, before `main`: KEEPALIVE_STRICT can stop the process
/// there, and hooks then only read what is already decided.
#[ctor::ctor(unsafe)]
fn load() {
    runtime::load();
}

/// In a release build a panic path must not exist at all: this handler names a symbol that is
/// defined nowhere, and the library links with `-z defs`, so any call to it that survives
/// optimisation fails the build instead of shipping.
#[cfg(all(not(test), not(debug_assertions)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    unsafe extern "C" {
        fn keepalive_preload_has_a_panic_path_see_src_lib_rs() -> !;
    }
    // SAFETY: never linked; reaching this line at all is a build error.
    unsafe { keepalive_preload_has_a_panic_path_see_src_lib_rs() }
}

/// Debug builds keep the checks that may panic (overflow, bounds); a panic aborts there.
#[cfg(all(not(test), debug_assertions))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

/// Debug builds link core's unoptimised code, which still names the unwinder's personality
/// routine; with panic = "abort" nothing ever unwinds, so it is never called.
#[cfg(all(not(test), debug_assertions))]
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}
