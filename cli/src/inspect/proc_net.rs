//! /proc/PID/net/tcp{,6}: the one parser of the kernel's socket tables in the command.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// /proc/PID/net/tcp{,6}, read only when a connecting socket needs its peer.
#[derive(Default)]
pub(super) struct NetTable {
    rows: std::cell::OnceCell<Vec<(u64, SocketAddr, SocketAddr)>>,
}

impl NetTable {
    /// The peer of the socket behind descriptor `fd` of process `pid`.
    pub(super) fn remote(&self, pid: i32, fd: i32) -> Option<SocketAddr> {
        let inode = socket_inode(pid, fd)?;
        let rows = self.rows.get_or_init(|| {
            ["tcp", "tcp6"]
                .iter()
                .filter_map(|name| std::fs::read_to_string(format!("/proc/{pid}/net/{name}")).ok())
                .flat_map(|text| {
                    text.lines()
                        .skip(1)
                        .filter_map(parse_net_row)
                        .collect::<Vec<_>>()
                })
                .collect()
        });
        rows.iter()
            .find(|(row_inode, _, _)| *row_inode == inode)
            .map(|&(_, _, remote)| remote)
            .filter(|remote| remote.port() != 0)
    }
}

fn socket_inode(pid: i32, fd: i32) -> Option<u64> {
    let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let text = target.to_str()?;
    text.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// One row of /proc/net/tcp or tcp6: inode, local and remote address.
pub fn parse_net_row(line: &str) -> Option<(u64, SocketAddr, SocketAddr)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let local = parse_net_address(fields.get(1)?)?;
    let remote = parse_net_address(fields.get(2)?)?;
    let inode = fields.get(9)?.parse().ok()?;
    Some((inode, local, remote))
}

/// `0100007F:1F90` (IPv4) or 32 hex digits (IPv6): 32-bit words in host order, port in hex.
pub(super) fn parse_net_address(text: &str) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for chunk in address.as_bytes().chunks(8) {
        let word = u32::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}
