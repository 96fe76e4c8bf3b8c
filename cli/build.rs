//! Compiles the eBPF policy (bpf/keepalive.bpf.c) with clang into OUT_DIR/keepalive.bpf.o, which
//! `src/bpf/` embeds. A missing clang or missing headers stop the build with the Debian package
//! to install.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let bpf = manifest.join("../bpf");
    let source = bpf.join("keepalive.bpf.c");
    let header = bpf.join("keepalive.h");
    println!("cargo:rerun-if-changed={}", source.display());
    println!("cargo:rerun-if-changed={}", header.display());
    println!("cargo:rerun-if-env-changed=KEEPALIVE_CLANG");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let object = out.join("keepalive.bpf.o");

    let clang = find_clang().unwrap_or_else(|tried| {
        fail(&format!(
            "clang is needed to compile the eBPF policy (bpf/keepalive.bpf.c) and was not found \
             (tried {tried}): install the Debian package `clang` (apt-get install clang \
             libbpf-dev), or name a clang with KEEPALIVE_CLANG"
        ))
    });
    // <asm/types.h> lives in the multiarch directory, which `-target bpf` does not search.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".to_owned());
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    let output = Command::new(&clang)
        .args(["-O2", "-g0", "-target", "bpf", "-mcpu=v3", "-Wall"])
        .arg(format!("-I{multiarch}"))
        .arg(format!("-I{}", bpf.display()))
        .arg("-c")
        .arg(&source)
        .arg("-o")
        .arg(&object)
        .output()
        .unwrap_or_else(|error| fail(&format!("cannot run {clang}: {error}")));
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let hint = if stderr.contains("bpf/bpf_helpers.h") || stderr.contains("bpf/bpf_endian.h") {
            "\nbpf/bpf_helpers.h is missing: install the Debian package `libbpf-dev`"
        } else if stderr.contains("linux/bpf.h") || stderr.contains("asm/") {
            "\nthe kernel headers are missing: install the Debian package `linux-libc-dev`"
        } else {
            ""
        };
        fail(&format!(
            "{clang} failed to compile {}:\n{stderr}{hint}",
            source.display()
        ));
    }
    if !stderr.trim().is_empty() {
        println!("cargo:warning={}", stderr.replace('\n', " "));
    }
}

/// KEEPALIVE_CLANG, else `clang`, else a versioned Debian clang.
fn find_clang() -> Result<String, String> {
    let candidates: Vec<String> = match std::env::var("KEEPALIVE_CLANG") {
        Ok(clang) if !clang.is_empty() => vec![clang],
        _ => ["clang", "clang-19", "clang-16", "clang-15", "clang-14"]
            .map(str::to_owned)
            .to_vec(),
    };
    candidates
        .iter()
        .find(|clang| {
            Command::new(clang)
                .arg("--version")
                .output()
                .is_ok_and(|output| output.status.success())
        })
        .cloned()
        .ok_or_else(|| candidates.join(", "))
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    panic!("{message}");
}
