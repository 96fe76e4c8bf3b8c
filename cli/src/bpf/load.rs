//! Creating the maps and loading the two programs of the embedded object (bpf/keepalive.bpf.c,
//! compiled by build.rs) with their map references pointed at the maps.

use std::collections::HashMap;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::elf::{Elf, patch_map_fd};
use super::layout::{COUNTERS, KpPolicy, KpSock, NET_KEY_SIZE, PORT_WORDS};
use super::sys::{self, MapSpec, ProgSpec};
use crate::Failure;

/// The object build.rs compiled.
pub static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/keepalive.bpf.o"));

/// The maps, by the symbol names the programs use.
pub const POLICY: &str = "kp_policy_map";
pub const PORTS: &str = "kp_ports";
pub const NETS: &str = "kp_nets";
pub const STORAGE: &str = "kp_storage";
pub const COUNTERS_MAP: &str = "kp_counters";

/// The program sections and the attach type of each.
pub const SOCKOPS: (&str, u32, u32) = ("sockops", sys::PROG_SOCK_OPS, sys::ATTACH_CGROUP_SOCK_OPS);
pub const SETSOCKOPT: (&str, u32, u32) = (
    "cgroup/setsockopt",
    sys::PROG_CGROUP_SOCKOPT,
    sys::ATTACH_CGROUP_SETSOCKOPT,
);

pub fn failure(what: &str, error: &std::io::Error) -> Failure {
    let hint = match error.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            " (loading eBPF programs needs root: CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN)"
        }
        _ => "",
    };
    Failure::new(format!("{what}: {error}{hint}"))
}

/// Checks that the object's maps have the sizes the loader writes (bpf/keepalive.h and
/// layout.rs agree).
pub fn check_layout() -> Result<(), Failure> {
    let elf = Elf::parse(OBJECT).map_err(|error| Failure::new(error.to_string()))?;
    for (name, size) in [
        (POLICY, size_of::<KpPolicy>()),
        (STORAGE, size_of::<KpSock>()),
    ] {
        let symbol = elf
            .symbol(name)
            .map_err(|error| Failure::new(error.to_string()))?;
        if symbol.size != size as u64 {
            return Err(Failure::new(format!(
                "the embedded eBPF object's {name} is {} bytes, the loader writes {size}: \
                 bpf/keepalive.h and cli/src/bpf/layout.rs disagree",
                symbol.size
            )));
        }
    }
    Ok(())
}

pub fn create_policy_map() -> Result<OwnedFd, Failure> {
    array(POLICY, "kp_policy", size_of::<KpPolicy>() as u32, 1)
}

pub fn create_ports_map() -> Result<OwnedFd, Failure> {
    array(PORTS, "kp_ports", 8, PORT_WORDS as u32)
}

pub fn create_counters_map() -> Result<OwnedFd, Failure> {
    sys::map_create(&MapSpec {
        kind: sys::MAP_PERCPU_ARRAY,
        key_size: 4,
        value_size: 8,
        max_entries: COUNTERS as u32,
        flags: 0,
        name: "kp_counters",
        btf: None,
    })
    .map_err(|error| failure(&format!("creating the map {COUNTERS_MAP}"), &error))
}

pub fn array(symbol: &str, name: &str, value_size: u32, entries: u32) -> Result<OwnedFd, Failure> {
    sys::map_create(&MapSpec {
        kind: sys::MAP_ARRAY,
        key_size: 4,
        value_size,
        max_entries: entries,
        flags: 0,
        name,
        btf: None,
    })
    .map_err(|error| failure(&format!("creating the map {symbol}"), &error))
}

pub fn create_nets_map(entries: usize) -> Result<OwnedFd, Failure> {
    sys::map_create(&MapSpec {
        kind: sys::MAP_LPM_TRIE,
        key_size: NET_KEY_SIZE as u32,
        value_size: 4,
        max_entries: u32::try_from(entries.max(1)).unwrap_or(u32::MAX),
        flags: sys::F_NO_PREALLOC,
        name: "kp_nets",
        btf: None,
    })
    .map_err(|error| failure(&format!("creating the map {NETS}"), &error))
}

/// The per-socket storage. The kernel wants BTF for its key and value: an `int` and an array of
/// `int` as long as struct kp_sock, described by a hand-made BTF blob.
pub fn create_storage_map() -> Result<OwnedFd, Failure> {
    let blob = storage_btf((size_of::<KpSock>() / 4) as u32);
    let mut log = vec![0u8; 4096];
    let btf = sys::btf_load(&blob, &mut log).map_err(|error| {
        let log = String::from_utf8_lossy(&log);
        failure(
            &format!(
                "loading the BTF of {STORAGE} ({})",
                log.trim_end_matches('\0').trim()
            ),
            &error,
        )
    })?;
    sys::map_create(&MapSpec {
        kind: sys::MAP_SK_STORAGE,
        key_size: 4,
        value_size: size_of::<KpSock>() as u32,
        max_entries: 0,
        // Accepted sockets start with their listener's copy: what the program set on the
        // listener counts as set on them.
        flags: sys::F_NO_PREALLOC | sys::F_CLONE,
        name: "kp_storage",
        btf: Some((btf.as_fd(), 1, 2)),
    })
    .map_err(|error| failure(&format!("creating the map {STORAGE}"), &error))
}

/// BTF: [1] int (32-bit signed), [2] int[elements].
pub fn storage_btf(elements: u32) -> Vec<u8> {
    const BTF_KIND_INT: u32 = 1;
    const BTF_KIND_ARRAY: u32 = 3;
    const BTF_INT_SIGNED: u32 = 1;
    let strings = b"\0int\0";
    let mut types = Vec::new();
    let mut push = |value: u32| types.extend_from_slice(&value.to_le_bytes());
    // [1] INT "int": name_off, info (kind), size, then the int encoding (signed, 32 bits).
    push(1);
    push(BTF_KIND_INT << 24);
    push(4);
    push((BTF_INT_SIGNED << 24) | 32);
    // [2] ARRAY: no name, info (kind), 0, then element type, index type, count.
    push(0);
    push(BTF_KIND_ARRAY << 24);
    push(0);
    push(1);
    push(1);
    push(elements);
    let mut blob = Vec::new();
    blob.extend_from_slice(&0xeb9f_u16.to_le_bytes()); // magic
    blob.push(1); // version
    blob.push(0); // flags
    blob.extend_from_slice(&24u32.to_le_bytes()); // header length
    blob.extend_from_slice(&0u32.to_le_bytes()); // type offset
    blob.extend_from_slice(&(types.len() as u32).to_le_bytes());
    blob.extend_from_slice(&(types.len() as u32).to_le_bytes()); // string offset
    blob.extend_from_slice(&(strings.len() as u32).to_le_bytes());
    blob.extend_from_slice(&types);
    blob.extend_from_slice(strings);
    blob
}

/// Loads the program of `section` with its map references resolved through `maps`.
pub fn load_program(
    section: (&str, u32, u32),
    maps: &HashMap<&str, BorrowedFd<'_>>,
) -> Result<OwnedFd, Failure> {
    let (name, kind, attach_type) = section;
    let elf = Elf::parse(OBJECT).map_err(|error| Failure::new(error.to_string()))?;
    let malformed = |error: super::elf::ElfError| Failure::new(error.to_string());
    let (index, code) = elf
        .section(name)
        .ok_or_else(|| Failure::new(format!("the embedded eBPF object has no section {name}")))?;
    let mut instructions = code.data.to_vec();
    for reference in elf.map_references(index).map_err(malformed)? {
        let fd = maps.get(reference.symbol).ok_or_else(|| {
            Failure::new(format!(
                "the program {name} refers to {}, which the loader does not create",
                reference.symbol
            ))
        })?;
        patch_map_fd(&mut instructions, reference.offset, fd.as_raw_fd()).map_err(malformed)?;
    }
    let license = elf
        .section("license")
        .map(|(_, section)| section.data)
        .unwrap_or(b"GPL\0");
    let license = std::ffi::CStr::from_bytes_until_nul(license)
        .map_err(|_| Failure::new("the embedded eBPF object's license is not terminated"))?;
    let spec = ProgSpec {
        kind,
        expected_attach_type: attach_type,
        instructions: &instructions,
        license,
        name: if kind == sys::PROG_SOCK_OPS {
            "kp_sockops"
        } else {
            "kp_setsockopt"
        },
    };
    sys::prog_load(&spec, &mut []).or_else(|_| {
        // Again with the verifier's log, to say why.
        let mut log = vec![0u8; 1 << 20];
        sys::prog_load(&spec, &mut log).map_err(|error| {
            let log = String::from_utf8_lossy(&log);
            let log = log.trim_end_matches('\0').trim();
            let tail: Vec<&str> = log.lines().rev().take(12).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            failure(
                &format!(
                    "loading the eBPF program {name} (the kernel is too old, or rejects it){}",
                    if tail.is_empty() {
                        String::new()
                    } else {
                        format!("; verifier: {}", tail.join(" | "))
                    }
                ),
                &error,
            )
        })
    })
}
