//! The one parser of keepalive-preload's environment variables, shared by the preload library
//! and the `keepalive-preload` command.
//!
//! Pure and total: [`parse`] takes a lookup function instead of the process environment,
//! never fails as a whole, and returns the configuration together with one [`ConfigError`]
//! per rejected variable. A rejected variable is treated as unset.

mod filter;
pub mod preload_list;
mod value;

use std::ffi::OsStr;
use std::fmt;

pub use filter::{NetSet, PortSet, ProgramSet};

/// The prefix of every line the library or the command prints about configuration.
pub const PREFIX: &str = "keepalive-preload";

/// One environment variable: its name, what it means and what it accepts (for errors,
/// `--help`, the man page and the README).
#[derive(Clone, Copy, Debug)]
pub struct Variable {
    pub name: &'static str,
    pub meaning: &'static str,
    /// Completes "… is not {accepted}" in an error line.
    pub accepted: &'static str,
    pub unset: &'static str,
}

pub const KEEPALIVE: Variable = Variable {
    name: "KEEPALIVE",
    meaning: "master switch: off makes the library do nothing",
    accepted: "one of on/off, 1/0, yes/no, true/false (any case)",
    unset: "on",
};
pub const KEEPIDLE: Variable = Variable {
    name: "KEEPIDLE",
    meaning: "TCP_KEEPIDLE: idle time before the first probe",
    accepted: "a whole number of seconds in 1..32767",
    unset: "kernel default",
};
pub const KEEPINTVL: Variable = Variable {
    name: "KEEPINTVL",
    meaning: "TCP_KEEPINTVL: time between probes",
    accepted: "a whole number of seconds in 1..32767",
    unset: "kernel default",
};
pub const KEEPCNT: Variable = Variable {
    name: "KEEPCNT",
    meaning: "TCP_KEEPCNT: unanswered probes before the connection is dropped",
    accepted: "a whole number in 1..127",
    unset: "kernel default",
};
pub const KEEPALIVE_USER_TIMEOUT: Variable = Variable {
    name: "KEEPALIVE_USER_TIMEOUT",
    meaning: "TCP_USER_TIMEOUT: how long sent data may stay unacknowledged",
    accepted: "milliseconds in 1..2147483647 (1500, 1500ms, 10s, 2m) or auto",
    unset: "kernel default",
};
pub const KEEPALIVE_OVERRIDE: Variable = Variable {
    name: "KEEPALIVE_OVERRIDE",
    meaning: "what happens when the program sets one of these options itself",
    accepted: "one of no, yes, tighten",
    unset: "no",
};
pub const KEEPALIVE_LOG: Variable = Variable {
    name: "KEEPALIVE_LOG",
    meaning: "diagnostics on standard error",
    accepted: "one of off, error, info, debug",
    unset: "error",
};
pub const KEEPALIVE_STRICT: Variable = Variable {
    name: "KEEPALIVE_STRICT",
    meaning: "with yes, an invalid variable makes the process exit with status 2 before main",
    accepted: "one of yes/no, on/off, 1/0, true/false (any case)",
    unset: "no",
};
pub const KEEPALIVE_PORTS: Variable = Variable {
    name: "KEEPALIVE_PORTS",
    meaning: "act only on sockets whose port matches (remote port when connecting, local port when listening or accepted)",
    accepted: "a comma-separated list of ports and ascending ranges in 1..65535, like 17000-17999,6379",
    unset: "every port",
};
pub const KEEPALIVE_NETS: Variable = Variable {
    name: "KEEPALIVE_NETS",
    meaning: "act only on sockets whose peer address is in one of these networks",
    accepted: "a comma-separated list of IPv4 or IPv6 networks, like 10.0.0.0/8,fd00::/8",
    unset: "every address",
};
pub const KEEPALIVE_PROGRAMS: Variable = Variable {
    name: "KEEPALIVE_PROGRAMS",
    meaning: "act only in these programs (base name of the executable or of argv[0])",
    accepted: "a comma-separated list of program names, like redis-server,redis-sentinel",
    unset: "every program",
};
pub const KEEPALIVE_INHERIT: Variable = Variable {
    name: "KEEPALIVE_INHERIT",
    meaning: "no removes this library from LD_PRELOAD at load, so programs the process runs start without it",
    accepted: "one of yes/no, on/off, 1/0, true/false (any case)",
    unset: "yes",
};

/// Every variable, in the order documentation lists them.
pub const VARIABLES: [Variable; 12] = [
    KEEPALIVE,
    KEEPIDLE,
    KEEPINTVL,
    KEEPCNT,
    KEEPALIVE_USER_TIMEOUT,
    KEEPALIVE_OVERRIDE,
    KEEPALIVE_LOG,
    KEEPALIVE_STRICT,
    KEEPALIVE_PORTS,
    KEEPALIVE_NETS,
    KEEPALIVE_PROGRAMS,
    KEEPALIVE_INHERIT,
];

/// TCP_KEEPIDLE and TCP_KEEPINTVL bounds (the kernel's MAX_TCP_KEEPIDLE/MAX_TCP_KEEPINTVL).
pub const MAX_KEEPALIVE_SECONDS: u32 = 32767;
/// TCP_KEEPCNT bound (the kernel's MAX_TCP_KEEPCNT).
pub const MAX_KEEPALIVE_PROBES: u32 = 127;
/// TCP_USER_TIMEOUT takes a non-negative C int.
pub const MAX_USER_TIMEOUT_MS: u32 = i32::MAX as u32;

/// What happens when the program itself sets one of the keepalive options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Override {
    /// The program wins (libkeepalive's behaviour).
    #[default]
    No,
    /// The configured value is applied instead; SO_KEEPALIVE cannot be turned off.
    Yes,
    /// The program may make an option more aggressive (smaller), never looser.
    Tighten,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    Off,
    #[default]
    Error,
    Info,
    Debug,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserTimeout {
    Millis(u32),
    /// (IDLE + INTVL × CNT) seconds from the effective values.
    Auto,
}

/// The kernel's keepalive timings for sockets that set none (the net.ipv4.tcp_keepalive_*
/// sysctls), needed to resolve `auto` when not every timing is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelDefaults {
    pub idle: u32,
    pub interval: u32,
    pub count: u32,
}

impl Default for KernelDefaults {
    /// Linux's compiled-in defaults.
    fn default() -> Self {
        Self {
            idle: 7200,
            interval: 75,
            count: 9,
        }
    }
}

/// The whole configuration. `None` means "not set": the kernel's value stays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub enabled: bool,
    pub idle: Option<u32>,
    pub interval: Option<u32>,
    pub count: Option<u32>,
    pub user_timeout: Option<UserTimeout>,
    pub override_policy: Override,
    pub log: LogLevel,
    pub strict: bool,
    pub ports: Option<PortSet>,
    pub nets: Option<NetSet>,
    pub programs: Option<ProgramSet>,
    pub inherit: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            enabled: true,
            idle: None,
            interval: None,
            count: None,
            user_timeout: None,
            override_policy: Override::No,
            log: LogLevel::Error,
            strict: false,
            ports: None,
            nets: None,
            programs: None,
            inherit: true,
        }
    }
}

impl Config {
    /// TCP_USER_TIMEOUT in milliseconds, with `auto` resolved against the effective timings.
    pub fn user_timeout_ms(&self, kernel: KernelDefaults) -> Option<u32> {
        match self.user_timeout? {
            UserTimeout::Millis(ms) => Some(ms),
            UserTimeout::Auto => {
                let idle = u64::from(self.idle.unwrap_or(kernel.idle));
                let interval = u64::from(self.interval.unwrap_or(kernel.interval));
                let count = u64::from(self.count.unwrap_or(kernel.count));
                let ms = (idle + interval * count) * 1000;
                Some(ms.min(u64::from(MAX_USER_TIMEOUT_MS)) as u32)
            }
        }
    }

    /// True when `auto` needs a kernel default because a timing is not configured.
    pub fn needs_kernel_defaults(&self) -> bool {
        self.user_timeout == Some(UserTimeout::Auto)
            && (self.idle.is_none() || self.interval.is_none() || self.count.is_none())
    }

    /// True when a socket can only be judged once its addresses are known.
    pub fn filters_by_address(&self) -> bool {
        self.ports.is_some() || self.nets.is_some()
    }

    /// Whether the process whose executable and argv[0] are given is one to act in.
    pub fn acts_in_program<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> bool {
        self.programs
            .as_ref()
            .is_none_or(|programs| programs.matches_any(names))
    }

    /// Effective timings and policy on one line, for `KEEPALIVE_LOG=info` and `check`.
    pub fn summary(&self, kernel: KernelDefaults) -> String {
        let seconds = |value: Option<u32>| match value {
            Some(seconds) => format!("{seconds}s"),
            None => "kernel".to_owned(),
        };
        let user_timeout = match (self.user_timeout, self.user_timeout_ms(kernel)) {
            (Some(UserTimeout::Auto), Some(ms)) => format!("auto={ms}ms"),
            (_, Some(ms)) => format!("{ms}ms"),
            (_, None) => "kernel".to_owned(),
        };
        let or_any = |value: Option<String>| value.unwrap_or_else(|| "any".to_owned());
        format!(
            "keepalive={} idle={} interval={} count={} user_timeout={} override={} ports={} nets={} programs={} inherit={} log={} strict={}",
            if self.enabled { "on" } else { "off" },
            seconds(self.idle),
            seconds(self.interval),
            self.count
                .map_or("kernel".to_owned(), |count| count.to_string()),
            user_timeout,
            self.override_policy.name(),
            or_any(self.ports.as_ref().map(ToString::to_string)),
            or_any(self.nets.as_ref().map(ToString::to_string)),
            or_any(self.programs.as_ref().map(ToString::to_string)),
            yes_no(self.inherit),
            self.log.name(),
            yes_no(self.strict),
        )
    }
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

impl Override {
    const NAMES: [&'static str; 3] = ["no", "yes", "tighten"];
    const VALUES: [Self; 3] = [Self::No, Self::Yes, Self::Tighten];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

impl LogLevel {
    const NAMES: [&'static str; 4] = ["off", "error", "info", "debug"];
    const VALUES: [Self; 4] = [Self::Off, Self::Error, Self::Info, Self::Debug];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// One rejected variable: printed as
/// `keepalive-preload: KEEPIDLE="1e3" is not a whole number of seconds in 1..32767; not applied`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    /// The value as given (lossily decoded when it was not UTF-8).
    pub value: String,
    /// What is wrong: "is not …", or a more precise reason for lists.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}: {}={:?} {}; not applied",
            self.variable, self.value, self.problem
        )
    }
}

impl std::error::Error for ConfigError {}

/// A configuration and what was rejected on the way.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Parsed {
    pub config: Config,
    pub errors: Vec<ConfigError>,
}

/// Reads every variable through `lookup` (e.g. `std::env::var_os`) and parses it.
pub fn parse<F, S>(lookup: F) -> Parsed
where
    F: FnMut(&str) -> Option<S>,
    S: AsRef<OsStr>,
{
    let mut reader = Reader {
        lookup,
        errors: Vec::new(),
    };
    let defaults = Config::default();
    let seconds = |text: &str| value::seconds(text, 1, MAX_KEEPALIVE_SECONDS);
    let config = Config {
        enabled: reader
            .read(KEEPALIVE, value::switch)
            .unwrap_or(defaults.enabled),
        idle: reader.read(KEEPIDLE, seconds),
        interval: reader.read(KEEPINTVL, seconds),
        count: reader.read(KEEPCNT, |text| value::count(text, 1, MAX_KEEPALIVE_PROBES)),
        user_timeout: reader.read(KEEPALIVE_USER_TIMEOUT, |text| {
            if text.eq_ignore_ascii_case("auto") {
                Some(UserTimeout::Auto)
            } else {
                value::milliseconds(text, 1, MAX_USER_TIMEOUT_MS).map(UserTimeout::Millis)
            }
        }),
        override_policy: reader
            .read(KEEPALIVE_OVERRIDE, |text| {
                value::one_of(text, &Override::NAMES).map(|index| Override::VALUES[index])
            })
            .unwrap_or(defaults.override_policy),
        log: reader
            .read(KEEPALIVE_LOG, |text| {
                value::one_of(text, &LogLevel::NAMES).map(|index| LogLevel::VALUES[index])
            })
            .unwrap_or(defaults.log),
        strict: reader
            .read(KEEPALIVE_STRICT, value::switch)
            .unwrap_or(defaults.strict),
        ports: reader.read_list(KEEPALIVE_PORTS, PortSet::parse),
        nets: reader.read_list(KEEPALIVE_NETS, NetSet::parse),
        programs: reader.read_list(KEEPALIVE_PROGRAMS, ProgramSet::parse),
        inherit: reader
            .read(KEEPALIVE_INHERIT, value::switch)
            .unwrap_or(defaults.inherit),
    };
    Parsed {
        config,
        errors: reader.errors,
    }
}

/// Looks variables up and collects one error per rejected value.
struct Reader<F> {
    lookup: F,
    errors: Vec<ConfigError>,
}

impl<F, S> Reader<F>
where
    F: FnMut(&str) -> Option<S>,
    S: AsRef<OsStr>,
{
    /// A single value: rejected as "is not {accepted}".
    fn read<T>(&mut self, variable: Variable, parse: impl FnOnce(&str) -> Option<T>) -> Option<T> {
        self.read_list(variable, |text| parse(text).ok_or(()))
    }

    /// A list: rejected with the reason the list parser gives for its first bad item.
    fn read_list<T, E: ListProblem>(
        &mut self,
        variable: Variable,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        let raw = (self.lookup)(variable.name)?;
        let raw = raw.as_ref();
        let problem = match raw.to_str().map(parse) {
            Some(Ok(parsed)) => return Some(parsed),
            Some(Err(problem)) => problem.describe(variable),
            None => format!("is not {} (not even UTF-8)", variable.accepted),
        };
        self.errors.push(ConfigError {
            variable: variable.name,
            value: raw.to_string_lossy().into_owned(),
            problem,
        });
        None
    }
}

/// How a parser's failure reads in an error line.
trait ListProblem {
    fn describe(self, variable: Variable) -> String;
}

impl ListProblem for () {
    fn describe(self, variable: Variable) -> String {
        format!("is not {}", variable.accepted)
    }
}

impl ListProblem for String {
    fn describe(self, variable: Variable) -> String {
        format!("is not accepted: {self}; expected {}", variable.accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::ffi::OsString;

    fn parse_pairs(pairs: &[(&str, &str)]) -> Parsed {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        parse(|name| map.get(name).copied())
    }

    #[test]
    fn empty_environment_is_libkeepalive_default() {
        let parsed = parse_pairs(&[]);
        assert_eq!(parsed.config, Config::default());
        assert!(parsed.errors.is_empty());
        assert!(parsed.config.enabled);
    }

    #[test]
    fn full_configuration() {
        let parsed = parse_pairs(&[
            ("KEEPALIVE", "Yes"),
            ("KEEPIDLE", "2m"),
            ("KEEPINTVL", "10"),
            ("KEEPCNT", "6"),
            ("KEEPALIVE_USER_TIMEOUT", "auto"),
            ("KEEPALIVE_OVERRIDE", "TIGHTEN"),
            ("KEEPALIVE_LOG", "debug"),
            ("KEEPALIVE_STRICT", "yes"),
            ("KEEPALIVE_PORTS", "17000-17999"),
            ("KEEPALIVE_NETS", "10.0.0.0/8"),
            ("KEEPALIVE_PROGRAMS", "redis-server"),
            ("KEEPALIVE_INHERIT", "no"),
        ]);
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let config = parsed.config;
        assert_eq!(
            (config.idle, config.interval, config.count),
            (Some(120), Some(10), Some(6))
        );
        assert_eq!(
            config.user_timeout_ms(KernelDefaults::default()),
            Some(180_000)
        );
        assert_eq!(config.override_policy, Override::Tighten);
        assert_eq!(config.log, LogLevel::Debug);
        assert!(config.strict && !config.inherit && config.filters_by_address());
        assert!(config.acts_in_program(["/usr/bin/redis-server"]));
        assert!(!config.acts_in_program(["/bin/sh", "sh"]));
    }

    #[test]
    fn auto_uses_kernel_defaults_for_missing_timings() {
        let parsed = parse_pairs(&[("KEEPIDLE", "60"), ("KEEPALIVE_USER_TIMEOUT", "auto")]);
        assert!(parsed.config.needs_kernel_defaults());
        let kernel = KernelDefaults {
            idle: 7200,
            interval: 75,
            count: 9,
        };
        assert_eq!(
            parsed.config.user_timeout_ms(kernel),
            Some((60 + 75 * 9) * 1000)
        );
    }

    #[test]
    fn error_line_names_variable_value_and_what_is_accepted() {
        let parsed = parse_pairs(&[("KEEPIDLE", "1e3")]);
        assert_eq!(parsed.config.idle, None);
        assert_eq!(
            parsed.errors[0].to_string(),
            "keepalive-preload: KEEPIDLE=\"1e3\" is not a whole number of seconds in 1..32767; not applied"
        );
        let parsed = parse_pairs(&[("KEEPALIVE_PORTS", "17000-1700")]);
        assert!(
            parsed.errors[0]
                .to_string()
                .contains("\"17000-1700\" is not ascending")
        );
        let parsed = parse_pairs(&[("KEEPALIVE_NETS", "10.0.0.0/33")]);
        assert!(
            parsed.errors[0]
                .to_string()
                .contains("prefix length \"33\"")
        );
    }

    #[test]
    fn every_bad_value_is_one_error_and_unapplied() {
        let bad = [
            ("KEEPALIVE", "maybe"),
            ("KEEPIDLE", "10abc"),
            ("KEEPINTVL", "0"),
            ("KEEPCNT", "128"),
            ("KEEPALIVE_USER_TIMEOUT", "-1"),
            ("KEEPALIVE_OVERRIDE", "always"),
            ("KEEPALIVE_LOG", "verbose"),
            ("KEEPALIVE_STRICT", "2"),
            ("KEEPALIVE_PORTS", "0-10"),
            ("KEEPALIVE_NETS", "::1/200"),
            ("KEEPALIVE_PROGRAMS", "a/b"),
            ("KEEPALIVE_INHERIT", ""),
        ];
        let parsed = parse_pairs(&bad);
        assert_eq!(parsed.errors.len(), bad.len(), "{:?}", parsed.errors);
        assert_eq!(parsed.config, Config::default());
        for (error, (name, value)) in parsed.errors.iter().zip(bad) {
            assert_eq!((error.variable, error.value.as_str()), (name, value));
            assert!(error.to_string().ends_with("; not applied"));
        }
    }

    #[test]
    fn non_utf8_value_is_an_error_not_a_panic() {
        use std::os::unix::ffi::OsStringExt;
        let parsed =
            parse(|name| (name == "KEEPCNT").then(|| OsString::from_vec(vec![0xff, b'3'])));
        assert_eq!(parsed.errors.len(), 1);
        assert_eq!(parsed.config.count, None);
    }

    #[test]
    fn summary_is_one_line() {
        let parsed = parse_pairs(&[("KEEPIDLE", "60"), ("KEEPALIVE_USER_TIMEOUT", "10s")]);
        let line = parsed.config.summary(KernelDefaults::default());
        assert!(line.starts_with(
            "keepalive=on idle=60s interval=kernel count=kernel user_timeout=10000ms override=no"
        ));
        assert!(!line.contains('\n'));
    }
}
