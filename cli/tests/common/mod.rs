//! Helpers shared by the black-box tests of the `keepalive-preload` command. Finding the
//! library, scratch directories and the root check come from `testkit`.
#![allow(dead_code)] // each test file uses its own part

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};

use serde_json::{Value, json};

// Each test file uses part of these too.
#[allow(unused_imports)]
pub use testkit::{TempDir, VARIABLE_NAMES, copy_with_mode, library, require_root};

pub const BIN: &str = env!("CARGO_BIN_EXE_keepalive-preload");

/// The command with an environment free of the variables, so the tests see only what they set.
pub fn command() -> Command {
    let mut command = Command::new(BIN);
    without_variables(&mut command);
    command
}

/// Removes LD_PRELOAD and every variable of the library from a child's environment.
pub fn without_variables(command: &mut Command) {
    command.env_remove("LD_PRELOAD");
    for variable in VARIABLE_NAMES {
        command.env_remove(variable);
    }
}

pub fn capture(command: &mut Command) -> Output {
    command.output().expect("cannot start keepalive-preload")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn code(output: &Output) -> i32 {
    output
        .status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {output:?}"))
}

/// Debian's python3 (dynamically linked, so LD_PRELOAD applies), else python3 from PATH.
pub fn python() -> &'static str {
    if Path::new("/usr/bin/python3").is_file() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Why the inspect tests need root, for `require_root`.
pub const INSPECT_NEEDS_ROOT: &str =
    "inspect reads other processes' sockets with pidfd_getfd; setpriv";

/// The sockets of `inspect.rs` and `inspect_errors.rs`: a listener with keepalive 30/10/3
/// (accepted sockets inherit it), a connection to it whose client sets 40/11/4 and a 5000 ms
/// user timeout, an IPv6 listener and an IPv6 connection, and a UDP socket that inspect must
/// leave out.
pub fn all_on() -> Value {
    let on = json!({"keepalive": 1, "idle": 30, "interval": 10, "count": 3});
    json!([
        {"kind": "listen", "name": "l4", "host": "127.0.0.1", "opts": on},
        {"kind": "connect", "name": "c4", "to": "l4",
         "opts": {"keepalive": 1, "idle": 40, "interval": 11, "count": 4, "user_timeout_ms": 5000}},
        {"kind": "listen", "name": "l6", "host": "::1", "opts": on},
        {"kind": "connect", "name": "c6", "to": "l6", "opts": on},
        {"kind": "udp", "name": "udp"},
    ])
}

/// Compiles C source with gcc into `dir/name` with the extra flags (e.g. -static, -shared).
pub fn gcc(dir: &TempDir, name: &str, source: &str, flags: &[&str]) -> PathBuf {
    let source_path = dir.path(&format!("{name}.c"));
    std::fs::write(&source_path, source).expect("write C source");
    let output_path = dir.path(name);
    let result = Command::new("gcc")
        .args(flags)
        .arg("-o")
        .arg(&output_path)
        .arg(&source_path)
        .output()
        .expect("gcc is needed (scripts/test installs gcc and libc6-dev)");
    assert!(
        result.status.success(),
        "gcc {flags:?} failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    output_path
}

/// An empty shared object named like the library: preloading it makes the library "mapped"
/// without the library's behaviour, so inspect's verdicts depend only on what the test sets.
pub fn fake_library(dir: &TempDir) -> PathBuf {
    gcc(
        dir,
        "libkeepalive_preload.so",
        "int keepalive_preload_fake_marker = 1;\n",
        &["-shared", "-fPIC"],
    )
}

/// A process holding sockets that a Python script made and configured itself, alive until
/// dropped (its stdin closes and it exits).
pub struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
    pub pid: i32,
    /// name -> (fd, local port)
    pub sockets: Vec<(String, i32, u16)>,
}

impl Holder {
    pub fn fd(&self, name: &str) -> i32 {
        self.socket(name).1
    }

    pub fn port(&self, name: &str) -> u16 {
        self.socket(name).2
    }

    fn socket(&self, name: &str) -> &(String, i32, u16) {
        self.sockets
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no socket {name} in {:?}", self.sockets))
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes and configures sockets from a JSON spec (a list of items), prints
/// {"pid":..,"sockets":[[name, fd, port], ...]} and waits for stdin to close.
/// Items: {"kind":"listen","name":..,"host":"127.0.0.1"|"::1","port":0,"opts":{..}},
/// {"kind":"connect","name":..,"to":<listener name>,"opts":{..},"accepted_opts":{..}}
/// (names the client NAME and the accepted side NAME-accepted), {"kind":"udp","name":..}.
/// opts: keepalive, idle, interval, count, user_timeout_ms.
pub const HOLDER: &str = r#"
import json, os, socket as S, sys
NAMES = {"idle": S.TCP_KEEPIDLE, "interval": S.TCP_KEEPINTVL, "count": S.TCP_KEEPCNT,
         "user_timeout_ms": S.TCP_USER_TIMEOUT}
def opts(s, o):
    for k, v in o.items():
        if k == "keepalive":
            s.setsockopt(S.SOL_SOCKET, S.SO_KEEPALIVE, v)
        else:
            s.setsockopt(S.IPPROTO_TCP, NAMES[k], v)
keep, listeners, out = [], {}, []
for item in json.loads(sys.argv[1]):
    if item["kind"] == "listen":
        family = S.AF_INET6 if ":" in item["host"] else S.AF_INET
        s = S.socket(family, S.SOCK_STREAM)
        s.setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, 1)
        s.bind((item["host"], item.get("port", 0)))
        opts(s, item.get("opts", {}))
        s.listen(8)
        listeners[item["name"]] = s
        keep.append(s)
        out.append([item["name"], s.fileno(), s.getsockname()[1]])
    elif item["kind"] == "connect":
        l = listeners[item["to"]]
        c = S.socket(l.family, S.SOCK_STREAM)
        opts(c, item.get("opts", {}))
        c.connect(l.getsockname()[:2])
        a, _ = l.accept()
        opts(a, item.get("accepted_opts", {}))
        keep += [c, a]
        out.append([item["name"], c.fileno(), c.getsockname()[1]])
        out.append([item["name"] + "-accepted", a.fileno(), a.getsockname()[1]])
    elif item["kind"] == "udp":
        s = S.socket(S.AF_INET, S.SOCK_DGRAM)
        keep.append(s)
        out.append([item["name"], s.fileno(), 0])
print(json.dumps({"pid": os.getpid(), "sockets": out}), flush=True)
sys.stdin.read()
"#;

/// Starts the Python holder with `spec` and extra environment (no LD_PRELOAD unless given).
pub fn holder(spec: &Value, env: &[(&str, &str)]) -> Holder {
    let mut command = Command::new(python());
    command.arg("-c").arg(HOLDER).arg(spec.to_string());
    start_holder(command, env)
}

pub fn start_holder(mut command: Command, env: &[(&str, &str)]) -> Holder {
    without_variables(&mut command);
    command.envs(env.iter().copied());
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command.spawn().expect("start the socket holder");
    let stdin = child.stdin.take();
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the holder's report");
    let report: Value =
        serde_json::from_str(&line).unwrap_or_else(|error| panic!("holder said {line:?}: {error}"));
    let pid = report["pid"].as_i64().expect("pid") as i32;
    let sockets = report["sockets"]
        .as_array()
        .expect("sockets")
        .iter()
        .map(|entry| {
            (
                entry[0].as_str().expect("name").to_owned(),
                entry[1].as_i64().expect("fd") as i32,
                entry[2].as_u64().expect("port") as u16,
            )
        })
        .collect();
    Holder {
        child,
        stdin,
        pid,
        sockets,
    }
}

/// A statically linked C program holding a listener, a connection to it with keepalive
/// 30/10/3 on the client side only, and its accepted socket; reports like the Python holder.
pub const STATIC_HOLDER: &str = r#"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
static void must(int ok, const char *what) { if (!ok) { perror(what); _exit(3); } }
int main(void) {
    int one = 1, idle = 30, intvl = 10, cnt = 3;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    must(l >= 0 && bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 4) == 0, "listen");
    must(getsockname(l, (struct sockaddr *)&a, &len) == 0, "getsockname");
    int c = socket(AF_INET, SOCK_STREAM, 0);
    must(setsockopt(c, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) == 0, "SO_KEEPALIVE");
    must(setsockopt(c, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) == 0, "TCP_KEEPIDLE");
    must(setsockopt(c, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl) == 0, "TCP_KEEPINTVL");
    must(setsockopt(c, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt) == 0, "TCP_KEEPCNT");
    must(connect(c, (struct sockaddr *)&a, sizeof a) == 0, "connect");
    int s = accept(l, 0, 0);
    must(s >= 0, "accept");
    struct sockaddr_in b;
    len = sizeof b;
    must(getsockname(c, (struct sockaddr *)&b, &len) == 0, "getsockname");
    printf("{\"pid\":%d,\"sockets\":[[\"listener\",%d,%d],[\"client\",%d,%d],[\"client-accepted\",%d,%d]]}\n",
           (int)getpid(), l, ntohs(a.sin_port), c, ntohs(b.sin_port), s, ntohs(a.sin_port));
    fflush(stdout);
    char buf[64];
    while (read(0, buf, sizeof buf) > 0) {}
    return 0;
}
"#;

/// Runs `inspect` with the arguments and returns the output.
pub fn inspect(args: &[&str]) -> Output {
    capture(command().arg("inspect").args(args))
}

/// The JSON Lines of `inspect --json`, each parsed.
pub fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON: {line:?}: {error}"))
        })
        .collect()
}

/// The object for `fd` among the JSON lines.
pub fn by_fd(lines: &[Value], fd: i32) -> &Value {
    lines
        .iter()
        .find(|line| line["fd"] == fd)
        .unwrap_or_else(|| panic!("no object for fd {fd} in {lines:#?}"))
}

/// Writes to a child's stdin, ignoring a closed pipe.
pub fn feed(stdin: &mut ChildStdin, text: &str) {
    let _ = stdin.write_all(text.as_bytes());
}
