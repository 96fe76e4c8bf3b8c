//! The one targeting rule: which sockets the policy acts on under `KEEPALIVE_PORTS` and
//! `KEEPALIVE_NETS`. The library, `inspect`, `apply` and the eBPF loader all ask it.

use core::net::SocketAddr;

use crate::filter::{NetSet, PortSet};

/// What a socket is to its program, as far as the one asking can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Listening: its local port is the service's.
    Listening,
    /// Connected (or connecting) by the program: the remote port is the service's.
    Connecting,
    /// Accepted from a listener: the local port is the service's.
    Accepted,
    /// Connected, but whether it was accepted or connected is not known (a socket met only at
    /// the program's own setsockopt): it counts when either end's port is listed.
    Connected,
}

/// The answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Targeted,
    /// Not in KEEPALIVE_PORTS.
    PortExcluded,
    /// Not in KEEPALIVE_NETS.
    PeerExcluded,
    /// A listener under KEEPALIVE_NETS: each accepted socket is judged by its peer.
    EachPeer,
}

impl Decision {
    pub fn targeted(self) -> bool {
        self == Self::Targeted
    }

    /// Why a socket is left alone, for logs and `inspect`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Targeted => "targeted",
            Self::PortExcluded => "port not in KEEPALIVE_PORTS",
            Self::PeerExcluded => "peer not in KEEPALIVE_NETS",
            Self::EachPeer => "a listener under KEEPALIVE_NETS: each accepted socket is judged",
        }
    }
}

/// The filters in force; `None` means "every port" or "every address".
#[derive(Clone, Copy, Debug, Default)]
pub struct Targeting<'s> {
    pub ports: Option<&'s PortSet>,
    pub nets: Option<NetSet<'s>>,
}

impl Targeting<'_> {
    /// Without filters every TCP socket is targeted the moment it exists.
    pub fn filters_by_address(&self) -> bool {
        self.ports.is_some() || self.nets.is_some()
    }

    /// The one rule. `local`/`remote` are the socket's addresses as the kernel reports them
    /// (`remote` is `None` for a listener).
    pub fn decide(
        &self,
        role: Role,
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
    ) -> Decision {
        if let Some(ports) = self.ports {
            let listed = |address: Option<SocketAddr>| {
                address.is_some_and(|address| ports.contains(address.port()))
            };
            let port_matches = match role {
                Role::Listening | Role::Accepted => listed(local),
                Role::Connecting => listed(remote),
                Role::Connected => listed(local) || listed(remote),
            };
            if !port_matches {
                return Decision::PortExcluded;
            }
        }
        match (self.nets, role) {
            (None, _) => Decision::Targeted,
            (Some(_), Role::Listening) => Decision::EachPeer,
            (Some(nets), _) => {
                if remote.is_some_and(|remote| nets.contains(remote.ip())) {
                    Decision::Targeted
                } else {
                    Decision::PeerExcluded
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{NetList, NetRange, PortList};

    fn at(text: &str) -> Option<SocketAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn ports_by_role() {
        let ports = PortList::parse(b"16379").unwrap().to_set();
        let rule = Targeting {
            ports: Some(&ports),
            nets: None,
        };
        let (server, client) = (at("10.0.0.1:16379"), at("10.0.0.2:40000"));
        assert!(rule.decide(Role::Listening, server, None).targeted());
        assert!(rule.decide(Role::Accepted, server, client).targeted());
        assert!(rule.decide(Role::Connecting, client, server).targeted());
        assert!(rule.decide(Role::Connected, client, server).targeted());
        assert!(rule.decide(Role::Connected, server, client).targeted());
        assert_eq!(
            rule.decide(Role::Connecting, server, client),
            Decision::PortExcluded
        );
        assert_eq!(
            rule.decide(Role::Listening, at("0.0.0.0:6379"), None),
            Decision::PortExcluded
        );
    }

    #[test]
    fn nets_judge_the_peer() {
        let list = NetList::parse(b"10.0.0.0/8").unwrap();
        let mut storage = [NetRange::default(); 1];
        let rule = Targeting {
            ports: None,
            nets: Some(list.build(&mut storage)),
        };
        assert_eq!(
            rule.decide(Role::Listening, at("0.0.0.0:1"), None),
            Decision::EachPeer
        );
        assert!(
            rule.decide(Role::Accepted, at("10.0.0.1:1"), at("10.9.9.9:2"))
                .targeted()
        );
        assert_eq!(
            rule.decide(Role::Connecting, None, at("192.168.0.1:2")),
            Decision::PeerExcluded
        );
        assert!(
            Targeting::default()
                .decide(Role::Connected, None, None)
                .targeted()
        );
    }
}
