//! What the `apply` tests share: running `apply` and `inspect`, reading values back, ports of
//! their own (42000-42999) and the values they set; and the holder of `apply.rs`,
//! `apply_errors.rs` and `apply_targets.rs` (two listeners, two connections, a UDP socket) with
//! its read-back.
#![allow(dead_code)] // each test file uses its own part

use std::process::Output;

use serde_json::{Value, json};

use crate::common::{Holder, by_fd, capture, code, command, holder, json_lines, stderr, stdout};

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

/// An IPv4 and an IPv6 listener (no options) on ports of the apply range, each with a connection
/// whose client set its own values: c4 300/100/3 (Redis' tcp-keepalive, looser than ours
/// everywhere but the count), c6 20/3/8 with a 60 s user timeout (tighter idle and interval,
/// looser count and user timeout). Accepted sockets carry nothing. And a UDP socket.
pub fn sockets() -> Value {
    let base = port(2);
    json!([
        {"kind": "listen", "name": "l4", "host": "127.0.0.1", "port": base},
        {"kind": "connect", "name": "c4", "to": "l4",
         "opts": {"keepalive": 1, "idle": 300, "interval": 100, "count": 3}},
        {"kind": "listen", "name": "l6", "host": "::1", "port": base + 1},
        {"kind": "connect", "name": "c6", "to": "l6",
         "opts": {"keepalive": 1, "idle": 20, "interval": 3, "count": 8, "user_timeout_ms": 60000}},
        {"kind": "udp", "name": "udp"},
    ])
}

pub const PROGRAM_C4: Values = (true, 300, 100, 3, 0);
pub const PROGRAM_C6: Values = (true, 20, 3, 8, 60000);
pub const UNSET: [&str; 4] = ["l4", "c4-accepted", "l6", "c6-accepted"];

pub fn read_back(holder: &Holder) -> Vec<(String, Values)> {
    let lines = inspect_json(holder.pid);
    assert_eq!(lines.len(), 6, "six TCP sockets: {lines:#?}");
    holder
        .sockets
        .iter()
        .filter(|(name, _, _)| name != "udp")
        .map(|(name, fd, _)| (name.clone(), values(by_fd(&lines, *fd))))
        .collect()
}

pub fn value_of<'a>(read: &'a [(String, Values)], name: &str) -> &'a Values {
    &read
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} in {read:?}"))
        .1
}

pub fn holder_again() -> Holder {
    holder(&sockets(), &[])
}

/// Asserts status 2, exactly one line on stderr containing `what`, nothing on stdout.
pub fn assert_one_error(output: &std::process::Output, what: &str) {
    let err = stderr(output);
    assert_eq!(code(output), 2, "{what}: {}{err}", stdout(output));
    assert_eq!(err.lines().count(), 1, "one line for {what}: {err}");
    assert!(err.contains(what), "{what} not in: {err}");
    assert!(err.starts_with("keepalive-preload: apply"), "{err}");
    assert!(stdout(output).is_empty(), "{}", stdout(output));
}

pub fn assert_untouched(holder: &Holder) {
    let read = read_back(holder);
    for name in UNSET {
        assert_eq!(*value_of(&read, name), KERNEL, "{name} was changed");
    }
    assert_eq!(*value_of(&read, "c4"), PROGRAM_C4);
    assert_eq!(*value_of(&read, "c6"), PROGRAM_C6);
}
