//! Judging each socket against what the library, the eBPF policy or `apply` should have done:
//! the role its process's listening ports imply, the one targeting rule, KEEPALIVE_OVERRIDE.

use keepalive_config::Override;
use keepalive_config::Role as TargetRole;

use super::expectation::Expectation;
use super::process::{Process, Socket};
use super::state::TcpState;
use crate::json::serialize_by_name;

/// How the socket came to be, which decides the port a filter looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Listening,
    /// Local port is a port this process listens on.
    Accepted,
    Outgoing,
    /// Neither bound to a listening port nor connected: not judged by filters yet.
    Unconnected,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Listening => "listening",
            Role::Accepted => "accepted",
            Role::Outgoing => "outgoing",
            Role::Unconnected => "unconnected",
        }
    }
}

/// Values the library should have put on a socket; `None` = not configured, not compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    pub idle: Option<u32>,
    pub interval: Option<u32>,
    pub count: Option<u32>,
    pub user_timeout_ms: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// SO_KEEPALIVE is off on a socket that should carry keepalive.
    Missing,
    /// A value differs from the configuration where KEEPALIVE_OVERRIDE says it should not.
    Differs,
    NotTargeted,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Missing => "missing",
            Verdict::Differs => "differs",
            Verdict::NotTargeted => "not-targeted",
        }
    }

    pub fn fails(self) -> bool {
        matches!(self, Verdict::Missing | Verdict::Differs)
    }
}

serialize_by_name!(Role, Verdict);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    pub role: Role,
    pub expected: Option<Expected>,
    pub verdict: Verdict,
    /// Configured values the socket does not carry: (field, actual, expected).
    pub differences: Vec<(&'static str, u32, u32)>,
}

/// Roles, expectations and verdicts for every socket of a process.
pub fn judge_process(process: &Process, expectation: Option<&Expectation>) -> Vec<Judgement> {
    let listening: Vec<u16> = process
        .sockets
        .iter()
        .filter(|socket| socket.state == TcpState::Listen)
        .filter_map(|socket| socket.local.map(|address| address.port()))
        .collect();
    process
        .sockets
        .iter()
        .map(|socket| {
            let role = role(socket, &listening);
            match expectation {
                None => Judgement {
                    role,
                    expected: None,
                    verdict: if socket.keepalive {
                        Verdict::Ok
                    } else {
                        Verdict::Missing
                    },
                    differences: Vec::new(),
                },
                Some(expectation) => judge(socket, role, expectation),
            }
        })
        .collect()
}

pub fn role(socket: &Socket, listening: &[u16]) -> Role {
    let local_port = socket
        .local
        .map(|address| address.port())
        .filter(|&port| port != 0);
    if socket.state == TcpState::Listen {
        Role::Listening
    } else if local_port.is_some_and(|port| listening.contains(&port))
        && socket.state != TcpState::Close
    {
        Role::Accepted
    } else if socket.remote.is_some() {
        Role::Outgoing
    } else {
        Role::Unconnected
    }
}

/// Whether the library should act on this socket: the one targeting rule of
/// `keepalive-config`, with the role this process's listening ports imply.
pub(super) fn targeted(expectation: &Expectation, role: Role, socket: &Socket) -> bool {
    if !expectation.acts {
        return false;
    }
    let targeting = expectation.filters.targeting();
    if !targeting.filters_by_address() {
        return true;
    }
    let role = match role {
        Role::Listening => TargetRole::Listening,
        Role::Accepted => TargetRole::Accepted,
        Role::Outgoing => TargetRole::Connecting,
        // Not judged by the filters until it connects or listens.
        Role::Unconnected => return false,
    };
    targeting
        .decide(role, socket.local, socket.remote)
        .targeted()
}

pub(super) fn judge(socket: &Socket, role: Role, expectation: &Expectation) -> Judgement {
    let config = &expectation.config;
    if !targeted(expectation, role, socket) {
        return Judgement {
            role,
            expected: None,
            verdict: Verdict::NotTargeted,
            differences: Vec::new(),
        };
    }
    let expected = Expected {
        idle: config.idle,
        interval: config.interval,
        count: config.count,
        user_timeout_ms: config.user_timeout_ms(expectation.kernel),
    };
    let policy = config.override_policy;
    let differences: Vec<(&'static str, u32, u32)> = [
        ("idle", socket.idle, expected.idle),
        ("interval", socket.interval, expected.interval),
        ("count", socket.count, expected.count),
        (
            "user_timeout_ms",
            socket.user_timeout_ms,
            expected.user_timeout_ms,
        ),
    ]
    .into_iter()
    .filter_map(|(field, actual, wanted)| {
        let wanted = wanted?;
        let looser = if field == "user_timeout_ms" {
            // 0 disables the timeout: looser than any configured value.
            actual == 0 || actual > wanted
        } else {
            actual > wanted
        };
        let differs = match policy {
            Override::Tighten => looser,
            Override::Yes | Override::No => actual != wanted,
        };
        differs.then_some((field, actual, wanted))
    })
    .collect();
    let verdict = if !socket.keepalive {
        Verdict::Missing
    } else if policy != Override::No && !differences.is_empty() {
        Verdict::Differs
    } else {
        Verdict::Ok
    };
    Judgement {
        role,
        expected: Some(expected),
        verdict,
        differences,
    }
}
