//! `check`: validate the variables of this environment, print the effective configuration.

use std::process::ExitCode;

use keepalive_config::{PREFIX, VARIABLES};

use crate::EXIT_ERROR;
use crate::library::{LIBRARY_STEM, mapped_library};
use crate::settings::kernel_defaults;

pub fn check() -> ExitCode {
    let parsed = crate::settings::from_own_environment();
    let mut problems: Vec<String> = parsed.errors.iter().map(ToString::to_string).collect();
    let set: Vec<&str> = VARIABLES
        .iter()
        .map(|variable| variable.name)
        .filter(|name| std::env::var_os(name).is_some())
        .collect();
    if set.is_empty() {
        println!("{PREFIX}: no keepalive-preload variable is set; the library's defaults apply");
    }
    println!(
        "{PREFIX}: effective configuration: {}",
        parsed.config.summary(kernel_defaults())
    );
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let preload = std::env::var("LD_PRELOAD").unwrap_or_default();
    let preload = expand_lib_token(&preload, library_dir_of_libc(&maps).as_deref());
    match preload_check(mapped_library(&maps).as_deref(), &preload) {
        Ok(line) => println!("{PREFIX}: {line}"),
        Err(problem) => problems.push(format!("{PREFIX}: {problem}")),
    }
    for problem in &problems {
        eprintln!("{problem}");
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        let count = problems.len();
        eprintln!(
            "{PREFIX}: check: {count} problem{}; fix the environment",
            if count == 1 { "" } else { "s" },
        );
        ExitCode::from(EXIT_ERROR)
    }
}

/// Whether the library will really be loaded where these variables apply. `check` runs with the
/// unit's environment and sandbox, so the loader has just preloaded (or refused) the library
/// into this very process: a file that is missing, not a shared object for this machine, or on
/// a path the unit makes non-executable (NoExecPaths=/ExecPaths=) is not mapped here either.
pub fn preload_check(mapped: Option<&str>, preload: &str) -> Result<String, String> {
    if let Some(path) = mapped {
        return Ok(format!(
            "library {path} is loaded (as it will be in the service)"
        ));
    }
    let named: Vec<&str> = preload
        .split([':', ' '])
        .filter(|entry| {
            entry
                .rsplit('/')
                .next()
                .is_some_and(|name| name.starts_with(LIBRARY_STEM))
        })
        .collect();
    match named.first() {
        None => Ok(format!(
            "LD_PRELOAD does not name {LIBRARY_STEM}: these variables act only where the library \
             is loaded (LD_PRELOAD or /etc/ld.so.preload)"
        )),
        Some(entry) if !std::path::Path::new(entry).exists() => Err(format!(
            "LD_PRELOAD names {entry}, which does not exist: the library would not be loaded"
        )),
        Some(entry) => Err(format!(
            "LD_PRELOAD names {entry}, but the loader did not map it into this process: not a \
             shared object for this machine, or on a path the unit makes non-executable \
             (NoExecPaths=, ExecPaths=, a noexec mount)"
        )),
    }
}

/// ld.so's `$LIB` (and `${LIB}`) in LD_PRELOAD, expanded as the loader does for this process:
/// the library directory of the C library it runs on (`lib/x86_64-linux-gnu` on Debian).
pub fn expand_lib_token(preload: &str, lib: Option<&str>) -> String {
    match lib {
        Some(lib) => preload.replace("${LIB}", lib).replace("$LIB", lib),
        None => preload.to_owned(),
    }
}

/// `lib/x86_64-linux-gnu` from the libc.so.6 mapped into this process
/// (`/lib/x86_64-linux-gnu/libc.so.6` or `/usr/lib/...`).
pub fn library_dir_of_libc(maps: &str) -> Option<String> {
    let path = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.rsplit('/').next() == Some("libc.so.6"))?;
    let dir = std::path::Path::new(path).parent()?;
    let relative = dir
        .strip_prefix("/usr")
        .or_else(|_| dir.strip_prefix("/"))
        .ok()?;
    relative.to_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lib_token_expands_to_the_c_librarys_directory() {
        let maps = "7f00-7f01 r-xp 00000000 08:01 42   /usr/lib/x86_64-linux-gnu/libc.so.6\n";
        let lib = library_dir_of_libc(maps);
        assert_eq!(lib.as_deref(), Some("lib/x86_64-linux-gnu"));
        assert_eq!(
            expand_lib_token("/usr/$LIB/libkeepalive_preload.so", lib.as_deref()),
            "/usr/lib/x86_64-linux-gnu/libkeepalive_preload.so"
        );
        assert_eq!(
            expand_lib_token("/usr/${LIB}/x.so", Some("lib64")),
            "/usr/lib64/x.so"
        );
    }
}
