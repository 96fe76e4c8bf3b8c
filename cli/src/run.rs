//! `run`: exec a program with the library prepended to LD_PRELOAD and the variables set.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::Args;
use keepalive_config::{PREFIX, preload_list};

use crate::Failure;
use crate::library::{LIBRARY_VARIABLE, find_library};
use crate::options::{AllVariables, VariableOptions};

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    variables: VariableOptions<AllVariables>,
    /// The library to preload (default: KEEPALIVE_PRELOAD_LIB, next to this program, then the
    /// install locations).
    #[arg(long, value_name = "PATH")]
    library: Option<PathBuf>,
    /// The program to run and its arguments (put `--` before them).
    #[arg(
        value_name = "PROGRAM",
        required = true,
        trailing_var_arg = true,
        num_args = 1..
    )]
    command: Vec<OsString>,
}

pub fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    let variables = args.variables.values();
    let program = &args.command[0];
    let parsed = args.variables.parse_over_environment();
    if !parsed.errors.is_empty() {
        for error in &parsed.errors {
            eprintln!("{error}");
        }
        return Err(Failure::new(format!(
            "run: invalid configuration, not starting {}",
            Path::new(program).display()
        )));
    }
    let library = find_library(
        args.library.as_deref(),
        std::env::var_os(LIBRARY_VARIABLE).as_deref(),
        std::env::current_exe().ok().as_deref(),
    )?;
    if let Some(path) = resolve_program(program)
        && is_static_elf(&path)
    {
        eprintln!(
            "{PREFIX}: run: warning: {} is statically linked; LD_PRELOAD cannot load the library into it",
            path.display()
        );
    }
    let preload = prepend_preload(&library, std::env::var_os("LD_PRELOAD").as_deref())?;
    let error = Command::new(program)
        .args(&args.command[1..])
        .envs(variables)
        .env("LD_PRELOAD", preload)
        .exec();
    let status = if error.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    eprintln!(
        "{PREFIX}: run: cannot run {}: {error}",
        Path::new(program).display()
    );
    Ok(ExitCode::from(status))
}

/// `library` first, then the existing entries in their order (the library's own rule, shared
/// with KEEPALIVE_INHERIT=no, in `keepalive_config::preload_list`).
pub fn prepend_preload(library: &Path, existing: Option<&OsStr>) -> Result<String, Failure> {
    let library = library.to_str().ok_or_else(|| {
        Failure::new(format!(
            "run: the library path {} is not UTF-8",
            library.display()
        ))
    })?;
    let existing = existing
        .map(|list| {
            list.to_str()
                .ok_or_else(|| Failure::new("run: LD_PRELOAD is not UTF-8"))
        })
        .transpose()?;
    let mut rest = vec![0; existing.map_or(0, str::len)];
    let rest = existing
        .and_then(|list| preload_list::without(list.as_bytes(), library.as_bytes(), &mut rest))
        .unwrap_or_default();
    Ok(if rest.is_empty() {
        library.to_owned()
    } else {
        // Entries of a UTF-8 list joined by colons: UTF-8, never replaced.
        format!("{library}:{}", String::from_utf8_lossy(rest))
    })
}

/// The file `program` names, searched in PATH like execvp does when it has no slash.
fn resolve_program(program: &OsStr) -> Option<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// True for an ELF executable without a PT_INTERP program header: nothing loads LD_PRELOAD
/// into it. Anything unreadable or not a 64-bit little-endian ELF is not judged (false).
pub fn is_static_elf(path: &Path) -> bool {
    let mut header = Vec::new();
    let read =
        std::fs::File::open(path).and_then(|file| file.take(64 * 1024).read_to_end(&mut header));
    if read.is_err()
        || header.len() < 64
        || &header[..4] != b"\x7fELF"
        || header[4] != 2
        || header[5] != 1
    {
        return false;
    }
    let u16_at = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().unwrap_or([0; 4]));
    let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap_or([0; 8]));
    const ET_EXEC: u16 = 2;
    const ET_DYN: u16 = 3;
    const PT_INTERP: u32 = 3;
    if !matches!(u16_at(16), ET_EXEC | ET_DYN) {
        return false;
    }
    let (Ok(phoff), entry_size, entries) = (
        usize::try_from(u64_at(32)),
        usize::from(u16_at(54)),
        usize::from(u16_at(56)),
    ) else {
        return false;
    };
    if entry_size < 4 || phoff.saturating_add(entry_size.saturating_mul(entries)) > header.len() {
        return false;
    }
    !(0..entries).any(|index| u32_at(phoff + index * entry_size) == PT_INTERP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::library_candidates;

    #[test]
    fn preload_prepends_and_keeps_order_without_duplicate() {
        let library = Path::new("/opt/kp/libkeepalive_preload.so");
        assert_eq!(
            prepend_preload(library, None).unwrap(),
            "/opt/kp/libkeepalive_preload.so"
        );
        assert_eq!(
            prepend_preload(
                library,
                Some(OsStr::new(
                    "/a/liba.so /opt/kp/libkeepalive_preload.so:/b/libb.so "
                ))
            )
            .unwrap(),
            "/opt/kp/libkeepalive_preload.so:/a/liba.so:/b/libb.so"
        );
    }

    #[test]
    fn candidates_follow_the_documented_order() {
        let candidates = library_candidates(Some(Path::new("/opt/kp/bin/keepalive-preload")));
        let shown: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            shown,
            [
                "/opt/kp/bin/libkeepalive_preload.so",
                "/opt/kp/bin/../lib/libkeepalive_preload.so",
                "/usr/lib/x86_64-linux-gnu/libkeepalive_preload.so",
                "/usr/lib/libkeepalive_preload.so",
                "/usr/local/lib/libkeepalive_preload.so",
            ]
        );
    }

    #[test]
    fn explicit_library_must_exist() {
        let error = find_library(Some(Path::new("/nonexistent/lib.so")), None, None).unwrap_err();
        assert!(
            error
                .0
                .contains("--library, /nonexistent/lib.so, does not exist"),
            "{}",
            error.0
        );
        let error = find_library(None, Some(OsStr::new("/nonexistent/lib.so")), None).unwrap_err();
        assert!(error.0.contains("KEEPALIVE_PRELOAD_LIB"), "{}", error.0);
    }

    #[test]
    fn dynamic_executables_are_not_static() {
        assert!(!is_static_elf(Path::new("/bin/sh")));
        assert!(!is_static_elf(Path::new("/nonexistent")));
        assert!(!is_static_elf(Path::new("/etc/passwd")));
    }
}
