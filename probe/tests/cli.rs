//! The probe's own smoke tests. Having an integration test also makes `cargo test --workspace`
//! build the `kp-probe` binary itself (target/<profile>/kp-probe), which the library's
//! black-box tests run.

use std::process::Command;

fn probe(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_kp-probe"))
        .args(args)
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run kp-probe");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn report_prints_one_line_per_socket() {
    let out = probe(&["mark", "+", "report", "tcp4", "udp4", "socketpair"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert_eq!(lines[0], "kp-probe main");
    assert!(lines[1].starts_with("tcp4 keepalive=0 idle="), "{out}");
    assert!(
        lines[2].ends_with("idle=- intvl=- cnt=- user_timeout=-"),
        "{out}"
    );
    assert!(lines[3].starts_with("socketpair.0 keepalive=0"), "{out}");
}

#[test]
fn program_sets_reads_back_what_it_set() {
    let out = probe(&[
        "program-sets",
        "--idle",
        "30",
        "--intvl",
        "10",
        "--cnt",
        "3",
    ]);
    assert!(
        out.contains("setsockopt TCP_KEEPIDLE=30 ret=0 errno=unchanged"),
        "{out}"
    );
    assert!(
        out.contains("accepted keepalive=0 idle=30 intvl=10 cnt=3 user_timeout=0"),
        "{out}"
    );
}

#[test]
fn errno_script_is_deterministic() {
    let first = probe(&["errno-script"]);
    assert_eq!(first, probe(&["errno-script"]));
    assert!(
        first.contains("connect-refused ret=-1 errno=ECONNREFUSED"),
        "{first}"
    );
    assert!(first.ends_with("errno-script done\n"), "{first}");
}
