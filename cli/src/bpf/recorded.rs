//! What is recorded with a policy in its `info` map: the cgroup, and the variables as
//! NAME=value lines, written at attach and parsed back through the one parser by `status` and
//! `inspect`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;

use keepalive_config::{Config, KernelDefaults, Parsed};

use super::cgroup::Cgroup;
use super::load::failure;
use super::sys;
use crate::Failure;
use crate::settings::{list_or_any, parse_kept};

/// info map value: version, cgroup id, path and variables (NUL-padded).
const INFO_VERSION: u32 = 1;
const INFO_PATH: usize = 4096;
pub(super) const INFO_SIZE: usize = 65536;

/// Records the cgroup and the variables in the policy's `info` map.
pub(super) fn write_info(
    info: BorrowedFd<'_>,
    cgroup: &Cgroup,
    variables: &str,
) -> Result<(), Failure> {
    let mut value = vec![0u8; INFO_SIZE];
    value[0..4].copy_from_slice(&INFO_VERSION.to_ne_bytes());
    value[8..16].copy_from_slice(&cgroup.id.to_ne_bytes());
    let path = cgroup.path.as_os_str().as_encoded_bytes();
    if path.len() >= INFO_PATH - 16 || variables.len() >= INFO_SIZE - INFO_PATH {
        return Err(Failure::new(
            "the cgroup path or the variables are too long to record",
        ));
    }
    value[16..16 + path.len()].copy_from_slice(path);
    value[INFO_PATH..INFO_PATH + variables.len()].copy_from_slice(variables.as_bytes());
    sys::map_update(info, &0u32.to_ne_bytes(), &value)
        .map_err(|error| failure("recording the policy", &error))
}

/// The cgroup id, path and variables recorded in an `info` map.
pub(super) fn read_info(info: BorrowedFd<'_>) -> Result<(u64, PathBuf, String), String> {
    // Another version's info map may be larger: never read it into a buffer of this size.
    let size = sys::map_value_size(info).map_err(|error| error.to_string())?;
    if usize::try_from(size).ok() != Some(INFO_SIZE) {
        return Err(format!(
            "recorded by another version (a {size}-byte record)"
        ));
    }
    let mut value = vec![0u8; INFO_SIZE];
    sys::map_lookup(info, &0u32.to_ne_bytes(), &mut value).map_err(|error| error.to_string())?;
    let version = u32::from_ne_bytes(value[0..4].try_into().unwrap_or_default());
    if version != INFO_VERSION {
        return Err(format!("recorded by another version (layout {version})"));
    }
    let id = u64::from_ne_bytes(value[8..16].try_into().unwrap_or_default());
    let text = |bytes: &[u8]| {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    };
    Ok((
        id,
        PathBuf::from(text(&value[16..INFO_PATH])),
        text(&value[INFO_PATH..]),
    ))
}

/// The variables a policy was attached with, as NAME=value lines: what `status` shows and what
/// `inspect` parses back (through the one parser) to judge a socket. `auto` is resolved.
pub(super) fn variables_text(config: &Config<'_>, kernel: KernelDefaults) -> String {
    let mut lines = vec![format!(
        "KEEPALIVE={}",
        if config.enabled { "on" } else { "off" }
    )];
    for (name, value) in [
        ("KEEPIDLE", config.idle),
        ("KEEPINTVL", config.interval),
        ("KEEPCNT", config.count),
        ("KEEPALIVE_USER_TIMEOUT", config.user_timeout_ms(kernel)),
    ] {
        if let Some(value) = value {
            lines.push(format!("{name}={value}"));
        }
    }
    lines.push(format!(
        "KEEPALIVE_OVERRIDE={}",
        config.override_policy.name()
    ));
    if let Some(ports) = config.ports {
        lines.push(format!("KEEPALIVE_PORTS={ports}"));
    }
    if let Some(nets) = config.nets {
        lines.push(format!("KEEPALIVE_NETS={nets}"));
    }
    lines.join("\n")
}

/// The configuration recorded with a policy, through the one parser.
pub(super) fn parse_variables(text: &str) -> Parsed<'static> {
    let values: HashMap<&str, OsString> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name, OsString::from(value)))
        .collect();
    parse_kept(|name| values.get(name).cloned())
}

/// One line: idle=2s interval=1s count=3 user_timeout=3000ms override=yes ports=... nets=...
pub(super) fn describe(config: &Config<'_>, kernel: KernelDefaults) -> String {
    if !config.enabled {
        return "KEEPALIVE=off: the programs leave every socket alone".to_owned();
    }
    let show = |value: Option<u32>, unit: &str| {
        value.map_or_else(|| "kernel".to_owned(), |value| format!("{value}{unit}"))
    };
    format!(
        "keepalive=on idle={} interval={} count={} user_timeout={} override={} ports={} nets={}",
        show(config.idle, "s"),
        show(config.interval, "s"),
        show(config.count, ""),
        show(config.user_timeout_ms(kernel), "ms"),
        config.override_policy.name(),
        list_or_any(config.ports),
        list_or_any(config.nets),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_variables_parse_back_to_the_same_plan() {
        let map: HashMap<&str, &str> = [
            ("KEEPIDLE", "2m"),
            ("KEEPINTVL", "1"),
            ("KEEPALIVE_USER_TIMEOUT", "auto"),
            ("KEEPALIVE_OVERRIDE", "tighten"),
            ("KEEPALIVE_PORTS", "17000-17999,6379"),
            ("KEEPALIVE_NETS", "10.0.0.0/8,fd00::/8"),
        ]
        .into_iter()
        .collect();
        let parsed = parse_kept(|name| map.get(name).map(OsString::from));
        let kernel = keepalive_config::KernelDefaults::default();
        let text = variables_text(&parsed.config, kernel);
        let again = parse_variables(&text);
        assert!(again.errors.is_empty(), "{text}");
        assert_eq!(again.config.plan(kernel), parsed.config.plan(kernel));
        assert_eq!(again.config.override_policy, parsed.config.override_policy);
        assert_eq!(again.config.ports, parsed.config.ports);
        assert_eq!(again.config.nets, parsed.config.nets);
    }
}
