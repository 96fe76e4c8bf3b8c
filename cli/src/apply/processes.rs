//! Which processes: those of a systemd unit or of a control group (and the groups below it).

use std::collections::HashSet;
use std::path::Path;

use crate::Failure;

/// Where the processes of a control group are listed, for a cgroup path of /proc/PID/cgroup:
/// unified (cgroup v2), hybrid (v2 beside v1), legacy (systemd's named v1 hierarchy).
const CGROUP_ROOTS: [&str; 3] = [
    "/sys/fs/cgroup",
    "/sys/fs/cgroup/unified",
    "/sys/fs/cgroup/systemd",
];

/// The processes of a systemd unit: its ControlGroup, as `systemctl show` reports it. Every
/// error is one line (a name systemctl would refuse is refused first; systemctl's own error is
/// cut to its first line).
pub(super) fn unit_processes(unit: &str) -> Result<Vec<i32>, Failure> {
    let shown = crate::bpf::unit::show(unit)
        .map_err(|error| Failure::new(format!("apply: --unit {unit}: {error}")))?;
    if shown.control_group.is_empty() {
        return Err(Failure::new(format!(
            "apply: --unit {unit}: the unit has no control group, so no process: it is not \
             running (systemctl status {})",
            shown.name
        )));
    }
    cgroup_processes(Path::new(&shown.control_group))
}

/// Every process in a control group and the groups below it.
pub(super) fn cgroup_processes(path: &Path) -> Result<Vec<i32>, Failure> {
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
