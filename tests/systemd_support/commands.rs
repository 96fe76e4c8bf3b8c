//! Commands inside the container: a shell script run through `nsenter -t <PID 1> -a` and the
//! helpers on top of it (files, `systemctl`, properties, the journal, `systemctl edit`).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::Container;

pub(super) const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a command inside the container did.
#[derive(Debug)]
pub struct Run {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    fn from(output: Output) -> Self {
        Self {
            status: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Container {
    fn command(&self, script: &str, timeout_s: u32) -> Command {
        let mut command = Command::new("timeout");
        command
            .args(["-k", "5", &timeout_s.to_string(), "nsenter", "-t"])
            .arg(self.pid1.to_string())
            .args(["-a", "/usr/bin/env", "-i"])
            .arg(format!("PATH={PATH}"))
            .args([
                "LANG=C.UTF-8",
                "TERM=dumb",
                "SYSTEMD_COLORS=0",
                "SYSTEMD_PAGER=",
                "SYSTEMD_LESS=",
                "HOME=/root",
                "/bin/sh",
                "-c",
                script,
            ])
            .stdin(Stdio::null());
        command
    }

    /// Runs `script` with /bin/sh inside the container (as root, in all its namespaces);
    /// killed after 120 s.
    pub fn exec(&self, script: &str) -> Run {
        self.exec_timeout(script, 120)
    }

    pub fn exec_timeout(&self, script: &str, timeout_s: u32) -> Run {
        Run::from(
            self.command(script, timeout_s)
                .output()
                .unwrap_or_else(|e| panic!("run nsenter: {e}")),
        )
    }

    /// Runs `script` with `input` on its standard input.
    pub fn exec_input(&self, script: &str, input: &[u8]) -> Run {
        let mut child = self
            .command(script, 120)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run nsenter");
        child.stdin.take().unwrap().write_all(input).expect("write");
        Run::from(child.wait_with_output().expect("wait for nsenter"))
    }

    /// `exec` that must succeed; its standard output.
    pub fn sh(&self, script: &str) -> String {
        let run = self.exec(script);
        assert!(
            run.success(),
            "{}: `{script}` failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            self.name,
            run.status,
            run.stdout,
            run.stderr
        );
        run.stdout
    }

    /// Writes a file inside the container.
    pub fn write(&self, path: &str, contents: &[u8]) {
        let run = self.exec_input(&format!("cat > '{path}'"), contents);
        assert!(run.success(), "write {path}: {}", run.stderr);
    }

    /// Copies a file of the host into the container, with this mode.
    pub fn copy_in(&self, host: &Path, path: &str, mode: u32) {
        let bytes = std::fs::read(host).unwrap_or_else(|e| panic!("read {}: {e}", host.display()));
        self.write(path, &bytes);
        self.sh(&format!("chmod {mode:o} '{path}'"));
    }

    /// `systemctl ARGS`.
    pub fn systemctl(&self, args: &str) -> Run {
        self.exec(&format!("systemctl --no-pager {args}"))
    }

    /// One property of a unit (`systemctl show -p NAME --value UNIT`).
    pub fn property(&self, unit: &str, name: &str) -> String {
        self.sh(&format!("systemctl show -p {name} --value {unit}"))
            .trim()
            .to_owned()
    }

    /// The unit's main PID as the container sees it (its own PID namespace).
    pub fn main_pid(&self, unit: &str) -> u32 {
        let pid = self.property(unit, "MainPID");
        let pid: u32 = pid.parse().unwrap_or(0);
        assert!(pid > 0, "{unit} has no main PID");
        pid
    }

    /// The unit's journal of this boot, messages only.
    pub fn journal(&self, unit: &str) -> String {
        self.sh(&format!("journalctl -b --no-pager -o cat -u {unit}"))
    }

    /// `systemctl edit UNIT` as an operator runs it, the editor writing `contents`: systemctl
    /// wants a terminal, which `script` provides.
    pub fn systemctl_edit(&self, unit: &str, contents: &str) {
        self.write("/root/kpsd-edit.contents", contents.as_bytes());
        self.write(
            "/root/kpsd-editor",
            b"#!/bin/sh\ncat /root/kpsd-edit.contents > \"$1\"\n",
        );
        self.sh("chmod +x /root/kpsd-editor");
        self.sh(&format!(
            "SYSTEMD_EDITOR=/root/kpsd-editor script -qec 'systemctl edit {unit}' /dev/null"
        ));
    }
}
