//! `apply` on a process with 10,000 TCP sockets (5,000 loopback connections, both ends, and
//! their listener): every one changed, read back with `inspect --json`, and the time it takes.
//!
//! Needs root (pidfd_getfd) and room for 10,100 descriptors per process (RLIMIT_NOFILE hard
//! limit); fails, never skips, without them.

mod apply_support;
mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use apply_support::*;
use common::*;

const CONNECTIONS: usize = 5_000;

#[test]
#[ignore = "needs root: pidfd_getfd on another process; scripts/test runs it"]
fn ten_thousand_sockets_are_all_changed() {
    require_root(NEEDS_ROOT);
    let port = port(1);
    let script = format!(
        r#"
import os, resource, socket as S, struct, sys
want = 2 * {CONNECTIONS} + 100
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if hard < want:
    sys.exit(f"RLIMIT_NOFILE hard limit {{hard}} < {{want}}: raise it (ulimit -Hn)")
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
l = S.socket(); l.setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", {port})); l.listen(4096)
pairs = []
for _ in range({CONNECTIONS}):
    c = S.create_connection(("127.0.0.1", {port})); a, _ = l.accept(); pairs.append((c, a))
print(os.getpid(), flush=True)
sys.stdin.readline()
# Reset, not closed: no 10,000 TIME_WAITs on ephemeral ports other tests may want.
RESET = struct.pack("ii", 1, 0)
for pair in pairs:
    for s in pair:
        s.setsockopt(S.SOL_SOCKET, S.SO_LINGER, RESET); s.close()
"#
    );
    let started = Instant::now();
    let mut child = Command::new(python())
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read pid");
    let pid: i32 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("the holder did not start: {line:?}"));
    println!(
        "{} TCP sockets made in {:.2?}",
        2 * CONNECTIONS + 1,
        started.elapsed()
    );
    let sockets = 2 * CONNECTIONS + 1;
    let before = inspect_json(pid);
    assert_eq!(before.len(), sockets);
    assert!(before.iter().all(|line| values(line) == KERNEL));

    let mut args = OURS.to_vec();
    let pid_text = pid.to_string();
    args.extend(["--override", "yes", "--json", &pid_text]);
    let timer = Instant::now();
    let output = apply(&args);
    let elapsed = timer.elapsed();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let reported = json_lines(&output);
    assert_eq!(reported.len(), sockets);
    assert!(
        reported.iter().all(|line| line["result"] == "changed"),
        "{}",
        stderr(&output)
    );
    println!(
        "apply on {sockets} sockets: {elapsed:.2?} wall ({:.1} µs per socket); {}",
        elapsed.as_secs_f64() * 1e6 / sockets as f64,
        stderr(&output).trim()
    );

    let after = inspect_json(pid);
    assert_eq!(after.len(), sockets);
    let ours = after
        .iter()
        .filter(|line| values(line) == OUR_VALUES)
        .count();
    assert_eq!(ours, sockets, "{ours} of {sockets} carry ours");

    let mut stdin = child.stdin.take().expect("stdin");
    let _ = stdin.write_all(b"close\n");
    drop(stdin);
    let _ = child.wait();
    assert!(
        elapsed.as_secs() < 60,
        "apply took {elapsed:.2?} for {sockets} sockets"
    );
}
