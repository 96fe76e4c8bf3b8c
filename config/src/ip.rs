//! IP addresses parsed and shown by hand: `core::net`'s parser and `Display` keep panic paths
//! (unchecked slicing, `unwrap` on a buffer write) that the library's release build must not
//! link. Same accepted forms as std: dotted-quad IPv4 without leading zeros, IPv6 with `::`
//! and an optional trailing dotted quad.

use crate::show::{Out, Show, decimal, display_via_show, hex};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::text::split;

pub fn parse(text: &[u8]) -> Option<IpAddr> {
    if let Some(v4) = parse_v4(text) {
        return Some(IpAddr::V4(v4));
    }
    parse_v6(text).map(IpAddr::V6)
}

fn parse_v4(text: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut count = 0;
    for bytes in split(text, b'.') {
        let slot = octets.get_mut(count)?;
        if bytes.is_empty() || bytes.len() > 3 || !bytes.iter().all(u8::is_ascii_digit) {
            return None;
        }
        if bytes.len() > 1 && bytes.first() == Some(&b'0') {
            return None;
        }
        let value = bytes
            .iter()
            .fold(0u32, |value, digit| value * 10 + u32::from(digit - b'0'));
        *slot = u8::try_from(value).ok()?;
        count += 1;
    }
    (count == 4).then(|| Ipv4Addr::from(octets))
}

/// Up to eight groups of 1–4 hex digits, `::` at most once for a run of zero groups, and an
/// IPv4 address in place of the last two groups.
fn parse_v6(text: &[u8]) -> Option<Ipv6Addr> {
    let (head, tail) = match find_double_colon(text) {
        Some(at) => (text.get(..at)?, Some(text.get(at + 2..)?)),
        None => (text, None),
    };
    let mut head_groups = [0u16; 8];
    let head_count = groups(head, &mut head_groups, tail.is_none())?;
    let mut tail_groups = [0u16; 8];
    let tail_count = match tail {
        Some(tail) => groups(tail, &mut tail_groups, true)?,
        None => 0,
    };
    let total = head_count + tail_count;
    let complete = match tail {
        None => total == 8,
        Some(_) => total <= 7,
    };
    if !complete {
        return None;
    }
    let mut all = [0u16; 8];
    for (slot, value) in all.iter_mut().zip(head_groups.iter().take(head_count)) {
        *slot = *value;
    }
    for (slot, value) in all
        .iter_mut()
        .skip(8 - tail_count)
        .zip(tail_groups.iter().take(tail_count))
    {
        *slot = *value;
    }
    Some(Ipv6Addr::from(all))
}

fn find_double_colon(bytes: &[u8]) -> Option<usize> {
    let at = bytes.windows(2).position(|pair| pair == b"::")?;
    // A second `::` (beyond the overlapping ":::") is invalid.
    let rest = bytes.get(at + 2..)?;
    if rest.windows(2).any(|pair| pair == b"::") || rest.first() == Some(&b':') {
        return None;
    }
    Some(at)
}

/// Parses colon-separated groups into `out`; the last may be a dotted quad (two groups) when
/// `last_may_be_v4`. An empty text is zero groups.
fn groups(text: &[u8], out: &mut [u16; 8], last_may_be_v4: bool) -> Option<usize> {
    if text.is_empty() {
        return Some(0);
    }
    let mut count = 0;
    let mut parts = split(text, b':').peekable();
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        if last && last_may_be_v4 && part.contains(&b'.') {
            let [a, b, c, d] = parse_v4(part)?.octets();
            *out.get_mut(count)? = u16::from_be_bytes([a, b]);
            *out.get_mut(count + 1)? = u16::from_be_bytes([c, d]);
            count += 2;
            continue;
        }
        if part.is_empty() || part.len() > 4 || !part.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let value = part.iter().fold(0u16, |value, digit| {
            let nibble = match digit {
                b'0'..=b'9' => digit - b'0',
                b'a'..=b'f' => digit - b'a' + 10,
                _ => digit.wrapping_sub(b'A').wrapping_add(10),
            };
            (value << 4) | u16::from(nibble & 0xf)
        });
        *out.get_mut(count)? = value;
        count += 1;
    }
    Some(count)
}

/// A socket address shown as `1.2.3.4:5` or `[fd00::1]:5` (without `core::net`'s Display).
#[derive(Clone, Copy, Debug)]
pub struct ShownAddress(pub SocketAddr);

impl Show for ShownAddress {
    fn show<O: Out>(&self, out: &mut O) {
        match self.0 {
            SocketAddr::V4(v4) => {
                show_v4(out, v4.ip().octets());
                out.text(":");
                decimal(out, u64::from(v4.port()));
            }
            SocketAddr::V6(v6) => {
                out.text("[");
                if let Some(v4) = v6.ip().to_ipv4_mapped() {
                    out.text("::ffff:");
                    show_v4(out, v4.octets());
                } else {
                    show_v6(out, v6.ip().segments());
                }
                out.text("]:");
                decimal(out, u64::from(v6.port()));
            }
        }
    }
}

display_via_show!(ShownAddress);

fn show_v4<O: Out>(out: &mut O, octets: [u8; 4]) {
    for (index, octet) in octets.into_iter().enumerate() {
        if index > 0 {
            out.text(".");
        }
        decimal(out, u64::from(octet));
    }
}

/// RFC 5952 form: the longest run of two or more zero groups becomes `::`.
fn show_v6<O: Out>(out: &mut O, segments: [u16; 8]) {
    let (mut best_start, mut best_length) = (8, 0);
    let mut index = 0;
    while index < 8 {
        let run = segments
            .iter()
            .skip(index)
            .take_while(|&&segment| segment == 0)
            .count();
        if run > best_length && run >= 2 {
            (best_start, best_length) = (index, run);
        }
        index += run.max(1);
    }
    let mut index = 0;
    while index < 8 {
        if index == best_start {
            out.text("::");
            index += best_length;
            continue;
        }
        if index > 0 && index != best_start + best_length {
            out.text(":");
        }
        let segment = segments.get(index).copied().unwrap_or(0);
        hex(out, u32::from(segment), 1);
        index += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn parses_like_std() {
        for text in [
            "0.0.0.0",
            "10.1.2.3",
            "255.255.255.255",
            "::",
            "::1",
            "fd00::",
            "fd00::1:2",
            "1:2:3:4:5:6:7:8",
            "::ffff:10.9.9.9",
            "64:ff9b::192.0.2.33",
            "FD00::ABCD",
            "1::8",
        ] {
            let std: IpAddr = text.parse().unwrap();
            assert_eq!(parse(text.as_bytes()), Some(std), "{text}");
        }
        for bad in [
            "",
            "10.0.0",
            "010.0.0.1",
            "256.0.0.1",
            "1.2.3.4.5",
            "host.example",
            ":::",
            "1::2::3",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7",
            "12345::",
            "::g",
            "1.2.3.4::",
            " 1.2.3.4",
            "1:2:3:4:5:6:7::8",
            ":1::",
            "1::2:",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad}");
            assert!(bad.parse::<IpAddr>().is_err(), "std accepts {bad}");
        }
    }

    #[test]
    fn shows_like_std() {
        for text in [
            "1.2.3.4:5",
            "[::1]:17000",
            "[fd00::1:0:0:2]:1",
            "[1:0:0:4:0:0:0:8]:9",
            "[::ffff:10.0.0.1]:80",
            "[1:2:3:4:5:6:7:8]:65535",
            "[::]:0",
        ] {
            let address: SocketAddr = text.parse().unwrap();
            assert_eq!(
                ShownAddress(address).to_string(),
                address.to_string(),
                "{text}"
            );
        }
    }
}
