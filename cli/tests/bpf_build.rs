//! cli/build.rs: without clang the build stops with one message that names the Debian package
//! to install; with it, the object it writes is an eBPF object with both programs. The build
//! script is compiled and run on its own (a whole `cargo build` without clang would rebuild
//! every dependency).

mod common;

use std::path::Path;
use std::process::Command;

fn build_script(dir: &common::TempDir) -> std::path::PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("build.rs");
    let binary = dir.path("build-script");
    let output = Command::new("rustc")
        .args(["--edition", "2024", "-O", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .expect("rustc");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    binary
}

fn run(binary: &Path, dir: &common::TempDir, clang: &str) -> std::process::Output {
    Command::new(binary)
        .env("CARGO_MANIFEST_DIR", env!("CARGO_MANIFEST_DIR"))
        .env("OUT_DIR", &dir.0)
        .env("CARGO_CFG_TARGET_ARCH", "x86_64")
        .env("KEEPALIVE_CLANG", clang)
        .output()
        .expect("run the build script")
}

#[test]
#[ignore = "needs root: root; scripts/test runs it"]
fn a_missing_clang_names_the_package_and_clang_builds_the_object() {
    let dir = common::TempDir::new("kpb-build-script");
    let binary = build_script(&dir);
    let output = run(&binary, &dir, "kpb-no-such-clang");
    let stderr = common::stderr(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains("install the Debian package `clang`"),
        "{stderr}"
    );
    let output = run(&binary, &dir, "clang");
    assert!(output.status.success(), "{}", common::stderr(&output));
    let object = std::fs::read(dir.path("keepalive.bpf.o")).unwrap();
    assert_eq!(&object[..4], b"\x7fELF");
    assert_eq!(u16::from_le_bytes([object[18], object[19]]), 247, "EM_BPF");
    let text = String::from_utf8_lossy(&object);
    assert!(text.contains("cgroup/setsockopt") && text.contains("sockops"));
}
