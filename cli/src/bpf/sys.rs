//! The `bpf()` system call, the few commands the loader needs, with the layouts of
//! include/uapi/linux/bpf.h (Linux 6.1's, checked against its offsets). Every `unsafe` block of
//! the eBPF loader lives here.

use std::ffi::CString;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

// enum bpf_cmd
const BPF_MAP_CREATE: u32 = 0;
const BPF_MAP_LOOKUP_ELEM: u32 = 1;
const BPF_MAP_UPDATE_ELEM: u32 = 2;
const BPF_PROG_LOAD: u32 = 5;
const BPF_OBJ_PIN: u32 = 6;
const BPF_OBJ_GET: u32 = 7;
const BPF_OBJ_GET_INFO_BY_FD: u32 = 15;
const BPF_BTF_LOAD: u32 = 18;
const BPF_LINK_CREATE: u32 = 28;
const BPF_LINK_UPDATE: u32 = 29;
const BPF_LINK_DETACH: u32 = 34;

// enum bpf_map_type
pub const MAP_ARRAY: u32 = 2;
pub const MAP_PERCPU_ARRAY: u32 = 6;
pub const MAP_LPM_TRIE: u32 = 11;
pub const MAP_SK_STORAGE: u32 = 24;
// map flags
pub const F_NO_PREALLOC: u32 = 1;
pub const F_CLONE: u32 = 1 << 9;

// enum bpf_prog_type and enum bpf_attach_type
pub const PROG_SOCK_OPS: u32 = 13;
pub const PROG_CGROUP_SOCKOPT: u32 = 25;
pub const ATTACH_CGROUP_SOCK_OPS: u32 = 3;
pub const ATTACH_CGROUP_SETSOCKOPT: u32 = 22;

/// The whole `union bpf_attr` is 144 bytes on 6.1; the kernel accepts a shorter one as long as
/// what it does not know is zero, and zero-fills what we do not pass.
const ATTR_SIZE: usize = 144;

#[repr(C, align(8))]
struct Attr([u8; ATTR_SIZE]);

impl Attr {
    fn new() -> Self {
        Self([0; ATTR_SIZE])
    }

    fn u32(&mut self, offset: usize, value: u32) -> &mut Self {
        self.0[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
        self
    }

    fn u64(&mut self, offset: usize, value: u64) -> &mut Self {
        self.0[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
        self
    }

    fn bytes(&mut self, offset: usize, value: &[u8]) -> &mut Self {
        self.0[offset..offset + value.len()].copy_from_slice(value);
        self
    }
}

fn bpf(command: u32, attr: &mut Attr) -> io::Result<i64> {
    // SAFETY: attr is a valid, writable, 8-aligned buffer of ATTR_SIZE bytes laid out as the
    // command's part of union bpf_attr; every pointer stored in it points to memory that lives
    // across the call (the callers keep it borrowed).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command as libc::c_long,
            attr.0.as_mut_ptr(),
            ATTR_SIZE as libc::c_long,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn fd_result(ret: io::Result<i64>) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(ret?).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn pointer<T: ?Sized>(value: &T) -> u64 {
    (value as *const T).cast::<u8>() as usize as u64
}

pub struct MapSpec<'a> {
    pub kind: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
    pub name: &'a str,
    /// (BTF fd, key type id, value type id)
    pub btf: Option<(BorrowedFd<'a>, u32, u32)>,
}

pub fn map_create(spec: &MapSpec<'_>) -> io::Result<OwnedFd> {
    let mut attr = Attr::new();
    attr.u32(0, spec.kind)
        .u32(4, spec.key_size)
        .u32(8, spec.value_size)
        .u32(12, spec.max_entries)
        .u32(16, spec.flags)
        .bytes(28, &object_name(spec.name));
    if let Some((btf, key, value)) = spec.btf {
        attr.u32(48, btf.as_raw_fd() as u32)
            .u32(52, key)
            .u32(56, value);
    }
    fd_result(bpf(BPF_MAP_CREATE, &mut attr))
}

/// BPF_OBJ_NAME_LEN is 16 with the terminating NUL.
fn object_name(name: &str) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    for (slot, byte) in bytes.iter_mut().zip(name.bytes().take(15)) {
        *slot = byte;
    }
    bytes
}

fn elem(map: BorrowedFd<'_>, key: &[u8], value: u64, flags: u64) -> Attr {
    let mut attr = Attr::new();
    attr.u32(0, map.as_raw_fd() as u32)
        .u64(8, pointer(key))
        .u64(16, value)
        .u64(24, flags);
    attr
}

/// `value` must be as long as the map's value (times the possible CPUs for a per-CPU map).
pub fn map_update(map: BorrowedFd<'_>, key: &[u8], value: &[u8]) -> io::Result<()> {
    bpf(BPF_MAP_UPDATE_ELEM, &mut elem(map, key, pointer(value), 0)).map(drop)
}

/// BPF_OBJ_GET_INFO_BY_FD: the kernel's `struct bpf_*_info` of a map, program or link, as much
/// of it as `info` holds.
fn object_info(object: BorrowedFd<'_>, info: &mut [u8]) -> io::Result<()> {
    let mut attr = Attr::new();
    attr.u32(0, object.as_raw_fd() as u32)
        .u32(4, info.len() as u32)
        .u64(8, info.as_mut_ptr() as usize as u64);
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).map(drop)
}

/// The size of one value of `map` (`struct bpf_map_info`'s value_size).
pub fn map_value_size(map: BorrowedFd<'_>) -> io::Result<u32> {
    let mut info = [0u8; 80];
    object_info(map, &mut info)?;
    Ok(u32::from_ne_bytes(
        info[12..16].try_into().unwrap_or([0; 4]),
    ))
}

/// Looks `key` up. The kernel writes a whole value (per-CPU maps: one per possible CPU) into
/// `value`: the caller sizes it for the map.
pub fn map_lookup(map: BorrowedFd<'_>, key: &[u8], value: &mut [u8]) -> io::Result<()> {
    let out = value.as_mut_ptr() as usize as u64;
    bpf(BPF_MAP_LOOKUP_ELEM, &mut elem(map, key, out, 0)).map(drop)
}

pub fn btf_load(blob: &[u8], log: &mut [u8]) -> io::Result<OwnedFd> {
    let mut attr = Attr::new();
    attr.u64(0, pointer(blob))
        .u64(8, log.as_mut_ptr() as usize as u64)
        .u32(16, blob.len() as u32)
        .u32(20, log.len() as u32)
        .u32(24, u32::from(!log.is_empty()));
    fd_result(bpf(BPF_BTF_LOAD, &mut attr))
}

pub struct ProgSpec<'a> {
    pub kind: u32,
    pub expected_attach_type: u32,
    pub instructions: &'a [u8],
    pub license: &'a std::ffi::CStr,
    pub name: &'a str,
}

/// Loads a program; on a verifier rejection the error carries the verifier's log in `log`.
pub fn prog_load(spec: &ProgSpec<'_>, log: &mut [u8]) -> io::Result<OwnedFd> {
    let mut attr = Attr::new();
    attr.u32(0, spec.kind)
        .u32(4, (spec.instructions.len() / 8) as u32)
        .u64(8, pointer(spec.instructions))
        .u64(16, pointer(spec.license.to_bytes_with_nul()))
        .u32(24, u32::from(!log.is_empty()))
        .u32(28, log.len() as u32)
        .u64(32, log.as_mut_ptr() as usize as u64)
        .bytes(48, &object_name(spec.name))
        .u32(68, spec.expected_attach_type);
    fd_result(bpf(BPF_PROG_LOAD, &mut attr))
}

fn path_c(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

pub fn obj_pin(object: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let path = path_c(path)?;
    let mut attr = Attr::new();
    attr.u64(0, pointer(path.as_bytes_with_nul()))
        .u32(8, object.as_raw_fd() as u32);
    bpf(BPF_OBJ_PIN, &mut attr).map(drop)
}

pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let path = path_c(path)?;
    let mut attr = Attr::new();
    attr.u64(0, pointer(path.as_bytes_with_nul()));
    fd_result(bpf(BPF_OBJ_GET, &mut attr))
}

/// A cgroup link: attaches `prog` to the cgroup open as `cgroup` (multi-attach).
pub fn link_create(
    prog: BorrowedFd<'_>,
    cgroup: BorrowedFd<'_>,
    attach_type: u32,
) -> io::Result<OwnedFd> {
    let mut attr = Attr::new();
    attr.u32(0, prog.as_raw_fd() as u32)
        .u32(4, cgroup.as_raw_fd() as u32)
        .u32(8, attach_type);
    fd_result(bpf(BPF_LINK_CREATE, &mut attr))
}

/// Replaces a link's program in place (the attachment never lapses).
pub fn link_update(link: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = Attr::new();
    attr.u32(0, link.as_raw_fd() as u32)
        .u32(4, prog.as_raw_fd() as u32);
    bpf(BPF_LINK_UPDATE, &mut attr).map(drop)
}

/// Detaches a link now, whoever else holds it open.
pub fn link_detach(link: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = Attr::new();
    attr.u32(0, link.as_raw_fd() as u32);
    bpf(BPF_LINK_DETACH, &mut attr).map(drop)
}

/// struct bpf_link_info for a cgroup link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkInfo {
    pub link_type: u32,
    pub id: u32,
    pub prog_id: u32,
    /// 0 once the cgroup is gone (or the link detached): the link is defunct.
    pub cgroup_id: u64,
    pub attach_type: u32,
}

pub fn link_info(link: BorrowedFd<'_>) -> io::Result<LinkInfo> {
    let mut info = [0u8; 48];
    object_info(link, &mut info)?;
    let u32_at = |at: usize| u32::from_ne_bytes(info[at..at + 4].try_into().unwrap_or([0; 4]));
    Ok(LinkInfo {
        link_type: u32_at(0),
        id: u32_at(4),
        prog_id: u32_at(8),
        cgroup_id: u64::from_ne_bytes(info[16..24].try_into().unwrap_or([0; 8])),
        attach_type: u32_at(24),
    })
}

/// statfs(2)'s f_type of `path`.
pub fn fs_type(path: &Path) -> io::Result<i64> {
    let path = path_c(path)?;
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: path is NUL-terminated; stat is valid for writes of a struct statfs.
    let ret = unsafe { libc::statfs(path.as_ptr(), stat.as_mut_ptr()) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statfs succeeded and filled the struct (zeroed before).
    #[allow(clippy::unnecessary_cast)] // f_type is not i64 on every target
    Ok(unsafe { stat.assume_init() }.f_type as i64)
}

/// mount -t bpf bpf PATH
pub fn mount_bpffs(path: &Path) -> io::Result<()> {
    let target = path_c(path)?;
    let source = c"bpf";
    // SAFETY: every pointer is a NUL-terminated string that lives across the call; no data.
    let ret = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            source.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Moves this (single-threaded) process into the mount namespace of `pid`.
pub fn enter_mount_namespace_of(pid: i32) -> io::Result<()> {
    let namespace = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))?;
    // SAFETY: setns takes a descriptor we hold open and a flag; the command has no other thread.
    let ret = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNS) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// The number of possible CPUs, which sizes a per-CPU map's value.
pub fn possible_cpus() -> io::Result<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let mut count = 0;
    for part in text.trim().split(',') {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let parse = |text: &str| {
            text.parse::<usize>()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad cpu list"))
        };
        count += parse(last)? - parse(first)? + 1;
    }
    Ok(count)
}

/// Bytes of a plain-old-data value, for map keys and values.
pub fn bytes_of<T: Copy>(value: &T) -> &[u8] {
    // SAFETY: T is Copy plain data (the callers pass #[repr(C)] structs of integers without
    // padding, or integers); any initialised value may be viewed as bytes for its size.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}
