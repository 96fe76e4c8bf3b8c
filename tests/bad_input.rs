//! Malformed values across all variables: each prints exactly its one line on stderr, the
//! child's own output and exit status are unchanged, no bad value reaches the kernel (strace
//! sees only SO_KEEPALIVE=1, read-back equals the defaults), and with KEEPALIVE_STRICT=yes
//! the child exits 2 before its main runs.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use common::*;

/// (variable, malformed value, a fragment the error line must contain besides the value).
const BAD: &[(&str, &[u8], &str)] = &[
    ("KEEPALIVE", b"maybe", "on/off"),
    ("KEEPALIVE", b"", "on/off"),
    ("KEEPALIVE", b"2", "on/off"),
    ("KEEPALIVE", b" on", "on/off"),
    ("KEEPALIVE", b"yes please", "on/off"),
    ("KEEPIDLE", b"10abc", "1..32767"),
    ("KEEPIDLE", b"1e3", "1..32767"),
    ("KEEPIDLE", b" 7", "1..32767"),
    ("KEEPIDLE", b"7 ", "1..32767"),
    ("KEEPIDLE", b"0x10", "1..32767"),
    ("KEEPIDLE", b"-1", "1..32767"),
    ("KEEPIDLE", b"99999999999999999999", "1..32767"),
    ("KEEPIDLE", b"0", "1..32767"),
    ("KEEPIDLE", b"32768", "1..32767"),
    ("KEEPIDLE", b"", "1..32767"),
    ("KEEPIDLE", b"1.5", "1..32767"),
    ("KEEPIDLE", b"+5", "1..32767"),
    ("KEEPIDLE", b"10 s", "1..32767"),
    ("KEEPIDLE", b"10h", "1..32767"),
    ("KEEPIDLE", b"5ms", "1..32767"),
    ("KEEPINTVL", b"0", "1..32767"),
    ("KEEPINTVL", b"abc", "1..32767"),
    ("KEEPINTVL", b"32768", "1..32767"),
    ("KEEPINTVL", b"1d", "1..32767"),
    ("KEEPINTVL", "\u{663}".as_bytes(), "1..32767"),
    ("KEEPCNT", b"128", "1..127"),
    ("KEEPCNT", b"0", "1..127"),
    ("KEEPCNT", b"3s", "1..127"),
    ("KEEPCNT", b"-3", "1..127"),
    ("KEEPCNT", b"1e1", "1..127"),
    ("KEEPCNT", b"\xff3", "UTF-8"),
    ("KEEPALIVE_USER_TIMEOUT", b"-1", "milliseconds"),
    ("KEEPALIVE_USER_TIMEOUT", b"0", "milliseconds"),
    ("KEEPALIVE_USER_TIMEOUT", b"2147483648", "milliseconds"),
    ("KEEPALIVE_USER_TIMEOUT", b"autox", "milliseconds"),
    ("KEEPALIVE_USER_TIMEOUT", b"10x", "milliseconds"),
    ("KEEPALIVE_USER_TIMEOUT", b"1.5s", "milliseconds"),
    ("KEEPALIVE_USER_TIMEOUT", b"ms", "milliseconds"),
    ("KEEPALIVE_USER_TIMEOUT", b"auto ", "milliseconds"),
    ("KEEPALIVE_OVERRIDE", b"always", "no, yes, tighten"),
    ("KEEPALIVE_OVERRIDE", b"", "no, yes, tighten"),
    ("KEEPALIVE_OVERRIDE", b"1", "no, yes, tighten"),
    ("KEEPALIVE_LOG", b"verbose", "off, error, info, debug"),
    ("KEEPALIVE_LOG", b"2", "off, error, info, debug"),
    ("KEEPALIVE_STRICT", b"2", "yes/no"),
    ("KEEPALIVE_STRICT", b"maybe", "yes/no"),
    ("KEEPALIVE_PORTS", b"0-10", "not a port"),
    (
        "KEEPALIVE_PORTS",
        b"17000-1700",
        "\"17000-1700\" is not ascending",
    ),
    ("KEEPALIVE_PORTS", b"65536", "not a port"),
    ("KEEPALIVE_PORTS", b"abc", "not a port"),
    ("KEEPALIVE_PORTS", b"1,,2", "empty item"),
    ("KEEPALIVE_PORTS", b"", "empty"),
    ("KEEPALIVE_PORTS", b"80-", "not a port"),
    ("KEEPALIVE_PORTS", b"6379 ", "not a port"),
    ("KEEPALIVE_NETS", b"10.0.0.0/33", "prefix length \"33\""),
    ("KEEPALIVE_NETS", b"::1/200", "prefix length \"200\""),
    ("KEEPALIVE_NETS", b"300.1.1.1", "not an IPv4 or IPv6"),
    ("KEEPALIVE_NETS", b"10.0.0.0/", "prefix length"),
    ("KEEPALIVE_NETS", b"fd00::/8/1", "prefix length"),
    ("KEEPALIVE_NETS", b"", "empty"),
    ("KEEPALIVE_NETS", b"localhost", "not an IPv4 or IPv6"),
    ("KEEPALIVE_PROGRAMS", b"a/b", "base name"),
    ("KEEPALIVE_PROGRAMS", b"", "empty"),
    ("KEEPALIVE_PROGRAMS", b",redis-server", "empty item"),
    ("KEEPALIVE_PROGRAMS", b"redis server", "base name"),
    ("KEEPALIVE_INHERIT", b"", "yes/no"),
    ("KEEPALIVE_INHERIT", b"maybe", "yes/no"),
];

fn os(value: &[u8]) -> &OsStr {
    OsStr::from_bytes(value)
}

/// The exact line the library must print for one bad variable: the shared parser's.
fn expected_line(name: &str, value: &[u8]) -> String {
    let parsed = keepalive_config::parse(|key| (key == name).then_some(value));
    assert_eq!(
        parsed.errors.len(),
        1,
        "table row {name}={:?} is not rejected by the parser",
        String::from_utf8_lossy(value)
    );
    parsed.errors.iter().next().expect("one error").to_string()
}

#[test]
fn the_table_is_big_enough_and_covers_every_variable() {
    assert!(BAD.len() >= 40, "{} rows", BAD.len());
    for variable in VARIABLE_NAMES {
        assert!(
            BAD.iter().any(|(name, _, _)| *name == variable),
            "no malformed value for {variable}"
        );
    }
}

#[test]
fn each_bad_value_prints_one_line_and_changes_nothing() {
    let scratch = TempDir::new("bad-input");
    let args = ["report", "tcp4", "tcp6", "+", "exit", "3"];
    let expected_stdout = format!("tcp4 {0}\ntcp6 {0}\n", keepalive_only());
    let mut failures = Vec::new();
    for (name, value, fragment) in BAD {
        let line = expected_line(name, value);
        let run = probe(&args).preload().env(name, os(value));
        let (out, calls) = strace_setsockopt(&run, &scratch);
        let calls = traced_options(&calls);
        let mut problems = Vec::new();
        if out.code != Some(3) {
            problems.push(format!("exit {:?}, expected 3", out.code));
        }
        if out.stdout != expected_stdout {
            problems.push(format!("stdout {:?}", out.stdout));
        }
        if out.stderr != format!("{line}\n") {
            problems.push(format!("stderr {:?}, expected {line:?}", out.stderr));
        }
        if !line.contains(fragment) {
            problems.push(format!("line {line:?} does not contain {fragment:?}"));
        }
        if calls != ["SO_KEEPALIVE=1", "SO_KEEPALIVE=1"] {
            problems.push(format!("setsockopt calls {calls:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{name}={:?}: {}",
                String::from_utf8_lossy(value),
                problems.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        BAD.len(),
        failures.join("\n")
    );
}

#[test]
fn strict_exits_2_before_main() {
    let mut failures = Vec::new();
    for (name, value, _) in BAD {
        if *name == "KEEPALIVE_STRICT" {
            continue;
        }
        let line = expected_line(name, value);
        let out = probe(&["mark", "+", "report", "tcp4"])
            .preload()
            .env("KEEPALIVE_STRICT", "yes")
            .env(name, os(value))
            .run();
        let printed = out.library_lines();
        if out.code != Some(2) || !out.stdout.is_empty() || !printed.contains(&line.as_str()) {
            failures.push(format!(
                "{name}={:?}: exit {:?}, stdout {:?}, stderr {:?}",
                String::from_utf8_lossy(value),
                out.code,
                out.stdout,
                out.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn strict_with_valid_values_runs_main() {
    let mut vars = TIMINGS.to_vec();
    vars.push(("KEEPALIVE_STRICT", "yes"));
    let out = probe(&["mark", "+", "report", "tcp4"])
        .preload()
        .envs(&vars)
        .run_ok();
    assert_eq!(
        out.stdout,
        format!("kp-probe main\ntcp4 {}\n", configured())
    );
}

#[test]
fn all_bad_at_once_one_line_each_in_order_and_good_values_still_apply() {
    let bad: Vec<(&str, &[u8])> = VARIABLE_NAMES
        .iter()
        .filter(|name| !["KEEPINTVL", "KEEPALIVE_STRICT"].contains(name))
        .map(|name| {
            let (_, value, _) = BAD
                .iter()
                .find(|(row, _, _)| row == name)
                .expect("a row per variable");
            (*name, *value)
        })
        .collect();
    let parsed = keepalive_config::parse(|key| {
        bad.iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| *value)
    });
    assert_eq!(parsed.errors.len(), bad.len());
    let mut run = probe(&["report", "tcp4"]).preload().env("KEEPINTVL", "7");
    for (name, value) in &bad {
        run = run.env(name, os(value));
    }
    let out = run.run();
    out.assert_success();
    let expected: Vec<String> = parsed.errors.iter().map(ToString::to_string).collect();
    assert_eq!(out.stderr.lines().collect::<Vec<_>>(), expected, "{out}");
    let (idle, _, cnt) = kernel_defaults();
    assert_eq!(out.line("tcp4"), options(1, idle, 7, cnt, 0), "{out}");
}
