//! What `apply` found and did, per socket: the table, the JSON lines and the tally.

use std::fmt::Write as _;
use std::net::SocketAddr;

use keepalive_config::{Override, SocketOption};

use super::target::Target;
use crate::inspect::{self, Role, json_string, show_address, state_name};
use crate::library::LIBRARY_STEM;

use super::outcome::{Kind, Outcome};
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
            socket.map_or("-", |s| state_name(s.state)).to_owned(),
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

pub(super) fn json_lines(target: &Target, outcomes: &[Outcome], dry_run: bool) -> String {
    let process = &target.process;
    let program = json_string(&inspect::program_name(process));
    let mut out = String::new();
    for outcome in outcomes {
        let _ = write!(
            out,
            "{{\"pid\":{},\"fd\":{},\"program\":{program}",
            process.pid, outcome.fd
        );
        if let (Some(socket), Some(role), Some(before)) =
            (outcome.socket.as_ref(), outcome.role, outcome.before)
        {
            let address = |address: Option<SocketAddr>| {
                address.map_or("null".to_owned(), |a| json_string(&show_address(&a)))
            };
            // The values on the socket now, named as `inspect --json` names them.
            let now = if dry_run { before } else { outcome.after };
            let [keepalive, idle, interval, count, user_timeout] = now.0;
            let _ = write!(
                out,
                ",\"family\":\"{}\",\"local\":{},\"remote\":{},\"state\":\"{}\",\"role\":\"{}\",\"keepalive\":{},\"idle\":{idle},\"interval\":{interval},\"count\":{count},\"user_timeout_ms\":{user_timeout},\"library\":{},\"before\":{},\"{}\":{}",
                if socket.ipv6 { "ipv6" } else { "ipv4" },
                address(socket.local),
                address(socket.remote),
                state_name(socket.state),
                role.name(),
                keepalive != 0,
                process.library.is_some(),
                before.json(),
                if dry_run { "would_be" } else { "after" },
                outcome.after.json(),
            );
        }
        let labels = |options: &[SocketOption]| {
            Outcome::labels(options)
                .iter()
                .map(|label| json_string(label))
                .collect::<Vec<_>>()
                .join(",")
        };
        let detail = match &outcome.kind {
            Kind::NotTargeted(reason) => json_string(reason),
            Kind::Failed(problem) => json_string(problem),
            Kind::SameAs(pid, fd) => json_string(&format!("the socket of pid {pid} fd {fd}")),
            _ => "null".to_owned(),
        };
        let _ = writeln!(
            out,
            ",\"set\":[{}],\"kept\":[{}],\"result\":\"{}\",\"detail\":{detail},\"dry_run\":{dry_run}}}",
            labels(&outcome.set),
            labels(&outcome.kept),
            outcome.kind.name(),
        );
    }
    out
}
