//! The shipped library has no panic path, proven when it links: the release panic handler
//! calls a symbol defined nowhere and the library links with `-z defs` (src/lib.rs,
//! build.rs). This test keeps that guard armed: a release build with one deliberate panic
//! path (an array index the optimiser cannot prove in bounds, behind
//! `--cfg keepalive_panic_probe`) must fail to link, naming the guard's symbol — and the
//! shipped artifact must name no panic machinery at all.

mod common;

use std::process::Command;

use common::*;

#[test]
fn a_release_build_with_a_panic_path_fails_to_link() {
    let target = testkit::scratch_path("panic-probe-target");
    let output = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "keepalive-preload"])
        .arg("--manifest-path")
        .arg(testkit::workspace_root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env("RUSTFLAGS", "--cfg keepalive_panic_probe")
        .output()
        .expect("run cargo");
    let _ = std::fs::remove_dir_all(&target);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the probe built:\n{stderr}");
    assert!(
        stderr.contains("undefined symbol: keepalive_preload_has_a_panic_path_see_src_lib_rs"),
        "failed for another reason:\n{stderr}"
    );
}

#[test]
fn the_shipped_library_names_no_panic_machinery() {
    let bytes = std::fs::read(library()).expect("read the library");
    for needle in [
        &b"panicked"[..],
        b"unwrap()",
        b"rust_begin_unwind",
        b"rust_eh_personality",
    ] {
        assert!(
            !bytes.windows(needle.len()).any(|window| window == needle),
            "{} contains {:?}",
            library().display(),
            String::from_utf8_lossy(needle)
        );
    }
}
