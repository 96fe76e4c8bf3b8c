//! Where the library is: the file `run` preloads (found beside this command or where packages
//! install it) and the mapping `inspect`, `check` and `apply` recognise in /proc/PID/maps.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::Failure;

/// The library's file name.
pub const LIBRARY_NAME: &str = "libkeepalive_preload.so";
/// Where packages install the library, searched after the places next to this program.
pub const INSTALL_DIRS: [&str; 3] = [MULTIARCH_LIB, "/usr/lib", "/usr/local/lib"];
/// Debian's multiarch library directory for the architecture this command was built for.
#[cfg(target_arch = "x86_64")]
const MULTIARCH_LIB: &str = "/usr/lib/x86_64-linux-gnu";
#[cfg(target_arch = "aarch64")]
const MULTIARCH_LIB: &str = "/usr/lib/aarch64-linux-gnu";
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const MULTIARCH_LIB: &str = "/usr/lib";
/// Names the library explicitly, like `--library`.
pub const LIBRARY_VARIABLE: &str = "KEEPALIVE_PRELOAD_LIB";

/// The file name the library is recognised by in /proc/PID/maps.
pub const LIBRARY_STEM: &str = "libkeepalive_preload";

/// The path of the first executable mapping whose file name starts with `libkeepalive_preload`.
/// Only an executable one counts: when ld.so fails to load a preloaded library (e.g. from a
/// noexec mount) it says "ignored" but leaves its first, read-only mapping behind.
pub fn mapped_library(maps: &str) -> Option<String> {
    maps.lines().find_map(|line| {
        // address perms offset dev inode pathname (the path may contain spaces)
        let mut fields = line.splitn(6, char::is_whitespace);
        let executable = fields.nth(1)?.contains('x');
        let path = fields.nth(3)?.trim_start();
        let name = path.rsplit('/').next()?;
        (executable && path.starts_with('/') && name.starts_with(LIBRARY_STEM))
            .then(|| path.to_owned())
    })
}

/// The library to preload: `--library`, else `KEEPALIVE_PRELOAD_LIB` (both must exist), else
/// the first existing file next to this program or in the install locations.
pub fn find_library(
    option: Option<&Path>,
    variable: Option<&OsStr>,
    exe: Option<&Path>,
) -> Result<PathBuf, Failure> {
    let explicit = option
        .map(|path| (path.to_path_buf(), "--library"))
        .or_else(|| variable.map(|path| (PathBuf::from(path), LIBRARY_VARIABLE)));
    if let Some((path, source)) = explicit {
        return if path.is_file() {
            Ok(absolute(&path))
        } else {
            Err(Failure::new(format!(
                "run: the library given by {source}, {}, does not exist or is not a file",
                path.display()
            )))
        };
    }
    let candidates = library_candidates(exe);
    match candidates.iter().find(|path| path.is_file()) {
        Some(path) => Ok(absolute(path)),
        None => Err(Failure::new(format!(
            "run: cannot find {LIBRARY_NAME}; tried {}; pass --library PATH or set {LIBRARY_VARIABLE}",
            candidates
                .iter()
                .map(|path| path.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Next to this program, in ../lib beside it, then the install locations.
pub fn library_candidates(exe: Option<&Path>) -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = exe.and_then(Path::parent) {
        candidates.push(dir.join(LIBRARY_NAME));
        candidates.push(dir.join("..").join("lib").join(LIBRARY_NAME));
    }
    candidates.extend(
        INSTALL_DIRS
            .iter()
            .map(|dir| Path::new(dir).join(LIBRARY_NAME)),
    );
    candidates
}

/// Absolute and without `..`, so that the path in LD_PRELOAD survives a chdir of the program.
fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}
