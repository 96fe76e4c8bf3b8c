//! The container's life: [`Container::boot`] starts `systemd-nspawn --boot` on the cached tree
//! from cgroups of its own and returns once systemd says the boot is over; dropped, the
//! container is killed and its cgroups removed.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{require_root, tool};

use super::cgroups::{hierarchies, kill_cgroup, remove_cgroup, remove_stale_cgroups};
use super::commands::PATH;
use super::rootfs::rootfs;
use super::tail;

/// Root and the host's tools, or a failure naming the package.
pub fn require() {
    require_root("systemd-nspawn, debootstrap, cgroups, nsenter");
    for (program, package) in [
        ("systemd-nspawn", "systemd-container"),
        ("debootstrap", "debootstrap"),
        ("nsenter", "util-linux"),
        ("timeout", "coreutils"),
    ] {
        tool(program, package);
    }
}

/// The extra `systemd-nspawn` arguments an eBPF policy needs in the container: units get
/// nspawn's capability bounding set and syscall filter, under which bpf(2) fails with EPERM.
pub const BPF_NSPAWN_ARGS: &[&str] = &[
    "--capability=CAP_BPF,CAP_PERFMON",
    "--system-call-filter=bpf",
];

/// A booted systemd in `systemd-nspawn`; dropped, it is killed and its cgroups removed.
pub struct Container {
    pub name: String,
    nspawn: Child,
    pub(super) pid1: u32,
    log: PathBuf,
}

impl Container {
    /// Boots the cached rootfs as a container named `kpsd-TAG-PID` and waits for the end of
    /// its boot. Fails (panics) when it cannot.
    pub fn boot(tag: &str) -> Self {
        Self::boot_with(tag, &[])
    }

    /// `boot` with more `systemd-nspawn` arguments. Units in the container get nspawn's
    /// capability bounding set and syscall filter: bpf(2) fails there with EPERM unless
    /// `--capability=CAP_BPF,CAP_PERFMON` and `--system-call-filter=bpf` are given (measured
    /// with systemd-run in the container: BPF_MAP_CREATE EPERM without, a map with).
    pub fn boot_with(tag: &str, nspawn_args: &[&str]) -> Self {
        require();
        let rootfs = rootfs();
        remove_stale_cgroups();
        let name = format!("kpsd-{tag}-{}", std::process::id());
        for hierarchy in hierarchies() {
            let dir = hierarchy.join(&name);
            std::fs::create_dir_all(&dir)
                .unwrap_or_else(|e| panic!("create cgroup {}: {e}", dir.display()));
        }
        let log = std::env::temp_dir().join(format!("{name}.log"));
        let log_file = File::create(&log).expect("container log");
        let started = Instant::now();
        // The shell moves itself into the new cgroups, then becomes nspawn.
        let mut script = String::new();
        for hierarchy in hierarchies() {
            script.push_str(&format!(
                "echo $$ > {}/{name}/cgroup.procs && ",
                hierarchy.display()
            ));
        }
        script.push_str("exec \"$@\"");
        let nspawn = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(tool("systemd-nspawn", "systemd-container"))
            .arg("--quiet")
            .arg(format!("--directory={}", rootfs.display()))
            .args([
                "--volatile=overlay",
                "--register=no",
                "--keep-unit",
                "--private-network",
                "--boot",
            ])
            .arg(format!("--machine={name}"))
            .args(nspawn_args)
            .env_clear()
            .env("PATH", PATH)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("start systemd-nspawn");
        let mut container = Self {
            name,
            nspawn,
            pid1: 0,
            log,
        };
        container.pid1 = container.find_pid1();
        // systemctl needs PID 1's socket, made early in the boot.
        container.wait_for("systemd's socket", Duration::from_secs(60), || {
            container
                .exec("test -S /run/systemd/private")
                .success()
                .then_some(())
        });
        let booted = container.exec_timeout("systemctl is-system-running --wait", 120);
        let state = booted.stdout.trim().to_owned();
        if state != "running" {
            let failed = container.exec("systemctl --failed --no-legend; journalctl -b -p warning -o short-monotonic | tail -n 30");
            panic!(
                "{}: boot ended in state {state:?} ({:?}); failed units and warnings:\n{}\n{}",
                container.name, booted.stderr, failed.stdout, failed.stderr
            );
        }
        println!(
            "{}: systemd {} booted in {:.1} s (PID 1 is host PID {})",
            container.name,
            container
                .sh("systemctl --version | head -n1")
                .split_whitespace()
                .nth(1)
                .unwrap_or("?"),
            started.elapsed().as_secs_f64(),
            container.pid1
        );
        container
    }

    /// The container's PID 1 (host PID), a child of nspawn running systemd.
    fn find_pid1(&mut self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(60);
        let nspawn = self.nspawn.id();
        loop {
            if let Ok(Some(status)) = self.nspawn.try_wait() {
                panic!(
                    "systemd-nspawn exited ({status}) before the container booted:\n{}",
                    tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 40)
                );
            }
            let children =
                std::fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children"))
                    .unwrap_or_default();
            for child in children.split_whitespace() {
                let exe = std::fs::read_link(format!("/proc/{child}/exe")).unwrap_or_default();
                if exe.ends_with("systemd/systemd") {
                    let cgroup = std::fs::read_to_string(format!("/proc/{child}/cgroup"))
                        .unwrap_or_default();
                    assert!(
                        cgroup.contains(&format!("/{}/", self.name)),
                        "PID 1 of the container is not in cgroup {}:\n{cgroup}",
                        self.name
                    );
                    return child.parse().expect("a PID");
                }
            }
            assert!(
                Instant::now() < deadline,
                "no systemd under systemd-nspawn (PID {nspawn}) after 60 s:\n{}",
                tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls `check` every 100 ms until it returns Some, or fails after `timeout` naming `what`.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = check() {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {what}: not after {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.pid1 > 0 {
            // SAFETY: kill has no memory preconditions; the PID is the container's init.
            unsafe { libc::kill(self.pid1 as libc::pid_t, libc::SIGKILL) };
        }
        kill_cgroup(&self.name);
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
        remove_cgroup(&self.name);
        let _ = std::fs::remove_file(&self.log);
    }
}
