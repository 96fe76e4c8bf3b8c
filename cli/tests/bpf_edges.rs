//! Differential edge cases of the eBPF policy's promise that a program sees the same setsockopt
//! results with and without it: tests/bpf/edge.c makes, for every kind of socket (connected
//! IPv4 and IPv6, unconnected, listening, shut down and closed, UDP, UNIX, MPTCP), one call of
//! each of our options with lengths 0-5000, values at and past the kernel's bounds and bad
//! pointers, after setting a baseline of its own, and prints the return value, errno and what
//! getsockopt reads back. The same program runs in a cgroup with the policy and outside any:
//! the return value and errno must always be the same, and under override=no what is read back
//! too (the program's own values win, the baseline included).

mod bpfkit;
mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};

use bpfkit::TestCgroup;

const PORTS: (u16, u16) = (39000, 39999);

/// An even port of 39000-39999 with the next one free too (edge listens on both).
fn two_ports() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    for _ in 0..500 {
        let port = PORTS.0 + (NEXT.fetch_add(2, Ordering::Relaxed) % (PORTS.1 - PORTS.0));
        let free = |port: u16| {
            TcpListener::bind(("127.0.0.1", port)).is_ok()
                && TcpListener::bind(("::1", port)).is_ok()
        };
        if free(port) && free(port + 1) {
            return port;
        }
    }
    panic!("no two free ports in {}-{}", PORTS.0, PORTS.1);
}

/// case name -> (ret, the whole line)
type Lines = BTreeMap<String, (String, String)>;

fn parse(text: &str) -> Lines {
    text.lines()
        .filter_map(|line| {
            let case = line.split_whitespace().next()?.strip_prefix("case=")?;
            let ret = line
                .split_whitespace()
                .find_map(|field| field.strip_prefix("ret="))
                .unwrap_or("unavailable");
            Some((case.to_owned(), (ret.to_owned(), line.to_owned())))
        })
        .collect()
}

fn outside(args: &[&str]) -> Lines {
    parse(&bpfkit::run_ok(Command::new(bpfkit::edge()).args(args)))
}

fn inside(cgroup: &TestCgroup, args: &[&str]) -> Lines {
    parse(&bpfkit::run_ok(&mut cgroup.command(bpfkit::edge(), args)))
}

const POLICIES: [&str; 3] = ["no", "yes", "tighten"];

/// Every case `select` picks, under each override policy: the differences found.
fn differences(select: impl Fn(&str) -> bool, kinds: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for policy in POLICIES {
        let cgroup = TestCgroup::with_prefix("kpbr", "edge");
        cgroup.attach_ok(&bpfkit::mixed_policy(policy), &[]);
        for kind in kinds {
            let port = two_ports().to_string();
            let args = [port.as_str(), kind];
            let (with, without) = (inside(&cgroup, &args), outside(&args));
            assert_eq!(
                with.keys().collect::<Vec<_>>(),
                without.keys().collect::<Vec<_>>(),
                "the same cases ran"
            );
            for (case, (ret, line)) in &without {
                if !select(case) {
                    continue;
                }
                let (ret_with, line_with) = &with[case];
                if ret_with != ret || (policy == "no" && line_with != line) {
                    found.push(format!(
                        "override={policy}:\n  without: {line}\n  with:    {line_with}"
                    ));
                }
            }
        }
    }
    found
}

const ALL_KINDS: [&str; 8] = [
    "tcp4", "tcp6", "fresh", "listen", "shut", "udp", "unix", "mptcp",
];

/// An option length shorter than an int (0-3), whatever the pointer.
fn short(case: &str) -> bool {
    ["/len0/", "/len1/", "/len2/", "/len3/"]
        .iter()
        .any(|length| case.contains(length))
}

/// A pointer the kernel's own handler would not read all of (or read at all): an int at the
/// end of a mapping with a longer length, NULL or unmapped memory on a socket whose handler
/// refuses the option before reading it.
fn partly_mapped(case: &str) -> bool {
    case.ends_with("/tail") && !case.contains("/len4/")
        || (case.starts_with("udp/") || case.starts_with("unix/"))
            && (case.ends_with("/null") || case.ends_with("/unmapped"))
            && !case.contains("/len0/")
}

#[test]
#[ignore = "needs root: cgroups and bpf(2); scripts/test runs it"]
fn every_other_setsockopt_edge_case_is_the_same_as_without_the_policy() {
    // Lengths 4-5000, values at and past the kernel's bounds (SO_KEEPALIVE 2 and -1,
    // TCP_KEEPIDLE 0 and 32768, TCP_KEEPCNT 128, TCP_USER_TIMEOUT -1, INT_MIN/INT_MAX), NULL
    // and unmapped pointers on TCP sockets (EFAULT stays EFAULT), on every kind of socket.
    let found = differences(|case| !short(case) && !partly_mapped(case), &ALL_KINDS);
    assert!(
        found.is_empty(),
        "{} calls differ:\n{}",
        found.len(),
        found.join("\n")
    );
}
#[test]
#[ignore = "needs root: cgroups and bpf(2); scripts/test runs it"]
fn an_option_shorter_than_an_int_fails_with_einval_as_without_the_policy() {
    // setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &v, 0..3) and the same for the TCP options are
    // EINVAL for the kernel. The cgroup/setsockopt program's bound check (`optval +
    // sizeof(int) > optval_end`) never fires for them: the kernel hands the program a buffer
    // of max(16, optlen) bytes, zeroed past what it copied, so the program reads 0 (optlen 0,
    // or a NULL pointer with length 0) or the program's first bytes and sets that with
    // bpf_setsockopt: the call succeeds and changes the socket (SO_KEEPALIVE, NULL, 0 turns
    // keepalive off under `no`; under `yes` the configured value is set).
    let found = differences(short, &["tcp4", "tcp6", "listen", "fresh"]);
    assert!(
        found.is_empty(),
        "{} calls with optlen < 4 differ:\n{}",
        found.len(),
        found.join("\n")
    );
}
