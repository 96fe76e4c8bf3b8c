//! Do no harm (issue 10), parts 4 and 6: how the library is loaded.
//!
//! - A dynamically linked musl program (musl-gcc's default) starts under the library and its
//!   TCP sockets get the options: the library must not need glibc-only objects
//!   (ld-linux-x86-64.so.2, libgcc_s.so.1) or symbols.
//! - KEEPALIVE_STRICT=yes exits before main only when the library is preloaded into a
//!   starting process; dlopen()ed into a running program it must not end that program.
//!
//! That the shared object exports the six hooks and nothing else: tests/exports.rs.

mod common;

use common::*;

#[test]
fn a_dynamically_linked_musl_program_starts_and_is_configured() {
    let scratch = TempDir::new("harm-musl");
    let program = compile_program_with(
        ("musl-gcc", "musl-tools"),
        "harm_misc.c",
        "harm_misc_musl",
        &scratch,
    );
    // It really is a dynamic musl program (otherwise LD_PRELOAD would not even be read).
    let interpreter = std::fs::read(&program).expect("read the musl program");
    assert!(
        interpreter
            .windows(b"ld-musl-x86_64.so.1".len())
            .any(|window| window == b"ld-musl-x86_64.so.1"),
        "{} has no musl interpreter",
        program.display()
    );
    let mut failures = Vec::new();
    for (name, vars) in [
        ("timings", timings_with(&[])),
        (
            "timings, override yes, debug",
            timings_with(&[("KEEPALIVE_OVERRIDE", "yes"), ("KEEPALIVE_LOG", "debug")]),
        ),
    ] {
        let pair = Differential::run(&Run::new(&program, &["report"]), &vars, Stderr::Captured);
        assert_eq!(pair.without.status, "exit 0", "{}", pair.without);
        if let Some(report) = pair.difference(name) {
            failures.push(report);
            continue;
        }
        for label in ["effect listener", "effect client", "effect accepted"] {
            if pair.with.line(label) != configured() {
                failures.push(format!(
                    "{name}: {label} {}\n  expected {}\n{}",
                    pair.with.line(label),
                    configured(),
                    pair.with
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn strict_mode_does_not_end_a_program_that_dlopens_the_library() {
    // The program runs without LD_PRELOAD and dlopen()s the library itself, with
    // KEEPALIVE_STRICT=yes and a bad KEEPIDLE in its environment: dlopen succeeds and the
    // program goes on exactly as when it dlopen()s a library that does nothing.
    let scratch = TempDir::new("harm-dlopen");
    let program = compile_program("harm_misc.c", "harm_misc", &scratch);
    let empty = compile_fixture("empty.c", "libempty.so", &scratch);
    let library = library();
    let mut failures = Vec::new();
    for vars in [
        vec![("KEEPALIVE_STRICT", "yes"), ("KEEPIDLE", "bad")],
        vec![
            ("KEEPALIVE_STRICT", "yes"),
            ("KEEPALIVE_PORTS", "0"),
            ("KEEPALIVE_LOG", "debug"),
        ],
        vec![("KEEPIDLE", "bad")],
        timings_with(&[("KEEPALIVE_STRICT", "yes")]),
    ] {
        let run = |path: &std::path::Path| {
            Run::new(&program, &["dlopen"])
                .arg(path)
                .envs(&vars)
                .outcome(Stderr::Captured, LIMIT)
        };
        let control = run(&empty);
        let with = run(&library);
        assert_eq!(control.status, "exit 0", "{control}");
        assert!(control.stdout.starts_with("dlopen ok\n"), "{control}");
        if with.status != control.status || with.compared() != control.compared() {
            failures.push(format!(
                "{vars:?}: dlopen of the empty library {}, of ours {}\n{}\n{with}",
                control.status,
                with.status,
                differing_lines(&control.compared(), &with.compared())
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
