//! `inspect` when it cannot read a process: no such process, a thread id, no rights of ptrace,
//! a good pid with a bad one, and pidfd_getfd failing (ENOSYS, EPERM): status 2 and a clear
//! message naming the pid.

mod common;

use std::process::Command;

use common::*;

#[test]
#[ignore = "needs root: pidfd_getfd on other processes; scripts/test runs it"]
fn errors_exit_2_with_a_clear_message() {
    require_root(INSPECT_NEEDS_ROOT);
    // No such process.
    let output = inspect(&["2147483646"]);
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("pid 2147483646: no such process"),
        "{}",
        stderr(&output)
    );

    // A thread id: this test runs on one of the test harness's threads.
    let pid = std::process::id();
    let thread = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .find(|tid| *tid != pid.to_string());
    if let Some(thread) = thread {
        let output = inspect(&[&thread]);
        assert_eq!(code(&output), 2);
        assert!(
            stderr(&output).contains(&format!("pid {thread}: is a thread of process {pid}")),
            "{}",
            stderr(&output)
        );
    }

    // Without the rights of ptrace: an unprivileged user inspecting a root process.
    let holder = holder(&all_on(), &[]);
    let output = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            BIN,
            "inspect",
        ])
        .arg(holder.pid.to_string())
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(code(&output), 2, "{}{}", stdout(&output), stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains(&format!("pid {}: not permitted", holder.pid))
            && message.contains("ptrace"),
        "{message}"
    );

    // One good pid and one bad: the good one is still reported, the status is 2.
    let output = inspect(&["--json", &holder.pid.to_string(), "2147483646"]);
    assert_eq!(code(&output), 2);
    assert_eq!(json_lines(&output).len(), 6);
}

/// Runs argv[2..] with pidfd_getfd failing with errno argv[1] (a seccomp filter): ENOSYS as on
/// Linux < 5.6, EPERM as without the rights of ptrace.
const FAILING_PIDFD_GETFD: &str = r#"
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
SYS_pidfd_getfd, ERRNO = 438, int(sys.argv[1])
program = b"".join([
    struct.pack("HBBI", 0x20, 0, 0, 0),                    # A = seccomp_data.nr
    struct.pack("HBBI", 0x15, 0, 1, SYS_pidfd_getfd),      # if A == pidfd_getfd
    struct.pack("HBBI", 0x06, 0, 0, 0x00050000 | ERRNO),   #   return ERRNO
    struct.pack("HBBI", 0x06, 0, 0, 0x7fff0000),           # return ALLOW
])
filters = ctypes.create_string_buffer(program)
class Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Program(4, ctypes.addressof(filters))
if libc.prctl(38, 1, 0, 0, 0) or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0):
    sys.exit("seccomp: errno %d" % ctypes.get_errno())
os.execv(sys.argv[2], sys.argv[2:])
"#;

#[test]
#[ignore = "needs root: pidfd_getfd on other processes; scripts/test runs it"]
fn pidfd_getfd_failures_are_clear_errors() {
    require_root(INSPECT_NEEDS_ROOT);
    let holder = holder(&all_on(), &[]);
    for (errno, message) in [
        ("38", "this kernel has no pidfd_getfd (Linux >= 5.6 needed"),
        (
            "1",
            "not permitted to duplicate its sockets: pidfd_getfd needs the rights of ptrace",
        ),
    ] {
        let output = Command::new(python())
            .args(["-c", FAILING_PIDFD_GETFD, errno, BIN, "inspect"])
            .arg(holder.pid.to_string())
            .output()
            .unwrap();
        assert_eq!(code(&output), 2, "{}{}", stdout(&output), stderr(&output));
        assert!(
            stderr(&output).contains(&format!("pid {}: {message}", holder.pid)),
            "{}",
            stderr(&output)
        );
    }
}
