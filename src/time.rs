//! Monotonic time as the runtime sees it.
//!
//! Library code never reads a clock: the runtime backend's [`Runtime::now`](crate::Runtime::now)
//! is the only source, and everything below the driver takes `now` as a parameter. Inside the
//! turmoil simulator this is virtual time, so the same code is deterministic there.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A point on a runtime's monotonic clock: the time elapsed since that runtime's origin.
///
/// Values from different runtimes (different simulated hosts) are not comparable.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(Duration);

impl Instant {
    /// The origin of the clock.
    pub const ZERO: Instant = Instant(Duration::ZERO);

    /// An instant `d` after the origin (used by runtime backends and tests).
    pub const fn from_origin(d: Duration) -> Instant {
        Instant(d)
    }

    /// Time since the origin.
    pub const fn since_origin(self) -> Duration {
        self.0
    }

    /// Time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// Nanoseconds since the origin, saturated to `u64` (for atomics).
    pub(crate) fn as_nanos_u64(self) -> u64 {
        u64::try_from(self.0.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Inverse of [`Instant::as_nanos_u64`].
    pub(crate) fn from_nanos_u64(n: u64) -> Instant {
        Instant(Duration::from_nanos(n))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_since(earlier)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t+{:?}", self.0)
    }
}
