//! Deliberate bugs for testing the simulation oracle. Each one breaks a documented guarantee;
//! `laxsim run --plant BUG` must catch every one of them (`ci/sim.sh`), except
//! `buffers-after-release`, a race between threads that only the multi-thread stress run on
//! real sockets can show (`laxsim stress`).
//!
//! Every site asks [`on`], which is `false` without the `planted-bugs` feature: the compiler
//! removes the branch, and default builds carry no trace of these bugs.
#![cfg_attr(not(feature = "planted-bugs"), allow(dead_code, unreachable_pub))]

use std::fmt;
use std::str::FromStr;

/// A deliberate bug, switched on per service with `Config::planted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Bug {
    /// `close()` drops what was queued instead of flushing it.
    NoFlushOnClose,
    /// `Closed` is published twice.
    DoubleClosed,
    /// `Closed` is published when the close starts, so messages received while lingering are
    /// delivered after it.
    DeliverAfterClose,
    /// The id counter advances only when it skips a value, not when it issues one: once its
    /// session is gone, the same id is issued again.
    IdCounterStuck,
    /// A destroyed session's id slot is never released.
    LeakSlot,
    /// `send` skips the heartbeat check.
    HeartbeatIgnored,
    /// The session task never wakes the senders waiting in `SessionRef::ready` when it has
    /// written enough (they wake only when the session closes).
    LostReadyWakeup,
    /// `send` refuses a message that would take the queue over its limit although the queue
    /// is below it (so a message larger than the limit can never be sent).
    RefuseBelowLimit,
    /// A close does not wake the tasks waiting in `SessionRef::ready`; they learn of it only
    /// when the session is destroyed, after its linger.
    ReadyNotToldOfClose,
    /// At the peer's end of stream the session stops writing: what it had queued (replies to
    /// the peer's last messages) is dropped instead of flushed.
    NoFlushAfterPeerEof,
    /// Reads on encrypted sessions do not refresh the heartbeat clock.
    StaleHeartbeatOnRecords,
    /// A send refused as `TooLarge` leaves a frame header behind in the queue.
    HalfFrameOnTooLarge,
    /// The destroy releases the id before the session's buffers go back to the pool.
    BuffersAfterRelease,
    /// The id counter wraps one value late: it issues `2^id_bits`, outside the id space.
    IdWrapOffByOne,
    /// An encrypted session closing cleanly sends no authenticated `Close` record.
    NoCloseRecord,
    /// A later close request replaces the reason of the first.
    LastReasonWins,
    /// The bytes-out counter counts what a write was offered, not what it took.
    BytesOutOffered,
    /// A failed handshake does not give its slot back.
    HandshakeSlotLeak,
    /// At `max_handshakes`, the newcomer is refused although a stalled attempt holds a place
    /// (the lock-out the admission exists to prevent).
    RefuseInsteadOfEvict,
    /// A frame of exactly `max_frame` bytes is refused as too large.
    FrameLimitOffByOne,
    /// A close sends no reason: no close control frame on "bits", an empty Close record on
    /// "bits-hpke" (the peer sees `PeerClosed` instead of the reason).
    ReasonNotSent,
    /// A refusal at connect looks like a reset: the server drops the connection without
    /// saying why.
    RefusalLooksLikeReset,
    /// A clean close whose linger time ran out with bytes unsent keeps its clean reason.
    LingerExpiryClean,
    /// A record of exactly `Encryption::max_record` payload is refused as too large.
    RecordLimitOffByOne,
}

impl Bug {
    /// Every planted bug, with its command-line name.
    pub const ALL: [(Bug, &'static str); 24] = [
        (Bug::NoFlushOnClose, "no-flush-on-close"),
        (Bug::DoubleClosed, "double-closed"),
        (Bug::DeliverAfterClose, "deliver-after-close"),
        (Bug::IdCounterStuck, "id-counter-stuck"),
        (Bug::LeakSlot, "leak-slot"),
        (Bug::HeartbeatIgnored, "heartbeat-ignored"),
        (Bug::LostReadyWakeup, "lost-ready-wakeup"),
        (Bug::RefuseBelowLimit, "refuse-below-limit"),
        (Bug::ReadyNotToldOfClose, "ready-not-told-of-close"),
        (Bug::NoFlushAfterPeerEof, "no-flush-after-peer-eof"),
        (Bug::StaleHeartbeatOnRecords, "stale-heartbeat-on-records"),
        (Bug::HalfFrameOnTooLarge, "half-frame-on-too-large"),
        (Bug::BuffersAfterRelease, "buffers-after-release"),
        (Bug::IdWrapOffByOne, "id-wrap-off-by-one"),
        (Bug::NoCloseRecord, "no-close-record"),
        (Bug::LastReasonWins, "last-reason-wins"),
        (Bug::BytesOutOffered, "bytes-out-offered"),
        (Bug::HandshakeSlotLeak, "handshake-slot-leak"),
        (Bug::RefuseInsteadOfEvict, "refuse-instead-of-evict"),
        (Bug::FrameLimitOffByOne, "frame-limit-off-by-one"),
        (Bug::ReasonNotSent, "reason-not-sent"),
        (Bug::RefusalLooksLikeReset, "refusal-looks-like-reset"),
        (Bug::LingerExpiryClean, "linger-expiry-clean"),
        (Bug::RecordLimitOffByOne, "record-limit-off-by-one"),
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        Bug::ALL
            .iter()
            .find(|(b, _)| *b == self)
            .map_or("?", |(_, n)| n)
    }
}

impl FromStr for Bug {
    type Err = String;
    fn from_str(s: &str) -> Result<Bug, String> {
        Bug::ALL
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(b, _)| *b)
            .ok_or_else(|| format!("unknown planted bug {s:?}"))
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The planted bug of one service (`Config::plants`); `on` is `false` without the feature.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Plants(#[cfg(feature = "planted-bugs")] Option<Bug>);

impl Plants {
    /// The plants of a service whose config plants `bug` (`Config::plants`).
    pub(crate) fn new(bug: Option<Bug>) -> Plants {
        let _ = bug;
        Plants(
            #[cfg(feature = "planted-bugs")]
            bug,
        )
    }

    /// True if `bug` is planted.
    #[inline(always)]
    pub(crate) fn on(self, bug: Bug) -> bool {
        #[cfg(feature = "planted-bugs")]
        {
            self.0 == Some(bug)
        }
        #[cfg(not(feature = "planted-bugs"))]
        {
            let _ = bug;
            false
        }
    }
}
