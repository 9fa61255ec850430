//! Errors, classified by who is at fault ([`Fault`]), and the one mapping from an ending to a
//! [`CloseReason`].
//!
//! - The peer misbehaved: [`CloseReason::Protocol`] with a [`ProtocolViolation`],
//!   [`CloseReason::Crypto`], a [`HandshakeError::Peer`](crate::HandshakeError::Peer); the
//!   session (or handshake) ends, nothing else is affected.
//! - The caller misused the API: a typed error at the call, before any I/O ([`SendError`],
//!   [`ConnectError`], [`AcceptError`], [`SubscribeError`], [`UnknownProtocol`](crate::UnknownProtocol)).
//! - The network failed: [`CloseReason::Io`], [`CloseReason::Reset`].
//! - Nothing arrived in time: [`CloseReason::Heartbeat`], [`CloseReason::Idle`], a handshake
//!   or connect timeout.

use std::fmt;
use std::io;

use crate::crypto::CryptoError;
use crate::fault::Fault;

/// Why a session ended. Every ending goes through the same close path with one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// `close()` was called on this side.
    Local,
    /// The peer closed the connection cleanly (end of stream at a frame boundary).
    PeerClosed,
    /// The connection was reset by the peer.
    Reset,
    /// Another I/O error on the socket.
    Io(io::ErrorKind),
    /// The peer sent something this protocol does not allow.
    Protocol(ProtocolViolation),
    /// Nothing was received for longer than the heartbeat timeout when a send was attempted.
    Heartbeat,
    /// Nothing was received for longer than the idle timeout (service-wide sweep).
    Idle,
    /// The service was shut down.
    Shutdown,
    /// A subscriber callback panicked while handling this session's traffic.
    Panic,
    /// An encrypted session's records failed (tampering, truncation, counter limit).
    Crypto(CryptoError),
    /// The session's task was dropped before it finished (its runtime shut down, or the
    /// simulated host crashed).
    Aborted,
}

impl CloseReason {
    /// The kind of ending, without its details: what [`Status`](crate::Status) counts
    /// closes by.
    pub fn kind(&self) -> CloseKind {
        match self {
            CloseReason::Local => CloseKind::Local,
            CloseReason::PeerClosed => CloseKind::PeerClosed,
            CloseReason::Reset => CloseKind::Reset,
            CloseReason::Io(_) => CloseKind::Io,
            CloseReason::Protocol(_) => CloseKind::Protocol,
            CloseReason::Heartbeat => CloseKind::Heartbeat,
            CloseReason::Idle => CloseKind::Idle,
            CloseReason::Shutdown => CloseKind::Shutdown,
            CloseReason::Panic => CloseKind::Panic,
            CloseReason::Crypto(_) => CloseKind::Crypto,
            CloseReason::Aborted => CloseKind::Aborted,
        }
    }

    /// Who or what ended the session (see [`Fault`]): the peer for `PeerClosed`, `Protocol`
    /// and `Crypto` (except `CounterExhausted`, this side's configured usage limit); this
    /// side for `Local`, `Shutdown`, `Panic` and `Aborted`; the network for `Reset` and `Io`;
    /// a timeout for `Heartbeat` and `Idle`. Together with [`CloseReason::is_clean`] it says
    /// whether an ending was chosen or suffered.
    pub fn fault(&self) -> Fault {
        match self {
            CloseReason::PeerClosed | CloseReason::Protocol(_) => Fault::Peer,
            CloseReason::Crypto(CryptoError::CounterExhausted) => Fault::Local,
            CloseReason::Crypto(_) => Fault::Peer,
            CloseReason::Local | CloseReason::Shutdown | CloseReason::Panic => Fault::Local,
            CloseReason::Aborted => Fault::Local,
            CloseReason::Reset | CloseReason::Io(_) => Fault::Network,
            CloseReason::Heartbeat | CloseReason::Idle => Fault::Timeout,
        }
    }

    /// True for endings that both sides agreed on (local close, peer close, shutdown): these
    /// flush what was queued and wait for the peer's end of stream. Every other ending drops
    /// the connection at once.
    pub fn is_clean(&self) -> bool {
        matches!(
            self,
            CloseReason::Local | CloseReason::PeerClosed | CloseReason::Shutdown
        )
    }

    /// The reason for a failed read or write.
    /// The reason for a read or write that failed with `kind`.
    pub(crate) fn from_io_kind(kind: io::ErrorKind) -> CloseReason {
        match kind {
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => CloseReason::Reset,
            io::ErrorKind::BrokenPipe => CloseReason::Reset,
            k => CloseReason::Io(k),
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Local => f.write_str("closed locally"),
            CloseReason::PeerClosed => f.write_str("closed by peer"),
            CloseReason::Reset => f.write_str("connection reset"),
            CloseReason::Io(k) => write!(f, "I/O error: {k}"),
            CloseReason::Protocol(v) => write!(f, "protocol violation: {v}"),
            CloseReason::Heartbeat => f.write_str("heartbeat timeout"),
            CloseReason::Idle => f.write_str("idle timeout"),
            CloseReason::Shutdown => f.write_str("service shut down"),
            CloseReason::Panic => f.write_str("a subscriber panicked"),
            CloseReason::Crypto(e) => write!(f, "crypto: {e}"),
            CloseReason::Aborted => f.write_str("session task aborted"),
        }
    }
}

/// The kind of a [`CloseReason`], without its details: one variant per variant of
/// `CloseReason`, so that closes can be counted ([`Status::closed`](crate::Status::closed)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum CloseKind {
    /// [`CloseReason::Local`].
    Local,
    /// [`CloseReason::PeerClosed`].
    PeerClosed,
    /// [`CloseReason::Reset`].
    Reset,
    /// [`CloseReason::Io`].
    Io,
    /// [`CloseReason::Protocol`].
    Protocol,
    /// [`CloseReason::Heartbeat`].
    Heartbeat,
    /// [`CloseReason::Idle`].
    Idle,
    /// [`CloseReason::Shutdown`].
    Shutdown,
    /// [`CloseReason::Panic`].
    Panic,
    /// [`CloseReason::Crypto`].
    Crypto,
    /// [`CloseReason::Aborted`].
    Aborted,
}

impl CloseKind {
    /// Every kind, in declaration order (the order of [`Status::closes`](crate::Status::closes)).
    pub const ALL: [CloseKind; 11] = [
        CloseKind::Local,
        CloseKind::PeerClosed,
        CloseKind::Reset,
        CloseKind::Io,
        CloseKind::Protocol,
        CloseKind::Heartbeat,
        CloseKind::Idle,
        CloseKind::Shutdown,
        CloseKind::Panic,
        CloseKind::Crypto,
        CloseKind::Aborted,
    ];

    /// A stable short name (`"peer-closed"`), as the status table prints it.
    pub const fn name(self) -> &'static str {
        match self {
            CloseKind::Local => "local",
            CloseKind::PeerClosed => "peer-closed",
            CloseKind::Reset => "reset",
            CloseKind::Io => "io",
            CloseKind::Protocol => "protocol",
            CloseKind::Heartbeat => "heartbeat",
            CloseKind::Idle => "idle",
            CloseKind::Shutdown => "shutdown",
            CloseKind::Panic => "panic",
            CloseKind::Crypto => "crypto",
            CloseKind::Aborted => "aborted",
        }
    }

    /// Its position in [`CloseKind::ALL`] (a counter array's index).
    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for CloseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// What the peer did wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolViolation {
    /// A frame header announced a body longer than the configured maximum.
    FrameTooLarge {
        /// The announced length.
        len: u32,
        /// The configured maximum.
        max: u32,
    },
    /// A frame too short to hold a message id.
    FrameTooShort {
        /// Its length.
        len: u32,
    },
    /// A message id no type is registered for.
    UnknownMessage {
        /// The id.
        id: u32,
    },
    /// A body that does not decode as the registered type.
    Undecodable {
        /// The message id.
        id: u32,
        /// The registered type.
        type_name: &'static str,
    },
    /// The stream ended in the middle of a frame.
    TruncatedFrame,
}

impl fmt::Display for ProtocolViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolViolation::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {max}")
            }
            ProtocolViolation::FrameTooShort { len } => {
                write!(f, "frame of {len} bytes is too short for a message id")
            }
            ProtocolViolation::UnknownMessage { id } => write!(f, "unknown message id {id}"),
            ProtocolViolation::Undecodable { id, type_name } => {
                write!(f, "message id {id} does not decode as {type_name}")
            }
            ProtocolViolation::TruncatedFrame => f.write_str("stream ended inside a frame"),
        }
    }
}

/// Why [`SessionRef::send`](crate::SessionRef::send) failed. Nothing was queued.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The session is closing or closed; `reason` says why.
    Closed(CloseReason),
    /// The session this ref pointed to is gone (destroyed); its id has been released.
    Stale,
    /// The send queue is over its byte limit (a slow consumer). Nothing was queued;
    /// [`SessionRef::ready`](crate::SessionRef::ready) waits until there is room again.
    QueueFull {
        /// Bytes queued now (more than `limit`).
        queued: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The encoded message is larger than the maximum frame.
    TooLarge {
        /// Its encoded length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The message could not be serialized (for example a NaN float, which borsh refuses).
    Encode(String),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed(r) => write!(f, "session closed ({r})"),
            SendError::Stale => f.write_str("stale session ref: the session is gone"),
            SendError::QueueFull { queued, limit } => {
                write!(f, "send queue full ({queued} of {limit} bytes queued)")
            }
            SendError::TooLarge { len, max } => {
                write!(
                    f,
                    "message of {len} bytes exceeds the maximum frame of {max}"
                )
            }
            SendError::Encode(e) => write!(f, "message could not be serialized: {e}"),
        }
    }
}

impl std::error::Error for SendError {}

/// Why [`Service::connect`](crate::Service::connect) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// [`Protocol::BitsHpke`](crate::Protocol::BitsHpke) needs `Config::encryption` with the
    /// server's public key ([`Encryption::server_key`](crate::Encryption::server_key)), and
    /// this service has none. Reported before any I/O.
    NotConfigured,
    /// The connection did not complete within the connect timeout.
    Timeout,
    /// The service is at its maximum number of sessions.
    TooManySessions,
    /// The service has been shut down.
    Shutdown,
    /// The socket failed (refused, unreachable, ...).
    Io(io::Error),
    /// The encrypted protocol's handshake failed (wrong server key, timeout, ...).
    Handshake(crate::crypto::HandshakeError),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::NotConfigured => f.write_str(
                "bits-hpke needs Config::encryption with the server's key (Encryption::server_key)",
            ),
            ConnectError::Timeout => f.write_str("connect timed out"),
            ConnectError::TooManySessions => f.write_str("maximum number of sessions reached"),
            ConnectError::Shutdown => f.write_str("service is shut down"),
            ConnectError::Io(e) => write!(f, "connect failed: {e}"),
            ConnectError::Handshake(e) => write!(f, "handshake failed: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Why [`Service::accept`](crate::Service::accept) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum AcceptError {
    /// The service has been shut down.
    Shutdown,
    /// Binding the listener failed.
    Io(io::Error),
    /// [`Protocol::BitsHpke`](crate::Protocol::BitsHpke) needs `Config::encryption` with an
    /// identity key pair ([`Encryption::identity`](crate::Encryption::identity)), and this
    /// service has none. Reported before any I/O.
    NotConfigured,
}

impl fmt::Display for AcceptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcceptError::Shutdown => f.write_str("service is shut down"),
            AcceptError::Io(e) => write!(f, "listen failed: {e}"),
            AcceptError::NotConfigured => f.write_str(
                "bits-hpke needs Config::encryption with an identity key pair (Encryption::identity)",
            ),
        }
    }
}

impl std::error::Error for AcceptError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AcceptError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a subscription or registration failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscribeError {
    /// Another message type is already registered under this id.
    DuplicateId {
        /// The id.
        id: u32,
        /// The type registered first.
        existing: &'static str,
        /// The type that was refused.
        refused: &'static str,
    },
    /// The session is already gone (for close notifications keyed by session id).
    SessionGone,
}

impl fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscribeError::DuplicateId {
                id,
                existing,
                refused,
            } => write!(
                f,
                "message id {id} is already registered for {existing}; refused {refused}"
            ),
            SubscribeError::SessionGone => f.write_str("the session is already gone"),
        }
    }
}

impl std::error::Error for SubscribeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_have_a_kind_and_a_fault() {
        for (i, k) in CloseKind::ALL.into_iter().enumerate() {
            assert_eq!(k.index(), i, "{k}");
            let same = CloseKind::ALL.iter().filter(|o| o.name() == k.name());
            assert_eq!(same.count(), 1, "{k}");
        }
        let reasons = [
            CloseReason::Local,
            CloseReason::PeerClosed,
            CloseReason::Reset,
            CloseReason::Io(io::ErrorKind::Other),
            CloseReason::Protocol(ProtocolViolation::TruncatedFrame),
            CloseReason::Heartbeat,
            CloseReason::Idle,
            CloseReason::Shutdown,
            CloseReason::Panic,
            CloseReason::Crypto(CryptoError::Truncated),
            CloseReason::Aborted,
        ];
        let kinds: Vec<CloseKind> = reasons.iter().map(CloseReason::kind).collect();
        assert_eq!(kinds, CloseKind::ALL);
        let faults: Vec<Fault> = reasons.iter().map(CloseReason::fault).collect();
        use Fault::*;
        #[rustfmt::skip]
        let expected = [Local, Peer, Network, Network, Peer, Timeout, Timeout, Local, Local, Peer, Local];
        assert_eq!(faults, expected);
        // A clean ending names the side that chose it.
        for r in reasons.iter().filter(|r| r.is_clean()) {
            assert!(matches!(r.fault(), Peer | Local), "{r}");
        }
        let limit = CloseReason::Crypto(CryptoError::CounterExhausted);
        assert_eq!(limit.fault(), Local, "this side's configured usage limit");
    }
}
