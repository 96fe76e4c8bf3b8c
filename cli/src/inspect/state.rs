//! TCP states, numbered as the kernel numbers them (`tcpi_state`, include/net/tcp_states.h),
//! and named as `ss` names them.

use crate::json::serialize_by_name;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TcpState {
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait1 = 4,
    FinWait2 = 5,
    TimeWait = 6,
    Close = 7,
    CloseWait = 8,
    LastAck = 9,
    Listen = 10,
    Closing = 11,
    NewSynRecv = 12,
    /// A number this command does not know (the kernel's are 1 to 12).
    Unknown = 0,
}

impl TcpState {
    pub const ALL: [TcpState; 12] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
        TcpState::NewSynRecv,
    ];

    /// The state the kernel numbers `number`.
    pub fn from_kernel(number: u8) -> Self {
        Self::ALL
            .into_iter()
            .find(|state| *state as u8 == number)
            .unwrap_or(TcpState::Unknown)
    }

    pub fn name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN-SENT",
            TcpState::SynRecv => "SYN-RECV",
            TcpState::FinWait1 => "FIN-WAIT-1",
            TcpState::FinWait2 => "FIN-WAIT-2",
            TcpState::TimeWait => "TIME-WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE-WAIT",
            TcpState::LastAck => "LAST-ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
            TcpState::NewSynRecv => "NEW-SYN-RECV",
            TcpState::Unknown => "UNKNOWN",
        }
    }

    /// A connect in progress, whose peer getpeername does not tell yet (ENOTCONN).
    pub fn connecting(self) -> bool {
        matches!(self, TcpState::SynSent | TcpState::SynRecv)
    }
}

serialize_by_name!(TcpState);
