//! The hooks decide some calls from what the library learnt of the process at earlier ones
//! (which of the program's setsockopt calls can need work; the accept witness once it alone
//! decides), so the same calls, made again and again in one process and interleaved, must give
//! the same result every time: the first time (learning) and later (deciding from it).

mod common;

use common::*;

/// `repeated_calls ROUNDS` under the library with `vars`; each round's lines (without the
/// `round N` line), checked to be the same in every round.
fn every_round(vars: &[(&str, &str)]) -> Vec<String> {
    let scratch = TempDir::new("repeated-calls");
    let program = compile_program("repeated_calls.c", "repeated_calls", &scratch);
    let out = Run::new(program, &["4"]).envs(vars).preload().run_ok();
    let rounds: Vec<Vec<String>> = out
        .stdout
        .split("round ")
        .skip(1)
        .map(|round| round.lines().skip(1).map(str::to_owned).collect())
        .collect();
    assert_eq!(rounds.len(), 4, "{out}");
    for round in &rounds {
        assert_eq!(round, &rounds[0], "every round the same\n{out}");
    }
    rounds[0].clone()
}

fn accepted(kind: &str, options: String) -> String {
    format!("accepted {kind} {options}")
}

fn expected(listeners: [String; 4], program_set: String) -> Vec<String> {
    let [plain, user_timeout, idle, keepalive_off] = listeners;
    vec![
        accepted("plain", plain),
        accepted("user-timeout", user_timeout),
        accepted("idle", idle),
        accepted("keepalive-off", keepalive_off),
        "program TCP_KEEPIDLE=30 ret=0".to_owned(),
        format!("program-set {program_set}"),
        "unix accepted=yes errno=unchanged".to_owned(),
    ]
}

#[test]
fn every_option_planned_the_user_timeout_the_witness() {
    // KEEPALIVE_OVERRIDE=no: what the program set on a listener stays on what it accepts.
    assert_eq!(
        every_round(&TIMINGS),
        expected(
            [
                configured(),
                options(1, 61, 7, 4, 1000),
                options(1, 30, 7, 4, 45000),
                options(0, 61, 7, 4, 45000),
            ],
            options(1, 30, 7, 4, 45000),
        )
    );
}

#[test]
fn timings_without_user_timeout_the_idle_time_the_witness() {
    let vars = [("KEEPIDLE", "61"), ("KEEPINTVL", "7"), ("KEEPCNT", "4")];
    assert_eq!(
        every_round(&vars),
        expected(
            [
                options(1, 61, 7, 4, 0),
                options(1, 61, 7, 4, 1000),
                options(1, 30, 7, 4, 0),
                options(0, 61, 7, 4, 0),
            ],
            options(1, 30, 7, 4, 0),
        )
    );
}

#[test]
fn keepalive_alone_the_witness_says_nothing_of_the_protocol() {
    let (idle, intvl, cnt) = kernel_defaults();
    assert_eq!(
        every_round(&[]),
        expected(
            [
                options(1, idle, intvl, cnt, 0),
                options(1, idle, intvl, cnt, 1000),
                options(1, 30, intvl, cnt, 0),
                options(0, idle, intvl, cnt, 0),
            ],
            options(1, 30, intvl, cnt, 0),
        )
    );
}

#[test]
fn override_yes_replaces_the_programs_values_every_time() {
    let mut vars = TIMINGS.to_vec();
    vars.push(("KEEPALIVE_OVERRIDE", "yes"));
    assert_eq!(
        every_round(&vars),
        expected(
            [configured(), configured(), configured(), configured()],
            configured()
        )
    );
}

#[test]
fn under_an_address_filter_that_takes_loopback_the_same() {
    let (_, intvl, cnt) = kernel_defaults();
    for filter in [
        ("KEEPALIVE_PORTS", "1-65535"),
        ("KEEPALIVE_NETS", "127.0.0.1/32"),
    ] {
        let mut vars = TIMINGS.to_vec();
        vars.push(filter);
        assert_eq!(
            every_round(&vars),
            expected(
                [
                    configured(),
                    options(1, 61, 7, 4, 1000),
                    options(1, 30, 7, 4, 45000),
                    options(0, 61, 7, 4, 45000),
                ],
                // A socket neither connected nor listening is judged later, at connect/listen.
                options(0, 30, intvl, cnt, 0),
            ),
            "{filter:?}"
        );
    }
}
