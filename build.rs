//! Link arguments of the shared object:
//! - a SONAME, as Debian policy asks of a library in /usr/lib (ld.so does not need one);
//! - `-z defs`: an undefined symbol is a link error. With the release panic handler in
//!   src/lib.rs, that turns any panic path left in the library into a failed build.
//! - libc.so.6 itself: the `libc` crate leaves linking it to std when another crate of the
//!   workspace turns its `std` feature on, and this crate has no std.
fn main() {
    println!("cargo:rustc-link-lib=dylib=c");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libkeepalive_preload.so");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,defs");
}
