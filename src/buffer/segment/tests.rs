//! Unit tests of `SegmentQueue`: messages across segment boundaries, length-prefix patching,
//! truncation, vectored reads and partial advances, no allocation in steady state, and a random
//! run against a `Vec<u8>` model.

use super::*;
use crate::buffer::pool::PoolConfig;
use std::io::Write;

fn pool() -> BufferPool {
    BufferPool::new(PoolConfig {
        min_class: 512,
        max_class: 64 * 1024,
        ..PoolConfig::default()
    })
}

/// All queued bytes, read out through `io_slices` with `max_slices` slots at a time.
fn contents(q: &SegmentQueue, max_slices: usize) -> Vec<u8> {
    let mut slots = vec![IoSlice::new(&[]); max_slices];
    let n = q.io_slices(&mut slots);
    assert!(n <= max_slices);
    let out: Vec<u8> = slots[..n].iter().flat_map(|s| s.iter().copied()).collect();
    if n < max_slices {
        assert_eq!(out.len(), q.len());
    }
    out
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[track_caller]
fn check_invariants(q: &SegmentQueue) {
    assert_eq!(q.segs.is_empty(), q.len == 0);
    if q.segs.is_empty() {
        assert_eq!((q.head, q.tail), (0, 0));
    } else {
        assert!(q.head < q.seg_size);
        assert!(q.tail > 0 && q.tail <= q.seg_size);
        let n = q.segs.len();
        let len = if n == 1 {
            q.tail - q.head
        } else {
            (q.seg_size - q.head) + (n - 2) * q.seg_size + q.tail
        };
        assert_eq!(len, q.len);
    }
    assert!(q.chunks().all(|c| !c.is_empty()));
    assert_eq!(q.chunks().map(<[u8]>::len).sum::<usize>(), q.len);
}

#[test]
fn new_does_not_allocate_and_rounds_seg_size() {
    let pool = pool();
    let q = SegmentQueue::new(pool.clone(), 1000);
    assert_eq!(q.segment_size(), 1024);
    assert!(q.is_empty());
    assert_eq!((q.len(), q.segments()), (0, 0));
    assert_eq!(contents(&q, 4), b"");
    assert_eq!(pool.stats(), Default::default());
}

#[test]
fn push_within_one_segment() {
    let mut q = SegmentQueue::new(pool(), 512);
    q.push(b"hello ");
    q.write_all(b"world").unwrap();
    assert_eq!(q.write(b"!").unwrap(), 1);
    q.flush().unwrap();
    q.push(b"");
    assert_eq!(q.len(), 12);
    assert_eq!(q.segments(), 1);
    assert_eq!(contents(&q, 4), b"hello world!");
    check_invariants(&q);
}

#[test]
fn message_spanning_two_segments() {
    let mut q = SegmentQueue::new(pool(), 512);
    q.push(&[1; 500]);
    let msg = pattern(100, 7);
    q.push(&msg);
    assert_eq!(q.segments(), 2);
    let mut expect = vec![1; 500];
    expect.extend_from_slice(&msg);
    assert_eq!(contents(&q, 8), expect);
    let chunks: Vec<usize> = q.chunks().map(<[u8]>::len).collect();
    assert_eq!(chunks, [512, 88]);
    check_invariants(&q);
}

#[test]
fn message_spanning_three_segments() {
    let mut q = SegmentQueue::new(pool(), 512);
    q.push(&[0xAA; 300]);
    let msg = pattern(900, 3);
    q.push(&msg);
    assert_eq!(q.segments(), 3);
    let chunks: Vec<usize> = q.chunks().map(<[u8]>::len).collect();
    assert_eq!(chunks, [512, 512, 176]);
    let mut expect = vec![0xAA; 300];
    expect.extend_from_slice(&msg);
    assert_eq!(contents(&q, 8), expect);
    // Exactly filling a segment does not take the next one early.
    let mut q = SegmentQueue::new(pool(), 512);
    q.push(&[1; 1024]);
    assert_eq!(q.segments(), 2);
    check_invariants(&q);
    q.push(&[2]);
    assert_eq!(q.segments(), 3);
    check_invariants(&q);
}

#[test]
fn length_prefix_patched_across_segment_boundary() {
    let pool = pool();
    // Dirty a block so the reserved prefix is taken from stale memory.
    let mut dirty = pool.take(512);
    dirty.fill(0xFF);
    drop(dirty);
    let mut q = SegmentQueue::new(pool, 512);
    q.push(&[9; 510]);
    let at = q.reserve(4);
    assert_eq!(q.segments(), 2);
    assert_eq!(
        &contents(&q, 4)[510..],
        [0, 0, 0, 0],
        "reserve writes zeros"
    );
    let body = pattern(700, 1);
    q.push(&body);
    assert_eq!(q.len_since(at), 704);
    q.patch(at, &700u32.to_le_bytes());
    let mut expect = vec![9; 510];
    expect.extend_from_slice(&700u32.to_le_bytes());
    expect.extend_from_slice(&body);
    assert_eq!(contents(&q, 8), expect);
    check_invariants(&q);
}

#[test]
fn patch_spanning_three_segments_and_partial_front() {
    let mut q = SegmentQueue::new(pool(), 512);
    q.push(&[0; 100]);
    let at = q.reserve(1000);
    q.advance(50);
    // Marks not yet reached by `advance` stay usable.
    let data = pattern(1000, 42);
    q.patch(at, &data);
    let mut expect = vec![0; 50];
    expect.extend_from_slice(&data);
    assert_eq!(contents(&q, 8), expect);
}

#[test]
fn borsh_message_with_length_prefix() {
    use borsh::BorshSerialize;
    let msg: (u64, String, Vec<u32>) = (7, "x".repeat(600), (0..300).collect());
    let mut q = SegmentQueue::new(pool(), 512);
    q.push(b"earlier frame");
    let at = q.reserve(4);
    msg.serialize(&mut q).unwrap();
    let body = q.len_since(at) - 4;
    q.patch(at, &(body as u32).to_le_bytes());
    let encoded = borsh::to_vec(&msg).unwrap();
    let mut expect = b"earlier frame".to_vec();
    expect.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
    expect.extend_from_slice(&encoded);
    assert_eq!(contents(&q, 8), expect);
    assert!(q.segments() >= 4);
}

#[test]
fn truncate_rolls_back_across_segments() {
    let pool = pool();
    let mut q = SegmentQueue::new(pool.clone(), 512);
    q.push(&[1; 400]);
    let m = q.mark();
    let at = q.reserve(4);
    assert_eq!(at, m);
    q.push(&[2; 1500]);
    assert_eq!(q.segments(), 4);
    q.truncate(m);
    assert_eq!(q.len(), 400);
    assert_eq!(q.segments(), 1);
    assert_eq!(pool.stats().in_use_blocks, 1);
    assert_eq!(contents(&q, 4), vec![1; 400]);
    check_invariants(&q);
    // Writing continues exactly where the rollback left off.
    q.push(&[3; 200]);
    let mut expect = vec![1; 400];
    expect.extend_from_slice(&[3; 200]);
    assert_eq!(contents(&q, 4), expect);
    assert_eq!(q.len_since(m), 200);
    check_invariants(&q);
    // Truncating exactly at a segment boundary keeps the full segment, drops the next.
    let mut q = SegmentQueue::new(pool.clone(), 512);
    q.push(&[4; 512]);
    let m = q.mark();
    q.push(&[5; 10]);
    assert_eq!(q.segments(), 2);
    q.truncate(m);
    assert_eq!(q.segments(), 1);
    check_invariants(&q);
    q.push(&[6; 1]);
    assert_eq!(q.segments(), 2);
    check_invariants(&q);
    // Truncating at the end is a no-op.
    let len = q.len();
    q.truncate(q.mark());
    assert_eq!(q.len(), len);
}

#[test]
fn truncate_to_empty_returns_all_segments() {
    let pool = pool();
    let mut q = SegmentQueue::new(pool.clone(), 512);
    q.push(&[1; 100]);
    q.advance(100);
    let m = q.mark();
    q.push(&[2; 2000]);
    q.truncate(m);
    assert!(q.is_empty());
    assert_eq!(q.segments(), 0);
    assert_eq!(pool.stats().in_use_blocks, 0);
    check_invariants(&q);
    q.push(b"ok");
    assert_eq!(contents(&q, 2), b"ok");
}

#[test]
fn io_slices_in_order_and_limited() {
    let mut q = SegmentQueue::new(pool(), 512);
    let data = pattern(2000, 5);
    q.push(&data);
    q.advance(100);
    let mut slots = [IoSlice::new(&[]); 2];
    assert_eq!(q.io_slices(&mut slots), 2);
    assert_eq!(slots[0].len(), 412);
    assert_eq!(&slots[0][..], &data[100..512]);
    assert_eq!(&slots[1][..], &data[512..1024]);
    let mut slots = [IoSlice::new(&[]); 8];
    assert_eq!(q.io_slices(&mut slots), 4);
    let lens: Vec<usize> = slots[..4].iter().map(|s| s.len()).collect();
    assert_eq!(lens, [412, 512, 512, 464]);
    assert_eq!(contents(&q, 8), &data[100..]);
    assert_eq!(q.io_slices(&mut []), 0);
}

#[test]
fn partial_advances_reproduce_stream() {
    let pool = pool();
    let mut q = SegmentQueue::new(pool.clone(), 512);
    let data = pattern(3000, 11);
    q.push(&data);
    let mut sent = Vec::new();
    for step in [1, 3, 511, 7, 513, 1024, 0, 333] {
        let chunk = contents(&q, 2);
        let n = step.min(chunk.len());
        sent.extend_from_slice(&chunk[..n]);
        q.advance(n);
        check_invariants(&q);
        assert_eq!(q.len(), 3000 - sent.len());
    }
    sent.extend_from_slice(&contents(&q, 16));
    assert_eq!(sent, data);
    q.advance(q.len());
    assert_eq!(q.segments(), 0);
    assert_eq!(pool.stats().in_use_blocks, 0);
}

#[test]
fn clear_and_drop_return_segments() {
    let pool = pool();
    let mut q = SegmentQueue::new(pool.clone(), 512);
    q.push(&[1; 5000]);
    assert_eq!(pool.stats().in_use_blocks, 10);
    q.clear();
    assert_eq!(pool.stats().in_use_blocks, 0);
    check_invariants(&q);
    q.push(&[1; 5000]);
    drop(q);
    let s = pool.stats();
    assert_eq!((s.in_use_blocks, s.in_use_bytes), (0, 0));
}

#[test]
fn steady_state_push_advance_does_not_allocate() {
    let pool = BufferPool::default();
    let mut q = SegmentQueue::new(pool.clone(), 16 * 1024);
    // Warm-up: take/return cycles fill the pool's 16 KiB class.
    for _ in 0..4 {
        q.push(&[7; 40_000]);
        q.advance(q.len());
    }
    let before = pool.stats();
    let payload = pattern(3000, 1);
    for round in 0..1000 {
        let at = q.reserve(4);
        q.push(&payload[..round % payload.len()]);
        let n = q.len_since(at) as u32;
        q.patch(at, &n.to_le_bytes());
        if round % 3 == 0 {
            while !q.is_empty() {
                let mut slots = [IoSlice::new(&[]); 4];
                let k = q.io_slices(&mut slots);
                let written: usize = slots[..k].iter().map(|s| s.len()).sum::<usize>() / 2 + 1;
                q.advance(written.min(q.len()));
            }
        }
    }
    let after = pool.stats();
    assert_eq!(after.allocations, before.allocations);
    assert_eq!(after.oversize_allocations, before.oversize_allocations);
    assert_eq!(after.frees, before.frees);
    assert!(after.reuses > before.reuses);
}

/// Random pushes, reserves + patches, truncates and partial advances with small segments,
/// compared against a `Vec<u8>` model of the unsent stream.
#[test]
fn randomized_against_vec_model() {
    let pool = pool();
    for seed in 1..=8u64 {
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut q = SegmentQueue::new(pool.clone(), 512);
        // Model: the unsent bytes, plus the stream offset of its first byte.
        let mut model: Vec<u8> = Vec::new();
        let mut model_front: u64 = 0;
        let mut sent_model: Vec<u8> = Vec::new();
        let mut sent_queue: Vec<u8> = Vec::new();
        // Marks taken since the last advance (still valid), with their model positions.
        let mut marks: Vec<Mark> = Vec::new();
        let mut byte = 0u8;
        let mut gen_bytes = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    byte = byte.wrapping_add(1);
                    byte
                })
                .collect()
        };
        for _ in 0..3000 {
            match next() % 10 {
                0..=2 => {
                    let n = match next() % 4 {
                        0 => (next() % 8) as usize,
                        1 | 2 => (next() % 600) as usize,
                        _ => (next() % 2000) as usize,
                    };
                    let bytes = gen_bytes(n);
                    if next() % 2 == 0 {
                        q.push(&bytes);
                    } else {
                        q.write_all(&bytes).unwrap();
                    }
                    model.extend_from_slice(&bytes);
                }
                3 | 4 => {
                    let n = (next() % 9) as usize;
                    let at = q.reserve(n);
                    assert_eq!(at.0, model_front + model.len() as u64);
                    model.resize(model.len() + n, 0);
                    marks.push(at);
                    // Sometimes write a body and patch the prefix right away.
                    if next() % 2 == 0 {
                        let body = gen_bytes((next() % 1200) as usize);
                        q.push(&body);
                        model.extend_from_slice(&body);
                        assert_eq!(q.len_since(at), n + body.len());
                        let patch = gen_bytes(n);
                        q.patch(at, &patch);
                        let off = (at.0 - model_front) as usize;
                        model[off..off + n].copy_from_slice(&patch);
                    }
                }
                5 => {
                    // Patch a random still-valid range.
                    if !model.is_empty() {
                        let off = (next() as usize) % model.len();
                        let n = (next() as usize) % (model.len() - off).min(1100) + 1;
                        let patch = gen_bytes(n);
                        q.patch(Mark(model_front + off as u64), &patch);
                        model[off..off + n].copy_from_slice(&patch);
                    }
                }
                6 => {
                    if let Some(&m) = marks.get((next() as usize) % (marks.len() + 1)) {
                        q.truncate(m);
                        model.truncate((m.0 - model_front) as usize);
                        marks.retain(|&k| k <= m);
                    }
                }
                _ => {
                    // A partial vectored write of a random amount.
                    let mut slots = [IoSlice::new(&[]); 3];
                    let k = q.io_slices(&mut slots);
                    let avail: usize = slots[..k].iter().map(|s| s.len()).sum();
                    let n = (next() as usize) % (avail + 1);
                    let mut left = n;
                    for s in &slots[..k] {
                        let take = left.min(s.len());
                        sent_queue.extend_from_slice(&s[..take]);
                        left -= take;
                    }
                    q.advance(n);
                    sent_model.extend(model.drain(..n));
                    model_front += n as u64;
                    marks.clear();
                }
            }
            check_invariants(&q);
            assert_eq!(q.len(), model.len());
            assert_eq!(q.mark().0, model_front + model.len() as u64);
            assert_eq!(sent_queue, sent_model);
            if next() % 16 == 0 {
                assert!(contents(&q, 1 + (next() % 6) as usize).len() <= q.len());
                assert_eq!(contents(&q, 1024), model);
            }
        }
        assert_eq!(contents(&q, 1024), model);
        drop(q);
    }
    let s = pool.stats();
    assert_eq!((s.in_use_blocks, s.in_use_bytes), (0, 0));
}
