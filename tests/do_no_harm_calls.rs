//! Do no harm (issue 10), parts 8 and 9: every hooked call reaches the kernel exactly once,
//! and hooks are safe around fork() in a multi-threaded program.
//!
//! - `harm_misc calls` makes one of each hooked call (succeeding and failing, on TCP, UDP
//!   and UNIX sockets) under `strace -f`: the socket, connect, listen, accept and accept4
//!   calls are the same with and without the library, the program's own setsockopt calls
//!   appear exactly as often, and the library's extra setsockopt calls are only the managed
//!   options on TCP sockets, all succeeding.
//! - `harm_misc threads-fork 200`: two threads loop over hooked calls while the main thread
//!   forks 200 children that make sockets and exit; nothing deadlocks (20 s limit).
//! - `harm_misc cancel`, built with `-fexceptions`: threads blocked in accept() and accept4()
//!   are cancelled; their cleanup handlers run, which takes unwinding through the library's
//!   frames (its unwind tables are what makes that work: a build without them fails here).

mod common;

use std::collections::BTreeMap;

use common::*;

/// The options the library may set itself, as strace names them.
const MANAGED: [&str; 5] = [
    "SO_KEEPALIVE",
    "TCP_KEEPIDLE",
    "TCP_KEEPINTVL",
    "TCP_KEEPCNT",
    "TCP_USER_TIMEOUT",
];

/// A strace line without its pid and with port numbers (ephemeral, different in each run)
/// replaced by `P`.
fn normalized(line: &str) -> String {
    let line = line
        .split_once(' ')
        .filter(|(pid, _)| pid.chars().all(|c| c.is_ascii_digit()))
        .map_or(line, |(_, rest)| rest)
        .trim_start();
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find("htons(") {
        out.push_str(&rest[..at + "htons(".len()]);
        rest = &rest[at + "htons(".len()..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        out.push('P');
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

fn call_name(line: &str) -> &str {
    line.split('(').next().unwrap_or("")
}

/// The fd a call is made on (first argument).
fn first_argument(line: &str) -> &str {
    line.split_once('(')
        .map_or("", |(_, rest)| rest.split([',', ')']).next().unwrap_or(""))
}

fn counts(lines: &[String]) -> BTreeMap<String, usize> {
    let mut map = BTreeMap::new();
    for line in lines {
        *map.entry(line.clone()).or_insert(0) += 1;
    }
    map
}

#[test]
fn every_hooked_call_reaches_the_kernel_exactly_once() {
    let scratch = TempDir::new("harm-strace");
    let program = compile_program("harm_misc.c", "harm_misc", &scratch);
    let trace = "socket,connect,listen,accept,accept4,setsockopt";
    let bare_run = Run::new(&program, &["calls"]);
    let (bare, bare_calls) = strace(&bare_run, &scratch, trace);
    assert_eq!(bare.code, Some(0), "{bare}");
    let tcp_fds: Vec<String> = bare
        .line("tcp fds")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let bare_calls: Vec<String> = bare_calls.iter().map(|line| normalized(line)).collect();
    let mut failures = Vec::new();
    for (name, vars) in [
        ("override no", timings_with(&[])),
        (
            "override yes",
            timings_with(&[("KEEPALIVE_OVERRIDE", "yes")]),
        ),
        (
            "ports and nets, override tighten, debug",
            timings_with(&[
                ("KEEPALIVE_PORTS", "1-65535"),
                ("KEEPALIVE_NETS", "127.0.0.0/8,::ffff:127.0.0.0/104"),
                ("KEEPALIVE_OVERRIDE", "tighten"),
                ("KEEPALIVE_LOG", "debug"),
            ]),
        ),
    ] {
        let run = bare_run.clone().preload().envs(&vars);
        let (under, calls) = strace(&run, &scratch, trace);
        let calls: Vec<String> = calls.iter().map(|line| normalized(line)).collect();
        if under.stdout != bare.stdout || under.code != bare.code {
            failures.push(format!(
                "{name}: the program's output differs\n{}",
                differing_lines(&bare.stdout, &under.stdout)
            ));
            continue;
        }
        // Everything but setsockopt: the very same calls, in the same order.
        let others = |lines: &[String]| -> Vec<String> {
            lines
                .iter()
                .filter(|line| call_name(line) != "setsockopt")
                .cloned()
                .collect()
        };
        if others(&bare_calls) != others(&calls) {
            failures.push(format!(
                "{name}: socket/connect/listen/accept/accept4 calls differ\n{}",
                differing_lines(&others(&bare_calls).join("\n"), &others(&calls).join("\n"))
            ));
        }
        // setsockopt: a call the library may also make (a managed option on a TCP socket)
        // may appear more often with the library (and with another value under override);
        // every other call exactly as often; and every extra call is such an option and
        // succeeds.
        let managed = |line: &str| {
            tcp_fds.iter().any(|fd| fd == first_argument(line))
                && MANAGED
                    .iter()
                    .any(|option| line.contains(&format!(", {option}, ")))
        };
        let setsockopts = |lines: &[String]| -> Vec<String> {
            lines
                .iter()
                .filter(|line| call_name(line) == "setsockopt")
                .cloned()
                .collect()
        };
        let (before, after) = (
            counts(&setsockopts(&bare_calls)),
            counts(&setsockopts(&calls)),
        );
        for (line, count) in &before {
            let now = after.get(line).copied().unwrap_or(0);
            if !managed(line) && now != *count {
                failures.push(format!(
                    "{name}: {line}: {count} time(s) without, {now} with"
                ));
            }
        }
        for (line, count) in &after {
            let was = before.get(line).copied().unwrap_or(0);
            if *count > was && !(managed(line) && line.ends_with("= 0")) {
                failures.push(format!(
                    "{name}: extra call with the library ({count} vs {was}): {line}"
                ));
            }
        }
        // A failing call is never repeated or added.
        let failing = |map: &BTreeMap<String, usize>| -> Vec<(String, usize)> {
            map.iter()
                .filter(|(line, _)| line.contains("= -1"))
                .map(|(line, count)| (line.clone(), *count))
                .collect()
        };
        if failing(&before) != failing(&after) {
            failures.push(format!(
                "{name}: failing setsockopt calls differ\nwithout: {:#?}\nwith: {:#?}",
                failing(&before),
                failing(&after)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn forking_while_other_threads_are_in_hooks_never_deadlocks() {
    let scratch = TempDir::new("harm-fork");
    let program = compile_program("harm_misc.c", "harm_misc", &scratch);
    let run = Run::new(&program, &["threads-fork", "200"]);
    assert_same_under(
        &run,
        &[
            ("no variables", vec![]),
            (
                "override yes",
                timings_with(&[("KEEPALIVE_OVERRIDE", "yes")]),
            ),
            (
                "debug, override yes",
                timings_with(&[("KEEPALIVE_OVERRIDE", "yes"), ("KEEPALIVE_LOG", "debug")]),
            ),
            (
                "debug, ports and nets, override tighten",
                timings_with(&[
                    ("KEEPALIVE_PORTS", "1-65535"),
                    ("KEEPALIVE_NETS", "127.0.0.0/8"),
                    ("KEEPALIVE_OVERRIDE", "tighten"),
                    ("KEEPALIVE_LOG", "debug"),
                ]),
            ),
        ],
        Stderr::Captured,
    );
}

#[test]
fn cancelling_a_thread_blocked_in_a_hook_unwinds_through_it() {
    let scratch = TempDir::new("harm-cancel");
    // -fexceptions: pthread_cleanup_push handlers run by unwinding, as C++ destructors do.
    let program = compile_program_flags(
        ("gcc", "gcc"),
        "harm_misc.c",
        "harm_misc",
        &scratch,
        &["-fexceptions"],
    );
    let run = Run::new(&program, &["cancel"]);
    assert_same_under(
        &run,
        &[
            ("no variables", vec![]),
            (
                "timings, debug",
                timings_with(&[("KEEPALIVE_LOG", "debug")]),
            ),
            (
                "ports and nets",
                timings_with(&[
                    ("KEEPALIVE_PORTS", "1-65535"),
                    ("KEEPALIVE_NETS", "127.0.0.0/8"),
                ]),
            ),
        ],
        Stderr::Captured,
    );
}
