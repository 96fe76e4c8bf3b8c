//! Gap coverage for the setsockopt fast path (`policy::may_watch_setsockopt`): a library whose
//! constructor runs before ours (it comes after ours in LD_PRELOAD) makes a listener and turns
//! SO_KEEPALIVE off on it (and sets TCP_KEEPIDLE) before the library is loaded; the program
//! then accepts a connection on it. Under KEEPALIVE_OVERRIDE=no what the program set stays:
//! the accepted socket reads the same as without the library.

mod common;

use common::*;

#[test]
fn what_an_earlier_constructor_set_on_a_listener_stays_the_programs() {
    let scratch = TempDir::new("early-setsockopt");
    let early = compile_fixture("early_listener.c", "libearly_listener.so", &scratch);
    let program = compile_program("early_accept.c", "early_accept", &scratch);
    let mut failures = Vec::new();
    for (name, vars) in [
        ("no variable (SO_KEEPALIVE the witness)", vec![]),
        ("timings", timings_with(&[])),
        (
            "timings, program idle = ours",
            timings_with(&[("EARLY_IDLE", TIMINGS[0].1)]),
        ),
        (
            "timings, program idle 77",
            timings_with(&[("EARLY_IDLE", "77")]),
        ),
        ("KEEPALIVE_NETS", vec![("KEEPALIVE_NETS", "127.0.0.0/8")]),
        ("KEEPALIVE_PORTS", vec![("KEEPALIVE_PORTS", "1-65535")]),
        ("KEEPALIVE=off", vec![("KEEPALIVE", "off")]),
        (
            "not in KEEPALIVE_PROGRAMS",
            vec![("KEEPALIVE_PROGRAMS", "kprv-none")],
        ),
    ] {
        let run = |list: String| {
            Run::new(&program, &[])
                .envs(&vars)
                .env("LD_PRELOAD", list)
                .outcome(Stderr::Captured, LIMIT)
        };
        let without = run(early.display().to_string());
        let with = run(format!("{}:{}", library().display(), early.display()));
        assert_eq!(without.status, "exit 0", "{without}");
        if with.status != without.status || with.compared() != without.compared() {
            failures.push(format!(
                "{name}: without the library {}, with it {}\n{}",
                without.status,
                with.status,
                differing_lines(&without.compared(), &with.compared())
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
