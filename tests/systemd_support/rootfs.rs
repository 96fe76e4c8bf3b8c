//! The container's tree: Debian bookworm made once by `debootstrap --variant=minbase` and
//! cached under /var/tmp in a directory named by a hash of its recipe (suite, mirror, package
//! list, a version number); another recipe builds a new tree and removes the old one.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use testkit::tool;

use super::tail;

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
