//! The attached policies as bpffs keeps them: /sys/fs/bpf/keepalive-preload/cgroup-ID/ holds the
//! two links (`sockops`, `setsockopt`) and the maps (`policy`, `ports`, `nets`, `storage`,
//! `counters`, `info`). `info` records the cgroup's path and the variables, for `status` and
//! `inspect`.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use keepalive_config::{Config, KernelDefaults};

use super::cgroup::Cgroup;
use super::layout::{self, COUNTERS};
use super::load::{self, failure};
use super::recorded::{INFO_SIZE, read_info, write_info};
use super::sys;
use crate::Failure;

/// Where bpffs is looked for, and mounted when it is nowhere: /sys/fs/bpf (systemd mounts it
/// there), else a directory of our own under /run for systems where /sys is read-only (a
/// container's). Each bpffs mount is a namespace of its own: every command looks in the same
/// order, so they all find the same one.
const BPFFS: [&str; 2] = ["/sys/fs/bpf", "/run/keepalive-preload/bpffs"];
/// Our directory in bpffs.
const DIRECTORY: &str = "keepalive-preload";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

const LINKS: [(&str, (&str, u32, u32)); 2] =
    [("setsockopt", load::SETSOCKOPT), ("sockops", load::SOCKOPS)];

/// One attached policy, as `status` reports it.
#[derive(Clone, Debug)]
pub struct Attached {
    pub pin: PathBuf,
    pub cgroup: PathBuf,
    pub cgroup_id: u64,
    pub variables: String,
    /// (link name, link id, program id, cgroup id the kernel reports: 0 when defunct)
    pub links: Vec<(String, u32, u32, u64)>,
    pub counters: [u64; COUNTERS],
    /// The cgroup is gone (or replaced): the links are defunct.
    pub stale: bool,
    pub problems: Vec<String>,
}

/// The bpffs mount in use, if any. A command that runs in a mount namespace of its own (a
/// sandboxed unit's ExecStartPre=+ in a container, where /sys is read-only and no bpffs is
/// mounted) first moves to PID 1's, so that a bpffs it mounts outlives it and every command
/// finds the same one.
fn bpffs() -> Option<&'static Path> {
    let find = || {
        BPFFS
            .iter()
            .map(Path::new)
            .find(|root| sys::fs_type(root).is_ok_and(|kind| kind == BPF_FS_MAGIC))
    };
    find().or_else(|| {
        let namespace = |pid: &str| {
            std::fs::metadata(format!("/proc/{pid}/ns/mnt"))
                .ok()
                .map(|metadata| std::os::unix::fs::MetadataExt::ino(&metadata))
        };
        let elsewhere = namespace("self").is_some() && namespace("self") != namespace("1");
        (elsewhere && sys::effective_uid() == 0 && sys::enter_mount_namespace_of(1).is_ok())
            .then(find)
            .flatten()
    })
}

/// Where the policies are pinned: /sys/fs/bpf/keepalive-preload, normally.
pub(super) fn base() -> PathBuf {
    bpffs().unwrap_or(Path::new(BPFFS[0])).join(DIRECTORY)
}

/// The bpffs mount, mounted at the first place that allows it when there is none.
fn ensure_bpffs() -> Result<&'static Path, Failure> {
    if let Some(root) = bpffs() {
        return Ok(root);
    }
    let mut problems = Vec::new();
    for root in BPFFS.iter().map(Path::new) {
        match std::fs::create_dir_all(root).and_then(|()| sys::mount_bpffs(root)) {
            Ok(()) => return Ok(root),
            Err(error) => problems.push(format!("{}: {error}", root.display())),
        }
    }
    Err(Failure::new(format!(
        "cannot mount bpffs ({})",
        problems.join("; ")
    )))
}

fn pin_dir(id: u64) -> PathBuf {
    base().join(format!("cgroup-{id}"))
}

struct Maps {
    policy: OwnedFd,
    ports: OwnedFd,
    nets: OwnedFd,
    storage: OwnedFd,
    counters: OwnedFd,
    info: OwnedFd,
}

impl Maps {
    fn by_symbol(&self) -> HashMap<&'static str, BorrowedFd<'_>> {
        HashMap::from([
            (load::POLICY, self.policy.as_fd()),
            (load::PORTS, self.ports.as_fd()),
            (load::NETS, self.nets.as_fd()),
            (load::STORAGE, self.storage.as_fd()),
            (load::COUNTERS_MAP, self.counters.as_fd()),
        ])
    }

    fn pins(&self) -> [(&'static str, BorrowedFd<'_>); 6] {
        [
            ("policy", self.policy.as_fd()),
            ("ports", self.ports.as_fd()),
            ("nets", self.nets.as_fd()),
            ("storage", self.storage.as_fd()),
            ("counters", self.counters.as_fd()),
            ("info", self.info.as_fd()),
        ]
    }
}

/// The maps a new configuration replaces (the programs are reloaded over them, so that the
/// switch is one link update): policy, ports, nets, filled. `updating`: the pin directory of
/// the policy they replace.
fn fresh_policy_maps(
    config: &Config<'_>,
    kernel: KernelDefaults,
    updating: Option<&Path>,
) -> Result<[OwnedFd; 3], Failure> {
    let policy = load::create_policy_map()?;
    let mut value = layout::policy(config, kernel);
    if let Some(dir) = updating
        && !same_policy(dir, &value)
    {
        // Listeners configured by the policy replaced keep its values, and the witness could
        // take one of them for ours while another differs: every accepted socket is set from
        // now on (until the policy is detached).
        value.witness = -1;
    }
    sys::map_update(policy.as_fd(), &0u32.to_ne_bytes(), sys::bytes_of(&value))
        .map_err(|error| failure("writing the policy", &error))?;
    let ports = load::create_ports_map()?;
    if config.ports.is_some() {
        for (index, word) in layout::port_words(config).iter().enumerate() {
            if *word != 0 {
                sys::map_update(
                    ports.as_fd(),
                    &(index as u32).to_ne_bytes(),
                    &word.to_ne_bytes(),
                )
                .map_err(|error| failure("writing the ports", &error))?;
            }
        }
    }
    let prefixes = layout::net_prefixes(config);
    let nets = load::create_nets_map(prefixes.len())?;
    for (prefix, base) in prefixes {
        sys::map_update(
            nets.as_fd(),
            &layout::net_key(prefix, base),
            &1u32.to_ne_bytes(),
        )
        .map_err(|error| failure("writing the networks", &error))?;
    }
    Ok([policy, ports, nets])
}

/// Whether the policy pinned in `dir` is `value`, its accept witness included (a policy made
/// by an older loader, shorter, never is).
fn same_policy(dir: &Path, value: &layout::KpPolicy) -> bool {
    let Ok(old) = sys::obj_get(&dir.join("policy")) else {
        return false;
    };
    let new = sys::bytes_of(value);
    // A policy of another version has another size: never the same, and never read into a
    // buffer of this one's size (the kernel writes a whole value).
    if sys::map_value_size(old.as_fd()).ok() != u32::try_from(new.len()).ok() {
        return false;
    }
    let mut bytes = vec![0xffu8; new.len()];
    sys::map_lookup(old.as_fd(), &0u32.to_ne_bytes(), &mut bytes).is_ok() && bytes == new
}

/// Attaches, or updates in place; returns what was done ("attached" or "updated").
pub fn attach(
    cgroup: &Cgroup,
    config: &Config<'_>,
    kernel: KernelDefaults,
) -> Result<&'static str, Failure> {
    load::check_layout()?;
    let base = ensure_bpffs()?.join(DIRECTORY);
    std::fs::create_dir_all(&base)
        .map_err(|error| Failure::new(format!("cannot create {}: {error}", base.display())))?;
    let variables = super::recorded::variables_text(config, kernel);
    let dir = pin_dir(cgroup.id);
    let outcome = if dir.is_dir() {
        match update(&dir, cgroup, config, kernel, &variables) {
            Ok(()) => "updated",
            Err(UpdateError::Failed(error)) => return Err(error),
            Err(UpdateError::Broken(error)) => {
                // A broken or foreign pin directory: start again.
                eprintln!(
                    "{}: replacing the policy pinned at {} ({})",
                    keepalive_config::PREFIX,
                    dir.display(),
                    error.0
                );
                remove(&dir);
                fresh(&dir, cgroup, config, kernel, &variables)?;
                "attached (replaced)"
            }
        }
    } else {
        fresh(&dir, cgroup, config, kernel, &variables)?;
        "attached"
    };
    // A policy recorded for the same path under another id belongs to a removed cgroup (a
    // restarted unit): its links are defunct.
    detach_where(|path, id| path == cgroup.path && id != cgroup.id);
    Ok(outcome)
}

fn open(path: &Path) -> Option<OwnedFd> {
    sys::obj_get(path).ok()
}

fn fresh(
    dir: &Path,
    cgroup: &Cgroup,
    config: &Config<'_>,
    kernel: KernelDefaults,
    variables: &str,
) -> Result<(), Failure> {
    let [policy, ports, nets] = fresh_policy_maps(config, kernel, None)?;
    let maps = Maps {
        policy,
        ports,
        nets,
        storage: load::create_storage_map()?,
        counters: load::create_counters_map()?,
        info: load::array("info", "kp_info", INFO_SIZE as u32, 1)?,
    };
    write_info(maps.info.as_fd(), cgroup, variables)?;
    let by_symbol = maps.by_symbol();
    let programs = LINKS
        .iter()
        .map(|(_, section)| load::load_program(*section, &by_symbol))
        .collect::<Result<Vec<_>, _>>()?;
    let cgroup_dir = std::fs::File::open(&cgroup.path)
        .map_err(|error| Failure::new(format!("cannot open {}: {error}", cgroup.path.display())))?;
    // Pin the maps first, then attach and pin each link: on any failure the directory is
    // removed and the links (held only by this process) go with it: nothing stays attached.
    let result = (|| {
        std::fs::create_dir(dir)
            .map_err(|error| Failure::new(format!("cannot create {}: {error}", dir.display())))?;
        for (name, fd) in maps.pins() {
            sys::obj_pin(fd, &dir.join(name))
                .map_err(|error| failure(&format!("pinning {name}"), &error))?;
        }
        let mut links = Vec::new();
        for ((name, (_, _, attach_type)), program) in LINKS.iter().zip(&programs) {
            let link = sys::link_create(program.as_fd(), cgroup_dir.as_fd(), *attach_type)
                .map_err(|error| {
                    failure(
                        &format!("attaching the {name} program to {}", cgroup.path.display()),
                        &error,
                    )
                })?;
            sys::obj_pin(link.as_fd(), &dir.join(name))
                .map_err(|error| failure(&format!("pinning the {name} link"), &error))?;
            links.push(link);
        }
        Ok(links)
    })();
    match result {
        Ok(_) => Ok(()),
        Err(error) => {
            remove(dir);
            Err(error)
        }
    }
}

/// Why an update did not happen: the pins are unusable (replace them), or the new policy could
/// not be made (keep the old one attached).
enum UpdateError {
    Broken(Failure),
    Failed(Failure),
}

/// The pinned objects of a policy that can be updated in place.
struct Pinned {
    info: OwnedFd,
    storage: OwnedFd,
    counters: OwnedFd,
    links: Vec<(&'static str, (&'static str, u32, u32), OwnedFd)>,
}

fn open_pinned(dir: &Path, cgroup: &Cgroup) -> Result<Pinned, Failure> {
    let get = |name: &str| {
        sys::obj_get(&dir.join(name))
            .map_err(|error| failure(&format!("opening {}", dir.join(name).display()), &error))
    };
    let info = get("info")?;
    read_info(info.as_fd()).map_err(Failure::new)?;
    let mut links = Vec::new();
    for (name, section) in LINKS {
        let link = get(name)?;
        let info = sys::link_info(link.as_fd())
            .map_err(|error| failure(&format!("reading the {name} link"), &error))?;
        if info.cgroup_id != cgroup.id {
            return Err(Failure::new(format!("the {name} link is defunct")));
        }
        links.push((name, section, link));
    }
    Ok(Pinned {
        info,
        storage: get("storage")?,
        counters: get("counters")?,
        links,
    })
}

fn update(
    dir: &Path,
    cgroup: &Cgroup,
    config: &Config<'_>,
    kernel: KernelDefaults,
    variables: &str,
) -> Result<(), UpdateError> {
    let pinned = open_pinned(dir, cgroup).map_err(UpdateError::Broken)?;
    // Everything new is made before the first link changes: a failure leaves the old policy.
    let [policy, ports, nets] =
        fresh_policy_maps(config, kernel, Some(dir)).map_err(UpdateError::Failed)?;
    let maps = Maps {
        policy,
        ports,
        nets,
        storage: pinned.storage,
        counters: pinned.counters,
        info: pinned.info,
    };
    let by_symbol = maps.by_symbol();
    let mut updates = Vec::new();
    for (name, section, link) in pinned.links {
        let program = load::load_program(section, &by_symbol).map_err(UpdateError::Failed)?;
        updates.push((name, link, program));
    }
    let failed = |what: String, error: std::io::Error| UpdateError::Failed(failure(&what, &error));
    for (name, link, program) in &updates {
        sys::link_update(link.as_fd(), program.as_fd())
            .map_err(|error| failed(format!("updating the {name} link"), error))?;
    }
    // The programs now read the new maps: pin those in place of the old ones.
    for (name, fd) in maps.pins().into_iter().take(3) {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        sys::obj_pin(fd, &path).map_err(|error| failed(format!("pinning {name}"), error))?;
    }
    write_info(maps.info.as_fd(), cgroup, variables).map_err(UpdateError::Failed)
}

/// Detaches the links now and removes the pins.
fn remove(dir: &Path) {
    for (name, _) in LINKS {
        if let Some(link) = open(&dir.join(name)) {
            let _ = sys::link_detach(link.as_fd());
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

fn list_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(base())
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.path())
                .filter(|path| {
                    path.is_dir()
                        && path
                            .file_name()
                            .and_then(|name| name.to_str())
                            .is_some_and(|name| name.starts_with("cgroup-"))
                })
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// Removes the policies whose recorded cgroup (path, id) `matches`; returns how many.
pub fn detach_where(matches: impl Fn(&Path, u64) -> bool) -> usize {
    let mut removed = 0;
    for dir in list_dirs() {
        let recorded = open(&dir.join("info")).and_then(|info| read_info(info.as_fd()).ok());
        if recorded.is_some_and(|(id, path, _)| matches(&path, id)) {
            remove(&dir);
            removed += 1;
        }
    }
    removed
}

/// Removes every policy, and our directory in bpffs; returns the cgroups they were recorded
/// for (the pin's directory when nothing is recorded).
pub fn detach_all() -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for dir in list_dirs() {
        let recorded = open(&dir.join("info")).and_then(|info| read_info(info.as_fd()).ok());
        remove(&dir);
        removed.push(recorded.map_or_else(|| dir.clone(), |(_, path, _)| path));
    }
    let _ = std::fs::remove_dir(base());
    removed
}

pub fn detach_stale() -> Result<usize, Failure> {
    let stale: Vec<Attached> = attached_policies()?
        .into_iter()
        .filter(|policy| policy.stale)
        .collect();
    for policy in &stale {
        remove(&policy.pin);
    }
    Ok(stale.len())
}

/// Every policy pinned under our bpffs directory.
pub fn attached_policies() -> Result<Vec<Attached>, Failure> {
    let cpus = sys::possible_cpus()
        .map_err(|error| Failure::new(format!("cannot count the possible CPUs: {error}")))?;
    Ok(list_dirs()
        .into_iter()
        .map(|dir| read_policy(&dir, cpus))
        .collect())
}

fn read_policy(dir: &Path, cpus: usize) -> Attached {
    let mut problems = Vec::new();
    let (cgroup_id, cgroup, variables) = match open(&dir.join("info")) {
        Some(info) => read_info(info.as_fd()).unwrap_or_else(|error| {
            problems.push(format!("info: {error}"));
            (0, PathBuf::new(), String::new())
        }),
        None => {
            problems.push("no info map".to_owned());
            (0, PathBuf::new(), String::new())
        }
    };
    let mut links = Vec::new();
    for (name, _) in LINKS {
        match open(&dir.join(name)).map(|link| sys::link_info(link.as_fd())) {
            Some(Ok(info)) => links.push((name.to_owned(), info.id, info.prog_id, info.cgroup_id)),
            Some(Err(error)) => problems.push(format!("{name} link: {error}")),
            None => problems.push(format!("no {name} link")),
        }
    }
    let mut counters = [0u64; COUNTERS];
    // Per-CPU u64s: the kernel writes one per possible CPU (a map of other values is not ours
    // to read into this buffer).
    if let Some(map) =
        open(&dir.join("counters")).filter(|map| sys::map_value_size(map.as_fd()).ok() == Some(8))
    {
        let mut values = vec![0u8; 8 * cpus];
        for (index, counter) in counters.iter_mut().enumerate() {
            if sys::map_lookup(map.as_fd(), &(index as u32).to_ne_bytes(), &mut values).is_ok() {
                *counter = values
                    .chunks_exact(8)
                    .map(|bytes| u64::from_ne_bytes(bytes.try_into().unwrap_or_default()))
                    .sum();
            }
        }
    }
    let live_id = std::fs::metadata(&cgroup)
        .ok()
        .map(|metadata| std::os::unix::fs::MetadataExt::ino(&metadata));
    let stale = links.len() != LINKS.len()
        || links
            .iter()
            .any(|(_, _, _, id)| *id == 0 || *id != cgroup_id)
        || live_id != Some(cgroup_id);
    Attached {
        pin: dir.to_owned(),
        cgroup,
        cgroup_id,
        variables,
        links,
        counters,
        stale,
        problems,
    }
}
