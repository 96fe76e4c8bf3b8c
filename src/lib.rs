//! keepalive-preload: an `LD_PRELOAD` library that gives every TCP socket of the host program
//! SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT and TCP_USER_TIMEOUT, configured
//! once from the environment (see README.md), without changing anything else the program sees.
//!
//! The crate is a `cdylib`; it is also an `rlib` only so that `cargo test` builds the shared
//! object for the black-box tests. Nothing here is meant to be linked into a program.

mod fdstate;
mod hooks;
mod log;
mod policy;
mod real;
mod runtime;
mod sys;

/// Reads the configuration at load, before `main`: KEEPALIVE_STRICT can stop the process
/// there, and hooks then only read what is already decided.
#[ctor::ctor(unsafe)]
fn load() {
    let _ = std::panic::catch_unwind(runtime::active);
}
