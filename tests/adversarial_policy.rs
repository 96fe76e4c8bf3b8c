//! Adversarial review: policy and do-no-harm cases the rewrite gets wrong. Each test runs the
//! fixture `tests/fixtures/adv_policy.c` without and with the library (`Differential`), or
//! with the library alone and checks the `effect` lines against what README.md promises.
//!
//! - An accepted socket inherits what the program chose on its listener; under
//!   `KEEPALIVE_OVERRIDE=no` (the default) the program's choice must win ("Configuration").
//! - The witness read after `accept` must not mistake a configured value that equals the
//!   kernel's default for "the listener was configured" ("Which sockets, and when").
//! - A nonblocking client that sets an option while still in SYN_SENT is a connected socket
//!   the filters target: `KEEPALIVE_OVERRIDE=yes` must replace its value.
//! - A socket the program connected is judged by its remote port, also at its own
//!   `setsockopt` ("the library recalls how it was made").
//! - MPTCP sockets "pass straight through".
//! - A program that forbids new sockets with seccomp after its setup must not be killed
//!   because the library makes a socket of its own behind an `accept`.
//! - A blocking connect interrupted by a signal (EINTR) goes on in the kernel like a
//!   nonblocking one (EINPROGRESS), so it must be judged too.

mod common;

use common::*;

fn fixture(scratch: &TempDir) -> std::path::PathBuf {
    compile_program("adv_policy.c", "adv_policy", scratch)
}

/// A TCP port in 45000-45999 that was free a moment ago (the range reserved for this suite).
fn adv_port() -> u16 {
    let base = (std::process::id() % 1000) as u16;
    for offset in 0..1000u16 {
        let port = 45000 + (base + offset * 7) % 1000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 45000-45999");
}

fn under_library(run: &Run, vars: &[(&str, &str)]) -> Outcome {
    run.clone()
        .envs(vars)
        .preload()
        .outcome(Stderr::Captured, LIMIT)
}

#[test]
fn keepalive_turned_off_on_a_listener_stays_off_on_accepted_sockets_under_override_no() {
    // The default configuration (SO_KEEPALIVE only, KEEPALIVE_OVERRIDE=no), and TIMINGS with
    // the program setting TCP_KEEPIDLE=30 too: the accepted socket inherits the program's
    // SO_KEEPALIVE=0 (and 30) from its listener, and the program wins under `no`.
    let scratch = TempDir::new("adv-listener-off");
    let program = fixture(&scratch);
    let mut failures = Vec::new();
    for (name, args, vars) in [
        ("default configuration", vec!["listener-off"], vec![]),
        (
            "timings, program also sets TCP_KEEPIDLE=30",
            vec!["listener-off", "idle"],
            timings_with(&[]),
        ),
    ] {
        let pair = Differential::run(&Run::new(&program, &args), &vars, Stderr::Captured);
        assert_eq!(pair.without.status, "exit 0", "{}", pair.without);
        if let Some(report) = pair.difference(name) {
            failures.push(report);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn accepted_sockets_are_judged_when_the_witness_value_equals_the_kernel_default() {
    // KEEPALIVE_NETS takes 127.0.0.0/8, so the accepted socket is targeted; KEEPIDLE is the
    // kernel's own default, so the witness (TCP_KEEPIDLE) already reads the configured value.
    let scratch = TempDir::new("adv-witness");
    let program = fixture(&scratch);
    let (idle, intvl, _) = kernel_defaults();
    let idle_text = idle.to_string();
    let outcome = under_library(
        &Run::new(&program, &["pair"]),
        &[
            ("KEEPIDLE", &idle_text),
            ("KEEPCNT", "3"),
            ("KEEPALIVE_NETS", "127.0.0.0/8"),
        ],
    );
    assert_eq!(outcome.status, "exit 0", "{outcome}");
    let expected = options(1, idle, intvl, 3, 0);
    assert_eq!(outcome.line("effect client"), expected, "{outcome}");
    assert_eq!(
        outcome.line("effect accepted"),
        expected,
        "the accepted socket from 127.0.0.1 is targeted by KEEPALIVE_NETS\n{outcome}"
    );
}

#[test]
fn override_yes_replaces_a_value_set_while_the_connect_is_in_progress() {
    // The client's SYN is dropped (the listener's accept queue is full), so it is in SYN_SENT
    // when the program sets TCP_KEEPIDLE=300: the filters target it (its peer is 127.0.0.1),
    // so KEEPALIVE_OVERRIDE=yes must put 61 back, as it does without a filter.
    let scratch = TempDir::new("adv-synsent");
    let program = fixture(&scratch);
    let run = Run::new(&program, &["synsent"]);
    let mut failures = Vec::new();
    for (name, extra) in [
        ("no filter", vec![]),
        ("KEEPALIVE_NETS", vec![("KEEPALIVE_NETS", "127.0.0.0/8")]),
        ("KEEPALIVE_PORTS", vec![("KEEPALIVE_PORTS", "1-65535")]),
    ] {
        let mut vars = timings_with(&[("KEEPALIVE_OVERRIDE", "yes")]);
        vars.extend(extra);
        let outcome = under_library(&run, &vars);
        assert_eq!(outcome.status, "exit 0", "{outcome}");
        assert_eq!(outcome.line("state"), "SYN_SENT=1", "{outcome}");
        if outcome.line("effect synsent") != configured() {
            failures.push(format!(
                "{name}: expected {}, read {}",
                configured(),
                outcome.line("effect synsent")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn override_leaves_alone_a_connected_socket_its_remote_port_excludes() {
    // KEEPALIVE_PORTS lists only the client's own (bound) local port; the remote port is not
    // listed, so connect() leaves the socket alone, and so must the program's setsockopt.
    let scratch = TempDir::new("adv-bound-client");
    let program = fixture(&scratch);
    let port = adv_port().to_string();
    let run = Run::new(&program, &["bound-client", &port]);
    let mut failures = Vec::new();
    for policy in ["yes", "tighten"] {
        let vars = timings_with(&[("KEEPALIVE_OVERRIDE", policy), ("KEEPALIVE_PORTS", &port)]);
        let pair = Differential::run(&run, &vars, Stderr::Captured);
        assert_eq!(pair.without.status, "exit 0", "{}", pair.without);
        if pair.with.line("effect client after connect") != untouched() {
            failures.push(format!(
                "override {policy}: connect() configured an excluded socket\n{}",
                pair.with
            ));
        }
        if let Some(report) = pair.difference(&format!("override {policy}")) {
            failures.push(report);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn mptcp_sockets_pass_straight_through() {
    let scratch = TempDir::new("adv-mptcp");
    let program = fixture(&scratch);
    let run = Run::new(&program, &["mptcp"]);
    let probe = run.outcome(Stderr::Captured, LIMIT);
    assert!(
        !probe.stdout.contains("no MPTCP"),
        "this kernel has no MPTCP (net.mptcp.enabled=0?): the test cannot run\n{probe}"
    );
    assert_same_under(
        &run,
        &[
            ("override no", timings_with(&[])),
            (
                "override yes",
                timings_with(&[("KEEPALIVE_OVERRIDE", "yes")]),
            ),
        ],
        Stderr::Captured,
    );
}

#[test]
fn a_program_that_forbids_new_sockets_with_seccomp_survives_accept() {
    // The program sets TCP_KEEPIDLE=30 on its listener (override no: its value wins), then
    // installs a seccomp filter that kills the process on socket(): it never makes another
    // socket. accept() must not make one either.
    let scratch = TempDir::new("adv-seccomp");
    let program = fixture(&scratch);
    let run = Run::new(&program, &["seccomp-accept"]);
    assert_same_under(
        &run,
        &[
            ("timings", timings_with(&[])),
            ("default configuration", vec![]),
        ],
        Stderr::Captured,
    );
}

#[test]
fn a_connect_interrupted_by_a_signal_is_judged_like_one_in_progress() {
    // A blocking connect() interrupted by SIGALRM fails with EINTR while the kernel goes on
    // connecting (SYN_SENT), exactly as after EINPROGRESS; the program then calls connect()
    // again (EALREADY). The peer is 127.0.0.1, in KEEPALIVE_NETS: the socket is targeted.
    let scratch = TempDir::new("adv-eintr");
    let program = fixture(&scratch);
    let run = Run::new(&program, &["eintr"]);
    let outcome = under_library(&run, &timings_with(&[("KEEPALIVE_NETS", "127.0.0.0/8")]));
    assert_eq!(outcome.status, "exit 0", "{outcome}");
    assert_eq!(
        outcome.line("connect blocking"),
        "ret=-1 errno=EINTR",
        "{outcome}"
    );
    assert_eq!(outcome.line("state"), "SYN_SENT=1", "{outcome}");
    assert_eq!(
        outcome.line("effect after EALREADY"),
        configured(),
        "a targeted socket whose connect is in progress has no options\n{outcome}"
    );
}

#[test]
#[ignore = "needs root: a network namespace of its own (unshare -n); scripts/test runs it"]
fn an_exhausted_descriptor_table_does_not_change_how_an_accepted_socket_is_judged() {
    // In a network namespace of its own whose tcp_keepalive_time is 600, the program accepts
    // from a listener the library never configured (made with raw system calls, like an
    // inherited one): the accepted socket's TCP_KEEPIDLE is the namespace default, untouched,
    // so it gets ours (61). With RLIMIT_NOFILE leaving no descriptor after accept(), the
    // library cannot open its scratch socket to learn that default, falls back to Linux's
    // compiled-in 7200, takes 600 for the program's own value and leaves it.
    require_root("a network namespace of its own (unshare -n) and its sysctl");
    let scratch = TempDir::new("adv-squeeze");
    let program = fixture(&scratch);
    let unshare = tool("unshare", "util-linux");
    let mut failures = Vec::new();
    for variant in ["none", "squeeze"] {
        let script = format!(
            "ip link set lo up && sysctl -qw net.ipv4.tcp_keepalive_time=600 && exec {} squeezed-accept {variant}",
            program.display()
        );
        let outcome = under_library(
            &Run::new(&unshare, &["-n", "sh", "-c", &script]),
            &timings_with(&[]),
        );
        assert_eq!(outcome.status, "exit 0", "{outcome}");
        if outcome.line("effect accepted") != configured() {
            failures.push(format!(
                "{variant}: accepted socket reads {}, expected {}",
                outcome.line("effect accepted"),
                configured()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
