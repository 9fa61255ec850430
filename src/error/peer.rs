//! What the peer says when it closes ([`CloseCode`], [`PeerClose`]) and why a server refused
//! a connection ([`Refusal`]): the reason codes of the close message (`docs/wire.md`).

use std::fmt;

use super::ProtocolViolation;

/// The code a peer closes with (see [`PeerClose`]). Codes this version does not know (from a
/// newer peer) arrive as [`CloseCode::Unknown`], never as an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCode {
    /// Its application closed (`close()` or `SessionRef::close_with`).
    Normal,
    /// Its service shut down.
    Shutdown,
    /// It heard nothing from this side for longer than its heartbeat timeout.
    Heartbeat,
    /// It heard nothing from this side for longer than its idle timeout.
    Idle,
    /// This side broke the protocol (`PeerClose::detail` says how, see
    /// [`ProtocolViolation::detail`]).
    Protocol,
    /// A subscriber callback panicked on its side.
    Panic,
    /// Refused: the service is at its maximum number of sessions.
    Full,
    /// Refused: the service is shutting down.
    ShuttingDown,
    /// Refused: the service has too many handshakes in progress.
    Busy,
    /// Refused: this client's key is not allowed.
    NotAllowed,
    /// A code this version does not know.
    Unknown(u8),
}

impl CloseCode {
    /// The code's byte on the wire.
    pub fn to_u8(self) -> u8 {
        match self {
            CloseCode::Normal => 0,
            CloseCode::Shutdown => 1,
            CloseCode::Heartbeat => 2,
            CloseCode::Idle => 3,
            CloseCode::Protocol => 4,
            CloseCode::Panic => 5,
            CloseCode::Full => 16,
            CloseCode::ShuttingDown => 17,
            CloseCode::Busy => 18,
            CloseCode::NotAllowed => 19,
            CloseCode::Unknown(b) => b,
        }
    }

    /// The code for a byte from the wire (unknown bytes are kept as `Unknown`).
    pub fn from_u8(b: u8) -> CloseCode {
        match b {
            0 => CloseCode::Normal,
            1 => CloseCode::Shutdown,
            2 => CloseCode::Heartbeat,
            3 => CloseCode::Idle,
            4 => CloseCode::Protocol,
            5 => CloseCode::Panic,
            16 => CloseCode::Full,
            17 => CloseCode::ShuttingDown,
            18 => CloseCode::Busy,
            19 => CloseCode::NotAllowed,
            b => CloseCode::Unknown(b),
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseCode::Normal => f.write_str("closed by its application"),
            CloseCode::Shutdown => f.write_str("its service shut down"),
            CloseCode::Heartbeat => f.write_str("heartbeat timeout"),
            CloseCode::Idle => f.write_str("idle timeout"),
            CloseCode::Protocol => f.write_str("protocol violation by this side"),
            CloseCode::Panic => f.write_str("a subscriber panicked"),
            CloseCode::Full => f.write_str("service full"),
            CloseCode::ShuttingDown => f.write_str("service shutting down"),
            CloseCode::Busy => f.write_str("too many handshakes in progress"),
            CloseCode::NotAllowed => f.write_str("not allowed"),
            CloseCode::Unknown(b) => write!(f, "unknown code {b}"),
        }
    }
}

/// What a peer said when it closed ([`CloseReason::Peer`](crate::CloseReason::Peer)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerClose {
    /// Why.
    pub code: CloseCode,
    /// Details of `code` (for [`CloseCode::Protocol`], which violation: see
    /// [`ProtocolViolation::detail`]); 0 otherwise.
    pub detail: u16,
    /// The application's code from `SessionRef::close_with` (0 if none).
    pub app_code: u32,
    /// The application's text from `SessionRef::close_with` (at most
    /// [`PeerClose::MAX_TEXT`] bytes; empty if none).
    pub text: String,
}

impl PeerClose {
    /// A refusal's close: its code alone.
    pub(crate) fn refused(code: CloseCode) -> PeerClose {
        PeerClose {
            code,
            detail: 0,
            app_code: 0,
            text: String::new(),
        }
    }

    /// Longest application text a close carries, in bytes of UTF-8.
    pub const MAX_TEXT: usize = 64;

    /// A close with `code` and nothing else.
    pub fn new(code: CloseCode) -> PeerClose {
        PeerClose {
            code,
            detail: 0,
            app_code: 0,
            text: String::new(),
        }
    }
}

impl fmt::Display for PeerClose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if self.code == CloseCode::Protocol && self.detail != 0 {
            write!(f, " ({})", ProtocolViolation::describe_detail(self.detail))?;
        }
        if self.app_code != 0 || !self.text.is_empty() {
            write!(f, " (application code {}", self.app_code)?;
            if !self.text.is_empty() {
                write!(f, ": {:?}", self.text)?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Why a server refused a connection ([`ConnectError::Refused`](crate::ConnectError::Refused)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The service is at its maximum number of sessions.
    Full,
    /// The service is shutting down.
    ShuttingDown,
    /// The service has too many encrypted handshakes in progress (unauthenticated: see
    /// `docs/wire.md`).
    Busy,
    /// The client's key is not allowed (unauthenticated: see `docs/wire.md`).
    NotAllowed,
    /// Another code (from a newer server, or a close code that is no refusal).
    Other(CloseCode),
}

impl From<CloseCode> for Refusal {
    fn from(code: CloseCode) -> Refusal {
        match code {
            CloseCode::Full => Refusal::Full,
            CloseCode::ShuttingDown | CloseCode::Shutdown => Refusal::ShuttingDown,
            CloseCode::Busy => Refusal::Busy,
            CloseCode::NotAllowed => Refusal::NotAllowed,
            c => Refusal::Other(c),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Full => f.write_str("service full"),
            Refusal::ShuttingDown => f.write_str("service shutting down"),
            Refusal::Busy => f.write_str("too many handshakes in progress"),
            Refusal::NotAllowed => f.write_str("client not allowed"),
            Refusal::Other(c) => write!(f, "{c}"),
        }
    }
}
