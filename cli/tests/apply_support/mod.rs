//! What the `apply` tests share: running `apply` and `inspect`, reading values back, ports of
//! their own (42000-42999) and the values they set.
#![allow(dead_code)] // each test file uses its own part

use std::process::Output;

use serde_json::Value;

use crate::common::{capture, command, json_lines};

/// Values that differ from the kernel's (7200/75/9, 0) and from Redis' (300/100/3 on client
/// links, 30/10/3 on inbound bus links).
pub const OURS: [&str; 8] = [
    "--idle",
    "41",
    "--interval",
    "7",
    "--count",
    "5",
    "--user-timeout",
    "12345",
];

/// keepalive, idle, interval, count, user timeout (ms) of one socket.
pub type Values = (bool, u64, u64, u64, u64);

pub const KERNEL: Values = (false, 7200, 75, 9, 0);
pub const OUR_VALUES: Values = (true, 41, 7, 5, 12345);

/// Why these tests need root.
pub const NEEDS_ROOT: &str = "apply duplicates other processes' sockets with pidfd_getfd";

/// `keepalive-preload apply ARGS`.
pub fn apply(args: &[&str]) -> Output {
    capture(command().arg("apply").args(args))
}

/// The values of one `inspect --json` (or `apply --json`) object.
pub fn values(line: &Value) -> Values {
    let number = |key: &str| {
        line[key]
            .as_u64()
            .unwrap_or_else(|| panic!("no {key} in {line}"))
    };
    (
        line["keepalive"]
            .as_bool()
            .unwrap_or_else(|| panic!("no keepalive in {line}")),
        number("idle"),
        number("interval"),
        number("count"),
        number("user_timeout_ms"),
    )
}

/// Every TCP socket of `pid` as `inspect --json` reads it from the live sockets.
pub fn inspect_json(pid: i32) -> Vec<Value> {
    let output = capture(command().args(["inspect", "--json", &pid.to_string()]));
    let code = output.status.code();
    assert!(
        matches!(code, Some(0 | 1)),
        "inspect {pid} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    json_lines(&output)
}

/// A port of the apply tests' range, free on 127.0.0.1 and ::1 a moment ago; `span` ports from
/// it are free. Spread by process and call so that parallel tests do not race for one.
pub fn port(span: u16) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = (std::process::id() % 50) as u16 * 20;
    for _ in 0..1000 {
        let offset = NEXT.fetch_add(span, Ordering::Relaxed);
        let base = 42000 + (start + offset) % (1000 - span);
        let free = (base..base + span).all(|port| {
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
                && std::net::TcpListener::bind(("::1", port)).is_ok()
        });
        if free {
            return base;
        }
    }
    panic!("no {span} free ports in 42000-42999");
}
