//! `keepalive-preload`: run a program under the library, inspect the TCP sockets of a live
//! process, check a configuration. Shares the library's one parser (`keepalive-config`) and
//! never links the library itself (its exported hooks would interpose this command).

mod apply;
mod bpf;
mod check;
mod environ;
mod generate;
mod inspect;
mod json;
mod library;
mod options;
mod run;
mod settings;
mod sys;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use keepalive_config::{PREFIX, VARIABLES};

/// Exit status for invalid arguments, configuration errors and failures to inspect (clap's own
/// usage errors use 2 as well).
const EXIT_ERROR: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "keepalive-preload",
    version,
    about = "Run a program with TCP keepalive forced on, inspect or configure a live process's TCP sockets, check a configuration",
    after_help = "Exit status: 0 success; 1 `inspect` found a socket without the keepalive it should carry, or `apply` could not change one; 2 invalid arguments or configuration, or an error.",
    after_long_help = variables_help(),
    propagate_version = true,
    subcommand_required = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run PROGRAM with libkeepalive_preload.so prepended to LD_PRELOAD and the variables set.
    #[command(
        long_about = "Run PROGRAM with libkeepalive_preload.so prepended to LD_PRELOAD (existing entries are kept) \
and the variables given by the options set. The options map one to one onto the environment \
variables below; the resulting environment (options over inherited variables) is validated by the \
library's parser first, and an invalid value stops here with exit status 2. The library is found \
through --library, else KEEPALIVE_PRELOAD_LIB, else next to this program \
(DIR/libkeepalive_preload.so, DIR/../lib/libkeepalive_preload.so), else in \
/usr/lib/x86_64-linux-gnu, /usr/lib and /usr/local/lib.",
        after_long_help = variables_help()
    )]
    Run(Box<run::RunArgs>),
    /// Show every TCP socket of running processes and whether it carries keepalive.
    #[command(
        long_about = "Show every TCP socket of each PID: fd, addresses, state, SO_KEEPALIVE, TCP_KEEPIDLE, \
TCP_KEEPINTVL, TCP_KEEPCNT and TCP_USER_TIMEOUT as the kernel reports them, and whether \
libkeepalive_preload is mapped into the process. The sockets are read through pidfd_getfd \
(Linux >= 5.6), which needs the rights of ptrace over the process (the same user and \
kernel.yama.ptrace_scope allowing it, or CAP_SYS_PTRACE).\n\n\
Without --expect-env every TCP socket should have SO_KEEPALIVE on. With --expect-env the \
process's own environment (/proc/PID/environ, or its live environ when a process-title rewrite such as Redis's blanked that) is parsed like the library parses it, and each socket \
is compared with what the library should have done under KEEPALIVE_PORTS, KEEPALIVE_NETS, \
KEEPALIVE_PROGRAMS and KEEPALIVE_OVERRIDE: yes means exactly the configured values, tighten means \
no value looser than configured, no means SO_KEEPALIVE on (values the program set itself are \
reported, not failures).\n\n\
Exit status: 0 when every socket that should carry keepalive does; 1 when one does not, or when \
--expect-env says the library should act and it is not mapped; 2 on an error.",
        after_long_help = variables_help()
    )]
    Inspect(inspect::InspectArgs),
    /// Validate the variables in this environment, print the effective configuration, verify the library loads.
    #[command(
        long_about = "Validate the keepalive-preload variables in this command's own environment with the \
library's parser, print each invalid value on one line and the effective configuration, and \
verify that a libkeepalive_preload named by LD_PRELOAD was really loaded into this process (it \
was not when the file is missing, is not a shared object for this machine, or sits on a path the \
sandbox makes non-executable, e.g. NoExecPaths=). Exit status 2 on any problem, else 0: meant \
for ExecStartPre= in a systemd unit that sets LD_PRELOAD and the variables with Environment=, so \
that a typo or a library the service would not load fails the deployment.",
        after_long_help = variables_help()
    )]
    Check(CheckArgs),
    /// Give the TCP sockets a running process already has the configured keepalive, without a restart.
    #[command(
        long_about = "Set SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT and TCP_USER_TIMEOUT, as \
configured by the options (else this command's own KEEP* variables), on every TCP socket the \
processes have now: listeners, connected and accepted sockets, IPv4 and IPv6. Each socket is \
duplicated with pidfd_getfd (Linux >= 5.6; the rights of ptrace over the process: its user with \
kernel.yama.ptrace_scope allowing it, or root) and changed with setsockopt on the duplicate; the \
process is never stopped, signalled or written to. KEEPALIVE_OVERRIDE decides as in the library \
for a socket it configures late: a value other than the kernel's default is the program's (no: \
kept; tighten: the tighter; yes: ours); KEEPALIVE_PORTS and KEEPALIVE_NETS select sockets as in \
the library. Every socket is printed with its values before and after (read back from the \
socket). Sockets the process makes later are not covered: the library (next start) or the eBPF \
policy (a unit's new sockets) cover those.\n\n\
Exit status: 0 when every targeted socket now carries its values; 1 when some could not be \
changed; 2 on an error (an invalid value, a missing process, no rights), and then nothing is changed.",
        after_long_help = variables_help()
    )]
    Apply(apply::ApplyArgs),
    /// Render the man page's and the README's generated regions from the variables (for
    /// maintainers: `generate man|config-table [--in-place FILE]`, see HACKING.md).
    #[command(hide = true)]
    Generate(generate::GenerateArgs),
    /// The same policy enforced by eBPF on a cgroup (a systemd unit): attach, detach, status.
    #[command(
        long_about = "The policy of the library (the same options and variables) enforced by the kernel on every \
TCP socket of a cgroup, whatever the program's language or linkage (Go, static binaries, io_uring): \
`bpf attach --unit NAME` or `--cgroup PATH`, `bpf detach`, `bpf status [--json]`. Needs root and \
the unified cgroup hierarchy (cgroup2).",
        after_long_help = variables_help()
    )]
    Bpf(bpf::BpfArgs),
}

#[derive(Args, Debug)]
struct CheckArgs {}

/// Every variable, its meaning, what it accepts and its default.
fn variables_help() -> String {
    let width = VARIABLES
        .iter()
        .map(|variable| variable.name.len())
        .max()
        .unwrap_or(0);
    let mut text = String::from("Environment variables (read by the library at load):\n");
    for variable in VARIABLES {
        text.push_str(&format!(
            "  {:width$}  {}\n  {:width$}  accepts {}; unset: {}\n",
            variable.name, variable.meaning, "", variable.accepted, variable.unset
        ));
    }
    text.push_str("\nExit status: 0 success; 1 `inspect` found a socket without the keepalive it should carry, or `apply` could not change one; 2 invalid arguments or configuration, or an error.");
    text
}

/// An error already worth one line to the user; the command exits 2.
#[derive(Debug)]
pub struct Failure(pub String);

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Inspect(args) => inspect::inspect(&args, bpf::expectation_for),
        Command::Check(CheckArgs {}) => Ok(check::check()),
        Command::Apply(args) => apply::apply(&args),
        Command::Generate(args) => generate::generate(&args),
        Command::Bpf(args) => bpf::bpf(args),
    };
    match result {
        Ok(code) => code,
        Err(Failure(message)) => {
            eprintln!("{PREFIX}: {message}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
