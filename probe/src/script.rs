//! `errno-script`: a fixed sequence of hooked calls that succeed or fail in interesting ways,
//! printing `LABEL ret=.. errno=..` for each. errno is set to EDOM before every call, so a
//! library that writes errno after a success shows up. The output must be byte-for-byte the
//! same with and without the library, under every configuration.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::sys::{self, Outcome};

fn show(label: &str, outcome: Outcome) -> i32 {
    println!("{label} {outcome}");
    outcome.ret as i32
}

fn call(label: &str, f: impl FnOnce() -> i32) -> i32 {
    show(label, Outcome::of(|| i64::from(f())))
}

/// Runs `f` on a fresh TCP socket of `domain`, closes it, and returns what `f` returned with
/// errno as `f` left it.
fn on_fresh_socket(domain: i32, f: impl FnOnce(i32) -> i32) -> i32 {
    let fd = sys::socket(domain, libc::SOCK_STREAM, 0);
    let ret = f(fd);
    let errno = sys::errno();
    sys::close(fd);
    sys::set_errno(errno);
    ret
}

pub fn errno_script() {
    use libc::*;
    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);

    // socket(): failures, then every shape of TCP socket.
    call("socket-bad-domain", || sys::socket(12345, SOCK_STREAM, 0));
    call("socket-bad-type", || sys::socket(AF_INET, 99, 0));
    call("socket-bad-flags", || {
        sys::socket(AF_INET, SOCK_STREAM | 0x4000_0000, 0)
    });
    call("socket-stream-udp", || {
        sys::socket(AF_INET, SOCK_STREAM, IPPROTO_UDP)
    });
    call("socket-dgram-tcp", || {
        sys::socket(AF_INET, SOCK_DGRAM, IPPROTO_TCP)
    });
    call("socket-inet6-bad-type", || sys::socket(AF_INET6, 99, 0));

    // A nonblocking listener: accept4 with bad flags, accept with nothing pending.
    let listener = call("socket-listener", || {
        sys::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)
    });
    call("bind-listener", || {
        sys::bind(listener, SocketAddr::new(v4, 0))
    });
    call("listen-listener", || sys::listen(listener, 16));
    let port = sys::local_port(listener);
    call("accept4-bad-flags", || sys::accept4(listener, 0x1));
    call("accept-nothing-pending", || sys::accept(listener));
    call("accept4-nothing-pending", || {
        sys::accept4(listener, SOCK_CLOEXEC)
    });

    // A nonblocking connect: EINPROGRESS, then EISCONN once established.
    let client = call("socket-client-nonblock", || {
        sys::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
    });
    let target = SocketAddr::new(v4, port);
    let first = Outcome::of(|| i64::from(sys::connect(client, target)));
    // Loopback may complete at once or report EINPROGRESS; both runs see the same kernel.
    let in_progress = first.ret < 0 && first.errno == EINPROGRESS;
    println!(
        "connect-nonblock in-progress-or-done={}",
        in_progress || first.ret == 0
    );
    sys::poll_one(client, POLLOUT, 5000);
    call("connect-again", || sys::connect(client, target));
    sys::poll_one(listener, POLLIN, 5000);
    let accepted = call("accept4-pending", || sys::accept4(listener, SOCK_CLOEXEC));
    call("accept-after-drain", || sys::accept(listener));

    // A blocking connect to a bound but not listening port: ECONNREFUSED.
    let closed = call("socket-closed-port", || {
        sys::socket(AF_INET, SOCK_STREAM, 0)
    });
    call("bind-closed-port", || {
        sys::bind(closed, SocketAddr::new(v4, 0))
    });
    let closed_port = sys::local_port(closed);
    let refused = call("socket-refused", || sys::socket(AF_INET, SOCK_STREAM, 0));
    call("connect-refused", || {
        sys::connect(refused, SocketAddr::new(v4, closed_port))
    });
    call("connect-after-refused", || {
        sys::connect(refused, SocketAddr::new(v4, closed_port))
    });

    // IPv6 blocking connect and accept.
    let listener6 = call("socket-listener6", || sys::socket(AF_INET6, SOCK_STREAM, 0));
    call("bind-listener6", || {
        sys::bind(listener6, SocketAddr::new(v6, 0))
    });
    call("listen-listener6", || sys::listen(listener6, 16));
    let port6 = sys::local_port(listener6);
    let client6 = call("socket-client6", || sys::socket(AF_INET6, SOCK_STREAM, 0));
    call("connect-client6", || {
        sys::connect(client6, SocketAddr::new(v6, port6))
    });
    let accepted6 = call("accept-listener6", || sys::accept(listener6));
    call("connect-v4-address-on-v6-socket", || {
        on_fresh_socket(AF_INET6, |fd| {
            sys::connect(fd, SocketAddr::new(v4, closed_port))
        })
    });

    // The program's own setsockopt calls, valid and invalid, on TCP sockets.
    for (name, fd) in [
        ("client", client),
        ("accepted", accepted),
        ("accepted6", accepted6),
    ] {
        let tcp = |label: &str, option: i32, value: i32| {
            call(&format!("setsockopt-{name}-{label}"), || {
                sys::setsockopt_int(fd, IPPROTO_TCP, option, value)
            });
        };
        tcp("idle-0", TCP_KEEPIDLE, 0);
        tcp("idle-32768", TCP_KEEPIDLE, 32768);
        tcp("idle-negative", TCP_KEEPIDLE, -5);
        tcp("intvl-0", TCP_KEEPINTVL, 0);
        tcp("intvl-40000", TCP_KEEPINTVL, 40000);
        tcp("cnt-0", TCP_KEEPCNT, 0);
        tcp("cnt-128", TCP_KEEPCNT, 128);
        tcp("user-timeout-negative", TCP_USER_TIMEOUT, -1);
        tcp("idle-30", TCP_KEEPIDLE, 30);
        tcp("intvl-10", TCP_KEEPINTVL, 10);
        tcp("cnt-3", TCP_KEEPCNT, 3);
        tcp("user-timeout-0", TCP_USER_TIMEOUT, 0);
        tcp("user-timeout-999999", TCP_USER_TIMEOUT, 999_999);
        tcp("idle-32767", TCP_KEEPIDLE, 32767);
        call(&format!("setsockopt-{name}-keepalive-0"), || {
            sys::setsockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE, 0)
        });
        call(&format!("setsockopt-{name}-keepalive-7"), || {
            sys::setsockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE, 7)
        });
        call(&format!("setsockopt-{name}-idle-optlen-8"), || {
            sys::setsockopt_len(fd, IPPROTO_TCP, TCP_KEEPIDLE, 30, 8)
        });
        call(&format!("setsockopt-{name}-idle-optlen-2"), || {
            sys::setsockopt_len(fd, IPPROTO_TCP, TCP_KEEPIDLE, 30, 2)
        });
        call(&format!("setsockopt-{name}-keepalive-optlen-0"), || {
            sys::setsockopt_len(fd, SOL_SOCKET, SO_KEEPALIVE, 1, 0)
        });
        call(&format!("setsockopt-{name}-idle-null"), || {
            // SAFETY: a NULL optval is what is being tested; the kernel answers EFAULT.
            unsafe { setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, std::ptr::null(), 4) }
        });
        call(&format!("setsockopt-{name}-keepalive-null"), || {
            // SAFETY: as above.
            unsafe { setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, std::ptr::null(), 4) }
        });
        call(&format!("setsockopt-{name}-sol-socket-optname-4"), || {
            sys::setsockopt_int(fd, SOL_SOCKET, TCP_KEEPIDLE, 30)
        });
        call(&format!("setsockopt-{name}-bad-level"), || {
            sys::setsockopt_int(fd, 9999, TCP_KEEPIDLE, 30)
        });
        call(&format!("setsockopt-{name}-nodelay"), || {
            sys::setsockopt_int(fd, IPPROTO_TCP, TCP_NODELAY, 1)
        });
    }

    // setsockopt on descriptors that are not TCP sockets.
    call("setsockopt-ebadf-999", || {
        sys::setsockopt_int(999, IPPROTO_TCP, TCP_KEEPIDLE, 30)
    });
    call("setsockopt-ebadf-negative", || {
        sys::setsockopt_int(-1, SOL_SOCKET, SO_KEEPALIVE, 1)
    });
    let mut pipe_fds = [0; 2];
    // SAFETY: pipe_fds has room for two descriptors.
    call("pipe", || unsafe { pipe(pipe_fds.as_mut_ptr()) });
    call("setsockopt-pipe", || {
        sys::setsockopt_int(pipe_fds[0], SOL_SOCKET, SO_KEEPALIVE, 1)
    });
    call("setsockopt-pipe-idle", || {
        sys::setsockopt_int(pipe_fds[0], IPPROTO_TCP, TCP_KEEPIDLE, 30)
    });
    let udp = call("socket-udp", || sys::socket(AF_INET, SOCK_DGRAM, 0));
    call("setsockopt-udp-keepalive", || {
        sys::setsockopt_int(udp, SOL_SOCKET, SO_KEEPALIVE, 1)
    });
    call("setsockopt-udp-keepalive-0", || {
        sys::setsockopt_int(udp, SOL_SOCKET, SO_KEEPALIVE, 0)
    });
    call("setsockopt-udp-idle", || {
        sys::setsockopt_int(udp, IPPROTO_TCP, TCP_KEEPIDLE, 30)
    });
    call("setsockopt-udp-user-timeout", || {
        sys::setsockopt_int(udp, IPPROTO_TCP, TCP_USER_TIMEOUT, 1000)
    });
    let unix = call("socket-unix", || sys::socket(AF_UNIX, SOCK_STREAM, 0));
    call("setsockopt-unix-keepalive", || {
        sys::setsockopt_int(unix, SOL_SOCKET, SO_KEEPALIVE, 1)
    });
    call("setsockopt-unix-idle", || {
        sys::setsockopt_int(unix, IPPROTO_TCP, TCP_KEEPIDLE, 30)
    });

    // listen, connect and accept on the wrong kind of descriptor.
    call("listen-ebadf", || sys::listen(999, 1));
    call("listen-pipe", || sys::listen(pipe_fds[0], 1));
    call("listen-udp", || sys::listen(udp, 1));
    call("connect-ebadf", || {
        sys::connect(-1, SocketAddr::new(v4, port))
    });
    call("connect-pipe", || {
        sys::connect(pipe_fds[0], SocketAddr::new(v4, port))
    });
    call("connect-short-addrlen", || {
        on_fresh_socket(AF_INET, |fd| {
            let raw = sys::RawAddr::new(SocketAddr::new(v4, port));
            // SAFETY: the address is valid; the short length is what is being tested.
            unsafe { connect(fd, raw.ptr(), 4) }
        })
    });
    call("connect-null-address", || {
        on_fresh_socket(AF_INET, |fd| {
            // SAFETY: a NULL address is what is being tested; the kernel answers EFAULT.
            unsafe { connect(fd, std::ptr::null(), 16) }
        })
    });
    call("connect-oversize-addrlen", || {
        on_fresh_socket(AF_INET, |fd| {
            let raw = sys::RawAddr::new(SocketAddr::new(v4, port));
            // SAFETY: raw.storage is a whole sockaddr_storage, so its full size is readable.
            unsafe { connect(fd, raw.ptr(), size_of::<sockaddr_storage>() as socklen_t) }
        })
    });
    call("connect-af-unspec-disconnects", || {
        on_fresh_socket(AF_INET6, |fd| {
            sys::connect(fd, SocketAddr::new(v6, port6));
            // SAFETY: sockaddr_storage is plain data; all-zero is AF_UNSPEC.
            let unspec: sockaddr_storage = unsafe { std::mem::zeroed() };
            // SAFETY: unspec is a valid, readable sockaddr of the size given.
            unsafe {
                connect(
                    fd,
                    (&raw const unspec).cast(),
                    size_of::<sockaddr_in6>() as socklen_t,
                )
            }
        })
    });
    call("accept-ebadf", || sys::accept(999));
    call("accept-pipe", || sys::accept(pipe_fds[0]));
    call("accept-not-listening", || sys::accept(closed));
    call("accept4-ebadf", || sys::accept4(-1, SOCK_NONBLOCK));
    call("accept-udp", || sys::accept(udp));

    accept_buffers();

    for fd in [
        listener,
        client,
        accepted,
        closed,
        refused,
        listener6,
        client6,
        accepted6,
        udp,
        unix,
        pipe_fds[0],
        pipe_fds[1],
    ] {
        sys::close(fd);
    }
    println!("errno-script done");
}

/// accept/accept4 with every shape of address buffer the program may pass: none, large,
/// too short (truncated), zero length, NULL address with a length. Prints the returned length
/// and the first 32 bytes of the buffer (filled with 0xaa first; the peer's port is masked as
/// `pppp`, it differs between runs). A library that reads the peer address must leave all of
/// this exactly as the kernel wrote it.
fn accept_buffers() {
    use libc::*;
    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let any6 = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    // (label, address NULL, length NULL, length given)
    let shapes: [(&str, bool, bool, socklen_t); 6] = [
        ("null", true, true, 0),
        ("large", false, false, 128),
        ("short-4", false, false, 4),
        ("short-16", false, false, 16),
        ("zero", false, false, 0),
        ("null-address-with-length", true, false, 128),
    ];
    for (family, listen_ip, connect_ip) in [("v4", v4, v4), ("v6", v6, v6), ("mapped", any6, v4)] {
        let listener = sys::check(
            sys::socket(sys::family(listen_ip), SOCK_STREAM, 0),
            "socket",
        );
        sys::check(sys::bind(listener, SocketAddr::new(listen_ip, 0)), "bind");
        sys::check(sys::listen(listener, 16), "listen");
        let port = sys::local_port(listener);
        for (index, (label, null_address, null_length, length)) in shapes.into_iter().enumerate() {
            let client = sys::check(
                sys::socket(sys::family(connect_ip), SOCK_STREAM, 0),
                "socket",
            );
            sys::check(
                sys::connect(client, SocketAddr::new(connect_ip, port)),
                "connect",
            );
            let mut buffer = [0xaau8; 128];
            let mut returned: socklen_t = length;
            let address: *mut sockaddr = if null_address {
                std::ptr::null_mut()
            } else {
                buffer.as_mut_ptr().cast()
            };
            let length_ptr: *mut socklen_t = if null_length {
                std::ptr::null_mut()
            } else {
                &raw mut returned
            };
            let use_accept4 = index % 2 == 1;
            let outcome = Outcome::of(|| {
                // SAFETY: address is NULL or 128 writable bytes, at least `length`;
                // length_ptr is NULL or points to `returned`.
                i64::from(unsafe {
                    if use_accept4 {
                        accept4(listener, address, length_ptr, SOCK_CLOEXEC)
                    } else {
                        accept(listener, address, length_ptr)
                    }
                })
            });
            let bytes: String = buffer[..32]
                .iter()
                .enumerate()
                .map(|(at, byte)| {
                    if (at == 2 || at == 3) && !null_address && length > 3 {
                        "pp".to_owned()
                    } else {
                        format!("{byte:02x}")
                    }
                })
                .collect();
            let call = if use_accept4 { "accept4" } else { "accept" };
            println!("{call}-buffer-{family}-{label} {outcome} len={returned} bytes={bytes}");
            if outcome.ret >= 0 {
                sys::close(outcome.ret as i32);
            }
            sys::close(client);
        }
        sys::close(listener);
    }
}

/// Descriptor numbers that held a TCP socket the library configured, then something else made
/// without socket(): a socketpair, a dup2'd UNIX socket. The program's own SO_KEEPALIVE=0 on
/// them must stay 0 under every override policy (they are not TCP sockets), as without the
/// library.
pub fn reused_descriptors() {
    use libc::*;
    let show = |label: &str, fd: i32| {
        let outcome =
            Outcome::of(|| i64::from(sys::setsockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE, 0)));
        let keepalive = sys::getsockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE);
        println!("{label} setsockopt-keepalive-0 {outcome} read-back={keepalive:?}");
    };
    // A closed TCP socket's number reused by socketpair().
    let tcp = sys::check(sys::socket(AF_INET, SOCK_STREAM, 0), "socket");
    sys::close(tcp);
    let mut pair = [0; 2];
    // SAFETY: pair has room for two descriptors.
    sys::check(
        unsafe { socketpair(AF_UNIX, SOCK_STREAM, 0, pair.as_mut_ptr()) },
        "socketpair",
    );
    println!("reused-by-socketpair same-number={}", pair[0] == tcp);
    show("reused-by-socketpair", pair[0]);
    // A live TCP socket's number replaced by dup2 of a UNIX socket.
    let tcp = sys::check(sys::socket(AF_INET, SOCK_STREAM, 0), "socket");
    // SAFETY: dup2 on descriptors this program owns.
    sys::check(unsafe { dup2(pair[1], tcp) }, "dup2");
    show("replaced-by-dup2", tcp);
    for fd in [pair[0], pair[1], tcp] {
        sys::close(fd);
    }
}
