//! Unit tests of inspect's rooms.

use std::collections::HashMap;
use std::ffi::OsString;

use keepalive_config::KernelDefaults;

use super::expectation::program_names;
use super::judge::{Verdict, judge, targeted};
use super::proc_net::parse_net_address;
use super::state::TcpState;
use super::*;
use crate::library::mapped_library;
use crate::settings::{Filters, parse_kept};

fn socket(state: TcpState, local: &str, remote: Option<&str>, keepalive: bool) -> Socket {
    Socket {
        fd: 3,
        local: Some(local.parse().unwrap()),
        remote: remote.map(|r| r.parse().unwrap()),
        ipv6: false,
        state,
        keepalive,
        idle: 30,
        interval: 10,
        count: 3,
        user_timeout_ms: 0,
    }
}

fn expectation(pairs: &[(&str, &str)]) -> Expectation {
    let map: HashMap<&str, &str> = pairs.iter().copied().collect();
    let parsed = parse_kept(|name| map.get(name).map(OsString::from));
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    Expectation {
        acts: parsed.config.enabled,
        filters: Filters::new(&parsed.config),
        config: parsed.config,
        errors: Vec::new(),
        kernel: KernelDefaults::default(),
        source: "test".to_owned(),
        preload: None,
        needs_library: true,
    }
}

#[test]
fn net_rows_decode_like_the_kernel_prints_them() {
    let row = "   0: 0100007F:1F90 0100007F:D431 02 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 100 0 0 10 0";
    let (inode, local, remote) = parse_net_row(row).unwrap();
    assert_eq!(inode, 123456);
    assert_eq!(local.to_string(), "127.0.0.1:8080");
    assert_eq!(remote.to_string(), "127.0.0.1:54321");
    let v6 = parse_net_address("00000000000000000000000001000000:4268").unwrap();
    assert_eq!(show_address(&v6), "[::1]:17000");
}

#[test]
fn maps_find_the_library_by_file_name() {
    let maps = "7f00-7f01 r-xp 00000000 08:01 42   /usr/lib/x86_64-linux-gnu/libc.so.6\n\
                7f02-7f03 r-xp 00000000 08:01 43   /opt/my dir/libkeepalive_preload.so\n";
    assert_eq!(
        mapped_library(maps).as_deref(),
        Some("/opt/my dir/libkeepalive_preload.so")
    );
    assert_eq!(
        mapped_library("7f00-7f01 r-xp 00000000 08:01 42 /usr/lib/libkeepalive.so\n"),
        None
    );
    // What a failed preload (noexec mount) leaves behind is not the library loaded.
    assert_eq!(
        mapped_library("7f00-7f01 r--p 00000000 00:27 2   /mnt/libkeepalive_preload.so\n"),
        None
    );
}

#[test]
fn roles_from_listening_ports() {
    let listening = [17000];
    assert_eq!(
        role(
            &socket(TcpState::Listen, "0.0.0.0:17000", None, true),
            &listening
        ),
        Role::Listening
    );
    assert_eq!(
        role(
            &socket(
                TcpState::Established,
                "127.0.0.1:17000",
                Some("127.0.0.1:40000"),
                true
            ),
            &listening
        ),
        Role::Accepted
    );
    assert_eq!(
        role(
            &socket(
                TcpState::Established,
                "127.0.0.1:40000",
                Some("127.0.0.1:17000"),
                true
            ),
            &listening
        ),
        Role::Outgoing
    );
    assert_eq!(
        role(
            &socket(TcpState::Close, "0.0.0.0:0", None, true),
            &listening
        ),
        Role::Unconnected
    );
}

#[test]
fn ports_filter_uses_remote_port_for_outgoing_and_local_for_accepted() {
    let expectation = expectation(&[("KEEPALIVE_PORTS", "17000-17999")]);
    let outgoing = socket(
        TcpState::Established,
        "127.0.0.1:40000",
        Some("127.0.0.1:17001"),
        true,
    );
    assert!(targeted(&expectation, Role::Outgoing, &outgoing));
    let accepted = socket(
        TcpState::Established,
        "127.0.0.1:6379",
        Some("127.0.0.1:17001"),
        true,
    );
    assert!(!targeted(&expectation, Role::Accepted, &accepted));
    let unconnected = socket(TcpState::Close, "0.0.0.0:0", None, true);
    assert!(!targeted(&expectation, Role::Unconnected, &unconnected));
    let off = Expectation {
        acts: false,
        ..expectation
    };
    assert!(!targeted(&off, Role::Outgoing, &outgoing));
}

#[test]
fn nets_filter_uses_the_peer_and_skips_listeners() {
    let expectation = expectation(&[("KEEPALIVE_NETS", "10.0.0.0/8")]);
    let inside = socket(
        TcpState::Established,
        "10.0.0.1:6379",
        Some("10.1.1.1:40000"),
        true,
    );
    let outside = socket(
        TcpState::Established,
        "127.0.0.1:6379",
        Some("127.0.0.1:40000"),
        true,
    );
    assert!(targeted(&expectation, Role::Accepted, &inside));
    assert!(!targeted(&expectation, Role::Accepted, &outside));
    assert!(!targeted(
        &expectation,
        Role::Listening,
        &socket(TcpState::Listen, "0.0.0.0:6379", None, true)
    ));
}

#[test]
fn policies_judge_values() {
    let actual = socket(
        TcpState::Established,
        "127.0.0.1:40000",
        Some("127.0.0.1:17001"),
        true,
    ); // 30/10/3, uto 0
    let yes = expectation(&[
        ("KEEPALIVE_OVERRIDE", "yes"),
        ("KEEPIDLE", "30"),
        ("KEEPCNT", "3"),
    ]);
    assert_eq!(judge(&actual, Role::Outgoing, &yes).verdict, Verdict::Ok);
    let yes = expectation(&[("KEEPALIVE_OVERRIDE", "yes"), ("KEEPIDLE", "60")]);
    let judgement = judge(&actual, Role::Outgoing, &yes);
    assert_eq!(judgement.verdict, Verdict::Differs);
    assert_eq!(judgement.differences, vec![("idle", 30, 60)]);
    let tighten = expectation(&[("KEEPALIVE_OVERRIDE", "tighten"), ("KEEPIDLE", "60")]);
    assert_eq!(
        judge(&actual, Role::Outgoing, &tighten).verdict,
        Verdict::Ok
    );
    let tighten = expectation(&[("KEEPALIVE_OVERRIDE", "tighten"), ("KEEPIDLE", "20")]);
    assert_eq!(
        judge(&actual, Role::Outgoing, &tighten).verdict,
        Verdict::Differs
    );
    let tighten = expectation(&[
        ("KEEPALIVE_OVERRIDE", "tighten"),
        ("KEEPALIVE_USER_TIMEOUT", "5s"),
    ]);
    assert_eq!(
        judge(&actual, Role::Outgoing, &tighten).verdict,
        Verdict::Differs
    );
    let no = expectation(&[("KEEPIDLE", "60")]);
    let judgement = judge(&actual, Role::Outgoing, &no);
    assert_eq!(judgement.verdict, Verdict::Ok);
    assert_eq!(judgement.differences.len(), 1);
    let off = socket(
        TcpState::Established,
        "127.0.0.1:40000",
        Some("127.0.0.1:17001"),
        false,
    );
    assert_eq!(judge(&off, Role::Outgoing, &no).verdict, Verdict::Missing);
    let auto = expectation(&[
        ("KEEPALIVE_OVERRIDE", "yes"),
        ("KEEPIDLE", "30"),
        ("KEEPALIVE_USER_TIMEOUT", "auto"),
    ]);
    let judgement = judge(&actual, Role::Outgoing, &auto);
    assert_eq!(
        judgement.expected.unwrap().user_timeout_ms,
        Some((30 + 75 * 9) * 1000)
    );
}

#[test]
fn programs_match_a_rewritten_title() {
    let process = Process {
        pid: 1,
        exe: Some("/usr/bin/redis-check-rdb".to_owned()),
        argv0: Some("redis-server 127.0.0.1:6379".to_owned()),
        library: None,
        sockets: Vec::new(),
        maps: String::new(),
    };
    let listed = expectation(&[("KEEPALIVE_PROGRAMS", "redis-server")]);
    assert!(listed.config.acts_in_program(program_names(&process)));
    assert_eq!(program_name(&process), "redis-server");
    let unlisted = expectation(&[("KEEPALIVE_PROGRAMS", "redis-sentinel")]);
    assert!(!unlisted.config.acts_in_program(program_names(&process)));
}

#[test]
fn states_keep_the_kernel_numbers() {
    for number in 1..=12 {
        assert_eq!(TcpState::from_kernel(number) as u8, number);
    }
    assert_eq!(TcpState::from_kernel(0), TcpState::Unknown);
    assert_eq!(TcpState::from_kernel(13), TcpState::Unknown);
    assert_eq!(TcpState::from_kernel(1).name(), "ESTABLISHED");
    assert_eq!(TcpState::from_kernel(10).name(), "LISTEN");
    assert_eq!(TcpState::from_kernel(12).name(), "NEW-SYN-RECV");
}

#[test]
fn json_lines_keep_their_fields_and_order() {
    let process = Process {
        pid: 42,
        exe: Some("/usr/bin/redis-server".to_owned()),
        argv0: Some("redis-server \"*:6379\"\n".to_owned()),
        library: None,
        sockets: vec![socket(
            TcpState::Established,
            "127.0.0.1:40000",
            Some("127.0.0.1:17001"),
            true,
        )],
        maps: String::new(),
    };
    let judgements = judge_process(&process, None);
    assert_eq!(
        json_lines(&process, None, &judgements),
        "{\"pid\":42,\"fd\":3,\"program\":\"redis-server\",\"family\":\"ipv4\",\
         \"local\":\"127.0.0.1:40000\",\"remote\":\"127.0.0.1:17001\",\"state\":\"ESTABLISHED\",\
         \"role\":\"outgoing\",\"keepalive\":true,\"idle\":30,\"interval\":10,\"count\":3,\
         \"user_timeout_ms\":0,\"library\":false,\"verdict\":\"ok\"}\n"
    );
    let yes = expectation(&[("KEEPIDLE", "20"), ("KEEPALIVE_OVERRIDE", "yes")]);
    let judgements = judge_process(&process, Some(&yes));
    let line = json_lines(&process, Some(&yes), &judgements);
    assert!(
        line.ends_with(
            ",\"library\":false,\"expected\":{\"keepalive\":true,\"idle\":20,\"interval\":null,\
             \"count\":null,\"user_timeout_ms\":null},\"differences\":[\"idle\"],\"verdict\":\"differs\"}\n"
        ),
        "{line}"
    );
    let mut unconnected = process;
    unconnected.sockets[0].remote = None;
    let off = expectation(&[("KEEPALIVE", "off")]);
    let judgements = judge_process(&unconnected, Some(&off));
    let line = json_lines(&unconnected, Some(&off), &judgements);
    assert!(
        line.contains(",\"remote\":null,")
            && line.contains(",\"expected\":null,\"differences\":[],"),
        "{line}"
    );
}
