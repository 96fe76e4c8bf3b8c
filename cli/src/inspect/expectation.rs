//! The configuration in a process's own environment, as the library parsed it at load.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use keepalive_config::{Config, ConfigError, KernelDefaults};

use crate::settings::{Filters, kernel_defaults, parse_kept};
use crate::{Failure, environ};

use super::process::{Process, proc_error};

/// The configuration in a process's environment, with what it implies for the process.
#[derive(Debug)]
pub struct Expectation {
    pub config: Config<'static>,
    pub errors: Vec<ConfigError<'static>>,
    /// The lookup structures of its filters.
    pub filters: Filters,
    pub kernel: KernelDefaults,
    /// KEEPALIVE is on and KEEPALIVE_PROGRAMS (if set) names this program.
    pub acts: bool,
    /// Where the variables were read.
    pub source: String,
    /// LD_PRELOAD in that environment.
    pub preload: Option<String>,
    /// The library must be mapped for the configuration to act (false under an eBPF policy).
    pub needs_library: bool,
}

/// The configuration in /proc/PID/environ, as the library parsed it at load.
pub(super) fn read_expectation(pid: i32, process: &Process) -> Result<Expectation, Failure> {
    let environ = std::fs::read(format!("/proc/{pid}/environ"))
        .map_err(|error| proc_error(pid, "read its environment", &error))?;
    let mut entries: Vec<Vec<u8>> = environ
        .split(|&byte| byte == 0)
        .filter(|entry| entry.contains(&b'='))
        .map(<[u8]>::to_vec)
        .collect();
    let mut source = format!("/proc/{pid}/environ");
    if entries.is_empty() {
        // Blanked by a process-title rewrite (Redis does it), or really empty.
        match environ::from_memory(pid, &process.maps, process.exe.as_deref()) {
            Ok(live) => {
                entries = live;
                source = format!(
                    "its live environ (/proc/{pid}/environ is blank: the process rewrote its title)"
                );
            }
            Err(error) => {
                source = format!(
                    "/proc/{pid}/environ, which is blank (its live environ is unreadable: {error})"
                );
            }
        }
    }
    let variables: HashMap<String, OsString> = entries
        .iter()
        .filter_map(|entry| {
            let at = entry.iter().position(|&byte| byte == b'=')?;
            let name = std::str::from_utf8(&entry[..at]).ok()?.to_owned();
            Some((name, OsString::from_vec(entry[at + 1..].to_vec())))
        })
        .collect();
    let parsed = parse_kept(|name| variables.get(name).cloned());
    let acts = parsed.config.enabled && parsed.config.acts_in_program(program_names(process));
    Ok(Expectation {
        filters: Filters::new(&parsed.config),
        config: parsed.config,
        errors: parsed.errors.iter().copied().collect(),
        kernel: kernel_defaults(),
        acts,
        source,
        preload: variables
            .get("LD_PRELOAD")
            .map(|preload| preload.to_string_lossy().into_owned()),
        needs_library: true,
    })
}

/// What KEEPALIVE_PROGRAMS is matched against: the executable, argv[0], and argv[0]'s first
/// word (a rewritten title such as `redis-server 127.0.0.1:6379`; names have no spaces).
pub(super) fn program_names(process: &Process) -> impl Iterator<Item = &[u8]> {
    let title = process
        .argv0
        .as_deref()
        .and_then(|argv0| argv0.split_whitespace().next());
    process
        .exe
        .as_deref()
        .into_iter()
        .chain(process.argv0.as_deref())
        .chain(title)
        .map(str::as_bytes)
}
