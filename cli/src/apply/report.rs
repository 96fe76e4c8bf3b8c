//! What `apply` found and did, per socket: the table, the JSON lines and the tally.

use std::fmt::Write as _;
use std::net::SocketAddr;

use keepalive_config::Override;
use serde::Serialize;

use super::outcome::{Kind, Outcome, Values};
use super::target::Target;
use crate::inspect::{self, Role, SocketJson, show_address};
use crate::json::json_line;
use crate::library::LIBRARY_STEM;

pub(super) fn table(
    target: &Target,
    outcomes: &[Outcome],
    policy: Override,
    dry_run: bool,
) -> String {
    let process = &target.process;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "pid {} {} ({}): {}",
        process.pid,
        inspect::program_name(process),
        process.exe.as_deref().unwrap_or("executable unknown"),
        match &process.library {
            Some(path) => format!("{LIBRARY_STEM} mapped from {path}"),
            None => format!("{LIBRARY_STEM} not mapped"),
        }
    );
    if let Some(note) = &target.note {
        let _ = writeln!(out, "note: {note}");
    }
    if outcomes.is_empty() {
        let _ = writeln!(out, "no TCP sockets");
        return out;
    }
    let mut rows: Vec<[String; 8]> = vec![[
        "FD".to_owned(),
        "STATE".to_owned(),
        "LOCAL".to_owned(),
        "REMOTE".to_owned(),
        "ROLE".to_owned(),
        "BEFORE".to_owned(),
        if dry_run { "WOULD BE" } else { "AFTER" }.to_owned(),
        "RESULT".to_owned(),
    ]];
    for outcome in outcomes {
        let socket = outcome.socket.as_ref();
        let address =
            |address: Option<SocketAddr>| address.map_or("-".to_owned(), |a| show_address(&a));
        rows.push([
            outcome.fd.to_string(),
            socket.map_or("-", |s| s.state.name()).to_owned(),
            address(socket.and_then(|s| s.local)),
            address(socket.and_then(|s| s.remote)),
            outcome.role.map_or("-", Role::name).to_owned(),
            outcome.before.map_or("-".to_owned(), |v| v.show()),
            if outcome.before.is_some() {
                outcome.after.show()
            } else {
                "-".to_owned()
            },
            outcome.result(policy),
        ]);
    }
    let mut widths = [0usize; 8];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in &rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(widths).take(7) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        line.push_str(&row[7]);
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// One line of `apply --json`: the fields of `inspect --json` for the socket, then what was
/// done.
#[derive(Serialize)]
struct OutcomeLine<'a> {
    pid: i32,
    fd: i32,
    program: &'a str,
    /// Absent for a descriptor that was never read (closed, the same socket as another).
    #[serde(flatten)]
    socket: Option<SocketFields>,
    set: Vec<&'static str>,
    kept: Vec<&'static str>,
    result: &'static str,
    detail: Option<String>,
    dry_run: bool,
}

#[derive(Serialize)]
struct SocketFields {
    /// The values on the socket now, named as `inspect --json` names them.
    #[serde(flatten)]
    socket: SocketJson<i32>,
    before: Values,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<Values>,
    #[serde(skip_serializing_if = "Option::is_none")]
    would_be: Option<Values>,
}

pub(super) fn json_lines(target: &Target, outcomes: &[Outcome], dry_run: bool) -> String {
    let process = &target.process;
    let program = inspect::program_name(process);
    let mut out = String::new();
    for outcome in outcomes {
        let socket = match (outcome.socket.as_ref(), outcome.role, outcome.before) {
            (Some(socket), Some(role), Some(before)) => {
                let now = if dry_run { before } else { outcome.after };
                let [keepalive, idle, interval, count, user_timeout_ms] = now.0;
                Some(SocketFields {
                    socket: SocketJson::new(
                        socket,
                        role,
                        process.library.is_some(),
                        keepalive != 0,
                        [idle, interval, count, user_timeout_ms],
                    ),
                    before,
                    after: (!dry_run).then_some(outcome.after),
                    would_be: dry_run.then_some(outcome.after),
                })
            }
            _ => None,
        };
        let detail = match &outcome.kind {
            Kind::NotTargeted(reason) => Some((*reason).to_owned()),
            Kind::Failed(problem) => Some(problem.clone()),
            Kind::SameAs(pid, fd) => Some(format!("the socket of pid {pid} fd {fd}")),
            _ => None,
        };
        out.push_str(&json_line(&OutcomeLine {
            pid: process.pid,
            fd: outcome.fd,
            program: &program,
            socket,
            set: Outcome::labels(&outcome.set),
            kept: Outcome::labels(&outcome.kept),
            result: outcome.kind.name(),
            detail,
            dry_run,
        }));
    }
    out
}
