//! Unit tests of `filter`.

use super::*;
use core::net::Ipv4Addr;
use std::string::ToString;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn ports_and_ranges() {
    let list = PortList::parse(b"17000-17999,6379").unwrap();
    let set = list.to_set();
    for port in [17000, 17999, 6379] {
        assert!(set.contains(port) && list.contains(port));
    }
    for port in [16999, 18000, 6380, 1, 65535] {
        assert!(!set.contains(port) && !list.contains(port));
    }
    let all = PortList::parse(b"1-65535").unwrap().to_set();
    assert!((1..=65535).all(|port| all.contains(port)) && !all.contains(0));
    let odd = PortList::parse(b"63-65,127,128-191,65534")
        .unwrap()
        .to_set();
    for port in 0..=65535u16 {
        let listed = matches!(port, 63..=65 | 127..=191 | 65534);
        assert_eq!(odd.contains(port), listed, "{port}");
    }
}

#[test]
fn bad_ports_say_why() {
    let problem = |text: &[u8]| PortList::parse(text).unwrap_err().to_string();
    assert!(problem(b"17000-1700").contains("not ascending"));
    assert!(problem(b"0").contains("not a port"));
    assert!(problem(b"65536").contains("not a port"));
    assert!(problem(b"80,").contains("empty item"));
    assert!(problem(b"").contains("empty"));
    assert!(problem(b"1-2-3").contains("not a port"));
    assert!(problem(b" 80").contains("not a port"));
}

#[test]
fn networks_match_ipv4_ipv6_and_mapped() {
    let list = NetList::parse(b"10.0.0.0/8,fd00::/8,192.168.1.7").unwrap();
    let mut storage = [NetRange::default(); 3];
    let set = list.build(&mut storage);
    for yes in ["10.1.2.3", "::ffff:10.9.9.9", "fd12::1", "192.168.1.7"] {
        assert!(set.contains(ip(yes)) && list.contains(ip(yes)), "{yes}");
    }
    for no in ["192.168.1.8", "11.0.0.1", "::1", "9.255.255.255"] {
        assert!(!set.contains(ip(no)) && !list.contains(ip(no)), "{no}");
    }
}

#[test]
fn zero_prefix_matches_all_of_its_family() {
    let list = NetList::parse(b"0.0.0.0/0").unwrap();
    let mut storage = [NetRange::default(); 1];
    let set = list.build(&mut storage);
    assert!(set.contains(ip("8.8.8.8")));
    assert!(!set.contains(ip("::1")));
    let mut storage = [NetRange::default(); 1];
    assert!(
        NetList::parse(b"::/0")
            .unwrap()
            .build(&mut storage)
            .contains(ip("::1"))
    );
}

#[test]
fn thousands_of_networks_sort_merge_and_match_like_a_scan() {
    let mut text = std::string::String::new();
    for index in 0..6000u32 {
        let (a, b) = ((index * 7919) % 250 + 1, (index * 104729) % 256);
        if !text.is_empty() {
            text.push(',');
        }
        text.push_str(&std::format!("{a}.{b}.{}.0/24", index % 256));
    }
    text.push_str(",10.0.0.0/8,10.1.0.0/16,fd00::/8");
    let list = NetList::parse(text.as_bytes()).unwrap();
    let mut storage = std::vec![NetRange::default(); list.len()];
    let set = list.build(&mut storage);
    for probe in 0..300u32 {
        let address = IpAddr::V4(Ipv4Addr::from(probe.wrapping_mul(2654435761)));
        assert_eq!(set.contains(address), list.contains(address), "{address}");
    }
    assert!(set.contains(ip("10.200.3.4")) && set.contains(ip("fdff::1")));
}

#[test]
fn bad_networks_say_why() {
    let problem = |text: &[u8]| NetList::parse(text).unwrap_err().to_string();
    assert!(problem(b"10.0.0.0/33").contains("prefix length \"33\""));
    assert!(problem(b"fd00::/129").contains("prefix length"));
    for bad in ["10.0.0/8", "010.0.0.1", "10.0.0.0/", "host.example"] {
        assert!(NetList::parse(bad.as_bytes()).is_err(), "{bad}");
    }
}

#[test]
fn programs_match_base_names() {
    let list = ProgramList::parse(b"redis-server,redis-sentinel").unwrap();
    assert!(list.matches_any(["/usr/bin/redis-server"].map(str::as_bytes)));
    assert!(list.matches_any(["/bin/sh", "redis-sentinel"].map(str::as_bytes)));
    assert!(!list.matches_any(["/usr/bin/redis-cli", "redis-cli"].map(str::as_bytes)));
    assert!(ProgramList::parse(b"/usr/bin/redis-server").is_err());
    assert!(ProgramList::parse(b"a,,b").is_err());
}

#[test]
fn program_names_are_base_names_without_ascii_whitespace() {
    let list = ProgramList::parse(b"redis-server,redis-sentinel").unwrap();
    assert!(list.matches_any(["/usr/bin/redis-server"].map(str::as_bytes)));
    assert!(list.matches_any(["x", "redis-sentinel"].map(str::as_bytes)));
    assert!(!list.matches_any(["/usr/bin/redis-cli", "redis"].map(str::as_bytes)));
    for (text, bad) in [
        (
            "redis-server,/usr/bin/redis-server",
            "/usr/bin/redis-server",
        ),
        ("redis server", "redis server"),
        ("redis\tserver,x", "redis\tserver"),
    ] {
        assert_eq!(
            ProgramList::parse(text.as_bytes()),
            Err(ListProblem::BadProgram(bad.as_bytes()))
        );
    }
    assert_eq!(
        ListProblem::BadProgram(b"a b").to_string(),
        "\"a b\" is not a program base name (no slash, no space)"
    );
}
