//! What `apply` found and did, per socket: the table, the JSON lines and the tally.

use std::fmt::Write as _;
use std::net::SocketAddr;

use keepalive_config::{Override, SocketOption};

use super::on_off;
use super::target::Target;
use crate::inspect::{self, LIBRARY_STEM, Role, Socket, json_string, show_address, state_name};

/// The five values of a socket, in the table's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Values([i32; SocketOption::COUNT]);

impl Values {
    pub(super) fn of(socket: &Socket) -> Self {
        let int = |value: u32| i32::try_from(value).unwrap_or(i32::MAX);
        Self([
            i32::from(socket.keepalive),
            int(socket.idle),
            int(socket.interval),
            int(socket.count),
            int(socket.user_timeout_ms),
        ])
    }

    fn index(option: SocketOption) -> usize {
        SocketOption::ALL
            .iter()
            .position(|&known| known == option)
            .unwrap_or(0)
    }

    pub(super) fn get(&self, option: SocketOption) -> i32 {
        self.0[Self::index(option)]
    }

    pub(super) fn put(&mut self, option: SocketOption, value: i32) {
        self.0[Self::index(option)] = value;
    }

    /// `on 2/1/3 3000ms`
    fn show(&self) -> String {
        let [keepalive, idle, interval, count, user_timeout] = self.0;
        format!(
            "{} {idle}/{interval}/{count} {user_timeout}ms",
            on_off(keepalive)
        )
    }

    fn json(&self) -> String {
        let [keepalive, idle, interval, count, user_timeout] = self.0;
        format!(
            "{{\"keepalive\":{},\"idle\":{idle},\"interval\":{interval},\"count\":{count},\"user_timeout_ms\":{user_timeout}}}",
            keepalive != 0
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Options set and read back.
    Changed,
    /// Options that would be set (--dry-run).
    WouldChange,
    /// Targeted, and it already carries what the policy gives it.
    Unchanged,
    NotTargeted(&'static str),
    /// Closed between being listed and being changed: skipped.
    Closed,
    /// A descriptor of a socket already handled (dup'ed, or shared with another process).
    SameAs(i32, i32),
    /// Some option could not be set or does not read back as set.
    Failed(String),
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Changed => "changed",
            Kind::WouldChange => "would-change",
            Kind::Unchanged => "unchanged",
            Kind::NotTargeted(_) => "not-targeted",
            Kind::Closed => "closed",
            Kind::SameAs(..) => "same-socket",
            Kind::Failed(_) => "failed",
        }
    }
}

pub(super) struct Outcome {
    pub(super) fd: i32,
    pub(super) role: Option<Role>,
    pub(super) socket: Option<Socket>,
    pub(super) before: Option<Values>,
    /// Read back (or, dry, what would be).
    pub(super) after: Values,
    pub(super) set: Vec<SocketOption>,
    /// Configured options the socket keeps another value of (the program's, under the policy).
    pub(super) kept: Vec<SocketOption>,
    pub(super) kind: Kind,
}

impl Outcome {
    pub(super) fn bare(fd: i32, kind: Kind) -> Self {
        Self {
            fd,
            role: None,
            socket: None,
            before: None,
            after: Values([0; SocketOption::COUNT]),
            set: Vec::new(),
            kept: Vec::new(),
            kind,
        }
    }

    fn labels(options: &[SocketOption]) -> Vec<&'static str> {
        options.iter().map(|option| option.label()).collect()
    }

    fn result(&self, policy: Override) -> String {
        let set = Self::labels(&self.set).join(" ");
        let mut text = match &self.kind {
            Kind::Changed => format!("set {set}"),
            Kind::WouldChange => format!("would set {set}"),
            Kind::Unchanged => "unchanged".to_owned(),
            Kind::NotTargeted(reason) => format!("not targeted ({reason})"),
            Kind::Closed => "closed meanwhile, skipped".to_owned(),
            Kind::SameAs(pid, fd) => format!("the socket of pid {pid} fd {fd}"),
            Kind::Failed(problem) => format!("FAILED: {problem}"),
        };
        if !self.kept.is_empty() {
            let _ = write!(
                text,
                "; kept the program's {} (override={})",
                Self::labels(&self.kept).join(" "),
                policy.name()
            );
        }
        text
    }
}

#[derive(Default)]
pub(super) struct Tally {
    sockets: usize,
    changed: usize,
    unchanged: usize,
    not_targeted: usize,
    closed: usize,
    pub(super) failed: usize,
}

impl Tally {
    pub(super) fn add(&mut self, outcomes: &[Outcome]) {
        for outcome in outcomes {
            match outcome.kind {
                Kind::Changed | Kind::WouldChange => self.changed += 1,
                Kind::Unchanged => self.unchanged += 1,
                Kind::NotTargeted(_) => self.not_targeted += 1,
                Kind::Closed => {
                    self.closed += 1;
                    continue;
                }
                Kind::SameAs(..) => continue,
                Kind::Failed(_) => self.failed += 1,
            }
            self.sockets += 1;
        }
    }

    pub(super) fn line(&self, processes: usize, dry_run: bool) -> String {
        format!(
            "{} TCP socket{} in {processes} process{}: {} {}, {} already as configured, {} not \
             targeted, {} failed; {} closed meanwhile, skipped",
            self.sockets,
            if self.sockets == 1 { "" } else { "s" },
            if processes == 1 { "" } else { "es" },
            self.changed,
            if dry_run { "would change" } else { "changed" },
            self.unchanged,
            self.not_targeted,
            self.failed,
            self.closed,
        )
    }
}

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
