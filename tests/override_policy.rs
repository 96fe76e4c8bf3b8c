//! KEEPALIVE_OVERRIDE against a program that sets its own values: the Redis pattern (accept4,
//! then setsockopt SO_KEEPALIVE and the timings), a program that turns SO_KEEPALIVE off, and
//! one whose values the kernel rejects.
//!
//! Configured throughout ([`TIMINGS`]): idle 61, interval 7, count 4, user timeout 45000 ms.

mod common;

use common::*;

/// `kp-probe program-sets ARGS` under the library with [`TIMINGS`] and `policy`; the output.
fn program_sets(policy: &str, args: &[&str]) -> Output {
    let mut all = vec!["program-sets", "--accept4"];
    all.extend(args);
    probe(&all)
        .preload()
        .envs(&TIMINGS)
        .env("KEEPALIVE_OVERRIDE", policy)
        .run_ok()
}

/// Redis >= 7.0.9 on a cluster-bus link: keepalive on, 30/10/3 (and a user timeout).
const REDIS_BUS: [&str; 10] = [
    "--keepalive",
    "1",
    "--idle",
    "30",
    "--intvl",
    "10",
    "--cnt",
    "3",
    "--user-timeout",
    "5000",
];

/// Every setsockopt the program made returned 0 with errno untouched.
fn assert_all_succeeded(out: &Output) {
    let results: Vec<&str> = out
        .stdout
        .lines()
        .filter(|line| line.starts_with("setsockopt "))
        .collect();
    assert!(!results.is_empty(), "{out}");
    for line in results {
        assert!(line.ends_with(" ret=0 errno=unchanged"), "{line}\n{out}");
    }
}

#[test]
fn no_lets_the_program_win() {
    let out = program_sets("no", &REDIS_BUS);
    assert_all_succeeded(&out);
    assert_eq!(out.line("accepted"), options(1, 30, 10, 3, 5000), "{out}");
}

#[test]
fn unset_policy_is_no() {
    let mut args = vec!["program-sets", "--accept4"];
    args.extend(REDIS_BUS);
    let out = probe(&args).preload().envs(&TIMINGS).run_ok();
    assert_eq!(out.line("accepted"), options(1, 30, 10, 3, 5000), "{out}");
}

#[test]
fn yes_applies_the_configured_values() {
    let out = program_sets("yes", &REDIS_BUS);
    assert_all_succeeded(&out);
    assert_eq!(out.line("accepted"), configured(), "{out}");
}

#[test]
fn tighten_keeps_the_smaller_value() {
    // 30 < 61 kept, 10 > 7 tightened, 3 < 4 kept, 5000 < 45000 kept.
    let out = program_sets("tighten", &REDIS_BUS);
    assert_all_succeeded(&out);
    assert_eq!(out.line("accepted"), options(1, 30, 7, 3, 5000), "{out}");
    // Redis client links: 300/100/3, no user timeout: 61, 7, 3.
    let out = program_sets(
        "tighten",
        &["--idle", "300", "--intvl", "100", "--cnt", "3"],
    );
    assert_eq!(out.line("accepted"), options(1, 61, 7, 3, 45000), "{out}");
}

#[test]
fn tighten_treats_user_timeout_zero_as_infinite() {
    let out = program_sets("tighten", &["--user-timeout", "0"]);
    assert_all_succeeded(&out);
    assert_eq!(out.line("accepted"), configured(), "{out}");
    let out = program_sets("no", &["--user-timeout", "0"]);
    assert_eq!(out.line("accepted"), options(1, 61, 7, 4, 0), "{out}");
}

#[test]
fn keepalive_off_by_the_program() {
    let off = ["--keepalive", "0"];
    let out = program_sets("no", &off);
    assert_all_succeeded(&out);
    assert_eq!(out.line("accepted"), options(0, 61, 7, 4, 45000), "{out}");
    for policy in ["yes", "tighten"] {
        let out = program_sets(policy, &off);
        assert_all_succeeded(&out);
        assert_eq!(out.line("accepted"), configured(), "{policy}\n{out}");
    }
}

#[test]
fn only_configured_options_are_overridden() {
    for policy in ["yes", "tighten"] {
        let mut args = vec!["program-sets", "--accept4"];
        args.extend(REDIS_BUS);
        let out = probe(&args)
            .preload()
            .env("KEEPINTVL", "7")
            .env("KEEPALIVE_OVERRIDE", policy)
            .run_ok();
        assert_eq!(
            out.line("accepted"),
            options(1, 30, 7, 3, 5000),
            "{policy}\n{out}"
        );
    }
}

#[test]
fn every_target_socket_is_overridden() {
    for target in ["client", "listener", "fresh"] {
        let mut args = vec!["--target", target];
        args.extend(REDIS_BUS);
        let out = program_sets("yes", &args);
        assert_all_succeeded(&out);
        assert_eq!(out.line(target), configured(), "{target}\n{out}");
        let out = program_sets("tighten", &args);
        assert_eq!(
            out.line(target),
            options(1, 30, 7, 3, 5000),
            "{target}\n{out}"
        );
    }
    let mut args = vec!["--v6"];
    args.extend(REDIS_BUS);
    assert_eq!(program_sets("yes", &args).line("accepted"), configured());
}

#[test]
fn values_the_kernel_rejects_still_fail_under_every_policy() {
    let bad = [
        ("--idle", "0"),
        ("--idle", "32768"),
        ("--intvl", "0"),
        ("--cnt", "0"),
        ("--cnt", "128"),
        ("--user-timeout", "-1"),
    ];
    for policy in ["no", "yes", "tighten"] {
        for (flag, value) in bad {
            let out = program_sets(policy, &[flag, value]);
            let result = out
                .stdout
                .lines()
                .find(|line| line.starts_with("setsockopt "))
                .unwrap_or_default();
            assert!(
                result.ends_with(" ret=-1 errno=EINVAL"),
                "{policy} {flag} {value}: {result}\n{out}"
            );
            // The failed call changed nothing: the socket keeps what the library set.
            assert_eq!(out.line("accepted"), configured(), "{out}");
        }
    }
}

/// The program's own call reaches the kernel exactly once, with its own value (so it fails or
/// succeeds exactly as without the library); where the policy replaces the value, the
/// library's call with the chosen one follows it.
#[test]
fn the_programs_setsockopt_reaches_the_kernel_once_unchanged_then_ours_follows() {
    let scratch = TempDir::new("override-strace");
    let mut args = vec!["program-sets", "--accept4"];
    args.extend(REDIS_BUS);
    let program = ["[1]", "[30]", "[10]", "[3]", "[5000]"];
    for (policy, expected) in [
        ("no", program.to_vec()),
        (
            "yes",
            vec![
                "[1]", "[30]", "[61]", "[10]", "[7]", "[3]", "[4]", "[5000]", "[45000]",
            ],
        ),
        (
            "tighten",
            vec!["[1]", "[30]", "[10]", "[7]", "[3]", "[5000]"],
        ),
    ] {
        let run = probe(&args)
            .preload()
            .envs(&TIMINGS)
            .env("KEEPALIVE_OVERRIDE", policy);
        let (out, calls) = strace_setsockopt(&run, &scratch);
        out.assert_success();
        // Listener and client get five calls each from the library; then the accepted
        // socket's: the program's five, each followed by ours where the policy replaces it.
        assert_eq!(calls.len(), 10 + expected.len(), "{policy}: {calls:#?}");
        for (call, value) in calls[10..].iter().zip(&expected) {
            assert!(
                call.contains(&format!(", {value}, 4) = 0")),
                "{policy}: {call}\n{calls:#?}"
            );
        }
    }
}
