//! The one conversion between socket addresses and the bytes of a Linux `struct sockaddr_in`
//! / `sockaddr_in6`, shared by the library (over raw system calls), the command and the test
//! programs: callers hand the kernel a byte buffer, and nobody casts pointers to decode it.

use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Linux's address families.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
/// `sizeof(struct sockaddr_in)` and `sizeof(struct sockaddr_in6)`.
pub const V4_LENGTH: usize = 16;
pub const V6_LENGTH: usize = 28;
/// `sizeof(struct sockaddr_storage)`: a buffer any address fits in.
pub const STORAGE_LENGTH: usize = 128;

fn array<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at + N)?.try_into().ok()
}

/// An IPv4 or IPv6 address from the first `bytes` the kernel wrote (family in native byte
/// order, port in network order); `None` for another family or too few bytes.
pub fn decode(bytes: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(array(bytes, 0)?);
    let port = u16::from_be_bytes(array(bytes, 2)?);
    match family {
        AF_INET if bytes.len() >= V4_LENGTH => Some(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from(array::<4>(bytes, 4)?),
            port,
        ))),
        AF_INET6 if bytes.len() >= V6_LENGTH => Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(array::<16>(bytes, 8)?),
            port,
            u32::from_ne_bytes(array(bytes, 4)?),
            u32::from_ne_bytes(array(bytes, 24)?),
        ))),
        _ => None,
    }
}

/// Writes `address` as the kernel takes it into `out`; returns the length to pass.
pub fn encode(address: SocketAddr, out: &mut [u8; V6_LENGTH]) -> usize {
    *out = [0; V6_LENGTH];
    let mut put = |at: usize, bytes: &[u8]| {
        if let Some(slot) = out.get_mut(at..at + bytes.len()) {
            slot.copy_from_slice(bytes);
        }
    };
    match address {
        SocketAddr::V4(v4) => {
            put(0, &AF_INET.to_ne_bytes());
            put(2, &v4.port().to_be_bytes());
            put(4, &v4.ip().octets());
            V4_LENGTH
        }
        SocketAddr::V6(v6) => {
            put(0, &AF_INET6.to_ne_bytes());
            put(2, &v6.port().to_be_bytes());
            put(4, &v6.flowinfo().to_ne_bytes());
            put(8, &v6.ip().octets());
            put(24, &v6.scope_id().to_ne_bytes());
            V6_LENGTH
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_c_layout() {
        assert_eq!(i32::from(AF_INET), libc::AF_INET);
        assert_eq!(i32::from(AF_INET6), libc::AF_INET6);
        assert_eq!(V4_LENGTH, size_of::<libc::sockaddr_in>());
        assert_eq!(V6_LENGTH, size_of::<libc::sockaddr_in6>());
        assert_eq!(STORAGE_LENGTH, size_of::<libc::sockaddr_storage>());
        let v4 = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 6379u16.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(Ipv4Addr::new(10, 1, 2, 3)).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: a plain C struct viewed as its bytes.
        let bytes: [u8; V4_LENGTH] = unsafe { core::mem::transmute(v4) };
        let address: SocketAddr = "10.1.2.3:6379".parse().unwrap();
        assert_eq!(decode(&bytes), Some(address));
        let mut out = [0; V6_LENGTH];
        assert_eq!(encode(address, &mut out), V4_LENGTH);
        assert_eq!(&out[..V4_LENGTH], &bytes);
    }

    #[test]
    fn round_trips_ipv6_and_refuses_short_or_foreign() {
        let address: SocketAddr = "[fd00::1%7]:17000".parse().unwrap();
        let mut out = [0; V6_LENGTH];
        let length = encode(address, &mut out);
        assert_eq!(decode(&out[..length]), Some(address));
        assert_eq!(decode(&out[..V4_LENGTH]), None);
        assert_eq!(decode(&[1, 0, 0, 0]), None);
        assert_eq!(decode(&[]), None);
    }
}
