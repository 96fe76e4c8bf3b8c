//! A systemd unit named with `--unit` (`apply`, `bpf attach`, `bpf detach`): its name checked,
//! its properties read with `systemctl show`. Every error is one line: a name systemctl would
//! refuse is refused here first, and of systemctl's own error only its first line is kept.

use std::path::Path;
use std::process::Command;

/// The characters of a unit name (systemd's unit_name_is_valid); `\` comes from systemd-escape.
fn valid_character(c: char) -> bool {
    c.is_ascii_alphanumeric() || ":-_.\\@".contains(c)
}

/// systemd's unit types: a name without one of these suffixes means NAME.service, as for
/// systemctl.
const TYPES: [&str; 11] = [
    "service",
    "socket",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "timer",
    "path",
    "slice",
    "scope",
];

/// The unit's full name (`redis-server` is `redis-server.service`), or why the name is not one.
pub fn normalize(unit: &str) -> Result<String, String> {
    let invalid = |why: &str| {
        Err(format!(
            "not a valid unit name ({why}; systemd-escape makes one from any string)"
        ))
    };
    if unit.is_empty() || unit.len() > 255 {
        return invalid("1 to 255 characters");
    }
    if !unit.chars().all(valid_character) {
        return invalid("letters, digits and :-_.\\@ only");
    }
    let typed = unit
        .rsplit_once('.')
        .is_some_and(|(_, suffix)| TYPES.contains(&suffix));
    let name = if typed {
        unit.to_owned()
    } else {
        format!("{unit}.service")
    };
    let prefix = name.rsplit_once('.').map_or("", |(prefix, _)| prefix);
    if prefix.is_empty() || prefix.starts_with('@') || prefix.ends_with('@') {
        return invalid("a template needs an instance: NAME@INSTANCE.service");
    }
    Ok(name)
}

/// Some properties of a loaded unit.
#[derive(Debug, Default)]
pub struct Unit {
    pub name: String,
    /// Its ControlGroup (/system.slice/NAME): empty when it runs no process.
    pub control_group: String,
    /// The units that start it (TriggeredBy=): sockets, paths, timers.
    pub triggered_by: Vec<String>,
}

/// `systemctl show` of a unit: an error (one line, without a prefix) when systemd does not
/// run here, the name is not one, or no such unit exists.
pub fn show(unit: &str) -> Result<Unit, String> {
    let name = normalize(unit)?;
    if !Path::new("/run/systemd/system").is_dir() {
        return Err(
            "systemd is not running on this machine (no /run/systemd/system); give the control \
             group instead"
                .to_owned(),
        );
    }
    let output = Command::new("systemctl")
        .args([
            "show",
            "--property=LoadState",
            "--property=ControlGroup",
            "--property=TriggeredBy",
            "--",
        ])
        .arg(&name)
        .output()
        .map_err(|error| format!("cannot run systemctl: {error}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .unwrap_or("no message");
        return Err(format!("systemctl show failed: {first}"));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let property = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
            .unwrap_or("")
            .to_owned()
    };
    if property("LoadState") == "not-found" {
        return Err("no such unit (systemctl list-units lists the loaded ones)".to_owned());
    }
    Ok(Unit {
        control_group: property("ControlGroup"),
        triggered_by: property("TriggeredBy")
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn names_as_systemctl_takes_them() {
        assert_eq!(normalize("redis-server").unwrap(), "redis-server.service");
        assert_eq!(normalize("a.socket").unwrap(), "a.socket");
        assert_eq!(
            normalize("redis-cluster@7001").unwrap(),
            "redis-cluster@7001.service"
        );
        assert_eq!(normalize("x\\x2dy.service").unwrap(), "x\\x2dy.service");
        assert_eq!(normalize("v1.2").unwrap(), "v1.2.service");
        for bad in [
            "",
            "bad name!",
            "a/b",
            "foo@.service",
            "@x.service",
            ".service",
        ] {
            let error = normalize(bad).unwrap_err();
            assert!(error.contains("not a valid unit name"), "{bad}: {error}");
            assert_eq!(error.lines().count(), 1);
        }
    }
}
