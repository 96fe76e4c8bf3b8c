//! Adversarial review: every hooked call on every kind of descriptor, the program's own
//! setsockopt of each managed option at boundary values and lengths (the value at the very
//! end of a readable page), and connection life cycles, without and with the library under
//! each KEEPALIVE_OVERRIDE policy and filter: return values, errno and every non-`effect`
//! line must be identical (`tests/fixtures/adv_calls.c`). And the override rule itself, option
//! by option, at the edges of each option's range.

mod common;

use common::*;

fn fixture(scratch: &TempDir) -> std::path::PathBuf {
    compile_program("adv_calls.c", "adv_calls", scratch)
}

fn configurations() -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    vec![
        ("no variables", vec![]),
        ("override no", timings_with(&[])),
        (
            "override yes",
            timings_with(&[("KEEPALIVE_OVERRIDE", "yes")]),
        ),
        (
            "override tighten",
            timings_with(&[("KEEPALIVE_OVERRIDE", "tighten")]),
        ),
        (
            "override yes, nets",
            timings_with(&[
                ("KEEPALIVE_OVERRIDE", "yes"),
                ("KEEPALIVE_NETS", "127.0.0.0/8,::1"),
            ]),
        ),
        (
            "override tighten, ports, debug",
            timings_with(&[
                ("KEEPALIVE_OVERRIDE", "tighten"),
                ("KEEPALIVE_PORTS", "1-65535"),
                ("KEEPALIVE_LOG", "debug"),
            ]),
        ),
    ]
}

#[test]
fn every_hooked_call_on_every_kind_of_descriptor_is_unchanged() {
    let scratch = TempDir::new("adv-kinds");
    let program = fixture(&scratch);
    assert_same_under(
        &Run::new(&program, &["kinds"]),
        &configurations(),
        Stderr::Captured,
    );
}

#[test]
fn setsockopt_at_boundary_values_and_lengths_is_unchanged() {
    let scratch = TempDir::new("adv-boundaries");
    let program = fixture(&scratch);
    assert_same_under(
        &Run::new(&program, &["boundaries"]),
        &configurations(),
        Stderr::Captured,
    );
}

#[test]
fn connection_life_cycles_are_unchanged() {
    let scratch = TempDir::new("adv-lifecycle");
    let program = fixture(&scratch);
    assert_same_under(
        &Run::new(&program, &["lifecycle"]),
        &configurations(),
        Stderr::Captured,
    );
}

/// What a TCP socket the filters target reads back after the program set `asked`.
fn expected(policy: &str, option: &str, asked: i64) -> i64 {
    let configured = match option {
        "SO_KEEPALIVE" => 1,
        "TCP_KEEPIDLE" => 61,
        "TCP_KEEPINTVL" => 7,
        "TCP_KEEPCNT" => 4,
        "TCP_USER_TIMEOUT" => 45000,
        _ => panic!("unknown option {option}"),
    };
    // The kernel reads SO_KEEPALIVE back as 0 or 1.
    let kernel = |value: i64| {
        if option == "SO_KEEPALIVE" {
            i64::from(value != 0)
        } else {
            value
        }
    };
    match policy {
        "no" => kernel(asked),
        "yes" => configured,
        "tighten" => match option {
            "SO_KEEPALIVE" => 1,
            "TCP_USER_TIMEOUT" if asked == 0 => configured,
            _ => asked.min(configured),
        },
        _ => panic!("unknown policy {policy}"),
    }
}

#[test]
fn the_override_rule_holds_for_every_option_at_its_edges() {
    let scratch = TempDir::new("adv-policy");
    let program = fixture(&scratch);
    let mut failures = Vec::new();
    for policy in ["no", "yes", "tighten"] {
        for filter in [
            None,
            Some(("KEEPALIVE_NETS", "127.0.0.0/8")),
            Some(("KEEPALIVE_PORTS", "1-65535")),
        ] {
            let mut vars = timings_with(&[("KEEPALIVE_OVERRIDE", policy)]);
            vars.extend(filter);
            let out = Run::new(&program, &["policy"])
                .envs(&vars)
                .preload()
                .outcome(Stderr::Captured, LIMIT);
            assert_eq!(out.status, "exit 0", "{out}");
            let mut seen = 0;
            for line in out.stdout.lines() {
                let Some(rest) = line.strip_prefix("effect policy ") else {
                    continue;
                };
                seen += 1;
                let fields: Vec<&str> = rest.split(' ').collect();
                let number = |field: &str, key: &str| -> i64 {
                    field
                        .strip_prefix(key)
                        .and_then(|value| value.parse().ok())
                        .unwrap_or_else(|| panic!("bad line {line}"))
                };
                let (option, asked, read) = (
                    fields[0],
                    number(fields[1], "asked="),
                    number(fields[2], "read="),
                );
                let want = expected(policy, option, asked);
                if read != want {
                    failures.push(format!(
                        "override {policy}, {filter:?}: {option} asked {asked}: read {read}, expected {want}"
                    ));
                }
            }
            assert_eq!(seen, 20, "{out}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_musl_program_sees_the_same_calls_and_the_same_override_rule() {
    let scratch = TempDir::new("adv-musl");
    let program = compile_program_with(
        ("musl-gcc", "musl-tools"),
        "adv_calls.c",
        "adv_calls_musl",
        &scratch,
    );
    for scenario in ["kinds", "lifecycle", "policy"] {
        assert_same_under(
            &Run::new(&program, &[scenario]),
            &configurations(),
            Stderr::Captured,
        );
    }
    let out = Run::new(&program, &["policy"])
        .envs(&timings_with(&[("KEEPALIVE_OVERRIDE", "tighten")]))
        .preload()
        .outcome(Stderr::Captured, LIMIT);
    assert!(
        out.stdout
            .contains("effect policy TCP_KEEPIDLE asked=32767 read=61\n")
            && out
                .stdout
                .contains("effect policy TCP_USER_TIMEOUT asked=1000 read=1000\n"),
        "{out}"
    );
}

#[test]
fn unix_and_udp_sockets_cost_no_extra_system_call() {
    // README ("Which sockets, and when"): "UDP, RAW, SEQPACKET, MPTCP, SCTP and UNIX sockets,
    // and socketpairs, pass straight through with no extra syscall." The fixture uses only a
    // UNIX stream listener, its client and accepted socket, and a connected UDP socket.
    let scratch = TempDir::new("adv-non-tcp");
    let program = fixture(&scratch);
    let trace = "socket,getsockopt,setsockopt,getsockname,getpeername";
    let bare = Run::new(&program, &["non-tcp"]);
    let (control, control_calls) = strace(&bare, &scratch, trace);
    assert_eq!(control.code, Some(0), "{control}");
    let mut failures = Vec::new();
    for (name, vars) in [
        ("no variables", vec![]),
        ("KEEPALIVE_NETS", vec![("KEEPALIVE_NETS", "127.0.0.0/8")]),
        ("KEEPALIVE_PORTS", vec![("KEEPALIVE_PORTS", "1-65535")]),
    ] {
        let (out, calls) = strace(&bare.clone().envs(&vars).preload(), &scratch, trace);
        assert_eq!(out.code, Some(0), "{out}");
        if calls.len() != control_calls.len() {
            let extra: Vec<&String> = calls
                .iter()
                .filter(|line| {
                    let call = line.split_once(' ').map_or(line.as_str(), |(_, rest)| rest);
                    !control_calls.iter().any(|c| c.ends_with(call.trim_start()))
                })
                .collect();
            failures.push(format!(
                "{name}: {} calls without the library, {} with it; extra:\n  {}",
                control_calls.len(),
                calls.len(),
                extra
                    .iter()
                    .map(|line| line.as_str())
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
