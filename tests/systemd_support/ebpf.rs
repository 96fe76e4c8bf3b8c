//! The eBPF policy in the container: the shipped drop-ins, `keepalive-preload bpf status --json`
//! read back, and a unit's live cgroup (where its policy must be attached).

use super::Container;
use super::readback::{Values, field};

pub const BPF_DROPIN: &str = "/usr/share/doc/keepalive-preload/examples/keepalive-bpf.conf";
pub const BPF_SOCKET_DROPIN: &str =
    "/usr/share/doc/keepalive-preload/examples/keepalive-bpf-socket.conf";

/// One entry of `keepalive-preload bpf status --json`.
#[derive(Debug, Clone)]
pub struct Policy {
    pub cgroup: String,
    pub cgroup_id: u64,
    pub stale: bool,
    pub override_policy: String,
    pub values: Option<Values>,
}

/// `keepalive-preload bpf status --json` in the container: every policy pinned there.
pub fn bpf_status(c: &Container) -> Vec<Policy> {
    let text = c.sh("keepalive-preload bpf status --json");
    assert!(
        text.trim_start().starts_with("{\"policies\":["),
        "bpf status --json: {text}"
    );
    // One object per policy, each opening with its "cgroup"; the fields read below are
    // the first of their name in it (the values before the variables, counters and links).
    text.split("{\"cgroup\":")
        .skip(1)
        .map(|rest| {
            let entry = format!("{{\"cgroup\":{rest}");
            let values = Values::from_fields(&entry, ["idle", "intvl", "cnt", "user_timeout"]);
            Policy {
                cgroup: field(&entry, "cgroup").unwrap_or("").to_owned(),
                cgroup_id: field(&entry, "cgroup_id")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                stale: field(&entry, "stale") != Some("false"),
                override_policy: field(&entry, "override").unwrap_or("").to_owned(),
                values,
            }
        })
        .collect()
}

/// The unit's cgroup now: its directory in the container's unified hierarchy and its id
/// (the directory's inode), and the cgroup of its main process.
/// The one attached policy is on `unit`'s live cgroup (its path and its inode number).
pub fn assert_only_policy_on_live_cgroup(c: &Container, unit: &str) {
    let (dir, id, _) = live_cgroup(c, unit);
    let policies = bpf_status(c);
    assert!(
        policies.len() == 1 && policies[0].cgroup == dir && policies[0].cgroup_id == id,
        "{unit}'s policy is not the one attached to {dir} ({id}): {policies:?}"
    );
}

pub fn live_cgroup(c: &Container, unit: &str) -> (String, u64, String) {
    let dir = live_cgroup_dir(c, unit);
    let id = c
        .sh(&format!("stat -c %i {dir}"))
        .trim()
        .parse()
        .expect("an inode number");
    let pid = c.main_pid(unit);
    let of_pid = c
        .sh(&format!("cat /proc/{pid}/cgroup"))
        .lines()
        .find_map(|line| line.strip_prefix("0::").map(str::to_owned))
        .expect("a cgroup2 line in /proc/PID/cgroup");
    (dir, id, of_pid)
}

/// A unit's cgroup directory in the container's unified hierarchy (while it is active).
pub fn live_cgroup_dir(c: &Container, unit: &str) -> String {
    let group = c.property(unit, "ControlGroup");
    assert!(!group.is_empty(), "{unit} has no ControlGroup");
    let dir = c
        .sh(&format!(
            "for root in /sys/fs/cgroup /sys/fs/cgroup/unified; do \
             [ \"$(stat -fc %T $root)\" = cgroup2fs ] && echo $root{group} && break; done; true"
        ))
        .trim()
        .to_owned();
    assert!(!dir.is_empty(), "no cgroup2 hierarchy in the container");
    dir
}
