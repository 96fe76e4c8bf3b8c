//! Gives the shared object a SONAME, as Debian policy asks of a library in /usr/lib
//! (ld.so itself does not need one for LD_PRELOAD).
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libkeepalive_preload.so");
}
