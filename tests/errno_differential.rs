//! The same call sequence (`kp-probe errno-script`: failing and succeeding socket, connect,
//! listen, accept, accept4 and setsockopt calls, with errno set to a sentinel before each)
//! prints byte for byte the same with and without the library, under every configuration.

mod common;

use common::*;

fn configurations() -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    let timings = TIMINGS.to_vec();
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut vars = timings.clone();
        vars.extend_from_slice(extra);
        vars
    };
    vec![
        ("no variables", vec![]),
        ("timings", timings.clone()),
        ("override no", with(&[("KEEPALIVE_OVERRIDE", "no")])),
        ("override yes", with(&[("KEEPALIVE_OVERRIDE", "yes")])),
        (
            "override tighten",
            with(&[("KEEPALIVE_OVERRIDE", "tighten")]),
        ),
        (
            "auto user timeout",
            vec![
                ("KEEPIDLE", "5"),
                ("KEEPALIVE_USER_TIMEOUT", "auto"),
                ("KEEPALIVE_OVERRIDE", "yes"),
            ],
        ),
        ("keepalive off", with(&[("KEEPALIVE", "off")])),
        ("debug log", with(&[("KEEPALIVE_LOG", "debug")])),
        ("bad values", vec![("KEEPIDLE", "1e3"), ("KEEPCNT", "0")]),
        // Issue 3's filters: matching, not matching, and deciding late.
        (
            "ports all",
            with(&[
                ("KEEPALIVE_PORTS", "1-65535"),
                ("KEEPALIVE_OVERRIDE", "yes"),
            ]),
        ),
        ("ports none", with(&[("KEEPALIVE_PORTS", "1")])),
        (
            "nets loopback",
            with(&[
                ("KEEPALIVE_NETS", "127.0.0.0/8,::1"),
                ("KEEPALIVE_OVERRIDE", "tighten"),
            ]),
        ),
        ("nets elsewhere", with(&[("KEEPALIVE_NETS", "10.0.0.0/8")])),
        (
            "ports and nets",
            with(&[
                ("KEEPALIVE_PORTS", "1024-65535"),
                ("KEEPALIVE_NETS", "127.0.0.1,::1/128"),
                ("KEEPALIVE_OVERRIDE", "yes"),
            ]),
        ),
        (
            "programs listed",
            with(&[("KEEPALIVE_PROGRAMS", "kp-probe")]),
        ),
        (
            "programs unlisted",
            with(&[("KEEPALIVE_PROGRAMS", "redis-server")]),
        ),
        ("no inherit", with(&[("KEEPALIVE_INHERIT", "no")])),
    ]
}

#[test]
fn errno_script_is_identical_under_every_configuration() {
    let bare = probe(&["errno-script"]).run_ok();
    assert!(bare.stdout.ends_with("errno-script done\n"), "{bare}");
    let mut failures = Vec::new();
    for (name, vars) in configurations() {
        let under = probe(&["errno-script"]).preload().envs(&vars).run();
        if under.stdout != bare.stdout || under.code != bare.code {
            failures.push(format!(
                "{name}: exit {:?} vs {:?}\n{}\n{under}",
                bare.code,
                under.code,
                differing_lines(&bare.stdout, &under.stdout)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn errno_script_is_identical_under_strace() {
    // The same script where every call is also seen by strace: nothing is retried.
    let scratch = TempDir::new("errno-strace");
    let bare = strace_setsockopt(&probe(&["errno-script"]), &scratch);
    let run = probe(&["errno-script"])
        .preload()
        .env("KEEPALIVE_OVERRIDE", "yes")
        .envs(&TIMINGS);
    let under = strace_setsockopt(&run, &scratch);
    assert!(
        under.0.stdout == bare.0.stdout,
        "{}",
        differing_lines(&bare.0.stdout, &under.0.stdout)
    );
    // The program's own setsockopt calls appear once each: the library adds its own calls
    // for the sockets it configures, never a second real call for one of the program's.
    let program_calls = |calls: &[String]| -> Vec<String> {
        calls
            .iter()
            .filter(|line| !line.contains(" = 0") || line.contains("TCP_NODELAY"))
            .cloned()
            .collect()
    };
    assert_eq!(
        program_calls(&under.1).len(),
        program_calls(&bare.1).len(),
        "failing setsockopt calls differ:\nwithout: {:#?}\nwith: {:#?}",
        bare.1,
        under.1
    );
}
