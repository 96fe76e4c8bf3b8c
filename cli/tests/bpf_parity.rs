//! Parity of the eBPF programs with keepalive-config, the one definition: the override rule
//! (`Override::replace`, `SocketOption::tighter`) on a table of values for every option and
//! policy, set after and before connect, and the targeting rule (`Targeting::decide`) for active
//! (Connecting) and passive (Accepted) sockets under KEEPALIVE_PORTS and KEEPALIVE_NETS. Each
//! case is a real socket in a cgroup with the policy, read back with getsockopt; a value the
//! kernel rejects must fail exactly as it does outside the cgroup.

mod bpfkit;
mod common;

use std::net::{SocketAddr, TcpStream};
use std::process::Command;

use bpfkit::{DEFAULTS, Peer, TestCgroup, port};
use keepalive_config::{NetList, NetRange, Override, PortList, Role, SocketOption, Targeting};

const PORTS: (u16, u16) = (43200, 43599);

/// Configured: keepalive on, idle 2, interval 20, count 5, user timeout 3000 ms.
const CONFIGURED: [i32; 5] = [1, 2, 20, 5, 3000];

fn asked_values(option: SocketOption) -> Vec<i32> {
    let row = option.row();
    let mut values = vec![
        row.min.saturating_sub(1),
        row.min,
        -1,
        0,
        1,
        2,
        3,
        19,
        20,
        21,
        300,
        3000,
        5000,
        row.max,
        row.max.saturating_add(1),
    ];
    values.sort_unstable();
    values.dedup();
    values
}

/// What getsockopt reads back for a value set (SO_KEEPALIVE reads 0 or 1).
fn read_back(option: SocketOption, value: i32) -> i32 {
    if option == SocketOption::KeepAlive {
        i32::from(value != 0)
    } else {
        value
    }
}

#[test]
#[ignore = "needs root: cgroups and bpf(2); scripts/test runs it"]
fn override_rule_matches_keepalive_config_on_every_option_and_value() {
    let peer = Peer::new("127.0.0.1", port(PORTS.0, PORTS.1));
    let port = peer.port.to_string();
    let sock = bpfkit::sock();
    let mut checked = 0;
    for (policy, name) in [
        (Override::No, "no"),
        (Override::Yes, "yes"),
        (Override::Tighten, "tighten"),
    ] {
        let cgroup = TestCgroup::new("parity");
        cgroup.attach_ok(&bpfkit::mixed_policy(name), &[]);
        for (index, option) in SocketOption::ALL.into_iter().enumerate() {
            let configured = CONFIGURED[index];
            for asked in asked_values(option) {
                let call = format!("{}:{}:{asked}", option.level(), option.name());
                for when in ["pre", "post"] {
                    let arg = format!("{when}={call}");
                    let args = ["connect", "127.0.0.1", port.as_str(), arg.as_str()];
                    let inside =
                        bpfkit::readbacks(&bpfkit::run_ok(&mut cgroup.command(sock, &args)));
                    let outside = bpfkit::readbacks(&bpfkit::run_ok(Command::new(sock).args(args)));
                    let (inside, outside) = (&inside[0], &outside[0]);
                    let what = format!("override={name} {option:?} asked {asked} {when} connect");
                    // The call itself: the same result as without the policy.
                    assert_eq!(inside.calls, outside.calls, "{what}");
                    let accepted = option.kernel_accepts(asked);
                    assert_eq!(
                        outside.calls.contains("-22"),
                        !accepted,
                        "{what}: the kernel's bounds are the table's: {outside:?}"
                    );
                    let expected = if accepted {
                        policy.replace(option, asked, configured).unwrap_or(asked)
                    } else {
                        configured
                    };
                    assert_eq!(
                        inside.values[index],
                        read_back(option, expected),
                        "{what}: {inside:?}"
                    );
                    // The other options are the configured ones.
                    for (other, value) in inside.values.iter().enumerate() {
                        if other != index {
                            assert_eq!(*value, CONFIGURED[other], "{what}: {inside:?}");
                        }
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 100, "{checked} cases");
}

/// A cgroup with the FILTERED policy under these filters (override yes).
fn filtered_cgroup(tag: &str, ports: &str, nets: &str) -> TestCgroup {
    let cgroup = TestCgroup::new(tag);
    let mut variables = FILTERED.to_vec();
    variables.push(("KEEPALIVE_PORTS", ports));
    variables.push(("KEEPALIVE_NETS", nets));
    cgroup.attach_ok(&variables, &["--override", "yes"]);
    cgroup
}

/// The lookup structures of the filters, built by keepalive-config as the library builds them.
fn filters(ports: &str, nets: &str) -> (keepalive_config::PortSet, Vec<NetRange>) {
    let list = NetList::parse(nets.as_bytes()).unwrap();
    let mut storage = vec![NetRange::default(); list.len()];
    let used = list.build(&mut storage).len();
    storage.truncate(used);
    (PortList::parse(ports.as_bytes()).unwrap().to_set(), storage)
}

fn targeting_of<'a>(ports: &'a keepalive_config::PortSet, nets: &'a [NetRange]) -> Targeting<'a> {
    Targeting {
        ports: Some(ports),
        nets: Some(keepalive_config::NetSet::from_sorted(nets)),
    }
}

fn configured(values: [i32; 5]) -> bool {
    values == [1, 7, 3, 4, 2500]
}

const FILTERED: [(&str, &str); 4] = [
    ("KEEPIDLE", "7"),
    ("KEEPINTVL", "3"),
    ("KEEPCNT", "4"),
    ("KEEPALIVE_USER_TIMEOUT", "2500"),
];

/// Active sockets: the remote port and the peer address decide.
#[test]
#[ignore = "needs root: cgroups and bpf(2); scripts/test runs it"]
fn targeting_of_connecting_sockets_matches_decide() {
    let listed = port(PORTS.0, PORTS.1);
    let unlisted = port(PORTS.0, PORTS.1);
    let peers = [Peer::new("::", listed), Peer::new("::", unlisted)];
    let ports_text = format!("{listed},1-2");
    let nets_text = "127.0.0.2,::1/128,10.0.0.0/8";
    let cgroup = filtered_cgroup("target-active", &ports_text, nets_text);
    let (ports, storage) = filters(&ports_text, nets_text);
    let rule = targeting_of(&ports, &storage);
    let mut seen = [0; 2];
    for peer in &peers {
        for host in ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.2"] {
            let port = peer.port.to_string();
            let lines = cgroup.run(bpfkit::sock(), &["connect", host, &port]);
            let remote: SocketAddr = SocketAddr::new(host.parse().unwrap(), peer.port);
            let expected = rule.decide(Role::Connecting, None, Some(remote)).targeted();
            let values = lines[0].values;
            assert_eq!(configured(values), expected, "{remote}: {values:?}");
            if !expected {
                assert_eq!(values, DEFAULTS, "{remote}");
            }
            seen[usize::from(expected)] += 1;
        }
    }
    assert!(
        seen[0] > 0 && seen[1] > 0,
        "both outcomes covered: {seen:?}"
    );
}

/// Passive sockets: the listener's port and each client's address decide; the server is in the
/// cgroup, the clients (bound to different source addresses) are not.
#[test]
#[ignore = "needs root: cgroups and bpf(2); scripts/test runs it"]
fn targeting_of_accepted_sockets_matches_decide() {
    let listed = port(PORTS.0, PORTS.1);
    let unlisted = port(PORTS.0, PORTS.1);
    let ports_text = format!("{listed}");
    let nets_text = "127.0.0.2,::1";
    let cgroup = filtered_cgroup("target-passive", &ports_text, nets_text);
    let (ports, storage) = filters(&ports_text, nets_text);
    let rule = targeting_of(&ports, &storage);
    let clients = ["127.0.0.1", "127.0.0.2", "::1"];
    let mut seen = [0; 2];
    for server_port in [listed, unlisted] {
        let port = server_port.to_string();
        let count = clients.len().to_string();
        let server = cgroup.serve(&["::", &port, &count]);
        let mut held = Vec::new();
        for client in clients {
            let host = if client.contains(':') {
                "::1"
            } else {
                "127.0.0.1"
            };
            held.push(connect_from(client, host, server_port));
        }
        let lines = server.finish();
        for accepted in lines.iter().filter(|l| l.role == "accepted") {
            let remote: SocketAddr = accepted.peer.parse().unwrap();
            let local = SocketAddr::new("::".parse().unwrap(), server_port);
            let expected = rule
                .decide(Role::Accepted, Some(local), Some(remote))
                .targeted();
            assert_eq!(
                configured(accepted.values),
                expected,
                "port {server_port} peer {remote}: {accepted:?}"
            );
            if !expected {
                assert_eq!(accepted.values, DEFAULTS);
            }
            seen[usize::from(expected)] += 1;
        }
        assert_eq!(lines.iter().filter(|l| l.role == "accepted").count(), 3);
    }
    assert!(
        seen[0] > 0 && seen[1] > 0,
        "both outcomes covered: {seen:?}"
    );
}

/// A client socket bound to `source` connected to `host:port` (outside the cgroup).
fn connect_from(source: &str, host: &str, port: u16) -> TcpStream {
    let family = if source.contains(':') {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    let local: SocketAddr = SocketAddr::new(source.parse().unwrap(), 0);
    let remote: SocketAddr = SocketAddr::new(host.parse().unwrap(), port);
    bound_stream(family, local, remote)
}

fn bound_stream(family: i32, local: SocketAddr, remote: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: socket() takes integers; the result is checked and owned by the TcpStream below.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a new socket that nothing else owns.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let raw = |address: SocketAddr| -> (libc::sockaddr_storage, libc::socklen_t) {
        // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = match address {
            SocketAddr::V4(v4) => {
                // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
                let sin = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in>() };
                sin.sin_family = libc::AF_INET as u16;
                sin.sin_port = v4.port().to_be();
                sin.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
                std::mem::size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(v6) => {
                // SAFETY: as above, for sockaddr_in6.
                let sin6 = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in6>() };
                sin6.sin6_family = libc::AF_INET6 as u16;
                sin6.sin6_port = v6.port().to_be();
                sin6.sin6_addr.s6_addr = v6.ip().octets();
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        (storage, len as libc::socklen_t)
    };
    let (local, local_len) = raw(local);
    let (remote, remote_len) = raw(remote);
    use std::os::fd::AsRawFd;
    // SAFETY: the addresses are valid sockaddr structures of the lengths given.
    let bound = unsafe { libc::bind(stream.as_raw_fd(), (&raw const local).cast(), local_len) };
    assert_eq!(bound, 0, "bind: {}", std::io::Error::last_os_error());
    // SAFETY: as above.
    let connected =
        unsafe { libc::connect(stream.as_raw_fd(), (&raw const remote).cast(), remote_len) };
    assert_eq!(connected, 0, "connect: {}", std::io::Error::last_os_error());
    stream
}
