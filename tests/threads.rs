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
