//! One process: checked first, then each of its sockets judged, changed and read back.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use keepalive_config::{Config, Decision, KernelDefaults, Plan, Role as TargetRole, SocketOption};

use super::outcome::{Kind, Outcome, Values};
use crate::inspect::{self, Process, Role, Socket};
use crate::settings::Filters;
use crate::settings::kernel_defaults;
use crate::{Failure, sys};

/// The keepalive sysctls of each network namespace met, by the namespace's inode.
#[derive(Default)]
pub(super) struct NamespaceDefaults {
    known: HashMap<(u64, u64), (KernelDefaults, Option<String>)>,
}

impl NamespaceDefaults {
    /// The sysctls of the namespace `pid` is in: they are what a socket there reads back when
    /// nobody set an option (and what `auto` adds up). Another namespace's are read by a thread
    /// that enters it (root); where that is refused, this one's are assumed and said.
    pub(super) fn of(&mut self, pid: i32) -> (KernelDefaults, Option<String>) {
        let path = format!("/proc/{pid}/ns/net");
        let (Ok(theirs), Ok(ours)) = (
            std::fs::metadata(&path),
            std::fs::metadata("/proc/self/ns/net"),
        ) else {
            return (kernel_defaults(), None);
        };
        if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
            return (kernel_defaults(), None);
        }
        self.known
            .entry((theirs.dev(), theirs.ino()))
            .or_insert_with(|| {
                let read = || -> io::Result<KernelDefaults> {
                    let namespace = OwnedFd::from(File::open(&path)?);
                    std::thread::scope(|scope| {
                        scope
                            .spawn(|| {
                                sys::setns_net(namespace.as_fd())?;
                                Ok(kernel_defaults())
                            })
                            .join()
                            .unwrap_or_else(|_| Err(io::Error::other("reader thread panicked")))
                    })
                };
                match read() {
                    Ok(defaults) => (defaults, None),
                    Err(error) => (
                        kernel_defaults(),
                        Some(format!(
                            "its network namespace's keepalive sysctls are unreadable ({error}); \
                             this namespace's are assumed"
                        )),
                    ),
                }
            })
            .clone()
    }
}

/// A process checked and ready to be changed.
pub(super) struct Target {
    pub(super) process: Process,
    pidfd: OwnedFd,
    /// Socket descriptors and their inodes, from /proc/PID/fd.
    fds: Vec<(i32, u64)>,
    /// Local ports it listens on (roles: a socket on one of them was accepted).
    listening: Vec<u16>,
    /// Remote addresses by inode, for sockets whose connect is in progress.
    remotes: HashMap<u64, SocketAddr>,
    kernel: KernelDefaults,
    pub(super) plan: Plan,
    pub(super) note: Option<String>,
    pub(super) has_tcp: bool,
}

impl Target {
    /// Checks `pid`. A process that is gone is an error when it was named, and skipped when it
    /// came from a control group (it exited meanwhile).
    pub(super) fn open(
        pid: i32,
        named: bool,
        config: &Config<'_>,
        defaults: &mut NamespaceDefaults,
    ) -> Result<Option<Self>, Failure> {
        let gone = |failure: Failure| if named { Err(failure) } else { Ok(None) };
        let status = match std::fs::read_to_string(format!("/proc/{pid}/status")) {
            Ok(status) => status,
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => {
                return gone(Failure::new("no such process"));
            }
            Err(error) => return Err(proc_error(pid, "read its status", &error)),
        };
        if let Some(tgid) = inspect::thread_of(&status, pid) {
            return Err(Failure::new(format!(
                "is a thread of process {tgid}; apply to {tgid}"
            )));
        }
        let entries = match std::fs::read_dir(format!("/proc/{pid}/fd")) {
            Ok(entries) => entries,
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => {
                return gone(Failure::new("no such process (it exited)"));
            }
            Err(error) => return Err(proc_error(pid, "list its file descriptors", &error)),
        };
        let mut fds: Vec<(i32, u64)> = entries
            .flatten()
            .filter_map(|entry| {
                let fd = entry.file_name().to_str()?.parse::<i32>().ok()?;
                let target = std::fs::read_link(entry.path()).ok()?;
                let inode = target
                    .to_str()?
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .parse()
                    .ok()?;
                Some((fd, inode))
            })
            .collect();
        fds.sort_unstable();
        let (exe, argv0) = inspect::names(pid);
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        let process = Process {
            pid,
            exe,
            argv0,
            library: crate::library::mapped_library(&maps),
            sockets: Vec::new(),
            maps: String::new(),
        };
        let name = inspect::program_name(&process);
        let pidfd = match sys::pidfd_open(pid) {
            Ok(pidfd) => pidfd,
            Err(error) if error.raw_os_error() == Some(libc::ESRCH) => {
                return gone(Failure::new("no such process (it exited)"));
            }
            Err(error) if error.raw_os_error() == Some(libc::ENOSYS) => {
                return Err(Failure::new(
                    "this kernel has no pidfd_open (Linux >= 5.3 needed, and pidfd_getfd >= 5.6)",
                ));
            }
            Err(error) => return Err(Failure::new(format!("pidfd_open failed: {error}"))),
        };
        // The rights over it, and whether it has a TCP socket at all: duplicate sockets until
        // the first TCP one (usually the first socket).
        let mut has_tcp = false;
        for &(fd, _) in &fds {
            let dup = match sys::pidfd_getfd(pidfd.as_fd(), fd) {
                Ok(dup) => dup,
                Err(error) if error.raw_os_error() == Some(libc::EBADF) => continue,
                Err(error) if error.raw_os_error() == Some(libc::ESRCH) => {
                    return gone(Failure::new("no such process (it exited)"));
                }
                Err(error) => return Err(inspect::getfd_error(&error)),
            };
            if matches!(inspect::read_socket(fd, dup.as_fd()), Ok(Some(_))) {
                has_tcp = true;
                break;
            }
        }
        if named && !has_tcp {
            let others = match fds.len() {
                0 => "no socket at all".to_owned(),
                1 => "1 socket, not TCP".to_owned(),
                n => format!("{n} sockets, none TCP"),
            };
            return Err(Failure::new(format!(
                "{name} has no TCP socket ({others}): nothing to apply"
            )));
        }
        let (listening, remotes) = net_table(pid, &fds);
        let (kernel, note) = defaults.of(pid);
        Ok(Some(Self {
            process,
            pidfd,
            fds,
            listening,
            remotes,
            kernel,
            plan: config.plan(kernel),
            note,
            has_tcp,
        }))
    }

    /// Every socket, changed (or, dry, judged) and read back.
    pub(super) fn apply(
        &self,
        rule: &Rule<'_>,
        seen: &mut HashMap<u64, (i32, i32)>,
    ) -> Vec<Outcome> {
        let pid = self.process.pid;
        let plan = self.plan;
        let mut outcomes = Vec::new();
        for &(fd, inode) in &self.fds {
            if let Some(&(first_pid, first_fd)) = seen.get(&inode) {
                outcomes.push(Outcome::bare(fd, Kind::SameAs(first_pid, first_fd)));
                continue;
            }
            let dup = match sys::pidfd_getfd(self.pidfd.as_fd(), fd) {
                Ok(dup) => dup,
                // Closed since it was listed, or the whole process exited: nothing to change.
                Err(error) if matches!(error.raw_os_error(), Some(libc::EBADF | libc::ESRCH)) => {
                    outcomes.push(Outcome::bare(fd, Kind::Closed));
                    continue;
                }
                Err(error) => {
                    outcomes.push(Outcome::bare(
                        fd,
                        Kind::Failed(format!("pidfd_getfd: {error}")),
                    ));
                    continue;
                }
            };
            let mut socket = match inspect::read_socket(fd, dup.as_fd()) {
                Ok(Some(socket)) => socket,
                Ok(None) => continue,
                Err(error) => {
                    outcomes.push(Outcome::bare(
                        fd,
                        Kind::Failed(format!("reading it: {error}")),
                    ));
                    continue;
                }
            };
            seen.insert(inode, (pid, fd));
            if socket.remote.is_none() && socket.state.connecting() {
                socket.remote = self.remotes.get(&inode).copied();
            }
            outcomes.push(self.settle(rule, &plan, dup.as_fd(), socket));
        }
        outcomes
    }

    /// One socket: the targeting rule, then `Override::settle` option by option.
    fn settle(&self, rule: &Rule<'_>, plan: &Plan, dup: BorrowedFd<'_>, socket: Socket) -> Outcome {
        let role = inspect::role(&socket, &self.listening);
        let before = Values::of(&socket);
        let mut outcome = Outcome {
            fd: socket.fd,
            role: Some(role),
            before: Some(before),
            after: before,
            set: Vec::new(),
            kept: Vec::new(),
            kind: Kind::Unchanged,
            socket: Some(socket),
        };
        let decision = rule.decide(role, outcome.socket.as_ref().expect("just set"));
        if let Err(reason) = decision {
            outcome.kind = Kind::NotTargeted(reason);
            return outcome;
        }
        let policy = rule.config.override_policy;
        for &(option, configured) in plan.steps() {
            let current = before.get(option);
            match policy.settle(option, current, self.kernel, configured) {
                Some(value) => {
                    outcome.set.push(option);
                    outcome.after.put(option, value);
                }
                None if current != configured => outcome.kept.push(option),
                None => {}
            }
        }
        if outcome.set.is_empty() {
            return outcome;
        }
        if rule.dry_run {
            outcome.kind = Kind::WouldChange;
            return outcome;
        }
        let mut problems = Vec::new();
        for &option in &outcome.set {
            let row = option.row();
            let wanted = outcome.after.get(option);
            if let Err(error) = sys::setsockopt_int(dup, row.level, row.name, wanted) {
                problems.push(format!("{} {wanted}: {error}", row.constant));
            }
        }
        // Read back fresh what was set: the values the kernel now holds.
        for &option in &outcome.set {
            let row = option.row();
            let wanted = outcome.after.get(option);
            match sys::getsockopt_int(dup, row.level, row.name) {
                Ok(value) => {
                    let value = if option == SocketOption::KeepAlive {
                        i32::from(value != 0)
                    } else {
                        value
                    };
                    outcome.after.put(option, value);
                    if value != wanted && !problems.iter().any(|p| p.starts_with(row.constant)) {
                        problems.push(format!("{} reads back {value}, not {wanted}", row.constant));
                    }
                }
                Err(error) => problems.push(format!("{} read back: {error}", row.constant)),
            }
        }
        outcome.kind = if problems.is_empty() {
            Kind::Changed
        } else {
            Kind::Failed(problems.join("; "))
        };
        outcome
    }
}

fn proc_error(pid: i32, what: &str, error: &io::Error) -> Failure {
    match error.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => Failure::new(format!(
            "not permitted to {what} (/proc/{pid}): apply needs the rights of ptrace over the \
             process; run it as the process's user (with kernel.yama.ptrace_scope allowing it) \
             or as root (CAP_SYS_PTRACE)"
        )),
        _ => Failure::new(format!("cannot {what} (/proc/{pid}): {error}")),
    }
}

/// The ports `pid` listens on and the peers of its sockets, from /proc/PID/net/tcp{,6} (the
/// tables of its network namespace), for the sockets among `fds`.
fn net_table(pid: i32, fds: &[(i32, u64)]) -> (Vec<u16>, HashMap<u64, SocketAddr>) {
    let mine: HashSet<u64> = fds.iter().map(|&(_, inode)| inode).collect();
    let mut listening = Vec::new();
    let mut remotes = HashMap::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for (inode, local, remote) in text.lines().skip(1).filter_map(inspect::parse_net_row) {
            if !mine.contains(&inode) {
                continue;
            }
            if remote.port() == 0 {
                listening.push(local.port());
            } else {
                remotes.insert(inode, remote);
            }
        }
    }
    listening.sort_unstable();
    listening.dedup();
    (listening, remotes)
}

/// The targeting rule and the policy, for every socket of every process.
pub(super) struct Rule<'a> {
    pub(super) config: &'a Config<'a>,
    pub(super) filters: &'a Filters,
    pub(super) dry_run: bool,
}

impl Rule<'_> {
    /// Whether the policy acts on this socket: the one targeting rule, with the role the
    /// process's listening ports imply (as `inspect` judges it).
    pub(super) fn decide(&self, role: Role, socket: &Socket) -> Result<(), &'static str> {
        let targeting = self.filters.targeting();
        if !targeting.filters_by_address() {
            return Ok(());
        }
        let role = match role {
            Role::Listening => TargetRole::Listening,
            Role::Accepted => TargetRole::Accepted,
            Role::Outgoing => TargetRole::Connecting,
            Role::Unconnected => {
                return Err("neither listening nor connected: the filters judge it when it is");
            }
        };
        match targeting.decide(role, socket.local, socket.remote) {
            Decision::Targeted => Ok(()),
            other => Err(other.reason()),
        }
    }
}
