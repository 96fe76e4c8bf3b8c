//! Support of the `tests/systemd_*.rs` tests: a real systemd (Debian bookworm's, as PID 1)
//! booted in `systemd-nspawn`, with the project's own `.deb` installed in it by `dpkg -i`.
//!
//! - [`rootfs`]: a bookworm tree made once by `debootstrap` and cached under /var/tmp, in a
//!   directory named by a hash of its recipe (suite, mirror, package list): a changed list
//!   builds a new one and removes the old.
//! - [`Container::boot`]: boots it with `--volatile=overlay` (the tree stays untouched, every
//!   write goes to a tmpfs), `--private-network` (never on the host's ports) and
//!   `--register=no --keep-unit`, from cgroups of its own (`kpsd-NAME-PID`) made in both
//!   /sys/fs/cgroup/systemd and /sys/fs/cgroup/unified (a hybrid host; on a unified one in
//!   /sys/fs/cgroup): started from the root cgroup, nspawn leaves /payload and /supervisor
//!   behind and `systemctl status` fails with EIO. Returns when
//!   `systemctl is-system-running --wait` says the boot is over.
//! - [`Container::exec`] and the helpers on top of it run a shell script inside, entered with
//!   `nsenter -t <PID 1> -a`; [`Container::systemctl_edit`] drives the real `systemctl edit`
//!   (it needs a terminal: `script -qec`).
//! - Dropping the container kills its PID 1 (a killed nspawn would leave it orphaned) and
//!   everything else in its cgroups (`cgroup.kill`), then removes the cgroups.
//! - [`readback`]: the live sockets (`keepalive-preload inspect --json`) and the test programs'
//!   read-back lines; [`redis`]: the shipped values, `redis-cli` and the cluster-bus links;
//!   [`units`]: the library in a unit's process, a bad value refused or skipped; [`ebpf`]: the
//!   eBPF drop-ins, `bpf status --json` and a unit's live cgroup.
//!
//! Nothing here skips: no root, no nspawn, no debootstrap, no network for the first
//! debootstrap, or a container that does not boot is a failure.
#![allow(dead_code)]

pub mod ebpf;
pub mod readback;
pub mod redis;
pub mod units;

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use testkit::{require_root, tool};

/// The rootfs recipe. Any change to it makes a new cache directory.
pub const SUITE: &str = "bookworm";
pub const MIRROR: &str = "http://deb.debian.org/debian";
pub const PACKAGES: &[&str] = &[
    "systemd",      // PID 1, systemctl, journalctl
    "dbus",         // what a Debian system with systemd has; logind needs it
    "redis-server", // Debian's redis-server.service and the server of redis-cluster@
    "redis-tools",  // redis-cli
    "iproute2",     // ip netns, ss: a second "host" for the dead peer
    "iptables",     // blackholing it
    "procps",       // ps, for the logs of failures
];
/// Bump when the preparation below changes the tree.
const RECIPE_VERSION: u32 = 1;
const CACHE_DIR: &str = "/var/tmp";
const CACHE_PREFIX: &str = "kpsd-rootfs-";

/// The cgroup hierarchies nspawn needs a cgroup of its own in: on a hybrid host (this project's
/// machines) v1's named systemd hierarchy and the unified one; on a unified host only the root.
fn hierarchies() -> &'static [PathBuf] {
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

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

static SERIAL: Mutex<()> = Mutex::new(());

/// One container at a time: the tests measure times, and two cores are shared.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

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

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// 64-bit FNV-1a: a stable name for the recipe (std's hasher may change between releases).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn recipe() -> String {
    format!(
        "suite={SUITE} mirror={MIRROR} variant=minbase packages={} version={RECIPE_VERSION}",
        PACKAGES.join(",")
    )
}

/// Holds an exclusive flock on a file while alive (other test processes wait for the rootfs).
struct FileLock(File);

impl FileLock {
    fn new(path: &Path) -> Self {
        let file = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        // SAFETY: flock on a descriptor this File owns.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {}", path.display());
        Self(file)
    }
}

/// The cached bookworm tree, built now by debootstrap when the cache has none for this
/// recipe (about 50 s with a fast mirror, a few minutes on a slow one).
pub fn rootfs() -> PathBuf {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(build_rootfs).clone()
}

fn build_rootfs() -> PathBuf {
    let recipe = recipe();
    let key = format!("{:016x}", fnv1a(&recipe));
    let dir = Path::new(CACHE_DIR).join(format!("{CACHE_PREFIX}{key}"));
    let done = dir.join(".kpsd-recipe");
    let _lock = FileLock::new(&Path::new(CACHE_DIR).join("kpsd-rootfs.lock"));
    if std::fs::read_to_string(&done).is_ok_and(|text| text == recipe) {
        println!("rootfs: cached {} ({recipe})", dir.display());
        return dir;
    }
    let started = Instant::now();
    let tmp = Path::new(CACHE_DIR).join(format!("{CACHE_PREFIX}{key}.tmp"));
    let log = Path::new(CACHE_DIR).join(format!("{CACHE_PREFIX}{key}.log"));
    for stale in [&dir, &tmp] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)
                .unwrap_or_else(|e| panic!("remove {}: {e}", stale.display()));
        }
    }
    println!(
        "rootfs: debootstrap {SUITE} into {} ({recipe})",
        tmp.display()
    );
    let log_file = File::create(&log).expect("debootstrap log");
    let status = Command::new(tool("debootstrap", "debootstrap"))
        .arg("--variant=minbase")
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(SUITE)
        .arg(&tmp)
        .arg(MIRROR)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .status()
        .expect("run debootstrap");
    assert!(
        status.success(),
        "debootstrap {SUITE} failed ({status}); its log, {}:\n{}",
        log.display(),
        tail(&std::fs::read_to_string(&log).unwrap_or_default(), 30)
    );
    // Debian's redis-server.service stays enabled, as a package install leaves it.
    std::fs::write(tmp.join("etc/hostname"), "kpsd\n").unwrap();
    std::fs::write(tmp.join(".kpsd-recipe"), &recipe).unwrap();
    std::fs::rename(&tmp, &dir).expect("rename the new rootfs into place");
    let _ = std::fs::remove_file(&log);
    // Trees of earlier recipes.
    if let Ok(entries) = std::fs::read_dir(CACHE_DIR) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(CACHE_PREFIX) && entry.path() != dir && !name.ends_with(".lock") {
                println!("rootfs: removing {name}, made for another recipe");
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    println!(
        "rootfs: built {} in {:.0} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    dir
}

/// The project's .deb: `KP_TEST_DEB` (scripts/test builds it with
/// packaging/build-deb first), else built now by packaging/build-deb into a target directory
/// of its own (the outer cargo holds the lock on the normal one): a full release build.
pub fn deb() -> PathBuf {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        if let Some(path) = std::env::var_os("KP_TEST_DEB").filter(|v| !v.is_empty()) {
            let path = std::path::absolute(PathBuf::from(path)).expect("absolute path");
            assert!(
                path.is_file(),
                "KP_TEST_DEB={} is not a file",
                path.display()
            );
            return path;
        }
        let target = testkit::profile_dir().join("kpsd-deb-build");
        let output = target.join("debian");
        println!(
            "KP_TEST_DEB is not set: packaging/build-deb into {}",
            target.display()
        );
        let out = Command::new(repo().join("packaging/build-deb"))
            .arg("--output")
            .arg(&output)
            .env("CARGO_TARGET_DIR", &target)
            .stdin(Stdio::null())
            .output()
            .expect("run packaging/build-deb");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "packaging/build-deb failed ({}):\n{}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 30)
        );
        let path = PathBuf::from(stdout.lines().last().unwrap_or("").trim());
        assert!(path.is_file(), "packaging/build-deb printed {stdout:?}");
        path
    })
    .clone()
}

/// The extra `systemd-nspawn` arguments an eBPF policy needs in the container: units get
/// nspawn's capability bounding set and syscall filter, under which bpf(2) fails with EPERM.
pub const BPF_NSPAWN_ARGS: &[&str] = &[
    "--capability=CAP_BPF,CAP_PERFMON",
    "--system-call-filter=bpf",
];

/// The eBPF tests' static C server and client (cli/tests/bpf/sock.c), built once per test
/// process with `gcc -static` into target/<profile>/kpsb-build: no dynamic C library, so no
/// preload could reach it, and it runs in the container whatever its libc.
pub fn static_sock() -> PathBuf {
    static SOCK: OnceLock<PathBuf> = OnceLock::new();
    SOCK.get_or_init(|| {
        let source = std::fs::read_to_string(repo().join("cli/tests/bpf/sock.c"))
            .expect("read cli/tests/bpf/sock.c");
        gcc_static("sock", &source)
    })
    .clone()
}

/// A socket-activated server: accepts on fd 3 (the listener systemd passes, `Accept=no`),
/// sets 30/10/3 on each connection as `sock serve` does, and prints the listener's and each
/// accepted socket's read-back in `sock`'s format.
const ACTIVATED_C: &str = r#"
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
static int get(int fd, int level, int name)
{
	int value = -1;
	socklen_t len = sizeof(value);
	return getsockopt(fd, level, name, &value, &len) ? -1 : value;
}
static void report(const char *role, int fd, const char *calls)
{
	printf("role=%s peer=- calls=%s keepalive=%d idle=%d intvl=%d cnt=%d uto=%d\n", role, calls,
	       get(fd, SOL_SOCKET, SO_KEEPALIVE), get(fd, IPPROTO_TCP, TCP_KEEPIDLE),
	       get(fd, IPPROTO_TCP, TCP_KEEPINTVL), get(fd, IPPROTO_TCP, TCP_KEEPCNT),
	       get(fd, IPPROTO_TCP, TCP_USER_TIMEOUT));
	fflush(stdout);
}
int main(void)
{
	const int own[3][2] = {{TCP_KEEPIDLE, 30}, {TCP_KEEPINTVL, 10}, {TCP_KEEPCNT, 3}};
	report("listener", 3, "-");
	for (;;) {
		char calls[64];
		int fd = accept(3, NULL, NULL), used = 0;
		if (fd < 0)
			return 1;
		for (int i = 0; i < 3; i++)
			used += snprintf(calls + used, sizeof(calls) - used, "%s%d", i ? "," : "-/",
					 setsockopt(fd, IPPROTO_TCP, own[i][0], &own[i][1], sizeof(int)));
		report("accepted", fd, calls);
		close(fd);
	}
}
"#;

/// The socket-activated server ([`ACTIVATED_C`]), static.
pub fn static_activated() -> PathBuf {
    static ACTIVATED: OnceLock<PathBuf> = OnceLock::new();
    ACTIVATED
        .get_or_init(|| gcc_static("activated", ACTIVATED_C))
        .clone()
}

/// `gcc -static` of a C source into target/<profile>/kpsb-build/NAME.
fn gcc_static(name: &str, source: &str) -> PathBuf {
    let dir = testkit::profile_dir().join("kpsb-build");
    std::fs::create_dir_all(&dir).expect("create kpsb-build");
    let out = dir.join(name);
    let mut child = Command::new(tool("gcc", "gcc"))
        .args(["-O1", "-Wall", "-static", "-x", "c", "-", "-o"])
        .arg(&out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gcc");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(source.as_bytes())
        .expect("write the source to gcc");
    let output = child.wait_with_output().expect("wait for gcc");
    assert!(
        output.status.success(),
        "gcc -static {name} failed (libc6-dev is needed):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(is_static(&out), "{} is not static", out.display());
    out
}

/// No PT_INTERP program header in a 64-bit ELF: no dynamic loader.
fn is_static(path: &Path) -> bool {
    let data = std::fs::read(path).expect("read the program");
    let u64_at = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().unwrap()) as usize;
    let u16_at = |at: usize| usize::from(u16::from_le_bytes(data[at..at + 2].try_into().unwrap()));
    let (table, size, count) = (u64_at(32), u16_at(54), u16_at(56));
    (0..count).all(|index| {
        let at = table + index * size;
        u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) != 3
    })
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What a command inside the container did.
#[derive(Debug)]
pub struct Run {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    fn from(output: Output) -> Self {
        Self {
            status: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// A booted systemd in `systemd-nspawn`; dropped, it is killed and its cgroups removed.
pub struct Container {
    pub name: String,
    nspawn: Child,
    pid1: u32,
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

    fn command(&self, script: &str, timeout_s: u32) -> Command {
        let mut command = Command::new("timeout");
        command
            .args(["-k", "5", &timeout_s.to_string(), "nsenter", "-t"])
            .arg(self.pid1.to_string())
            .args(["-a", "/usr/bin/env", "-i"])
            .arg(format!("PATH={PATH}"))
            .args([
                "LANG=C.UTF-8",
                "TERM=dumb",
                "SYSTEMD_COLORS=0",
                "SYSTEMD_PAGER=",
                "SYSTEMD_LESS=",
                "HOME=/root",
                "/bin/sh",
                "-c",
                script,
            ])
            .stdin(Stdio::null());
        command
    }

    /// Runs `script` with /bin/sh inside the container (as root, in all its namespaces);
    /// killed after 120 s.
    pub fn exec(&self, script: &str) -> Run {
        self.exec_timeout(script, 120)
    }

    pub fn exec_timeout(&self, script: &str, timeout_s: u32) -> Run {
        Run::from(
            self.command(script, timeout_s)
                .output()
                .unwrap_or_else(|e| panic!("run nsenter: {e}")),
        )
    }

    /// Runs `script` with `input` on its standard input.
    pub fn exec_input(&self, script: &str, input: &[u8]) -> Run {
        let mut child = self
            .command(script, 120)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run nsenter");
        child.stdin.take().unwrap().write_all(input).expect("write");
        Run::from(child.wait_with_output().expect("wait for nsenter"))
    }

    /// `exec` that must succeed; its standard output.
    pub fn sh(&self, script: &str) -> String {
        let run = self.exec(script);
        assert!(
            run.success(),
            "{}: `{script}` failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            self.name,
            run.status,
            run.stdout,
            run.stderr
        );
        run.stdout
    }

    /// Writes a file inside the container.
    pub fn write(&self, path: &str, contents: &[u8]) {
        let run = self.exec_input(&format!("cat > '{path}'"), contents);
        assert!(run.success(), "write {path}: {}", run.stderr);
    }

    /// Copies a file of the host into the container, with this mode.
    pub fn copy_in(&self, host: &Path, path: &str, mode: u32) {
        let bytes = std::fs::read(host).unwrap_or_else(|e| panic!("read {}: {e}", host.display()));
        self.write(path, &bytes);
        self.sh(&format!("chmod {mode:o} '{path}'"));
    }

    /// `systemctl ARGS`.
    pub fn systemctl(&self, args: &str) -> Run {
        self.exec(&format!("systemctl --no-pager {args}"))
    }

    /// One property of a unit (`systemctl show -p NAME --value UNIT`).
    pub fn property(&self, unit: &str, name: &str) -> String {
        self.sh(&format!("systemctl show -p {name} --value {unit}"))
            .trim()
            .to_owned()
    }

    /// The unit's main PID as the container sees it (its own PID namespace).
    pub fn main_pid(&self, unit: &str) -> u32 {
        let pid = self.property(unit, "MainPID");
        let pid: u32 = pid.parse().unwrap_or(0);
        assert!(pid > 0, "{unit} has no main PID");
        pid
    }

    /// The unit's journal of this boot, messages only.
    pub fn journal(&self, unit: &str) -> String {
        self.sh(&format!("journalctl -b --no-pager -o cat -u {unit}"))
    }

    /// `systemctl edit UNIT` as an operator runs it, the editor writing `contents`: systemctl
    /// wants a terminal, which `script` provides.
    pub fn systemctl_edit(&self, unit: &str, contents: &str) {
        self.write("/root/kpsd-edit.contents", contents.as_bytes());
        self.write(
            "/root/kpsd-editor",
            b"#!/bin/sh\ncat /root/kpsd-edit.contents > \"$1\"\n",
        );
        self.sh("chmod +x /root/kpsd-editor");
        self.sh(&format!(
            "SYSTEMD_EDITOR=/root/kpsd-editor script -qec 'systemctl edit {unit}' /dev/null"
        ));
    }

    /// Copies the project's .deb in and installs it with `dpkg -i`.
    pub fn install_package(&self) {
        let deb = deb();
        let bytes = std::fs::read(&deb).unwrap_or_else(|e| panic!("read {}: {e}", deb.display()));
        self.write("/root/keepalive-preload.deb", &bytes);
        self.sh("dpkg -i /root/keepalive-preload.deb");
        println!("{}: dpkg -i {}", self.name, deb.display());
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

/// Kills every process in the container's unified cgroup subtree and waits until it is empty.
fn kill_cgroup(name: &str) {
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
fn remove_cgroup(name: &str) {
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
fn remove_stale_cgroups() {
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
