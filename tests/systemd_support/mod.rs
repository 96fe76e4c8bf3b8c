//! Support of the `tests/systemd_*.rs` tests: a real systemd (Debian bookworm's, as PID 1)
//! booted in `systemd-nspawn`, with the project's own `.deb` installed in it by `dpkg -i`.
//!
//! - [`rootfs`]: a bookworm tree made once by `debootstrap` and cached under /var/tmp, in a
//!   directory named by a hash of its recipe (suite, mirror, package list): a changed list
//!   builds a new one and removes the old.
//! - [`container`]: [`Container::boot`] boots it with `--volatile=overlay` (the tree stays
//!   untouched, every write goes to a tmpfs), `--private-network` (never on the host's ports)
//!   and `--register=no --keep-unit`, from cgroups of its own ([`cgroups`]: `kpsd-NAME-PID`,
//!   made in both /sys/fs/cgroup/systemd and /sys/fs/cgroup/unified on a hybrid host, in
//!   /sys/fs/cgroup on a unified one): started from the root cgroup, nspawn leaves /payload and
//!   /supervisor behind and `systemctl status` fails with EIO. Returns when
//!   `systemctl is-system-running --wait` says the boot is over. Dropping the container kills
//!   its PID 1 (a killed nspawn would leave it orphaned) and everything else in its cgroups
//!   (`cgroup.kill`), then removes the cgroups.
//! - [`commands`]: [`Container::exec`] and the helpers on top of it run a shell script inside,
//!   entered with `nsenter -t <PID 1> -a`; [`Container::systemctl_edit`] drives the real
//!   `systemctl edit` (it needs a terminal: `script -qec`).
//! - [`package`]: the project's `.deb` (`KP_TEST_DEB`, else built by packaging/build-deb) and
//!   [`Container::install_package`].
//! - [`static_programs`]: the eBPF cases' static servers, built on the host with `gcc -static`.
//! - [`readback`]: the live sockets (`keepalive-preload inspect --json`) and the test programs'
//!   read-back lines; [`redis`]: the shipped values, `redis-cli` and the cluster-bus links;
//!   [`units`]: the library in a unit's process, a bad value refused or skipped; [`ebpf`]: the
//!   eBPF drop-ins, `bpf status --json` and a unit's live cgroup.
//!
//! Nothing here skips: no root, no nspawn, no debootstrap, no network for the first
//! debootstrap, or a container that does not boot is a failure.
#![allow(dead_code)]

pub mod cgroups;
pub mod commands;
pub mod container;
pub mod ebpf;
pub mod package;
pub mod readback;
pub mod redis;
pub mod rootfs;
pub mod static_programs;
pub mod units;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

// Each test file uses part of these.
#[allow(unused_imports)]
pub use container::{BPF_NSPAWN_ARGS, Container};
#[allow(unused_imports)]
pub use static_programs::{static_activated, static_sock};

static SERIAL: Mutex<()> = Mutex::new(());

/// One container at a time: the tests measure times, and two cores are shared.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
