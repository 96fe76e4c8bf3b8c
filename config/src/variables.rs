//! The one table of environment variables: name, command option, meaning, what is accepted,
//! what applies when unset, and the long-form text. Error lines, `--help`, the man page's
//! ENVIRONMENT entries and `run` options, and the README's configuration table come from it
//! (`keepalive-preload generate`; `cli/tests/docs_drift.rs` fails when they differ).
//!
//! `meaning`, `accepted`, `unset` and a [`Choice`]'s value are plain text: they end up in error
//! lines and `--help` as they are. `details` and a choice's `meaning` use a small markup of
//! their own, which `keepalive-preload generate` renders as roff and as markdown:
//!
//! - paragraphs are separated by one empty line; within a paragraph, one sentence or clause
//!   per line (the man page keeps the lines, markdown joins them with a space);
//! - `` `text` `` is something to type or read as it is — a value, a variable, an option, a
//!   call: bold in the man page, code in markdown;
//! - `{text}` names a file, a sysctl, a C identifier or a placeholder: italic in the man page,
//!   code in markdown;
//! - nothing else is markup: no roff, no markdown, no backslash and no `|`; the renderers
//!   escape the rest.

/// One value of a variable that takes a few words, and what it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    /// Plain text: the value as it is typed.
    pub value: &'static str,
    /// In the markup above, without a capital or a final stop (the list supplies them).
    pub meaning: &'static str,
}

/// One environment variable and the command option that sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variable {
    pub name: &'static str,
    /// The long option of `run`, `bpf attach` and `apply` that sets it (without `--`).
    pub flag: &'static str,
    /// The option's value placeholder in `--help`: upper-case words are placeholders,
    /// lower-case ones literal values, separated by `|`.
    pub value_name: &'static str,
    /// Plain text, one clause without a capital or a final stop.
    pub meaning: &'static str,
    /// Completes "… is not {accepted}" in an error line; plain text.
    pub accepted: &'static str,
    /// What applies when the variable is unset; plain text.
    pub unset: &'static str,
    /// The long form that follows `meaning` in the man page and the README, in the markup
    /// above; may be empty.
    pub details: &'static str,
    /// The values a word-valued variable takes, each with what it does (listed after the first
    /// paragraph of `details`); empty for the others.
    pub choices: &'static [Choice],
}

pub const KEEPALIVE: Variable = Variable {
    name: "KEEPALIVE",
    flag: "keepalive",
    value_name: "on|off",
    meaning: "master switch: off makes the library do nothing",
    accepted: "one of on/off, 1/0, yes/no, true/false (any case)",
    unset: "on",
    details: "With `KEEPALIVE` on, `SO_KEEPALIVE` is set on every matching socket even when no timing is set;\n\
              the kernel's {net.ipv4.tcp_keepalive_*} sysctls then give the timings, as with libkeepalive.",
    choices: &[],
};
pub const KEEPIDLE: Variable = Variable {
    name: "KEEPIDLE",
    flag: "idle",
    value_name: "SECONDS",
    meaning: "TCP_KEEPIDLE: idle time before the first probe",
    accepted: "a whole number of seconds in 1..32767",
    unset: "kernel default",
    details: "A plain integer (libkeepalive's form) or a number with a unit: `90`, `90s`, `2m`, `1h`.\n\
              The kernel's default is usually 7200 seconds.",
    choices: &[],
};
pub const KEEPINTVL: Variable = Variable {
    name: "KEEPINTVL",
    flag: "interval",
    value_name: "SECONDS",
    meaning: "TCP_KEEPINTVL: time between probes",
    accepted: "a whole number of seconds in 1..32767",
    unset: "kernel default",
    details: "The same forms as `KEEPIDLE`.\n\
              The kernel's default is usually 75 seconds.",
    choices: &[],
};
pub const KEEPCNT: Variable = Variable {
    name: "KEEPCNT",
    flag: "count",
    value_name: "PROBES",
    meaning: "TCP_KEEPCNT: unanswered probes before the connection is dropped",
    accepted: "a whole number in 1..127",
    unset: "kernel default",
    details: "The kernel's default is usually 9.",
    choices: &[],
};
pub const KEEPALIVE_USER_TIMEOUT: Variable = Variable {
    name: "KEEPALIVE_USER_TIMEOUT",
    flag: "user-timeout",
    value_name: "MS|auto",
    meaning: "TCP_USER_TIMEOUT: how long sent data may stay unacknowledged before the connection is dropped",
    accepted: "milliseconds in 1..2147483647 (1500, 1500ms, 10s, 2m) or auto",
    unset: "kernel default",
    details: "A plain integer is milliseconds (the kernel's unit);\n\
              units `ms`, `s`, `m` and `h` are accepted (`1500ms`, `10s`, `2m`).\n\
              `auto` means (IDLE + INTVL × CNT) seconds from the effective values (the kernel's for those not set).\n\
              The kernel's default is 0 (no user timeout).",
    choices: &[],
};
pub const KEEPALIVE_OVERRIDE: Variable = Variable {
    name: "KEEPALIVE_OVERRIDE",
    flag: "override",
    value_name: "no|yes|tighten",
    meaning: "what happens when the program sets one of these options itself",
    accepted: "one of no, yes, tighten",
    unset: "no",
    details: "The options are `SO_KEEPALIVE`, `TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT` and `TCP_USER_TIMEOUT`, \
              set by the program with `setsockopt`():\n\
              \n\
              Redis 7.0.9 and later sets 30/10/3 on every cluster bus link and 300/100/3 on client links,\n\
              so `yes` is needed for the configured values to hold there.\n\
              \n\
              `KEEPALIVE_OVERRIDE` applies only to sockets that match the filters:\n\
              a socket that does not match gets no option.",
    choices: &[
        Choice {
            value: "no",
            meaning: "the program wins (libkeepalive's behaviour)",
        },
        Choice {
            value: "yes",
            meaning: "the configured value is applied instead, and `SO_KEEPALIVE` cannot be turned off",
        },
        Choice {
            value: "tighten",
            meaning: "the program may make an option more aggressive (smaller), never looser",
        },
    ],
};
pub const KEEPALIVE_LOG: Variable = Variable {
    name: "KEEPALIVE_LOG",
    flag: "log",
    value_name: "LEVEL",
    meaning: "diagnostics on standard error",
    accepted: "one of off, error, info, debug",
    unset: "error",
    details: "",
    choices: &[
        Choice {
            value: "off",
            meaning: "nothing",
        },
        Choice {
            value: "error",
            meaning: "one line per invalid variable",
        },
        Choice {
            value: "info",
            meaning: "also one line with the effective configuration and filters at load",
        },
        Choice {
            value: "debug",
            meaning: "also one line per socket configured, skipped or call overridden, \
                      with the file descriptor, addresses and values",
        },
    ],
};
pub const KEEPALIVE_STRICT: Variable = Variable {
    name: "KEEPALIVE_STRICT",
    flag: "strict",
    value_name: "yes|no",
    meaning: "with yes, an invalid variable makes the process exit with status 2 before main",
    accepted: "one of yes/no, on/off, 1/0, true/false (any case)",
    unset: "no",
    details: "The invalid variable's error line is printed first, even under `KEEPALIVE_LOG=off`.\n\
              Only a process's start is ended: a library loaded into a running program with {dlopen}() \
              reports the bad values and does nothing.",
    choices: &[],
};
pub const KEEPALIVE_PORTS: Variable = Variable {
    name: "KEEPALIVE_PORTS",
    flag: "ports",
    value_name: "LIST",
    meaning: "act only on sockets whose port matches (remote port when connecting, local port when listening or accepted)",
    accepted: "a comma-separated list of ports and ascending ranges in 1..65535, like 17000-17999,6379",
    unset: "every port",
    details: "Ranges include both ends: `17000-17999` is 1000 ports.\n\
              A library loaded into a running program with {dlopen}() does nothing under it \
              (the ports take memory that the library maps only at a process's start).",
    choices: &[],
};
pub const KEEPALIVE_NETS: Variable = Variable {
    name: "KEEPALIVE_NETS",
    flag: "nets",
    value_name: "CIDRS",
    meaning: "act only on sockets whose peer address is in one of these networks",
    accepted: "a comma-separated list of IPv4 or IPv6 networks, like 10.0.0.0/8,fd00::/8",
    unset: "every address",
    details: "Networks are in CIDR notation; a bare address means /32 or /128.\n\
              IPv4-mapped IPv6 peers match IPv4 networks.\n\
              A library loaded into a running program with {dlopen}() does nothing under it \
              (the networks take memory that the library maps only at a process's start).",
    choices: &[],
};
pub const KEEPALIVE_PROGRAMS: Variable = Variable {
    name: "KEEPALIVE_PROGRAMS",
    flag: "programs",
    value_name: "NAMES",
    meaning: "act only in these programs (base name of the executable or of argv[0])",
    accepted: "a comma-separated list of program names, like redis-server,redis-sentinel",
    unset: "every program",
    details: "The executable's name is read from {/proc/self/exe}, the other from {argv[0]}.\n\
              Useful with a system-wide {/etc/ld.so.preload}.",
    choices: &[],
};
pub const KEEPALIVE_INHERIT: Variable = Variable {
    name: "KEEPALIVE_INHERIT",
    flag: "inherit",
    value_name: "yes|no",
    meaning: "with no, this library removes itself from LD_PRELOAD at load, so programs the process runs start without it",
    accepted: "one of yes/no, on/off, 1/0, true/false (any case)",
    unset: "yes",
    details: "Only this library is removed, and only from the process's environment:\n\
              the process itself keeps it.",
    choices: &[],
};

/// A variable as the parser knows it: its place in [`VARIABLES`], which indexes [`NAMES`] and
/// [`ACCEPTED`] — what the library keeps of the table. (A [`Variable`] passed around whole
/// would link every help text into the library.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key(pub usize);

impl Key {
    /// The key of `variable`, a row of [`VARIABLES`] (at compile time).
    pub const fn of(variable: &Variable) -> Self {
        let mut index = 0;
        while index < VARIABLES.len() {
            if same(VARIABLES[index].name, variable.name) {
                return Self(index);
            }
            index += 1;
        }
        panic!("not a row of VARIABLES");
    }

    pub fn name(self) -> &'static str {
        crate::value::word(NAMES, self.0)
    }

    pub fn accepted(self) -> &'static str {
        crate::value::word(ACCEPTED, self.0)
    }
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut index = 0;
    while index < a.len() {
        if a[index] != b[index] {
            return false;
        }
        index += 1;
    }
    true
}

/// One field of every row, joined by `|` (the fields never hold one) — one string for the
/// library, not an array of strings: an array is a pointer per row for ld.so to relocate in
/// every process the library loads into.
const fn field(variable: &Variable, accepted: bool) -> &'static str {
    if accepted {
        variable.accepted
    } else {
        variable.name
    }
}

const fn joined_length(accepted: bool) -> usize {
    let mut length = 0;
    let mut index = 0;
    while index < VARIABLES.len() {
        length += field(&VARIABLES[index], accepted).len() + 1;
        index += 1;
    }
    length - 1
}

const fn joined<const LENGTH: usize>(accepted: bool) -> [u8; LENGTH] {
    let mut out = [b'|'; LENGTH];
    let (mut at, mut index) = (0, 0);
    while index < VARIABLES.len() {
        let bytes = field(&VARIABLES[index], accepted).as_bytes();
        let mut byte = 0;
        while byte < bytes.len() {
            out[at] = bytes[byte];
            at += 1;
            byte += 1;
        }
        at += 1;
        index += 1;
    }
    out
}

const NAME_BYTES: [u8; joined_length(false)] = joined(false);
const ACCEPTED_BYTES: [u8; joined_length(true)] = joined(true);

/// Every variable's name, in [`VARIABLES`]' order, separated by `|`.
pub const NAMES: &str = match core::str::from_utf8(&NAME_BYTES) {
    Ok(text) => text,
    Err(_) => panic!("names are UTF-8"),
};

/// What each variable accepts, in [`VARIABLES`]' order, separated by `|`.
pub const ACCEPTED: &str = match core::str::from_utf8(&ACCEPTED_BYTES) {
    Ok(text) => text,
    Err(_) => panic!("accepted forms are UTF-8"),
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

/// Variables that only make sense for a process the library is loaded into, not for a
/// cgroup: `bpf attach` refuses them rather than ignore them.
pub const PROCESS_ONLY: [Variable; 2] = [KEEPALIVE_PROGRAMS, KEEPALIVE_INHERIT];

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain text: one line, no markup, nothing a renderer would have to guess about (`](`
    /// would make a markdown link).
    fn check_plain(what: &str, text: &str) {
        assert!(!text.is_empty(), "{what} is empty");
        assert_eq!(text.trim(), text, "{what} is padded");
        for forbidden in ["`", "{", "}", "\\", "|", "\n", "]("] {
            assert!(
                !text.contains(forbidden),
                "{what} contains {forbidden:?}: {text:?}"
            );
        }
    }

    /// Text in the markup: spans closed on the line they open, not nested; no backslash, `|`
    /// or `](`; no padded line; paragraphs separated by exactly one empty line.
    fn check_markup(what: &str, text: &str) {
        assert!(
            !text.contains('\\') && !text.contains('|') && !text.contains("]("),
            "{what}: {text:?}"
        );
        for paragraph in text.split("\n\n") {
            assert!(
                !paragraph.is_empty(),
                "{what}: an empty paragraph: {text:?}"
            );
            for line in paragraph.split('\n') {
                assert!(
                    !line.is_empty() && line.trim() == line,
                    "{what}: line {line:?}"
                );
                let mut open = None;
                for c in line.chars() {
                    open = match (open, c) {
                        (None, '`') => Some('`'),
                        (None, '{') => Some('}'),
                        (None, '}') => panic!("{what}: '}}' outside a span: {line:?}"),
                        (Some(close), c) if c == close => None,
                        (Some(_), '`' | '{' | '}') => panic!("{what}: nested span: {line:?}"),
                        (open, _) => open,
                    };
                }
                assert!(open.is_none(), "{what}: a span left open: {line:?}");
            }
        }
    }

    #[test]
    fn every_text_is_plain_or_in_the_markup() {
        for variable in VARIABLES {
            let name = variable.name;
            check_plain(name, variable.name);
            check_plain(name, variable.flag);
            check_plain(name, variable.meaning);
            check_plain(name, variable.accepted);
            check_plain(name, variable.unset);
            assert!(
                !variable.meaning.ends_with('.'),
                "{name}: meaning ends with a stop"
            );
            assert!(
                variable.value_name.split('|').all(|word| !word.is_empty()
                    && !word.contains(char::is_whitespace)
                    && (word == word.to_uppercase() || word == word.to_lowercase())),
                "{name}: value_name {:?}",
                variable.value_name
            );
            if !variable.details.is_empty() {
                check_markup(name, variable.details);
            }
            for choice in variable.choices {
                check_plain(name, choice.value);
                check_markup(name, choice.meaning);
                assert!(
                    !choice.meaning.contains('\n'),
                    "{name}: {:?} spans lines",
                    choice.value
                );
                assert!(
                    !choice.meaning.ends_with('.'),
                    "{name}: {:?} ends with a stop",
                    choice.value
                );
            }
        }
    }

    #[test]
    fn keys_give_each_row_its_name_and_accepted_form() {
        for (index, variable) in VARIABLES.iter().enumerate() {
            let key = Key::of(variable);
            assert_eq!(key, Key(index));
            assert_eq!(key.name(), variable.name);
            assert_eq!(key.accepted(), variable.accepted);
        }
        assert_eq!(Key(VARIABLES.len()).name(), "");
    }

    #[test]
    fn names_and_flags_are_unique() {
        for (index, variable) in VARIABLES.iter().enumerate() {
            for other in &VARIABLES[index + 1..] {
                assert_ne!(variable.name, other.name);
                assert_ne!(variable.flag, other.flag);
            }
        }
    }
}
