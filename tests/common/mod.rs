//! Shared helpers of the black-box tests of the library: run `kp-probe` in a child process
//! with a controlled environment, and read its output. Finding the library and `kp-probe`,
//! scratch directories and the root and tool checks come from `testkit`.
//!
//! Every test binary includes this module and uses only part of it.
#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};

mod inherit;
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

// ---------------------------------------------------------------------------------------------
// Differential runs of C fixture programs ("do no harm", issue 10): the same program without
// and with the library, compared on stdout, exit status or signal, within a time limit.

/// Compiles `tests/fixtures/SOURCE` into the executable `scratch/OUTPUT` with `compiler`
/// (`gcc`, or `musl-gcc` for a dynamically linked musl program), linking libdl and pthreads.
pub fn compile_program_with(
    compiler: (&str, &str),
    source: &str,
    output: &str,
    scratch: &TempDir,
) -> PathBuf {
    compile_program_flags(compiler, source, output, scratch, &[])
}

/// As [`compile_program_with`], with extra compiler flags (`-DNAME=VALUE`).
pub fn compile_program_flags(
    compiler: (&str, &str),
    source: &str,
    output: &str,
    scratch: &TempDir,
    flags: &[&str],
) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(source);
    let output = scratch.path(output);
    let result = Command::new(tool(compiler.0, compiler.1))
        .args(["-O1", "-Wall", "-D_GNU_SOURCE", "-pthread"])
        .args(flags)
        .arg("-o")
        .arg(&output)
        .arg(&source)
        .arg("-ldl")
        .output()
        .unwrap_or_else(|error| panic!("run {}: {error}", compiler.0));
    assert!(
        result.status.success(),
        "{} failed on {}:\n{}",
        compiler.0,
        source.display(),
        String::from_utf8_lossy(&result.stderr)
    );
    output
}

/// Compiles `tests/fixtures/SOURCE` into the executable `scratch/OUTPUT` with gcc.
pub fn compile_program(source: &str, output: &str, scratch: &TempDir) -> PathBuf {
    compile_program_with(("gcc", "gcc"), source, output, scratch)
}

/// Where the child's standard error goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stderr {
    /// A pipe the test reads (the default).
    Captured,
    /// A pipe whose read end the test holds open and never reads.
    UnreadPipe,
    /// A pipe whose read end is closed before the child starts (writes raise SIGPIPE).
    BrokenPipe,
    /// Descriptor 2 closed in the child before exec.
    Closed,
}

/// How a child ended, and what it printed.
pub struct Outcome {
    pub described: String,
    pub stdout: String,
    pub stderr: String,
    /// `exit N`, `signal N (NAME)` or `timed out after N s (killed)`.
    pub status: String,
}

impl Outcome {
    pub fn code(&self) -> Option<i32> {
        self.status.strip_prefix("exit ")?.parse().ok()
    }

    /// stdout without the lines that start with `effect ` (they differ on purpose).
    pub fn compared(&self) -> String {
        self.stdout
            .lines()
            .filter(|line| !line.starts_with("effect "))
            .map(|line| format!("{line}\n"))
            .collect()
    }

    /// The rest of the one stdout line that starts with `label ` (e.g. `effect client`).
    pub fn line(&self, label: &str) -> &str {
        labelled_line(&self.stdout, label, self)
    }

    /// The lines the library printed (they start with `keepalive-preload`).
    pub fn library_lines(&self) -> Vec<&str> {
        library_lines(&self.stderr)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stderr: String = if self.stderr.len() > 4000 {
            format!("{}… ({} bytes)", &self.stderr[..4000], self.stderr.len())
        } else {
            self.stderr.clone()
        };
        write!(
            f,
            "command: {}\nstatus: {}\n--- stdout\n{}--- stderr\n{stderr}---",
            self.described, self.status, self.stdout
        )
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGILL => "SIGILL",
        _ => "?",
    }
}

/// A pipe whose ends are close-on-exec in this (multi-threaded) test process.
fn cloexec_pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    let result = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(result, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created and belong to nobody else.
    unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    }
}

impl Run {
    /// Runs the child to its end or until `limit` (then kills it), with stderr as asked.
    pub fn outcome(&self, stderr: Stderr, limit: std::time::Duration) -> Outcome {
        use std::io::Read;
        use std::os::unix::process::{CommandExt, ExitStatusExt};
        let mut command = self.command();
        command.stdout(Stdio::piped());
        let mut kept_reader = None;
        match stderr {
            Stderr::Captured => {
                command.stderr(Stdio::piped());
            }
            Stderr::UnreadPipe => {
                let (reader, writer) = cloexec_pipe();
                kept_reader = Some(reader);
                command.stderr(Stdio::from(writer));
            }
            Stderr::BrokenPipe => {
                let (reader, writer) = cloexec_pipe();
                drop(reader);
                command.stderr(Stdio::from(writer));
            }
            Stderr::Closed => {
                command.stderr(Stdio::null());
                // SAFETY: close is async-signal-safe; it runs in the child between fork and exec.
                unsafe {
                    command.pre_exec(|| {
                        libc::close(2);
                        Ok(())
                    });
                }
            }
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", self.describe()));
        let mut out = child.stdout.take().expect("stdout pipe");
        let stdout_reader = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = out.read_to_end(&mut bytes);
            bytes
        });
        let stderr_reader = child.stderr.take().map(|mut err| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = err.read_to_end(&mut bytes);
                bytes
            })
        });
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the child") {
                break match (status.code(), status.signal()) {
                    (Some(code), _) => format!("exit {code}"),
                    (None, Some(signal)) => format!("signal {signal} ({})", signal_name(signal)),
                    _ => format!("{status}"),
                };
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break format!("timed out after {} s (killed)", limit.as_secs_f32());
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        drop(kept_reader);
        let stdout = stdout_reader.join().expect("stdout reader");
        let stderr = stderr_reader
            .map(|reader| reader.join().expect("stderr reader"))
            .unwrap_or_default();
        Outcome {
            described: self.describe(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            status,
        }
    }
}

/// The time limit of a differential run: generous, since a hang is one of the failures.
pub const LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// The lines that differ, side by side (and a note when the line counts differ).
pub fn differing_lines(without: &str, with: &str) -> String {
    let mut text: Vec<String> = without
        .lines()
        .zip(with.lines())
        .filter(|(a, b)| a != b)
        .map(|(a, b)| format!("  without: {a}\n  with:    {b}"))
        .collect();
    let (a, b) = (without.lines().count(), with.lines().count());
    if a != b {
        text.push(format!("  {a} lines without the library, {b} with it"));
        if a > b {
            for line in without.lines().skip(b) {
                text.push(format!("  only without: {line}"));
            }
        } else {
            for line in with.lines().skip(a) {
                text.push(format!("  only with:    {line}"));
            }
        }
    }
    text.join("\n")
}

/// The same program without and with the library.
pub struct Differential {
    pub without: Outcome,
    pub with: Outcome,
}

impl Differential {
    /// Runs `run` without the library and with it plus `vars` (the variables apply to both
    /// runs, so the only difference is LD_PRELOAD), stderr as asked.
    pub fn run(run: &Run, vars: &[(&str, &str)], stderr: Stderr) -> Self {
        Self::run_limited(run, vars, stderr, LIMIT)
    }

    /// [`Differential::run`] with another time limit for each of the two runs.
    pub fn run_limited(
        run: &Run,
        vars: &[(&str, &str)],
        stderr: Stderr,
        limit: std::time::Duration,
    ) -> Self {
        let bare = run.clone().envs(vars);
        let preloaded = bare.clone().preload();
        Self {
            without: bare.outcome(stderr, limit),
            with: preloaded.outcome(stderr, limit),
        }
    }

    /// `None` when stdout (but `effect` lines) and the status are the same; else a report.
    pub fn difference(&self, name: &str) -> Option<String> {
        let (a, b) = (self.without.compared(), self.with.compared());
        if a == b && self.without.status == self.with.status {
            return None;
        }
        let stderr: Vec<&str> = self.with.stderr.lines().take(12).collect();
        Some(format!(
            "{name}: without the library {}, with it {}\n{}\n--- command: {}\n--- its stderr (start):\n{}",
            self.without.status,
            self.with.status,
            differing_lines(&a, &b),
            self.with.described,
            stderr.join("\n")
        ))
    }

    /// Asserts no difference, and that the run without the library ended with exit 0.
    pub fn assert_same(&self, name: &str) {
        assert_eq!(
            self.without.status, "exit 0",
            "{name}: control run\n{}",
            self.without
        );
        if let Some(report) = self.difference(name) {
            panic!("{report}");
        }
    }
}

/// Runs every configuration through [`Differential::run`] and fails with every difference.
pub fn assert_same_under(run: &Run, configurations: &[(&str, Vec<(&str, &str)>)], stderr: Stderr) {
    let mut failures = Vec::new();
    for (name, vars) in configurations {
        let pair = Differential::run(run, vars, stderr);
        if pair.without.status != "exit 0" {
            failures.push(format!("{name}: control run failed\n{}", pair.without));
        } else if let Some(report) = pair.difference(name) {
            failures.push(report);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} configurations differ:\n\n{}",
        failures.len(),
        configurations.len(),
        failures.join("\n\n")
    );
}

/// [`TIMINGS`] plus `extra`.
pub fn timings_with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut vars: Vec<(&str, &str)> = TIMINGS.to_vec();
    vars.extend_from_slice(extra);
    vars
}

/// A TCP port in 41000-41999 that was free a moment ago, different for each call in this
/// process (tests that need a port in KEEPALIVE_PORTS before the program starts).
pub fn harm_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = (std::process::id() % 500) as u16;
    for _ in 0..1000 {
        let port = 41000 + (base + NEXT.fetch_add(1, Ordering::Relaxed)) % 1000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 41000-41999");
}

/// The rest of the one line of `stdout` that starts with `label ` (e.g. `client`); `run`
/// describes the run in the failure.
fn labelled_line<'a>(stdout: &'a str, label: &str, run: &dyn std::fmt::Display) -> &'a str {
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
fn library_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.starts_with("keepalive-preload"))
        .collect()
}
