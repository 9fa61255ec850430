//! Deliberate bugs for testing the simulation oracle (feature `planted-bugs`, never in
//! default builds). Each one breaks a documented guarantee; `laxsim run --plant BUG` must
//! catch every one of them.

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
    /// A released id's generation is not bumped: the same id is reissued at once.
    NoGenerationBump,
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
}

impl Bug {
    /// Every planted bug, with its command-line name.
    pub const ALL: [(Bug, &'static str); 8] = [
        (Bug::NoFlushOnClose, "no-flush-on-close"),
        (Bug::DoubleClosed, "double-closed"),
        (Bug::DeliverAfterClose, "deliver-after-close"),
        (Bug::NoGenerationBump, "no-generation-bump"),
        (Bug::LeakSlot, "leak-slot"),
        (Bug::HeartbeatIgnored, "heartbeat-ignored"),
        (Bug::LostReadyWakeup, "lost-ready-wakeup"),
        (Bug::RefuseBelowLimit, "refuse-below-limit"),
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

/// True if `config` plants `bug`.
#[inline]
pub(crate) fn is(config: &crate::Config, bug: Bug) -> bool {
    config.planted == Some(bug)
}
