//! `inspect`: read every TCP socket of live processes through pidfd_getfd and judge whether it
//! carries the keepalive it should. Collecting (`process`, `proc_net`), TCP states (`state`),
//! the configuration a process runs under (`expectation`), judging (`judge`) and rendering
//! (`render`, JSON through serde) are rooms of their own; this one holds the arguments and the
//! order of the work.

mod expectation;
mod judge;
mod proc_net;
mod process;
mod render;
mod state;
#[cfg(test)]
mod tests;

pub use expectation::Expectation;
use expectation::read_expectation;
pub use judge::{Role, judge_process, role};
pub use proc_net::parse_net_row;
pub use process::{Process, Socket, getfd_error, names, read_process, read_socket, thread_of};
use render::strip_prefix;
pub use render::{SocketJson, json_lines, program_name, show_address, table};

use std::io::{self, Write as _};
use std::process::ExitCode;

use clap::Args;
use keepalive_config::PREFIX;

use crate::library::LIBRARY_STEM;
use crate::{EXIT_ERROR, Failure};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Processes to inspect.
    #[arg(value_name = "PID", required = true, num_args = 1.., value_parser = clap::value_parser!(i32).range(1..))]
    pids: Vec<i32>,
    /// One JSON object per socket (JSON Lines) instead of the table.
    #[arg(long)]
    json: bool,
    /// Compare each socket with what the library should have done under the configuration in
    /// the process's own environment (/proc/PID/environ, or its live environ when a title
    /// rewrite blanked that).
    #[arg(long)]
    expect_env: bool,
}

/// The eBPF policy that covers a process, as an expectation (`bpf::expectation_for`, passed in
/// by `main` so that `inspect` and `bpf` do not import each other).
pub type PolicyOf = fn(i32) -> Option<Expectation>;

pub fn inspect(args: &InspectArgs, policy_of: PolicyOf) -> Result<ExitCode, Failure> {
    let mut worst = 0u8;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut first = true;
    for &pid in &args.pids {
        let report = read_process(pid).and_then(|process| {
            // An eBPF policy on the process's cgroup is what the kernel enforces: judge by it.
            let expectation = if let Some(policy) = policy_of(pid) {
                Some(policy)
            } else if args.expect_env {
                Some(read_expectation(pid, &process)?)
            } else {
                None
            };
            Ok((process, expectation))
        });
        let (process, expectation) = match report {
            Ok(report) => report,
            Err(Failure(message)) => {
                eprintln!("{PREFIX}: inspect: pid {pid}: {message}");
                worst = EXIT_ERROR;
                continue;
            }
        };
        let judgements = judge_process(&process, expectation.as_ref());
        let library_problem = expectation
            .as_ref()
            .filter(|expectation| {
                expectation.acts && expectation.needs_library && process.library.is_none()
            })
            .map(library_missing_message);
        let failed = library_problem.is_some() || judgements.iter().any(|j| j.verdict.fails());
        if failed {
            worst = worst.max(1);
        }
        let text = if args.json {
            for error in expectation.iter().flat_map(|e| &e.errors) {
                eprintln!(
                    "{PREFIX}: inspect: pid {pid}: its environment has {}",
                    strip_prefix(error)
                );
            }
            if let Some(problem) = &library_problem {
                eprintln!("{PREFIX}: inspect: pid {pid}: {problem}");
            }
            json_lines(&process, expectation.as_ref(), &judgements)
        } else {
            let mut text = String::new();
            if !first {
                text.push('\n');
            }
            text.push_str(&table(
                &process,
                expectation.as_ref(),
                &judgements,
                library_problem.as_deref(),
            ));
            text
        };
        first = false;
        // A closed stdout (inspect ... | head) is not worth a panic.
        if out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            return Ok(ExitCode::from(worst.max(EXIT_ERROR)));
        }
    }
    Ok(ExitCode::from(worst))
}

/// Why the library should be there and is not, with the likely cause.
fn library_missing_message(expectation: &Expectation) -> String {
    let named = expectation
        .preload
        .as_deref()
        .is_some_and(|preload| preload.contains(LIBRARY_STEM));
    let cause = if named {
        "its LD_PRELOAD names the library: a statically linked program, secure-execution mode \
         (setuid, file capabilities) or a missing file kept the loader from loading it"
    } else {
        "its LD_PRELOAD does not name the library (and neither does /etc/ld.so.preload)"
    };
    format!(
        "the library should act in this process (KEEPALIVE on, not excluded by \
         KEEPALIVE_PROGRAMS) but {LIBRARY_STEM} is not mapped: {cause}"
    )
}
