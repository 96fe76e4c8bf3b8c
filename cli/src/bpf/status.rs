//! `bpf status`: the attached policies as text and as JSON (`--json`, through serde).

use std::fmt::Write as _;

use keepalive_config::SocketOption;
use serde::Serialize;

use super::layout::COUNTER_NAMES;
use super::pins::{Attached, base};
use super::recorded::{describe, parse_variables};
use crate::json::{OrderedMap, json_line};

pub fn text(policies: &[Attached]) -> String {
    let mut out = String::new();
    if policies.is_empty() {
        let _ = writeln!(
            out,
            "no policy attached (nothing pinned under {})",
            base().display()
        );
        return out;
    }
    for policy in policies {
        let parsed = parse_variables(&policy.variables);
        let kernel = crate::settings::kernel_defaults();
        let _ = writeln!(
            out,
            "{} (cgroup {}){}",
            policy.cgroup.display(),
            policy.cgroup_id,
            if policy.stale {
                ": STALE, the cgroup is gone and the links are defunct (`keepalive-preload bpf detach --stale` removes it)"
            } else {
                ""
            }
        );
        let _ = writeln!(out, "  policy: {}", describe(&parsed.config, kernel));
        let links: Vec<String> = policy
            .links
            .iter()
            .map(|(name, id, prog, cgroup)| {
                format!("{name} link {id} (program {prog}, cgroup {cgroup})")
            })
            .collect();
        let _ = writeln!(out, "  links: {}", links.join(", "));
        let counters: Vec<String> = COUNTER_NAMES
            .iter()
            .zip(policy.counters)
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        let _ = writeln!(out, "  counters: {}", counters.join(" "));
        let _ = writeln!(out, "  pinned at {}", policy.pin.display());
        for problem in &policy.problems {
            let _ = writeln!(out, "  problem: {problem}");
        }
    }
    out
}

/// `{"policies":[...]}`: these names, in this order, are what scripts and the tests read.
#[derive(Serialize)]
struct Status<'a> {
    policies: Vec<PolicyJson<'a>>,
}

#[derive(Serialize)]
struct PolicyJson<'a> {
    cgroup: String,
    cgroup_id: u64,
    pin: String,
    stale: bool,
    enabled: bool,
    #[serde(rename = "override")]
    override_policy: &'static str,
    ports: Option<String>,
    nets: Option<String>,
    /// Option label to the value the policy sets (`null`: left to the socket).
    values: OrderedMap<&'static str, Option<i32>>,
    /// The recorded variables, in their order.
    variables: OrderedMap<&'a str, &'a str>,
    counters: OrderedMap<&'static str, u64>,
    links: Vec<LinkJson<'a>>,
    problems: &'a [String],
}

#[derive(Serialize)]
struct LinkJson<'a> {
    name: &'a str,
    id: u32,
    program_id: u32,
    cgroup_id: u64,
    /// The kernel reports cgroup 0 for a link whose cgroup is gone.
    defunct: bool,
}

pub fn json(policies: &[Attached]) -> String {
    let kernel = crate::settings::kernel_defaults();
    let parsed: Vec<_> = policies
        .iter()
        .map(|policy| parse_variables(&policy.variables))
        .collect();
    let status = Status {
        policies: policies
            .iter()
            .zip(&parsed)
            .map(|(policy, parsed)| {
                let config = &parsed.config;
                let plan = config.plan(kernel);
                PolicyJson {
                    cgroup: policy.cgroup.display().to_string(),
                    cgroup_id: policy.cgroup_id,
                    pin: policy.pin.display().to_string(),
                    stale: policy.stale,
                    enabled: config.enabled,
                    override_policy: config.override_policy.name(),
                    ports: config.ports.map(|ports| ports.to_string()),
                    nets: config.nets.map(|nets| nets.to_string()),
                    values: OrderedMap(
                        SocketOption::ALL
                            .iter()
                            .map(|&option| (option.label(), plan.value(option)))
                            .collect(),
                    ),
                    variables: OrderedMap(
                        policy
                            .variables
                            .lines()
                            .filter_map(|line| line.split_once('='))
                            .collect(),
                    ),
                    counters: OrderedMap(COUNTER_NAMES.into_iter().zip(policy.counters).collect()),
                    links: policy
                        .links
                        .iter()
                        .map(|(name, id, program_id, cgroup_id)| LinkJson {
                            name,
                            id: *id,
                            program_id: *program_id,
                            cgroup_id: *cgroup_id,
                            defunct: *cgroup_id == 0,
                        })
                        .collect(),
                    problems: &policy.problems,
                }
            })
            .collect(),
    };
    json_line(&status)
}
