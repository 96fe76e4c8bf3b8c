//! The one parser of the environment variables. Pure and total: [`parse`] takes a lookup
//! function instead of the process environment, never fails as a whole, and returns the
//! configuration with one [`ConfigError`] per rejected variable (treated as unset). Values
//! are borrowed from the lookup, never copied.

use crate::show::{Out, Show, decimal, display_via_show};

use crate::filter::{ListProblem, NetList, PortList, ProgramList};
use crate::options::{
    KernelDefaults, MAX_KEEPALIVE_PROBES, MAX_KEEPALIVE_SECONDS, MAX_USER_TIMEOUT_MS, Override,
    Plan, SocketOption,
};
use crate::text::{Elided, Quoted};
use crate::variables::*;
use crate::{PREFIX, Targeting, utf8, value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    Off,
    #[default]
    Error,
    Info,
    Debug,
}

impl LogLevel {
    /// The levels' names, in [`LogLevel::VALUES`]' order.
    pub const WORDS: &'static str = "off|error|info|debug";
    pub const VALUES: [Self; 4] = [Self::Off, Self::Error, Self::Info, Self::Debug];

    pub fn name(self) -> &'static str {
        value::word(Self::WORDS, self as usize)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserTimeout {
    Millis(u32),
    /// (IDLE + INTVL × CNT) seconds from the effective values.
    Auto,
}

/// The whole configuration. `None` means "not set": the kernel's value stays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config<'e> {
    pub enabled: bool,
    pub idle: Option<u32>,
    pub interval: Option<u32>,
    pub count: Option<u32>,
    pub user_timeout: Option<UserTimeout>,
    pub override_policy: Override,
    pub log: LogLevel,
    pub strict: bool,
    pub ports: Option<PortList<'e>>,
    pub nets: Option<NetList<'e>>,
    pub programs: Option<ProgramList<'e>>,
    pub inherit: bool,
}

impl Default for Config<'_> {
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

impl<'e> Config<'e> {
    /// TCP_USER_TIMEOUT in milliseconds, with `auto` resolved against the effective timings.
    pub fn user_timeout_ms(&self, kernel: KernelDefaults) -> Option<u32> {
        match self.user_timeout? {
            UserTimeout::Millis(ms) => Some(ms),
            UserTimeout::Auto => {
                let idle = u64::from(self.idle.unwrap_or(kernel.idle));
                let interval = u64::from(self.interval.unwrap_or(kernel.interval));
                let count = u64::from(self.count.unwrap_or(kernel.count));
                let ms = idle
                    .saturating_add(interval.saturating_mul(count))
                    .saturating_mul(1000);
                Some(u32::try_from(ms.min(u64::from(MAX_USER_TIMEOUT_MS))).unwrap_or(0))
            }
        }
    }

    /// True when `auto` needs a kernel default because a timing is not configured.
    pub fn needs_kernel_defaults(&self) -> bool {
        self.user_timeout == Some(UserTimeout::Auto)
            && (self.idle.is_none() || self.interval.is_none() || self.count.is_none())
    }

    /// The value configured for `option` (SO_KEEPALIVE: 1); `None` leaves the kernel's.
    pub fn value(&self, option: SocketOption, kernel: KernelDefaults) -> Option<i32> {
        let int = |value: Option<u32>| value.and_then(|value| i32::try_from(value).ok());
        match option {
            SocketOption::KeepAlive => Some(1),
            SocketOption::Idle => int(self.idle),
            SocketOption::Interval => int(self.interval),
            SocketOption::Count => int(self.count),
            SocketOption::UserTimeout => int(self.user_timeout_ms(kernel)),
        }
    }

    /// Every configured option with its value, in the order they are applied.
    pub fn plan(&self, kernel: KernelDefaults) -> Plan {
        let mut plan = Plan::EMPTY;
        for option in SocketOption::ALL {
            if let Some(value) = self.value(option, kernel) {
                plan.push(option, value);
            }
        }
        plan
    }

    /// True when a socket can only be judged once its addresses are known.
    pub fn filters_by_address(&self) -> bool {
        self.ports.is_some() || self.nets.is_some()
    }

    /// Whether the process whose executable and argv[0] are given is one to act in.
    pub fn acts_in_program<'a>(&self, names: impl IntoIterator<Item = &'a [u8]>) -> bool {
        self.programs
            .is_none_or(|programs| programs.matches_any(names))
    }

    /// Effective timings and policy on one line, for `KEEPALIVE_LOG=info` and `check`.
    pub fn summary(&self, kernel: KernelDefaults) -> Summary<'_, 'e> {
        Summary {
            config: self,
            kernel,
        }
    }

    /// The targeting rule for these filters, over lookup structures the caller built.
    pub fn targeting<'s>(
        &self,
        ports: Option<&'s crate::PortSet>,
        nets: Option<crate::NetSet<'s>>,
    ) -> Targeting<'s> {
        Targeting { ports, nets }
    }
}

/// [`Config::summary`]'s line.
pub struct Summary<'c, 'e> {
    config: &'c Config<'e>,
    kernel: KernelDefaults,
}

impl Show for Summary<'_, '_> {
    fn show<O: Out>(&self, out: &mut O) {
        let config = self.config;
        let on_off = |on: bool| if on { "on" } else { "off" };
        let yes_no = |yes: bool| if yes { "yes" } else { "no" };
        out.text("keepalive=");
        out.text(on_off(config.enabled));
        for (label, value, unit) in [
            (" idle=", config.idle, "s"),
            (" interval=", config.interval, "s"),
            (" count=", config.count, ""),
        ] {
            out.text(label);
            match value {
                Some(value) => {
                    decimal(out, u64::from(value));
                    out.text(unit);
                }
                None => out.text("kernel"),
            }
        }
        out.text(" user_timeout=");
        match (config.user_timeout, config.user_timeout_ms(self.kernel)) {
            (user_timeout, Some(ms)) => {
                if user_timeout == Some(UserTimeout::Auto) {
                    out.text("auto=");
                }
                decimal(out, u64::from(ms));
                out.text("ms");
            }
            (_, None) => out.text("kernel"),
        }
        out.text(" override=");
        out.text(config.override_policy.name());
        for (label, list) in [
            (" ports=", config.ports.map(PortList::as_bytes)),
            (" nets=", config.nets.map(NetList::as_bytes)),
            (" programs=", config.programs.map(ProgramList::as_bytes)),
        ] {
            out.text(label);
            match list {
                Some(text) => Elided(text).show(out),
                None => out.text("any"),
            }
        }
        out.text(" inherit=");
        out.text(yes_no(config.inherit));
        out.text(" log=");
        out.text(config.log.name());
        out.text(" strict=");
        out.text(yes_no(config.strict));
    }
}

/// What is wrong with a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem<'e> {
    /// Not one of the accepted forms.
    NotAccepted,
    /// Not even UTF-8.
    NotUtf8,
    /// A list whose first bad item says why.
    List(ListProblem<'e>),
}

/// One rejected variable: printed as
/// `keepalive-preload: KEEPIDLE="1e3" is not a whole number of seconds in 1..32767; not applied`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError<'e> {
    /// The variable's name (only it and `accepted`: the library keeps no more of the table).
    pub variable: &'static str,
    /// What it accepts, as the table says.
    pub accepted: &'static str,
    /// The value as given.
    pub value: &'e [u8],
    pub problem: Problem<'e>,
}

impl ConfigError<'_> {
    /// The variable's row of the table.
    pub fn row(&self) -> Option<&'static Variable> {
        VARIABLES
            .iter()
            .find(|variable| variable.name == self.variable)
    }
}

impl Show for ConfigError<'_> {
    fn show<O: Out>(&self, out: &mut O) {
        out.text(PREFIX);
        out.text(": ");
        out.text(self.variable);
        out.text("=");
        Quoted(self.value).show(out);
        out.text(" is not ");
        match self.problem {
            Problem::NotAccepted => out.text(self.accepted),
            Problem::NotUtf8 => {
                out.text(self.accepted);
                out.text(" (not even UTF-8)");
            }
            Problem::List(problem) => {
                out.text("accepted: ");
                problem.show(out);
                out.text("; expected ");
                out.text(self.accepted);
            }
        }
        out.text("; not applied");
    }
}

display_via_show!(Summary<'_, '_>, ConfigError<'_>);

/// Every rejected variable, at most one each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errors<'e> {
    slots: [Option<ConfigError<'e>>; VARIABLES.len()],
}

impl<'e> Errors<'e> {
    /// No errors, filled in at run time: a constant would be a kilobyte in the library's
    /// read-only data (an empty slot is not all zero bytes), copied at every load.
    fn none() -> Self {
        Self {
            slots: core::array::from_fn(|_| None),
        }
    }

    fn push(&mut self, error: ConfigError<'e>) {
        if let Some(slot) = self.slots.iter_mut().find(|slot| slot.is_none()) {
            *slot = Some(error);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &ConfigError<'e>> {
        self.slots.iter().flatten()
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }
}

impl<'a, 'e> IntoIterator for &'a Errors<'e> {
    type Item = &'a ConfigError<'e>;
    type IntoIter = core::iter::Flatten<core::slice::Iter<'a, Option<ConfigError<'e>>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.slots.iter().flatten()
    }
}

/// A configuration and what was rejected on the way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed<'e> {
    pub config: Config<'e>,
    pub errors: Errors<'e>,
}

/// Reads every variable through `lookup` (the raw bytes of its value, if set) and parses it.
pub fn parse<'e>(mut lookup: impl FnMut(&str) -> Option<&'e [u8]>) -> Parsed<'e> {
    parse_by_index(|index| lookup(Key(index).name()))
}

/// [`parse`] with the variables looked up by their index in [`VARIABLES`] (the library reads
/// them all in one pass over the environment, in that order).
pub fn parse_by_index<'e>(lookup: impl FnMut(usize) -> Option<&'e [u8]>) -> Parsed<'e> {
    let mut reader = Reader {
        lookup,
        errors: Errors::none(),
    };
    let defaults = Config::default();
    let seconds = |text: &[u8]| value::seconds(text, 1, MAX_KEEPALIVE_SECONDS).ok_or(());
    let switch = |text: &[u8]| value::switch(text).ok_or(());
    let config = Config {
        enabled: reader
            .read(const { Key::of(&KEEPALIVE) }, switch)
            .unwrap_or(defaults.enabled),
        idle: reader.read(const { Key::of(&KEEPIDLE) }, seconds),
        interval: reader.read(const { Key::of(&KEEPINTVL) }, seconds),
        count: reader.read(const { Key::of(&KEEPCNT) }, |text| {
            value::count(text, 1, MAX_KEEPALIVE_PROBES).ok_or(())
        }),
        user_timeout: reader.read(const { Key::of(&KEEPALIVE_USER_TIMEOUT) }, |text| {
            if text.eq_ignore_ascii_case(b"auto") {
                Ok(UserTimeout::Auto)
            } else {
                value::milliseconds(text, 1, MAX_USER_TIMEOUT_MS)
                    .map(UserTimeout::Millis)
                    .ok_or(())
            }
        }),
        override_policy: reader
            .read(const { Key::of(&KEEPALIVE_OVERRIDE) }, |text| {
                value::one_of(text, Override::WORDS)
                    .and_then(|index| Override::VALUES.get(index).copied())
                    .ok_or(())
            })
            .unwrap_or(defaults.override_policy),
        log: reader
            .read(const { Key::of(&KEEPALIVE_LOG) }, |text| {
                value::one_of(text, LogLevel::WORDS)
                    .and_then(|index| LogLevel::VALUES.get(index).copied())
                    .ok_or(())
            })
            .unwrap_or(defaults.log),
        strict: reader
            .read(const { Key::of(&KEEPALIVE_STRICT) }, switch)
            .unwrap_or(defaults.strict),
        ports: reader.read(const { Key::of(&KEEPALIVE_PORTS) }, PortList::parse),
        nets: reader.read(const { Key::of(&KEEPALIVE_NETS) }, NetList::parse),
        programs: reader.read(const { Key::of(&KEEPALIVE_PROGRAMS) }, ProgramList::parse),
        inherit: reader
            .read(const { Key::of(&KEEPALIVE_INHERIT) }, switch)
            .unwrap_or(defaults.inherit),
    };
    Parsed {
        config,
        errors: reader.errors,
    }
}

/// Looks variables up and collects one error per rejected value.
struct Reader<'e, F> {
    lookup: F,
    errors: Errors<'e>,
}

/// How a parser's failure becomes a [`Problem`].
trait IntoProblem<'e> {
    fn into_problem(self) -> Problem<'e>;
}

impl<'e> IntoProblem<'e> for () {
    fn into_problem(self) -> Problem<'e> {
        Problem::NotAccepted
    }
}

impl<'e> IntoProblem<'e> for ListProblem<'e> {
    fn into_problem(self) -> Problem<'e> {
        Problem::List(self)
    }
}

impl<'e, F: FnMut(usize) -> Option<&'e [u8]>> Reader<'e, F> {
    /// `parse` applied to the variable's value, if it is set; a value it refuses is an error.
    /// (The work around `parse` is in two functions of their own: one copy, whatever `T`.)
    fn read<T, E: IntoProblem<'e>>(
        &mut self,
        variable: Key,
        parse: impl FnOnce(&'e [u8]) -> Result<T, E>,
    ) -> Option<T> {
        let text = self.text(variable)?;
        match parse(text) {
            Ok(parsed) => Some(parsed),
            Err(problem) => {
                self.reject(variable, text, problem.into_problem());
                None
            }
        }
    }

    /// The variable's value, if it is set and UTF-8 (if not, that is an error): the parsers
    /// and whoever shows an accepted list get UTF-8.
    #[inline(never)]
    fn text(&mut self, variable: Key) -> Option<&'e [u8]> {
        let text = (self.lookup)(variable.0)?;
        if !utf8::is_utf8(text) {
            self.reject(variable, text, Problem::NotUtf8);
            return None;
        }
        Some(text)
    }

    #[inline(never)]
    fn reject(&mut self, variable: Key, value: &'e [u8], problem: Problem<'e>) {
        self.errors.push(ConfigError {
            variable: variable.name(),
            accepted: variable.accepted(),
            value,
            problem,
        });
    }
}

#[cfg(test)]
mod tests;
