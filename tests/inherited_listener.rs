//! An accepted socket from a listener the library did not create (made before exec, without
//! the preload, as systemd socket activation or a supervising parent does) gets the options at
//! accept/accept4.

mod common;

use common::*;

fn inherited(listen_flags: &[&str], accept_flags: &[&str], vars: &[(&str, &str)]) -> Output {
    listen_then_accept(listen_flags, accept_flags)
        .envs(vars)
        .run_ok()
}

#[test]
fn accept_configures_a_socket_from_an_inherited_listener() {
    for (listen, accept) in [
        (&[][..], &[][..]),
        (&[], &["--accept4"]),
        (&["--v6"], &["--v6"]),
        (&["--v6"], &["--v6", "--accept4"]),
    ] {
        let out = inherited(listen, accept, &TIMINGS);
        assert_eq!(
            out.line("listener"),
            untouched(),
            "the listener predates the library\n{out}"
        );
        assert_eq!(out.line("accept"), "errno=unchanged", "{out}");
        assert_eq!(out.line("accepted"), configured(), "{accept:?}\n{out}");
    }
}

#[test]
fn a_listener_moved_onto_a_reused_descriptor_number_is_still_judged_at_accept() {
    // The descriptor number first held a socket the library configured (then closed); now it
    // holds the inherited, unconfigured listener (dup2, or received over SCM_RIGHTS).
    for accept in [&["--reuse-fd"][..], &["--reuse-fd", "--accept4"]] {
        let out = inherited(&[], accept, &TIMINGS);
        assert_eq!(out.line("listener"), untouched(), "{out}");
        assert_eq!(out.line("accepted"), configured(), "{accept:?}\n{out}");
    }
}

#[test]
fn inherited_listener_with_keepalive_off_is_left_alone() {
    let mut vars = vec![("KEEPALIVE", "off")];
    vars.extend(TIMINGS);
    let out = inherited(&[], &[], &vars);
    assert_eq!(out.line("accepted"), untouched(), "{out}");
}

#[test]
fn accept_on_an_inherited_listener_costs_one_call_per_option() {
    let scratch = TempDir::new("inherited-strace");
    // strace follows the exec; the parent makes no setsockopt call. The client connecting
    // from the child is configured at socket() (5 calls), the accepted socket at accept (5).
    let run = listen_then_accept(&[], &[]).envs(&TIMINGS);
    let (out, calls) = strace_setsockopt(&run, &scratch);
    out.assert_success();
    assert_eq!(out.line("accepted"), configured(), "{out}");
    assert_eq!(calls.len(), 10, "{calls:#?}");
}
