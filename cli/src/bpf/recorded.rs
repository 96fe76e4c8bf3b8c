//! The variables recorded with a policy (NAME=value lines in its `info` map): written at
//! attach, parsed back through the one parser by `status` and `inspect`.

use std::collections::HashMap;
use std::ffi::OsString;

use keepalive_config::{Config, KernelDefaults, Parsed};

use crate::settings::parse_kept;

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
        lines.push(format!("KEEPALIVE_PORTS={}", ports.as_str()));
    }
    if let Some(nets) = config.nets {
        lines.push(format!("KEEPALIVE_NETS={}", nets.as_str()));
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
        config.ports.map_or("any", |ports| ports.as_str()),
        config.nets.map_or("any", |nets| nets.as_str()),
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
