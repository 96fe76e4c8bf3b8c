//! Every variable round-trips: set it, run `kp-probe` under the library, read the option back
//! with getsockopt. Values differ from the kernel defaults; IPv4 and IPv6; listener, connected
//! and accepted sockets.

mod common;

use common::*;

/// Every TCP socket shape `report` knows.
const TCP_KINDS: [&str; 6] = [
    "tcp4",
    "tcp4-proto",
    "tcp4-flags",
    "tcp6",
    "tcp6-proto",
    "tcp6-flags",
];

fn tcp4_under(vars: &[(&str, &str)]) -> String {
    probe(&["report", "tcp4"])
        .preload()
        .envs(vars)
        .run_ok()
        .line("tcp4")
        .to_owned()
}

#[test]
fn without_the_library_sockets_keep_kernel_defaults() {
    let out = probe(&["report", "tcp4", "tcp6"]).envs(&TIMINGS).run_ok();
    assert_eq!(out.line("tcp4"), untouched(), "{out}");
    assert_eq!(out.line("tcp6"), untouched(), "{out}");
}

#[test]
fn keepalive_is_on_by_default_with_kernel_timings() {
    assert_eq!(tcp4_under(&[]), keepalive_only());
}

#[test]
fn master_switch_values() {
    for on in ["on", "ON", "1", "yes", "Yes", "true", "TRUE"] {
        assert_eq!(
            tcp4_under(&[("KEEPALIVE", on), ("KEEPIDLE", "61")]),
            {
                let (_, intvl, cnt) = kernel_defaults();
                options(1, 61, intvl, cnt, 0)
            },
            "KEEPALIVE={on}"
        );
    }
    for off in ["off", "OFF", "0", "no", "False"] {
        let mut vars = vec![("KEEPALIVE", off)];
        vars.extend(TIMINGS);
        assert_eq!(tcp4_under(&vars), untouched(), "KEEPALIVE={off}");
    }
}

#[test]
fn each_timing_alone() {
    let (idle, intvl, cnt) = kernel_defaults();
    let user_timeout = |ms| options(1, idle, intvl, cnt, ms);
    let cases: &[(&str, &str, String)] = &[
        ("KEEPIDLE", "61", options(1, 61, intvl, cnt, 0)),
        ("KEEPIDLE", "90s", options(1, 90, intvl, cnt, 0)),
        ("KEEPIDLE", "2m", options(1, 120, intvl, cnt, 0)),
        ("KEEPIDLE", "32767", options(1, 32767, intvl, cnt, 0)),
        ("KEEPIDLE", "1", options(1, 1, intvl, cnt, 0)),
        ("KEEPINTVL", "7", options(1, idle, 7, cnt, 0)),
        ("KEEPINTVL", "30s", options(1, idle, 30, cnt, 0)),
        ("KEEPINTVL", "1m", options(1, idle, 60, cnt, 0)),
        ("KEEPCNT", "4", options(1, idle, intvl, 4, 0)),
        ("KEEPCNT", "1", options(1, idle, intvl, 1, 0)),
        ("KEEPCNT", "127", options(1, idle, intvl, 127, 0)),
        ("KEEPALIVE_USER_TIMEOUT", "45000", user_timeout(45000)),
        ("KEEPALIVE_USER_TIMEOUT", "1500ms", user_timeout(1500)),
        ("KEEPALIVE_USER_TIMEOUT", "10s", user_timeout(10000)),
        ("KEEPALIVE_USER_TIMEOUT", "2m", user_timeout(120000)),
    ];
    for (name, value, expected) in cases {
        assert_eq!(&tcp4_under(&[(name, value)]), expected, "{name}={value}");
    }
}

#[test]
fn user_timeout_auto_uses_effective_values() {
    let (idle, intvl, cnt) = kernel_defaults();
    let all = tcp4_under(&[
        ("KEEPIDLE", "61"),
        ("KEEPINTVL", "7"),
        ("KEEPCNT", "4"),
        ("KEEPALIVE_USER_TIMEOUT", "auto"),
    ]);
    assert_eq!(all, options(1, 61, 7, 4, (61 + 7 * 4) * 1000));
    let idle_only = tcp4_under(&[("KEEPIDLE", "60"), ("KEEPALIVE_USER_TIMEOUT", "AUTO")]);
    assert_eq!(
        idle_only,
        options(1, 60, intvl, cnt, (60 + intvl * cnt) * 1000)
    );
    let none = tcp4_under(&[("KEEPALIVE_USER_TIMEOUT", "auto")]);
    assert_eq!(
        none,
        options(1, idle, intvl, cnt, (idle + intvl * cnt) * 1000)
    );
}

#[test]
fn every_tcp_socket_shape_is_configured() {
    let out = probe(&{
        let mut args = vec!["report"];
        args.extend(TCP_KINDS);
        args
    })
    .preload()
    .envs(&TIMINGS)
    .run_ok();
    for kind in TCP_KINDS {
        assert_eq!(out.line(kind), configured(), "{kind}\n{out}");
    }
}

fn assert_pair_configured(args: &[&str]) {
    let out = probe(args).preload().envs(&TIMINGS).run_ok();
    for role in ["listener", "client", "accepted"] {
        assert_eq!(out.line(role), configured(), "{role} of {args:?}\n{out}");
    }
}

#[test]
fn listener_connected_and_accepted_ipv4() {
    assert_pair_configured(&["pair"]);
    assert_pair_configured(&["pair", "--accept4"]);
}

#[test]
fn listener_connected_and_accepted_ipv6() {
    assert_pair_configured(&["pair", "--v6"]);
    assert_pair_configured(&["pair", "--v6", "--accept4"]);
}

#[test]
fn dual_stack_listener_with_ipv4_client() {
    assert_pair_configured(&["pair", "--listen", "::", "--connect", "127.0.0.1"]);
}

#[test]
fn nonblocking_connect_keeps_einprogress_and_is_configured() {
    let out = probe(&["pair", "--nonblock"])
        .preload()
        .envs(&TIMINGS)
        .run_ok();
    let bare = probe(&["pair", "--nonblock"]).run_ok();
    assert_eq!(out.line("connect"), bare.line("connect"));
    for role in ["listener", "client", "accepted"] {
        assert_eq!(out.line(role), configured(), "{role}\n{out}");
    }
}

#[test]
fn values_are_read_once_not_per_socket() {
    // The probe changes KEEPIDLE in its own environment between two sockets: the second
    // socket must still get the value read at load.
    let out = probe(&[
        "report", "tcp4", "+", "setenv", "KEEPIDLE", "99", "+", "report", "tcp4",
    ])
    .preload()
    .envs(&TIMINGS)
    .run_ok();
    assert_eq!(
        out.stdout,
        format!("tcp4 {0}\ntcp4 {0}\n", configured()),
        "{out}"
    );
}

#[test]
fn log_levels() {
    let args = ["report", "tcp4", "tcp6", "udp4", "unix-stream"];
    let bare = probe(&args).run_ok();
    let expected_stdout = bare.stdout.replace(&untouched(), &configured());
    for (level, lines) in [("off", 0), ("error", 0), ("info", 1)] {
        let out = probe(&args)
            .preload()
            .envs(&TIMINGS)
            .env("KEEPALIVE_LOG", level)
            .run();
        out.assert_success();
        assert_eq!(out.stdout, expected_stdout, "{out}");
        assert_eq!(out.library_lines().len(), lines, "{level}\n{out}");
        assert_eq!(out.stderr.lines().count(), lines, "{level}\n{out}");
    }
    // debug: the info line, then one line per TCP socket configured (none for the others).
    let out = probe(&args)
        .preload()
        .envs(&TIMINGS)
        .env("KEEPALIVE_LOG", "debug")
        .run();
    out.assert_success();
    assert_eq!(out.stdout, expected_stdout, "{out}");
    let configured_lines = out
        .library_lines()
        .iter()
        .filter(|line| line.contains("configured"))
        .count();
    assert_eq!(configured_lines, 2, "{out}");
}
