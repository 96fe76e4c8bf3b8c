//! The eBPF cases' static programs, built on the host with `gcc -static` (no dynamic C
//! library, so no preload reaches them, and they run in the container whatever its libc): the
//! `sock` server and client and a socket-activated server.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use testkit::{is_static, tool};

use super::repo;

/// The eBPF tests' static C server and client (cli/tests/bpf/sock.c), built once per test
/// process with `gcc -static` into target/<profile>/kpsb-build: no dynamic C library, so no
/// preload could reach it, and it runs in the container whatever its libc.
pub fn static_sock() -> PathBuf {
    static SOCK: OnceLock<PathBuf> = OnceLock::new();
    SOCK.get_or_init(|| {
        let source = std::fs::read_to_string(repo().join("cli/tests/bpf/sock.c"))
            .expect("read cli/tests/bpf/sock.c");
        gcc_static("sock", &source)
    })
    .clone()
}

/// A socket-activated server: accepts on fd 3 (the listener systemd passes, `Accept=no`),
/// sets 30/10/3 on each connection as `sock serve` does, and prints the listener's and each
/// accepted socket's read-back in `sock`'s format.
const ACTIVATED_C: &str = r#"
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
static int get(int fd, int level, int name)
{
	int value = -1;
	socklen_t len = sizeof(value);
	return getsockopt(fd, level, name, &value, &len) ? -1 : value;
}
static void report(const char *role, int fd, const char *calls)
{
	printf("role=%s peer=- calls=%s keepalive=%d idle=%d intvl=%d cnt=%d uto=%d\n", role, calls,
	       get(fd, SOL_SOCKET, SO_KEEPALIVE), get(fd, IPPROTO_TCP, TCP_KEEPIDLE),
	       get(fd, IPPROTO_TCP, TCP_KEEPINTVL), get(fd, IPPROTO_TCP, TCP_KEEPCNT),
	       get(fd, IPPROTO_TCP, TCP_USER_TIMEOUT));
	fflush(stdout);
}
int main(void)
{
	const int own[3][2] = {{TCP_KEEPIDLE, 30}, {TCP_KEEPINTVL, 10}, {TCP_KEEPCNT, 3}};
	report("listener", 3, "-");
	for (;;) {
		char calls[64];
		int fd = accept(3, NULL, NULL), used = 0;
		if (fd < 0)
			return 1;
		for (int i = 0; i < 3; i++)
			used += snprintf(calls + used, sizeof(calls) - used, "%s%d", i ? "," : "-/",
					 setsockopt(fd, IPPROTO_TCP, own[i][0], &own[i][1], sizeof(int)));
		report("accepted", fd, calls);
		close(fd);
	}
}
"#;

/// The socket-activated server ([`ACTIVATED_C`]), static.
pub fn static_activated() -> PathBuf {
    static ACTIVATED: OnceLock<PathBuf> = OnceLock::new();
    ACTIVATED
        .get_or_init(|| gcc_static("activated", ACTIVATED_C))
        .clone()
}

/// `gcc -static` of a C source into target/<profile>/kpsb-build/NAME.
fn gcc_static(name: &str, source: &str) -> PathBuf {
    let dir = testkit::profile_dir().join("kpsb-build");
    std::fs::create_dir_all(&dir).expect("create kpsb-build");
    let out = dir.join(name);
    let mut child = Command::new(tool("gcc", "gcc"))
        .args(["-O1", "-Wall", "-static", "-x", "c", "-", "-o"])
        .arg(&out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gcc");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(source.as_bytes())
        .expect("write the source to gcc");
    let output = child.wait_with_output().expect("wait for gcc");
    assert!(
        output.status.success(),
        "gcc -static {name} failed (libc6-dev is needed):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(is_static(&out), "{} is not static", out.display());
    out
}
