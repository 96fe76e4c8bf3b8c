//! KEEPALIVE_INHERIT's run: what a process and the program it execs see.

use std::ffi::OsString;

use super::{Output, TIMINGS, probe, probe_path};

/// `kp-probe` under `LD_PRELOAD=preload` with [`TIMINGS`] and `KEEPALIVE_INHERIT=inherit`:
/// a TCP socket, LD_PRELOAD and whether the library is mapped, then the same in the program it
/// execs (KEEPALIVE_INHERIT's six lines).
pub fn inherit_run(preload: impl Into<OsString>, inherit: &str) -> Output {
    let probe_exe = probe_path();
    let probe_exe = probe_exe.to_str().expect("utf-8");
    let report = ["report", "tcp4", "+", "env", "LD_PRELOAD", "+", "maps"];
    let exec = ["+", "exec", probe_exe];
    probe(&[&report[..], &exec, &report].concat())
        .env("LD_PRELOAD", preload)
        .env("KEEPALIVE_INHERIT", inherit)
        .envs(&TIMINGS)
        .run_ok()
}
