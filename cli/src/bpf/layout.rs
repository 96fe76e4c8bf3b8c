//! The data the loader hands the BPF programs, in the layout of bpf/keepalive.h, built from the
//! one definition in keepalive-config: the option table (levels, names, kernel bounds), the
//! configured values (`Config::plan`), the override policy, the shape of
//! `SocketOption::tighter` for each option, and the port and network filters.

use keepalive_config::{
    Config, IPPROTO_TCP, KernelDefaults, NetRange, Override, Plan, SocketOption,
};

pub const OPTIONS: usize = 5;
pub const PORT_WORDS: usize = 1024;
pub const COUNTERS: usize = 7;

const _: () = assert!(SocketOption::COUNT == OPTIONS);

// bpf/keepalive.h
pub const OVERRIDE_NO: u32 = 0;
pub const OVERRIDE_YES: u32 = 1;
pub const OVERRIDE_TIGHTEN: u32 = 2;
pub const TIGHTER_MIN: u32 = 0;
pub const TIGHTER_EITHER_ON: u32 = 1;
pub const TIGHTER_ZERO_IS_NEVER: u32 = 2;

/// Counter names, in kp_counters order (KP_COUNT_*).
pub const COUNTER_NAMES: [&str; COUNTERS] = [
    "connected",
    "accepted",
    "listening",
    "excluded",
    "replaced",
    "kept",
    "errors",
];

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KpOption {
    pub level: i32,
    pub name: i32,
    pub min: i32,
    pub max: i32,
    pub value: i32,
    pub tighter: u32,
    pub configured: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KpPolicy {
    pub enabled: u32,
    pub override_policy: u32,
    pub has_ports: u32,
    pub has_nets: u32,
    pub options: [KpOption; OPTIONS],
    pub witness: i32,
}

/// struct kp_sock, the per-socket storage (only its size matters here).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KpSock {
    pub asked_mask: u32,
    pub judged: u32,
    pub role: u32,
    pub asked: [i32; OPTIONS],
}

/// struct kp_net_key: prefix length, then the address in network byte order.
pub const NET_KEY_SIZE: usize = 20;

pub fn override_code(policy: Override) -> u32 {
    match policy {
        Override::No => OVERRIDE_NO,
        Override::Yes => OVERRIDE_YES,
        Override::Tighten => OVERRIDE_TIGHTEN,
    }
}

/// The shape of `SocketOption::tighter` for `option`, read off the rule itself: "either on"
/// (a switch), "0 means never" (a timeout) or the smaller value. The tests check that the shape
/// reproduces the rule.
pub fn tighter_shape(option: SocketOption) -> u32 {
    if option.tighter(5, 7) == 1 {
        TIGHTER_EITHER_ON
    } else if option.tighter(0, 5) == 5 {
        TIGHTER_ZERO_IS_NEVER
    } else {
        TIGHTER_MIN
    }
}

/// What bpf/keepalive.bpf.c's tighter() computes for a shape (for the tests).
#[cfg(test)]
pub fn tighter_by_shape(shape: u32, a: i32, b: i32) -> i32 {
    match shape {
        TIGHTER_EITHER_ON => i32::from(a != 0 || b != 0),
        TIGHTER_ZERO_IS_NEVER if a == 0 => b,
        TIGHTER_ZERO_IS_NEVER if b == 0 => a,
        _ => a.min(b),
    }
}

pub fn policy(config: &Config<'_>, kernel: KernelDefaults) -> KpPolicy {
    let plan = config.plan(kernel);
    let mut options = [KpOption::default(); OPTIONS];
    for (slot, option) in options.iter_mut().zip(SocketOption::ALL) {
        let row = option.row();
        let value = plan.value(option);
        *slot = KpOption {
            level: row.level,
            name: row.name,
            min: row.min,
            max: row.max,
            value: value.unwrap_or(0),
            tighter: tighter_shape(option),
            configured: u32::from(value.is_some()),
        };
    }
    KpPolicy {
        enabled: u32::from(config.enabled),
        override_policy: override_code(config.override_policy),
        has_ports: u32::from(config.ports.is_some()),
        has_nets: u32::from(config.nets.is_some()),
        options,
        witness: witness(&plan, kernel),
    }
}

/// The accept witness, as the library's (src/runtime.rs, src/policy.rs `after_accept`): the
/// option (its index in `options`) whose value on an accepted socket tells that its listener
/// was configured, or -1. TCP_USER_TIMEOUT when planned (0 unless set, and ours never is),
/// else the first TCP-level option planned, unless its value is the kernel's default (of the
/// namespace `bpf attach` runs in), which an unconfigured listener holds too.
pub fn witness(plan: &Plan, kernel: KernelDefaults) -> i32 {
    let option = if plan.value(SocketOption::UserTimeout).is_some() {
        Some(SocketOption::UserTimeout)
    } else {
        plan.steps()
            .iter()
            .map(|&(option, _)| option)
            .find(|option| option.level() == IPPROTO_TCP)
            .filter(|&option| plan.value(option) != Some(option.kernel_default(kernel)))
    };
    option
        .and_then(|option| SocketOption::ALL.iter().position(|&each| each == option))
        .map_or(-1, |index| index as i32)
}

/// KEEPALIVE_PORTS as the kp_ports bitmap: word `port / 64`, bit `port % 64`.
pub fn port_words(config: &Config<'_>) -> Vec<u64> {
    let mut words = vec![0u64; PORT_WORDS];
    if let Some(list) = config.ports {
        let set = list.to_set();
        for port in 1..=u16::MAX {
            if set.contains(port) {
                words[usize::from(port >> 6)] |= 1 << (port & 63);
            }
        }
    }
    words
}

/// KEEPALIVE_NETS as LPM trie entries: the sorted, merged ranges of `NetList::build`, each cut
/// into CIDR blocks of the IPv6 (IPv4-mapped for IPv4) address space.
pub fn net_prefixes(config: &Config<'_>) -> Vec<(u32, u128)> {
    let Some(list) = config.nets else {
        return Vec::new();
    };
    let mut storage = vec![NetRange::default(); list.len()];
    let used = list.build(&mut storage).len();
    storage.truncate(used);
    storage
        .iter()
        .flat_map(|range| cidr_blocks(range.first, range.last))
        .collect()
}

/// The fewest CIDR blocks covering exactly `first..=last`: (prefix length, base).
pub fn cidr_blocks(first: u128, last: u128) -> Vec<(u32, u128)> {
    let mut blocks = Vec::new();
    let mut base = first;
    loop {
        // The largest aligned block at `base` that does not run past `last`.
        let mut host_bits = base.trailing_zeros().min(128);
        while host_bits > 0 {
            let span = if host_bits == 128 {
                u128::MAX
            } else {
                (1u128 << host_bits) - 1
            };
            if base.checked_add(span).is_some_and(|end| end <= last) {
                break;
            }
            host_bits -= 1;
        }
        blocks.push((128 - host_bits, base));
        let span = if host_bits == 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        match base.checked_add(span) {
            Some(end) if end < last => base = end + 1,
            _ => break,
        }
    }
    blocks
}

pub fn net_key(prefix: u32, base: u128) -> [u8; NET_KEY_SIZE] {
    let mut key = [0u8; NET_KEY_SIZE];
    key[..4].copy_from_slice(&prefix.to_ne_bytes());
    key[4..].copy_from_slice(&base.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::ffi::OsString;

    use crate::settings::{Filters, parse_kept};
    use keepalive_config::Role;

    #[test]
    fn shapes_reproduce_the_tighter_rule() {
        let values = [i32::MIN, -7, -1, 0, 1, 2, 3, 30, 127, 3000, 32767, i32::MAX];
        for option in SocketOption::ALL {
            let shape = tighter_shape(option);
            for a in values {
                for b in values {
                    assert_eq!(
                        tighter_by_shape(shape, a, b),
                        option.tighter(a, b),
                        "{option:?} {a} {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn policy_carries_the_table_and_the_plan() {
        let map: HashMap<&str, &str> = [
            ("KEEPIDLE", "2"),
            ("KEEPALIVE_USER_TIMEOUT", "3s"),
            ("KEEPALIVE_OVERRIDE", "tighten"),
        ]
        .into_iter()
        .collect();
        let parsed = parse_kept(|name| map.get(name).map(OsString::from));
        let policy = policy(&parsed.config, KernelDefaults::default());
        assert_eq!(policy.override_policy, OVERRIDE_TIGHTEN);
        for (slot, option) in policy.options.iter().zip(SocketOption::ALL) {
            assert_eq!((slot.level, slot.name), (option.level(), option.name()));
            assert_eq!((slot.min, slot.max), (option.row().min, option.row().max));
        }
        let configured: Vec<(u32, i32)> = policy
            .options
            .iter()
            .map(|option| (option.configured, option.value))
            .collect();
        assert_eq!(
            configured,
            [(1, 1), (1, 2), (0, 0), (0, 0), (1, 3000)].to_vec()
        );
    }

    #[test]
    fn cidr_blocks_cover_ranges_exactly() {
        assert_eq!(cidr_blocks(0, u128::MAX), vec![(0, 0)]);
        assert_eq!(cidr_blocks(10, 10), vec![(128, 10)]);
        // 10.0.0.0-10.0.2.255 (three /24s merged): a /23 and a /24.
        let mapped = |a: u32| u128::from(std::net::Ipv4Addr::from(a).to_ipv6_mapped());
        let first = mapped(0x0a00_0000);
        let blocks = cidr_blocks(first, mapped(0x0a00_02ff));
        assert_eq!(blocks, vec![(119, first), (120, mapped(0x0a00_0200))]);
        // Odd ranges: every block aligned, contiguous, and covering exactly.
        for (first, last) in [(3u128, 1000u128), (1, u128::MAX - 1), (255, 256)] {
            let blocks = cidr_blocks(first, last);
            let mut next = first;
            for (prefix, base) in blocks {
                assert_eq!(base, next);
                let span = u128::MAX.checked_shr(prefix).unwrap_or(0);
                assert_eq!(base & span, 0, "aligned");
                next = base.wrapping_add(span).wrapping_add(1);
            }
            assert_eq!(next, last.wrapping_add(1));
        }
    }

    /// The LPM lookup the program does (longest prefix of the address) answers like NetSet.
    #[test]
    fn prefixes_match_like_the_net_set() {
        let text = "10.0.0.0/24,10.0.1.0/24,10.0.2.0/24,192.168.1.7,fd00::/8,::ffff:172.16.0.0/108";
        let map: HashMap<&str, &str> = [("KEEPALIVE_NETS", text)].into_iter().collect();
        let parsed = parse_kept(|name| map.get(name).map(OsString::from));
        assert!(parsed.errors.is_empty());
        let prefixes = net_prefixes(&parsed.config);
        let filters = Filters::new(&parsed.config);
        let targeting = filters.targeting();
        for address in [
            "10.0.0.1",
            "10.0.2.255",
            "10.0.3.0",
            "192.168.1.7",
            "192.168.1.8",
            "fd12::1",
            "fe00::1",
            "::ffff:10.0.1.9",
            "172.16.5.5",
            "172.32.0.1",
        ] {
            let ip: std::net::IpAddr = address.parse().unwrap();
            let value = match ip {
                std::net::IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
                std::net::IpAddr::V6(v6) => u128::from(v6),
            };
            let in_trie = prefixes.iter().any(|&(prefix, base)| {
                let mask = if prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - prefix)
                };
                value & mask == base
            });
            let peer = std::net::SocketAddr::new(ip, 4000);
            let decided = targeting
                .decide(Role::Connecting, None, Some(peer))
                .targeted();
            assert_eq!(in_trie, decided, "{address}");
        }
    }

    #[test]
    fn port_words_are_the_port_set() {
        let map: HashMap<&str, &str> = [("KEEPALIVE_PORTS", "1,63-65,17000-17999,65535")]
            .into_iter()
            .collect();
        let parsed = parse_kept(|name| map.get(name).map(OsString::from));
        let words = port_words(&parsed.config);
        let set = parsed.config.ports.unwrap().to_set();
        for port in 0..=u16::MAX {
            let bit = words[usize::from(port >> 6)] >> (port & 63) & 1 == 1;
            assert_eq!(bit, set.contains(port), "{port}");
        }
    }
}
