//! Shared helpers of the black-box tests of the library: run `kp-probe` in a child process
//! with a controlled environment, and read its output. Finding the library and `kp-probe`,
//! scratch directories and the root and tool checks come from `testkit`.
//!
//! Every test binary includes this module and uses only part of it.
#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod differential;
mod inherit;
#[allow(unused_imports)]
pub use differential::*;
#[allow(unused_imports)]
pub use inherit::inherit_run;

// Each test file uses part of these too.
#[allow(unused_imports)]
pub use testkit::{
    TempDir, VARIABLE_NAMES, copy_with_mode, free_port, library, probe_path, require_root, tool,
    unique,
};

/// A child process to run: a program, its arguments and exactly the environment given (plus
/// `PATH`).
#[derive(Clone)]
pub struct Run {
    program: PathBuf,
    arg0: Option<OsString>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

/// `kp-probe ARGS` without the library.
pub fn probe(args: &[&str]) -> Run {
    Run::new(probe_path(), args)
}

impl Run {
    pub fn new(program: impl Into<PathBuf>, args: &[&str]) -> Self {
        Self {
            program: program.into(),
            arg0: None,
            args: args.iter().map(OsString::from).collect(),
            env: Vec::new(),
        }
    }

    /// Runs the program with this argv[0] instead of its path.
    pub fn arg0(mut self, arg0: impl Into<OsString>) -> Self {
        self.arg0 = Some(arg0.into());
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn envs(mut self, pairs: &[(&str, &str)]) -> Self {
        for (name, value) in pairs {
            self = self.env(*name, *value);
        }
        self
    }

    /// Under our library (`LD_PRELOAD=<library>`).
    pub fn preload(self) -> Self {
        self.env("LD_PRELOAD", library())
    }

    /// The command line, for messages.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        for (name, value) in &self.env {
            text += &format!("{}={:?} ", name.to_string_lossy(), value.to_string_lossy());
        }
        text += &self.program.display().to_string();
        for arg in &self.args {
            text += &format!(" {}", arg.to_string_lossy());
        }
        text
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args).env_clear().stdin(Stdio::null());
        if let Some(arg0) = &self.arg0 {
            use std::os::unix::process::CommandExt;
            command.arg0(arg0);
        }
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        command
    }

    /// Runs the child to its end.
    pub fn run(&self) -> Output {
        let output = self
            .command()
            .output()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", self.describe()));
        Output {
            described: self.describe(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            code: output.status.code(),
        }
    }

    /// Runs the child and asserts it exited 0 with nothing on stderr.
    pub fn run_ok(&self) -> Output {
        let output = self.run();
        output.assert_clean();
        output
    }
}

/// What a child printed and how it ended.
#[derive(Debug)]
pub struct Output {
    pub described: String,
    pub stdout: String,
    pub stderr: String,
    pub code: Option<i32>,
}

impl Output {
    /// Every line the child printed on stdout.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    pub fn assert_success(&self) {
        assert_eq!(self.code, Some(0), "{self}");
    }

    pub fn assert_clean(&self) {
        assert_eq!(self.code, Some(0), "{self}");
        assert_eq!(self.stderr, "", "nothing expected on stderr\n{self}");
    }

    /// The rest of the one stdout line that starts with `label ` (e.g. `client`).
    pub fn line(&self, label: &str) -> &str {
        labelled_line(&self.stdout, label, self)
    }

    /// The lines the library printed (they start with `keepalive-preload:`).
    pub fn library_lines(&self) -> Vec<&str> {
        library_lines(&self.stderr)
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "command: {}\nexit: {:?}\n--- stdout\n{}--- stderr\n{}---",
            self.described, self.code, self.stdout, self.stderr
        )
    }
}

/// The kernel's keepalive defaults on this machine (the net.ipv4.tcp_keepalive_* sysctls).
pub fn kernel_defaults() -> (i32, i32, i32) {
    let read = |name: &str| -> i32 {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or_else(|| panic!("cannot read net.ipv4.{name}"))
    };
    (
        read("tcp_keepalive_time"),
        read("tcp_keepalive_intvl"),
        read("tcp_keepalive_probes"),
    )
}

/// How `kp-probe` prints a TCP socket's options.
pub fn options(keepalive: i32, idle: i32, intvl: i32, cnt: i32, user_timeout: i32) -> String {
    format!("keepalive={keepalive} idle={idle} intvl={intvl} cnt={cnt} user_timeout={user_timeout}")
}

/// A fresh TCP socket's options without the library.
pub fn untouched() -> String {
    let (idle, intvl, cnt) = kernel_defaults();
    options(0, idle, intvl, cnt, 0)
}

/// A TCP socket under the library with no timing configured: SO_KEEPALIVE only.
pub fn keepalive_only() -> String {
    let (idle, intvl, cnt) = kernel_defaults();
    options(1, idle, intvl, cnt, 0)
}

/// Timings used throughout: all differ from the kernel defaults (7200/75/9, user timeout 0).
pub const TIMINGS: [(&str, &str); 4] = [
    ("KEEPIDLE", "61"),
    ("KEEPINTVL", "7"),
    ("KEEPCNT", "4"),
    ("KEEPALIVE_USER_TIMEOUT", "45000"),
];

/// What a TCP socket reads back under [`TIMINGS`].
pub fn configured() -> String {
    options(1, 61, 7, 4, 45000)
}

/// Copies a program and gives the copy a file capability (cap_net_bind_service), so that
/// running it as another user than root is secure execution (AT_SECURE=1). Needs root.
pub fn copy_with_capability(from: &Path, to: &Path) {
    copy_with_mode(from, to, 0o755);
    let status = Command::new(tool("setcap", "libcap2-bin"))
        .arg("cap_net_bind_service+ep")
        .arg(to)
        .status()
        .expect("run setcap");
    assert!(status.success(), "setcap failed on {}", to.display());
}

/// `setpriv` arguments that run the rest of the command line as user nobody.
pub const AS_NOBODY: [&str; 4] = ["--reuid=65534", "--regid=65534", "--clear-groups", "--"];

/// `kp-probe listen-then-exec LISTEN_FLAGS -- kp-probe accept-inherited {fd} {port}
/// ACCEPT_FLAGS`: the parent runs without the library and makes a listener; the child it
/// execs runs under the library, connects to it and accepts.
pub fn listen_then_accept(listen_flags: &[&str], accept_flags: &[&str]) -> Run {
    let mut run = probe(&["listen-then-exec"]);
    for flag in listen_flags {
        run = run.arg(*flag);
    }
    run = run
        .arg("--preload")
        .arg(library())
        .arg("--")
        .arg(probe_path())
        .arg("accept-inherited")
        .arg("{fd}")
        .arg("{port}");
    for flag in accept_flags {
        run = run.arg(*flag);
    }
    run
}

/// Compiles `tests/fixtures/SOURCE` into the shared library `scratch/OUTPUT` with gcc.
pub fn compile_fixture(source: &str, output: &str, scratch: &TempDir) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(source);
    let output = scratch.path(output);
    let status = Command::new(tool("gcc", "gcc"))
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&output)
        .arg(&source)
        .status()
        .expect("run gcc");
    assert!(status.success(), "gcc failed on {}", source.display());
    output
}

/// Runs `run` under `strace -f -e trace=setsockopt` and returns its output and the
/// setsockopt lines strace recorded.
pub fn strace_setsockopt(run: &Run, scratch: &TempDir) -> (Output, Vec<String>) {
    strace(run, scratch, "setsockopt")
}

/// Runs `run` under `strace -f -e trace=TRACE` and returns its output and the lines strace
/// recorded for those calls (`-f` prefixes each with the pid).
pub fn strace(run: &Run, scratch: &TempDir, trace: &str) -> (Output, Vec<String>) {
    let log = scratch.path(&format!("strace-{}.log", unique()));
    let strace = tool("strace", "strace");
    let mut traced = Run::new(&strace, &["-f", "-qq", "-e"])
        .arg(format!("trace={trace}"))
        .arg("-o")
        .arg(&log);
    // strace itself must not run under the library (it would print its own configuration
    // errors): LD_PRELOAD goes to the traced program only, through -E.
    for (name, value) in &run.env {
        if name == "LD_PRELOAD" {
            let mut setting = OsString::from("LD_PRELOAD=");
            setting.push(value);
            traced = traced.arg("-E").arg(setting);
        } else {
            traced.env.push((name.clone(), value.clone()));
        }
    }
    traced = traced.arg(&run.program);
    traced.args.extend(run.args.iter().cloned());
    let output = traced.run();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let calls = text
        .lines()
        .filter(|line| {
            trace
                .split(',')
                .any(|name| line.contains(&format!("{name}(")))
        })
        .map(str::to_owned)
        .collect();
    (output, calls)
}

/// The option names of the setsockopt calls strace saw, in order, with their values:
/// `SO_KEEPALIVE=1`, `TCP_KEEPIDLE=61`, ...
pub fn traced_options(calls: &[String]) -> Vec<String> {
    calls
        .iter()
        .map(|line| {
            // setsockopt(3, SOL_TCP, TCP_KEEPIDLE, [61], 4) = 0
            let args = line
                .split_once("setsockopt(")
                .map(|(_, rest)| rest)
                .unwrap_or(line);
            let fields: Vec<&str> = args.split(", ").collect();
            let value = fields
                .get(3)
                .map(|field| field.trim_matches(['[', ']']))
                .unwrap_or("?");
            format!("{}={value}", fields.get(2).unwrap_or(&"?"))
        })
        .collect()
}

/// The rest of the one line of `stdout` that starts with `label ` (e.g. `client`); `run`
/// describes the run in the failure.
pub(crate) fn labelled_line<'a>(
    stdout: &'a str,
    label: &str,
    run: &dyn std::fmt::Display,
) -> &'a str {
    let prefix = format!("{label} ");
    let found: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .collect();
    match found.as_slice() {
        [one] => one,
        _ => panic!("expected exactly one line starting with {prefix:?}\n{run}"),
    }
}

/// The lines of `stderr` the library printed (they start with `keepalive-preload`).
pub(crate) fn library_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.starts_with("keepalive-preload"))
        .collect()
}
