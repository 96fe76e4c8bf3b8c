//! Adversarial review: loading and configuration.
//!
//! - KEEPALIVE_STRICT ends only a process the library acts in: with KEEPALIVE_PROGRAMS not
//!   listing the program, or KEEPALIVE=off, the library "does nothing" (README, system-wide
//!   install: "Every other program loads the library, finds itself unlisted and does
//!   nothing"), so a bad value elsewhere must not stop the program from starting.
//! - KEEPALIVE_INHERIT=no removes the library from LD_PRELOAD however long the list is.
//! - The longest port list an environment can hold does not stall every program start.
//! - Sockets another thread makes while the library loads lazily are still configured
//!   ("Everything is read once, at load (a constructor, or the first hooked call if another
//!   library's constructor makes a socket first)").
//! - Thousands of KEEPALIVE_NETS entries target exactly the listed peers.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn strict_mode_never_ends_a_program_the_library_does_not_act_in() {
    let run = Run::new("/bin/true", &[]);
    assert_same_under(
        &run,
        &[
            (
                "KEEPALIVE_PROGRAMS does not list the program",
                vec![
                    ("KEEPALIVE_STRICT", "yes"),
                    ("KEEPIDLE", "bad"),
                    ("KEEPALIVE_PROGRAMS", "redis-server"),
                ],
            ),
            (
                "KEEPALIVE=off",
                vec![
                    ("KEEPALIVE_STRICT", "yes"),
                    ("KEEPIDLE", "bad"),
                    ("KEEPALIVE", "off"),
                ],
            ),
        ],
        Stderr::Captured,
    );
}

/// `LD_PRELOAD=<library>:<libm>×count`, and what the program then sees in LD_PRELOAD.
fn preload_seen_by_the_program(count: usize) -> (String, Output) {
    let libm = "/lib/x86_64-linux-gnu/libm.so.6";
    assert!(std::path::Path::new(libm).exists(), "{libm} is missing");
    let mut list = library().display().to_string();
    for _ in 0..count {
        list.push(':');
        list.push_str(libm);
    }
    let out = Run::new("/usr/bin/env", &[])
        .env("LD_PRELOAD", &list)
        .env("KEEPALIVE_INHERIT", "no")
        .run();
    (list, out)
}

#[test]
fn inherit_no_removes_the_library_from_a_long_ld_preload() {
    // Control: a short list loses the library.
    let (_, short) = preload_seen_by_the_program(1);
    short.assert_success();
    let seen = short
        .stdout
        .lines()
        .find(|line| line.starts_with("LD_PRELOAD="))
        .unwrap_or("");
    assert!(!seen.contains("libkeepalive_preload"), "{short}");
    // 150 entries: about 4.8 KB, well within what an environment holds.
    let (list, long) = preload_seen_by_the_program(150);
    long.assert_success();
    let seen = long
        .stdout
        .lines()
        .find(|line| line.starts_with("LD_PRELOAD="))
        .unwrap_or("");
    assert!(
        !seen.contains("libkeepalive_preload"),
        "KEEPALIVE_INHERIT=no left the library in a {}-byte LD_PRELOAD (children will load it), \
         and said nothing; stderr: {:?}",
        list.len(),
        long.stderr
    );
}

#[test]
fn the_longest_port_list_does_not_stall_program_start() {
    // One environment string holds at most 128 KiB (MAX_ARG_STRLEN): 16000 copies of the
    // valid range 1-65535. Starting /bin/true must not take much longer than with one copy.
    let long = vec!["1-65535"; 16000].join(",");
    let time = |ports: &str| {
        let started = Instant::now();
        let outcome = Run::new("/bin/true", &[])
            .env("KEEPALIVE_PORTS", ports)
            .preload()
            .outcome(Stderr::Captured, LIMIT);
        assert_eq!(outcome.status, "exit 0", "{outcome}");
        started.elapsed()
    };
    let short = time("1-65535");
    let slow = time(&long);
    assert!(
        slow < short + Duration::from_millis(300),
        "KEEPALIVE_PORTS of {} bytes: /bin/true took {slow:?} to run, {short:?} with one range",
        long.len()
    );
}

#[test]
fn sockets_made_while_another_thread_loads_the_library_are_configured() {
    // The fixture's constructor runs before ours and races the lazy load with two threads
    // connecting to 127.0.0.1 until a connected socket has SO_KEEPALIVE; every socket either
    // thread made before that is a targeted socket the library never configured. A long
    // KEEPALIVE_NETS list (still valid, 127.0.0.0/8 listed) makes the load take a while.
    let scratch = TempDir::new("adv-race");
    let race = compile_fixture("adv_race.c", "libadv_race.so", &scratch);
    let list = format!("{}:{}", library().display(), race.display());
    let mut nets: Vec<String> = (0..9000)
        .map(|index| format!("10.{}.{}.1/32", index / 250, index % 250))
        .collect();
    nets.push("127.0.0.0/8".into());
    let nets = nets.join(",");
    let mut failures = Vec::new();
    for (name, vars) in [
        ("no filter", vec![]),
        ("9001 networks", vec![("KEEPALIVE_NETS", nets.as_str())]),
    ] {
        let out = Run::new("/bin/true", &[])
            .env("LD_PRELOAD", &list)
            .envs(&vars)
            .run();
        out.assert_success();
        assert_eq!(
            out.line("configured"),
            "2",
            "{name}: both threads end\n{out}"
        );
        if out.line("missed") != "0" {
            failures.push(format!(
                "{name}: {} connected TCP sockets were made during the load and never configured",
                out.line("missed")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn thousands_of_networks_target_exactly_the_listed_peers() {
    let scratch = TempDir::new("adv-nets");
    let program = compile_program("adv_policy.c", "adv_policy", &scratch);
    let others: Vec<String> = (0..6000)
        .map(|index| format!("{}.{}.{}.0/24", 1 + index % 120, index / 120, index % 256))
        .chain((0..2000).map(|index| format!("fd00:{index:x}::/32")))
        .collect();
    let (idle, intvl, cnt) = kernel_defaults();
    let excluded = options(0, idle, intvl, cnt, 0);
    for (name, extra, expected) in [
        ("127.0.0.1 not listed", None, excluded.clone()),
        ("127.0.0.1/32 listed last", Some("127.0.0.1"), configured()),
        (
            "as an IPv4-mapped IPv6 network",
            Some("::ffff:127.0.0.0/104"),
            configured(),
        ),
        ("a neighbour only", Some("127.0.0.2/32"), excluded.clone()),
    ] {
        let mut list = others.clone();
        if let Some(extra) = extra {
            list.push(extra.to_owned());
        }
        let list = list.join(",");
        let out = Run::new(&program, &["pair"])
            .envs(&timings_with(&[("KEEPALIVE_NETS", &list)]))
            .preload()
            .outcome(Stderr::Captured, LIMIT);
        assert_eq!(out.status, "exit 0", "{name}\n{out}");
        assert_eq!(out.stderr, "", "{name}: a valid list\n{out}");
        assert_eq!(out.line("effect client"), expected, "{name}\n{out}");
        assert_eq!(out.line("effect accepted"), expected, "{name}\n{out}");
    }
}
