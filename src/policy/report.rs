//! The debug lines of the policy: a socket configured or left alone, a program's value
//! replaced. Cold, each in one copy.

use core::ffi::c_int;

use keepalive_config::show::{Out, Show, signed};
use keepalive_config::{Decision, LogLevel, Role, ShownAddress, SocketOption};

use super::Addresses;
use crate::log;
use crate::runtime::Runtime;

/// The debug line of a socket configured (`fd 5 configured at connect() to 10.0.0.1:6379:
/// keepalive=1 idle=30`) or left alone (with the reason), in one copy for socket() and
/// `settle`.
#[cold]
#[inline(never)]
pub(super) fn log_outcome(
    log: LogLevel,
    fd: c_int,
    at: At<'_>,
    decision: Decision,
    applied: &Applied,
) {
    log::event(log, LogLevel::Debug, |line| {
        let outcome = if decision.targeted() {
            " configured at "
        } else {
            " left alone at "
        };
        line.put("fd ").number(fd.into()).put(outcome).show(&at);
        if decision.targeted() {
            line.put(":").show(applied);
        } else {
            line.put(": ").put(decision.reason());
        }
    });
}

/// The debug line of a program's value replaced: `fd 5: program set idle=7200, applying 30
/// (KEEPALIVE_OVERRIDE=yes)`.
#[cold]
#[inline(never)]
pub(super) fn log_replaced(
    runtime: &Runtime,
    fd: c_int,
    option: SocketOption,
    asked: c_int,
    chosen: c_int,
) {
    log::event(runtime.log, LogLevel::Debug, |line| {
        line.put("fd ")
            .number(fd.into())
            .put(": program set ")
            .put(option.label())
            .put("=");
        line.number(asked.into())
            .put(", applying ")
            .number(chosen.into());
        line.put(" (KEEPALIVE_OVERRIDE=")
            .put(runtime.policy.name())
            .put(")");
    });
}

/// The call at which a socket was configured or judged, for the debug log.
#[derive(Clone, Copy)]
pub(super) enum At<'a> {
    Socket,
    /// Known from its role: connect(), listen() or accept(), with the address that counted.
    Judged(Role, &'a Addresses),
}

impl Show for At<'_> {
    fn show<O: Out>(&self, out: &mut O) {
        let (call, preposition, address) = match *self {
            Self::Socket => return out.text("socket()"),
            Self::Judged(Role::Listening, addresses) => ("listen()", " on ", &addresses.local),
            Self::Judged(Role::Accepted, addresses) => ("accept()", " from ", &addresses.peer),
            Self::Judged(Role::Connecting | Role::Connected, addresses) => {
                ("connect()", " to ", &addresses.peer)
            }
        };
        out.text(call);
        if let Some(address) = address {
            out.text(preposition);
            ShownAddress(*address).show(out);
        }
    }
}

/// The values set on a socket, for the debug log.
#[derive(Default)]
pub(super) struct Applied {
    values: [Option<c_int>; SocketOption::COUNT],
}

impl Applied {
    pub(super) fn record(&mut self, option: SocketOption, value: c_int) {
        if let Some(slot) = self.values.get_mut(option as usize) {
            *slot = Some(value);
        }
    }
}

impl Show for Applied {
    /// ` keepalive=1 idle=30`, in table order.
    fn show<O: Out>(&self, out: &mut O) {
        for (option, value) in SocketOption::ALL.iter().zip(&self.values) {
            if let Some(value) = value {
                out.text(" ");
                out.text(option.label());
                out.text("=");
                signed(out, (*value).into());
            }
        }
    }
}
