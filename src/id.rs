//! Session ids that stay unique over time, and the table ([`IdTable`]) that hands them out.
//!
//! # Ids come from a counter
//!
//! A [`SessionId`] is a nonzero `u32`. A table issues ids from a counter that advances by one
//! per opened session and runs through all `2^32 - 1` nonzero values before it comes back to
//! where it started (it skips 0, so `Option<SessionId>` is 4 bytes). Its start value is drawn
//! from the service's seeded RNG, so two services (or two runs with different seeds) hand out
//! different ids; that makes accidental cross-instance matches unlikely but is not a
//! guarantee.
//!
//! Ids print (both `Debug` and `Display`) as `#<value>`, e.g. `#3735928559`: the same number
//! as [`SessionId::get`], so logs and raw ids grep alike.
//!
//! # The table
//!
//! Live entries sit in a power-of-two array indexed by `id & mask`, so a lookup is one index
//! and one comparison (no hashing). The array doubles (the live ids are moved to their new
//! positions) when an insert would make it more than half full, and when the counter's next
//! value falls on a position held by a live session while the array is at least a quarter
//! full. Otherwise that value is *skipped*: the counter moves on to the next one. A skipped
//! value is never issued in that turn of the counter, so it cannot clash with anything. The
//! array never shrinks: its memory is proportional to the peak number of live sessions (at
//! most eight slots per session at that peak), not to the id space.
//!
//! # The horizon
//!
//! An id is issued again only after the counter went all the way round: every other nonzero
//! value was passed in between, each either issued to a session or skipped. Skips are rare
//! and bounded: the counter skips a value only while the array is less than a quarter full,
//! and each live session can cause at most one skip per turn of the counter through the
//! array, so fewer than a quarter of the values passed are skipped, bar a few million (one
//! turn's worth at each doubling, and the ids of sessions that stay live for a whole turn).
//! An id therefore recurs only after more than 3.2 × 10^9 other sessions were opened,
//! whatever the pattern: sequential open/close, bursts, many or few live sessions. A plain
//! sequential loop (one live session at a time) never skips: an id recurs after exactly
//! 2^32 - 2 other sessions.
//!
//! One value is skipped unconditionally: the id of a session still live when the counter
//! comes round to it again (a session that outlived 2^32 - 1 newer ones).
//!
//! # Narrower id spaces (tests)
//!
//! A table can be given fewer id bits (`Config::id_bits`, a test hook): ids then come from
//! `1..2^bits` and the counter wraps after `2^bits - 1` of them, so a simulation reaches the
//! horizon many times per run and its invariants are checked where they bite. Such a table
//! holds at most `2^(bits-2)` live sessions, so at least three quarters of its space is free.

use std::fmt;
use std::num::NonZeroU32;

use crate::planted::{Bug, Plants};

/// The widest id space, in bits: the whole `u32`.
pub(crate) const ID_BITS: u32 = 32;

/// The narrowest id space a table accepts, in bits (it then holds at most 4 live sessions).
pub(crate) const MIN_ID_BITS: u32 = 4;

/// The most sessions one service (one session table) can hold: 2^17 - 1 = 131,071. A bound
/// on the table's memory (at most 2^20 array slots), not something the ids need.
pub const MAX_SESSIONS: usize = (1 << 17) - 1;

/// The smallest array a table allocates on its first insert.
const MIN_ARRAY: usize = 4;

/// Identifies one session of one `Service`.
///
/// A nonzero `u32` drawn from the service's id counter, which advances by one per opened
/// session from a start value drawn from the service's RNG. Ids are unique among live
/// sessions, and unique over time up to a horizon: an id is issued again only after the
/// counter went round all 2^32 - 1 nonzero values, which takes more than 3.2 × 10^9 other
/// sessions whatever the pattern of opens and closes (exactly 2^32 - 2 for a sequential
/// open/close loop). A service holds at most [`MAX_SESSIONS`] = 2^17 - 1 = 131,071 sessions
/// at once.
///
/// `Debug` and `Display` both print `#<value>`, e.g. `#3735928559`, the same number as
/// [`get`](Self::get).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(NonZeroU32);

impl SessionId {
    /// The raw `u32` value. Never zero.
    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// Rebuilds an id from its raw value (e.g. one received from a peer or a log). Returns
    /// `None` for 0; any other value is a well-formed id, though it need not name a live
    /// session.
    pub fn from_raw(raw: u32) -> Option<SessionId> {
        NonZeroU32::new(raw).map(SessionId)
    }
}

impl fmt::Display for SessionId {
    /// Prints `#<value>`, e.g. `#3735928559`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl fmt::Debug for SessionId {
    /// Same as `Display`: `#<value>`, e.g. `#3735928559`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Returned by [`IdTable::insert_with`] when the table already holds `capacity` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableFull;

impl fmt::Display for TableFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("session table full")
    }
}

impl std::error::Error for TableFull {}

/// Values addressed by [`SessionId`]: an id counter plus a power-of-two array indexed by
/// `id & mask`, with O(1) lookup that rejects every id but the live one at its position. See
/// the module docs for the growth rule and the horizon it gives.
pub(crate) struct IdTable<T> {
    /// Live entries at `id & mask`, each with its id; empty until the first insert.
    array: Vec<Option<(NonZeroU32, T)>>,
    /// `array.len() - 1` (0 while the array is empty).
    mask: u32,
    /// The counter: the next value to try. Never 0, never above `space`.
    next: u32,
    /// The largest id: `2^bits - 1`.
    space: u32,
    /// Number of live entries.
    len: usize,
    /// The most live entries there ever were.
    peak: usize,
    /// Maximum number of live entries.
    capacity: usize,
    /// Counter values skipped because a live session held their position (read by tests).
    #[cfg_attr(not(test), allow(dead_code))]
    skipped: u64,
    /// The planted bug of the service, if any (oracle tests only).
    pub(crate) plants: Plants,
}

impl<T> IdTable<T> {
    /// An empty table over the full 32-bit id space, its counter starting at `start`.
    #[cfg(test)]
    pub(crate) fn new(capacity: usize, start: u32) -> Self {
        Self::with_id_bits(capacity, ID_BITS, start)
    }

    /// An empty table holding at most `capacity` live entries, with ids from `1..2^bits`
    /// (`bits` clamped to `4..=32`; the service uses 32 unless a test narrows the id space)
    /// and its counter starting at `start` (reduced into that range). `capacity` is clamped
    /// to [`MAX_SESSIONS`] and to `2^(bits-2)`: the most that [`max_capacity`] allows.
    /// Allocates nothing up front.
    pub(crate) fn with_id_bits(capacity: usize, bits: u32, start: u32) -> Self {
        let bits = bits.clamp(MIN_ID_BITS, ID_BITS);
        let space = u32::MAX >> (ID_BITS - bits);
        let next = match start & space {
            0 => 1,
            s => s,
        };
        IdTable {
            array: Vec::new(),
            mask: 0,
            next,
            space,
            len: 0,
            peak: 0,
            capacity: capacity.min(max_capacity(bits)),
            skipped: 0,
            plants: Plants::default(),
        }
    }

    /// The counter value after `c`: `c + 1`, or 1 after the largest id (0 is not an id).
    fn after(&self, c: u32) -> u32 {
        if self.plants.on(Bug::IdWrapOffByOne) {
            // Wraps one value late: issues `space + 1`, which is outside the id space.
            return if c > self.space {
                1
            } else {
                c.wrapping_add(1).max(1)
            };
        }
        if c >= self.space { 1 } else { c + 1 }
    }

    /// Allocates an id, builds the value with `f(id)` and stores it.
    ///
    /// Takes the counter's next value whose array position is free, growing the array or
    /// skipping values as the module docs describe. Fails with [`TableFull`] (without calling
    /// `f`) if the table already holds `capacity` entries. If `f` panics no entry is stored
    /// and nothing is lost (the id it was offered is simply never issued).
    pub(crate) fn insert_with(
        &mut self,
        f: impl FnOnce(SessionId) -> T,
    ) -> Result<SessionId, TableFull> {
        if self.len >= self.capacity {
            return Err(TableFull);
        }
        if (self.len + 1) * 2 > self.array.len() {
            self.grow();
        }
        loop {
            let c = self.next;
            let pos = (c & self.mask) as usize;
            let held = match self.array.get(pos) {
                Some(Some((held, _))) => Some(held.get()),
                Some(None) => None,
                // Unreachable: the array was just grown to at least MIN_ARRAY slots.
                None => return Err(TableFull),
            };
            match held {
                None => {
                    let Some(raw) = NonZeroU32::new(c) else {
                        // Unreachable: the counter is never 0.
                        self.next = self.after(c);
                        continue;
                    };
                    let id = SessionId(raw);
                    let value = f(id);
                    if !self.plants.on(Bug::IdCounterStuck) {
                        self.next = self.after(c);
                    }
                    if let Some(entry) = self.array.get_mut(pos) {
                        *entry = Some((raw, value));
                    }
                    self.len += 1;
                    self.peak = self.peak.max(self.len);
                    return Ok(id);
                }
                // A live session holds the position of a different id: make room if the
                // array is not sparse (and can still grow), then try the same value again.
                Some(held) if held != c && self.len * 4 >= self.array.len() && self.can_grow() => {
                    self.grow();
                }
                // Sparse array, or the value is itself a live id: skip it.
                Some(_) => {
                    self.skipped += 1;
                    self.next = self.after(c);
                }
            }
        }
    }

    /// Whether the array may double: never beyond one slot per id of the space.
    fn can_grow(&self) -> bool {
        (self.array.len() as u64) < u64::from(self.space) + 1
    }

    /// Doubles the array (to [`MIN_ARRAY`] if empty) and moves every live entry to its
    /// position under the new mask. Two live ids never clash in the bigger array: ids equal
    /// modulo the new size are equal modulo the old one, where they sat apart.
    fn grow(&mut self) {
        if !self.can_grow() {
            return;
        }
        let size = (self.array.len() * 2).max(MIN_ARRAY);
        let mask = (size - 1) as u32;
        let mut array: Vec<Option<(NonZeroU32, T)>> = Vec::with_capacity(size);
        array.resize_with(size, || None);
        for (raw, value) in std::mem::take(&mut self.array).into_iter().flatten() {
            if let Some(entry) = array.get_mut((raw.get() & mask) as usize) {
                debug_assert!(entry.is_none(), "live ids clash after growth");
                *entry = Some((raw, value));
            }
        }
        self.array = array;
        self.mask = mask;
    }

    /// The value stored under `id`, or `None` unless `id` is live.
    #[inline]
    pub(crate) fn get(&self, id: SessionId) -> Option<&T> {
        match self.array.get((id.get() & self.mask) as usize) {
            Some(Some((held, value))) if *held == id.0 => Some(value),
            _ => None,
        }
    }

    /// The value stored under `id`, mutably; `None` unless `id` is live.
    #[cfg(test)]
    pub(crate) fn get_mut(&mut self, id: SessionId) -> Option<&mut T> {
        match self.array.get_mut((id.get() & self.mask) as usize) {
            Some(Some((held, value))) if *held == id.0 => Some(value),
            _ => None,
        }
    }

    /// Removes and returns the value stored under `id`; `id` never resolves again (until the
    /// counter comes round to it). Returns `None` and changes nothing if `id` is not live.
    pub(crate) fn remove(&mut self, id: SessionId) -> Option<T> {
        let entry = self.array.get_mut((id.get() & self.mask) as usize)?;
        match entry {
            Some((held, _)) if *held == id.0 => {}
            _ => return None,
        }
        let (_, value) = entry.take()?;
        self.len -= 1;
        Some(value)
    }

    /// Number of live entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the table holds no live entries.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maximum number of live entries (the requested capacity, clamped).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The most live entries there ever were (the high-water mark of [`len`](Self::len)),
    /// for status reports and leak checks. Never exceeds [`capacity`](Self::capacity).
    pub(crate) fn peak(&self) -> usize {
        self.peak
    }

    /// Slots of the array: at most eight per entry at the [`peak`](Self::peak) (and at
    /// least [`MIN_ARRAY`] once anything was inserted).
    #[cfg(test)]
    pub(crate) fn array_len(&self) -> usize {
        self.array.len()
    }

    /// Counter values skipped so far because a live session held their position.
    #[cfg(test)]
    pub(crate) fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The live entries with their ids, oldest first (in the order the counter issued them;
    /// an id that has been live while the counter went all the way round sorts as new).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (SessionId, &T)> {
        let mut live: Vec<(SessionId, &T)> = self
            .array
            .iter()
            .flatten()
            .map(|(raw, value)| (SessionId(*raw), value))
            .collect();
        // Age key: how far behind the counter an id is, counted forwards from `next`.
        let (next, space) = (self.next, self.space);
        live.sort_unstable_by_key(|(id, _)| id.get().wrapping_sub(next) & space);
        live.into_iter()
    }
}

/// The most live sessions a table with `bits` id bits holds: [`MAX_SESSIONS`], and at most a
/// quarter of the id space (`2^(bits-2)`), so that most of a narrowed space is always free.
pub(crate) fn max_capacity(bits: u32) -> usize {
    let bits = bits.clamp(MIN_ID_BITS, ID_BITS);
    MAX_SESSIONS.min(1usize << (bits - 2).min(30))
}

impl<T> fmt::Debug for IdTable<T> {
    /// Summary only (`len`, `capacity`, `peak`, array size); the values are not printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdTable")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .field("peak", &self.peak)
            .field("array", &self.array.len())
            .finish()
    }
}

#[cfg(test)]
mod tests;
