//! Processes and network namespaces the fixture makes, and the record of them that lets any
//! later run delete what an interrupted one left behind.
//!
//! Every process is started in a session of its own (Ctrl-C at a terminal does not reach it)
//! and recorded with its start time, so that it is only ever ended by its PID while it is
//! still the process the fixture started. Every namespace is recorded before it is created.
//! The record of a cluster is `<state root>/<tag>/owner`, one line per resource; a record whose
//! owner process no longer runs is a leftover, and [`clean_leftovers`] (run before every new
//! cluster) ends its processes and deletes its namespaces.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Namespace names start with this; the tag of the cluster follows.
pub const PREFIX: &str = "kpf";

/// Where the records of every cluster live (one directory per cluster).
pub fn state_root() -> PathBuf {
    std::env::temp_dir().join("redis-fixture")
}

/// A process the fixture started: its PID and the start time that tells it from a later
/// process with the same PID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub start: u64,
}

impl Proc {
    pub fn of(pid: u32) -> Option<Self> {
        Some(Self {
            pid,
            start: start_time(pid)?,
        })
    }

    /// Still the process that was started, and not a zombie.
    pub fn alive(self) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return false;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.first() != Some(&"Z")
            && fields.get(19).and_then(|s| s.parse().ok()) == Some(self.start)
    }

    fn signal(self, signal: i32) {
        if self.alive() {
            // SAFETY: kill has no memory preconditions; the PID was checked to be ours just now.
            unsafe { libc::kill(self.pid as i32, signal) };
        }
    }
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// What one cluster made: its directory, processes and namespaces.
#[derive(Debug, Default)]
struct Record {
    dir: PathBuf,
    procs: Vec<Proc>,
    namespaces: Vec<String>,
}

impl Record {
    fn append(&self, line: &str) {
        let path = self.dir.join("owner");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        writeln!(file, "{line}").unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// Every cluster of this process that is not torn down yet, by tag.
static LIVE: Mutex<BTreeMap<String, Record>> = Mutex::new(BTreeMap::new());

fn live() -> std::sync::MutexGuard<'static, BTreeMap<String, Record>> {
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts the record of a new cluster in `dir` (created), owned by this process.
pub fn register(tag: &str, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let me = Proc::of(std::process::id()).expect("own /proc/self/stat");
    // Whole or not at all: another process's `clean_leftovers` must never read a record
    // without its owner (it would take it for a leftover).
    let (tmp, path) = (dir.join("owner.tmp"), dir.join("owner"));
    std::fs::write(&tmp, format!("owner {} {}\n", me.pid, me.start))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let record = Record {
        dir: dir.to_owned(),
        ..Record::default()
    };
    live().insert(tag.to_owned(), record);
}

/// A command with the signal mask and session of its own: children never inherit a mask the
/// binary set up for its signal thread, and a terminal's Ctrl-C reaches only us.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            libc::setsid();
            Ok(())
        });
    }
    command
}

/// `command` run inside network namespace `netns` (none: here).
pub fn in_netns(mut command: Command, netns: Option<&str>) -> Command {
    if let Some(netns) = netns {
        let path = format!("/var/run/netns/{netns}");
        let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns is async-signal-safe; the descriptor stays open (moved into the
        // closure, which the command keeps) until after the fork.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    command
}

/// Runs the command to its end (killed after `timeout`); its output, or a panic with it.
pub fn run(command: &mut Command, timeout: Duration) -> Output {
    let output = run_status(command, timeout);
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs the command to its end (killed after `timeout`), whatever its exit status.
pub fn run_status(command: &mut Command, timeout: Duration) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
    let pid = child.id();
    let (done, waiting) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let output = child.wait_with_output();
        let _ = done.send(());
        output
    });
    if waiting.recv_timeout(timeout).is_err() {
        // SAFETY: our child, not yet reaped (its waiter still waits).
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let _ = waiter.join();
        panic!("{command:?} did not finish within {timeout:?}");
    }
    waiter
        .join()
        .expect("waiter thread")
        .unwrap_or_else(|e| panic!("{command:?}: {e}"))
}

/// Starts `command` (made by [`command`]) as a process of cluster `tag`, recorded before
/// anything can interrupt the record; output to `log`.
pub fn spawn(tag: &str, command: &mut Command, log: &Path) -> (Child, Proc) {
    let out = File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let err = out.try_clone().expect("dup log");
    let mut live = live();
    let child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
    let proc = Proc::of(child.id()).unwrap_or(Proc {
        pid: child.id(),
        start: 0,
    });
    let Some(record) = live.get_mut(tag) else {
        // Torn down meanwhile (a signal): nothing may outlive the teardown.
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
        panic!("cluster {tag} was torn down while it started {command:?}");
    };
    record.append(&format!("proc {} {}", proc.pid, proc.start));
    record.procs.push(proc);
    (child, proc)
}

/// Creates namespace `name` for cluster `tag` (recorded first).
pub fn add_netns(tag: &str, name: &str) {
    let mut live = live();
    let record = live
        .get_mut(tag)
        .unwrap_or_else(|| panic!("cluster {tag} was torn down before namespace {name}"));
    record.append(&format!("netns {name}"));
    record.namespaces.push(name.to_owned());
    run(
        Command::new("ip").args(["netns", "add", name]),
        Duration::from_secs(10),
    );
}

/// `ip ARGS`, which must succeed.
pub fn ip(args: &[&str]) {
    run(Command::new("ip").args(args), Duration::from_secs(10));
}

/// Every namespace there is.
pub fn namespaces() -> Vec<String> {
    std::fs::read_dir("/var/run/netns")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Ends the processes (SIGTERM, after 5 s SIGKILL; the ones that are our children reaped),
/// deletes the namespaces and the directory (unless `keep_dir`); what could not be done, as text.
fn teardown(record: &Record, keep_dir: bool) -> Vec<String> {
    let mut errors = Vec::new();
    for signal in [libc::SIGTERM, libc::SIGKILL] {
        for proc in &record.procs {
            proc.signal(signal);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            for proc in &record.procs {
                let mut status = 0;
                // SAFETY: WNOHANG on a PID we started; one that is not our child gives ECHILD.
                unsafe { libc::waitpid(proc.pid as i32, &mut status, libc::WNOHANG) };
            }
            if !record.procs.iter().any(|p| p.alive()) || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for proc in record.procs.iter().filter(|p| p.alive()) {
        errors.push(format!("process {} still runs", proc.pid));
    }
    for name in record.namespaces.iter().rev() {
        let deleted = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
        if !deleted.is_ok_and(|s| s.success()) && namespaces().contains(name) {
            errors.push(format!("namespace {name} not deleted"));
        }
    }
    if !keep_dir {
        let _ = std::fs::remove_dir_all(&record.dir);
    }
    errors
}

/// Tears down cluster `tag` of this process (its directory kept when `keep_dir`); errors as
/// text.
pub fn teardown_tag(tag: &str, keep_dir: bool) -> Vec<String> {
    let record = live().remove(tag);
    record.map_or_else(Vec::new, |record| teardown(&record, keep_dir))
}

/// Stops one process of cluster `tag` (a subscriber) and forgets it.
pub fn stop_proc(tag: &str, child: &mut Child) {
    let pid = child.id();
    let proc = {
        let mut live = live();
        let Some(record) = live.get_mut(tag) else {
            return;
        };
        let Some(position) = record.procs.iter().position(|p| p.pid == pid) else {
            return;
        };
        record.procs.remove(position)
    };
    proc.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    proc.signal(libc::SIGKILL);
    let _ = child.wait();
}

/// Tears down every cluster of this process: for a signal or a panic of the binary (whose
/// panics abort, so that no `Drop` runs).
pub fn teardown_all() {
    let tags: Vec<String> = live().keys().cloned().collect();
    for tag in tags {
        for error in teardown_tag(&tag, false) {
            eprintln!("redis-cluster: {error}");
        }
    }
}

/// The record of one cluster, of this or another process: [`records`].
#[derive(Clone, Debug)]
pub struct Recorded {
    pub dir: PathBuf,
    /// The process that made the cluster.
    pub owner: Option<Proc>,
    pub procs: Vec<Proc>,
    pub namespaces: Vec<String>,
}

impl Recorded {
    /// Its owner no longer runs: nobody will tear it down but [`clean_leftovers`].
    pub fn orphaned(&self) -> bool {
        !self.owner.is_some_and(|o| o.alive())
    }
}

/// Every cluster record there is (of live clusters and of leftovers).
pub fn records() -> Vec<Recorded> {
    let Ok(entries) = std::fs::read_dir(state_root()) else {
        return Vec::new();
    };
    let mut records = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let Ok(text) = std::fs::read_to_string(dir.join("owner")) else {
            continue;
        };
        let mut record = Recorded {
            dir,
            owner: None,
            procs: Vec::new(),
            namespaces: Vec::new(),
        };
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let proc = || -> Option<Proc> {
                Some(Proc {
                    pid: fields.get(1)?.parse().ok()?,
                    start: fields.get(2)?.parse().ok()?,
                })
            };
            match fields.first() {
                Some(&"owner") => record.owner = proc(),
                Some(&"proc") => record.procs.extend(proc()),
                Some(&"netns") => record
                    .namespaces
                    .extend(fields.get(1).map(|s| s.to_string())),
                _ => {}
            }
        }
        records.push(record);
    }
    records
}

/// Ends the processes and deletes the namespaces of every cluster whose owner no longer runs
/// (a test killed, a binary interrupted without its cleanup); what was cleaned, as text.
pub fn clean_leftovers() -> Vec<String> {
    let mut cleaned = Vec::new();
    for recorded in records().into_iter().filter(Recorded::orphaned) {
        let running = recorded.procs.iter().filter(|p| p.alive()).count();
        let present: Vec<String> = {
            let all = namespaces();
            recorded
                .namespaces
                .iter()
                .filter(|n| all.contains(n))
                .cloned()
                .collect()
        };
        let summary = format!(
            "{}: {running} process(es), namespaces {present:?}",
            recorded.dir.display()
        );
        let record = Record {
            dir: recorded.dir,
            procs: recorded.procs,
            namespaces: recorded.namespaces,
        };
        let errors = teardown(&record, false);
        cleaned.push(if errors.is_empty() {
            summary
        } else {
            format!("{summary} (incomplete: {})", errors.join("; "))
        });
    }
    cleaned
}
