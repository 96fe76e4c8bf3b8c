//! The sockets of live processes as the project's own command reads them:
//! `keepalive-preload inspect PID... --json` (pidfd_getfd + getsockopt). The fixture has no
//! reader of sockets of its own: addresses, states and values all come from here.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

/// The keepalive options of one socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Values {
    pub keepalive: bool,
    pub idle: u32,
    pub interval: u32,
    pub count: u32,
    pub user_timeout_ms: u32,
}

impl Values {
    pub const fn on(idle: u32, interval: u32, count: u32, user_timeout_ms: u32) -> Self {
        Self {
            keepalive: true,
            idle,
            interval,
            count,
            user_timeout_ms,
        }
    }

    /// A socket nobody configured, in a fresh namespace: the kernel's defaults.
    pub const fn off() -> Self {
        Self {
            keepalive: false,
            idle: 7200,
            interval: 75,
            count: 9,
            user_timeout_ms: 0,
        }
    }

    /// `2/1/3, user timeout 3000 ms`, `off, no user timeout`: the demo's column.
    pub fn summary(&self) -> String {
        let timeout = match self.user_timeout_ms {
            0 => "no user timeout".to_owned(),
            ms => format!("user timeout {ms} ms"),
        };
        if self.keepalive {
            format!("{}/{}/{}, {timeout}", self.idle, self.interval, self.count)
        } else {
            format!("off, {timeout}")
        }
    }
}

impl fmt::Display for Values {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "keepalive={} {}/{}/{} user_timeout={}ms",
            if self.keepalive { "on" } else { "off" },
            self.idle,
            self.interval,
            self.count,
            self.user_timeout_ms
        )
    }
}

/// One TCP socket of a process, as `inspect --json` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Socket {
    pub pid: u32,
    pub fd: i32,
    pub program: String,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    /// The kernel's name of the TCP state: `ESTABLISHED`, `LISTEN`, `CLOSE`...
    pub state: String,
    pub values: Values,
    /// Whether the process has the library mapped.
    pub library: bool,
}

impl Socket {
    pub fn established(&self) -> bool {
        self.state == "ESTABLISHED"
    }

    fn from_json(line: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?;
        let number = |key: &str| {
            value[key]
                .as_u64()
                .ok_or_else(|| format!("no {key} in {line}"))
        };
        let address = |key: &str| -> Result<Option<SocketAddr>, String> {
            match &value[key] {
                Value::Null => Ok(None),
                Value::String(text) => text
                    .parse()
                    .map(Some)
                    .map_err(|e| format!("{key} {text}: {e}")),
                other => Err(format!("{key}: {other}")),
            }
        };
        Ok(Self {
            pid: number("pid")? as u32,
            fd: number("fd")? as i32,
            program: value["program"].as_str().unwrap_or("?").to_owned(),
            local: address("local")?,
            remote: address("remote")?,
            state: value["state"].as_str().unwrap_or("?").to_owned(),
            values: Values {
                keepalive: value["keepalive"]
                    .as_bool()
                    .ok_or_else(|| format!("no keepalive in {line}"))?,
                idle: number("idle")? as u32,
                interval: number("interval")? as u32,
                count: number("count")? as u32,
                user_timeout_ms: number("user_timeout_ms")? as u32,
            },
            library: value["library"].as_bool().unwrap_or(false),
        })
    }
}

/// Every TCP socket of `pids`, read by `command inspect PID... --json`; an error when a process
/// is gone or the command fails otherwise (its exit status 1 only says that some socket has no
/// keepalive).
pub fn try_inspect(command: &Path, pids: &[u32]) -> Result<Vec<Socket>, String> {
    if pids.is_empty() {
        return Ok(Vec::new());
    }
    let mut inspect = crate::sys::command(command);
    inspect
        .arg("inspect")
        .args(pids.iter().map(u32::to_string))
        .arg("--json");
    // The command itself never runs under the library.
    without_library(&mut inspect);
    let output = crate::sys::run_status(&mut inspect, Duration::from_secs(30));
    if !matches!(output.status.code(), Some(0 | 1)) {
        return Err(format!(
            "{} inspect {pids:?}: {}: {}",
            command.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(Socket::from_json)
        .collect()
}

/// [`try_inspect`], or a panic that says why.
pub fn inspect(command: &Path, pids: &[u32]) -> Vec<Socket> {
    try_inspect(command, pids).unwrap_or_else(|e| panic!("{e}"))
}

/// The library's variables: a child gets exactly those the fixture gives it.
pub fn is_library_variable(name: &str) -> bool {
    name == "LD_PRELOAD"
        || name.starts_with("KEEPALIVE")
        || matches!(name, "KEEPIDLE" | "KEEPINTVL" | "KEEPCNT")
}

/// Removes LD_PRELOAD and every variable of the library from a command's environment.
pub fn without_library(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if is_library_variable(&name.to_string_lossy()) {
            command.env_remove(name);
        }
    }
}
