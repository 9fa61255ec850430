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
mod tests {
    use super::*;

    fn small_pool(keep_per_class: usize, keep_total: usize) -> BufferPool {
        BufferPool::new(PoolConfig {
            min_class: 512,
            max_class: 4096,
            keep_per_class,
            keep_total,
        })
    }

    /// `allocations + oversize_allocations == frees + retained_blocks + in_use_blocks`.
    fn assert_balanced(pool: &BufferPool) {
        let s = pool.stats();
        assert_eq!(
            s.allocations + s.oversize_allocations,
            s.frees + s.retained_blocks as u64 + s.in_use_blocks as u64,
            "{s:?}"
        );
    }

    #[test]
    fn default_config_values() {
        let c = PoolConfig::default();
        assert_eq!(c.min_class, 512);
        assert_eq!(c.max_class, 16 * 1024 * 1024);
        assert_eq!(c.keep_per_class, 4 * 1024 * 1024);
        assert_eq!(c.keep_total, 64 * 1024 * 1024);
        assert_eq!(BufferPool::default().config(), &c);
    }

    #[test]
    fn config_rounds_up_to_powers_of_two() {
        let pool = BufferPool::new(PoolConfig {
            min_class: 300,
            max_class: 5000,
            ..PoolConfig::default()
        });
        assert_eq!(pool.config().min_class, 512);
        assert_eq!(pool.config().max_class, 8192);
        let pool = BufferPool::new(PoolConfig {
            min_class: 0,
            max_class: 0,
            ..PoolConfig::default()
        });
        assert_eq!(pool.config().min_class, 1);
        assert_eq!(pool.config().max_class, 1);
        let pool = BufferPool::new(PoolConfig {
            min_class: 4096,
            max_class: 100,
            ..PoolConfig::default()
        });
        assert_eq!(pool.config().max_class, 4096);
        let pool = BufferPool::new(PoolConfig {
            max_class: usize::MAX,
            ..PoolConfig::default()
        });
        assert_eq!(pool.config().max_class, 1 << (usize::BITS - 1));
    }

    #[test]
    fn class_size_rounds_requests() {
        let pool = small_pool(1 << 20, 1 << 20);
        assert_eq!(pool.class_size(0), 512);
        assert_eq!(pool.class_size(1), 512);
        assert_eq!(pool.class_size(512), 512);
        assert_eq!(pool.class_size(513), 1024);
        assert_eq!(pool.class_size(4096), 4096);
        assert_eq!(pool.class_size(4097), 4097);
        for n in [0, 1, 511, 512, 513, 2000, 4096, 4097, 10_000] {
            let b = pool.take(n);
            assert_eq!(b.len(), pool.class_size(n));
            assert!(b.len() >= n);
        }
    }

    #[test]
    fn take_reuses_returned_block() {
        let pool = small_pool(1 << 20, 1 << 20);
        let b = pool.take(1000);
        assert_eq!(b.len(), 1024);
        drop(b);
        let s = pool.stats();
        assert_eq!(
            (s.allocations, s.retained_blocks, s.retained_bytes),
            (1, 1, 1024)
        );
        let b = pool.take(700);
        let s = pool.stats();
        assert_eq!((s.allocations, s.reuses, s.retained_blocks), (1, 1, 0));
        assert_eq!((s.in_use_blocks, s.in_use_bytes), (1, 1024));
        drop(b);
        // A different class does not reuse it.
        let _c = pool.take(2048);
        assert_eq!(pool.stats().allocations, 2);
        assert_balanced(&pool);
    }

    #[test]
    fn per_class_retention_limit_frees_excess() {
        // 2 KiB per class: two 1 KiB blocks, zero 4 KiB blocks.
        let pool = small_pool(2048, 1 << 20);
        let blocks: Vec<Block> = (0..5).map(|_| pool.take(1024)).collect();
        drop(blocks);
        let s = pool.stats();
        assert_eq!((s.retained_blocks, s.retained_bytes, s.frees), (2, 2048, 3));
        drop(pool.take(4096));
        let s = pool.stats();
        assert_eq!((s.retained_blocks, s.frees), (2, 4));
        // The 512 class has its own budget.
        let blocks: Vec<Block> = (0..4).map(|_| pool.take(1)).collect();
        drop(blocks);
        let s = pool.stats();
        assert_eq!((s.retained_blocks, s.retained_bytes, s.frees), (6, 4096, 4));
        assert_balanced(&pool);
    }

    #[test]
    fn total_retention_limit_frees_excess() {
        // Each class may keep 4 KiB, but all together only 3 KiB.
        let pool = small_pool(4096, 3072);
        let blocks: Vec<Block> = (0..4)
            .map(|_| pool.take(512))
            .chain((0..2).map(|_| pool.take(1024)))
            .collect();
        drop(blocks);
        let s = pool.stats();
        // 4 * 512 = 2048 retained, then one 1024 fits (3072), the other is freed.
        assert_eq!((s.retained_blocks, s.retained_bytes, s.frees), (5, 3072, 1));
        assert_balanced(&pool);
        // Taking one frees budget for another return.
        let b = pool.take(1024);
        let extra = pool.take(1024);
        assert_eq!(pool.stats().retained_bytes, 2048);
        drop(extra);
        drop(b);
        let s = pool.stats();
        assert_eq!((s.retained_bytes, s.frees), (3072, 2));
        assert_balanced(&pool);
    }

    #[test]
    fn oversize_blocks_are_exact_and_never_retained() {
        let pool = small_pool(1 << 20, 1 << 20);
        let b = pool.take(10_000);
        assert_eq!(b.len(), 10_000);
        let s = pool.stats();
        assert_eq!((s.oversize_allocations, s.allocations), (1, 0));
        assert_eq!((s.in_use_blocks, s.in_use_bytes), (1, 10_000));
        drop(b);
        let s = pool.stats();
        assert_eq!((s.retained_blocks, s.frees, s.in_use_bytes), (0, 1, 0));
        drop(pool.take(10_000));
        assert_eq!(pool.stats().oversize_allocations, 2);
        assert_balanced(&pool);
    }

    #[test]
    fn in_use_returns_to_zero_after_drop() {
        let pool = BufferPool::default();
        let blocks: Vec<Block> = [1, 600, 70_000, 1 << 20, 20 << 20]
            .iter()
            .map(|&n| pool.take(n))
            .collect();
        let s = pool.stats();
        assert_eq!(s.in_use_blocks, 5);
        assert_eq!(
            s.in_use_bytes,
            512 + 1024 + 128 * 1024 + (1 << 20) + (20 << 20)
        );
        drop(blocks);
        let s = pool.stats();
        assert_eq!((s.in_use_blocks, s.in_use_bytes), (0, 0));
        assert_balanced(&pool);
    }

    #[test]
    fn default_pool_does_not_retain_largest_classes() {
        let pool = BufferPool::default();
        drop(pool.take(8 << 20));
        drop(pool.take(16 << 20));
        drop(pool.take(4 << 20));
        let s = pool.stats();
        assert_eq!(
            (s.retained_blocks, s.retained_bytes, s.frees),
            (1, 4 << 20, 2)
        );
    }

    #[test]
    fn trim_frees_all_retained() {
        let pool = small_pool(1 << 20, 1 << 20);
        let blocks: Vec<Block> = (1..=8).map(|i| pool.take(i * 512)).collect();
        let kept = pool.take(512);
        drop(blocks);
        assert_eq!(pool.stats().retained_blocks, 8);
        pool.trim();
        let s = pool.stats();
        assert_eq!((s.retained_blocks, s.retained_bytes, s.frees), (0, 0, 8));
        assert_eq!(s.in_use_blocks, 1);
        drop(kept);
        assert_eq!(pool.stats().retained_blocks, 1);
        assert_balanced(&pool);
    }

    #[test]
    fn block_derefs_and_keeps_pool_alive() {
        let pool = small_pool(1 << 20, 1 << 20);
        let mut b = pool.take(3);
        b[..3].copy_from_slice(b"abc");
        assert_eq!(&b[..3], b"abc");
        assert!(b.pool().same_pool(&pool));
        let clone = pool.clone();
        drop(pool);
        drop(b); // returns into the pool kept alive by the block
        assert_eq!(clone.stats().retained_blocks, 1);
    }

    #[test]
    fn pool_is_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<BufferPool>();
        assert_send_sync::<Block>();

        let pool = small_pool(1 << 20, 1 << 20);
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    for i in 0..1000usize {
                        let a = pool.take((i * 7 + t) % 5000);
                        let b = pool.take(i % 3000);
                        drop(a);
                        drop(b);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let s = pool.stats();
        assert_eq!((s.in_use_blocks, s.in_use_bytes), (0, 0));
        assert_eq!(s.allocations + s.reuses + s.oversize_allocations, 8000);
        assert_balanced(&pool);
    }
}
