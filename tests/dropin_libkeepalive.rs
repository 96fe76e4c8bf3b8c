//! Drop-in for libkeepalive: kp-probe's equivalent of libkeepalive's own test program prints
//! the same under our library as under Debian's libkeepalive0, for the same valid variables.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

/// Debian's libkeepalive, found through dpkg (the package is installed by scripts/test).
fn libkeepalive() -> PathBuf {
    let output = Command::new(tool("dpkg", "dpkg"))
        .args(["-L", "libkeepalive0"])
        .output()
        .expect("run dpkg -L");
    assert!(
        output.status.success(),
        "libkeepalive0 is not installed (apt-get install libkeepalive0; scripts/test does)"
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(PathBuf::from)
        .find(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("libkeepalive.so"))
                && path.is_file()
        })
        .expect("libkeepalive0 ships no libkeepalive.so")
}

#[test]
fn libkeepalive_test_prints_the_same_under_both_libraries() {
    let theirs = libkeepalive();
    let cases: &[&[(&str, &str)]] = &[
        &[],
        &[("KEEPIDLE", "61")],
        &[("KEEPINTVL", "7")],
        &[("KEEPCNT", "4")],
        &[("KEEPIDLE", "61"), ("KEEPINTVL", "7"), ("KEEPCNT", "4")],
        &[
            ("KEEPIDLE", "32767"),
            ("KEEPINTVL", "1"),
            ("KEEPCNT", "127"),
        ],
        &[("KEEPALIVE", "on"), ("KEEPIDLE", "600")],
        &[("KEEPALIVE", "ON"), ("KEEPCNT", "2")],
        &[("KEEPALIVE", "off")],
        &[("KEEPALIVE", "Off")],
    ];
    for vars in cases {
        let with_theirs = probe(&["libkeepalive-test"])
            .env("LD_PRELOAD", &theirs)
            .envs(vars)
            .run_ok();
        let with_ours = probe(&["libkeepalive-test"]).preload().envs(vars).run_ok();
        assert_eq!(with_ours.stdout, with_theirs.stdout, "{vars:?}");
    }
}

#[test]
fn libkeepalive_test_shows_the_configured_values() {
    let out = probe(&["libkeepalive-test"])
        .preload()
        .envs(&[("KEEPIDLE", "61"), ("KEEPINTVL", "7"), ("KEEPCNT", "4")])
        .run_ok();
    assert_eq!(
        out.stdout,
        "SO_KEEPALIVE is ON\nTCP_KEEPCNT   = 4\nTCP_KEEPIDLE  = 61\nTCP_KEEPINTVL = 7\n"
    );
    let out = probe(&["libkeepalive-test"]).run_ok();
    assert_eq!(out.stdout, "SO_KEEPALIVE is OFF\n");
}
