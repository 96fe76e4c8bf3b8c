//! The one table of socket options the policy manages: level, name, kernel bounds, label, the
//! variable that configures it, and the rule for "the tighter of two values". The library, the
//! command (`inspect`, `apply`) and the eBPF loader all read it; adding an option is one row.

use crate::Variable;
use crate::variables::{KEEPALIVE, KEEPALIVE_USER_TIMEOUT, KEEPCNT, KEEPIDLE, KEEPINTVL};

/// Linux's values (include/uapi/asm-generic/socket.h, include/uapi/linux/tcp.h, in.h); the
/// unit tests compare them with the `libc` crate's.
pub const SOL_SOCKET: i32 = 1;
pub const SO_KEEPALIVE: i32 = 9;
pub const IPPROTO_TCP: i32 = 6;
pub const TCP_KEEPIDLE: i32 = 4;
pub const TCP_KEEPINTVL: i32 = 5;
pub const TCP_KEEPCNT: i32 = 6;
pub const TCP_USER_TIMEOUT: i32 = 18;

/// TCP_KEEPIDLE and TCP_KEEPINTVL bounds (the kernel's MAX_TCP_KEEPIDLE/MAX_TCP_KEEPINTVL).
pub const MAX_KEEPALIVE_SECONDS: u32 = 32767;
/// TCP_KEEPCNT bound (the kernel's MAX_TCP_KEEPCNT).
pub const MAX_KEEPALIVE_PROBES: u32 = 127;
/// TCP_USER_TIMEOUT takes a non-negative C int.
pub const MAX_USER_TIMEOUT_MS: u32 = i32::MAX as u32;

/// The options, in the order they are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SocketOption {
    KeepAlive,
    Idle,
    Interval,
    Count,
    UserTimeout,
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct OptionRow {
    pub level: i32,
    pub name: i32,
    /// The C constant, for messages: `TCP_KEEPIDLE`.
    pub constant: &'static str,
    /// Short label in logs and tables: `idle`.
    pub label: &'static str,
    /// The variable that configures it (SO_KEEPALIVE: the master switch).
    pub variable: Variable,
    /// The values the kernel accepts from setsockopt.
    pub min: i32,
    pub max: i32,
}

impl SocketOption {
    pub const COUNT: usize = 5;
    pub const ALL: [Self; Self::COUNT] = [
        Self::KeepAlive,
        Self::Idle,
        Self::Interval,
        Self::Count,
        Self::UserTimeout,
    ];

    pub const fn row(self) -> OptionRow {
        const SECONDS: i32 = MAX_KEEPALIVE_SECONDS as i32;
        match self {
            Self::KeepAlive => OptionRow {
                level: SOL_SOCKET,
                name: SO_KEEPALIVE,
                constant: "SO_KEEPALIVE",
                label: "keepalive",
                variable: KEEPALIVE,
                min: i32::MIN,
                max: i32::MAX,
            },
            Self::Idle => OptionRow {
                level: IPPROTO_TCP,
                name: TCP_KEEPIDLE,
                constant: "TCP_KEEPIDLE",
                label: "idle",
                variable: KEEPIDLE,
                min: 1,
                max: SECONDS,
            },
            Self::Interval => OptionRow {
                level: IPPROTO_TCP,
                name: TCP_KEEPINTVL,
                constant: "TCP_KEEPINTVL",
                label: "intvl",
                variable: KEEPINTVL,
                min: 1,
                max: SECONDS,
            },
            Self::Count => OptionRow {
                level: IPPROTO_TCP,
                name: TCP_KEEPCNT,
                constant: "TCP_KEEPCNT",
                label: "cnt",
                variable: KEEPCNT,
                min: 1,
                max: MAX_KEEPALIVE_PROBES as i32,
            },
            Self::UserTimeout => OptionRow {
                level: IPPROTO_TCP,
                name: TCP_USER_TIMEOUT,
                constant: "TCP_USER_TIMEOUT",
                label: "user_timeout",
                variable: KEEPALIVE_USER_TIMEOUT,
                min: 0,
                max: i32::MAX,
            },
        }
    }

    // level and name are not read through `row`'s match: the library asks for them in many
    // places, and a match becomes a lookup table in each.

    pub const fn level(self) -> i32 {
        LEVELS[self as usize]
    }

    pub const fn name(self) -> i32 {
        NAMES[self as usize]
    }

    pub const fn label(self) -> &'static str {
        self.row().label
    }

    /// The option a `setsockopt(level, name)` call sets, if it is one of ours.
    pub fn from_level_and_name(level: i32, name: i32) -> Option<Self> {
        // A match, not a search of the table: every setsockopt of the program passes here.
        match (level, name) {
            (SOL_SOCKET, SO_KEEPALIVE) => Some(Self::KeepAlive),
            (IPPROTO_TCP, TCP_KEEPIDLE) => Some(Self::Idle),
            (IPPROTO_TCP, TCP_KEEPINTVL) => Some(Self::Interval),
            (IPPROTO_TCP, TCP_KEEPCNT) => Some(Self::Count),
            (IPPROTO_TCP, TCP_USER_TIMEOUT) => Some(Self::UserTimeout),
            _ => None,
        }
    }

    /// Whether the kernel accepts `value` for this option (a rejected value is never replaced,
    /// so the program's call fails exactly as it would without us).
    pub fn kernel_accepts(self, value: i32) -> bool {
        let row = self.row();
        row.min <= value && value <= row.max
    }

    /// The more aggressive of two accepted values.
    pub fn tighter(self, a: i32, b: i32) -> i32 {
        match self {
            Self::KeepAlive => i32::from(a != 0 || b != 0),
            // 0 means "never time out": anything else is tighter.
            Self::UserTimeout if a == 0 => b,
            Self::UserTimeout if b == 0 => a,
            _ => a.min(b),
        }
    }

    /// What a new socket reads back when nobody set the option.
    pub fn kernel_default(self, kernel: KernelDefaults) -> i32 {
        let seconds = |value: u32| i32::try_from(value).unwrap_or(i32::MAX);
        match self {
            Self::KeepAlive | Self::UserTimeout => 0,
            Self::Idle => seconds(kernel.idle),
            Self::Interval => seconds(kernel.interval),
            Self::Count => seconds(kernel.count),
        }
    }
}

/// Each option's level and name, in `SocketOption`'s order, from its row.
static LEVELS: [i32; SocketOption::COUNT] = column!(level);
static NAMES: [i32; SocketOption::COUNT] = column!(name);

/// One field of every row, at compile time.
macro_rules! column {
    ($field:ident) => {{
        let mut values = [0; SocketOption::COUNT];
        let mut index = 0;
        while index < SocketOption::COUNT {
            values[index] = SocketOption::ALL[index].row().$field;
            index += 1;
        }
        values
    }};
}
use column;

/// The kernel's keepalive timings for sockets that set none (the net.ipv4.tcp_keepalive_*
/// sysctls of a network namespace).
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

/// What happens when the program itself sets one of the options.
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

impl Override {
    /// The values' names, in [`Override::VALUES`]' order.
    pub const WORDS: &'static str = "no|yes|tighten";
    pub const VALUES: [Self; 3] = [Self::No, Self::Yes, Self::Tighten];

    pub fn name(self) -> &'static str {
        crate::value::word(Self::WORDS, self as usize)
    }

    /// The program asked for `asked` (a value the kernel accepts) where `configured` is ours:
    /// the value to put on the socket instead, or `None` to leave the program's.
    pub fn replace(self, option: SocketOption, asked: i32, configured: i32) -> Option<i32> {
        let chosen = match self {
            Self::No => return None,
            Self::Yes => configured,
            Self::Tighten => option.tighter(asked, configured),
        };
        (chosen != asked).then_some(chosen)
    }

    /// A socket that already exists is configured (judged late, or inherited, or another
    /// process's): `current` is what the kernel reads back. A value other than the kernel's
    /// default was set by the program and follows [`Override::replace`]; a default one is ours
    /// to set. `None`: leave the socket's value.
    pub fn settle(
        self,
        option: SocketOption,
        current: i32,
        kernel: KernelDefaults,
        configured: i32,
    ) -> Option<i32> {
        if current == option.kernel_default(kernel) {
            (current != configured).then_some(configured)
        } else {
            self.replace(option, current, configured)
        }
    }
}

/// The options to set and their values, in table order: what `Config::plan` resolves once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    steps: [(SocketOption, i32); SocketOption::COUNT],
    len: usize,
}

impl Plan {
    pub const EMPTY: Self = Self {
        steps: [(SocketOption::KeepAlive, 0); SocketOption::COUNT],
        len: 0,
    };

    /// Adds a step (ignored beyond one per option).
    pub fn push(&mut self, option: SocketOption, value: i32) {
        if let Some(step) = self.steps.get_mut(self.len) {
            *step = (option, value);
            self.len += 1;
        }
    }

    pub fn steps(&self) -> &[(SocketOption, i32)] {
        self.steps.get(..self.len).unwrap_or(&[])
    }

    pub fn value(&self, option: SocketOption) -> Option<i32> {
        self.steps()
            .iter()
            .find(|(planned, _)| *planned == option)
            .map(|&(_, value)| value)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_are_linux_values() {
        assert_eq!(SOL_SOCKET, libc::SOL_SOCKET);
        assert_eq!(SO_KEEPALIVE, libc::SO_KEEPALIVE);
        assert_eq!(IPPROTO_TCP, libc::IPPROTO_TCP);
        assert_eq!(TCP_KEEPIDLE, libc::TCP_KEEPIDLE);
        assert_eq!(TCP_KEEPINTVL, libc::TCP_KEEPINTVL);
        assert_eq!(TCP_KEEPCNT, libc::TCP_KEEPCNT);
        assert_eq!(TCP_USER_TIMEOUT, libc::TCP_USER_TIMEOUT);
    }

    #[test]
    fn every_option_round_trips_through_level_and_name() {
        for option in SocketOption::ALL {
            assert_eq!(
                SocketOption::from_level_and_name(option.level(), option.name()),
                Some(option)
            );
        }
        assert_eq!(SocketOption::from_level_and_name(IPPROTO_TCP, 1), None);
    }

    #[test]
    fn kernel_bounds() {
        assert!(SocketOption::Idle.kernel_accepts(32767));
        assert!(!SocketOption::Idle.kernel_accepts(0));
        assert!(!SocketOption::Count.kernel_accepts(128));
        assert!(SocketOption::UserTimeout.kernel_accepts(0));
        assert!(!SocketOption::UserTimeout.kernel_accepts(-1));
        assert!(SocketOption::KeepAlive.kernel_accepts(-5));
    }

    #[test]
    fn tighter_of_two() {
        assert_eq!(SocketOption::Idle.tighter(30, 2), 2);
        assert_eq!(SocketOption::KeepAlive.tighter(0, 1), 1);
        assert_eq!(SocketOption::UserTimeout.tighter(0, 3000), 3000);
        assert_eq!(SocketOption::UserTimeout.tighter(5000, 0), 5000);
        assert_eq!(SocketOption::UserTimeout.tighter(1000, 3000), 1000);
    }

    #[test]
    fn override_replace_and_settle() {
        let idle = SocketOption::Idle;
        assert_eq!(Override::No.replace(idle, 30, 2), None);
        assert_eq!(Override::Yes.replace(idle, 30, 2), Some(2));
        assert_eq!(Override::Yes.replace(idle, 2, 2), None);
        assert_eq!(Override::Tighten.replace(idle, 30, 2), Some(2));
        assert_eq!(Override::Tighten.replace(idle, 1, 2), None);
        let kernel = KernelDefaults::default();
        // A default value is ours to set under every policy.
        assert_eq!(Override::No.settle(idle, 7200, kernel, 2), Some(2));
        // The program's own value follows the policy.
        assert_eq!(Override::No.settle(idle, 5, kernel, 2), None);
        assert_eq!(Override::Tighten.settle(idle, 5, kernel, 2), Some(2));
        assert_eq!(Override::Tighten.settle(idle, 1, kernel, 2), None);
        assert_eq!(Override::Yes.settle(idle, 5, kernel, 2), Some(2));
        let keepalive = SocketOption::KeepAlive;
        assert_eq!(Override::No.settle(keepalive, 0, kernel, 1), Some(1));
        assert_eq!(Override::No.settle(keepalive, 1, kernel, 1), None);
    }

    #[test]
    fn plan_keeps_order_and_bounds() {
        let mut plan = Plan::EMPTY;
        plan.push(SocketOption::KeepAlive, 1);
        plan.push(SocketOption::UserTimeout, 3000);
        assert_eq!(plan.value(SocketOption::UserTimeout), Some(3000));
        assert_eq!(plan.value(SocketOption::Idle), None);
        for _ in 0..10 {
            plan.push(SocketOption::Idle, 1);
        }
        assert_eq!(plan.steps().len(), SocketOption::COUNT);
    }
}
