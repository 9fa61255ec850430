//! [`BufferPool`]: a thread-safe pool of byte blocks in power-of-two size classes.
//!
//! Every session of a service takes its read buffers and write segments from one shared pool, so
//! steady-state traffic reuses memory instead of allocating. A [`Block`] is an RAII handle: when
//! it is dropped it goes back to the pool, which either retains it for the next [`BufferPool::take`]
//! or frees it, according to the retention budgets in [`PoolConfig`].
//!
//! # Size classes
//!
//! Requests are rounded up to the next power of two between [`PoolConfig::min_class`] and
//! [`PoolConfig::max_class`]; that rounded size is the block's [`Block::len`]. A request larger
//! than `max_class` gets an *oversize* block of exactly the requested length that is never
//! retained: it is freed when dropped.
//!
//! # Accounting
//!
//! [`PoolStats`] counts blocks and bytes. Every snapshot satisfies
//! `allocations + oversize_allocations == frees + retained_blocks + in_use_blocks`, and when every
//! [`Block`] has been dropped `in_use_blocks == in_use_bytes == 0` (the simulation oracle relies on
//! this to prove that sessions do not leak buffers).
//!
//! # Contents
//!
//! A reused block still holds whatever its previous user wrote. Users must only expose bytes they
//! wrote themselves (the read buffer and the segment queue track exactly which bytes are live).

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Sizing and retention settings of a service's buffer pool (`Config::pool`).
///
/// Size classes are powers of two: a `min_class` or `max_class` that is not a power of two is
/// rounded up to the next one (0 counts as 1), and a `max_class` below `min_class` is raised to
/// `min_class`. The retention budgets are byte counts and are used as given.
///
/// The defaults are 512 B .. 16 MiB classes, 4 MiB retained per class and 64 MiB retained in all.
/// With these defaults the 8 MiB and 16 MiB classes are never retained (one block would exceed
/// the per-class budget), so very large frame buffers go back to the allocator as soon as they
/// are released.
// `pub` because the lead may re-export it from the crate root; until then it is crate-private.
#[allow(unreachable_pub)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Smallest size class in bytes: every block is at least this long. Default 512 (bytes).
    pub min_class: usize,
    /// Largest size class in bytes. Requests above it get an exact-size block that is not pooled
    /// and is freed when dropped. Default 16 MiB.
    pub max_class: usize,
    /// Maximum number of bytes retained (kept for reuse) in any one size class. A returned block
    /// is freed if retaining it would exceed this. Default 4 MiB.
    pub keep_per_class: usize,
    /// Maximum number of bytes retained over all size classes together. A returned block is
    /// freed if retaining it would exceed this. Default 64 MiB.
    pub keep_total: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            min_class: 512,
            max_class: 16 << 20,
            keep_per_class: 4 << 20,
            keep_total: 64 << 20,
        }
    }
}

/// A snapshot of a buffer pool's counters (`Status::pool`).
///
/// Taken under the pool's lock, so the counters are consistent with each other.
// `pub` because the lead may re-export it from the crate root; until then it is crate-private.
#[allow(unreachable_pub)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Blocks currently handed out (taken and not yet dropped), oversize blocks included.
    pub in_use_blocks: usize,
    /// Total length in bytes of the blocks currently handed out.
    pub in_use_bytes: usize,
    /// Blocks currently kept by the pool for reuse.
    pub retained_blocks: usize,
    /// Total length in bytes of the blocks currently kept for reuse.
    pub retained_bytes: usize,
    /// Size-class blocks allocated from the system allocator since the pool was created
    /// (oversize blocks are counted in `oversize_allocations` instead).
    pub allocations: u64,
    /// Blocks given back to the system allocator since the pool was created: returned blocks
    /// over the retention budgets, oversize blocks, and blocks dropped by a trim (at service shutdown).
    pub frees: u64,
    /// Takes served from a retained block without allocating.
    pub reuses: u64,
    /// Oversize (above `max_class`, exact size, never retained) blocks allocated.
    pub oversize_allocations: u64,
}

/// A cheaply clonable handle to a shared pool of byte blocks in power-of-two size classes.
///
/// Safe to use from several threads; all clones share the same blocks and counters.
#[derive(Clone)]
pub struct BufferPool(Arc<Inner>);

struct Inner {
    /// `log2(min_class)`.
    min_shift: u32,
    /// Effective (rounded) configuration.
    config: PoolConfig,
    /// Retained blocks and counters under one lock: a take or return is one uncontended
    /// lock/unlock pair and plain arithmetic (atomic counters next to a per-class lock cost
    /// six more locked instructions per operation, on cache lines shared by every thread).
    state: Mutex<State>,
}

struct State {
    /// Retained blocks; `classes[i]` holds blocks of `min_class << i` bytes.
    classes: Vec<Vec<Box<[u8]>>>,
    stats: PoolStats,
}

/// Rounds up to a power of two, saturating at the largest power of two `usize` holds.
fn round_class(n: usize) -> usize {
    n.checked_next_power_of_two()
        .unwrap_or(1 << (usize::BITS - 1))
}

/// Free-list entries a class reserves at a time: at creation, and again whenever its list is
/// full (then doubling), bounded by what the class may keep.
const FREE_LIST_STEP: usize = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update of the state completes before anything can panic, so poisoning is harmless.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Default for BufferPool {
    fn default() -> Self {
        Self::new(PoolConfig::default())
    }
}

impl BufferPool {
    /// Creates an empty pool: no blocks yet, but each class's free list has room for its first
    /// 64 retained blocks (fewer if the class may keep fewer; ≈ 9 KiB with the defaults), so
    /// returning a block does not allocate until a class retains that many. See
    /// [`PoolConfig`] for rounding.
    pub fn new(config: PoolConfig) -> Self {
        let min_class = round_class(config.min_class);
        let max_class = round_class(config.max_class).max(min_class);
        let min_shift = min_class.trailing_zeros();
        let n_classes = (max_class.trailing_zeros() - min_shift + 1) as usize;
        let free_list = |i: usize| {
            let size = min_class << i;
            Vec::with_capacity(FREE_LIST_STEP.min(config.keep_per_class / size))
        };
        Self(Arc::new(Inner {
            min_shift,
            config: PoolConfig {
                min_class,
                max_class,
                ..config
            },
            state: Mutex::new(State {
                classes: (0..n_classes).map(free_list).collect(),
                stats: PoolStats::default(),
            }),
        }))
    }

    /// The effective configuration (class bounds rounded to powers of two).
    #[cfg(test)]
    pub fn config(&self) -> &PoolConfig {
        &self.0.config
    }

    /// The length of the block [`take`](Self::take) returns for `min_len`: `min_class` for small
    /// requests, the next power of two up to `max_class`, and `min_len` itself above `max_class`
    /// (oversize).
    pub fn class_size(&self, min_len: usize) -> usize {
        let c = &self.0.config;
        if min_len <= c.min_class {
            c.min_class
        } else if min_len <= c.max_class {
            // min_len <= max_class, itself a power of two, so this cannot overflow.
            min_len.next_power_of_two()
        } else {
            min_len
        }
    }

    /// Index into `classes` of a block of exactly `len` bytes, or `None` for an oversize block.
    fn class_index(&self, len: usize) -> Option<usize> {
        let c = &self.0.config;
        if len.is_power_of_two() && (c.min_class..=c.max_class).contains(&len) {
            Some((len.trailing_zeros() - self.0.min_shift) as usize)
        } else {
            None
        }
    }

    /// Hands out a block of [`class_size(min_len)`](Self::class_size) bytes, reusing a retained
    /// block of that class if there is one and allocating (zero-filled) otherwise.
    ///
    /// The contents of a reused block are whatever its previous user left in it.
    pub fn take(&self, min_len: usize) -> Block {
        let size = self.class_size(min_len);
        let idx = self.class_index(size);
        let reused = {
            let mut st = lock(&self.0.state);
            let State { classes, stats } = &mut *st;
            stats.in_use_blocks += 1;
            stats.in_use_bytes += size;
            let reused = idx.and_then(|i| classes[i].pop());
            match (&reused, idx) {
                (Some(_), _) => {
                    stats.retained_blocks -= 1;
                    stats.retained_bytes -= size;
                    stats.reuses += 1;
                }
                (None, Some(_)) => stats.allocations += 1,
                (None, None) => stats.oversize_allocations += 1,
            }
            reused
        };
        // A new block is allocated outside the lock.
        let buf = reused.unwrap_or_else(|| vec![0u8; size].into_boxed_slice());
        debug_assert_eq!(buf.len(), size);
        Block {
            buf,
            pool: self.clone(),
        }
    }

    /// Takes back a block's memory: retains it if both budgets allow, frees it otherwise.
    fn give_back(&self, buf: Box<[u8]>) {
        let inner = &*self.0;
        let size = buf.len();
        let idx = self.class_index(size);
        let rejected = {
            let mut st = lock(&inner.state);
            let State { classes, stats } = &mut *st;
            stats.in_use_blocks -= 1;
            stats.in_use_bytes -= size;
            let keep = idx.filter(|&i| {
                let class_ok = (classes[i].len() + 1)
                    .checked_mul(size)
                    .is_some_and(|bytes| bytes <= inner.config.keep_per_class);
                let total_ok = stats
                    .retained_bytes
                    .checked_add(size)
                    .is_some_and(|t| t <= inner.config.keep_total);
                class_ok && total_ok
            });
            match keep {
                Some(i) => {
                    let list = &mut classes[i];
                    if list.len() == list.capacity() {
                        // Grow the free list in large steps (bounded by what the class may
                        // keep), so a steady state never reallocates it on the message path.
                        let max = inner.config.keep_per_class / size;
                        let more = list
                            .capacity()
                            .max(FREE_LIST_STEP)
                            .min(max.saturating_sub(list.len()));
                        list.reserve(more);
                    }
                    list.push(buf);
                    stats.retained_blocks += 1;
                    stats.retained_bytes += size;
                    None
                }
                None => {
                    stats.frees += 1;
                    Some(buf)
                }
            }
        };
        drop(rejected); // outside the lock
    }

    /// Frees every retained block (for shutdown or memory pressure). Blocks in use are not
    /// affected; they are retained or freed as usual when dropped.
    pub fn trim(&self) {
        let drained: Vec<Vec<Box<[u8]>>> = {
            let mut st = lock(&self.0.state);
            let State { classes, stats } = &mut *st;
            let drained: Vec<_> = classes.iter_mut().map(std::mem::take).collect();
            let blocks: usize = drained.iter().map(Vec::len).sum();
            stats.frees += blocks as u64;
            stats.retained_blocks = 0;
            stats.retained_bytes = 0;
            drained
        };
        drop(drained); // outside the lock
    }

    /// A snapshot of the pool's counters (see [`PoolStats`]).
    pub fn stats(&self) -> PoolStats {
        lock(&self.0.state).stats.clone()
    }

    /// Whether `self` and `other` are handles to the same pool.
    #[cfg(test)]
    pub fn same_pool(&self, other: &BufferPool) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferPool")
            .field("config", &self.0.config)
            .field("stats", &self.stats())
            .finish()
    }
}

/// A block of bytes taken from a [`BufferPool`]; it returns to its pool when dropped.
///
/// Its length is fixed (the size class, or the exact length for an oversize block). It
/// dereferences to `[u8]`.
pub struct Block {
    buf: Box<[u8]>,
    pool: BufferPool,
}

impl Block {
    /// The block's length in bytes (its size class).
    #[allow(clippy::len_without_is_empty)] // a block is never empty (min_class >= 1)
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// The pool this block returns to.
    #[cfg(test)]
    pub fn pool(&self) -> &BufferPool {
        &self.pool
    }
}

impl Deref for Block {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf
    }
}

impl DerefMut for Block {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // An empty boxed slice does not allocate, so this swap is free.
        let buf = std::mem::take(&mut self.buf);
        self.pool.give_back(buf);
    }
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Block")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
