//! Finding the cgroup a policy is for: a path (`--cgroup`) or a systemd unit's `ControlGroup`
//! (`--unit`), in the unified (cgroup2) hierarchy: /sys/fs/cgroup on a unified system,
//! /sys/fs/cgroup/unified on a hybrid one.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::sys;
use crate::Failure;

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// A cgroup of the unified hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    /// Its directory: /sys/fs/cgroup/system.slice/redis.service.
    pub path: PathBuf,
    /// Its cgroup id (the directory's inode number on cgroup2).
    pub id: u64,
}

/// Where the unified hierarchy is mounted, or why there is none.
pub fn unified_root() -> Result<PathBuf, Failure> {
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if sys::fs_type(Path::new(root)).is_ok_and(|kind| kind == CGROUP2_SUPER_MAGIC) {
            return Ok(PathBuf::from(root));
        }
    }
    Err(Failure::new(
        "no cgroup2 (unified) hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified: this \
         system uses cgroup v1 only, and eBPF cgroup programs need cgroup2 (boot with \
         systemd.unified_cgroup_hierarchy=1, or mount cgroup2 at /sys/fs/cgroup/unified)",
    ))
}

fn is_cgroup2(path: &Path) -> bool {
    sys::fs_type(path).is_ok_and(|kind| kind == CGROUP2_SUPER_MAGIC)
}

fn at(path: PathBuf) -> Result<Cgroup, Failure> {
    let metadata = std::fs::metadata(&path).map_err(|error| {
        Failure::new(format!(
            "cannot read the cgroup {}: {error}",
            path.display()
        ))
    })?;
    if !metadata.is_dir() {
        return Err(Failure::new(format!(
            "{} is not a cgroup directory",
            path.display()
        )));
    }
    Ok(Cgroup {
        id: metadata.ino(),
        path,
    })
}

/// `--cgroup PATH`: a directory of the unified hierarchy, or a path inside it
/// (`/system.slice/redis.service`, as systemd and /proc/PID/cgroup name it).
pub fn from_path(path: &Path) -> Result<Cgroup, Failure> {
    let root = unified_root()?;
    if path.is_dir() {
        let path = std::fs::canonicalize(path)
            .map_err(|error| Failure::new(format!("cannot resolve {}: {error}", path.display())))?;
        if !is_cgroup2(&path) {
            return Err(Failure::new(format!(
                "{} is not in the cgroup2 (unified) hierarchy, which is at {}",
                path.display(),
                root.display()
            )));
        }
        return at(path);
    }
    let inside = root.join(path.strip_prefix("/").unwrap_or(path));
    if inside.is_dir() && is_cgroup2(&inside) {
        return at(inside);
    }
    Err(Failure::new(format!(
        "no cgroup {} (nor {}): create it, or start the unit, first",
        path.display(),
        inside.display()
    )))
}

/// The path a policy is recorded under when its cgroup may be gone (`bpf detach` after the
/// unit stopped): the same resolution as [`from_path`] without requiring the directory.
pub fn expected_path(path: &Path) -> Result<PathBuf, Failure> {
    let root = unified_root()?;
    if path.starts_with(&root) {
        return Ok(path.to_owned());
    }
    Ok(root.join(path.strip_prefix("/").unwrap_or(path)))
}

/// `--unit NAME`: the unit's `ControlGroup` property, through systemctl; a one-line error
/// naming the unit when there is none.
pub fn unit_path(unit: &str) -> Result<PathBuf, Failure> {
    let shown =
        super::unit::show(unit).map_err(|error| Failure::new(format!("--unit {unit}: {error}")))?;
    control_group(&shown)
}

/// A shown unit's control group, or why it has none.
pub fn control_group(unit: &super::unit::Unit) -> Result<PathBuf, Failure> {
    if unit.control_group.is_empty() {
        return Err(Failure::new(format!(
            "--unit {}: the unit has no control group: it is not running (attach from its \
             ExecCondition= or ExecStartPre=, or once it runs)",
            unit.name
        )));
    }
    Ok(PathBuf::from(&unit.control_group))
}

/// The cgroup2 path of a process (/proc/PID/cgroup's `0::` line), under the unified root.
pub fn of_process(pid: i32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let relative = text.lines().find_map(|line| line.strip_prefix("0::"))?;
    let root = unified_root().ok()?;
    Some(root.join(relative.trim().trim_start_matches('/')))
}
