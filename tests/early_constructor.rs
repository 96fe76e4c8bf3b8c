//! A second shared library whose constructor calls socket() before ours has run (it comes
//! first in LD_PRELOAD): the socket is still configured, through the lazy initialisation from
//! the first hook. The fixture is compiled with gcc at test time.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn early_library(scratch: &TempDir) -> PathBuf {
    compile_fixture("early_socket.c", "libearly_socket.so", scratch)
}

fn preload_list(first: &Path, second: &Path) -> String {
    format!("{}:{}", first.display(), second.display())
}

/// glibc runs the constructors of LD_PRELOAD entries last to first: with `ours:early` the
/// fixture's constructor runs before ours.
#[test]
fn a_socket_made_in_an_earlier_constructor_is_configured() {
    let scratch = TempDir::new("early");
    let early = early_library(&scratch);
    let ours = library();
    for (order, list) in [
        ("early's constructor first", preload_list(&ours, &early)),
        ("our constructor first", preload_list(&early, &ours)),
    ] {
        let out = probe(&["report", "tcp4"])
            .env("LD_PRELOAD", &list)
            .envs(&TIMINGS)
            .run_ok();
        assert_eq!(out.line("early"), configured(), "{order}\n{out}");
        assert_eq!(out.line("tcp4"), configured(), "{order}\n{out}");
    }
}

#[test]
fn the_early_constructor_really_runs_before_ours() {
    let scratch = TempDir::new("early-order");
    let early = early_library(&scratch);
    let out = probe(&["report", "tcp4"])
        .env("LD_PRELOAD", preload_list(&library(), &early))
        .env("EARLY_TRACE", "1")
        .env("KEEPALIVE_LOG", "info")
        .envs(&TIMINGS)
        .run();
    out.assert_success();
    let first = out.stderr.lines().next().unwrap_or_default();
    assert_eq!(
        first, "early constructor: calling socket()",
        "the library spoke before the fixture's constructor: the lazy path is not exercised\n{out}"
    );
    assert!(
        !out.library_lines().is_empty(),
        "KEEPALIVE_LOG=info printed nothing\n{out}"
    );
    assert_eq!(out.line("early"), configured(), "{out}");
}

#[test]
fn the_fixture_alone_sees_kernel_defaults() {
    let scratch = TempDir::new("early-alone");
    let early = early_library(&scratch);
    let out = probe(&["report", "tcp4"])
        .env("LD_PRELOAD", &early)
        .envs(&TIMINGS)
        .run_ok();
    assert_eq!(out.line("early"), untouched(), "{out}");
}

#[test]
fn strict_mode_still_applies_when_a_constructor_comes_first() {
    let scratch = TempDir::new("early-strict");
    let early = early_library(&scratch);
    let out = probe(&["mark", "+", "report", "tcp4"])
        .env("LD_PRELOAD", preload_list(&library(), &early))
        .env("KEEPALIVE_STRICT", "yes")
        .env("KEEPIDLE", "1e3")
        .run();
    assert_eq!(out.code, Some(2), "{out}");
    assert!(!out.stdout.contains("kp-probe main"), "{out}");
}

/// A socket made in the program's .preinit_array comes before the C library has set
/// `environ`: the library cannot read its configuration yet, so it passes that call through
/// untouched and reads the environment at its constructor, as usual. (It used to load then,
/// from an empty environment, and keep those defaults for the life of the process:
/// KEEPALIVE=off, the timings and KEEPALIVE_PROGRAMS were all ignored.)
#[test]
fn a_socket_from_preinit_array_does_not_fix_the_configuration_early() {
    let scratch = TempDir::new("preinit");
    let program = compile_program("preinit_socket.c", "preinit-socket", &scratch);
    let out = Run::new(&program, &[]).preload().envs(&TIMINGS).run_ok();
    assert_eq!(out.line("preinit"), untouched(), "{out}");
    assert_eq!(out.line("main"), configured(), "{out}");
    let off = Run::new(&program, &[])
        .preload()
        .envs(&TIMINGS)
        .env("KEEPALIVE", "off")
        .run_ok();
    assert_eq!(
        off.line("main"),
        untouched(),
        "KEEPALIVE=off was ignored\n{off}"
    );
}

/// The hooks called from .preinit_array, before anything is resolved or loaded (each goes
/// through its resolver), with hostile pointers and lengths: the same results and errno as
/// without the library, under configurations that take different paths once loaded.
#[test]
fn hooks_called_from_preinit_array_return_what_libc_returns() {
    let scratch = TempDir::new("preinit-calls");
    let program = compile_program("preinit_socket.c", "preinit-calls", &scratch);
    let without = Run::new(&program, &[]).run_ok();
    let calls = without.line("preinit-calls");
    assert!(calls.contains("connect-unmapped=-1/14"), "{without}");
    for vars in [
        timings_with(&[]),
        timings_with(&[("KEEPALIVE_OVERRIDE", "yes")]),
        timings_with(&[
            ("KEEPALIVE_PORTS", "1-65535"),
            ("KEEPALIVE_OVERRIDE", "tighten"),
        ]),
        timings_with(&[
            ("KEEPALIVE_NETS", "127.0.0.0/8"),
            ("KEEPALIVE_LOG", "debug"),
        ]),
    ] {
        let with = Run::new(&program, &[]).preload().envs(&vars).run();
        with.assert_success();
        assert_eq!(with.line("preinit-calls"), calls, "{vars:?}\n{with}");
    }
}
