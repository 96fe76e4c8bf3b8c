//! A unit's process and the library, and what systemd makes of a bad value: refused (the
//! library's drop-in) or skipped (the eBPF drop-in).

use std::time::Duration;

use super::Container;

/// The library's path as the package installed it (dpkg -L).
pub fn installed_library(c: &Container) -> String {
    c.sh("dpkg -L keepalive-preload | grep '/libkeepalive_preload\\.so$'")
        .trim()
        .to_owned()
}

pub fn mapped(c: &Container, pid: u32, library: &str) -> bool {
    c.sh(&format!("cat /proc/{pid}/maps"))
        .lines()
        .any(|line| line.ends_with(library) && line.contains(" r-xp "))
}

/// `systemctl status UNIT` once systemd had time to retry (RestartSec= is 100 ms), after
/// asserting it did not.
fn status_without_retry(c: &Container, unit: &str) -> String {
    std::thread::sleep(Duration::from_secs(3));
    let status = c.systemctl(&format!("status {unit}"));
    println!(
        "systemctl status {unit} with a bad value:\n{}",
        status.stdout
    );
    assert_eq!(c.property(unit, "NRestarts"), "0", "{unit} was restarted");
    status.stdout
}

/// A bad value is refused: the start fails, systemd does not retry it, and `systemctl status`
/// shows the reason (the defect: Restart= reran the failing check until the start limit and
/// status showed only "Start request repeated too quickly").
pub fn assert_refused(c: &Container, unit: &str, reason: &str) {
    let restart = c.systemctl(&format!("restart {unit}"));
    assert!(
        !restart.success(),
        "{unit} started with a bad value:\n{}",
        restart.stdout
    );
    let status = status_without_retry(c, unit);
    assert_eq!(c.property(unit, "ActiveState"), "failed");
    assert_eq!(c.property(unit, "Result"), "exit-code");
    assert!(
        status.contains(reason),
        "systemctl status {unit} does not show {reason:?}"
    );
    assert!(!status.contains("Start request repeated too quickly"));
}

/// A bad value under the eBPF drop-in: `bpf attach` runs from `ExecCondition=` and exits 2, so
/// systemd skips the start: no process, no retry (also with `Restart=always`), the unit
/// inactive rather than failed, and the reason in `systemctl status`. `systemctl restart`
/// itself exits 0 (systemd reports a skipped start as done); docs/ebpf.md says so.
pub fn assert_skipped(c: &Container, unit: &str, reason: &str) {
    let restart = c.systemctl(&format!("restart {unit}"));
    println!(
        "systemctl restart {unit} with a bad value: {:?} {}{}",
        restart.status, restart.stdout, restart.stderr
    );
    assert_eq!(
        restart.status,
        Some(0),
        "systemd 252 reports a skipped start as done"
    );
    let status = status_without_retry(c, unit);
    assert_eq!(c.property(unit, "ActiveState"), "inactive");
    assert_eq!(c.property(unit, "ConditionResult"), "no");
    assert_eq!(c.property(unit, "MainPID"), "0", "{unit} runs");
    assert!(
        status.contains(reason),
        "systemctl status {unit} does not show {reason:?}"
    );
    assert!(status.contains("Skipped due to 'exec-condition'"));
    assert!(!status.contains("Start request repeated too quickly"));
}
