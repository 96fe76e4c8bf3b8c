//! What the library reads about its process at load — its environment (one pass over
//! `environ`), argv[0], whether it runs in secure-execution mode, whether it was loaded with
//! the program or dlopen()ed later, its own path — and the one change it ever makes to the
//! process: taking itself out of LD_PRELOAD for children (KEEPALIVE_INHERIT=no).
//!
//! Only the loading thread calls these, before `main` (or inside a dlopen).

use core::ffi::{c_char, c_int, c_void};

use keepalive_config::text::{Verbatim, split};
use keepalive_config::variables::{NAMES, VARIABLES};
use keepalive_config::{LogLevel, preload_list};

use crate::{log, real, sys};

unsafe extern "C" {
    /// The environment, as glibc and musl keep it.
    static mut environ: *mut *mut c_char;
    /// argv[0], kept by glibc and musl alike.
    static program_invocation_name: *const c_char;
}

/// The bytes of a C string, up to its NUL: a loop of our own, with volatile reads so that the
/// compiler does not turn it back into a call of strlen (one import less for ld.so to bind at
/// every process start).
///
/// # Safety
/// `text` is a valid NUL-terminated string that lives as long as the process.
unsafe fn c_bytes(text: *const c_char) -> &'static [u8] {
    let mut length = 0;
    // SAFETY: guaranteed by the caller: every byte up to the NUL is readable.
    while unsafe { text.add(length).read_volatile() } != 0 {
        length += 1;
    }
    // SAFETY: `length` readable bytes at `text`, alive for the process.
    unsafe { core::slice::from_raw_parts(text.cast(), length) }
}

/// Whether the C library has set `environ` yet (not in a program's .preinit_array).
pub fn environment_set() -> bool {
    // SAFETY: a read of the pointer itself; the C library sets it once, before any
    // constructor runs.
    !unsafe { environ }.is_null()
}

/// The environment's entries, `NAME=value`, with their index in `environ`.
fn entries() -> impl Iterator<Item = (usize, &'static [u8])> {
    // SAFETY: read at load by the one loading thread; environ is null or a null-terminated
    // array of NUL-terminated strings.
    let table = unsafe { environ };
    let mut index = 0;
    core::iter::from_fn(move || {
        if table.is_null() {
            return None;
        }
        // SAFETY: within the null-terminated array (we stop at its null).
        let entry = unsafe { *table.add(index) };
        if entry.is_null() {
            return None;
        }
        index += 1;
        // SAFETY: an environment string.
        Some((index - 1, unsafe { c_bytes(entry) }))
    })
}

/// The value of `name=` in one environment entry.
fn value_of<'e>(entry: &'e [u8], name: &[u8]) -> Option<&'e [u8]> {
    let rest = entry.strip_prefix(name)?;
    rest.strip_prefix(b"=")
}

/// Every variable the library reads, found in one pass over the environment.
pub struct Environment {
    values: [Option<&'static [u8]>; VARIABLES.len()],
}

impl Environment {
    pub fn read() -> Self {
        let mut values = [None; VARIABLES.len()];
        for (_, entry) in entries().filter(|(_, entry)| entry.starts_with(b"KEEP")) {
            for (slot, name) in values.iter_mut().zip(split(NAMES.as_bytes(), b'|')) {
                if let Some(value) = value_of(entry, name) {
                    // The first entry wins, as getenv's does.
                    slot.get_or_insert(value);
                }
            }
        }
        Self { values }
    }

    /// The value of the variable at `index` in keepalive_config's table.
    pub fn get(&self, index: usize) -> Option<&'static [u8]> {
        self.values.get(index).copied().flatten()
    }
}

/// True in secure-execution mode (setuid, setgid, file capabilities).
pub fn secure_execution() -> bool {
    // SAFETY: getauxval has no preconditions.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// argv[0]'s bytes, UTF-8 or not.
pub fn argv0() -> Option<&'static [u8]> {
    // SAFETY: set by the C library before any constructor runs; points to argv[0], which
    // lives as long as the process, or is null.
    let name = unsafe { program_invocation_name };
    if name.is_null() {
        return None;
    }
    // SAFETY: non-null, NUL-terminated argv string.
    Some(unsafe { c_bytes(name) })
}

/// Where an address lies among the loaded objects: the object's position in ld.so's list and
/// its path.
struct Located {
    index: usize,
    name: *const c_char,
}

fn locate(address: usize) -> Option<Located> {
    struct Search {
        address: usize,
        index: usize,
        found: Option<Located>,
    }
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid info and our own data pointer.
        let (info, search) = unsafe { (&*info, &mut *data.cast::<Search>()) };
        let headers: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
            &[]
        } else {
            // SAFETY: ld.so's program headers for this object, dlpi_phnum of them.
            unsafe { core::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
        };
        let holds = headers.iter().any(|header| {
            let start = (info.dlpi_addr as usize).wrapping_add(header.p_vaddr as usize);
            header.p_type == libc::PT_LOAD
                && start <= search.address
                && search.address - start < header.p_memsz as usize
        });
        if holds {
            search.found = Some(Located {
                index: search.index,
                name: info.dlpi_name,
            });
            return 1;
        }
        search.index += 1;
        0
    }
    let mut search = Search {
        address,
        index: 0,
        found: None,
    };
    // SAFETY: the callback only reads what ld.so passes and writes `search`.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut search).cast()) };
    search.found
}

/// Whether the library was loaded with the program (LD_PRELOAD, /etc/ld.so.preload) rather
/// than dlopen()ed into a running one: ld.so lists the objects loaded at start in order, the
/// executable, its preloads, then their dependencies, the C library among them; dlopen
/// appends. So a preload comes before the C library that defines `socket`.
fn loaded_at_start() -> bool {
    let ours = locate(loaded_at_start as *const () as usize);
    let libc = locate(real::socket() as usize);
    match (ours, libc) {
        (Some(ours), Some(libc)) => ours.index < libc.index,
        // Cannot tell: behave as a preload (the common case).
        _ => true,
    }
}

/// [`loaded_at_start`], asked at most once per load and only where the answer matters (it
/// walks every loaded object): INHERIT=no, STRICT, and whether memory may be mapped.
pub struct AtStart(Option<bool>);

impl AtStart {
    pub const fn unknown() -> Self {
        Self(None)
    }

    pub fn get(&mut self) -> bool {
        *self.0.get_or_insert_with(loaded_at_start)
    }
}

/// The path this library was loaded from, as ld.so recorded it (bytes, as ld.so reads
/// LD_PRELOAD).
fn own_library_path() -> Option<&'static [u8]> {
    let name = locate(own_library_path as *const () as usize)?.name;
    if name.is_null() {
        return None;
    }
    // SAFETY: ld.so's NUL-terminated path of a loaded object, alive as long as it is loaded
    // (a preload: the whole process).
    Some(unsafe { c_bytes(name) })
}

/// KEEPALIVE_INHERIT=no: takes this library out of LD_PRELOAD so that programs this process
/// execs start without it (it stays loaded here). Only at start, before the program's own
/// threads exist: the entry of `environ` is replaced (or removed) in place, as putenv and
/// unsetenv would. Every LD_PRELOAD entry, should there be several: getenv reads the first,
/// glibc's ld.so the last.
pub fn leave_out_of_children(log_level: LogLevel) {
    let Some(library) = own_library_path() else {
        return;
    };
    let mut from = 0;
    while let Some((index, list)) = entries()
        .skip(from)
        .find_map(|(index, entry)| Some((index, value_of(entry, b"LD_PRELOAD")?)))
    {
        let removed = leave_out_of_entry(index, list, library, log_level);
        // A removed entry's successor has moved into its place.
        from = if removed { index } else { index + 1 };
    }
}

/// One LD_PRELOAD entry without `library`; whether the entry was removed (nothing left).
fn leave_out_of_entry(index: usize, list: &[u8], library: &[u8], log_level: LogLevel) -> bool {
    const NAME: &[u8] = b"LD_PRELOAD=";
    // The entry without us is never longer: NAME, the list's size and a NUL, mapped once at
    // load and kept (the environment points into it from now on).
    let size = NAME.len() + list.len() + 1;
    let Some(memory) = sys::map_memory(size) else {
        return false;
    };
    // SAFETY: a fresh private mapping of `size` zeroed bytes, owned by nobody else and never
    // unmapped.
    let entry = unsafe { core::slice::from_raw_parts_mut(memory, size) };
    let Some((name, rest)) = entry.split_at_mut_checked(NAME.len()) else {
        return false;
    };
    name.copy_from_slice(NAME);
    let Some(remaining) = rest
        .get_mut(..list.len())
        .and_then(|out| preload_list::without(list, library, out))
    else {
        return false;
    };
    let removed = remaining.is_empty();
    if removed {
        remove_entry(index);
    } else {
        // SAFETY: `index` is an LD_PRELOAD entry of `environ`; the new string is
        // NUL-terminated (the mapping is zeroed past what `without` wrote) and lives forever.
        unsafe { *environ.add(index) = memory.cast() };
    }
    log::event(log_level, LogLevel::Info, |line| {
        line.put("KEEPALIVE_INHERIT=no: LD_PRELOAD for children is now \"")
            .show(&Verbatim(remaining))
            .put("\"");
    });
    removed
}

/// Removes entry `index` of `environ`, moving the later ones (and the null) down.
fn remove_entry(index: usize) {
    let mut at = index;
    loop {
        // SAFETY: `at` and `at + 1` lie within the null-terminated array: we stop once the
        // null has been moved.
        unsafe {
            let next = *environ.add(at + 1);
            *environ.add(at) = next;
            if next.is_null() {
                return;
            }
        }
        at += 1;
    }
}
