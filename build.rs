//! Link arguments of the shared object:
//! - a SONAME, as Debian policy asks of a library in /usr/lib (ld.so does not need one);
//! - `-z defs`: an undefined symbol is a link error. With the release panic handler in
//!   src/lib.rs, that turns any panic path left in the library into a failed build.
//! - `-nostartfiles`: no crti/crtbegin/crtend/crtn. They add `_init`/`_fini`, a PLT and four
//!   symbols for ld.so to look up at every process start (three of them weak and absent:
//!   `__gmon_start__`, `_ITM_*TMCloneTable`) — some 3,600 instructions on `/bin/true`. The
//!   constructor is in `.init_array`, which ld.so (glibc's and musl's) runs without them.
//! - `-z separate-code`: the code gets file pages of its own. Without it the page where the
//!   read-only data ends and the code begins is mapped twice (once readable, once executable,
//!   both resident in every process), and the end of the unwind tables and the start of the
//!   relocated data are executable bytes: one page more resident (scripts/bench L2) and gadgets
//!   where there need be none, for some 2 KB of padding in the file.
//! - libc.so.6 itself: the `libc` crate leaves linking it to std when another crate of the
//!   workspace turns its `std` feature on, and this crate has no std.
fn main() {
    println!("cargo:rustc-link-lib=dylib=c");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libkeepalive_preload.so");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,defs");
    println!("cargo:rustc-cdylib-link-arg=-nostartfiles");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,separate-code");
}
