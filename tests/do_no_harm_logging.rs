//! Do no harm (issue 10), part 2: the library's diagnostics never block, signal or misdirect
//! the program. The fixture `tests/fixtures/harm_log.c` prints errno as main found it and its
//! SIGPIPE disposition first, then makes sockets; each test runs it without and with the
//! library (KEEPALIVE_LOG=debug or a load-time line) with stderr in a hostile state:
//!
//! - a pipe nobody reads (a full pipe must not stall the program),
//! - a pipe whose reader is gone (no SIGPIPE, with the default disposition),
//! - fd 2 closed by the program, so that a socket takes the number (the library's text must
//!   never reach the peer, and a write to an unconnected TCP socket on fd 2 raises SIGPIPE),
//! - fd 2 closed before exec (a load-time line must not leave EBADF in errno at main),
//!
//! and a very long bad value prints one short line of the usual shape.

mod common;

use std::time::Duration;

use common::*;

fn fixture(scratch: &TempDir) -> std::path::PathBuf {
    compile_program("harm_log.c", "harm_log", scratch)
}

fn debug(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut vars = timings_with(&[("KEEPALIVE_LOG", "debug")]);
    vars.extend_from_slice(extra);
    vars
}

/// A name, the fixture's arguments and the variables of both runs.
type Case<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>);

/// Runs each (name, args, variables) without and with the library, stderr as given; fails
/// with every difference, and when the control run did not print `sigpipe=default` (the test
/// would prove nothing about SIGPIPE then).
fn assert_cases(cases: &[Case], stderr: Stderr, limit: Duration) {
    let scratch = TempDir::new("harm-log");
    let program = fixture(&scratch);
    let mut failures = Vec::new();
    for (name, args, vars) in cases {
        let run = Run::new(&program, args);
        let pair = Differential::run_limited(&run, vars, stderr, limit);
        assert_eq!(pair.without.status, "exit 0", "{name}\n{}", pair.without);
        assert!(
            pair.without
                .stdout
                .starts_with("errno at main=0\nsigpipe=default\n"),
            "{name}: control run\n{}",
            pair.without
        );
        if let Some(report) = pair.difference(name) {
            failures.push(report);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_full_stderr_pipe_nobody_reads_does_not_stall_the_program() {
    // 5000 debug lines are far more than a pipe holds (64 KiB); without the library the
    // program finishes in milliseconds. With it, it must finish too (dropping lines is fine).
    assert_cases(
        &[
            ("5000 sockets, debug", vec!["sockets", "5000"], debug(&[])),
            (
                "1000 connections, debug, ports and nets",
                vec!["pairs", "1000"],
                debug(&[
                    ("KEEPALIVE_PORTS", "1-65535"),
                    ("KEEPALIVE_NETS", "127.0.0.0/8"),
                    ("KEEPALIVE_OVERRIDE", "yes"),
                ]),
            ),
        ],
        Stderr::UnreadPipe,
        Duration::from_secs(15),
    );
}

#[test]
fn a_stderr_pipe_without_reader_raises_no_sigpipe() {
    // SIGPIPE has its default disposition (the fixture checks): a write of the library to the
    // broken pipe would kill the program. Without the library it never writes to stderr.
    assert_cases(
        &[
            (
                "debug lines while running",
                vec!["sockets", "50"],
                debug(&[]),
            ),
            (
                "info line at load",
                vec!["nothing"],
                vec![("KEEPALIVE_LOG", "info")],
            ),
            (
                "error line at load (bad value)",
                vec!["nothing"],
                vec![("KEEPIDLE", "1e3")],
            ),
            (
                "debug lines, override yes, filters",
                vec!["pairs", "20"],
                debug(&[
                    ("KEEPALIVE_OVERRIDE", "yes"),
                    ("KEEPALIVE_PORTS", "1-65535"),
                ]),
            ),
        ],
        Stderr::BrokenPipe,
        LIMIT,
    );
}

/// The configurations of the fd-2 tests: every one logs a line for the socket on fd 2.
fn fd2_configurations() -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    vec![
        ("debug", debug(&[])),
        (
            "debug, override yes",
            debug(&[("KEEPALIVE_OVERRIDE", "yes")]),
        ),
        (
            "debug, ports, override tighten",
            debug(&[
                ("KEEPALIVE_PORTS", "1-65535"),
                ("KEEPALIVE_OVERRIDE", "tighten"),
            ]),
        ),
        (
            "debug, nets, override yes",
            debug(&[
                ("KEEPALIVE_NETS", "127.0.0.0/8"),
                ("KEEPALIVE_OVERRIDE", "yes"),
            ]),
        ),
    ]
}

fn fd2_case(scenario: &str, received: &str) {
    let cases: Vec<_> = fd2_configurations()
        .into_iter()
        .map(|(name, vars)| (name, vec![scenario], vars))
        .collect();
    assert_cases(&cases, Stderr::Captured, LIMIT);
    // And the peer got exactly the program's bytes (the differential already says so; this
    // names the defect when it is back).
    let scratch = TempDir::new("harm-log-fd2");
    let program = fixture(&scratch);
    let out = Run::new(&program, &[scenario])
        .preload()
        .envs(&debug(&[("KEEPALIVE_OVERRIDE", "yes")]))
        .outcome(Stderr::Captured, LIMIT);
    assert_eq!(
        out.line(received),
        "received 5 bytes: \"hello\"",
        "the library wrote to the socket on fd 2\n{out}"
    );
}

#[test]
fn the_debug_log_never_reaches_an_accepted_connection_on_fd_2() {
    fd2_case("fd2-accepted", "client");
}

#[test]
fn the_debug_log_never_writes_to_a_client_socket_on_fd_2() {
    // A write to the unconnected TCP socket on fd 2 (right after socket()) fails with EPIPE
    // and raises SIGPIPE; once connected, the text would reach the peer.
    fd2_case("fd2-client", "server side");
}

#[test]
fn a_load_time_line_with_fd_2_closed_leaves_errno_at_main_alone() {
    // Started with fd 2 closed (as `2>&-` does): errno at the start of main is 0 without the
    // library, and must stay 0 when the library tried to print at load.
    assert_cases(
        &[
            ("info", vec!["nothing"], vec![("KEEPALIVE_LOG", "info")]),
            (
                "bad value",
                vec!["nothing"],
                vec![("KEEPIDLE", "1e3"), ("KEEPCNT", "0")],
            ),
            (
                "info, KEEPALIVE_INHERIT=no",
                vec!["nothing"],
                vec![("KEEPALIVE_LOG", "info"), ("KEEPALIVE_INHERIT", "no")],
            ),
            (
                "KEEPALIVE=off, info",
                vec!["nothing"],
                vec![("KEEPALIVE", "off"), ("KEEPALIVE_LOG", "info")],
            ),
            (
                "program not listed, info",
                vec!["nothing"],
                vec![
                    ("KEEPALIVE_PROGRAMS", "redis-server"),
                    ("KEEPALIVE_LOG", "info"),
                ],
            ),
            ("debug, sockets", vec!["sockets", "3"], debug(&[])),
        ],
        Stderr::Closed,
        LIMIT,
    );
}

#[test]
fn a_very_long_bad_value_prints_one_short_line_of_the_usual_shape() {
    let scratch = TempDir::new("harm-log-long");
    let program = fixture(&scratch);
    let long_x = "x".repeat(10_000);
    let long_path = "x/".repeat(5_000);
    let cases = [
        ("KEEPIDLE", long_x.as_str()),
        ("KEEPINTVL", long_x.as_str()),
        ("KEEPALIVE_PORTS", long_x.as_str()),
        ("KEEPALIVE_NETS", long_x.as_str()),
        ("KEEPALIVE_PROGRAMS", long_path.as_str()),
    ];
    let mut failures = Vec::new();
    for (name, value) in cases {
        let run = Run::new(&program, &["nothing"]);
        let pair = Differential::run(&run, &[(name, value)], Stderr::Captured);
        if let Some(report) = pair.difference(name) {
            failures.push(report);
        }
        let stderr = &pair.with.stderr;
        let lines: Vec<&str> = stderr.lines().collect();
        let prefix = format!("keepalive-preload: {name}=\"");
        let shape_ok = match lines.as_slice() {
            [line] => {
                line.starts_with(&prefix) && line.ends_with("; not applied") && line.len() < 400
            }
            _ => false,
        };
        if !shape_ok {
            let shown: Vec<String> = lines
                .iter()
                .map(|line| {
                    let head: String = line.chars().take(120).collect();
                    let tail: String = line
                        .chars()
                        .rev()
                        .take(60)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    format!("  {} bytes: {head:?} … {tail:?}", line.len())
                })
                .collect();
            failures.push(format!(
                "{name}=<{} bytes>: expected exactly one line starting with {prefix:?}, ending \
                 with \"; not applied\", shorter than 400 bytes; stderr has {} line(s):\n{}",
                value.len(),
                lines.len(),
                shown.join("\n")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
