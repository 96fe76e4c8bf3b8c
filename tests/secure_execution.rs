//! In secure-execution mode (AT_SECURE: here a program with a file capability, run by user
//! nobody) the library is loaded but ignores the environment entirely and does nothing: no
//! output even with KEEPALIVE_LOG=debug, sockets keep the kernel defaults, strict mode does not
//! exit. glibc preloads only set-user-ID libraries named without a slash from the system
//! directories in that mode, so the test installs a copy there under a unique name; every copy
//! is removed when the test ends, pass or fail.
//!
//! Needs root (to install the copies and set the capability): fails, never skips, without it.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;

const SYSTEM_LIBRARY_DIR: &str = "/usr/lib/x86_64-linux-gnu";

/// Files installed for the test, removed on drop.
struct Installed(Vec<PathBuf>);

impl Drop for Installed {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Everything one test needs: the library installed under a bare name, and two copies of the
/// probe, one with a file capability (secure execution), one without.
struct Setup {
    bare_name: String,
    secure_probe: PathBuf,
    plain_probe: PathBuf,
    _installed: Installed,
    _scratch: TempDir,
}

fn setup(tag: &str) -> Setup {
    require_root("installs a set-user-ID library and sets a file capability");
    let dir = Path::new(SYSTEM_LIBRARY_DIR);
    assert!(dir.is_dir(), "{SYSTEM_LIBRARY_DIR} does not exist");
    let bare_name = format!(
        "libkeepalive_preload_secure_test_{}_{tag}.so",
        std::process::id()
    );
    let installed_library = dir.join(&bare_name);
    let scratch = TempDir::new(&format!("secure-{tag}"));
    std::fs::set_permissions(&scratch.0, std::fs::Permissions::from_mode(0o755))
        .expect("chmod scratch directory");
    let secure_probe = scratch.path("kp-probe-with-capability");
    let plain_probe = scratch.path("kp-probe-plain");
    let installed = Installed(vec![installed_library.clone()]);
    copy_with_mode(&library(), &installed_library, 0o4755);
    copy_with_capability(&probe_path(), &secure_probe);
    copy_with_mode(&probe_path(), &plain_probe, 0o755);
    Setup {
        bare_name,
        secure_probe,
        plain_probe,
        _installed: installed,
        _scratch: scratch,
    }
}

/// Runs `probe ARGS` as user nobody. setpriv and env run without the library; env sets
/// LD_PRELOAD for the probe only.
fn as_nobody(setup: &Setup, probe: &Path, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let mut run = Run::new(tool("setpriv", "util-linux"), &AS_NOBODY)
        .arg("env")
        .arg(format!("LD_PRELOAD={}", setup.bare_name));
    for (name, value) in vars {
        run = run.arg(format!("{name}={value}"));
    }
    run = run.arg(probe);
    for arg in args {
        run = run.arg(*arg);
    }
    run.run()
}

fn debug_timings() -> Vec<(&'static str, &'static str)> {
    let mut vars = TIMINGS.to_vec();
    vars.push(("KEEPALIVE_LOG", "debug"));
    vars.push(("KEEPALIVE_OVERRIDE", "yes"));
    vars
}

#[test]
#[ignore = "needs root: setcap and setpriv (secure-execution mode); scripts/test runs it"]
fn under_at_secure_the_library_is_loaded_and_does_nothing() {
    let setup = setup("quiet");
    let needle = setup.bare_name.clone();
    let args = [
        "at-secure",
        "+",
        "report",
        "tcp4",
        "tcp6",
        "+",
        "pair",
        "+",
        "program-sets",
        "--keepalive",
        "0",
        "--idle",
        "300",
        "+",
        "maps",
        &needle,
    ];
    let out = as_nobody(&setup, &setup.secure_probe, &debug_timings(), &args);
    out.assert_success();
    assert_eq!(out.stderr, "", "the library printed under AT_SECURE\n{out}");
    assert!(
        out.stdout.ends_with(&format!("maps {needle}=yes\n")),
        "the library was not loaded, so this test proves nothing\n{out}"
    );
    // Kernel defaults everywhere; the program's own setsockopt calls went through unchanged
    // (no override, SO_KEEPALIVE stays off).
    let untouched = untouched();
    let (_, intvl, cnt) = kernel_defaults();
    let expected = format!(
        "at_secure=1\n\
         tcp4 {untouched}\n\
         tcp6 {untouched}\n\
         listener {untouched}\n\
         client {untouched}\n\
         accepted {untouched}\n\
         setsockopt SO_KEEPALIVE=0 ret=0 errno=unchanged\n\
         setsockopt TCP_KEEPIDLE=300 ret=0 errno=unchanged\n\
         accepted {}\n\
         maps {needle}=yes\n",
        options(0, 300, intvl, cnt, 0)
    );
    assert_eq!(out.stdout, expected, "{out}");
}

#[test]
#[ignore = "needs root: setcap and setpriv (secure-execution mode); scripts/test runs it"]
fn under_at_secure_strict_mode_and_bad_values_are_ignored() {
    let setup = setup("strict");
    let vars = [
        ("KEEPALIVE_STRICT", "yes"),
        ("KEEPIDLE", "1e3"),
        ("KEEPALIVE_LOG", "debug"),
    ];
    let out = as_nobody(
        &setup,
        &setup.secure_probe,
        &vars,
        &["mark", "+", "report", "tcp4"],
    );
    out.assert_clean();
    assert_eq!(
        out.stdout,
        format!("kp-probe main\ntcp4 {}\n", untouched()),
        "{out}"
    );
}

#[test]
#[ignore = "needs root: setcap and setpriv (secure-execution mode); scripts/test runs it"]
fn control_the_same_setup_without_the_capability_is_configured() {
    let setup = setup("control");
    let needle = setup.bare_name.clone();
    let out = as_nobody(
        &setup,
        &setup.plain_probe,
        &debug_timings(),
        &["at-secure", "+", "report", "tcp4", "+", "maps", &needle],
    );
    out.assert_success();
    assert!(out.stdout.starts_with("at_secure=0\n"), "{out}");
    assert_eq!(out.line("tcp4"), configured(), "{out}");
    assert_eq!(out.line("maps"), format!("{needle}=yes"), "{out}");
    assert!(
        !out.library_lines().is_empty(),
        "KEEPALIVE_LOG=debug printed nothing\n{out}"
    );
}
