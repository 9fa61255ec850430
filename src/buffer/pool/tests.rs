//! Unit tests of `BufferPool`: configuration rounding, size classes, reuse, the retention limits,
//! oversize blocks, and counters that balance.

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
