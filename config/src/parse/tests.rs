//! Unit tests of `parse`.

use super::*;
use std::collections::HashMap;
use std::string::ToString;

fn parse_pairs<'a>(pairs: &'a [(&'a str, &'a str)]) -> Parsed<'a> {
    let map: HashMap<&str, &str> = pairs.iter().copied().collect();
    parse(|name| map.get(name).map(|value| value.as_bytes()))
}

#[test]
fn empty_environment_is_libkeepalive_default() {
    let parsed = parse_pairs(&[]);
    assert_eq!(parsed.config, Config::default());
    assert!(parsed.errors.is_empty());
    let plan = parsed.config.plan(KernelDefaults::default());
    assert_eq!(plan.steps(), &[(SocketOption::KeepAlive, 1)]);
}

#[test]
fn full_configuration() {
    let parsed = parse_pairs(&[
        ("KEEPALIVE", "Yes"),
        ("KEEPIDLE", "2m"),
        ("KEEPINTVL", "10"),
        ("KEEPCNT", "6"),
        ("KEEPALIVE_USER_TIMEOUT", "auto"),
        ("KEEPALIVE_OVERRIDE", "TIGHTEN"),
        ("KEEPALIVE_LOG", "debug"),
        ("KEEPALIVE_STRICT", "yes"),
        ("KEEPALIVE_PORTS", "17000-17999"),
        ("KEEPALIVE_NETS", "10.0.0.0/8"),
        ("KEEPALIVE_PROGRAMS", "redis-server"),
        ("KEEPALIVE_INHERIT", "no"),
    ]);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let config = parsed.config;
    assert_eq!(
        (config.idle, config.interval, config.count),
        (Some(120), Some(10), Some(6))
    );
    let plan = config.plan(KernelDefaults::default());
    assert_eq!(plan.value(SocketOption::UserTimeout), Some(180_000));
    assert_eq!(plan.steps().len(), 5);
    assert_eq!(config.override_policy, Override::Tighten);
    assert_eq!(config.log, LogLevel::Debug);
    assert!(config.strict && !config.inherit && config.filters_by_address());
    assert!(config.acts_in_program(["/usr/bin/redis-server"].map(str::as_bytes)));
    assert!(!config.acts_in_program(["/bin/sh", "sh"].map(str::as_bytes)));
}

#[test]
fn auto_uses_kernel_defaults_for_missing_timings() {
    let parsed = parse_pairs(&[("KEEPIDLE", "60"), ("KEEPALIVE_USER_TIMEOUT", "auto")]);
    assert!(parsed.config.needs_kernel_defaults());
    assert_eq!(
        parsed.config.user_timeout_ms(KernelDefaults::default()),
        Some((60 + 75 * 9) * 1000)
    );
}

#[test]
fn error_line_names_variable_value_and_what_is_accepted() {
    let parsed = parse_pairs(&[("KEEPIDLE", "1e3")]);
    assert_eq!(parsed.config.idle, None);
    assert_eq!(
        parsed.errors.iter().next().unwrap().to_string(),
        "keepalive-preload: KEEPIDLE=\"1e3\" is not a whole number of seconds in 1..32767; not applied"
    );
    let line = |pairs| parse_pairs(pairs).errors.iter().next().unwrap().to_string();
    assert!(line(&[("KEEPALIVE_PORTS", "17000-1700")]).contains("\"17000-1700\" is not ascending"));
    assert!(line(&[("KEEPALIVE_NETS", "10.0.0.0/33")]).contains("prefix length \"33\""));
}

#[test]
fn long_value_is_elided_and_the_line_keeps_its_shape() {
    let long = "x".repeat(10_000);
    let pairs = [("KEEPIDLE", long.as_str())];
    let line = parse_pairs(&pairs)
        .errors
        .iter()
        .next()
        .unwrap()
        .to_string();
    assert!(
        line.starts_with("keepalive-preload: KEEPIDLE=\"xxxx"),
        "{line}"
    );
    assert!(line.contains("x…\" is not "), "{line}");
    assert!(
        line.ends_with("; not applied") && line.len() < 200,
        "{line}"
    );
}

#[test]
fn every_bad_value_is_one_error_and_unapplied() {
    let bad = [
        ("KEEPALIVE", "maybe"),
        ("KEEPIDLE", "10abc"),
        ("KEEPINTVL", "0"),
        ("KEEPCNT", "128"),
        ("KEEPALIVE_USER_TIMEOUT", "-1"),
        ("KEEPALIVE_OVERRIDE", "always"),
        ("KEEPALIVE_LOG", "verbose"),
        ("KEEPALIVE_STRICT", "2"),
        ("KEEPALIVE_PORTS", "0-10"),
        ("KEEPALIVE_NETS", "::1/200"),
        ("KEEPALIVE_PROGRAMS", "a/b"),
        ("KEEPALIVE_INHERIT", ""),
    ];
    let parsed = parse_pairs(&bad);
    assert_eq!(parsed.errors.len(), bad.len(), "{:?}", parsed.errors);
    assert_eq!(parsed.config, Config::default());
    for (error, (name, value)) in parsed.errors.iter().zip(bad) {
        assert_eq!((error.variable, error.value), (name, value.as_bytes()));
        assert!(error.to_string().ends_with("; not applied"));
    }
}

#[test]
fn non_utf8_value_is_an_error_not_a_panic() {
    let value = [0xff, b'3'];
    let parsed = parse(|name| (name == "KEEPCNT").then_some(&value[..]));
    assert_eq!(parsed.errors.len(), 1);
    assert_eq!(parsed.config.count, None);
    assert!(
        parsed
            .errors
            .iter()
            .next()
            .unwrap()
            .to_string()
            .contains("\\xff3")
    );
}

#[test]
fn summary_is_one_line() {
    let parsed = parse_pairs(&[("KEEPIDLE", "60"), ("KEEPALIVE_USER_TIMEOUT", "10s")]);
    let line = parsed.config.summary(KernelDefaults::default()).to_string();
    assert!(line.starts_with(
        "keepalive=on idle=60s interval=kernel count=kernel user_timeout=10000ms override=no ports=any"
    ), "{line}");
    assert!(!line.contains('\n'));
}
