//! KEEPALIVE_INHERIT=no on environments a shell would never make: the library is taken out
//! of every LD_PRELOAD entry an execve hands the program.

mod common;

use common::*;

/// An environment with LD_PRELOAD twice (an execve with a hand-made environment): getenv
/// reads the first entry, glibc's ld.so the last, so KEEPALIVE_INHERIT=no takes the library
/// out of every one of them.
#[test]
fn inherit_no_takes_the_library_out_of_every_ld_preload_entry() {
    let scratch = TempDir::new("inherit-twice");
    let launcher = compile_program("exec_with_env.c", "exec-with-env", &scratch);
    let probe_exe = probe_path();
    let probe_exe = probe_exe.to_str().expect("utf-8");
    let ours = library();
    let ours = ours.to_str().expect("utf-8");
    let mut entries = vec![
        format!("LD_PRELOAD={ours}"),
        format!("LD_PRELOAD={ours}"),
        "KEEPALIVE_INHERIT=no".to_owned(),
    ];
    entries.extend(
        TIMINGS
            .iter()
            .map(|(name, value)| format!("{name}={value}")),
    );
    let mut args: Vec<&str> = entries.iter().map(String::as_str).collect();
    args.extend(["--", probe_exe]);
    args.extend(["report", "tcp4", "+", "maps", "+", "exec", probe_exe]);
    args.extend(["report", "tcp4", "+", "maps"]);
    let out = Run::new(&launcher, &args).run_ok();
    assert_eq!(
        out.lines(),
        [
            format!("tcp4 {}", configured()),
            "maps keepalive_preload=yes".to_owned(),
            format!("tcp4 {}", untouched()),
            "maps keepalive_preload=no".to_owned(),
        ],
        "{out}"
    );
}
