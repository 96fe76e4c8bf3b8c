//! Do no harm (issue 10), part 5: the hostile-pointer cases of `harm_pointers.c` in
//! secure-execution mode (AT_SECURE: a program with a file capability run by user nobody).
//! There the library ignores the environment and does nothing, but its hooks still stand
//! between the program and libc: they must still never touch memory the kernel would not.
//!
//! As in tests/secure_execution.rs, glibc preloads only set-user-ID libraries named without a
//! slash from the system directories in that mode, so the test installs a copy there under a
//! unique name, removed when the test ends. Needs root: fails, never skips, without it.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;

const SYSTEM_LIBRARY_DIR: &str = "/usr/lib/x86_64-linux-gnu";

/// A file installed for the test, removed on drop.
struct Installed(PathBuf);

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `program ARGS` as user nobody, with LD_PRELOAD=`preload` when given; setpriv and env
/// run without the library.
fn as_nobody(
    program: &Path,
    preload: Option<&str>,
    vars: &[(&str, &str)],
    args: &[&str],
) -> Outcome {
    let mut run = Run::new(tool("setpriv", "util-linux"), &AS_NOBODY).arg("env");
    if let Some(name) = preload {
        run = run.arg(format!("LD_PRELOAD={name}"));
    }
    for (name, value) in vars {
        run = run.arg(format!("{name}={value}"));
    }
    run = run.arg(program);
    for arg in args {
        run = run.arg(*arg);
    }
    run.outcome(Stderr::Captured, LIMIT)
}

#[test]
#[ignore = "needs root: setcap on a test program (secure-execution mode); scripts/test runs it"]
fn hostile_pointers_under_at_secure_get_the_kernels_answers() {
    require_root("installs a set-user-ID library and sets a file capability");
    let dir = Path::new(SYSTEM_LIBRARY_DIR);
    assert!(dir.is_dir(), "{SYSTEM_LIBRARY_DIR} does not exist");
    let bare_name = format!(
        "libkeepalive_preload_harm_secure_{}_{}.so",
        std::process::id(),
        unique()
    );
    let _installed = Installed(dir.join(&bare_name));
    copy_with_mode(&library(), &dir.join(&bare_name), 0o4755);
    let scratch = TempDir::new("harm-secure");
    std::fs::set_permissions(&scratch.0, std::fs::Permissions::from_mode(0o755))
        .expect("chmod scratch directory");
    let compiled = compile_program("harm_pointers.c", "harm_pointers", &scratch);
    let secure = scratch.path("harm_pointers_with_capability");
    copy_with_capability(&compiled, &secure);
    let vars = timings_with(&[
        ("KEEPALIVE_OVERRIDE", "yes"),
        ("KEEPALIVE_PORTS", "1-65535"),
        ("KEEPALIVE_LOG", "debug"),
    ]);
    // The library is really loaded there (otherwise this test would prove nothing).
    let loaded = as_nobody(&secure, Some(&bare_name), &vars, &["maps", &bare_name]);
    assert_eq!(
        loaded.stdout,
        format!("maps {bare_name}=yes\n"),
        "the library is not loaded under AT_SECURE\n{loaded}"
    );
    let mut failures = Vec::new();
    for section in ["accept", "accept4", "setsockopt", "connect", "not-tcp"] {
        let without = as_nobody(&secure, None, &vars, &[section]);
        let with = as_nobody(&secure, Some(&bare_name), &vars, &[section]);
        assert_eq!(without.status, "exit 0", "{without}");
        if with.status != without.status || with.stdout != without.stdout {
            failures.push(format!(
                "{section}: without the library {}, with it {}\n{}\n--- command: {}",
                without.status,
                with.status,
                differing_lines(&without.stdout, &with.stdout),
                with.described
            ));
        }
        // The library is inactive there: not a line on stderr, not an option set.
        if !with.stderr.is_empty() {
            failures.push(format!(
                "{section}: the library printed under AT_SECURE\n{with}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
