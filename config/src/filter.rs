//! Targeting filters, validated once at parse and kept as the text the user wrote (UTF-8, as
//! bytes); each is turned into a lookup structure where it is used: ports into a 65,536-bit
//! set, networks into sorted, merged address ranges searched in O(log n). No allocation: the
//! caller owns the storage.

use core::fmt;

use crate::show::{Out, Show, decimal, display_via_show};
use core::net::IpAddr;

use crate::ip;
use crate::text::{Quoted, base_name, split, split_once};

/// Why a list was refused: the first bad item and what is wrong with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListProblem<'a> {
    Empty,
    EmptyItem,
    BadPort(&'a [u8]),
    NotAscending(&'a [u8]),
    BadNetwork(&'a [u8]),
    BadPrefix {
        item: &'a [u8],
        prefix: &'a [u8],
        width: u8,
    },
    BadProgram(&'a [u8]),
}

impl Show for ListProblem<'_> {
    fn show<O: Out>(&self, out: &mut O) {
        let (item, rest) = match *self {
            Self::Empty => return out.text("the list is empty"),
            Self::EmptyItem => return out.text("the list has an empty item"),
            Self::BadPort(item) => (
                item,
                " is not a port in 1..65535 or a range like 17000-17999",
            ),
            Self::NotAscending(item) => {
                out.text("range ");
                (item, " is not ascending")
            }
            Self::BadNetwork(item) => (item, " is not an IPv4 or IPv6 address or network"),
            Self::BadPrefix {
                item,
                prefix,
                width,
            } => {
                Quoted(item).show(out);
                out.text(" has prefix length ");
                Quoted(prefix).show(out);
                out.text(", not 0..");
                decimal(out, u64::from(width));
                return;
            }
            Self::BadProgram(item) => (item, " is not a program base name (no slash, no space)"),
        };
        Quoted(item).show(out);
        out.text(rest);
    }
}

display_via_show!(ListProblem<'_>);

/// Each list shows itself as the user wrote it (`Display` for the command).
macro_rules! shown_as_written {
    ($($list:ident),*) => {
        $(impl Show for $list<'_> {
            fn show<O: Out>(&self, out: &mut O) {
                out.bytes(self.text);
            }
        })*
        display_via_show!($($list<'_>),*);
    };
}

shown_as_written!(PortList, NetList, ProgramList);

/// Splits a comma-separated list, refusing an empty list or an empty item.
fn items(text: &[u8]) -> Result<impl Iterator<Item = &[u8]> + Clone, ListProblem<'_>> {
    if text.is_empty() {
        return Err(ListProblem::Empty);
    }
    let items = split(text, b',');
    if items.clone().any(<[u8]>::is_empty) {
        return Err(ListProblem::EmptyItem);
    }
    Ok(items)
}

/// `KEEPALIVE_PORTS`: comma-separated ports and inclusive ascending ranges, e.g.
/// `17000-17999,6379`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortList<'a> {
    text: &'a [u8],
}

impl<'a> PortList<'a> {
    pub fn parse(text: &'a [u8]) -> Result<Self, ListProblem<'a>> {
        for item in items(text)? {
            range(item)?;
        }
        Ok(Self { text })
    }

    fn ranges(self) -> impl Iterator<Item = (u16, u16)> + 'a {
        split(self.text, b',').filter_map(|item| range(item).ok())
    }

    /// The lookup structure.
    pub fn to_set(self) -> PortSet {
        let mut set = PortSet::EMPTY;
        self.fill(&mut set);
        set
    }

    /// Fills `set` (for a caller that keeps it in place, such as a static).
    pub fn fill(self, set: &mut PortSet) {
        *set = PortSet::EMPTY;
        for (first, last) in self.ranges() {
            set.insert_range(first, last);
        }
    }

    /// Linear check without building the set, for a one-off question.
    pub fn contains(self, port: u16) -> bool {
        self.ranges()
            .any(|(first, last)| first <= port && port <= last)
    }

    /// The list as the user wrote it (UTF-8).
    pub fn as_bytes(self) -> &'a [u8] {
        self.text
    }
}

fn range(item: &[u8]) -> Result<(u16, u16), ListProblem<'_>> {
    let port = |text: &[u8]| {
        crate::value::count(text, 1, 65535)
            .and_then(|port| u16::try_from(port).ok())
            .ok_or(ListProblem::BadPort(item))
    };
    let (first, last) = match split_once(item, b'-') {
        Some((first, last)) => (port(first)?, port(last)?),
        None => {
            let single = port(item)?;
            (single, single)
        }
    };
    if first > last {
        return Err(ListProblem::NotAscending(item));
    }
    Ok((first, last))
}

/// A set of ports: one bit each, a lookup is one load.
#[derive(Clone, PartialEq, Eq)]
pub struct PortSet {
    bits: [u64; 1024],
}

impl PortSet {
    pub const EMPTY: Self = Self { bits: [0; 1024] };

    /// Sets `first..=last`, a word at a time: a list of many long ranges costs little.
    fn insert_range(&mut self, first: u16, last: u16) {
        let (mut port, last) = (usize::from(first), usize::from(last));
        while port <= last {
            let bit = port & 63;
            let span = (64 - bit).min(last - port + 1);
            let mask = if span == 64 {
                u64::MAX
            } else {
                ((1u64 << span) - 1) << bit
            };
            if let Some(word) = self.bits.get_mut(port >> 6) {
                *word |= mask;
            }
            port += span;
        }
    }

    pub fn contains(&self, port: u16) -> bool {
        self.bits
            .get(usize::from(port >> 6))
            .is_some_and(|word| word & (1 << (port & 63)) != 0)
    }
}

impl fmt::Debug for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count: u32 = self.bits.iter().map(|word| word.count_ones()).sum();
        write!(f, "PortSet({count} ports)")
    }
}

/// An inclusive range of addresses, IPv4 held as IPv4-mapped IPv6 so that IPv4 peers and
/// IPv4-mapped IPv6 peers match alike.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct NetRange {
    pub first: u128,
    pub last: u128,
}

/// `KEEPALIVE_NETS`: comma-separated CIDRs, IPv4 and IPv6; a bare address is a /32 or /128.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetList<'a> {
    text: &'a [u8],
    count: usize,
}

impl<'a> NetList<'a> {
    pub fn parse(text: &'a [u8]) -> Result<Self, ListProblem<'a>> {
        let mut count = 0;
        for item in items(text)? {
            network(item)?;
            count += 1;
        }
        Ok(Self { text, count })
    }

    /// How many networks: the storage [`NetList::build`] needs.
    pub fn len(self) -> usize {
        self.count
    }

    pub fn is_empty(self) -> bool {
        self.count == 0
    }

    /// The list as the user wrote it (UTF-8).
    pub fn as_bytes(self) -> &'a [u8] {
        self.text
    }

    /// Sorts and merges the networks into `storage` (at least [`NetList::len`] long; what does
    /// not fit is left out) and returns the lookup structure over it.
    pub fn build(self, storage: &mut [NetRange]) -> NetSet<'_> {
        let mut used = 0;
        for (slot, range) in storage
            .iter_mut()
            .zip(split(self.text, b',').filter_map(|item| network(item).ok()))
        {
            *slot = range;
            used += 1;
        }
        let filled = storage.get_mut(..used).unwrap_or(&mut []);
        heap_sort(filled);
        let merged = merge(filled);
        NetSet {
            ranges: storage.get(..merged).unwrap_or(&[]),
        }
    }

    /// Linear check without building the set, for a one-off question.
    pub fn contains(self, address: IpAddr) -> bool {
        let address = mapped(address);
        split(self.text, b',')
            .filter_map(|item| network(item).ok())
            .any(|range| range.first <= address && address <= range.last)
    }
}

fn mapped(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn network(item: &[u8]) -> Result<NetRange, ListProblem<'_>> {
    let (address, prefix) = match split_once(item, b'/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (item, None),
    };
    let address = ip::parse(address).ok_or(ListProblem::BadNetwork(item))?;
    let width: u8 = if address.is_ipv4() { 32 } else { 128 };
    let bits = match prefix {
        None => width,
        Some(text) => crate::value::count(text, 0, u32::from(width))
            .and_then(|bits| u8::try_from(bits).ok())
            .ok_or(ListProblem::BadPrefix {
                item,
                prefix: text,
                width,
            })?,
    };
    let bits = u32::from(bits) + if address.is_ipv4() { 96 } else { 0 };
    let host_mask = u128::MAX.checked_shr(bits).unwrap_or(0);
    let base = mapped(address) & !host_mask;
    Ok(NetRange {
        first: base,
        last: base | host_mask,
    })
}

/// In-place heap sort: no allocation, no recursion, no index that can be out of bounds.
fn heap_sort(ranges: &mut [NetRange]) {
    let len = ranges.len();
    for start in (0..len / 2).rev() {
        sift_down(ranges, start, len);
    }
    for end in (1..len).rev() {
        if let Some((first, rest)) = ranges.split_first_mut()
            && let Some(last) = rest.get_mut(end - 1)
        {
            core::mem::swap(first, last);
        }
        sift_down(ranges, 0, end);
    }
}

fn sift_down(ranges: &mut [NetRange], mut root: usize, end: usize) {
    let Some(heap) = ranges.get_mut(..end) else {
        return;
    };
    loop {
        let mut child = 2 * root + 1;
        let (Some(&left), right) = (heap.get(child), heap.get(child + 1)) else {
            return;
        };
        let mut larger = left;
        if let Some(&right) = right
            && right > left
        {
            child += 1;
            larger = right;
        }
        let Some(parent) = heap.get_mut(root) else {
            return;
        };
        if *parent >= larger {
            return;
        }
        let above = *parent;
        *parent = larger;
        if let Some(below) = heap.get_mut(child) {
            *below = above;
        }
        root = child;
    }
}

/// Merges overlapping or adjacent sorted ranges to the front; returns how many remain.
fn merge(ranges: &mut [NetRange]) -> usize {
    let mut kept: usize = 0;
    for index in 0..ranges.len() {
        let Some(&range) = ranges.get(index) else {
            break;
        };
        match kept.checked_sub(1).and_then(|last| ranges.get_mut(last)) {
            Some(previous) if range.first <= previous.last.saturating_add(1) => {
                previous.last = previous.last.max(range.last);
            }
            _ => {
                if let Some(slot) = ranges.get_mut(kept) {
                    *slot = range;
                }
                kept += 1;
            }
        }
    }
    kept
}

/// Networks as sorted, disjoint ranges: a lookup is a binary search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetSet<'s> {
    ranges: &'s [NetRange],
}

impl<'s> NetSet<'s> {
    /// Over ranges [`NetList::build`] already sorted and merged (kept by the caller).
    pub fn from_sorted(ranges: &'s [NetRange]) -> Self {
        Self { ranges }
    }

    /// How many disjoint ranges.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = mapped(address);
        let (mut low, mut high) = (0, self.ranges.len());
        while low < high {
            let middle = low + (high - low) / 2;
            let Some(range) = self.ranges.get(middle) else {
                return false;
            };
            if address < range.first {
                high = middle;
            } else if address > range.last {
                low = middle + 1;
            } else {
                return true;
            }
        }
        false
    }
}

/// `KEEPALIVE_PROGRAMS`: comma-separated program base names, e.g. `redis-server,redis-sentinel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramList<'a> {
    text: &'a [u8],
}

impl<'a> ProgramList<'a> {
    pub fn parse(text: &'a [u8]) -> Result<Self, ListProblem<'a>> {
        for name in items(text)? {
            // ASCII whitespace: what a shell or a unit file would split a name at (and no
            // Unicode table in the library).
            if name
                .iter()
                .any(|&byte| byte == b'/' || byte.is_ascii_whitespace())
            {
                return Err(ListProblem::BadProgram(name));
            }
        }
        Ok(Self { text })
    }

    /// True when the base name of any of `paths` is listed.
    pub fn matches_any<'p>(self, paths: impl IntoIterator<Item = &'p [u8]>) -> bool {
        paths.into_iter().any(|path| {
            let base = base_name(path);
            split(self.text, b',').any(|name| name == base)
        })
    }

    /// The list as the user wrote it (UTF-8).
    pub fn as_bytes(self) -> &'a [u8] {
        self.text
    }
}

#[cfg(test)]
mod tests;
