//! What `apply` found and did on each socket, and the tally of a run.

use std::fmt::Write as _;

use keepalive_config::{Override, SocketOption};
use serde::{Serialize, Serializer};

use crate::inspect::{Role, Socket};

pub(super) fn on_off(value: i32) -> &'static str {
    if value != 0 { "on" } else { "off" }
}

/// The five values of a socket, in the table's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Values(pub(super) [i32; SocketOption::COUNT]);

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
    pub(super) fn show(&self) -> String {
        let [keepalive, idle, interval, count, user_timeout] = self.0;
        format!(
            "{} {idle}/{interval}/{count} {user_timeout}ms",
            on_off(keepalive)
        )
    }
}

/// `{"keepalive":true,"idle":2,"interval":1,"count":3,"user_timeout_ms":3000}`
impl Serialize for Values {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Named {
            keepalive: bool,
            idle: i32,
            interval: i32,
            count: i32,
            user_timeout_ms: i32,
        }
        let [keepalive, idle, interval, count, user_timeout_ms] = self.0;
        Named {
            keepalive: keepalive != 0,
            idle,
            interval,
            count,
            user_timeout_ms,
        }
        .serialize(serializer)
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
    pub(super) fn name(&self) -> &'static str {
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

    pub(super) fn labels(options: &[SocketOption]) -> Vec<&'static str> {
        options.iter().map(|option| option.label()).collect()
    }

    pub(super) fn result(&self, policy: Override) -> String {
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
