//! The command options that set variables, generated from the one table in `keepalive-config`
//! (`--idle` sets KEEPIDLE, and so on): `run` takes all of them, `apply` and `bpf attach` the
//! policy's. Options win over the command's own environment.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::marker::PhantomData;

use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use keepalive_config::{
    KEEPALIVE_NETS, KEEPALIVE_OVERRIDE, KEEPALIVE_PORTS, KEEPALIVE_STRICT, KEEPALIVE_USER_TIMEOUT,
    KEEPCNT, KEEPIDLE, KEEPINTVL, Parsed, VARIABLES, Variable,
};

use crate::settings::parse_kept;

/// A set of variables that become options.
pub trait VariableSet {
    const VARIABLES: &'static [Variable];
}

/// Every variable: `run`.
#[derive(Clone, Debug, Default)]
pub struct AllVariables;

impl VariableSet for AllVariables {
    const VARIABLES: &'static [Variable] = &VARIABLES;
}

/// The policy that applies to sockets, whoever enforces it: `apply` and `bpf attach`.
#[derive(Clone, Debug, Default)]
pub struct PolicyVariables;

impl VariableSet for PolicyVariables {
    const VARIABLES: &'static [Variable] = &[
        KEEPIDLE,
        KEEPINTVL,
        KEEPCNT,
        KEEPALIVE_USER_TIMEOUT,
        KEEPALIVE_OVERRIDE,
        KEEPALIVE_PORTS,
        KEEPALIVE_NETS,
    ];
}

/// Help text for one variable, for the option that sets it.
pub fn variable_help(variable: Variable) -> String {
    format!(
        "Sets {} ({}); accepts {} [unset: {}]",
        variable.name, variable.meaning, variable.accepted, variable.unset
    )
}

/// The values given on the command line, by variable name.
#[derive(Clone, Debug, Default)]
pub struct VariableOptions<S> {
    values: BTreeMap<&'static str, String>,
    set: PhantomData<S>,
}

impl<S: VariableSet> VariableOptions<S> {
    /// The variables the options set.
    pub fn values(&self) -> &BTreeMap<&'static str, String> {
        &self.values
    }

    /// The configuration: options over the command's own environment, through the one parser.
    pub fn parse_over_environment(&self) -> Parsed<'static> {
        parse_kept(|name| match self.values.get(name) {
            Some(value) => Some(OsString::from(value)),
            None => std::env::var_os(name),
        })
    }
}

impl<S: VariableSet> FromArgMatches for VariableOptions<S> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut options = Self {
            values: BTreeMap::new(),
            set: PhantomData,
        };
        options.update_from_arg_matches(matches)?;
        Ok(options)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for variable in S::VARIABLES {
            if variable.name == KEEPALIVE_STRICT.name {
                if matches.get_flag(variable.flag) {
                    self.values.insert(variable.name, "yes".to_owned());
                }
            } else if let Some(value) = matches.get_one::<String>(variable.flag) {
                self.values.insert(variable.name, value.clone());
            }
        }
        Ok(())
    }
}

impl<S: VariableSet> Args for VariableOptions<S> {
    fn augment_args(command: Command) -> Command {
        S::VARIABLES.iter().fold(command, |command, variable| {
            let arg = Arg::new(variable.flag).long(variable.flag);
            command.arg(if variable.name == KEEPALIVE_STRICT.name {
                arg.action(ArgAction::SetTrue)
                    .help(format!("Sets {}=yes: {}", variable.name, variable.meaning))
            } else {
                arg.value_name(variable.value_name)
                    .allow_hyphen_values(true)
                    .help(variable_help(*variable))
            })
        })
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}
