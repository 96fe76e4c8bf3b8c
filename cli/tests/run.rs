//! `run` against child processes that report what they see: their own socket options read
//! back with getsockopt, LD_PRELOAD and /proc/self/maps.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{Value, json};

/// Prints, as JSON, LD_PRELOAD, whether each preloaded file is mapped, and the options of a
/// fresh IPv4 socket, an IPv6 socket, an IPv4 listener and a connection to it.
const REPORTER: &str = r#"
import json, os, socket as S
def opts(s):
    return {"keepalive": s.getsockopt(S.SOL_SOCKET, S.SO_KEEPALIVE),
            "idle": s.getsockopt(S.IPPROTO_TCP, S.TCP_KEEPIDLE),
            "interval": s.getsockopt(S.IPPROTO_TCP, S.TCP_KEEPINTVL),
            "count": s.getsockopt(S.IPPROTO_TCP, S.TCP_KEEPCNT),
            "user_timeout_ms": s.getsockopt(S.IPPROTO_TCP, S.TCP_USER_TIMEOUT)}
maps = open("/proc/self/maps").read()
preload = os.environ.get("LD_PRELOAD", "")
l = S.socket(); l.bind(("127.0.0.1", 0)); l.listen()
c = S.create_connection(l.getsockname()); a, _ = l.accept()
print(json.dumps({
    "preload": preload,
    "mapped": [p for p in preload.replace(" ", ":").split(":") if p and p in maps],
    "env": {k: v for k, v in os.environ.items() if k.startswith("KEEP")},
    "ipv4": opts(S.socket(S.AF_INET, S.SOCK_STREAM)),
    "ipv6": opts(S.socket(S.AF_INET6, S.SOCK_STREAM)),
    "listener": opts(l), "connected": opts(c), "accepted": opts(a)}))
"#;

fn child_report(output: &std::process::Output) -> Value {
    assert_eq!(code(output), 0, "{}{}", stdout(output), stderr(output));
    serde_json::from_str(stdout(output).trim())
        .unwrap_or_else(|error| panic!("{error}: {}{}", stdout(output), stderr(output)))
}

#[test]
fn options_reach_the_childs_sockets() {
    let library = library();
    let output = capture(
        command()
            .args(["run", "--idle", "42", "--interval", "7s", "--count", "5"])
            .args(["--user-timeout", "12345", "--library"])
            .arg(&library)
            .args(["--", python(), "-c", REPORTER]),
    );
    let report = child_report(&output);
    assert_eq!(report["preload"], library.to_str().unwrap());
    assert_eq!(report["mapped"], json!([library.to_str().unwrap()]));
    assert_eq!(
        report["env"],
        json!({"KEEPIDLE": "42", "KEEPINTVL": "7s", "KEEPCNT": "5", "KEEPALIVE_USER_TIMEOUT": "12345"})
    );
    let expected =
        json!({"keepalive": 1, "idle": 42, "interval": 7, "count": 5, "user_timeout_ms": 12345});
    for socket in ["ipv4", "ipv6", "listener", "connected", "accepted"] {
        assert_eq!(report[socket], expected, "{socket}: {report:#}");
    }
}

#[test]
fn auto_user_timeout_and_keepalive_off_reach_the_child() {
    let library = library();
    let output = capture(
        command()
            .args([
                "run",
                "--idle",
                "20",
                "--interval",
                "4",
                "--count",
                "3",
                "--user-timeout",
                "auto",
            ])
            .arg("--library")
            .arg(&library)
            .args(["--", python(), "-c", REPORTER]),
    );
    let report = child_report(&output);
    assert_eq!(report["connected"]["user_timeout_ms"], (20 + 4 * 3) * 1000);

    let output = capture(
        command()
            .args(["run", "--keepalive", "off", "--idle", "20", "--library"])
            .arg(&library)
            .args(["--", python(), "-c", REPORTER]),
    );
    let report = child_report(&output);
    assert_eq!(
        report["connected"],
        json!({"keepalive": 0, "idle": 7200, "interval": 75, "count": 9, "user_timeout_ms": 0}),
        "KEEPALIVE=off leaves the kernel defaults"
    );
}

#[test]
fn existing_preload_entries_are_kept_after_the_library() {
    let library = library();
    let dir = TempDir::new("preload");
    let other = gcc(
        &dir,
        "libother.so",
        "int other_marker = 1;\n",
        &["-shared", "-fPIC"],
    );
    let other = other.to_str().unwrap();
    let output = capture(
        command()
            .env("LD_PRELOAD", format!("{other} {}", library.display()))
            .args(["run", "--count", "5", "--library"])
            .arg(&library)
            .args(["--", python(), "-c", REPORTER]),
    );
    let report = child_report(&output);
    let preload = format!("{}:{other}", library.display());
    assert_eq!(
        report["preload"],
        preload.as_str(),
        "library first, once, others kept"
    );
    assert_eq!(report["mapped"], json!([library.to_str().unwrap(), other]));
}

#[test]
fn the_library_next_to_the_command_is_found_without_options() {
    let library = library();
    let beside = Path::new(BIN)
        .parent()
        .unwrap()
        .join("libkeepalive_preload.so");
    assert!(
        beside.is_file(),
        "cargo builds the library next to the command: {}",
        beside.display()
    );
    let output = capture(command().env_remove("KEEPALIVE_PRELOAD_LIB").args([
        "run",
        "--idle",
        "42",
        "--",
        python(),
        "-c",
        REPORTER,
    ]));
    let report = child_report(&output);
    assert_eq!(
        report["preload"],
        std::fs::canonicalize(&beside).unwrap().to_str().unwrap()
    );
    let _ = library;
}

#[test]
fn the_variable_names_the_library_when_no_option_does() {
    let library = library();
    let output = capture(command().env("KEEPALIVE_PRELOAD_LIB", &library).args([
        "run",
        "--",
        python(),
        "-c",
        REPORTER,
    ]));
    assert_eq!(child_report(&output)["preload"], library.to_str().unwrap());
    let output = capture(
        command()
            .env(
                "KEEPALIVE_PRELOAD_LIB",
                "/nonexistent/libkeepalive_preload.so",
            )
            .args(["run", "--", "true"]),
    );
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains(
            "KEEPALIVE_PRELOAD_LIB, /nonexistent/libkeepalive_preload.so, does not exist"
        ),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_missing_library_is_an_error_naming_the_paths_tried() {
    let output = capture(command().args(["run", "--library", "/nonexistent/lib.so", "--", "true"]));
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("--library, /nonexistent/lib.so, does not exist"),
        "{}",
        stderr(&output)
    );

    // A copy of the command alone in a directory: nothing beside it.
    let dir = TempDir::new("alone");
    let copy = dir.path("keepalive-preload");
    copy_with_mode(Path::new(BIN), &copy, 0o755);
    let installed = [
        "/usr/lib/x86_64-linux-gnu/libkeepalive_preload.so",
        "/usr/lib/libkeepalive_preload.so",
        "/usr/local/lib/libkeepalive_preload.so",
    ];
    let output = Command::new(&copy)
        .env_remove("KEEPALIVE_PRELOAD_LIB")
        .env_remove("LD_PRELOAD")
        .args(["run", "--", "sh", "-c", "echo \"$LD_PRELOAD\""])
        .output()
        .unwrap();
    match installed.iter().find(|path| Path::new(path).is_file()) {
        // An installed package: it is the one used.
        Some(path) => {
            assert_eq!(code(&output), 0, "{}", stderr(&output));
            let found = std::fs::canonicalize(path).unwrap();
            assert_eq!(stdout(&output).trim(), found.to_str().unwrap());
        }
        None => {
            assert_eq!(code(&output), 2, "{}", stdout(&output));
            let message = stderr(&output);
            assert!(
                message.contains("cannot find libkeepalive_preload.so; tried"),
                "{message}"
            );
            assert!(
                message.contains(&dir.path("libkeepalive_preload.so").display().to_string()),
                "{message}"
            );
            assert!(
                message.contains(
                    &dir.path("../lib/libkeepalive_preload.so")
                        .display()
                        .to_string()
                ),
                "{message}"
            );
            for path in installed {
                assert!(message.contains(path), "{message}");
            }
        }
    }
}

#[test]
fn invalid_values_stop_before_exec_with_the_parsers_line() {
    let library = library();
    let dir = TempDir::new("invalid");
    let marker = dir.path("ran");
    let cases = [
        (
            vec!["--idle", "1e3"],
            "keepalive-preload: KEEPIDLE=\"1e3\" is not a whole number of seconds in 1..32767; not applied",
        ),
        (
            vec!["--count", "0"],
            "KEEPCNT=\"0\" is not a whole number in 1..127",
        ),
        (
            vec!["--ports", "17000-1700"],
            "KEEPALIVE_PORTS=\"17000-1700\"",
        ),
        (vec!["--nets", "10.0.0.0/33"], "prefix length \"33\""),
        (
            vec!["--override", "always"],
            "KEEPALIVE_OVERRIDE=\"always\" is not one of no, yes, tighten",
        ),
        (
            vec!["--user-timeout", "-1"],
            "KEEPALIVE_USER_TIMEOUT=\"-1\"",
        ),
        (
            vec!["--programs", "/usr/bin/redis-server"],
            "KEEPALIVE_PROGRAMS=\"/usr/bin/redis-server\"",
        ),
        (vec!["--log", "verbose"], "KEEPALIVE_LOG=\"verbose\""),
        (vec!["--inherit", "maybe"], "KEEPALIVE_INHERIT=\"maybe\""),
    ];
    for (args, message) in cases {
        let output = capture(
            command()
                .arg("run")
                .args(&args)
                .arg("--library")
                .arg(&library)
                .args(["--", "touch"])
                .arg(&marker),
        );
        assert_eq!(code(&output), 2, "{args:?}");
        let text = stderr(&output);
        assert!(text.contains(message), "{args:?}: {text}");
        assert!(
            text.contains("run: invalid configuration, not starting touch"),
            "{text}"
        );
        assert!(!marker.exists(), "{args:?} ran the program");
    }
    // An invalid variable inherited from the environment stops it too.
    let output = capture(
        command()
            .env("KEEPINTVL", "10abc")
            .args(["run", "--idle", "5", "--library"])
            .arg(&library)
            .args(["--", "touch"])
            .arg(&marker),
    );
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("KEEPINTVL=\"10abc\""),
        "{}",
        stderr(&output)
    );
    assert!(!marker.exists());
}

#[test]
fn strict_and_inherit_map_onto_their_variables() {
    let library = library();
    let output = capture(
        command()
            .args([
                "run",
                "--strict",
                "--inherit",
                "no",
                "--log",
                "off",
                "--override",
                "tighten",
            ])
            .args([
                "--ports",
                "17000-17999",
                "--nets",
                "127.0.0.0/8",
                "--programs",
                "python3",
            ])
            .arg("--library")
            .arg(&library)
            .args(["--", "sh", "-c", "env | grep ^KEEPALIVE_ | sort"]),
    );
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "KEEPALIVE_INHERIT=no\nKEEPALIVE_LOG=off\nKEEPALIVE_NETS=127.0.0.0/8\nKEEPALIVE_OVERRIDE=tighten\n\
         KEEPALIVE_PORTS=17000-17999\nKEEPALIVE_PROGRAMS=python3\nKEEPALIVE_STRICT=yes\n"
    );
}

#[test]
fn exec_keeps_pid_arguments_and_exit_status() {
    let library = library();
    let output = capture(command().args(["run", "--library"]).arg(&library).args([
        "--",
        "sh",
        "-c",
        "echo \"$0 $1\"; exit 7",
        "zero",
        "--one",
    ]));
    assert_eq!(code(&output), 7);
    assert_eq!(stdout(&output), "zero --one\n");
    // Without `--`, the program and its options are still taken as they are.
    let output = capture(
        command()
            .args(["run", "--library"])
            .arg(&library)
            .args(["sh", "-c", "exit 3"]),
    );
    assert_eq!(code(&output), 3);
    // exec, not spawn: the program replaces the command (same pid).
    let output = capture(command().args(["run", "--library"]).arg(&library).args([
        "--",
        "sh",
        "-c",
        "cat /proc/$$/comm",
    ]));
    assert_eq!(stdout(&output), "sh\n");
}

#[test]
fn a_program_that_cannot_run_is_reported() {
    let library = library();
    let output = capture(
        command()
            .args(["run", "--library"])
            .arg(&library)
            .args(["--", "/nonexistent/program"]),
    );
    assert_eq!(code(&output), 127);
    assert!(
        stderr(&output).contains("run: cannot run /nonexistent/program"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_statically_linked_program_gets_a_warning() {
    let library = library();
    let dir = TempDir::new("static-run");
    let program = gcc(
        &dir,
        "static-true",
        "int main(void) { return 0; }\n",
        &["-static"],
    );
    let output = capture(
        command()
            .args(["run", "--library"])
            .arg(&library)
            .arg("--")
            .arg(&program),
    );
    assert_eq!(code(&output), 0);
    assert!(
        stderr(&output)
            .contains("is statically linked; LD_PRELOAD cannot load the library into it"),
        "{}",
        stderr(&output)
    );
    let output = capture(
        command()
            .args(["run", "--library"])
            .arg(&library)
            .args(["--", "true"]),
    );
    assert_eq!(stderr(&output), "", "no warning for a dynamic program");
}
