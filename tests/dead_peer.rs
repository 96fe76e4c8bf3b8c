//! The real effect: a connection whose peer vanishes without FIN or RST (every packet of the
//! connection dropped by iptables inside a network namespace the test creates) is detected
//! and closed with ETIMEDOUT under the library, and stays open without it.
//!
//! Needs root (unshare -n, iptables): fails, never skips, without it.

mod common;

use common::*;

const BLACKHOLE: &str = "iptables -I INPUT -p tcp --dport {port} -j DROP && \
                         iptables -I INPUT -p tcp --sport {port} -j DROP";

/// Runs `kp-probe watch-die ARGS` in a new network namespace with loopback up; LD_PRELOAD
/// (when `preload`) and `vars` reach the probe only.
fn watch_die(preload: bool, vars: &[(&str, &str)], args: &[&str]) -> Output {
    require_root("creates a network namespace and iptables rules");
    tool("iptables", "iptables");
    tool("ip", "iproute2");
    let mut run = Run::new(
        tool("unshare", "util-linux"),
        &[
            "-n",
            "sh",
            "-c",
            "ip link set lo up && exec \"$@\"",
            "sh",
            "env",
        ],
    );
    if preload {
        let mut setting = std::ffi::OsString::from("LD_PRELOAD=");
        setting.push(library());
        run = run.arg(setting);
    }
    for (name, value) in vars {
        run = run.arg(format!("{name}={value}"));
    }
    run = run
        .arg(probe_path())
        .arg("watch-die")
        .arg("--blackhole")
        .arg(BLACKHOLE);
    for arg in args {
        run = run.arg(*arg);
    }
    let out = run.run();
    out.assert_clean();
    out
}

/// Milliseconds after which the connection ended with ETIMEDOUT, or a failure.
fn ended_after_ms(out: &Output) -> u64 {
    let ended = out.line("ended");
    let ms = ended
        .strip_prefix("errno=ETIMEDOUT after=")
        .and_then(|rest| rest.strip_suffix("ms"))
        .unwrap_or_else(|| panic!("expected ETIMEDOUT\n{out}"));
    ms.parse().expect("milliseconds")
}

#[test]
#[ignore = "needs root: network namespaces and iptables; scripts/test runs it"]
fn keepalive_detects_a_vanished_peer() {
    let vars = [("KEEPIDLE", "1"), ("KEEPINTVL", "1"), ("KEEPCNT", "2")];
    let out = watch_die(true, &vars, &["--timeout", "20"]);
    assert_eq!(out.line("client"), options(1, 1, 1, 2, 0), "{out}");
    // idle 1 s + 2 probes 1 s apart: about 3 s.
    let ms = ended_after_ms(&out);
    assert!((2000..12000).contains(&ms), "{ms} ms\n{out}");
}

#[test]
#[ignore = "needs root: network namespaces and iptables; scripts/test runs it"]
fn user_timeout_detects_a_vanished_peer_with_data_in_flight() {
    let vars = [("KEEPALIVE_USER_TIMEOUT", "2s")];
    let out = watch_die(true, &vars, &["--send", "yes", "--timeout", "20"]);
    let ms = ended_after_ms(&out);
    assert!((1500..12000).contains(&ms), "{ms} ms\n{out}");
}

#[test]
#[ignore = "needs root: network namespaces and iptables; scripts/test runs it"]
fn without_the_library_the_connection_stays_open() {
    let vars = [("KEEPIDLE", "1"), ("KEEPINTVL", "1"), ("KEEPCNT", "2")];
    let out = watch_die(false, &vars, &["--send", "yes", "--timeout", "8"]);
    assert_eq!(out.line("client"), untouched(), "{out}");
    assert_eq!(out.line("alive"), "after=8s", "{out}");
}
