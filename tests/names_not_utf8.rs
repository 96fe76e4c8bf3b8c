//! Names and paths that are not UTF-8: the library takes the executable's path, argv[0], its
//! own path and LD_PRELOAD as the bytes the process has, as exec and ld.so do. (Values of our
//! variables that are not UTF-8 are refused: bad_input.rs.)

mod common;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use common::*;

/// `scratch/bin-\xff`, a directory whose name is not UTF-8.
fn directory_not_utf8(scratch: &TempDir) -> PathBuf {
    let directory = scratch
        .path("bin")
        .with_file_name(OsStr::from_bytes(b"bin-\xff"));
    std::fs::create_dir(&directory).expect("create a directory");
    directory
}

/// KEEPALIVE_PROGRAMS matches the base name of an executable whose path is not UTF-8 (such a
/// path was as good as absent: only argv[0] was matched), and the log line names it as it
/// is. (argv[0] is another name: the probe, a Rust program, cannot take one that is not
/// UTF-8.)
#[test]
fn programs_match_an_executable_whose_path_is_not_utf8() {
    let scratch = TempDir::new("names-not-utf8");
    let program = directory_not_utf8(&scratch).join("redis-server");
    copy_with_mode(&probe_path(), &program, 0o755);
    let run = Run::new(&program, &["report", "tcp4"])
        .arg0("kp-probe")
        .preload()
        .envs(&TIMINGS)
        .env("KEEPALIVE_PROGRAMS", "redis-server")
        .env("KEEPALIVE_LOG", "info");
    let out = run.run();
    out.assert_success();
    assert_eq!(out.line("tcp4"), configured(), "{out}");
    // The bytes as they are (stderr is read with U+FFFD for what is not UTF-8).
    let active = format!("active in {}: ", program.to_string_lossy());
    assert!(
        out.library_lines()
            .iter()
            .any(|line| line.contains(&active)),
        "{out}"
    );
}

/// KEEPALIVE_INHERIT=no takes the library out of an LD_PRELOAD list that is not UTF-8 (it
/// left such a list alone) and keeps the other entries as they are.
#[test]
fn inherit_no_edits_an_ld_preload_list_that_is_not_utf8() {
    let scratch = TempDir::new("preload-not-utf8");
    let built = compile_fixture("empty.c", "libfirst.so", &scratch);
    let first = directory_not_utf8(&scratch).join("libfirst.so");
    std::fs::rename(&built, &first).expect("move the fixture");
    let mut list = OsString::from(&first);
    list.push(":");
    list.push(library());
    let out = inherit_run(list, "no");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            format!("tcp4 {}", configured()),
            format!("LD_PRELOAD={}", first.to_string_lossy()),
            "maps keepalive_preload=yes".to_owned(),
            format!("tcp4 {}", untouched()),
            format!("LD_PRELOAD={}", first.to_string_lossy()),
            "maps keepalive_preload=no".to_owned(),
        ],
        "{out}"
    );
}
