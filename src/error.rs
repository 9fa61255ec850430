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

mod peer;

pub use peer::{CloseCode, PeerClose, Refusal};

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
    /// The peer closed and said why (a close control frame on "bits", the payload of its
    /// authenticated Close record on "bits-hpke"; see `docs/wire.md`). A peer that ends the
    /// stream without a reason (an older peer, or one answering this side's close) gives
    /// [`CloseReason::PeerClosed`].
    Peer(PeerClose),
    /// A clean close (`close()`, shutdown, the peer's close) ran out of linger time with
    /// bytes still unsent: they were dropped, so the close is not clean.
    LingerExpired {
        /// Bytes queued and never written: frames not yet written and, on "bits-hpke",
        /// sealed records not yet written (this side's own close message not counted).
        unsent: u64,
    },
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
            CloseReason::Peer(_) => CloseKind::Peer,
            CloseReason::LingerExpired { .. } => CloseKind::LingerExpired,
        }
    }

    /// Who or what ended the session (see [`Fault`]): the peer for `PeerClosed`, `Protocol`
    /// and `Crypto` (except `CounterExhausted`, this side's configured usage limit); this
    /// side for `Local`, `Shutdown`, `Panic` and `Aborted`; the network for `Reset` and `Io`;
    /// a timeout for `Heartbeat`, `Idle` and `LingerExpired`. A reason the peer sent
    /// ([`CloseReason::Peer`]) is the peer's choice ([`Fault::Peer`]), except that a peer that
    /// timed this side out (heartbeat, idle) is a timeout and a peer that saw this side break
    /// the protocol blames this side ([`Fault::Local`]). Together with
    /// [`CloseReason::is_clean`] it says whether an ending was chosen or suffered.
    pub fn fault(&self) -> Fault {
        match self {
            CloseReason::Peer(p) => match p.code {
                CloseCode::Heartbeat | CloseCode::Idle => Fault::Timeout,
                CloseCode::Protocol => Fault::Local,
                _ => Fault::Peer,
            },
            CloseReason::LingerExpired { .. } => Fault::Timeout,
            CloseReason::PeerClosed | CloseReason::Protocol(_) => Fault::Peer,
            CloseReason::Crypto(CryptoError::CounterExhausted) => Fault::Local,
            CloseReason::Crypto(_) => Fault::Peer,
            CloseReason::Local | CloseReason::Shutdown | CloseReason::Panic => Fault::Local,
            CloseReason::Aborted => Fault::Local,
            CloseReason::Reset | CloseReason::Io(_) => Fault::Network,
            CloseReason::Heartbeat | CloseReason::Idle => Fault::Timeout,
        }
    }

    /// True for endings that both sides agreed on and that lost nothing: a local close, a
    /// shutdown, the peer's close without a reason or with a normal one (its application
    /// closed, or its service shut down). These flush what was queued and wait for the peer's
    /// end of stream. A peer's close for any other reason (heartbeat, a violation, ...) is
    /// flushed the same way but is not clean; every other ending drops the connection at
    /// once (after sending its reason when it can, see `docs/wire.md`). A clean close that
    /// runs out of linger time with bytes unsent ends as [`CloseReason::LingerExpired`].
    pub fn is_clean(&self) -> bool {
        match self {
            CloseReason::Local | CloseReason::PeerClosed | CloseReason::Shutdown => true,
            CloseReason::Peer(p) => matches!(p.code, CloseCode::Normal | CloseCode::Shutdown),
            _ => false,
        }
    }

    /// The close sequence flushes what was queued and waits for the peer's end of stream:
    /// the clean endings and every close of the peer's (the peer is still reading).
    pub(crate) fn flushes(&self) -> bool {
        self.is_clean() || matches!(self, CloseReason::Peer(_))
    }

    /// Abortive endings that still send their reason (best effort): the peer is there to
    /// read it, this side only stops reading.
    pub(crate) fn sends_reason(&self) -> bool {
        matches!(
            self,
            CloseReason::Heartbeat
                | CloseReason::Idle
                | CloseReason::Protocol(_)
                | CloseReason::Panic
        )
    }

    /// What this side tells the peer when it closes for this reason (with `app`, the
    /// application's code and text from `SessionRef::close_with`): `None` for endings that
    /// send nothing (the peer's own close, a broken connection).
    pub(crate) fn code(&self) -> Option<(CloseCode, u16)> {
        Some(match self {
            CloseReason::Local => (CloseCode::Normal, 0),
            CloseReason::Shutdown => (CloseCode::Shutdown, 0),
            CloseReason::Heartbeat => (CloseCode::Heartbeat, 0),
            CloseReason::Idle => (CloseCode::Idle, 0),
            CloseReason::Protocol(v) => (CloseCode::Protocol, v.detail()),
            CloseReason::Panic => (CloseCode::Panic, 0),
            _ => return None,
        })
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
            CloseReason::Peer(p) => write!(f, "the peer closed: {p}"),
            CloseReason::LingerExpired { unsent } => write!(
                f,
                "linger time expired with {unsent} bytes unsent (dropped)"
            ),
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
    /// [`CloseReason::Peer`].
    Peer,
    /// [`CloseReason::LingerExpired`].
    LingerExpired,
}

impl CloseKind {
    /// Every kind, in declaration order (the order of [`Status::closes`](crate::Status::closes)).
    pub const ALL: [CloseKind; 13] = [
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
        CloseKind::Peer,
        CloseKind::LingerExpired,
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
            CloseKind::Peer => "peer",
            CloseKind::LingerExpired => "linger-expired",
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
    /// A control frame (or a Close record's payload) that does not parse, or a frame after
    /// the peer's close (see `docs/wire.md`).
    BadControl,
}

impl ProtocolViolation {
    /// Which violation, as a close tells the peer ([`PeerClose::detail`]): 1 frame too
    /// large, 2 frame too short, 3 unknown message, 4 undecodable, 5 truncated frame, 6 bad
    /// control frame.
    pub fn detail(&self) -> u16 {
        match self {
            ProtocolViolation::FrameTooLarge { .. } => 1,
            ProtocolViolation::FrameTooShort { .. } => 2,
            ProtocolViolation::UnknownMessage { .. } => 3,
            ProtocolViolation::Undecodable { .. } => 4,
            ProtocolViolation::TruncatedFrame => 5,
            ProtocolViolation::BadControl => 6,
        }
    }

    fn describe_detail(detail: u16) -> &'static str {
        match detail {
            1 => "frame too large",
            2 => "frame too short",
            3 => "unknown message",
            4 => "undecodable message",
            5 => "truncated frame",
            6 => "bad control frame",
            _ => "unknown detail",
        }
    }
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
            ProtocolViolation::BadControl => {
                f.write_str("malformed control frame, or a frame after the close")
            }
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
    /// The server refused the connection and said why. On "bits-hpke" a refusal before the
    /// handshake (busy, not allowed, full) is unauthenticated (see `docs/wire.md`).
    Refused(Refusal),
    /// The server's first bytes on "bits" were not its Open control frame (an older or a
    /// different server).
    Protocol(ProtocolViolation),
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
            ConnectError::Refused(r) => write!(f, "refused by the server: {r}"),
            ConnectError::Protocol(v) => write!(f, "unexpected answer from the server: {v}"),
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
    /// The message id is reserved for the protocol's control frames (`u32::MAX`).
    ReservedId {
        /// The type that was refused.
        refused: &'static str,
    },
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
            SubscribeError::ReservedId { refused } => write!(
                f,
                "message id {} is reserved for control frames; refused {refused}",
                u32::MAX
            ),
        }
    }
}

impl std::error::Error for SubscribeError {}

#[cfg(test)]
mod tests;
