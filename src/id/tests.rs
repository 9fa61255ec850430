//! Unit tests of `SessionId` and `IdTable`: the id layout, capacity, stale-id rejection, and
//! long random churn checked against a model.

use super::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

#[test]
fn from_raw_rejects_zero_and_empty_slot_field() {
    assert_eq!(SessionId::from_raw(0), None);
    assert_eq!(SessionId::from_raw(1 << SLOT_BITS), None);
    assert_eq!(SessionId::from_raw(!SLOT_MASK), None);
    let id = SessionId::from_raw(1).expect("slot field 1 is valid");
    assert_eq!((id.slot(), id.generation()), (0, 0));
    let id = SessionId::from_raw(u32::MAX).expect("all ones is valid");
    assert_eq!(
        (id.slot(), id.generation()),
        (MAX_SLOTS - 1, GENERATION_MASK)
    );
}

#[test]
fn slot_and_generation_round_trip() {
    assert_eq!(MAX_SLOTS, 131_071);
    assert_eq!(GENERATIONS, 32_768);
    for slot in [0, 1, 2, 12, 4096, MAX_SLOTS - 2, MAX_SLOTS - 1] {
        for generation in [0, 1, 4031, GENERATION_MASK - 1, GENERATION_MASK] {
            let id = SessionId::new(slot, generation);
            assert_eq!(id.slot(), slot);
            assert_eq!(id.generation(), generation);
            assert_eq!(id.get(), (generation << SLOT_BITS) | (slot as u32 + 1));
            assert_eq!(SessionId::from_raw(id.get()), Some(id));
        }
    }
    // Generations are masked to 15 bits.
    assert_eq!(SessionId::new(3, GENERATIONS + 5).generation(), 5);
    // Every raw value with a nonzero slot field round-trips.
    let mut r = rng(1);
    for _ in 0..10_000 {
        let raw = r.next_u32();
        match SessionId::from_raw(raw) {
            Some(id) => {
                assert_eq!(id.get(), raw);
                assert!(id.slot() < MAX_SLOTS);
                assert!(id.generation() < GENERATIONS);
                assert_eq!(SessionId::new(id.slot(), id.generation()), id);
            }
            None => assert_eq!(raw & SLOT_MASK, 0),
        }
    }
}

#[test]
fn display_and_debug_format() {
    let id = SessionId::new(12, 4031);
    assert_eq!(id.to_string(), "#12.4031");
    assert_eq!(format!("{id:?}"), "#12.4031");
    assert_eq!(format!("{:?}", Some(SessionId::new(0, 0))), "Some(#0.0)");
    assert_eq!(std::mem::size_of::<Option<SessionId>>(), 4);
}

#[test]
fn table_full_at_capacity() {
    let mut r = rng(2);
    let mut t = IdTable::new(3);
    assert_eq!(t.capacity(), 3);
    let ids: Vec<_> = (0..3)
        .map(|i| t.insert_with(&mut r, |_| i).expect("below capacity"))
        .collect();
    assert_eq!(t.len(), 3);
    assert_eq!(t.insert_with(&mut r, |_| 99), Err(TableFull));
    assert_eq!(t.len(), 3);
    assert_eq!(t.slots_created(), 3);
    assert_eq!(t.remove(ids[1]), Some(1));
    let id = t.insert_with(&mut r, |_| 7).expect("a slot was freed");
    assert_eq!(id.slot(), ids[1].slot());
    assert_eq!(id.generation(), (ids[1].generation() + 1) & GENERATION_MASK);
    assert_eq!(t.insert_with(&mut r, |_| 99), Err(TableFull));
    assert_eq!(t.slots_created(), 3);

    let mut zero = IdTable::new(0);
    assert_eq!(zero.insert_with(&mut r, |_| ()), Err(TableFull));
    assert!(zero.is_empty());
    assert_eq!(IdTable::<()>::new(usize::MAX).capacity(), MAX_SLOTS);
}

#[test]
fn fills_all_max_slots() {
    let mut r = rng(3);
    let mut t = IdTable::new(usize::MAX);
    let mut last = None;
    for i in 0..MAX_SLOTS {
        last = Some(
            t.insert_with(&mut r, |_| i as u32)
                .expect("below MAX_SLOTS"),
        );
    }
    let last = last.expect("MAX_SLOTS > 0");
    assert_eq!(last.slot(), MAX_SLOTS - 1);
    assert_eq!(last.get() & SLOT_MASK, SLOT_MASK);
    assert_eq!(t.get(last), Some(&(MAX_SLOTS as u32 - 1)));
    assert_eq!(t.insert_with(&mut r, |_| 0), Err(TableFull));
    assert_eq!(t.len(), MAX_SLOTS);
    assert_eq!(t.slots_created(), MAX_SLOTS);
}

#[test]
fn stale_id_rejected_without_disturbing_live_entry() {
    let mut r = rng(4);
    let mut t = IdTable::new(1);
    let old = t.insert_with(&mut r, |id| (id, "old")).expect("empty");
    assert_eq!(t.get(old), Some(&(old, "old")));
    assert_eq!(t.remove(old), Some((old, "old")));
    assert_eq!(t.get(old), None);
    assert_eq!(t.remove(old), None);

    let new = t.insert_with(&mut r, |id| (id, "new")).expect("slot freed");
    assert_eq!(new.slot(), old.slot());
    assert_ne!(new, old);
    assert_eq!(t.get(old), None);
    assert_eq!(t.get_mut(old), None);
    assert_eq!(t.remove(old), None);
    assert_eq!(t.len(), 1);
    assert_eq!(t.get(new), Some(&(new, "new")));
    let ids: Vec<_> = t.iter().map(|(id, v)| (id, v.1)).collect();
    assert_eq!(ids, vec![(new, "new")]);

    // Ids from slots never created, and future generations, are rejected too.
    assert_eq!(t.get(SessionId::new(1, new.generation())), None);
    assert_eq!(t.remove(SessionId::new(MAX_SLOTS - 1, 0)), None);
    let future = SessionId::new(new.slot(), new.generation() + 1);
    assert_eq!(t.get(future), None);
    assert_eq!(t.remove(future), None);
    assert_eq!(t.get(new), Some(&(new, "new")));
}

#[test]
fn arbitrary_raw_ids_never_panic() {
    let mut r = rng(5);
    let mut t = IdTable::new(64);
    let mut live = BTreeMap::new();
    for i in 0..40u32 {
        let id = t.insert_with(&mut r, |_| i).expect("below capacity");
        live.insert(id.get(), i);
    }
    let edges = [
        0,
        1,
        SLOT_MASK,
        SLOT_MASK + 1,
        1 << SLOT_BITS,
        u32::MAX,
        u32::MAX - 1,
    ];
    let randoms: Vec<u32> = (0..50_000).map(|_| r.next_u32()).collect();
    let live_raws: Vec<u32> = live.keys().copied().collect();
    for &raw in edges.iter().chain(&randoms).chain(&live_raws) {
        let Some(id) = SessionId::from_raw(raw) else {
            assert_eq!(raw & SLOT_MASK, 0);
            continue;
        };
        assert_eq!(t.get(id), live.get(&raw));
        assert_eq!(t.remove(id), live.remove(&raw));
        assert_eq!(t.len(), live.len());
    }
    assert!(t.is_empty());
}

#[test]
fn panicking_constructor_leaves_table_unchanged() {
    let mut r = rng(6);
    let mut t = IdTable::new(2);
    let a = t.insert_with(&mut r, |_| 1).expect("empty");
    let reused = |t: &mut IdTable<i32>, r: &mut ChaCha20Rng| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = t.insert_with(r, |_| panic!("constructor failed"));
        }))
        .is_err()
    };
    // New-slot path.
    assert!(reused(&mut t, &mut r));
    assert_eq!((t.len(), t.slots_created()), (1, 1));
    // Free-list path.
    assert_eq!(t.remove(a), Some(1));
    assert!(reused(&mut t, &mut r));
    assert_eq!((t.len(), t.slots_created()), (0, 1));
    let b = t.insert_with(&mut r, |_| 2).expect("slot still free");
    assert_eq!(b.slot(), a.slot());
    assert_eq!(b.generation(), (a.generation() + 1) & GENERATION_MASK);
}

/// Runs `ops` random allocate/release steps against a table of `capacity`, checking it
/// against a model. Returns (most issues of any one slot, number of raw ids re-issued).
fn churn(seed: u64, capacity: usize, ops: usize) -> (u64, u64) {
    const RING: usize = 256;
    let mut r = rng(seed);
    let mut t: IdTable<u64> = IdTable::new(capacity);

    // Model.
    let mut live: Vec<(SessionId, u64)> = Vec::new();
    let mut live_raw: BTreeSet<u32> = BTreeSet::new();
    let mut issues: Vec<u64> = Vec::new(); // per slot: times issued
    let mut last_generation: Vec<u32> = Vec::new(); // per slot: generation of last issue
    let mut free: VecDeque<usize> = VecDeque::new(); // expected FIFO free list
    // raw id -> issue count of its slot when it was (last) issued
    let mut issued_at: BTreeMap<u32, u64> = BTreeMap::new();
    let mut released: VecDeque<SessionId> = VecDeque::with_capacity(RING);
    let mut reissued = 0u64;
    let mut high_water = 0usize;
    let mut next_value = 0u64;

    for step in 0..ops {
        // One 32-bit draw per step, cut into 8-bit fields (ChaCha is slow in debug builds;
        // the modulo bias of an 8-bit field is irrelevant here).
        let bits = r.next_u32();
        let field = |k: u32| ((bits >> (8 * k)) & 0xff) as usize;
        let insert = if live.is_empty() {
            true
        } else if live.len() == capacity {
            field(0) % 16 == 0 // occasionally probe TableFull
        } else {
            field(0) % 2 == 0
        };

        if insert {
            let value = next_value;
            next_value += 1;
            let mut seen = None;
            let result = t.insert_with(&mut r, |id| {
                seen = Some(id);
                value
            });
            if live.len() == capacity {
                assert_eq!(result, Err(TableFull), "seed {seed} step {step}");
                assert_eq!(seen, None);
            } else {
                let id = result.expect("below capacity");
                assert_eq!(seen, Some(id), "f receives the id it is stored under");
                let slot = id.slot();
                // FIFO reuse, new slots only when the free list is empty.
                match free.pop_front() {
                    Some(expected) => {
                        assert_eq!(slot, expected, "FIFO reuse, seed {seed} step {step}");
                        assert_eq!(
                            id.generation(),
                            (last_generation[slot] + 1) & GENERATION_MASK
                        );
                        last_generation[slot] = id.generation();
                    }
                    None => {
                        assert_eq!(slot, issues.len(), "new slots are appended");
                        issues.push(0);
                        last_generation.push(id.generation());
                    }
                }
                issues[slot] += 1;
                // (a) live ids are unique.
                assert!(live_raw.insert(id.get()), "duplicate live id {id}");
                // (b) the horizon.
                if let Some(prev) = issued_at.insert(id.get(), issues[slot]) {
                    reissued += 1;
                    assert!(
                        issues[slot] - prev >= u64::from(GENERATIONS),
                        "{id} re-issued after only {} issues of its slot",
                        issues[slot] - prev
                    );
                }
                live.push((id, value));
                high_water = high_water.max(live.len());
            }
        } else {
            let i = field(1) % live.len();
            let (id, value) = live.swap_remove(i);
            assert_eq!(t.remove(id), Some(value));
            assert!(live_raw.remove(&id.get()));
            free.push_back(id.slot());
            if released.len() == RING {
                released.pop_front();
            }
            released.push_back(id);
        }

        assert_eq!(t.len(), live.len());
        assert_eq!(t.is_empty(), live.is_empty());
        assert_eq!(
            t.slots_created(),
            high_water,
            "slots only created when needed"
        );
        assert!(t.slots_created() <= capacity);

        // (c) stale ids never resolve, and removing them changes nothing.
        if !released.is_empty() {
            let newest = released.len() - 1;
            for k in [newest, field(2) % released.len()] {
                let stale = released[k];
                assert!(
                    !live_raw.contains(&stale.get()),
                    "{stale} recurred too soon"
                );
                assert_eq!(t.get(stale), None, "stale {stale} resolved");
                assert_eq!(t.remove(stale), None, "stale {stale} removed");
                assert_eq!(t.len(), live.len());
            }
        }

        // (d) live ids resolve to their own values: one at random every step, all of them
        // (and iter()) periodically.
        if !live.is_empty() {
            let (id, value) = live[field(3) % live.len()];
            assert_eq!(t.get(id), Some(&value));
        }
        if step % 4096 == 0 || step + 1 == ops {
            for &(id, value) in &live {
                assert_eq!(t.get(id), Some(&value));
            }
            let mut expected: Vec<(SessionId, u64)> = live.clone();
            expected.sort_by_key(|(id, _)| id.slot());
            let got: Vec<(SessionId, u64)> = t.iter().map(|(id, &v)| (id, v)).collect();
            assert_eq!(got, expected, "iter() is in slot order");
        }
    }
    (issues.iter().copied().max().unwrap_or(0), reissued)
}

/// Runs `churn` for two seeds at `capacity`, 200,000 steps each; returns the most issues
/// of any one slot and asserts every check inside `churn`.
fn churn_two_seeds(capacity: usize) -> (u64, u64) {
    let (mut max_reuse, mut reissued) = (0, 0);
    for seed in [capacity as u64, 1000 + capacity as u64] {
        let (reuse, again) = churn(seed, capacity, 200_000);
        max_reuse = max_reuse.max(reuse);
        reissued += again;
    }
    (max_reuse, reissued)
}

#[test]
fn churn_capacity_1_wraps_generations() {
    let (max_reuse, reissued) = churn_two_seeds(1);
    // Generations must actually wrap for the horizon check to mean anything.
    assert!(
        max_reuse > 2 * u64::from(GENERATIONS),
        "max reuse {max_reuse}"
    );
    assert!(reissued > 0);
}

#[test]
fn churn_capacity_2_wraps_generations() {
    let (max_reuse, reissued) = churn_two_seeds(2);
    assert!(max_reuse > u64::from(GENERATIONS), "max reuse {max_reuse}");
    assert!(reissued > 0);
}

#[test]
fn churn_capacity_7() {
    let (max_reuse, _) = churn_two_seeds(7);
    assert!(max_reuse > 10_000, "max reuse {max_reuse}");
}

#[test]
fn churn_capacity_64() {
    let (max_reuse, _) = churn_two_seeds(64);
    assert!(max_reuse > 1_000, "max reuse {max_reuse}");
}

#[test]
fn narrow_generations_recur_after_exactly_their_count() {
    let mut r = rng(9);
    let mut t = IdTable::with_generation_bits(1, 3);
    let first = t.insert_with(&mut r, |_| ()).expect("empty table");
    assert!(first.generation() < 8);
    t.remove(first);
    let mut last = first;
    for n in 1..=8u32 {
        let id = t.insert_with(&mut r, |_| ()).expect("one free slot");
        assert_eq!(id.slot(), first.slot());
        assert_eq!(id.generation(), (last.generation() + 1) & 7);
        assert_eq!(id == first, n == 8, "issue {n} after the first");
        assert_eq!(t.get(last), None);
        t.remove(id);
        last = id;
    }
    // Clamped to at least one bit and at most fifteen.
    assert_eq!(IdTable::<()>::with_generation_bits(1, 0).generation_mask, 1);
    assert_eq!(
        IdTable::<()>::with_generation_bits(1, 40).generation_mask,
        GENERATION_MASK
    );
}
