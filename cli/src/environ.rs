//! A process's environment when /proc/PID/environ no longer shows it.
//!
//! Programs that rewrite their process title (Redis, nginx, PostgreSQL: `setproctitle`) copy
//! the environment to the heap, point `environ` at the copy and blank the original block, which
//! is all /proc/PID/environ can show. The copy is found the way the dynamic linker finds the
//! variable: the `environ` symbol defined by the executable (a copy relocation) or else by libc,
//! read through /proc/PID/mem (the same ptrace rights `inspect` needs for pidfd_getfd).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Entries of the live `environ` array of `pid`, each `NAME=VALUE`.
pub fn from_memory(pid: i32, maps: &str, exe: Option<&str>) -> io::Result<Vec<Vec<u8>>> {
    let memory = File::open(format!("/proc/{pid}/mem"))?;
    let mut candidates: Vec<&str> = Vec::new();
    candidates.extend(exe);
    for (path, _) in objects(maps) {
        let name = path.rsplit('/').next().unwrap_or(path);
        if name.starts_with("libc.so") && !candidates.contains(&path) {
            candidates.push(path);
        }
    }
    for path in candidates {
        let Some(start) = objects(maps)
            .find(|(object, _)| *object == path)
            .map(|(_, start)| start)
        else {
            continue;
        };
        let Ok(image) = std::fs::read(format!("/proc/{pid}/root{path}")) else {
            continue;
        };
        let Some(elf) = Elf::new(&image) else {
            continue;
        };
        let (Some(symbol), Some(first_load)) = (
            ["environ", "__environ", "_environ"]
                .iter()
                .find_map(|name| elf.dynamic_symbol(name)),
            elf.first_load_address(),
        ) else {
            continue;
        };
        let base = start.wrapping_sub(first_load & !0xfff);
        let array = read_u64(&memory, base.wrapping_add(symbol))?;
        return read_entries(&memory, array);
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "no `environ` symbol in the executable or libc",
    ))
}

/// Mapped files with the start of their offset-0 mapping, in /proc/PID/maps order.
fn objects(maps: &str) -> impl Iterator<Item = (&str, u64)> {
    maps.lines().filter_map(|line| {
        let mut fields = line.splitn(6, char::is_whitespace);
        let range = fields.next()?;
        let offset = fields.nth(1)?;
        let path = fields.nth(2)?.trim_start();
        let start = u64::from_str_radix(range.split('-').next()?, 16).ok()?;
        (path.starts_with('/') && u64::from_str_radix(offset, 16).ok()? == 0)
            .then_some((path, start))
    })
}

fn read_u64(memory: &File, address: u64) -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    memory.read_exact_at(&mut bytes, address)?;
    Ok(u64::from_le_bytes(bytes))
}

/// The NULL-terminated array of C strings at `array`.
fn read_entries(memory: &File, array: u64) -> io::Result<Vec<Vec<u8>>> {
    const MAX_ENTRIES: u64 = 65536;
    const MAX_LENGTH: usize = 256 * 1024;
    let mut entries = Vec::new();
    if array == 0 {
        return Ok(entries);
    }
    for index in 0..MAX_ENTRIES {
        let pointer = read_u64(memory, array + index * 8)?;
        if pointer == 0 {
            break;
        }
        let mut entry = Vec::new();
        let mut chunk = [0u8; 256];
        while entry.len() < MAX_LENGTH {
            let at = pointer + entry.len() as u64;
            // A string may end right before an unmapped page: read up to the page end only.
            let room = (0x1000 - (at & 0xfff)) as usize;
            let want = room.min(chunk.len());
            let read = memory.read_at(&mut chunk[..want], at)?;
            if read == 0 {
                break;
            }
            match chunk[..read].iter().position(|&byte| byte == 0) {
                Some(end) => {
                    entry.extend_from_slice(&chunk[..end]);
                    break;
                }
                None => entry.extend_from_slice(&chunk[..read]),
            }
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// Just enough of a 64-bit little-endian ELF file: program headers and the dynamic symbols.
struct Elf<'a> {
    data: &'a [u8],
}

impl<'a> Elf<'a> {
    fn new(data: &'a [u8]) -> Option<Self> {
        (data.len() >= 64 && data[..4] == *b"\x7fELF" && data[4] == 2 && data[5] == 1)
            .then_some(Self { data })
    }

    fn bytes<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        self.data.get(at..at.checked_add(N)?)?.try_into().ok()
    }

    fn u16(&self, at: usize) -> Option<usize> {
        self.bytes(at).map(|b| usize::from(u16::from_le_bytes(b)))
    }

    fn u32(&self, at: usize) -> Option<u32> {
        self.bytes(at).map(u32::from_le_bytes)
    }

    fn u64(&self, at: usize) -> Option<u64> {
        self.bytes(at).map(u64::from_le_bytes)
    }

    fn offset(&self, at: usize) -> Option<usize> {
        usize::try_from(self.u64(at)?).ok()
    }

    /// p_vaddr of the first PT_LOAD header.
    fn first_load_address(&self) -> Option<u64> {
        const PT_LOAD: u32 = 1;
        let (table, size, count) = (self.offset(32)?, self.u16(54)?, self.u16(56)?);
        (0..count)
            .map(|index| table + index * size)
            .find(|&header| self.u32(header) == Some(PT_LOAD))
            .and_then(|header| self.u64(header + 16))
    }

    /// st_value of a defined symbol of .dynsym.
    fn dynamic_symbol(&self, name: &str) -> Option<u64> {
        const SHT_DYNSYM: u32 = 11;
        let (table, size, count) = (self.offset(40)?, self.u16(58)?, self.u16(60)?);
        let section = |index: usize| table.checked_add(index.checked_mul(size)?);
        let dynsym = (0..count)
            .filter_map(section)
            .find(|&header| self.u32(header + 4) == Some(SHT_DYNSYM))?;
        let strings = section(usize::try_from(self.u32(dynsym + 40)?).ok()?)?;
        let (strings_at, strings_size) = (self.offset(strings + 24)?, self.offset(strings + 32)?);
        let names = self
            .data
            .get(strings_at..strings_at.checked_add(strings_size)?)?;
        let (symbols_at, symbols_size) = (self.offset(dynsym + 24)?, self.offset(dynsym + 32)?);
        (0..symbols_size / 24)
            .map(|index| symbols_at + index * 24)
            .find(|&symbol| {
                let defined = self.u16(symbol + 6).is_some_and(|section| section != 0);
                let name_at = self.u32(symbol).and_then(|at| usize::try_from(at).ok());
                defined
                    && name_at.is_some_and(|at| {
                        names.get(at..).is_some_and(|rest| {
                            rest.split(|&byte| byte == 0).next() == Some(name.as_bytes())
                        })
                    })
            })
            .and_then(|symbol| self.u64(symbol + 8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libc_defines_environ() {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let (libc, _) = objects(&maps)
            .find(|(path, _)| path.contains("libc.so"))
            .expect("this test binary is linked with glibc");
        let image = std::fs::read(libc).unwrap();
        let elf = Elf::new(&image).unwrap();
        assert!(elf.dynamic_symbol("environ").is_some());
        assert!(elf.dynamic_symbol("no_such_symbol_here").is_none());
        assert_eq!(elf.first_load_address(), Some(0));
    }

    #[test]
    fn own_environment_read_back_through_proc_mem() {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let entries = from_memory(std::process::id() as i32, &maps, exe.to_str()).unwrap();
        let path = std::env::var("PATH").unwrap();
        assert!(
            entries.contains(&format!("PATH={path}").into_bytes()),
            "{} entries",
            entries.len()
        );
    }
}
