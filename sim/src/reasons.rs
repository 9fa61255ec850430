//! Why a session must close: the causes the oracle observes and the [`CloseReason`] each one
//! implies.
//!
//! A session leaves `Open` for the first of several things that can happen to it, and the
//! library's rule is "the first reason wins". The oracle sees every one of those things
//! happen, in order ([`crate::state::State::ord`]), at the moment the library sees it: the
//! application calling `close()` on an open session, its host shutting down or crashing, a
//! send that the heartbeat check refused, and on its stream the end of stream (with the frame
//! or record position it came at), a failed read or write (injected or from the network), the
//! bytes of a hostile peer that no protocol allows. The reason the session reports in `Closed`
//! must be the one its first cause implies ([`Cause::allows`]).

use std::io::ErrorKind;

use laxnet::{CloseReason, CryptoError, ProtocolViolation};

/// Something that makes a session leave `Open`, as the oracle saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The application called `close()` while the session was open.
    CloseCalled,
    /// The host's service started shutting down while the session was open.
    Shutdown,
    /// A send failed with `Closed(Heartbeat)` on an open session: the heartbeat check closed it.
    Heartbeat,
    /// The host crashed: the session's task was dropped.
    Crash,
    /// The stream read its end.
    Eof {
        /// Inside a frame (or, encrypted, a record).
        mid_frame: bool,
        /// An encrypted stream.
        hpke: bool,
        /// Encrypted: the peer wrote its whole authenticated `Close` record before the end.
        close_record: bool,
    },
    /// A read or write on the stream failed with this error kind (an injected reset, or an
    /// error of the simulated network, such as a reset after the peer host crashed).
    Io(ErrorKind),
    /// A hostile peer's bytes that the protocol forbids, now read far enough to be seen.
    Violation(ProtocolViolation),
    /// The stream read its peer's whole close message with a reason (its code on "bits"; on
    /// "bits-hpke" the oracle cannot see it, `None`), then its end or a failed read.
    PeerSaid {
        /// The close code, when the oracle could read it.
        code: Option<u8>,
        /// The read or write that failed after it, if one did: a session that lost bytes to
        /// that failure reports it instead.
        io: Option<ErrorKind>,
    },
}

/// A clean ending may end up `LingerExpired` instead: the linger ran out with bytes unsent.
fn or_linger(clean: &CloseReason, reason: &CloseReason) -> bool {
    reason == clean || matches!(reason, CloseReason::LingerExpired { unsent } if *unsent > 0)
}

impl Cause {
    /// True if a session whose first cause is `self` may report `reason`.
    pub fn allows(&self, reason: &CloseReason) -> bool {
        match self {
            Cause::CloseCalled => or_linger(&CloseReason::Local, reason),
            Cause::Shutdown => or_linger(&CloseReason::Shutdown, reason),
            Cause::PeerSaid { code, io } => {
                matches!(reason, CloseReason::Peer(p) if code.is_none_or(|c| p.code.to_u8() == c))
                    || matches!(reason, CloseReason::LingerExpired { unsent } if *unsent > 0)
                    || io.is_some_and(|k| io_reason(k) == *reason)
            }
            Cause::Heartbeat => *reason == CloseReason::Heartbeat,
            Cause::Crash => *reason == CloseReason::Aborted,
            Cause::Eof {
                mid_frame,
                hpke: false,
                ..
            } => {
                if *mid_frame {
                    *reason == CloseReason::Protocol(ProtocolViolation::TruncatedFrame)
                } else {
                    or_linger(&CloseReason::PeerClosed, reason)
                }
            }
            Cause::Eof {
                hpke: true,
                close_record,
                ..
            } => {
                if *close_record {
                    or_linger(&CloseReason::PeerClosed, reason)
                } else {
                    *reason == CloseReason::Crypto(CryptoError::Truncated)
                }
            }
            Cause::Io(kind) => *reason == io_reason(*kind),
            Cause::Violation(v) => {
                matches!(reason, CloseReason::Protocol(r) if same_violation(v, r))
            }
        }
    }

    /// What the cause implies, for messages.
    pub fn expected(&self) -> String {
        match self {
            Cause::CloseCalled => CloseReason::Local.to_string(),
            Cause::Shutdown => CloseReason::Shutdown.to_string(),
            Cause::Heartbeat => CloseReason::Heartbeat.to_string(),
            Cause::Crash => CloseReason::Aborted.to_string(),
            Cause::Eof {
                mid_frame: true,
                hpke: false,
                ..
            } => CloseReason::Protocol(ProtocolViolation::TruncatedFrame).to_string(),
            Cause::Eof { hpke: false, .. }
            | Cause::Eof {
                close_record: true, ..
            } => CloseReason::PeerClosed.to_string(),
            Cause::Eof { .. } => CloseReason::Crypto(CryptoError::Truncated).to_string(),
            Cause::Io(kind) => io_reason(*kind).to_string(),
            Cause::Violation(v) => CloseReason::Protocol(v.clone()).to_string(),
            Cause::PeerSaid { code: Some(c), .. } => {
                format!("the peer closed: {}", laxnet::CloseCode::from_u8(*c))
            }
            Cause::PeerSaid { code: None, .. } => "the peer closed: <its reason>".into(),
        }
    }

    /// True for causes that end a connection cleanly from this side's view (the session
    /// flushes and waits for the peer's end).
    pub fn clean(&self) -> bool {
        matches!(
            self,
            Cause::CloseCalled
                | Cause::Shutdown
                | Cause::Eof {
                    mid_frame: false,
                    hpke: false,
                    ..
                }
                | Cause::Eof {
                    hpke: true,
                    close_record: true,
                    ..
                }
        ) || matches!(self, Cause::PeerSaid { code, .. } if code.is_none_or(|c| c <= 1))
    }
}

/// The reason the library gives a failed read or write (its one mapping, restated: a reset,
/// an abort and a broken pipe are `Reset`, anything else `Io(kind)`).
pub fn io_reason(kind: ErrorKind) -> CloseReason {
    match kind {
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            CloseReason::Reset
        }
        k => CloseReason::Io(k),
    }
}

/// Two violations are the same if every field agrees (an undecodable message names its
/// registered type, `Message::name`).
pub fn same_violation(want: &ProtocolViolation, got: &ProtocolViolation) -> bool {
    want == got
}
