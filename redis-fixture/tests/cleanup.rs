//! The fixture leaves nothing behind: a test that panics drops its cluster (every process ended,
//! every namespace deleted); the `redis-cluster` binary interrupted while it starts nodes ends
//! them and exits 130; and the leftovers of a run killed outright (SIGKILL: no cleanup of its
//! own can run) are deleted when the next cluster starts.
//!
//! Needs root (namespaces) and redis-server, redis-tools, iptables, python3-redis; fails, never
//! skips, without them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis_fixture::{Cluster, Recorded, namespaces, records, require, serial};

const BIN: &str = env!("CARGO_BIN_EXE_redis-cluster");

fn binary(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env("KEEPALIVE_PRELOAD_BIN", testkit::command())
        .stdin(Stdio::null());
    command
}

/// The record of the cluster(s) `pid` owns, once `ready` says it is far enough.
fn record_of(child: &mut Child, ready: impl Fn(&Recorded) -> bool) -> Recorded {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = records()
            .into_iter()
            .find(|r| r.owner.is_some_and(|o| o.pid == child.id()));
        if let Some(record) = found.filter(&ready) {
            return record;
        }
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "redis-cluster ended before it was interrupted"
        );
        assert!(
            Instant::now() < deadline,
            "redis-cluster made too little within 30 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill on our own, not yet reaped child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
}

fn wait(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "redis-cluster did not end within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// No process and no namespace of `record` is left, nor its directory. Nodes started after the
/// record was read are found by their working directory, which lies in the cluster's.
fn assert_nothing_left(record: &Recorded) {
    for proc in &record.procs {
        assert!(!proc.alive(), "process {} still runs", proc.pid);
    }
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) {
            assert!(
                !cwd.starts_with(&record.dir),
                "process {} still runs in {}",
                entry.file_name().to_string_lossy(),
                cwd.display()
            );
        }
    }
    let left = namespaces();
    for name in &record.namespaces {
        assert!(!left.contains(name), "namespace {name} not deleted");
    }
    assert!(!record.dir.exists(), "{} not removed", record.dir.display());
}

#[test]
#[ignore = "needs root: Redis nodes in network namespaces; scripts/test runs it"]
fn a_panicking_test_leaves_no_process_and_no_namespace() {
    let _serial = serial();
    require();
    let made = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(|| {
        let cluster = Cluster::builder("panics").netns().start();
        let nodes = cluster.nodes().to_vec();
        *made.lock().unwrap() = Some((nodes, cluster.namespaces(), cluster.dir().to_owned()));
        panic!("a test fails with its cluster up");
    });
    assert!(result.is_err());
    let (nodes, names, dir) = made.lock().unwrap().take().expect("the cluster started");
    assert_eq!(names.len(), 4, "hub and three nodes: {names:?}");
    let left = namespaces();
    for node in nodes {
        assert!(
            !node.running(),
            "node {} (pid {}) runs",
            node.index,
            node.pid
        );
    }
    for name in names {
        assert!(!left.contains(&name), "namespace {name} left");
    }
    assert!(!dir.exists(), "{} left", dir.display());
}

#[test]
#[ignore = "needs root: Redis nodes in network namespaces; scripts/test runs it"]
fn binary_interrupted_while_starting_nodes_exits_130_and_leaves_nothing() {
    let _serial = serial();
    require();
    let mut child = binary(&["up", "--netns", "--nodes", "6"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start redis-cluster up");
    // Interrupted after two of six nodes started: namespaces made, nodes half started.
    let record = record_of(&mut child, |r| r.procs.len() >= 2);
    signal(&child, libc::SIGINT);
    let status = wait(&mut child);
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(130), "{status}: {stderr}");
    println!(
        "interrupted after {} node(s) and {} namespace(s): {}",
        record.procs.len(),
        record.namespaces.len(),
        stderr.trim()
    );
    assert_eq!(record.namespaces.len(), 7, "hub and six nodes: {record:?}");
    assert_nothing_left(&record);
}

#[test]
#[ignore = "needs root: Redis nodes in network namespaces; scripts/test runs it"]
fn leftovers_of_a_killed_run_are_deleted_when_the_next_cluster_starts() {
    let _serial = serial();
    require();
    let mut child = binary(&["up", "--netns"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-cluster up");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    loop {
        let line = lines
            .next()
            .expect("redis-cluster up ended before its cluster was up")
            .expect("read stdout");
        if line.starts_with("running until Ctrl-C") {
            break;
        }
    }
    let record = record_of(&mut child, |r| r.procs.len() == 3);
    // SIGKILL: nothing of its own cleans up.
    signal(&child, libc::SIGKILL);
    wait(&mut child);
    assert!(record.orphaned());
    assert!(
        record.procs.iter().all(|p| p.alive()),
        "the nodes must outlive their owner: {record:?}"
    );
    let present = namespaces();
    assert!(
        record.namespaces.iter().all(|n| present.contains(n)),
        "the namespaces must outlive their owner: {record:?}"
    );
    // The next cluster, of any kind, deletes them first.
    let next = Cluster::builder("next").start();
    assert_nothing_left(&record);
    println!(
        "{} node(s) and namespaces {:?} of the killed run deleted by the next start",
        record.procs.len(),
        record.namespaces
    );
    next.stop();
}
