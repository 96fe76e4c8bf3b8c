//! Targeting filters: which ports, peer networks and programs the library acts on.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Comma-separated ports and inclusive ascending ranges, e.g. `17000-17999,6379`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSet {
    ranges: Vec<(u16, u16)>,
}

impl PortSet {
    /// Parses the list; on failure returns what is wrong with the first bad item.
    pub fn parse(text: &str) -> Result<Self, String> {
        let ranges = items(text)?
            .map(|item| {
                let (first, last) = match item.split_once('-') {
                    Some((first, last)) => (port(first, item)?, port(last, item)?),
                    None => {
                        let single = port(item, item)?;
                        (single, single)
                    }
                };
                if first > last {
                    return Err(format!("range \"{item}\" is not ascending"));
                }
                Ok((first, last))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { ranges })
    }

    pub fn contains(&self, port: u16) -> bool {
        self.ranges
            .iter()
            .any(|&(first, last)| (first..=last).contains(&port))
    }
}

fn port(text: &str, item: &str) -> Result<u16, String> {
    crate::value::count(text, 1, 65535)
        .map(|port| port as u16)
        .ok_or_else(|| format!("\"{item}\" is not a port in 1..65535 or a range like 17000-17999"))
}

impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, &(first, last)) in self.ranges.iter().enumerate() {
            let comma = if index == 0 { "" } else { "," };
            if first == last {
                write!(f, "{comma}{first}")?;
            } else {
                write!(f, "{comma}{first}-{last}")?;
            }
        }
        Ok(())
    }
}

/// One network: IPv4 networks are held as IPv4-mapped IPv6, so that IPv4 peers and
/// IPv4-mapped IPv6 peers match them alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Network {
    base: u128,
    prefix: u8,
    /// What the user wrote, for display: IPv4 prefix length or IPv6 one.
    shown: IpAddr,
    shown_prefix: u8,
}

impl Network {
    fn mask(&self) -> u128 {
        match self.prefix {
            0 => 0,
            bits => u128::MAX << (128 - u32::from(bits)),
        }
    }

    fn contains(&self, address: u128) -> bool {
        (address ^ self.base) & self.mask() == 0
    }
}

/// Comma-separated CIDRs, IPv4 and IPv6; a bare address is a /32 or /128.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetSet {
    networks: Vec<Network>,
}

impl NetSet {
    pub fn parse(text: &str) -> Result<Self, String> {
        let networks = items(text)?.map(network).collect::<Result<_, String>>()?;
        Ok(Self { networks })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let mapped = match address {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        let bits = u128::from(mapped);
        self.networks.iter().any(|network| network.contains(bits))
    }
}

fn network(item: &str) -> Result<Network, String> {
    let (address, prefix) = match item.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (item, None),
    };
    let shown: IpAddr = address
        .parse()
        .map_err(|_| format!("\"{item}\" is not an IPv4 or IPv6 address or network"))?;
    let width = if shown.is_ipv4() { 32 } else { 128 };
    let shown_prefix = match prefix {
        None => width,
        Some(text) => crate::value::count(text, 0, u32::from(width))
            .map(|bits| bits as u8)
            .ok_or_else(|| format!("\"{item}\" has prefix length \"{text}\", not 0..{width}"))?,
    };
    let (mapped, prefix) = match shown {
        IpAddr::V4(v4) => (v4.to_ipv6_mapped(), shown_prefix + 96),
        IpAddr::V6(v6) => (v6, shown_prefix),
    };
    let mut network = Network {
        base: u128::from(mapped),
        prefix,
        shown,
        shown_prefix,
    };
    network.base &= network.mask();
    Ok(network)
}

impl fmt::Display for NetSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, network) in self.networks.iter().enumerate() {
            let comma = if index == 0 { "" } else { "," };
            let base = match network.shown {
                IpAddr::V4(_) => IpAddr::V4(
                    Ipv6Addr::from(network.base)
                        .to_ipv4_mapped()
                        .unwrap_or(Ipv4Addr::UNSPECIFIED),
                ),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(network.base)),
            };
            write!(f, "{comma}{base}/{}", network.shown_prefix)?;
        }
        Ok(())
    }
}

/// Comma-separated program base names, e.g. `redis-server,redis-sentinel`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramSet {
    names: Vec<String>,
}

impl ProgramSet {
    pub fn parse(text: &str) -> Result<Self, String> {
        let names = items(text)?
            .map(|name| {
                if name.contains('/') || name.chars().any(char::is_whitespace) {
                    Err(format!(
                        "\"{name}\" is not a program base name (no slash, no space)"
                    ))
                } else {
                    Ok(name.to_owned())
                }
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { names })
    }

    /// True when the base name of any of `paths` is listed.
    pub fn matches_any<'a>(&self, paths: impl IntoIterator<Item = &'a str>) -> bool {
        paths.into_iter().any(|path| {
            let base = path.rsplit('/').next().unwrap_or(path);
            self.names.iter().any(|name| name == base)
        })
    }
}

impl fmt::Display for ProgramSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names.join(","))
    }
}

/// Splits a comma-separated list, refusing an empty list or an empty item.
fn items(text: &str) -> Result<impl Iterator<Item = &str>, String> {
    if text.is_empty() {
        return Err("the list is empty".to_owned());
    }
    if text.split(',').any(str::is_empty) {
        return Err("the list has an empty item".to_owned());
    }
    Ok(text.split(','))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_ranges() {
        let set = PortSet::parse("17000-17999,6379").unwrap();
        assert!(set.contains(17000) && set.contains(17999) && set.contains(6379));
        assert!(!set.contains(16999) && !set.contains(18000) && !set.contains(6380));
        assert_eq!(set.to_string(), "17000-17999,6379");
    }

    #[test]
    fn bad_ports_say_why() {
        assert!(
            PortSet::parse("17000-1700")
                .unwrap_err()
                .contains("not ascending")
        );
        assert!(PortSet::parse("0").is_err());
        assert!(PortSet::parse("65536").is_err());
        assert!(PortSet::parse("80,").unwrap_err().contains("empty item"));
        assert!(PortSet::parse("").is_err());
        assert!(PortSet::parse("1-2-3").is_err());
        assert!(PortSet::parse(" 80").is_err());
    }

    #[test]
    fn networks_match_ipv4_ipv6_and_mapped() {
        let set = NetSet::parse("10.0.0.0/8,fd00::/8,192.168.1.7").unwrap();
        assert!(set.contains("10.1.2.3".parse().unwrap()));
        assert!(set.contains("::ffff:10.9.9.9".parse().unwrap()));
        assert!(set.contains("fd12::1".parse().unwrap()));
        assert!(set.contains("192.168.1.7".parse().unwrap()));
        assert!(!set.contains("192.168.1.8".parse().unwrap()));
        assert!(!set.contains("11.0.0.1".parse().unwrap()));
        assert!(!set.contains("::1".parse().unwrap()));
        assert_eq!(set.to_string(), "10.0.0.0/8,fd00::/8,192.168.1.7/32");
    }

    #[test]
    fn zero_prefix_matches_all_of_its_family() {
        let any4 = NetSet::parse("0.0.0.0/0").unwrap();
        assert!(any4.contains("8.8.8.8".parse().unwrap()));
        assert!(!any4.contains("::1".parse().unwrap()));
        assert!(
            NetSet::parse("::/0")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
    }

    #[test]
    fn bad_networks_say_why() {
        assert!(
            NetSet::parse("10.0.0.0/33")
                .unwrap_err()
                .contains("prefix length")
        );
        assert!(
            NetSet::parse("fd00::/129")
                .unwrap_err()
                .contains("prefix length")
        );
        assert!(NetSet::parse("10.0.0/8").is_err());
        assert!(NetSet::parse("010.0.0.1").is_err());
        assert!(NetSet::parse("10.0.0.0/").is_err());
        assert!(NetSet::parse("host.example").is_err());
    }

    #[test]
    fn programs_match_base_names() {
        let set = ProgramSet::parse("redis-server,redis-sentinel").unwrap();
        assert!(set.matches_any(["/usr/bin/redis-server"]));
        assert!(set.matches_any(["/bin/sh", "redis-sentinel"]));
        assert!(!set.matches_any(["/usr/bin/redis-cli", "redis-cli"]));
        assert!(ProgramSet::parse("/usr/bin/redis-server").is_err());
        assert!(ProgramSet::parse("a,,b").is_err());
    }
}
