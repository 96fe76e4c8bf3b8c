//! Where the command reads a configuration: its own environment, another process's, or
//! variables its options set; all through the one parser in `keepalive-config`. The values
//! live as long as the command (they are few and small), so a configuration borrows them
//! for `'static`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use keepalive_config::{KernelDefaults, NetRange, Parsed, PortSet, Targeting, VARIABLES, parse};

/// Parses the variables `lookup` gives (by name), keeping their values for the command's life.
pub fn parse_kept(mut lookup: impl FnMut(&str) -> Option<OsString>) -> Parsed<'static> {
    let values: HashMap<&'static str, &'static [u8]> = VARIABLES
        .iter()
        .filter_map(|variable| {
            let value = lookup(variable.name)?.into_vec().into_boxed_slice();
            Some((variable.name, &*Box::leak(value)))
        })
        .collect();
    parse(|name| values.get(name).copied())
}

/// The configuration in this command's own environment.
pub fn from_own_environment() -> Parsed<'static> {
    parse_kept(|name| std::env::var_os(name))
}

/// A filter list as the user wrote it, or `any` when it is not set.
pub fn list_or_any(list: Option<impl std::fmt::Display>) -> String {
    list.map_or_else(|| "any".to_owned(), |list| list.to_string())
}

/// The lookup structures behind a configuration's filters, for [`Targeting::decide`].
#[derive(Debug)]
pub struct Filters {
    ports: Option<Box<PortSet>>,
    nets: Option<Vec<NetRange>>,
}

impl Filters {
    pub fn new(config: &keepalive_config::Config<'_>) -> Self {
        Self {
            ports: config.ports.map(|list| Box::new(list.to_set())),
            nets: config.nets.map(|list| {
                let mut storage = vec![NetRange::default(); list.len()];
                let used = list.build(&mut storage).len();
                storage.truncate(used);
                storage
            }),
        }
    }

    pub fn targeting(&self) -> Targeting<'_> {
        Targeting {
            ports: self.ports.as_deref(),
            nets: self
                .nets
                .as_deref()
                .map(keepalive_config::NetSet::from_sorted),
        }
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
