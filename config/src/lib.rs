//! keepalive-preload's one definition of its policy, shared by the preload library, the
//! `keepalive-preload` command (`run`, `check`, `inspect`, `apply`, `bpf`) and the eBPF loader:
//!
//! - [`variables`]: every environment variable (and command option), what it accepts;
//! - [`parse`]: the one parser of those variables, pure and total;
//! - [`SocketOption`]: the options, their levels, names and kernel bounds, and [`Override`]'s
//!   rule for a value the program set itself;
//! - [`Targeting`]: which sockets the policy acts on under the port and network filters.
//!
//! `#![no_std]` without `alloc`, so that the library links it without a panic path or an
//! allocator; its unit tests run on std.

#![cfg_attr(not(test), no_std)]
#![cfg_attr(not(test), forbid(unsafe_code))]

mod filter;
mod ip;
mod options;
mod parse;
pub mod preload_list;
pub mod show;
pub mod sockaddr;
mod target;
pub mod text;
mod utf8;
mod value;
pub mod variables;

pub use filter::{ListProblem, NetList, NetRange, NetSet, PortList, PortSet, ProgramList};
pub use ip::ShownAddress;
pub use options::{
    IPPROTO_TCP, KernelDefaults, MAX_KEEPALIVE_PROBES, MAX_KEEPALIVE_SECONDS, MAX_USER_TIMEOUT_MS,
    OptionRow, Override, Plan, SO_KEEPALIVE, SOL_SOCKET, SocketOption, TCP_KEEPCNT, TCP_KEEPIDLE,
    TCP_KEEPINTVL, TCP_USER_TIMEOUT,
};
pub use parse::{
    Config, ConfigError, Errors, LogLevel, Parsed, Problem, Summary, UserTimeout, parse,
    parse_by_index,
};
pub use target::{Decision, Role, Targeting};
pub use text::{Elided, Quoted};
pub use variables::{
    KEEPALIVE, KEEPALIVE_INHERIT, KEEPALIVE_LOG, KEEPALIVE_NETS, KEEPALIVE_OVERRIDE,
    KEEPALIVE_PORTS, KEEPALIVE_PROGRAMS, KEEPALIVE_STRICT, KEEPALIVE_USER_TIMEOUT, KEEPCNT,
    KEEPIDLE, KEEPINTVL, VARIABLES, Variable,
};

/// The prefix of every line the library or the command prints about configuration.
pub const PREFIX: &str = "keepalive-preload";
