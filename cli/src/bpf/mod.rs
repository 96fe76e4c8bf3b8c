//! `keepalive-preload bpf`: the same policy as the library, enforced by the kernel on every
//! process of a cgroup (a systemd unit) with two eBPF programs — `sock_ops` sets the options when
//! a connection is made, `cgroup/setsockopt` applies KEEPALIVE_OVERRIDE to the program's own
//! `setsockopt` calls. Go, static binaries and io_uring included.
//!
//! The loader is this module: raw `bpf()` (sys.rs), a small ELF reader (elf.rs) for the object
//! build.rs compiles from bpf/keepalive.bpf.c, and the data the programs read (layout.rs), all
//! derived from keepalive-config. Everything is pinned under /sys/fs/bpf/keepalive-preload/
//! cgroup-ID/ and outlives the command.

mod cgroup;
mod elf;
mod layout;
mod load;
mod pins;
mod recorded;
mod status;
mod sys;
pub(crate) mod unit;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use keepalive_config::PREFIX;
use keepalive_config::variables::PROCESS_ONLY;

use crate::options::{PolicyVariables, VariableOptions};
use crate::{EXIT_ERROR, Failure};

use pins::{Attached, attached_policies};
use recorded::{describe, parse_variables};

#[derive(Args, Debug)]
pub struct BpfArgs {
    #[command(subcommand)]
    command: BpfCommand,
}

#[derive(Subcommand, Debug)]
enum BpfCommand {
    /// Attach the policy to a cgroup (or update the one attached there).
    #[command(
        long_about = "Attach the keepalive policy to every TCP socket made in a cgroup \
(a systemd unit's, with --unit) and its descendants, whatever the program's language or linkage: \
a sock_ops program sets the options when a connection is made (connect, accept, listen) and a \
cgroup/setsockopt program applies KEEPALIVE_OVERRIDE to the program's own setsockopt calls. The \
options are those of `run` (one definition); without them the KEEP* variables of this command's \
environment apply, so one unit's Environment= lines serve the library and the policy alike. \
KEEPALIVE_PROGRAMS and KEEPALIVE_INHERIT have no meaning for a cgroup and are an error. The \
policy is pinned under /sys/fs/bpf/keepalive-preload (bpffs is mounted when needed) and outlives \
this command; attaching again updates it in place. Sockets made before a process joined the \
cgroup are not covered. Needs root."
    )]
    Attach(AttachArgs),
    /// Remove the policy of a cgroup (new sockets get the kernel's defaults again).
    Detach(DetachArgs),
    /// List every attached policy: cgroup, values, counters, stale links.
    Status(StatusArgs),
}

#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
struct Target {
    /// The cgroup: its directory (/sys/fs/cgroup/...) or its path in the unified hierarchy
    /// (/system.slice/redis.service).
    #[arg(long, value_name = "PATH")]
    cgroup: Option<PathBuf>,
    /// A systemd unit: its ControlGroup.
    #[arg(long, value_name = "NAME")]
    unit: Option<String>,
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    policy: VariableOptions<PolicyVariables>,
}

#[derive(Args, Debug)]
pub struct DetachArgs {
    /// The cgroup whose policy to remove.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["unit", "stale"])]
    cgroup: Option<PathBuf>,
    /// A systemd unit whose policy to remove.
    #[arg(long, value_name = "NAME", conflicts_with = "stale")]
    unit: Option<String>,
    /// Remove every stale policy (its cgroup is gone).
    #[arg(long)]
    stale: bool,
    /// Remove every policy, live or stale (the package's prerm does, on removal).
    #[arg(long, conflicts_with_all = ["cgroup", "unit", "stale"])]
    all: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// One JSON document instead of text.
    #[arg(long)]
    json: bool,
}

pub fn bpf(args: BpfArgs) -> Result<ExitCode, Failure> {
    match args.command {
        BpfCommand::Attach(args) => attach(&args),
        BpfCommand::Detach(args) => detach(&args),
        BpfCommand::Status(args) => status(&args),
    }
}

fn require_root(what: &str) -> Result<(), Failure> {
    if sys::effective_uid() == 0 {
        Ok(())
    } else {
        Err(Failure::new(format!(
            "bpf {what} needs root (CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN, to load eBPF \
             programs, attach them to a cgroup and pin them under /sys/fs/bpf)"
        )))
    }
}

fn attach(args: &AttachArgs) -> Result<ExitCode, Failure> {
    let parsed = args.policy.parse_over_environment();
    let mut problems: Vec<String> = parsed.errors.iter().map(ToString::to_string).collect();
    for variable in PROCESS_ONLY {
        if let Some(value) = std::env::var_os(variable.name) {
            problems.push(format!(
                "{PREFIX}: {}={:?} is set, but it has no meaning for a cgroup (it selects \
                 processes the library is loaded into); unset it for `bpf attach`",
                variable.name,
                value.to_string_lossy()
            ));
        }
    }
    if !problems.is_empty() {
        // One line each; nothing is attached.
        for problem in problems {
            eprintln!("{problem}");
        }
        return Ok(ExitCode::from(EXIT_ERROR));
    }
    require_root("attach")?;
    let (cgroup, shown) = match (&args.target.cgroup, &args.target.unit) {
        (Some(path), _) => (cgroup::from_path(path)?, None),
        (None, Some(unit)) => {
            let shown = unit::show(unit)
                .map_err(|error| Failure::new(format!("--unit {unit}: {error}")))?;
            (
                cgroup::from_path(&cgroup::control_group(&shown)?)?,
                Some(shown),
            )
        }
        (None, None) => return Err(Failure::new("give --cgroup PATH or --unit NAME")),
    };
    let config = parsed.config;
    let kernel = crate::settings::kernel_defaults();
    let outcome = pins::attach(&cgroup, &config, kernel)?;
    println!(
        "{PREFIX}: policy {} on {} (cgroup {}): {}",
        outcome,
        cgroup.path.display(),
        cgroup.id,
        describe(&config, kernel)
    );
    if let Some(shown) = &shown
        && let Some(warning) = socket_activation_warning(shown)
    {
        eprintln!("{PREFIX}: {warning}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A service started by a `.socket` unit accepts connections on sockets systemd made in the
/// socket unit's cgroup (an accepted socket belongs to its listener's cgroup): the service's
/// policy does not reach them. One line naming the socket units that have no policy of their
/// own, and the remedy; none when every one has.
fn socket_activation_warning(service: &unit::Unit) -> Option<String> {
    if !service.name.ends_with(".service") {
        return None;
    }
    let sockets: Vec<&String> = service
        .triggered_by
        .iter()
        .filter(|name| name.ends_with(".socket"))
        .collect();
    if sockets.is_empty() {
        return None;
    }
    let policies = attached_policies().unwrap_or_default();
    let covered = |socket: &str| {
        unit::show(socket)
            .ok()
            .and_then(|shown| cgroup::control_group(&shown).ok())
            .and_then(|path| cgroup::from_path(&path).ok())
            .is_some_and(|group| {
                policies
                    .iter()
                    .any(|policy| !policy.stale && policy.cgroup == group.path)
            })
    };
    let uncovered: Vec<&str> = sockets
        .into_iter()
        .map(String::as_str)
        .filter(|socket| !covered(socket))
        .collect();
    if uncovered.is_empty() {
        return None;
    }
    let example = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_owned()))
        .map(|prefix| prefix.join("share/doc/keepalive-preload/examples/keepalive-bpf-socket.conf"))
        .filter(|path| path.is_file())
        .map_or_else(
            || "keepalive-bpf-socket.conf (an example of the package)".to_owned(),
            |path| path.display().to_string(),
        );
    let (names, directories) = match uncovered.as_slice() {
        [one] => ((*one).to_owned(), format!("/etc/systemd/system/{one}.d/")),
        many => (
            many.join(", "),
            "/etc/systemd/system/SOCKET.d/ of each".to_owned(),
        ),
    };
    Some(format!(
        "{} is socket-activated by {names}: the connections it accepts there are made in the \
         socket unit's cgroup and this policy does not cover them (its own connections it \
         does); to cover them, copy {example} into {directories} and restart the socket unit",
        service.name
    ))
}

fn detach(args: &DetachArgs) -> Result<ExitCode, Failure> {
    require_root("detach")?;
    if args.all {
        for cgroup in pins::detach_all() {
            println!("{PREFIX}: policy detached from {}", cgroup.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.stale {
        let removed = pins::detach_stale()?;
        println!("{PREFIX}: {removed} stale policies removed");
        return Ok(ExitCode::SUCCESS);
    }
    let path = match (&args.cgroup, &args.unit) {
        (Some(path), _) => path.clone(),
        (None, Some(unit)) => match cgroup::unit_path(unit) {
            Ok(path) => path,
            Err(error) if unit::normalize(unit).is_err() => return Err(error),
            Err(error) => {
                // The unit is gone already (no ControlGroup): the policy recorded for a cgroup
                // of its name (unit names are unique) is removed all the same.
                let name = unit::normalize(unit).unwrap_or_else(|_| unit.clone());
                if pins::detach_where(|path, _| {
                    path.file_name().is_some_and(|file| file == name.as_str())
                }) == 0
                {
                    return Err(error);
                }
                println!("{PREFIX}: policy of {unit} detached (its cgroup was gone)");
                return Ok(ExitCode::SUCCESS);
            }
        },
        (None, None) => {
            return Err(Failure::new(
                "give --cgroup PATH, --unit NAME, --stale or --all",
            ));
        }
    };
    // The cgroup may be gone already (ExecStopPost= after the unit's processes ended): the
    // policy recorded for its path is removed all the same.
    let live = cgroup::from_path(&path).ok();
    let expected = match &live {
        Some(cgroup) => cgroup.path.clone(),
        None => cgroup::expected_path(&path)?,
    };
    let live_id = live.as_ref().map(|cgroup| cgroup.id);
    let removed = pins::detach_where(|recorded, id| recorded == expected || live_id == Some(id));
    if removed == 0 {
        if live.is_none() {
            return Err(Failure::new(format!(
                "no cgroup {} and no policy recorded for it",
                path.display()
            )));
        }
        println!("{PREFIX}: no policy was attached to {}", expected.display());
    } else {
        println!("{PREFIX}: policy detached from {}", expected.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn status(args: &StatusArgs) -> Result<ExitCode, Failure> {
    require_root("status")?;
    let policies = attached_policies()?;
    let text = if args.json {
        status::json(&policies)
    } else {
        status::text(&policies)
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// What `inspect` judges a process's sockets by when an eBPF policy covers it: the policy's
/// variables through the one parser; the process needs no library.
pub fn expectation_for(pid: i32) -> Option<crate::inspect::Expectation> {
    let policy = policy_of_process(pid)?;
    let parsed = parse_variables(&policy.variables);
    Some(crate::inspect::Expectation {
        filters: crate::settings::Filters::new(&parsed.config),
        acts: parsed.config.enabled,
        config: parsed.config,
        errors: parsed.errors.iter().copied().collect(),
        kernel: crate::settings::kernel_defaults(),
        source: format!(
            "the eBPF policy attached to {} (enforced by the kernel; no library needed)",
            policy.cgroup.display()
        ),
        preload: None,
        needs_library: false,
    })
}

/// The policy that covers a process (attached to its cgroup or an ancestor).
fn policy_of_process(pid: i32) -> Option<Attached> {
    let mut path = cgroup::of_process(pid)?;
    let policies = attached_policies().ok()?;
    loop {
        if let Some(found) = policies
            .iter()
            .find(|policy| !policy.stale && policy.cgroup == path)
        {
            return Some(found.clone());
        }
        if !path.pop() {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_object_matches_the_layout() {
        load::check_layout().unwrap();
        let elf = elf::Elf::parse(load::OBJECT).unwrap();
        for (name, _, _) in [load::SOCKOPS, load::SETSOCKOPT] {
            let (index, section) = elf.section(name).unwrap();
            assert_eq!(section.data.len() % 8, 0);
            let references = elf.map_references(index).unwrap();
            assert!(references.iter().any(|r| r.symbol == load::POLICY));
        }
    }
}
