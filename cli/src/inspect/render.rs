//! Rendering: the table and JSON Lines.

use std::fmt::Write as _;
use std::net::SocketAddr;

use keepalive_config::{ConfigError, Override, PREFIX};

use crate::library::LIBRARY_STEM;

use super::expectation::Expectation;
use super::judge::{Expected, Judgement};
use super::process::Process;

pub fn state_name(state: u8) -> &'static str {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN-SENT",
        3 => "SYN-RECV",
        4 => "FIN-WAIT-1",
        5 => "FIN-WAIT-2",
        6 => "TIME-WAIT",
        7 => "CLOSE",
        8 => "CLOSE-WAIT",
        9 => "LAST-ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW-SYN-RECV",
        _ => "UNKNOWN",
    }
}

/// `127.0.0.1:17001`, `[::1]:17000` (without scope or flow info).
pub fn show_address(address: &SocketAddr) -> String {
    match address {
        SocketAddr::V4(v4) => v4.to_string(),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

/// The name people know the process by: argv[0]'s first word (a rewritten title keeps its
/// name there), else the executable's, as a base name.
pub fn program_name(process: &Process) -> String {
    process
        .argv0
        .as_deref()
        .and_then(|argv0| argv0.split_whitespace().next())
        .or(process.exe.as_deref())
        .map(|path| path.rsplit('/').next().unwrap_or(path).to_owned())
        .unwrap_or_else(|| "?".to_owned())
}

pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_option(value: Option<u32>) -> String {
    value.map_or_else(|| "null".to_owned(), |value| value.to_string())
}

/// One JSON object per socket, one per line.
pub fn json_lines(
    process: &Process,
    expectation: Option<&Expectation>,
    judgements: &[Judgement],
) -> String {
    let mut out = String::new();
    for (socket, judgement) in process.sockets.iter().zip(judgements) {
        let _ = write!(
            out,
            "{{\"pid\":{},\"fd\":{},\"program\":{},\"family\":\"{}\",\"local\":{},\"remote\":{},\"state\":\"{}\",\"role\":\"{}\",\"keepalive\":{},\"idle\":{},\"interval\":{},\"count\":{},\"user_timeout_ms\":{},\"library\":{}",
            process.pid,
            socket.fd,
            json_string(&program_name(process)),
            if socket.ipv6 { "ipv6" } else { "ipv4" },
            socket
                .local
                .map_or("null".to_owned(), |a| json_string(&show_address(&a))),
            socket
                .remote
                .map_or("null".to_owned(), |a| json_string(&show_address(&a))),
            state_name(socket.state),
            judgement.role.name(),
            socket.keepalive,
            socket.idle,
            socket.interval,
            socket.count,
            socket.user_timeout_ms,
            process.library.is_some(),
        );
        if expectation.is_some() {
            match judgement.expected {
                None => out.push_str(",\"expected\":null"),
                Some(expected) => {
                    let _ = write!(
                        out,
                        ",\"expected\":{{\"keepalive\":true,\"idle\":{},\"interval\":{},\"count\":{},\"user_timeout_ms\":{}}}",
                        json_option(expected.idle),
                        json_option(expected.interval),
                        json_option(expected.count),
                        json_option(expected.user_timeout_ms),
                    );
                }
            }
            let differences: Vec<String> = judgement
                .differences
                .iter()
                .map(|(field, _, _)| json_string(field))
                .collect();
            let _ = write!(out, ",\"differences\":[{}]", differences.join(","));
        }
        let _ = writeln!(out, ",\"verdict\":\"{}\"}}", judgement.verdict.name());
    }
    out
}

fn show_value(field: &str, value: u32) -> String {
    match field {
        "count" => value.to_string(),
        "user_timeout_ms" => format!("{value}ms"),
        _ => format!("{value}s"),
    }
}

fn show_expected(expected: Option<Expected>) -> String {
    let Some(expected) = expected else {
        return "-".to_owned();
    };
    let mut text = String::from("on");
    for (field, label, value) in [
        ("idle", "idle", expected.idle),
        ("interval", "intvl", expected.interval),
        ("count", "cnt", expected.count),
        ("user_timeout_ms", "uto", expected.user_timeout_ms),
    ] {
        if let Some(value) = value {
            let _ = write!(text, " {label}={}", show_value(field, value));
        }
    }
    text
}

fn show_verdict(judgement: &Judgement, policy: Option<Override>) -> String {
    let mut text = judgement.verdict.name().to_owned();
    if !judgement.differences.is_empty() {
        let what: Vec<String> = judgement
            .differences
            .iter()
            .map(|&(field, actual, wanted)| {
                format!(
                    "{field} {} not {}",
                    show_value(field, actual),
                    show_value(field, wanted)
                )
            })
            .collect();
        let how = if policy == Some(Override::No) {
            "set by the program: "
        } else {
            ""
        };
        let _ = write!(text, " ({how}{})", what.join(", "));
    }
    text
}

/// The human report of one process: a header and an aligned table.
pub fn table(
    process: &Process,
    expectation: Option<&Expectation>,
    judgements: &[Judgement],
    library_problem: Option<&str>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "pid {} {} ({}): {}",
        process.pid,
        program_name(process),
        process.exe.as_deref().unwrap_or("executable unknown"),
        match &process.library {
            Some(path) => format!("{LIBRARY_STEM} mapped from {path}"),
            None => format!("{LIBRARY_STEM} not mapped"),
        }
    );
    if let Some(expectation) = expectation {
        let _ = writeln!(
            out,
            "configuration in its environment: {}",
            expectation.config.summary(expectation.kernel)
        );
        let _ = writeln!(out, "read from {}", expectation.source);
        for error in &expectation.errors {
            let _ = writeln!(out, "its environment has {}", strip_prefix(error));
        }
        if !expectation.acts {
            let _ = writeln!(
                out,
                "the library does not act in this process (KEEPALIVE off or program not in KEEPALIVE_PROGRAMS)"
            );
        }
        if let Some(problem) = library_problem {
            let _ = writeln!(out, "PROBLEM: {problem}");
        }
    }
    if process.sockets.is_empty() {
        let _ = writeln!(out, "no TCP sockets");
        return out;
    }
    let mut header = vec![
        "FD",
        "STATE",
        "LOCAL",
        "REMOTE",
        "ROLE",
        "KEEPALIVE",
        "IDLE",
        "INTVL",
        "CNT",
        "USER_TIMEOUT",
    ];
    if expectation.is_some() {
        header.push("EXPECTED");
    }
    header.push("VERDICT");
    let policy = expectation.map(|expectation| expectation.config.override_policy);
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|&cell| cell.to_owned()).collect()];
    for (socket, judgement) in process.sockets.iter().zip(judgements) {
        let mut row = vec![
            socket.fd.to_string(),
            state_name(socket.state).to_owned(),
            socket.local.map_or("-".to_owned(), |a| show_address(&a)),
            socket.remote.map_or("-".to_owned(), |a| show_address(&a)),
            judgement.role.name().to_owned(),
            if socket.keepalive { "on" } else { "off" }.to_owned(),
            show_value("idle", socket.idle),
            show_value("interval", socket.interval),
            show_value("count", socket.count),
            show_value("user_timeout_ms", socket.user_timeout_ms),
        ];
        if expectation.is_some() {
            row.push(show_expected(judgement.expected));
        }
        row.push(show_verdict(judgement, policy));
        rows.push(row);
    }
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in &rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column + 1 == columns {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[column]);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

pub(super) fn strip_prefix(error: &ConfigError) -> String {
    let line = error.to_string();
    line.strip_prefix(&format!("{PREFIX}: "))
        .map(str::to_owned)
        .unwrap_or(line)
}
