//! Sockets that are not TCP stream sockets are left alone, and a TCP socket costs exactly one
//! setsockopt per configured option plus SO_KEEPALIVE: proven by getsockopt and by counting
//! the setsockopt calls strace sees.

mod common;

use common::*;

/// Every socket `report` knows that the library must not touch (RAW needs root; without it
/// both runs print the same EPERM).
const OTHER_KINDS: [&str; 10] = [
    "udp4",
    "udp6",
    "raw4",
    "raw6",
    "unix-stream",
    "unix-dgram",
    "unix-seqpacket",
    "socketpair",
    "mptcp4",
    "sctp4",
];

fn report_args(kinds: &[&'static str]) -> Vec<&'static str> {
    std::iter::once("report")
        .chain(kinds.iter().copied())
        .collect()
}

#[test]
fn other_sockets_read_back_the_same_with_and_without_the_library() {
    let args = report_args(&OTHER_KINDS);
    let bare = probe(&args).run_ok();
    for policy in ["no", "yes", "tighten"] {
        let under = probe(&args)
            .preload()
            .envs(&TIMINGS)
            .env("KEEPALIVE_OVERRIDE", policy)
            .run_ok();
        assert_eq!(under.stdout, bare.stdout, "KEEPALIVE_OVERRIDE={policy}");
    }
}

fn traced(args: &[&str], vars: &[(&str, &str)], preload: bool) -> (Output, Vec<String>) {
    let scratch = TempDir::new("strace");
    let mut run = probe(args).envs(vars);
    if preload {
        run = run.preload();
    }
    let (output, calls) = strace_setsockopt(&run, &scratch);
    output.assert_success();
    (output, traced_options(&calls))
}

#[test]
fn a_tcp_socket_costs_one_setsockopt_per_configured_option_in_order() {
    let (out, calls) = traced(&["report", "tcp4"], &TIMINGS, true);
    assert_eq!(out.line("tcp4"), configured(), "{out}");
    assert_eq!(
        calls,
        [
            "SO_KEEPALIVE=1",
            "TCP_KEEPIDLE=61",
            "TCP_KEEPINTVL=7",
            "TCP_KEEPCNT=4",
            "TCP_USER_TIMEOUT=45000"
        ],
        "{out}"
    );
}

#[test]
fn fewer_options_fewer_calls() {
    let (_, calls) = traced(&["report", "tcp6"], &[("KEEPINTVL", "7")], true);
    assert_eq!(calls, ["SO_KEEPALIVE=1", "TCP_KEEPINTVL=7"]);
    let (_, calls) = traced(&["report", "tcp4"], &[], true);
    assert_eq!(calls, ["SO_KEEPALIVE=1"]);
    let mut off = vec![("KEEPALIVE", "off")];
    off.extend(TIMINGS);
    let (_, calls) = traced(&["report", "tcp4", "tcp6"], &off, true);
    assert_eq!(calls, Vec::<String>::new());
}

#[test]
fn other_sockets_cost_no_syscall() {
    let args = report_args(&OTHER_KINDS);
    for policy in ["no", "yes", "tighten"] {
        let mut vars = TIMINGS.to_vec();
        vars.push(("KEEPALIVE_OVERRIDE", policy));
        let (out, calls) = traced(&args, &vars, true);
        assert_eq!(calls, Vec::<String>::new(), "{out}");
    }
    let (_, calls) = traced(&args, &TIMINGS, false);
    assert_eq!(
        calls,
        Vec::<String>::new(),
        "the probe itself makes no setsockopt call"
    );
}

#[test]
fn accepted_sockets_inherit_without_extra_calls() {
    for args in [
        &["pair"][..],
        &["pair", "--accept4"],
        &["pair", "--v6", "--accept4"],
    ] {
        let (out, calls) = traced(args, &TIMINGS, true);
        for role in ["listener", "client", "accepted"] {
            assert_eq!(out.line(role), configured(), "{role}\n{out}");
        }
        // Listener and client: five calls each; the accepted socket none.
        assert_eq!(calls.len(), 10, "{args:?}: {calls:?}\n{out}");
    }
}

#[test]
fn descriptor_numbers_reused_by_other_sockets_are_passed_through() {
    // A TCP socket the library configured is closed (or replaced by dup2) and its number
    // reused by a UNIX socket made without socket(): the program's SO_KEEPALIVE=0 on it must
    // stay 0 under every policy, as without the library.
    let bare = probe(&["reused-fds"]).run_ok();
    assert!(bare.stdout.contains("same-number=true"), "{bare}");
    for policy in ["no", "yes", "tighten"] {
        let under = probe(&["reused-fds"])
            .preload()
            .envs(&TIMINGS)
            .env("KEEPALIVE_OVERRIDE", policy)
            .run_ok();
        assert_eq!(under.stdout, bare.stdout, "KEEPALIVE_OVERRIDE={policy}");
    }
}
