//! The one table of environment variables: name, command option, meaning, what is accepted and
//! what applies when unset. Error lines, `--help`, the man page and the README come from it.

/// One environment variable and the command option that sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variable {
    pub name: &'static str,
    /// The long option of `run`, `bpf attach` and `apply` that sets it (without `--`).
    pub flag: &'static str,
    /// The option's value placeholder in `--help`.
    pub value_name: &'static str,
    pub meaning: &'static str,
    /// Completes "… is not {accepted}" in an error line.
    pub accepted: &'static str,
    pub unset: &'static str,
}

pub const KEEPALIVE: Variable = Variable {
    name: "KEEPALIVE",
    flag: "keepalive",
    value_name: "on|off",
    meaning: "master switch: off makes the library do nothing",
    accepted: "one of on/off, 1/0, yes/no, true/false (any case)",
    unset: "on",
};
pub const KEEPIDLE: Variable = Variable {
    name: "KEEPIDLE",
    flag: "idle",
    value_name: "SECONDS",
    meaning: "TCP_KEEPIDLE: idle time before the first probe",
    accepted: "a whole number of seconds in 1..32767",
    unset: "kernel default",
};
pub const KEEPINTVL: Variable = Variable {
    name: "KEEPINTVL",
    flag: "interval",
    value_name: "SECONDS",
    meaning: "TCP_KEEPINTVL: time between probes",
    accepted: "a whole number of seconds in 1..32767",
    unset: "kernel default",
};
pub const KEEPCNT: Variable = Variable {
    name: "KEEPCNT",
    flag: "count",
    value_name: "PROBES",
    meaning: "TCP_KEEPCNT: unanswered probes before the connection is dropped",
    accepted: "a whole number in 1..127",
    unset: "kernel default",
};
pub const KEEPALIVE_USER_TIMEOUT: Variable = Variable {
    name: "KEEPALIVE_USER_TIMEOUT",
    flag: "user-timeout",
    value_name: "MS|auto",
    meaning: "TCP_USER_TIMEOUT: how long sent data may stay unacknowledged",
    accepted: "milliseconds in 1..2147483647 (1500, 1500ms, 10s, 2m) or auto",
    unset: "kernel default",
};
pub const KEEPALIVE_OVERRIDE: Variable = Variable {
    name: "KEEPALIVE_OVERRIDE",
    flag: "override",
    value_name: "no|yes|tighten",
    meaning: "what happens when the program sets one of these options itself",
    accepted: "one of no, yes, tighten",
    unset: "no",
};
pub const KEEPALIVE_LOG: Variable = Variable {
    name: "KEEPALIVE_LOG",
    flag: "log",
    value_name: "LEVEL",
    meaning: "diagnostics on standard error",
    accepted: "one of off, error, info, debug",
    unset: "error",
};
pub const KEEPALIVE_STRICT: Variable = Variable {
    name: "KEEPALIVE_STRICT",
    flag: "strict",
    value_name: "yes|no",
    meaning: "with yes, an invalid variable makes the process exit with status 2 before main",
    accepted: "one of yes/no, on/off, 1/0, true/false (any case)",
    unset: "no",
};
pub const KEEPALIVE_PORTS: Variable = Variable {
    name: "KEEPALIVE_PORTS",
    flag: "ports",
    value_name: "LIST",
    meaning: "act only on sockets whose port matches (remote port when connecting, local port when listening or accepted)",
    accepted: "a comma-separated list of ports and ascending ranges in 1..65535, like 17000-17999,6379",
    unset: "every port",
};
pub const KEEPALIVE_NETS: Variable = Variable {
    name: "KEEPALIVE_NETS",
    flag: "nets",
    value_name: "CIDRS",
    meaning: "act only on sockets whose peer address is in one of these networks",
    accepted: "a comma-separated list of IPv4 or IPv6 networks, like 10.0.0.0/8,fd00::/8",
    unset: "every address",
};
pub const KEEPALIVE_PROGRAMS: Variable = Variable {
    name: "KEEPALIVE_PROGRAMS",
    flag: "programs",
    value_name: "NAMES",
    meaning: "act only in these programs (base name of the executable or of argv[0])",
    accepted: "a comma-separated list of program names, like redis-server,redis-sentinel",
    unset: "every program",
};
pub const KEEPALIVE_INHERIT: Variable = Variable {
    name: "KEEPALIVE_INHERIT",
    flag: "inherit",
    value_name: "yes|no",
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

/// Variables that only make sense for a process the library is loaded into, not for a
/// cgroup: `bpf attach` refuses them rather than ignore them.
pub const PROCESS_ONLY: [Variable; 2] = [KEEPALIVE_PROGRAMS, KEEPALIVE_INHERIT];
