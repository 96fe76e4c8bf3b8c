//! Rendering: the table and JSON Lines (serde).

use std::fmt::Write as _;
use std::net::SocketAddr;

use keepalive_config::{ConfigError, Override, PREFIX};

use crate::json::json_line;
use crate::library::LIBRARY_STEM;

use super::expectation::Expectation;
use serde::{Serialize, Serializer};

use super::judge::{Expected, Judgement, Role, Verdict};
use super::process::{Process, Socket};
use super::state::TcpState;

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

/// One line of `inspect --json`: these names, in this order, are what scripts and the tests
/// read.
#[derive(Serialize)]
struct SocketLine<'a> {
    pid: i32,
    fd: i32,
    program: &'a str,
    #[serde(flatten)]
    socket: SocketJson<u32>,
    /// Only with a configuration to judge by: `null` when the socket is not targeted.
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<Option<ExpectedJson>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    differences: Option<Vec<&'static str>>,
    verdict: Verdict,
}

/// What `inspect --json` and `apply --json` say of a socket, from `family` to `library`.
#[derive(Serialize)]
pub struct SocketJson<V> {
    family: Family,
    local: Option<Address>,
    remote: Option<Address>,
    state: TcpState,
    role: Role,
    keepalive: bool,
    idle: V,
    interval: V,
    count: V,
    user_timeout_ms: V,
    library: bool,
}

impl<V> SocketJson<V> {
    /// `socket` in `role`, carrying `keepalive` and `[idle, interval, count, user_timeout_ms]`.
    pub fn new(
        socket: &Socket,
        role: Role,
        library: bool,
        keepalive: bool,
        [idle, interval, count, user_timeout_ms]: [V; 4],
    ) -> Self {
        Self {
            family: Family::of(socket),
            local: socket.local.map(Address),
            remote: socket.remote.map(Address),
            state: socket.state,
            role,
            keepalive,
            idle,
            interval,
            count,
            user_timeout_ms,
            library,
        }
    }
}

#[derive(Serialize)]
struct ExpectedJson {
    keepalive: bool,
    idle: Option<u32>,
    interval: Option<u32>,
    count: Option<u32>,
    user_timeout_ms: Option<u32>,
}

/// `ipv4` or `ipv6`.
#[derive(Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    fn of(socket: &Socket) -> Self {
        if socket.ipv6 {
            Family::Ipv6
        } else {
            Family::Ipv4
        }
    }
}

/// A socket address as `show_address` writes it.
#[derive(Clone, Copy)]
struct Address(SocketAddr);

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&show_address(&self.0))
    }
}

/// One JSON object per socket, one per line.
pub fn json_lines(
    process: &Process,
    expectation: Option<&Expectation>,
    judgements: &[Judgement],
) -> String {
    let program = program_name(process);
    let mut out = String::new();
    for (socket, judgement) in process.sockets.iter().zip(judgements) {
        let line = SocketLine {
            pid: process.pid,
            fd: socket.fd,
            program: &program,
            socket: SocketJson::new(
                socket,
                judgement.role,
                process.library.is_some(),
                socket.keepalive,
                [
                    socket.idle,
                    socket.interval,
                    socket.count,
                    socket.user_timeout_ms,
                ],
            ),
            expected: expectation.map(|_| {
                judgement.expected.map(|expected| ExpectedJson {
                    keepalive: true,
                    idle: expected.idle,
                    interval: expected.interval,
                    count: expected.count,
                    user_timeout_ms: expected.user_timeout_ms,
                })
            }),
            differences: expectation.map(|_| {
                judgement
                    .differences
                    .iter()
                    .map(|&(field, _, _)| field)
                    .collect()
            }),
            verdict: judgement.verdict,
        };
        out.push_str(&json_line(&line));
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
            socket.state.name().to_owned(),
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
