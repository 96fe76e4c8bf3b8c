//! 32 threads creating 10,000 sockets each, racing the library's first use: every socket is
//! configured.

mod common;

use common::*;

#[test]
fn every_socket_of_racing_threads_is_configured() {
    let out = probe(&["threads", "32", "10000"])
        .preload()
        .envs(&TIMINGS)
        .run_ok();
    assert_eq!(out.stdout, format!("320000 {}\n", configured()), "{out}");
}

#[test]
fn racing_threads_ipv6_under_override() {
    let out = probe(&["threads", "32", "1000", "--kind", "tcp6"])
        .preload()
        .envs(&TIMINGS)
        .env("KEEPALIVE_OVERRIDE", "tighten")
        .run_ok();
    assert_eq!(out.stdout, format!("32000 {}\n", configured()), "{out}");
}

/// `kp-probe signal-storm N 61` under the library, killed after two minutes.
fn signal_storm(count: &str, vars: &[(&str, &str)]) -> Output {
    Run::new(tool("timeout", "coreutils"), &["120"])
        .arg(probe_path())
        .arg("signal-storm")
        .arg(count)
        .arg("61")
        .preload()
        .env("KEEPIDLE", "61")
        .envs(vars)
        .run()
}

#[test]
fn hooks_interrupted_by_a_signal_handler_that_makes_sockets() {
    // A hook that took a lock or allocated would deadlock or crash when the handler's
    // socket() runs in the middle of the interrupted one.
    let out = signal_storm("100000", &[("KEEPALIVE_OVERRIDE", "yes")]);
    assert_eq!(out.code, Some(0), "timed out (124) or crashed\n{out}");
    assert_eq!(
        out.stdout, "main-bad=0 handler-bad=0 handler-ran=true\n",
        "{out}"
    );
}

#[test]
fn debug_logging_from_a_signal_handler() {
    let out = signal_storm("3000", &[("KEEPALIVE_LOG", "debug")]);
    assert_eq!(out.code, Some(0), "timed out (124) or crashed\n{out}");
    assert_eq!(
        out.stdout, "main-bad=0 handler-bad=0 handler-ran=true\n",
        "{out}"
    );
    // One debug line per socket, none torn or lost: the info line, then at least the 3000
    // of the main loop.
    let configured = out
        .library_lines()
        .iter()
        .filter(|line| line.contains("configured"))
        .count();
    assert!(configured >= 3000, "{configured} lines");
    let torn: Vec<&str> = out
        .stderr
        .lines()
        .filter(|line| !line.starts_with("keepalive-preload["))
        .collect();
    assert!(torn.is_empty(), "torn or foreign lines: {torn:?}");
}
