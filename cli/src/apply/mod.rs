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

mod outcome;
mod processes;
mod report;
mod target;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use keepalive_config::{Config, ConfigError, PREFIX, Plan, Quoted, SocketOption};

use crate::options::{PolicyVariables, VariableOptions};
use crate::settings::{Filters, list_or_any};
use crate::{EXIT_ERROR, Failure};
use outcome::{Tally, on_off};
use processes::{cgroup_processes, unit_processes};
use report::{json_lines, table};
use target::{NamespaceDefaults, Rule, Target};

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
    let Some(variable) = error.row() else {
        return line;
    };
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
        list_or_any(config.ports),
        list_or_any(config.nets)
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
