//! `check`: validate the variables of this environment, print the effective configuration.

use std::process::ExitCode;

use keepalive_config::{KernelDefaults, PREFIX, VARIABLES, parse};

use crate::EXIT_ERROR;

pub fn check() -> ExitCode {
    let parsed = parse(|name| std::env::var_os(name));
    for error in &parsed.errors {
        eprintln!("{error}");
    }
    let set: Vec<&str> = VARIABLES
        .iter()
        .map(|variable| variable.name)
        .filter(|name| std::env::var_os(name).is_some())
        .collect();
    if set.is_empty() {
        println!("{PREFIX}: no keepalive-preload variable is set; the library's defaults apply");
    }
    println!(
        "{PREFIX}: effective configuration: {}",
        parsed.config.summary(kernel_defaults())
    );
    if parsed.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{PREFIX}: check: {} invalid value{}; fix the environment (the library would ignore {})",
            parsed.errors.len(),
            if parsed.errors.len() == 1 { "" } else { "s" },
            if parsed.errors.len() == 1 {
                "it"
            } else {
                "them"
            },
        );
        ExitCode::from(EXIT_ERROR)
    }
}

/// The keepalive sysctls of this network namespace, for resolving `auto`; Linux's compiled-in
/// defaults where one cannot be read.
pub fn kernel_defaults() -> KernelDefaults {
    let read = |name: &str, fallback: u32| {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(fallback)
    };
    let linux = KernelDefaults::default();
    KernelDefaults {
        idle: read("tcp_keepalive_time", linux.idle),
        interval: read("tcp_keepalive_intvl", linux.interval),
        count: read("tcp_keepalive_probes", linux.count),
    }
}
