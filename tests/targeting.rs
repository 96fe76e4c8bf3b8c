//! Issue 3: port and network filters, the program allow-list and KEEPALIVE_INHERIT=no.
//! Return values and errno under every filter are covered by errno_differential.rs, malformed
//! filter values by bad_input.rs.

mod common;

use std::path::Path;

use common::*;

/// A free port and a KEEPALIVE_PORTS value that matches every port but that one.
fn port_and_everything_else() -> (u16, String) {
    let port = free_port();
    let mut ranges = Vec::new();
    if port > 1 {
        ranges.push(format!("1-{}", port - 1));
    }
    if port < 65535 {
        ranges.push(format!("{}-65535", port + 1));
    }
    (port, ranges.join(","))
}

fn with(vars: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut all: Vec<(&'static str, String)> = TIMINGS
        .iter()
        .map(|(name, value)| (*name, (*value).to_owned()))
        .collect();
    all.extend(
        vars.iter()
            .map(|(name, value)| (*name, (*value).to_owned())),
    );
    all
}

fn run_with(args: &[&str], vars: &[(&'static str, String)]) -> Run {
    let mut run = probe(args).preload();
    for (name, value) in vars {
        run = run.env(name, value);
    }
    run
}

/// Runs under strace; returns the output and how many setsockopt calls were made on the
/// options the library manages (the probe's own SO_REUSEADDR before binding a given port is
/// not counted).
fn traced(args: &[&str], vars: &[(&'static str, String)]) -> (Output, usize) {
    let scratch = TempDir::new("targeting");
    let (out, calls) = strace_setsockopt(&run_with(args, vars), &scratch);
    out.assert_clean();
    (out, keepalive_calls(&calls))
}

fn keepalive_calls(calls: &[String]) -> usize {
    calls
        .iter()
        .filter(|line| !line.contains("SO_REUSEADDR"))
        .count()
}

fn assert_roles(out: &Output, expected: &[(&str, &str)]) {
    for (role, options) in expected {
        assert_eq!(out.line(role), *options, "{role}\n{out}");
    }
}

#[test]
fn ports_matching_listener_client_and_accepted() {
    for v6 in [false, true] {
        let (port, _) = port_and_everything_else();
        let port_text = port.to_string();
        let mut args = vec!["pair", "--port", &port_text];
        if v6 {
            args.push("--v6");
        }
        let (out, calls) = traced(&args, &with(&[("KEEPALIVE_PORTS", &port_text)]));
        let configured = configured();
        assert_roles(
            &out,
            &[
                ("listener", &configured),
                ("client", &configured),
                ("accepted", &configured),
            ],
        );
        // Listener at listen() and client at connect(): five each; accepted inherits.
        assert_eq!(calls, 10, "{out}");
    }
}

#[test]
fn ports_not_matching_get_nothing_and_no_setsockopt() {
    let (port, others) = port_and_everything_else();
    let port_text = port.to_string();
    let (out, calls) = traced(
        &["pair", "--port", &port_text, "--accept4"],
        &with(&[("KEEPALIVE_PORTS", &others)]),
    );
    let untouched = untouched();
    assert_roles(
        &out,
        &[
            ("listener", &untouched),
            ("client", &untouched),
            ("accepted", &untouched),
        ],
    );
    assert_eq!(calls, 0, "{out}");
}

/// The address is only read once the kernel has taken the connect (never from the program's
/// buffer before): a non-blocking connect keeps its EINPROGRESS, and the client is configured
/// right after it, while its handshake is still under way.
#[test]
fn ports_options_are_set_right_after_the_kernel_takes_the_connect() {
    let port = free_port().to_string();
    let scratch = TempDir::new("targeting-order");
    let run = run_with(
        &["pair", "--port", &port, "--nonblock"],
        &with(&[("KEEPALIVE_PORTS", &port)]),
    );
    let (out, calls) = strace(&run, &scratch, "setsockopt,connect");
    out.assert_clean();
    let bare = probe(&["pair", "--nonblock"]).run_ok();
    assert_eq!(
        out.line("connect"),
        bare.line("connect"),
        "EINPROGRESS kept"
    );
    assert_eq!(out.line("client"), configured(), "{out}");
    let connect = calls
        .iter()
        .position(|line| line.contains("connect("))
        .expect("strace saw the connect");
    let setsockopts = |calls: &[String]| {
        keepalive_calls(
            &calls
                .iter()
                .filter(|line| line.contains("setsockopt("))
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    assert!(calls[connect].contains("EINPROGRESS"), "{calls:#?}");
    // The listener's five at listen(), then the client's five after its connect.
    assert_eq!(setsockopts(&calls[..connect]), 5, "{calls:#?}");
    assert_eq!(setsockopts(&calls[connect..]), 5, "{calls:#?}");
}

#[test]
fn ports_decide_an_inherited_listener_at_accept() {
    let run = |matching: bool| {
        let (port, others) = port_and_everything_else();
        let port = port.to_string();
        listen_then_accept(&["--port", &port], &[])
            .envs(&TIMINGS)
            .env("KEEPALIVE_PORTS", if matching { &port } else { &others })
            .run_ok()
    };
    let matching = run(true);
    assert_eq!(matching.line("listener"), untouched(), "{matching}");
    assert_eq!(matching.line("accepted"), configured(), "{matching}");
    let not_matching = run(false);
    assert_eq!(not_matching.line("accepted"), untouched(), "{not_matching}");
}

#[test]
fn nets_match_the_peer_address() {
    let configured = configured();
    let untouched = untouched();
    let cases: &[(&[&str], &str, &str)] = &[
        // (pair arguments, KEEPALIVE_NETS, expected for client and accepted)
        (&["pair"], "127.0.0.0/8", &configured),
        (&["pair"], "127.0.0.1", &configured),
        (&["pair"], "::1", &untouched),
        (&["pair"], "10.0.0.0/8,fd00::/8", &untouched),
        (&["pair", "--v6"], "::1", &configured),
        (&["pair", "--v6"], "::/0", &configured),
        (&["pair", "--v6"], "127.0.0.0/8", &untouched),
        (
            &["pair", "--accept4"],
            "10.0.0.0/8,127.0.0.0/8",
            &configured,
        ),
    ];
    for (args, nets, expected) in cases {
        let out = run_with(args, &with(&[("KEEPALIVE_NETS", nets)])).run_ok();
        assert_roles(&out, &[("client", expected), ("accepted", expected)]);
    }
}

#[test]
fn nets_ipv4_mapped_peers_match_ipv4_networks() {
    let configured = configured();
    let untouched = untouched();
    // A dual-stack listener accepting an IPv4 client: the accepted IPv6 socket's peer is
    // ::ffff:127.0.0.1. An IPv6 client connecting to ::ffff:127.0.0.1 likewise.
    let mapped_accept = ["pair", "--listen", "::", "--connect", "127.0.0.1"];
    let mapped_connect = [
        "pair",
        "--listen",
        "127.0.0.1",
        "--connect",
        "::ffff:127.0.0.1",
    ];
    for args in [&mapped_accept, &mapped_connect] {
        let out = run_with(args, &with(&[("KEEPALIVE_NETS", "127.0.0.0/8")])).run_ok();
        assert_roles(&out, &[("client", &configured), ("accepted", &configured)]);
        let out = run_with(args, &with(&[("KEEPALIVE_NETS", "::1,10.0.0.0/8")])).run_ok();
        assert_roles(&out, &[("client", &untouched), ("accepted", &untouched)]);
    }
}

#[test]
fn nets_not_matching_cost_no_setsockopt() {
    let (out, calls) = traced(&["pair"], &with(&[("KEEPALIVE_NETS", "10.0.0.0/8")]));
    assert_eq!(out.line("accepted"), untouched(), "{out}");
    assert_eq!(calls, 0, "{out}");
}

#[test]
fn ports_and_nets_must_both_match() {
    // A port of its own for each run: the previous run's connection lingers in TIME_WAIT.
    let run = |nets: &str| {
        let port = free_port().to_string();
        run_with(
            &["pair", "--port", &port],
            &with(&[("KEEPALIVE_PORTS", &port), ("KEEPALIVE_NETS", nets)]),
        )
        .run_ok()
    };
    let both = run("127.0.0.0/8");
    assert_roles(
        &both,
        &[("client", &configured()), ("accepted", &configured())],
    );
    let wrong_net = run("10.0.0.0/8");
    assert_roles(
        &wrong_net,
        &[("client", &untouched()), ("accepted", &untouched())],
    );
}

#[test]
fn override_applies_only_to_matching_sockets() {
    let run = |matching: bool| {
        let (port, others) = port_and_everything_else();
        let port = port.to_string();
        let ports = if matching { port.clone() } else { others };
        let args = [
            "program-sets",
            "--port",
            &port,
            "--accept4",
            "--keepalive",
            "0",
            "--idle",
            "30",
            "--intvl",
            "10",
            "--cnt",
            "3",
        ];
        run_with(
            &args,
            &with(&[("KEEPALIVE_PORTS", &ports), ("KEEPALIVE_OVERRIDE", "yes")]),
        )
        .run_ok()
    };
    let matching = run(true);
    assert_eq!(matching.line("accepted"), configured(), "{matching}");
    let not_matching = run(false);
    assert_eq!(
        not_matching.line("accepted"),
        options(0, 30, 10, 3, 0),
        "{not_matching}"
    );
}

#[test]
fn programs_listed_and_unlisted_under_the_same_environment() {
    let scratch = TempDir::new("programs");
    let other = scratch.path("other-program");
    copy_with_mode(&probe_path(), &other, 0o755);
    let vars = with(&[("KEEPALIVE_PROGRAMS", "redis-server,kp-probe")]);
    let listed = run_with(&["report", "tcp4"], &vars).run_ok();
    assert_eq!(listed.line("tcp4"), configured(), "{listed}");
    let mut unlisted = Run::new(&other, &["report", "tcp4"]).preload();
    for (name, value) in &vars {
        unlisted = unlisted.env(name, value);
    }
    let (out, calls) = strace_setsockopt(&unlisted, &scratch);
    out.assert_clean();
    assert_eq!(out.line("tcp4"), untouched(), "{out}");
    assert_eq!(calls.len(), 0, "{out}");
}

#[test]
fn programs_match_argv0_too() {
    let scratch = TempDir::new("programs-argv0");
    let other = scratch.path("other-program");
    copy_with_mode(&probe_path(), &other, 0o755);
    let mut run = Run::new(&other, &["report", "tcp4"])
        .arg0("/usr/bin/redis-server")
        .preload();
    for (name, value) in with(&[("KEEPALIVE_PROGRAMS", "redis-server")]) {
        run = run.env(name, value);
    }
    let out = run.run_ok();
    assert_eq!(out.line("tcp4"), configured(), "{out}");
}

#[test]
fn inherit_no_keeps_the_process_configured_and_children_clean() {
    let scratch = TempDir::new("inherit");
    let first = compile_fixture("empty.c", "libfirst.so", &scratch);
    let last = compile_fixture("empty.c", "liblast.so", &scratch);
    let ours = library();
    let list = |parts: &[&Path]| {
        parts
            .iter()
            .map(|path| path.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    };
    let others = list(&[&first, &last]);
    let out = inherit_run(list(&[&first, &ours, &last]), "no");
    let configured = configured();
    let untouched = untouched();
    assert_eq!(
        out.lines(),
        [
            format!("tcp4 {configured}"),
            format!("LD_PRELOAD={others}"),
            "maps keepalive_preload=yes".to_owned(),
            format!("tcp4 {untouched}"),
            format!("LD_PRELOAD={others}"),
            "maps keepalive_preload=no".to_owned(),
        ],
        "{out}"
    );
}

#[test]
fn inherit_no_when_ours_is_the_only_entry() {
    let out = inherit_run(library().to_str().expect("utf-8"), "no");
    let lines = out.lines();
    assert_eq!(lines.len(), 6, "{out}");
    assert_eq!(lines[0], format!("tcp4 {}", configured()), "{out}");
    assert!(
        ["LD_PRELOAD unset", "LD_PRELOAD="].contains(&lines[1]),
        "{out}"
    );
    assert_eq!(lines[3], format!("tcp4 {}", untouched()), "{out}");
    assert_eq!(lines[5], "maps keepalive_preload=no", "{out}");
}

#[test]
fn inherit_yes_children_keep_the_library() {
    let ours = library();
    let ours = ours.to_str().expect("utf-8");
    let out = inherit_run(ours, "yes");
    let configured = configured();
    assert_eq!(
        out.lines(),
        [
            format!("tcp4 {configured}"),
            format!("LD_PRELOAD={ours}"),
            "maps keepalive_preload=yes".to_owned(),
            format!("tcp4 {configured}"),
            format!("LD_PRELOAD={ours}"),
            "maps keepalive_preload=yes".to_owned(),
        ],
        "{out}"
    );
}

#[test]
fn info_prints_the_filters_and_debug_each_decision() {
    let filters = [
        ("KEEPALIVE_PORTS", "17000-17999"),
        ("KEEPALIVE_NETS", "127.0.0.0/8"),
        ("KEEPALIVE_PROGRAMS", "kp-probe"),
    ];
    let bare = probe(&["pair"]).run_ok();
    let info = probe(&["pair"])
        .preload()
        .envs(&filters)
        .env("KEEPALIVE_LOG", "info")
        .run();
    info.assert_success();
    assert_eq!(info.stdout, bare.stdout, "{info}");
    let lines = info.library_lines();
    assert_eq!(lines.len(), 1, "{info}");
    for (_, value) in filters {
        assert!(lines[0].contains(value), "{value} missing\n{info}");
    }
    let debug = probe(&["pair"])
        .preload()
        .envs(&filters)
        .env("KEEPALIVE_LOG", "debug")
        .run();
    debug.assert_success();
    let skipped: Vec<&str> = debug
        .library_lines()
        .into_iter()
        .filter(|line| line.contains("left alone") && line.contains("KEEPALIVE_PORTS"))
        .collect();
    // The listener at listen(), the client at connect() and the accepted socket at
    // accept(), each with its reason.
    assert_eq!(skipped.len(), 3, "{debug}");
}

#[test]
fn inherit_no_with_spaces_and_duplicates_in_ld_preload() {
    let scratch = TempDir::new("inherit-spaces");
    let first = compile_fixture("empty.c", "libfirst.so", &scratch);
    let last = compile_fixture("empty.c", "liblast.so", &scratch);
    let ours = library();
    let (first, last, ours) = (
        first.display().to_string(),
        last.display().to_string(),
        ours.display().to_string(),
    );
    // ld.so accepts spaces and colons as separators; ours may appear more than once.
    for preload in [
        format!("{first} {ours} {last}"),
        format!("{ours}:{first}:{ours} {last}"),
    ] {
        let out = inherit_run(&preload, "no");
        let lines = out.lines();
        assert_eq!(lines.len(), 6, "{out}");
        assert_eq!(lines[0], format!("tcp4 {}", configured()), "{out}");
        for (at, maps) in [(1, "yes"), (4, "no")] {
            let list = lines[at].strip_prefix("LD_PRELOAD=").unwrap_or_default();
            let entries: Vec<&str> = list.split([':', ' ']).filter(|e| !e.is_empty()).collect();
            assert_eq!(
                entries,
                [first.as_str(), last.as_str()],
                "{preload:?}\n{out}"
            );
            assert_eq!(
                lines[at + 1],
                format!("maps keepalive_preload={maps}"),
                "{out}"
            );
        }
        assert_eq!(lines[3], format!("tcp4 {}", untouched()), "{out}");
    }
}

#[test]
fn descriptor_numbers_of_matching_sockets_are_judged_afresh_when_reused() {
    // A matching pair is configured and closed; the next pair, on a port that does not match,
    // reuses the same descriptor numbers: the program's own values must win there, under
    // KEEPALIVE_OVERRIDE=yes too.
    let matching = free_port().to_string();
    let mut args = vec!["pair", "--port", &matching];
    let mut ports = Vec::new();
    for target in ["accepted", "client", "listener"] {
        let port = free_port().to_string();
        ports.push((target, port));
    }
    for (target, port) in &ports {
        args.extend([
            "+",
            "program-sets",
            "--port",
            port,
            "--target",
            target,
            "--keepalive",
            "0",
            "--idle",
            "30",
        ]);
    }
    let out = run_with(
        &args,
        &with(&[
            ("KEEPALIVE_PORTS", &matching),
            ("KEEPALIVE_OVERRIDE", "yes"),
        ]),
    )
    .run_ok();
    let (_, intvl, cnt) = kernel_defaults();
    let program = options(0, 30, intvl, cnt, 0);
    let expected: Vec<String> = ["listener", "client", "accepted"]
        .iter()
        .map(|role| format!("{role} {}", configured()))
        .chain(ports.iter().flat_map(|(target, _)| {
            [
                "setsockopt SO_KEEPALIVE=0 ret=0 errno=unchanged".to_owned(),
                "setsockopt TCP_KEEPIDLE=30 ret=0 errno=unchanged".to_owned(),
                format!("{target} {program}"),
            ]
        }))
        .collect();
    assert_eq!(out.lines(), expected, "{out}");
}
