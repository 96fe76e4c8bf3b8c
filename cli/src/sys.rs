//! The small OS layer of the command: pidfd_open/pidfd_getfd, the socket queries `inspect`
//! needs and the setsockopt and setns `apply` needs. Every `unsafe` block of the command lives
//! here.

use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use keepalive_config::sockaddr;

/// A pidfd for `pid` (Linux >= 5.3).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags by value and touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    owned(fd)
}

/// A duplicate, in this process, of the target's file descriptor `target_fd` (Linux >= 5.6,
/// needs PTRACE_MODE_ATTACH_REALCREDS over the target).
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, target_fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes a pidfd, a number and flags by value and touches no memory of
    // ours; a successful return is a new descriptor that nothing else owns.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target_fd, 0) };
    owned(fd)
}

fn owned(ret: libc::c_long) -> io::Result<OwnedFd> {
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this descriptor to us; it is open and owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An int-valued socket option.
pub fn getsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for writes of the sizes given; fd is open for the call.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    if ret == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets an int-valued socket option.
pub fn setsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32, value: i32) -> io::Result<()> {
    let value: libc::c_int = value;
    // SAFETY: value is valid for reads of the size given; fd is open for the call.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Moves the calling thread into the network namespace `namespace` (an open /proc/PID/ns/net);
/// needs CAP_SYS_ADMIN. Only the calling thread changes namespace.
pub fn setns_net(namespace: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns takes a descriptor and a flag by value and touches no memory of ours.
    let ret = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `tcpi_state` from TCP_INFO (the first byte of struct tcp_info).
pub fn tcp_state(fd: BorrowedFd<'_>) -> io::Result<u8> {
    let mut info = [0u8; 8];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: info is valid for writes of len bytes; the kernel copies at most len bytes.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    if ret == 0 && len >= 1 {
        Ok(info[0])
    } else if ret == 0 {
        Err(io::Error::from_raw_os_error(libc::EINVAL))
    } else {
        Err(io::Error::last_os_error())
    }
}

pub fn local_address(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    socket_address(fd, libc::getsockname)
}

/// The peer; `ENOTCONN` for listeners, unconnected and still-connecting sockets.
pub fn peer_address(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    socket_address(fd, libc::getpeername)
}

type NameCall =
    unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

fn socket_address(fd: BorrowedFd<'_>, call: NameCall) -> io::Result<SocketAddr> {
    let mut bytes = [0u8; sockaddr::STORAGE_LENGTH];
    let mut len = bytes.len() as libc::socklen_t;
    // SAFETY: bytes is valid for writes of len bytes; call is getsockname or getpeername.
    let ret = unsafe { call(fd.as_raw_fd(), bytes.as_mut_ptr().cast(), &raw mut len) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    bytes
        .get(..len as usize)
        .and_then(sockaddr::decode)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EAFNOSUPPORT))
}
