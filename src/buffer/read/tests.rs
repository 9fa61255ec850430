//! Unit tests of `ReadBuffer`: spare/commit/consume, compaction, growth through the size classes,
//! the adaptive read size, giving memory back when idle, and a random run against a model.

use super::*;
use crate::buffer::pool::PoolConfig;

fn pool() -> BufferPool {
    BufferPool::new(PoolConfig {
        min_class: 512,
        max_class: 64 * 1024,
        ..PoolConfig::default()
    })
}

/// Copies `bytes` into the buffer the way a socket read would (possibly in several reads).
fn receive(rb: &mut ReadBuffer, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let spare = rb.spare(1);
        let n = spare.len().min(bytes.len());
        spare[..n].copy_from_slice(&bytes[..n]);
        rb.commit(n);
        bytes = &bytes[n..];
    }
}

#[test]
fn new_does_not_allocate() {
    let pool = pool();
    let rb = ReadBuffer::new(pool.clone(), 1000, 1000);
    assert_eq!(rb.capacity(), 0);
    assert_eq!(rb.initial_capacity(), 1024);
    assert!(rb.is_empty());
    assert_eq!(rb.data(), b"");
    assert_eq!(pool.stats(), Default::default());
}

#[test]
fn spare_commit_data_consume() {
    let pool = pool();
    let mut rb = ReadBuffer::new(pool.clone(), 512, 512);
    let spare = rb.spare(4);
    assert_eq!(spare.len(), 512);
    spare[..5].copy_from_slice(b"hello");
    rb.commit(5);
    assert_eq!(rb.data(), b"hello");
    assert_eq!(rb.len(), 5);
    assert_eq!(rb.spare(1).len(), 507);
    rb.consume(2);
    assert_eq!(rb.data(), b"llo");
    rb.consume(3);
    assert!(rb.is_empty());
    // Emptying resets the offsets: the whole block is spare again, and it is kept.
    assert_eq!(rb.spare(1).len(), 512);
    assert_eq!(pool.stats().allocations, 1);
    assert_eq!(pool.stats().in_use_blocks, 1);
}

#[test]
fn spare_is_never_empty() {
    let mut rb = ReadBuffer::new(pool(), 512, 512);
    assert_eq!(rb.spare(0).len(), 512);
    receive(&mut rb, &[7; 512]);
    assert_eq!(rb.capacity(), 512);
    // Full buffer: spare(0) still grows so a 0-byte read cannot be mistaken for EOF.
    assert!(!rb.spare(0).is_empty());
    assert_eq!(rb.data(), &[7; 512][..]);
}

#[test]
fn compaction_moves_partial_frame_to_front() {
    let pool = pool();
    let mut rb = ReadBuffer::new(pool.clone(), 512, 512);
    let mut stream: Vec<u8> = (0..500u32).map(|i| i as u8).collect();
    receive(&mut rb, &stream);
    // Parse 400 bytes of complete frames; 100 bytes of a partial frame stay at offset 400.
    rb.consume(400);
    assert_eq!(rb.spare(1).len(), 12);
    // Asking for more than the tail compacts instead of growing.
    let spare = rb.spare(300);
    assert_eq!(spare.len(), 412);
    assert_eq!(rb.capacity(), 512);
    assert_eq!(rb.data(), &stream[400..]);
    assert_eq!(pool.stats().allocations, 1);
    // More of the frame arrives after the compacted bytes.
    let more: Vec<u8> = (0..300u32).map(|i| (i * 3) as u8).collect();
    receive(&mut rb, &more);
    stream.extend_from_slice(&more);
    assert_eq!(rb.data(), &stream[400..]);
    assert_eq!(pool.stats().allocations, 1);
}

#[test]
fn grows_through_classes_via_reserve_total() {
    let pool = pool();
    let mut rb = ReadBuffer::new(pool.clone(), 512, 512);
    // A 4-byte header announcing a 3000-byte body, behind 10 bytes already parsed.
    let mut frame = vec![0u8; 3004];
    frame[..4].copy_from_slice(&3000u32.to_le_bytes());
    for (i, b) in frame[4..].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    receive(&mut rb, &[9; 10]);
    receive(&mut rb, &frame[..100]);
    rb.consume(10);
    rb.reserve_total(4 + 3000);
    assert_eq!(rb.capacity(), 4096);
    assert_eq!(rb.data(), &frame[..100]);
    // Enough room for the rest of the frame without further growth.
    assert!(rb.spare(1).len() >= 3004 - 100);
    receive(&mut rb, &frame[100..]);
    assert_eq!(rb.data(), &frame[..]);
    assert_eq!(rb.capacity(), 4096);
    // The initial block went back to the pool when the buffer grew.
    let s = pool.stats();
    assert_eq!((s.in_use_blocks, s.retained_blocks), (1, 1));
    // Already satisfied: no change.
    rb.reserve_total(100);
    assert_eq!(rb.capacity(), 4096);
    // Next class for a bigger frame.
    rb.reserve_total(5000);
    assert_eq!(rb.capacity(), 8192);
    assert_eq!(rb.data(), &frame[..]);
}

#[test]
fn reserve_total_compacts_when_block_is_big_enough() {
    let pool = pool();
    let mut rb = ReadBuffer::new(pool.clone(), 1024, 1024);
    receive(&mut rb, &[1; 1000]);
    rb.consume(900);
    rb.reserve_total(1000);
    assert_eq!(rb.capacity(), 1024);
    assert_eq!(rb.data(), &[1; 100][..]);
    assert_eq!(rb.spare(1).len(), 924);
    assert_eq!(pool.stats().allocations, 1);
}

#[test]
fn grows_via_spare_and_keeps_data() {
    let pool = pool();
    let mut rb = ReadBuffer::new(pool.clone(), 512, 512);
    receive(&mut rb, &[5; 500]);
    let spare = rb.spare(100);
    assert_eq!(spare.len(), 1024 - 500);
    assert_eq!(rb.data(), &[5; 500][..]);
}

#[test]
fn oversize_frame_gets_exact_block() {
    let pool = pool();
    let mut rb = ReadBuffer::new(pool.clone(), 512, 512);
    rb.reserve_total(100_000);
    assert_eq!(rb.capacity(), 100_000);
    receive(&mut rb, &[3; 100_000]);
    rb.consume(100_000);
    assert!(rb.shrink_if_idle());
    let s = pool.stats();
    assert_eq!(
        (s.oversize_allocations, s.in_use_blocks, s.frees),
        (1, 0, 1)
    );
}

#[test]
fn shrink_if_idle_returns_large_block_only() {
    let pool = pool();
    let mut rb = ReadBuffer::new(pool.clone(), 512, 512);
    assert!(!rb.shrink_if_idle()); // nothing held
    receive(&mut rb, b"abc");
    rb.reserve_total(2000);
    assert_eq!(rb.capacity(), 2048);
    // A partial frame keeps the large block.
    assert!(!rb.shrink_if_idle());
    assert_eq!(rb.data(), b"abc");
    rb.consume(3);
    assert!(rb.shrink_if_idle());
    assert_eq!(rb.capacity(), 0);
    assert_eq!(pool.stats().in_use_blocks, 0);
    // Back to an initial-size block, reused from the pool.
    assert_eq!(rb.spare(1).len(), 512);
    let s = pool.stats();
    assert_eq!((s.in_use_bytes, s.reuses), (512, 1));
    // An empty initial-size block is kept.
    assert!(!rb.shrink_if_idle());
    assert_eq!(rb.capacity(), 512);
}

#[test]
fn release_drops_block_and_discards_data() {
    let pool = pool();
    let mut rb = ReadBuffer::new(pool.clone(), 512, 512);
    receive(&mut rb, b"partial");
    rb.release();
    assert_eq!((rb.len(), rb.capacity()), (0, 0));
    assert_eq!(pool.stats().in_use_blocks, 0);
    receive(&mut rb, b"again");
    assert_eq!(rb.data(), b"again");
    drop(rb);
    let s = pool.stats();
    assert_eq!((s.in_use_blocks, s.in_use_bytes), (0, 0));
}

/// Random reads, parses and frame reservations against a `Vec<u8>` model.
/// Fills whatever `spare` offers (a socket with plenty to read) and consumes it all.
fn full_read(rb: &mut ReadBuffer) -> usize {
    let spare = rb.spare(1);
    let offered = spare.len();
    spare.fill(7);
    rb.commit(offered);
    rb.note_read(offered, offered);
    rb.consume(offered);
    offered
}

#[test]
fn full_reads_grow_the_read_size_to_the_max() {
    let pool = pool();
    let mut rb = ReadBuffer::new(pool.clone(), 4096, 32 * 1024);
    let sizes: Vec<usize> = (0..6).map(|_| full_read(&mut rb)).collect();
    // Each full read doubles the next block; the swap happens only while empty.
    assert_eq!(sizes, [4096, 8192, 16384, 32768, 32768, 32768]);
    assert_eq!(rb.capacity(), 32768);
    // Blocks were traded through the pool, none is leaked.
    assert_eq!(pool.stats().in_use_blocks, 1);
    rb.release();
    assert_eq!(pool.stats().in_use_blocks, 0);
    // The read size survives an idle release: the next burst starts large.
    assert_eq!(rb.spare(1).len(), 32768);
}

#[test]
fn small_reads_shrink_the_read_size_back() {
    let pool = pool();
    let mut rb = ReadBuffer::new(pool.clone(), 4096, 32 * 1024);
    for _ in 0..4 {
        full_read(&mut rb);
    }
    assert_eq!(rb.read_size(), 32768);
    let small = |rb: &mut ReadBuffer| {
        let offered = rb.spare(1).len();
        rb.commit(100);
        rb.note_read(100, offered);
        rb.consume(100);
    };
    // One small read is not enough (a burst can end in one); two in a row halve it.
    small(&mut rb);
    assert_eq!(rb.read_size(), 32768);
    full_read(&mut rb);
    small(&mut rb);
    assert_eq!(rb.read_size(), 32768);
    small(&mut rb);
    assert_eq!(rb.read_size(), 16384);
    for _ in 0..10 {
        small(&mut rb);
    }
    assert_eq!(rb.read_size(), 4096, "never below the initial size");
    // The large block goes back once the buffer is empty.
    assert!(rb.shrink_if_idle());
    assert_eq!(rb.spare(1).len(), 4096);
    // A read of more than a quarter but not all of the room changes nothing.
    rb.note_read(2048, 4096);
    assert_eq!(rb.read_size(), 4096);
}

#[test]
fn read_size_moves_only_a_small_partial_frame() {
    let pool = pool();
    let mut rb = ReadBuffer::new(pool.clone(), 4096, 32 * 1024);
    full_read(&mut rb);
    // A full read that leaves 3 bytes of a partial frame: the next spare trades up to the
    // new read size and carries those bytes along.
    let spare = rb.spare(1);
    let offered = spare.len();
    spare[offered - 3..].copy_from_slice(b"abc");
    rb.commit(offered);
    rb.note_read(offered, offered);
    rb.consume(offered - 3);
    assert_eq!(rb.capacity(), 8192);
    assert_eq!(rb.spare(1).len(), 16384 - 3);
    assert_eq!(rb.data(), b"abc");
    // More live bytes than an initial block: no copy, the block stays as it is.
    let spare = rb.spare(1);
    let n = spare.len();
    rb.commit(n);
    rb.note_read(n, n);
    assert_eq!(rb.read_size(), 32768);
    rb.consume(16384 - 5000);
    assert_eq!(rb.len(), 5000);
    rb.spare(1);
    assert_eq!(rb.capacity(), 16384);
    rb.consume(5000);
    assert_eq!(rb.spare(1).len(), 32768);
    assert_eq!(pool.stats().in_use_blocks, 1);
}

#[test]
fn release_idle_keeps_memory_in_proportion_to_buffered_bytes() {
    let pool = pool();
    let mut rb = ReadBuffer::new(pool.clone(), 4096, 64 * 1024);
    for _ in 0..5 {
        full_read(&mut rb);
    }
    assert_eq!(rb.read_size(), 64 * 1024);
    // Empty: the block goes back to the pool.
    rb.spare(1);
    rb.release_idle();
    assert_eq!(rb.capacity(), 0);
    assert_eq!(pool.stats().in_use_blocks, 0);
    // A 64 KiB read ending in 10 bytes of a partial frame: waiting, the session keeps an
    // initial-size block holding those bytes.
    let spare = rb.spare(1);
    let n = spare.len();
    assert_eq!(n, 64 * 1024);
    spare[n - 10..].copy_from_slice(b"0123456789");
    rb.commit(n);
    rb.consume(n - 10);
    rb.release_idle();
    assert_eq!(rb.capacity(), 4096);
    assert_eq!(rb.data(), b"0123456789");
    assert_eq!(pool.stats().in_use_bytes, 4096);
    // The next read is large again and keeps the bytes in front.
    assert_eq!(rb.spare(1).len(), 64 * 1024 - 10);
    assert_eq!(rb.data(), b"0123456789");
    // A large frame in progress (grown for it) is not shrunk while it waits.
    rb.reserve_total(200_000);
    let cap = rb.capacity();
    assert!(cap >= 200_000);
    let spare = rb.spare(1);
    let n = spare.len().min(150_000);
    rb.commit(n);
    rb.release_idle();
    assert_eq!(rb.capacity(), cap);
    assert_eq!(rb.len(), 10 + n);
    assert_eq!(&rb.data()[..10], b"0123456789");
}

#[test]
fn randomized_against_model() {
    let pool = BufferPool::new(PoolConfig {
        min_class: 512,
        max_class: 8192,
        ..PoolConfig::default()
    });
    // Adaptive: the read size moves between 512 B and 8 KiB as reads fill or do not.
    let mut rb = ReadBuffer::new(pool.clone(), 512, 8192);
    let mut model: Vec<u8> = Vec::new();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut byte = 0u8;
    for _ in 0..20_000 {
        match next() % 6 {
            0..=2 => {
                let want = (next() % 700) as usize;
                let spare = rb.spare(want);
                assert!(spare.len() >= want.max(1));
                let n = (next() as usize % (spare.len() + 1)).min(want.max(1) * 2);
                for b in &mut spare[..n] {
                    byte = byte.wrapping_add(1);
                    *b = byte;
                }
                model.extend_from_slice(&spare[..n]);
                let offered = spare.len();
                rb.commit(n);
                rb.note_read(n, offered);
                assert!((512..=8192).contains(&rb.read_size()));
            }
            3 | 4 => {
                let n = (next() as usize) % (model.len() + 1);
                rb.consume(n);
                model.drain(..n);
            }
            _ => {
                let total = (next() % 10_000) as usize;
                rb.reserve_total(total);
                assert!(rb.capacity() >= total);
                if total > model.len() {
                    // The frame's remaining bytes fit without further growth.
                    let cap = rb.capacity();
                    assert!(rb.spare(total - model.len()).len() >= total - model.len());
                    assert_eq!(rb.capacity(), cap);
                }
            }
        }
        assert_eq!(rb.data(), &model[..]);
        if next() % 50 == 0 && rb.shrink_if_idle() {
            assert!(model.is_empty());
        }
        if next() % 40 == 0 {
            let before = rb.capacity();
            rb.release_idle();
            match model.len() {
                0 => assert_eq!(rb.capacity(), 0),
                1..=512 => assert_eq!(rb.capacity(), 512),
                _ => assert_eq!(rb.capacity(), before),
            }
        }
    }
    drop(rb);
    assert_eq!(pool.stats().in_use_blocks, 0);
}
