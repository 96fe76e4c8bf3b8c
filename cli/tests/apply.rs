//! `apply` against live processes that never loaded the library: Python holders whose sockets
//! carry values the holder set itself (or none). Every value is read back from the live sockets
//! with `inspect --json`; every expected value differs from the kernel's 7200/75/9/0.
//! Here: what each policy sets, the table and `--dry-run`, the environment, and `apply` against
//! the library. Bad input and sockets that fail: apply_errors.rs; which sockets and processes are
//! selected (ports, nets, a cgroup, shared sockets): apply_targets.rs.

mod apply_support;
mod common;

use apply_support::*;
use common::*;
use serde_json::json;

#[test]
#[ignore = "needs root: pidfd_getfd on other processes, setpriv, cgroups; scripts/test runs it"]
fn every_policy_sets_listeners_connected_and_accepted_sockets_ipv4_and_ipv6() {
    require_root(NEEDS_ROOT);
    // policy, then what c4 and c6 carry afterwards (the others always get ours).
    let cases: [(&str, Values, Values); 3] = [
        // no: a value the program set stays; an option left at the kernel's default is ours.
        ("no", (true, 300, 100, 3, 12345), PROGRAM_C6),
        ("yes", OUR_VALUES, OUR_VALUES),
        ("tighten", (true, 41, 7, 3, 12345), (true, 20, 3, 5, 12345)),
    ];
    for (policy, c4, c6) in cases {
        let holder = holder(&sockets(), &[]);
        let before = read_back(&holder);
        for name in UNSET {
            assert_eq!(*value_of(&before, name), KERNEL, "{name} before");
        }
        assert_eq!(*value_of(&before, "c4"), PROGRAM_C4);
        assert_eq!(*value_of(&before, "c6"), PROGRAM_C6);

        let mut args = OURS.to_vec();
        args.extend(["--override", policy, "--json"]);
        let pid = holder.pid.to_string();
        args.push(&pid);
        let output = apply(&args);
        assert_eq!(code(&output), 0, "{policy}: {}", stderr(&output));
        let reported = json_lines(&output);
        assert_eq!(reported.len(), 6, "{policy}: {reported:#?}");

        let after = read_back(&holder);
        for name in UNSET {
            assert_eq!(*value_of(&after, name), OUR_VALUES, "{policy}: {name}");
        }
        assert_eq!(*value_of(&after, "c4"), c4, "{policy}: c4");
        assert_eq!(*value_of(&after, "c6"), c6, "{policy}: c6");
        // What apply reported is what the sockets now carry.
        for (name, values_now) in &after {
            let line = by_fd(&reported, holder.fd(name));
            assert_eq!(values(line), *values_now, "{policy}: {name}: {line}");
            assert_eq!(values(&line["after"]), *values_now, "{policy}: {name}");
            assert_eq!(
                values(&line["before"]),
                *value_of(&before, name),
                "{policy}: {name}"
            );
        }
        let l6 = by_fd(&reported, holder.fd("l6"));
        assert_eq!(
            (&l6["family"], &l6["state"], &l6["role"], &l6["result"]),
            (
                &json!("ipv6"),
                &json!("LISTEN"),
                &json!("listening"),
                &json!("changed")
            )
        );
        assert_eq!(
            by_fd(&reported, holder.fd("c4-accepted"))["role"],
            "accepted"
        );
        assert_eq!(by_fd(&reported, holder.fd("c4"))["role"], "outgoing");
        if policy == "no" {
            let c6 = by_fd(&reported, holder.fd("c6"));
            assert_eq!(c6["result"], "unchanged", "{c6}");
            assert_eq!(
                c6["kept"],
                json!(["idle", "intvl", "cnt", "user_timeout"]),
                "{c6}"
            );
        }

        // A second run finds everything as configured and changes nothing.
        let again = apply(&args);
        assert_eq!(code(&again), 0, "{}", stderr(&again));
        for line in json_lines(&again) {
            assert_eq!(line["result"], "unchanged", "{policy}: {line}");
        }
        assert_eq!(read_back(&holder), after, "{policy}: second run");
    }
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes, setpriv, cgroups; scripts/test runs it"]
fn table_shows_before_and_after_and_dry_run_changes_nothing() {
    require_root(NEEDS_ROOT);
    let holder = holder(&sockets(), &[]);
    let pid = holder.pid.to_string();
    let mut args = OURS.to_vec();
    args.extend(["--override", "yes", "--dry-run", &pid]);
    let output = apply(&args);
    let text = stdout(&output);
    assert_eq!(code(&output), 0, "{text}{}", stderr(&output));
    assert!(
        text.starts_with(
            "keepalive-preload: apply --dry-run: setting keepalive=on idle=41s intvl=7s cnt=5 \
             user_timeout=12345ms; override=yes; ports=any; nets=any\n"
        ),
        "{text}"
    );
    let row = |text: &str, name: &str| {
        text.lines()
            .find(|line| line.split_whitespace().next() == Some(&holder.fd(name).to_string()))
            .unwrap_or_else(|| panic!("no row for {name}:\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        text.contains("BEFORE") && text.contains("WOULD BE"),
        "{text}"
    );
    assert!(
        row(&text, "l4").contains(
            "off 7200/75/9 0ms on 41/7/5 12345ms would set keepalive idle intvl cnt user_timeout"
        ),
        "{text}"
    );
    assert!(
        row(&text, "c4")
            .contains("on 300/100/3 0ms on 41/7/5 12345ms would set idle intvl cnt user_timeout"),
        "{text}"
    );
    assert!(
        text.contains("6 TCP sockets in 1 process: 6 would change"),
        "{text}"
    );
    // Nothing changed.
    let read = read_back(&holder);
    assert_eq!(*value_of(&read, "l4"), KERNEL);
    assert_eq!(*value_of(&read, "c4"), PROGRAM_C4);

    // The real run prints the values read back.
    args.retain(|arg| *arg != "--dry-run");
    let output = apply(&args);
    let text = stdout(&output);
    assert_eq!(code(&output), 0, "{text}");
    assert!(text.contains("AFTER"), "{text}");
    assert!(
        row(&text, "c6-accepted").contains(
            "off 7200/75/9 0ms on 41/7/5 12345ms set keepalive idle intvl cnt user_timeout"
        ),
        "{text}"
    );
    assert!(
        text.contains("6 TCP sockets in 1 process: 6 changed"),
        "{text}"
    );
    assert_eq!(*value_of(&read_back(&holder), "l4"), OUR_VALUES);
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes, setpriv, cgroups; scripts/test runs it"]
fn the_environment_configures_without_options_and_options_win_over_it() {
    require_root(NEEDS_ROOT);
    let holder = holder(&sockets(), &[]);
    let pid = holder.pid.to_string();
    let output = capture(command().args(["apply", "--idle", "41", &pid]).envs([
        ("KEEPIDLE", "99"),
        ("KEEPINTVL", "7"),
        ("KEEPCNT", "5"),
        ("KEEPALIVE_USER_TIMEOUT", "12345ms"),
        ("KEEPALIVE_OVERRIDE", "yes"),
    ]));
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    for (name, values) in read_back(&holder) {
        assert_eq!(values, OUR_VALUES, "{name}");
    }
    // `auto`: IDLE + INTVL x CNT seconds, from the environment alone.
    let holder = holder_again();
    let output = capture(command().args(["apply", &holder.pid.to_string()]).envs([
        ("KEEPIDLE", "41"),
        ("KEEPINTVL", "7"),
        ("KEEPCNT", "5"),
        ("KEEPALIVE_USER_TIMEOUT", "auto"),
    ]));
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let read = read_back(&holder);
    assert_eq!(*value_of(&read, "l6"), (true, 41, 7, 5, 76_000));
    // Override unset = no: the program's values stay, the user timeout it left is ours.
    assert_eq!(*value_of(&read, "c4"), (true, 300, 100, 3, 76_000));
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes, setpriv, cgroups; scripts/test runs it"]
fn apply_afterwards_and_the_library_from_the_start_agree_under_every_policy() {
    require_root(NEEDS_ROOT);
    let library = library();
    let library = library.to_string_lossy();
    for policy in ["no", "yes", "tighten"] {
        // The same program twice: once under the library with the variables, once plain and
        // then `apply` with the same values as options.
        let preloaded = holder(
            &sockets(),
            &[
                ("LD_PRELOAD", &library),
                ("KEEPIDLE", "41"),
                ("KEEPINTVL", "7"),
                ("KEEPCNT", "5"),
                ("KEEPALIVE_USER_TIMEOUT", "12345"),
                ("KEEPALIVE_OVERRIDE", policy),
            ],
        );
        let plain = holder(&sockets(), &[]);
        let pid = plain.pid.to_string();
        let mut args = OURS.to_vec();
        args.extend(["--override", policy, &pid]);
        let output = apply(&args);
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        let (with_library, with_apply) = (read_back(&preloaded), read_back(&plain));
        assert_eq!(with_library, with_apply, "{policy}: library vs apply");
        // And neither is the kernel's or the program's alone.
        assert_eq!(*value_of(&with_apply, "l4"), OUR_VALUES, "{policy}");
        println!("{policy}: {with_apply:?}");
    }
}
