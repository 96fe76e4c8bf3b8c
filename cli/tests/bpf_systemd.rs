//! The shipped drop-in for the eBPF policy (systemd/keepalive-bpf.conf): `systemd-analyze verify`
//! accepts it on a unit (and the check is real: a broken copy is refused), and it attaches at
//! every start and detaches at stop into the unit's own cgroup, as root whatever the unit's
//! sandboxing. Running it under a real systemd is the systemd harness's case (see the README).

mod common;

use std::path::Path;
use std::process::Command;

fn drop_in() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/keepalive-bpf.conf");
    std::fs::read_to_string(&path).expect("systemd/keepalive-bpf.conf")
}

/// `systemd-analyze verify` of a unit carrying `text` as its drop-in: (status, stderr).
fn verify(text: &str) -> (i32, String) {
    let dir = common::TempDir::new("kpb-systemd");
    let unit = dir.path("kpb-verify.service");
    std::fs::write(
        &unit,
        "[Unit]\nDescription=kpb drop-in check\n[Service]\nExecStart=/bin/sleep 1000\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path("kpb-verify.service.d")).unwrap();
    // The command as built (the package installs it at /usr/bin/keepalive-preload).
    let text = text.replace("/usr/bin/keepalive-preload", common::BIN);
    std::fs::write(dir.path("kpb-verify.service.d/keepalive-bpf.conf"), text).unwrap();
    let output = Command::new(testkit::tool("systemd-analyze", "systemd"))
        .arg("verify")
        .arg(&unit)
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.0.display()))
        .output()
        .expect("run systemd-analyze");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_drop_in_verifies() {
    let (status, stderr) = verify(&drop_in());
    assert_eq!(status, 0, "{stderr}");
    assert!(
        !stderr.contains("keepalive-bpf.conf"),
        "systemd-analyze complains about the drop-in: {stderr}"
    );
    // The check reads the drop-in: a broken copy is reported.
    let (_, stderr) = verify(&format!("{}\nExecStartPree=oops\n", drop_in()));
    assert!(stderr.contains("keepalive-bpf.conf"), "{stderr}");
}

#[test]
#[ignore = "needs root: a cgroup and bpf(2); scripts/test runs it"]
fn the_drop_in_attaches_at_start_and_detaches_at_stop_as_root() {
    let text = drop_in();
    let lines: Vec<&str> = text.lines().filter(|line| !line.starts_with('#')).collect();
    // From ExecCondition= (an error skips the start, without Restart= retries), through a
    // shell that lets the unit start without the policy once the package is removed.
    assert!(
        lines.contains(
            &"ExecCondition=+/bin/sh -c 'if [ -x /usr/bin/keepalive-preload ]; then exec \
              /usr/bin/keepalive-preload bpf attach --unit \"$$1\"; fi; echo \"keepalive-preload \
              is not installed: $$1 starts without the eBPF policy\" >&2' sh %n"
        ),
        "{text}"
    );
    assert!(
        lines.contains(&"ExecStopPost=-+/usr/bin/keepalive-preload bpf detach --unit %n"),
        "{text}"
    );
    // The variables it sets are valid for `bpf attach` (through the one parser).
    let mut command = common::command();
    for line in &lines {
        if let Some(assignments) = line.strip_prefix("Environment=") {
            for assignment in assignments.split_whitespace() {
                let (name, value) = assignment.split_once('=').unwrap();
                command.env(name, value);
            }
        }
    }
    let output = common::capture(command.args(["bpf", "attach", "--cgroup", "/kpb-no-such"]));
    let stderr = common::stderr(&output);
    assert_eq!(common::code(&output), 2, "{stderr}");
    assert!(!stderr.contains("not applied"), "a bad variable: {stderr}");
    assert!(stderr.contains("no cgroup"), "{stderr}");
}
