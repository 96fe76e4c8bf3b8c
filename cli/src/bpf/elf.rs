//! Just enough of a 64-bit little-endian ELF relocatable object (what `clang -target bpf -c`
//! writes) to load its programs: sections by name, symbols, and the map relocations of a
//! program section.

use std::fmt;

const SHT_SYMTAB: u32 = 2;
const SHT_REL: u32 = 9;
const R_BPF_64_64: u32 = 1;

#[derive(Debug, PartialEq, Eq)]
pub struct ElfError(pub String);

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the embedded eBPF object is malformed: {}", self.0)
    }
}

fn bad(what: impl Into<String>) -> ElfError {
    ElfError(what.into())
}

pub struct Elf<'a> {
    sections: Vec<Section<'a>>,
}

#[derive(Clone, Copy, Debug)]
pub struct Section<'a> {
    pub name: &'a str,
    pub kind: u32,
    pub link: u32,
    pub info: u32,
    pub data: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Symbol<'a> {
    pub name: &'a str,
    pub section: u16,
    pub value: u64,
    pub size: u64,
}

/// A 64-bit immediate load (`ld_imm64`) at `offset` in a program section that must receive the
/// descriptor of the map named `symbol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapReference<'a> {
    pub offset: usize,
    pub symbol: &'a str,
}

fn read<const N: usize>(data: &[u8], at: usize) -> Result<[u8; N], ElfError> {
    data.get(at..at.checked_add(N).ok_or_else(|| bad("offset overflow"))?)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| bad(format!("truncated at byte {at}")))
}

fn u16_at(data: &[u8], at: usize) -> Result<u16, ElfError> {
    read(data, at).map(u16::from_le_bytes)
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, ElfError> {
    read(data, at).map(u32::from_le_bytes)
}

fn u64_at(data: &[u8], at: usize) -> Result<u64, ElfError> {
    read(data, at).map(u64::from_le_bytes)
}

fn usize_at(data: &[u8], at: usize) -> Result<usize, ElfError> {
    usize::try_from(u64_at(data, at)?).map_err(|_| bad("offset beyond memory"))
}

fn name_at(table: &[u8], at: u32) -> Result<&str, ElfError> {
    let rest = table
        .get(at as usize..)
        .ok_or_else(|| bad("name beyond its string table"))?;
    let end = rest
        .iter()
        .position(|&byte| byte == 0)
        .ok_or_else(|| bad("unterminated name"))?;
    std::str::from_utf8(&rest[..end]).map_err(|_| bad("name is not UTF-8"))
}

impl<'a> Elf<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, ElfError> {
        const EM_BPF: u16 = 247;
        if data.get(..4) != Some(b"\x7fELF") || data.get(4) != Some(&2) || data.get(5) != Some(&1) {
            return Err(bad("not a 64-bit little-endian ELF file"));
        }
        if u16_at(data, 18)? != EM_BPF {
            return Err(bad("not an eBPF object (e_machine is not EM_BPF)"));
        }
        let table = usize_at(data, 40)?;
        let entry_size = usize::from(u16_at(data, 58)?);
        let count = usize::from(u16_at(data, 60)?);
        let names_index = usize::from(u16_at(data, 62)?);
        if entry_size < 64 {
            return Err(bad("section header entries too small"));
        }
        let header = |index: usize| -> Result<(u32, u32, usize, usize, u32, u32), ElfError> {
            let at = table + index * entry_size;
            Ok((
                u32_at(data, at)?,
                u32_at(data, at + 4)?,
                usize_at(data, at + 24)?,
                usize_at(data, at + 32)?,
                u32_at(data, at + 40)?,
                u32_at(data, at + 44)?,
            ))
        };
        let contents = |offset: usize, size: usize, kind: u32| -> Result<&'a [u8], ElfError> {
            const SHT_NOBITS: u32 = 8;
            if kind == SHT_NOBITS {
                return Ok(&[]);
            }
            data.get(
                offset
                    ..offset
                        .checked_add(size)
                        .ok_or_else(|| bad("size overflow"))?,
            )
            .ok_or_else(|| bad("section beyond the file"))
        };
        let (_, names_kind, names_offset, names_size, _, _) = header(names_index)?;
        let names = contents(names_offset, names_size, names_kind)?;
        let mut sections = Vec::with_capacity(count);
        for index in 0..count {
            let (name, kind, offset, size, link, info) = header(index)?;
            sections.push(Section {
                name: name_at(names, name)?,
                kind,
                link,
                info,
                data: contents(offset, size, kind)?,
            });
        }
        Ok(Self { sections })
    }

    pub fn section(&self, name: &str) -> Option<(usize, Section<'a>)> {
        self.sections
            .iter()
            .copied()
            .enumerate()
            .find(|(_, section)| section.name == name)
    }

    /// Every symbol of the symbol table.
    pub fn symbols(&self) -> Result<Vec<Symbol<'a>>, ElfError> {
        let symtab = self
            .sections
            .iter()
            .find(|section| section.kind == SHT_SYMTAB)
            .ok_or_else(|| bad("no symbol table"))?;
        let strings = self
            .sections
            .get(symtab.link as usize)
            .ok_or_else(|| bad("symbol table without strings"))?
            .data;
        symtab
            .data
            .chunks_exact(24)
            .map(|entry| {
                Ok(Symbol {
                    name: name_at(strings, u32_at(entry, 0)?)?,
                    section: u16_at(entry, 6)?,
                    value: u64_at(entry, 8)?,
                    size: u64_at(entry, 16)?,
                })
            })
            .collect()
    }

    /// A defined symbol by name.
    pub fn symbol(&self, name: &str) -> Result<Symbol<'a>, ElfError> {
        self.symbols()?
            .into_iter()
            .find(|symbol| symbol.name == name && symbol.section != 0)
            .ok_or_else(|| bad(format!("no symbol {name}")))
    }

    /// The map references of the program section at `index` (its `.rel` section).
    pub fn map_references(&self, index: usize) -> Result<Vec<MapReference<'a>>, ElfError> {
        let symbols = self.symbols()?;
        let mut references = Vec::new();
        for rel in self
            .sections
            .iter()
            .filter(|section| section.kind == SHT_REL && section.info as usize == index)
        {
            for entry in rel.data.chunks_exact(16) {
                let offset = usize_at(entry, 0)?;
                let info = u64_at(entry, 8)?;
                let (symbol, kind) = ((info >> 32) as usize, info as u32);
                if kind != R_BPF_64_64 {
                    return Err(bad(format!(
                        "relocation type {kind} at {offset}: only map references are supported"
                    )));
                }
                let symbol = symbols
                    .get(symbol)
                    .ok_or_else(|| bad("relocation names no symbol"))?;
                references.push(MapReference {
                    offset,
                    symbol: symbol.name,
                });
            }
        }
        Ok(references)
    }
}

/// Points the `ld_imm64` at `offset` of `code` at the map open as `fd` (BPF_PSEUDO_MAP_FD).
pub fn patch_map_fd(code: &mut [u8], offset: usize, fd: i32) -> Result<(), ElfError> {
    const LD_IMM64: u8 = 0x18;
    const BPF_PSEUDO_MAP_FD: u8 = 1;
    let instruction = code
        .get_mut(offset..offset + 16)
        .ok_or_else(|| bad(format!("relocation at {offset} beyond its section")))?;
    if instruction[0] != LD_IMM64 {
        return Err(bad(format!(
            "relocation at {offset} is not on a 64-bit immediate load"
        )));
    }
    instruction[1] = (instruction[1] & 0x0f) | (BPF_PSEUDO_MAP_FD << 4);
    instruction[4..8].copy_from_slice(&fd.to_le_bytes());
    Ok(())
}
