//! `apply`: give the TCP sockets a running process already has the configured keepalive, from
//! outside and without a restart. Each socket is duplicated into this process with pidfd_getfd
//! (as `inspect` reads them) and `setsockopt` on the duplicate changes the process's socket.
//! The target is never stopped, signalled or written to.
//!
//! Everything that decides is `keepalive-config`'s, as in the library: the options and their
//! parser, the plan of values, the targeting rule, and `Override::settle` for a socket that
//! already carries values (the library's rule for a socket it configures late).
//!
//! Two passes: every process is checked first (it exists, it is not a thread, its sockets can be
//! duplicated, it has a TCP socket), so that bad input changes nothing; then each socket is
//! duplicated, read, changed, read back and closed at once, so no socket stays held open.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::Args;
use keepalive_config::{
    Config, ConfigError, Decision, KernelDefaults, Override, PREFIX, Plan, Quoted,
    Role as TargetRole, SocketOption,
};

use crate::check::kernel_defaults;
use crate::inspect::{
    self, LIBRARY_STEM, Process, Role, Socket, json_string, show_address, state_name,
};
use crate::options::{PolicyVariables, VariableOptions};
use crate::settings::Filters;
use crate::{EXIT_ERROR, Failure, sys};

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// Processes whose TCP sockets to configure.
    #[arg(
        value_name = "PID",
        value_parser = clap::value_parser!(i32).range(1..),
        required_unless_present_any = ["unit", "cgroup"],
        conflicts_with_all = ["unit", "cgroup"]
    )]
    pids: Vec<i32>,
    /// Every process of this systemd unit (the processes in its control group).
    #[arg(long, value_name = "NAME", conflicts_with = "cgroup")]
    unit: Option<String>,
    /// Every process of this control group: its directory (/sys/fs/cgroup/...), or its path as
    /// /proc/PID/cgroup shows it (/system.slice/redis-server.service).
    #[arg(long, value_name = "PATH")]
    cgroup: Option<PathBuf>,
    #[command(flatten)]
    policy: VariableOptions<PolicyVariables>,
    /// Show what would be set; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// One JSON object per socket (JSON Lines), with the fields of `inspect --json`.
    #[arg(long)]
    json: bool,
}

/// Where the processes of a control group are listed, for a cgroup path of /proc/PID/cgroup:
/// unified (cgroup v2), hybrid (v2 beside v1), legacy (systemd's named v1 hierarchy).
const CGROUP_ROOTS: [&str; 3] = [
    "/sys/fs/cgroup",
    "/sys/fs/cgroup/unified",
    "/sys/fs/cgroup/systemd",
];

pub fn apply(args: &ApplyArgs) -> Result<ExitCode, Failure> {
    let parsed = args.policy.parse_over_environment();
    if !parsed.errors.is_empty() {
        for error in &parsed.errors {
            eprintln!("{}", error_line(error, &args.policy));
        }
        return Ok(ExitCode::from(EXIT_ERROR));
    }
    let config = parsed.config;
    if !config.enabled {
        return Err(Failure::new(
            "apply: KEEPALIVE is off in this environment, so there is nothing to apply; unset it",
        ));
    }
    let (pids, named) = match (&args.unit, &args.cgroup) {
        (Some(unit), _) => (unit_processes(unit)?, false),
        (None, Some(path)) => (cgroup_processes(path)?, false),
        (None, None) => {
            let mut seen = HashSet::new();
            let pids: Vec<i32> = args
                .pids
                .iter()
                .copied()
                .filter(|&pid| seen.insert(pid))
                .collect();
            (pids, true)
        }
    };

    // First pass: nothing is changed unless every process can be.
    let mut defaults = NamespaceDefaults::default();
    let mut targets = Vec::new();
    for pid in pids {
        match Target::open(pid, named, &config, &mut defaults) {
            Ok(Some(target)) => targets.push(target),
            Ok(None) => {}
            Err(Failure(message)) => {
                return Err(Failure::new(format!("apply: pid {pid}: {message}")));
            }
        }
    }
    if !named && !targets.iter().any(|target| target.has_tcp) {
        return Err(Failure::new(format!(
            "apply: no process of {} has a TCP socket: nothing to apply",
            args.unit.as_deref().map_or_else(
                || "the control group".to_owned(),
                |unit| format!("unit {unit}")
            )
        )));
    }

    // Second pass: each socket is changed and read back on its own.
    let filters = Filters::new(&config);
    let rule = Rule {
        config: &config,
        filters: &filters,
        dry_run: args.dry_run,
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut seen: HashMap<u64, (i32, i32)> = HashMap::new();
    let mut tally = Tally::default();
    for (index, target) in targets.iter().enumerate() {
        let outcomes = target.apply(&rule, &mut seen);
        tally.add(&outcomes);
        let text = if args.json {
            json_lines(target, &outcomes, args.dry_run)
        } else {
            let mut text = String::new();
            if index == 0 {
                let _ = writeln!(
                    text,
                    "{PREFIX}: apply{}: {}",
                    if args.dry_run { " --dry-run" } else { "" },
                    plan_line(&config, &target.plan)
                );
            }
            text.push('\n');
            text.push_str(&table(
                target,
                &outcomes,
                config.override_policy,
                args.dry_run,
            ));
            text
        };
        // A closed stdout (apply ... | head) does not stop the change half-way.
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    }
    let summary = tally.line(targets.len(), args.dry_run);
    if args.json {
        eprintln!("{PREFIX}: apply: {summary}");
    } else {
        let _ = writeln!(out, "\n{PREFIX}: apply: {summary}");
    }
    Ok(ExitCode::from(if tally.failed > 0 { 1 } else { 0 }))
}

/// A rejected value, naming the option that gave it or the environment.
fn error_line(error: &ConfigError<'_>, options: &VariableOptions<PolicyVariables>) -> String {
    let line = error.to_string();
    let variable = error.variable;
    let given = format!("{PREFIX}: {}={} ", variable.name, Quoted(error.value));
    let Some(rest) = line.strip_prefix(&given) else {
        return line;
    };
    let rest = rest.strip_suffix("; not applied").map_or_else(
        || rest.to_owned(),
        |rest| format!("{rest}; nothing changed"),
    );
    if options.values().contains_key(variable.name) {
        format!(
            "{PREFIX}: apply: --{} {} (sets {}) {rest}",
            variable.flag,
            Quoted(error.value),
            variable.name
        )
    } else {
        format!(
            "{PREFIX}: apply: {}={} in this environment {rest}",
            variable.name,
            Quoted(error.value)
        )
    }
}

/// What is set, on one line.
fn plan_line(config: &Config<'_>, plan: &Plan) -> String {
    let mut text = String::from("setting");
    for &(option, value) in plan.steps() {
        let _ = write!(text, " {}", show_option(option, value));
    }
    let _ = write!(
        text,
        "; override={}; ports={}; nets={}",
        config.override_policy.name(),
        config.ports.map_or("any", |ports| ports.as_str()),
        config.nets.map_or("any", |nets| nets.as_str())
    );
    text
}

fn show_option(option: SocketOption, value: i32) -> String {
    match option {
        SocketOption::KeepAlive => format!("keepalive={}", on_off(value)),
        SocketOption::Count => format!("cnt={value}"),
        SocketOption::UserTimeout => format!("user_timeout={value}ms"),
        SocketOption::Idle | SocketOption::Interval => format!("{}={value}s", option.label()),
    }
}

fn on_off(value: i32) -> &'static str {
    if value != 0 { "on" } else { "off" }
}

// ---------------------------------------------------------------------------------------------
// which processes

/// The processes of a systemd unit: its ControlGroup, as `systemctl show` reports it.
fn unit_processes(unit: &str) -> Result<Vec<i32>, Failure> {
    if !Path::new("/run/systemd/system").is_dir() {
        return Err(Failure::new(format!(
            "apply: --unit {unit}: systemd is not running on this machine (no /run/systemd/system); \
             give the process IDs, or the control group with --cgroup PATH"
        )));
    }
    let output = Command::new("systemctl")
        .args([
            "show",
            "--property=LoadState",
            "--property=ControlGroup",
            "--",
        ])
        .arg(unit)
        .output()
        .map_err(|error| {
            Failure::new(format!(
                "apply: --unit {unit}: cannot run systemctl: {error}"
            ))
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    let property = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
            .map(str::trim)
            .unwrap_or("")
    };
    if !output.status.success() {
        return Err(Failure::new(format!(
            "apply: --unit {unit}: systemctl show failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    if property("LoadState") == "not-found" {
        return Err(Failure::new(format!(
            "apply: --unit {unit}: no such unit (systemctl list-units lists the loaded ones)"
        )));
    }
    let group = property("ControlGroup");
    if group.is_empty() {
        return Err(Failure::new(format!(
            "apply: --unit {unit}: the unit has no control group, so no process: it is not \
             running (systemctl status {unit})"
        )));
    }
    cgroup_processes(Path::new(group))
}

/// Every process in a control group and the groups below it.
fn cgroup_processes(path: &Path) -> Result<Vec<i32>, Failure> {
    let directory = if path.join("cgroup.procs").is_file() {
        path.to_path_buf()
    } else {
        let relative = path.strip_prefix("/").unwrap_or(path);
        CGROUP_ROOTS
            .iter()
            .map(|root| Path::new(root).join(relative))
            .find(|candidate| candidate.join("cgroup.procs").is_file())
            .ok_or_else(|| {
                Failure::new(format!(
                    "apply: control group {}: not found (neither a directory with cgroup.procs \
                     nor a group under {})",
                    path.display(),
                    CGROUP_ROOTS.join(", ")
                ))
            })?
    };
    let mut pids = Vec::new();
    let mut pending = vec![directory.clone()];
    while let Some(group) = pending.pop() {
        let procs = std::fs::read_to_string(group.join("cgroup.procs")).map_err(|error| {
            Failure::new(format!(
                "apply: cannot read {}: {error}",
                group.join("cgroup.procs").display()
            ))
        })?;
        pids.extend(
            procs
                .lines()
                .filter_map(|line| line.trim().parse::<i32>().ok()),
        );
        if let Ok(entries) = std::fs::read_dir(&group) {
            pending.extend(
                entries
                    .flatten()
                    .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
                    .map(|entry| entry.path()),
            );
        }
    }
    let mut seen = HashSet::new();
    pids.retain(|&pid| seen.insert(pid));
    if pids.is_empty() {
        return Err(Failure::new(format!(
            "apply: control group {} has no process",
            directory.display()
        )));
    }
    Ok(pids)
}

// ---------------------------------------------------------------------------------------------
// one process

/// The keepalive sysctls of each network namespace met, by the namespace's inode.
#[derive(Default)]
struct NamespaceDefaults {
    known: HashMap<(u64, u64), (KernelDefaults, Option<String>)>,
}

impl NamespaceDefaults {
    /// The sysctls of the namespace `pid` is in: they are what a socket there reads back when
    /// nobody set an option (and what `auto` adds up). Another namespace's are read by a thread
    /// that enters it (root); where that is refused, this one's are assumed and said.
    fn of(&mut self, pid: i32) -> (KernelDefaults, Option<String>) {
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
struct Target {
    process: Process,
    pidfd: OwnedFd,
    /// Socket descriptors and their inodes, from /proc/PID/fd.
    fds: Vec<(i32, u64)>,
    /// Local ports it listens on (roles: a socket on one of them was accepted).
    listening: Vec<u16>,
    /// Remote addresses by inode, for sockets whose connect is in progress.
    remotes: HashMap<u64, SocketAddr>,
    kernel: KernelDefaults,
    plan: Plan,
    note: Option<String>,
    has_tcp: bool,
}

impl Target {
    /// Checks `pid`. A process that is gone is an error when it was named, and skipped when it
    /// came from a control group (it exited meanwhile).
    fn open(
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
            library: inspect::mapped_library(&maps),
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
    fn apply(&self, rule: &Rule<'_>, seen: &mut HashMap<u64, (i32, i32)>) -> Vec<Outcome> {
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
            if socket.remote.is_none() && matches!(socket.state, 2 | 3) {
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

// ---------------------------------------------------------------------------------------------
// the rule

struct Rule<'a> {
    config: &'a Config<'a>,
    filters: &'a Filters,
    dry_run: bool,
}

impl Rule<'_> {
    /// Whether the policy acts on this socket: the one targeting rule, with the role the
    /// process's listening ports imply (as `inspect` judges it).
    fn decide(&self, role: Role, socket: &Socket) -> Result<(), &'static str> {
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

// ---------------------------------------------------------------------------------------------
// outcomes

/// The five values of a socket, in the table's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Values([i32; SocketOption::COUNT]);

impl Values {
    fn of(socket: &Socket) -> Self {
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

    fn get(&self, option: SocketOption) -> i32 {
        self.0[Self::index(option)]
    }

    fn put(&mut self, option: SocketOption, value: i32) {
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
enum Kind {
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

struct Outcome {
    fd: i32,
    role: Option<Role>,
    socket: Option<Socket>,
    before: Option<Values>,
    /// Read back (or, dry, what would be).
    after: Values,
    set: Vec<SocketOption>,
    /// Configured options the socket keeps another value of (the program's, under the policy).
    kept: Vec<SocketOption>,
    kind: Kind,
}

impl Outcome {
    fn bare(fd: i32, kind: Kind) -> Self {
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
struct Tally {
    sockets: usize,
    changed: usize,
    unchanged: usize,
    not_targeted: usize,
    closed: usize,
    failed: usize,
}

impl Tally {
    fn add(&mut self, outcomes: &[Outcome]) {
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

    fn line(&self, processes: usize, dry_run: bool) -> String {
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

fn table(target: &Target, outcomes: &[Outcome], policy: Override, dry_run: bool) -> String {
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

fn json_lines(target: &Target, outcomes: &[Outcome], dry_run: bool) -> String {
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
