//! Differential runs of C fixture programs ("do no harm", issue 10): the same program without
//! and with the library, compared on stdout, exit status or signal, within a time limit.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};

use super::*;

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
