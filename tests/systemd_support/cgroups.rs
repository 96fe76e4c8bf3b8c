//! The container's cgroups, `kpsd-NAME-PID`: made in both hierarchies of a hybrid host (in the
//! root of a unified one) for nspawn to start from, emptied with `cgroup.kill` and removed when
//! the container is dropped, and left-overs of killed test processes removed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The cgroup hierarchies nspawn needs a cgroup of its own in: on a hybrid host (this project's
/// machines) v1's named systemd hierarchy and the unified one; on a unified host only the root.
pub(super) fn hierarchies() -> &'static [PathBuf] {
    static HIERARCHIES: OnceLock<Vec<PathBuf>> = OnceLock::new();
    HIERARCHIES.get_or_init(|| {
        if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            return vec![PathBuf::from("/sys/fs/cgroup")];
        }
        let hybrid = ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"].map(PathBuf::from);
        assert!(
            hybrid.iter().all(|dir| dir.join("cgroup.procs").exists()),
            "neither a unified cgroup hierarchy nor a hybrid one (/sys/fs/cgroup/systemd and /sys/fs/cgroup/unified)"
        );
        hybrid.to_vec()
    })
}

/// The cgroup2 hierarchy (the last of `hierarchies`): cgroup.kill, cgroup.events.
fn unified() -> &'static Path {
    hierarchies().last().expect("a hierarchy")
}

/// Kills every process in the container's unified cgroup subtree and waits until it is empty.
pub(super) fn kill_cgroup(name: &str) {
    let dir = unified().join(name);
    if !dir.exists() {
        return;
    }
    let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let events = std::fs::read_to_string(dir.join("cgroup.events")).unwrap_or_default();
        if !events.contains("populated 1") {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes the container's cgroups (deepest first) in both hierarchies.
pub(super) fn remove_cgroup(name: &str) {
    fn remove_tree(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&entry.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    for hierarchy in hierarchies() {
        remove_tree(&hierarchy.join(name));
    }
}

/// Containers of earlier test processes that were killed before they could clean up.
pub(super) fn remove_stale_cgroups() {
    let Ok(entries) = std::fs::read_dir(unified()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("kpsd-")
            .and_then(|rest| rest.rsplit('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        println!("removing the stale container cgroup {name}");
        kill_cgroup(&name);
        remove_cgroup(&name);
    }
}
