//! Session ids that stay unique over time, and the slab ([`IdTable`]) that hands them out.
//!
//! # Layout
//!
//! A [`SessionId`] is a nonzero `u32` split into two fields:
//!
//! ```text
//!  31                  17 16                  0
//! +----------------------+---------------------+
//! | generation (15 bits) | slot + 1 (17 bits)  |
//! +----------------------+---------------------+
//! ```
//!
//! The low [`SLOT_BITS`] = 17 bits hold the slot index *plus one*, so the slot field is never
//! zero and therefore the whole id is never zero (`Option<SessionId>` is 4 bytes). Slot
//! indexes run `0..MAX_SLOTS`, where [`MAX_SLOTS`] = 2^17 - 1 = **131,071**: that is the largest
//! number of sessions one table can hold at once. The high [`GENERATION_BITS`] = 15 bits hold
//! the slot's generation, `0..32,768`.
//!
//! Ids print (both `Debug` and `Display`) as `#<slot>.<generation>`, e.g. `#12.4031` for slot
//! index 12 at generation 4031, which keeps them short and greppable in logs.
//!
//! # The horizon
//!
//! Every time a session is removed, its slot's generation is incremented by one (mod 2^15). A
//! removed id therefore resolves to nothing from then on, and the *same* `u32` is handed out
//! again only when its slot comes back round to the same generation: after that slot has been
//! issued **32,768 more times** (2^15 = 32,768 releases of that slot). This is the exact,
//! guaranteed horizon; nothing can make an id recur sooner.
//!
//! Released slots go to the *back* of a FIFO free list and new sessions take the slot at the
//! *front*, so a released slot waits behind every other free slot before it is reused. When
//! churn is spread over N slots in rotation, each slot is reused only every N-th allocation,
//! and an id recurs at the earliest after about N × 32,768 releases overall (with the full
//! capacity in rotation, 131,071 × 32,768 ≈ 4.3 × 10^9). The worst case — one slot churning
//! while every other slot is held by a long-lived session — is the per-slot bound of 32,768
//! releases. A LIFO free list would instead hammer the same slot and always sit at that worst
//! case; FIFO costs nothing and spreads wear over all free slots.
//!
//! New slots are created (appended to the slot vector) only when the free list is empty, so the
//! table's memory is proportional to its high-water mark of live sessions
//! ([`IdTable::slots_created`]), not to its capacity.
//!
//! Each newly created slot starts at a generation drawn from the service's RNG, so two service
//! instances (or two runs with different seeds) hand out different ids; this makes accidental
//! cross-instance matches unlikely but, unlike the horizon above, is not a guarantee.

use std::collections::VecDeque;
use std::fmt;
use std::num::NonZeroU32;

/// Number of low bits of a [`SessionId`] holding the slot index plus one.
pub(crate) const SLOT_BITS: u32 = 17;

/// Number of high bits of a [`SessionId`] holding the slot's generation.
pub(crate) const GENERATION_BITS: u32 = 15;

/// Mask of the slot field (low [`SLOT_BITS`] bits).
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;

/// Mask of a generation value (low [`GENERATION_BITS`] bits, before shifting).
const GENERATION_MASK: u32 = (1 << GENERATION_BITS) - 1;

/// Number of distinct generations per slot: 2^15 = 32,768. A released id is issued again only
/// after its slot has been issued this many more times.
#[cfg(test)]
pub(crate) const GENERATIONS: u32 = 1 << GENERATION_BITS;

/// The most sessions one service (one session table) can hold: 2^17 - 1 = 131,071. The slot
/// field stores `slot + 1` in 17 bits and 0 is reserved, so slot indexes run `0..MAX_SLOTS`.
pub const MAX_SLOTS: usize = (1 << SLOT_BITS) as usize - 1;

/// Identifies one session of one `Service`.
///
/// A nonzero `u32`, `(generation << 17) | (slot + 1)`: the low 17 bits hold the slot index
/// plus one (so the value is never 0 and `Option<SessionId>` is 4 bytes), the high 15 bits the
/// slot's generation. A service holds at most [`MAX_SLOTS`] = 2^17 - 1 = 131,071 sessions at
/// once.
///
/// Ids are unique among live sessions, and unique over time up to a horizon: removing a
/// session bumps its slot's generation (mod 2^15), so its id stops resolving at once and is
/// issued again only after that slot has been handed out **32,768 more times**. Freed slots are
/// reused oldest-first, so when churn is spread over N slots an id recurs at the earliest after
/// about N × 32,768 releases overall (never sooner than 32,768). The first generation of each
/// slot is drawn from the service's RNG, so different services and seeds use different ids.
///
/// `Debug` and `Display` both print `#<slot>.<generation>`, e.g. `#12.4031` (slot index 12,
/// generation 4031). Use [`get`](Self::get) / [`from_raw`](Self::from_raw) for the raw `u32`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(NonZeroU32);

impl SessionId {
    /// Builds the id for `slot` at `generation`. `slot` must be below [`MAX_SLOTS`] (the table
    /// guarantees it); `generation` is masked to 15 bits.
    fn new(slot: usize, generation: u32) -> SessionId {
        debug_assert!(slot < MAX_SLOTS);
        // slot < MAX_SLOTS = 2^17 - 1, so slot + 1 fits the 17-bit field and is nonzero.
        let slot_field = (slot as u32 + 1) & SLOT_MASK;
        let raw = ((generation & GENERATION_MASK) << SLOT_BITS) | slot_field;
        // The fallback is unreachable (slot_field >= 1); it only avoids a panic path.
        SessionId(NonZeroU32::new(raw).unwrap_or(NonZeroU32::MIN))
    }

    /// The raw `u32` value: `(generation << 17) | (slot + 1)`. Never zero.
    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// Rebuilds an id from its raw value (e.g. one received from a peer or a log). Returns
    /// `None` for 0 and for any value whose low 17 bits (the slot field) are 0. Any other
    /// value is a well-formed id, though it need not name a live session.
    pub fn from_raw(raw: u32) -> Option<SessionId> {
        if raw & SLOT_MASK == 0 {
            return None;
        }
        NonZeroU32::new(raw).map(SessionId)
    }

    /// The slot index, `0..MAX_SLOTS`.
    pub(crate) fn slot(self) -> usize {
        ((self.0.get() & SLOT_MASK) - 1) as usize
    }

    /// The slot's generation when this id was issued, `0..32,768`.
    pub(crate) fn generation(self) -> u32 {
        self.0.get() >> SLOT_BITS
    }
}

impl fmt::Display for SessionId {
    /// Prints `#<slot>.<generation>`, e.g. `#12.4031`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.slot(), self.generation())
    }
}

impl fmt::Debug for SessionId {
    /// Same as `Display`: `#<slot>.<generation>`, e.g. `#12.4031`.
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

/// One slot of an [`IdTable`]: its current generation and, if occupied, the value.
struct Slot<T> {
    /// The generation the next (or current) occupant's id carries.
    generation: u32,
    /// The occupant, or `None` while the slot sits on the free list.
    value: Option<T>,
}

/// A slab of values addressed by [`SessionId`], with O(1) lookup that rejects stale
/// generations.
///
/// Removing an entry bumps its slot's generation and queues the slot at the back of a FIFO
/// free list; inserting takes the front of the free list, or creates a new slot if the free
/// list is empty and fewer than `capacity` slots exist. See the module docs for the horizon
/// this gives.
pub(crate) struct IdTable<T> {
    /// All slots ever created, indexed by slot index. Never shrinks.
    slots: Vec<Slot<T>>,
    /// Vacant slot indexes, oldest release at the front.
    free: VecDeque<u32>,
    /// Number of occupied slots.
    len: usize,
    /// Maximum number of occupied slots (and of slots ever created), at most [`MAX_SLOTS`].
    capacity: usize,
    /// Mask of the generations this table issues: [`GENERATION_MASK`], or fewer bits when a
    /// test narrows the id space (`Config::id_generation_bits`) to reach the horizon quickly.
    generation_mask: u32,
    /// Generations a release advances its slot by: 1 (planted bugs change it).
    pub(crate) bump: u32,
}

impl<T> IdTable<T> {
    /// An empty table with the full generation space (see
    /// [`with_generation_bits`](Self::with_generation_bits)).
    #[cfg(test)]
    pub(crate) fn new(capacity: usize) -> Self {
        Self::with_generation_bits(capacity, GENERATION_BITS)
    }

    /// An empty table holding at most `capacity` live entries (clamped to [`MAX_SLOTS`]),
    /// whose slots cycle through `2^bits` generations (`bits` clamped to `1..=15`; the service
    /// uses 15 unless a test narrows the id space to reach the horizon within a run). An id
    /// recurs after its slot was issued `2^bits` more times. Allocates nothing up front.
    pub(crate) fn with_generation_bits(capacity: usize, bits: u32) -> Self {
        IdTable {
            slots: Vec::new(),
            free: VecDeque::new(),
            len: 0,
            capacity: capacity.min(MAX_SLOTS),
            generation_mask: (1 << bits.clamp(1, GENERATION_BITS)) - 1,
            bump: 1,
        }
    }

    /// Allocates an id, builds the value with `f(id)` and stores it.
    ///
    /// Reuses the longest-vacant slot if any; otherwise creates a new slot whose initial
    /// generation is drawn from `rng`. Fails with [`TableFull`] (without calling `f` or
    /// touching `rng`) if the table already holds `capacity` entries. If `f` panics the table
    /// is left unchanged (no slot is lost).
    pub(crate) fn insert_with(
        &mut self,
        rng: &mut impl rand_core::Rng,
        f: impl FnOnce(SessionId) -> T,
    ) -> Result<SessionId, TableFull> {
        if self.len >= self.capacity {
            return Err(TableFull);
        }
        if let Some(&slot) = self.free.front() {
            let slot = slot as usize;
            let Some(entry) = self.slots.get(slot) else {
                // Unreachable: the free list only holds indexes of created slots.
                return Err(TableFull);
            };
            let id = SessionId::new(slot, entry.generation);
            let value = f(id);
            self.free.pop_front();
            if let Some(entry) = self.slots.get_mut(slot) {
                entry.value = Some(value);
            }
            self.len += 1;
            Ok(id)
        } else if self.slots.len() < self.capacity {
            let slot = self.slots.len();
            let generation = rng.next_u32() & self.generation_mask;
            let id = SessionId::new(slot, generation);
            let value = f(id);
            self.slots.push(Slot {
                generation,
                value: Some(value),
            });
            self.len += 1;
            Ok(id)
        } else {
            // Unreachable while len < capacity: every created slot is either occupied or free.
            Err(TableFull)
        }
    }

    /// The value stored under `id`, or `None` if its slot is vacant, was never created, or
    /// has moved on to another generation (the id is stale).
    pub(crate) fn get(&self, id: SessionId) -> Option<&T> {
        let entry = self.slots.get(id.slot())?;
        if entry.generation == id.generation() {
            entry.value.as_ref()
        } else {
            None
        }
    }

    /// The value stored under `id`, mutably; `None` under the same conditions as
    /// [`get`](Self::get).
    #[cfg(test)]
    pub(crate) fn get_mut(&mut self, id: SessionId) -> Option<&mut T> {
        let entry = self.slots.get_mut(id.slot())?;
        if entry.generation == id.generation() {
            entry.value.as_mut()
        } else {
            None
        }
    }

    /// Removes and returns the value stored under `id`. On success the slot's generation is
    /// bumped (so `id` is stale from now on) and the slot joins the back of the free list.
    /// Returns `None` and changes nothing if `id` does not name a live entry.
    pub(crate) fn remove(&mut self, id: SessionId) -> Option<T> {
        let slot = id.slot();
        let entry = self.slots.get_mut(slot)?;
        if entry.generation != id.generation() {
            return None;
        }
        let value = entry.value.take()?;
        entry.generation = (entry.generation + self.bump) & self.generation_mask;
        self.free.push_back(slot as u32);
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

    /// Maximum number of live entries (the requested capacity clamped to [`MAX_SLOTS`]).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of slots ever created: the high-water mark of [`len`](Self::len), for status
    /// reports and leak checks. Never exceeds [`capacity`](Self::capacity).
    pub(crate) fn slots_created(&self) -> usize {
        self.slots.len()
    }

    /// The live entries with their ids, in slot order (deterministic, independent of
    /// insertion order).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (SessionId, &T)> {
        self.slots.iter().enumerate().filter_map(|(slot, entry)| {
            entry
                .value
                .as_ref()
                .map(|value| (SessionId::new(slot, entry.generation), value))
        })
    }
}

impl<T> fmt::Debug for IdTable<T> {
    /// Summary only (`len`, `capacity`, `slots_created`); the values are not printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdTable")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .field("slots_created", &self.slots.len())
            .finish()
    }
}

#[cfg(test)]
mod tests;
