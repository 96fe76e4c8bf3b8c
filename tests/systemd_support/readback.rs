//! What the tests read back from the container: the live sockets of a unit's process, as
//! `keepalive-preload inspect --json` (and `apply --json`) prints them, and the read-back lines
//! of cli/tests/bpf/sock.c's programs.

use super::Container;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Values {
    pub idle: u32,
    pub interval: u32,
    pub count: u32,
    pub user_timeout_ms: u32,
}

impl Values {
    /// The four timings from the fields of one JSON object named by `keys` (idle, interval,
    /// count, user timeout: `inspect` and `bpf status` name them differently); `None` unless
    /// all four are numbers.
    pub fn from_fields(json: &str, keys: [&str; 4]) -> Option<Self> {
        let [idle, interval, count, user_timeout_ms] =
            keys.map(|key| field(json, key).and_then(|value| value.parse::<u32>().ok()));
        Some(Self {
            idle: idle?,
            interval: interval?,
            count: count?,
            user_timeout_ms: user_timeout_ms?,
        })
    }
}

/// One socket of `keepalive-preload inspect --json`.
#[derive(Debug, Clone)]
pub struct Socket {
    pub local: String,
    pub remote: String,
    pub state: String,
    pub role: String,
    pub keepalive: bool,
    pub values: Option<Values>,
}

impl Socket {
    pub fn local_port(&self) -> u16 {
        port(&self.local)
    }
    pub fn remote_port(&self) -> u16 {
        port(&self.remote)
    }
    pub fn remote_host(&self) -> &str {
        host(&self.remote)
    }
}

fn port(address: &str) -> u16 {
    address
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or(0)
}

fn host(address: &str) -> &str {
    address
        .rsplit_once(':')
        .map_or("", |(host, _)| host.trim_matches(['[', ']']))
}

/// A flat field of one JSON line: string, number, boolean or null (None).
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &line[start..];
    let value = if let Some(quoted) = rest.strip_prefix('"') {
        &quoted[..quoted.find('"')?]
    } else {
        rest[..rest.find([',', '}']).unwrap_or(rest.len())].trim()
    };
    (value != "null").then_some(value)
}

/// Every TCP socket of a process in the container, read from the live sockets.
pub fn sockets(c: &Container, pid: u32) -> Vec<Socket> {
    let run = c.exec(&format!("keepalive-preload inspect --json {pid}"));
    // 1: some socket lacks keepalive (the runs without the library); 2: an error.
    assert!(
        matches!(run.status, Some(0 | 1)),
        "inspect {pid}: {:?}\n{}",
        run.status,
        run.stderr
    );
    parse_sockets(&run.stdout)
}

/// The sockets of JSON lines with the fields of `inspect --json` (`apply --json` too).
pub fn parse_sockets(text: &str) -> Vec<Socket> {
    text.lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| {
            let values =
                Values::from_fields(line, ["idle", "interval", "count", "user_timeout_ms"]);
            Socket {
                local: field(line, "local").unwrap_or("").to_owned(),
                remote: field(line, "remote").unwrap_or("").to_owned(),
                state: field(line, "state").unwrap_or("").to_owned(),
                role: field(line, "role").unwrap_or("").to_owned(),
                keepalive: field(line, "keepalive") == Some("true"),
                values,
            }
        })
        .collect()
}

/// One socket as cli/tests/bpf/sock.c prints it, read back by the program itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readback {
    pub role: String,
    pub peer: String,
    /// Each of its setsockopt calls' result (0 or -errno), before/after connect or accept.
    pub calls: String,
    pub keepalive: bool,
    pub values: Values,
}

pub fn readbacks(text: &str) -> Vec<Readback> {
    text.lines()
        .filter_map(|line| line.find("role=").map(|at| &line[at..]))
        .map(|line| {
            let get = |key: &str| {
                line.split_whitespace()
                    .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
                    .unwrap_or_else(|| panic!("no {key} in {line:?}"))
            };
            let number = |key: &str| -> i64 {
                get(key)
                    .parse()
                    .unwrap_or_else(|_| panic!("{key} in {line:?}"))
            };
            let value = |key: &str| u32::try_from(number(key)).unwrap_or(u32::MAX);
            Readback {
                role: get("role").to_owned(),
                peer: get("peer").to_owned(),
                calls: get("calls").to_owned(),
                keepalive: number("keepalive") == 1,
                values: Values {
                    idle: value("idle"),
                    interval: value("intvl"),
                    count: value("cnt"),
                    user_timeout_ms: value("uto"),
                },
            }
        })
        .collect()
}
