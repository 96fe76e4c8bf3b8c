//! Which sockets and processes `apply` changes: `--ports` and `--nets` select as the library
//! does, `--cgroup` covers every process of the group and its subgroups, and a socket shared by
//! two processes or two descriptors is changed once. Against live processes that never loaded the
//! library, every value read back from the live sockets with `inspect --json`.

mod apply_support;
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use apply_support::*;
use common::*;
use serde_json::Value;

#[test]
#[ignore = "needs root: pidfd_getfd on other processes, setpriv, cgroups; scripts/test runs it"]
fn ports_and_nets_select_sockets_like_the_library() {
    require_root(NEEDS_ROOT);
    let holder = holder(&sockets(), &[]);
    let pid = holder.pid.to_string();
    let l4_port = holder.port("l4").to_string();
    // KEEPALIVE_PORTS: the listener's local port, the outgoing socket's remote port, the
    // accepted socket's local port.
    let mut args = OURS.to_vec();
    args.extend(["--override", "yes", "--ports", &l4_port, "--json", &pid]);
    let output = apply(&args);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let reported = json_lines(&output);
    let read = read_back(&holder);
    for name in ["l4", "c4", "c4-accepted"] {
        assert_eq!(*value_of(&read, name), OUR_VALUES, "{name}");
    }
    assert_eq!(*value_of(&read, "l6"), KERNEL);
    assert_eq!(*value_of(&read, "c6-accepted"), KERNEL);
    assert_eq!(*value_of(&read, "c6"), PROGRAM_C6);
    let l6 = by_fd(&reported, holder.fd("l6"));
    assert_eq!(l6["result"], "not-targeted");
    assert_eq!(l6["detail"], "port not in KEEPALIVE_PORTS");

    // KEEPALIVE_NETS: connected sockets whose peer is in the network; listeners are left to
    // their accepted sockets.
    let holder = holder_again();
    let pid = holder.pid.to_string();
    let mut args = OURS.to_vec();
    args.extend(["--override", "yes", "--nets", "::1/128", "--json", &pid]);
    let output = apply(&args);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let reported = json_lines(&output);
    let read = read_back(&holder);
    assert_eq!(*value_of(&read, "c6"), OUR_VALUES);
    assert_eq!(*value_of(&read, "c6-accepted"), OUR_VALUES);
    for name in ["l4", "c4-accepted", "l6"] {
        assert_eq!(*value_of(&read, name), KERNEL, "{name}");
    }
    assert_eq!(*value_of(&read, "c4"), PROGRAM_C4);
    assert_eq!(
        by_fd(&reported, holder.fd("c4"))["detail"],
        "peer not in KEEPALIVE_NETS"
    );
}

/// The cgroup v2 hierarchy: /sys/fs/cgroup (unified) or /sys/fs/cgroup/unified (hybrid).
fn cgroup2_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("/proc/self/mounts");
    mounts
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.get(2) == Some(&"cgroup2"))
        .map(|fields| PathBuf::from(fields[1]))
        .expect("a cgroup2 hierarchy is mounted")
}

/// A control group of the test's own, emptied (processes moved back) and removed on drop.
struct Group {
    root: PathBuf,
    path: PathBuf,
}

impl Group {
    fn new(root: &Path, name: &str) -> Self {
        let path = root.join(name);
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Self {
            root: root.to_path_buf(),
            path,
        }
    }

    fn adopt(&self, pid: i32) {
        std::fs::write(self.path.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("move {pid} into {}: {e}", self.path.display()));
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let mut groups = vec![self.path.clone()];
        if let Ok(entries) = std::fs::read_dir(&self.path) {
            groups.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        for group in groups.iter().rev() {
            let procs = std::fs::read_to_string(group.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines() {
                let _ = std::fs::write(self.root.join("cgroup.procs"), pid);
            }
            let _ = std::fs::remove_dir(group);
        }
    }
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes, setpriv, cgroups; scripts/test runs it"]
fn cgroup_covers_every_process_of_the_group_and_its_subgroups() {
    require_root(NEEDS_ROOT);
    let root = cgroup2_root();
    let name = format!("kpa-apply-{}", std::process::id());
    let group = Group::new(&root, &name);
    let sub = Group::new(&group.path, "sub");
    let first = holder(&sockets(), &[]);
    let second = holder(&sockets(), &[]);
    // A process without sockets in the group is no error when a unit or group is given.
    let mut sleeper = Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .spawn()
        .expect("start sleep");
    group.adopt(first.pid);
    sub.adopt(second.pid);
    group.adopt(sleeper.id() as i32);

    let mut args = OURS.to_vec();
    args.extend(["--override", "yes", "--json", "--cgroup"]);
    let directory = group.path.to_string_lossy().into_owned();
    args.push(&directory);
    let output = apply(&args);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let reported = json_lines(&output);
    assert_eq!(reported.len(), 12, "{reported:#?}");
    for holder in [&first, &second] {
        for (name, values) in read_back(holder) {
            assert_eq!(values, OUR_VALUES, "pid {} {name}", holder.pid);
        }
    }
    assert!(
        stderr(&output).contains("12 TCP sockets in 3 processes: 12 changed"),
        "{}",
        stderr(&output)
    );

    // The group named as /proc/PID/cgroup shows it, found under the cgroup mounts.
    let third = holder(&sockets(), &[]);
    group.adopt(third.pid);
    let relative = format!("/{name}");
    let output = apply(&["--override", "yes", "--idle", "41", "--cgroup", &relative]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(
        *value_of(&read_back(&third), "l4"),
        (true, 41, 75, 9, 0),
        "{}",
        stdout(&output)
    );
    drop(sub);
    drop(group);
    assert!(!root.join(&name).exists(), "group {name} left behind");

    // An empty group is an error.
    let empty = Group::new(&root, &format!("kpa-apply-empty-{}", std::process::id()));
    let path = empty.path.to_string_lossy().into_owned();
    let output = apply(&["--idle", "41", "--cgroup", &path]);
    assert_one_error(&output, "has no process");
}

#[test]
#[ignore = "needs root: pidfd_getfd on other processes, setpriv, cgroups; scripts/test runs it"]
fn a_socket_shared_by_two_processes_or_two_descriptors_is_changed_once() {
    require_root(NEEDS_ROOT);
    // A listener and a connection, the connection dup'ed, then the process forks: parent and
    // child hold the same three sockets (by inode), the parent under two descriptors each.
    let port = port(1);
    let script = format!(
        r#"
import os, socket as S, sys
l = S.socket(); l.setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", {port})); l.listen(8)
c = S.create_connection(("127.0.0.1", {port})); a, _ = l.accept()
extra = os.dup(c.fileno())
child = os.fork()
if child == 0:
    sys.stdin.read(); os._exit(0)
print('{{"pid": %d, "sockets": [["child", %d, 0], ["l", %d, 0], ["c", %d, 0], ["a", %d, 0], ["dup", %d, 0]]}}'
      % (os.getpid(), child, l.fileno(), c.fileno(), a.fileno(), extra), flush=True)
sys.stdin.read()
"#
    );
    let mut command = Command::new(python());
    command.arg("-c").arg(script);
    let holder = start_holder(command, &[]);
    let (parent, child) = (holder.pid.to_string(), holder.fd("child").to_string());
    let mut args = OURS.to_vec();
    args.extend(["--json", &parent, &child]);
    let output = apply(&args);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let reported = json_lines(&output);
    let changed: Vec<&Value> = reported
        .iter()
        .filter(|l| l["result"] == "changed")
        .collect();
    assert_eq!(changed.len(), 3, "{reported:#?}");
    assert!(changed.iter().all(|l| l["pid"] == holder.pid));
    let same: Vec<&Value> = reported
        .iter()
        .filter(|l| l["result"] == "same-socket")
        .collect();
    assert_eq!(
        same.len(),
        5,
        "the dup, and the child's four: {reported:#?}"
    );
    let dup = reported
        .iter()
        .find(|l| l["pid"] == holder.pid && l["fd"] == holder.fd("dup"))
        .expect("the dup'ed descriptor");
    assert_eq!(
        dup["detail"],
        format!("the socket of pid {} fd {}", holder.pid, holder.fd("c"))
    );
    assert!(
        stderr(&output).contains("3 TCP sockets in 2 processes: 3 changed"),
        "{}",
        stderr(&output)
    );
    for line in inspect_json(holder.fd("child")) {
        assert_eq!(values(&line), OUR_VALUES, "the child's view: {line}");
    }
}
