//! Do no harm, part 4 (loading), for a library dlopen()ed into a running program: its
//! constructor runs while the program runs, so any anonymous mapping it made then could land
//! in memory the program unmapped and still holds a pointer into, and a hooked call given that
//! pointer would succeed where it fails with EFAULT.
//!
//! The program (tests/fixtures/harm_holes.c) makes one- and two-page holes between mappings of
//! its own, dlopen()s a library, and calls setsockopt (through the library's handle) with a
//! pointer into each hole. Control: the same program dlopen()ing an empty library.
//!
//! So the library keeps what it may need in .bss (mapped with the library itself, by dlopen),
//! and under KEEPALIVE_NETS, whose ranges are mapped at load, a dlopen()ed library does
//! nothing. Each configuration that would need memory is run: none, timings, the info log
//! and KEEPALIVE_PROGRAMS (the executable's path), KEEPALIVE_PORTS (the port set), and
//! KEEPALIVE_NETS.

mod common;

use common::*;

#[test]
fn a_dlopened_library_maps_nothing_where_the_program_unmapped_memory() {
    let scratch = TempDir::new("harm-holes");
    let program = compile_program("harm_holes.c", "harm_holes", &scratch);
    let empty = compile_fixture("empty.c", "libempty.so", &scratch);
    let library = library();
    let mut failures = Vec::new();
    for (name, vars) in [
        ("no variable", vec![]),
        ("timings", timings_with(&[])),
        ("KEEPALIVE_LOG=info", vec![("KEEPALIVE_LOG", "info")]),
        (
            "KEEPALIVE_PROGRAMS",
            vec![("KEEPALIVE_PROGRAMS", "harm_holes")],
        ),
        (
            "KEEPALIVE_PORTS",
            timings_with(&[("KEEPALIVE_PORTS", "80")]),
        ),
        (
            "KEEPALIVE_NETS",
            timings_with(&[("KEEPALIVE_NETS", "10.0.0.0/8")]),
        ),
    ] {
        let run = |path: &std::path::Path| {
            Run::new(&program, &[])
                .arg(path)
                .envs(&vars)
                .outcome(Stderr::Captured, LIMIT)
        };
        let control = run(&empty);
        assert_eq!(control.status, "exit 0", "{control}");
        assert!(
            control.stdout.ends_with("holes no longer EFAULT: 0\n"),
            "the control run must keep every hole unmapped\n{control}"
        );
        let with = run(&library);
        if with.status != control.status || with.compared() != control.compared() {
            failures.push(format!(
                "{name}: dlopen of the empty library {}, of ours {}\n{}",
                control.status,
                with.status,
                differing_lines(&control.compared(), &with.compared())
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
