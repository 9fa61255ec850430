//! Unit tests of `SessionId` and `IdTable`: the id form, capacity, stale-id rejection, the
//! horizon under sequential and random open/close patterns (checked against a model), the
//! wrap of the counter, and memory proportional to the peak of live sessions.

use super::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use std::collections::BTreeMap;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Millions of operations in release builds, a tenth of that in debug builds.
fn ops(release: usize) -> usize {
    if cfg!(debug_assertions) {
        release / 10
    } else {
        release
    }
}

#[test]
fn from_raw_rejects_only_zero() {
    assert_eq!(SessionId::from_raw(0), None);
    for raw in [1, 2, 1 << 17, 0xdead_beef, u32::MAX] {
        let id = SessionId::from_raw(raw).expect("nonzero");
        assert_eq!(id.get(), raw);
    }
    assert_eq!(MAX_SESSIONS, 131_071);
}

#[test]
fn display_and_debug_format() {
    let id = SessionId::from_raw(3_735_928_559).expect("nonzero");
    assert_eq!(id.to_string(), "#3735928559");
    assert_eq!(format!("{id:?}"), "#3735928559");
    let one = SessionId::from_raw(1);
    assert_eq!(format!("{one:?}"), "Some(#1)");
    assert_eq!(std::mem::size_of::<Option<SessionId>>(), 4);
}

#[test]
fn table_full_at_capacity() {
    let mut t = IdTable::new(3, 100);
    assert_eq!(t.capacity(), 3);
    let ids: Vec<_> = (0..3)
        .map(|i| t.insert_with(|_| i).expect("below capacity"))
        .collect();
    assert_eq!(
        ids.iter().map(|id| id.get()).collect::<Vec<_>>(),
        [100, 101, 102]
    );
    assert_eq!(t.len(), 3);
    assert_eq!(t.insert_with(|_| 99), Err(TableFull));
    assert_eq!(t.len(), 3);
    assert_eq!(t.remove(ids[1]), Some(1));
    let id = t.insert_with(|_| 7).expect("one was removed");
    assert_eq!(id.get(), 103, "the counter moves on, it does not reuse 101");
    assert_eq!(t.insert_with(|_| 99), Err(TableFull));
    assert_eq!(t.peak(), 3);

    let mut zero = IdTable::new(0, 1);
    assert_eq!(zero.insert_with(|_| ()), Err(TableFull));
    assert!(zero.is_empty());
    assert_eq!(IdTable::<()>::new(usize::MAX, 1).capacity(), MAX_SESSIONS);
    // A narrowed space holds at most a quarter of its ids.
    assert_eq!(IdTable::<()>::with_id_bits(usize::MAX, 4, 1).capacity(), 4);
    assert_eq!(
        IdTable::<()>::with_id_bits(usize::MAX, 10, 1).capacity(),
        256
    );
    assert_eq!(IdTable::<()>::with_id_bits(usize::MAX, 0, 1).capacity(), 4);
    assert_eq!(max_capacity(19), MAX_SESSIONS);
}

#[test]
fn fills_max_sessions_within_eight_slots_each() {
    let mut t = IdTable::new(usize::MAX, u32::MAX - 1000);
    for i in 0..MAX_SESSIONS {
        t.insert_with(|_| i as u32).expect("below MAX_SESSIONS");
    }
    assert_eq!(t.insert_with(|_| 0), Err(TableFull));
    assert_eq!(t.len(), MAX_SESSIONS);
    assert!(t.array_len() <= 8 * MAX_SESSIONS, "{}", t.array_len());
    // The counter wrapped past 0 on the way: every id resolves to its own value.
    let all: Vec<(SessionId, u32)> = t.iter().map(|(id, &v)| (id, v)).collect();
    assert_eq!(all.len(), MAX_SESSIONS);
    for (k, &(id, v)) in all.iter().enumerate() {
        assert_eq!(v as usize, k, "iter() is oldest first");
        assert_eq!(t.get(id), Some(&v));
    }
}

#[test]
fn stale_id_rejected_without_disturbing_live_entry() {
    let mut t = IdTable::new(1, 7);
    let old = t.insert_with(|id| (id, "old")).expect("empty");
    assert_eq!(t.get(old), Some(&(old, "old")));
    assert_eq!(t.remove(old), Some((old, "old")));
    assert_eq!(t.get(old), None);
    assert_eq!(t.remove(old), None);

    let new = t.insert_with(|id| (id, "new")).expect("room again");
    assert_ne!(new, old);
    assert_eq!(t.get(old), None);
    assert_eq!(t.get_mut(old), None);
    assert_eq!(t.remove(old), None);
    assert_eq!(t.len(), 1);
    assert_eq!(t.get(new), Some(&(new, "new")));
    // Ids on the same array position as `new`, and future ids, are rejected too.
    for raw in [
        new.get() + 4,
        new.get() + (1 << 20),
        new.get() + 1,
        u32::MAX,
    ] {
        let other = SessionId::from_raw(raw).expect("nonzero");
        assert_eq!(t.get(other), None, "{other}");
        assert_eq!(t.remove(other), None, "{other}");
    }
    assert_eq!(t.get(new), Some(&(new, "new")));
}

#[test]
fn arbitrary_raw_ids_never_panic() {
    let mut r = rng(5);
    for bits in [4, 9, 32] {
        let mut t = IdTable::with_id_bits(64, bits, r.next_u32());
        let mut live = BTreeMap::new();
        for i in 0..t.capacity() as u32 {
            let id = t.insert_with(|_| i).expect("below capacity");
            live.insert(id.get(), i);
        }
        let edges = [0, 1, 15, 16, 17, 1 << 17, u32::MAX, u32::MAX - 1];
        let randoms: Vec<u32> = (0..50_000).map(|_| r.next_u32()).collect();
        let live_raws: Vec<u32> = live.keys().copied().collect();
        for &raw in edges.iter().chain(&randoms).chain(&live_raws) {
            let Some(id) = SessionId::from_raw(raw) else {
                assert_eq!(raw, 0);
                continue;
            };
            assert_eq!(t.get(id), live.get(&raw));
            assert_eq!(t.remove(id), live.remove(&raw));
            assert_eq!(t.len(), live.len());
        }
        assert!(t.is_empty());
    }
}

#[test]
fn panicking_constructor_stores_nothing() {
    let mut t = IdTable::new(2, 50);
    let a = t.insert_with(|_| 1).expect("empty");
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = t.insert_with(|_| panic!("constructor failed"));
    }))
    .is_err();
    assert!(panicked);
    assert_eq!((t.len(), t.peak()), (1, 1));
    assert_eq!(t.get(SessionId::from_raw(51).expect("nonzero")), None);
    let b = t.insert_with(|_| 2).expect("still room");
    assert_eq!(t.get(a), Some(&1));
    assert_eq!(t.get(b), Some(&2));
    assert_eq!(t.len(), 2);
}

/// Issue #15: a plain sequential loop (open, close, open, close, ...) must not bring an id
/// back: every id of millions of sessions is distinct, and a closed id never resolves again.
/// (The former slot + generation table failed this at session 32,768: the first id came
/// back and resolved to the new session.)
#[test]
fn sequential_open_close_never_repeats_an_id() {
    let ops = ops(3_000_000);
    let mut t: IdTable<usize> = IdTable::new(1000, rng(15).next_u32());
    let mut ids = Vec::with_capacity(ops);
    let mut first: Option<SessionId> = None;
    let mut prev: Option<SessionId> = None;
    for i in 0..ops {
        let id = t.insert_with(|_| i).expect("one live at most");
        for old in [first, prev].into_iter().flatten() {
            assert_eq!(t.get(old), None, "closed {old} reaches session {i}");
        }
        first = first.or(Some(id));
        assert_eq!(t.get(id), Some(&i));
        assert_eq!(t.remove(id), Some(i));
        ids.push(id.get());
        prev = Some(id);
    }
    ids.sort_unstable();
    let dup = ids.windows(2).find(|w| w[0] == w[1]);
    assert_eq!(dup, None, "an id recurred within {ops} sequential sessions");
    assert_eq!(t.skipped(), 0, "a sequential loop never skips");
    assert_eq!(
        t.array_len(),
        MIN_ARRAY,
        "one live session needs the smallest array"
    );
}

/// In a narrowed space the sequential loop walks the whole space: an id recurs after exactly
/// `2^bits - 2` other sessions, never sooner.
#[test]
fn sequential_recurs_after_exactly_the_space() {
    for bits in [4, 5, 8, 13] {
        let space = (1u64 << bits) - 1;
        let mut t: IdTable<()> = IdTable::with_id_bits(1, bits, 3);
        let mut last_seen: BTreeMap<u32, u64> = BTreeMap::new();
        let mut recurred = 0;
        for n in 0..3 * space + 5 {
            let id = t.insert_with(|_| ()).expect("empty");
            assert!(u64::from(id.get()) <= space, "{id} outside {bits} bits");
            if let Some(at) = last_seen.insert(id.get(), n) {
                assert_eq!(n - at, space, "{id} came back after {} issues", n - at);
                recurred += 1;
            }
            t.remove(id);
        }
        assert!(recurred > space, "bits {bits}: {recurred} recurrences");
    }
}

/// The counter's wrap: after the largest id comes 1 (0 is not an id), at full width and in
/// a narrowed space; an id still live when the counter comes round to it is skipped, and
/// keeps resolving to its own session.
#[test]
fn counter_wraps_to_one_and_skips_a_live_id() {
    let mut t: IdTable<u32> = IdTable::new(4, u32::MAX - 2);
    let got: Vec<u32> = (0..5)
        .map(|i| {
            let id = t.insert_with(|_| i).expect("room");
            t.remove(id);
            id.get()
        })
        .collect();
    assert_eq!(got, [u32::MAX - 2, u32::MAX - 1, u32::MAX, 1, 2]);
    // A start of 0 means 1.
    let mut t: IdTable<u32> = IdTable::new(4, 0);
    assert_eq!(t.insert_with(|_| 0).map(SessionId::get), Ok(1));

    // Five bits: ids 1..=31, at most 8 live. Keep 20..=26 live: the array grows to one slot
    // per id, so the counter skips exactly the live ids as it comes round to them.
    let mut t: IdTable<u32> = IdTable::with_id_bits(8, 5, 20);
    let keep: Vec<SessionId> = (0..7)
        .map(|i| t.insert_with(|_| 500 + i).expect("room"))
        .collect();
    assert_eq!(
        keep.iter().map(|id| id.get()).collect::<Vec<_>>(),
        (20..=26).collect::<Vec<_>>()
    );
    let mut issued = Vec::new();
    for i in 0..60 {
        let id = t.insert_with(|_| i).expect("room");
        for (k, kept) in keep.iter().enumerate() {
            assert_eq!(
                t.get(*kept),
                Some(&(500 + k as u32)),
                "{kept} resolves to its own"
            );
        }
        issued.push(id.get());
        t.remove(id);
    }
    assert_eq!(t.array_len(), 32);
    let turn: Vec<u32> = (27..=31).chain(1..=19).collect();
    let want: Vec<u32> = turn.iter().cycle().take(60).copied().collect();
    assert_eq!(
        issued, want,
        "31 wraps to 1, and the live 20..=26 are skipped"
    );
    assert_eq!(t.skipped(), 14, "seven skips per turn, two turns");
}

/// A random open/close workload of `ops` steps on a table with `bits` id bits, checked
/// against a model. `pattern` sets how the number of live sessions moves.
#[derive(Clone, Copy, Debug)]
enum Pattern {
    /// Open and close at random, equally likely.
    Even,
    /// Long runs of opens then long runs of closes.
    Bursty,
    /// Few long-lived sessions, fast churn beside them.
    LongLived,
    /// The table kept near its capacity.
    Full,
}

struct Report {
    issued: u64,
    skipped: u64,
    recurrences: u64,
    /// Fewest other sessions between two issues of one id (u64::MAX if none recurred).
    min_between: u64,
}

fn random_workload(seed: u64, bits: u32, capacity: usize, pattern: Pattern, ops: usize) -> Report {
    let mut r = rng(seed);
    let mut t: IdTable<u64> = IdTable::with_id_bits(capacity, bits, r.next_u32());
    let capacity = t.capacity();
    let space = u64::from(t.space);
    // Model.
    let mut live: Vec<(SessionId, u64)> = Vec::new();
    let mut long: Vec<(SessionId, u64)> = Vec::new(); // Pattern::LongLived's long-lived ones
    let mut issued = 0u64;
    let mut pos = 0u64; // counter values passed (nonzero ones), unwrapped
    let mut last: Option<u32> = None;
    let mut at: BTreeMap<u32, (u64, u64)> = BTreeMap::new(); // id -> (pos, issued) of last issue
    let mut released: Vec<SessionId> = Vec::new();
    let mut recurrences = 0u64;
    let mut min_between = u64::MAX;
    let mut skipped = 0u64;
    let mut opening = true;

    for step in 0..ops {
        let bits32 = r.next_u32();
        let field = |k: u32| (bits32 >> (8 * k)) & 0xff;
        let n = live.len() + long.len();
        let open = if n == 0 {
            true
        } else {
            match pattern {
                Pattern::Even => field(0) % 2 == 0,
                Pattern::Bursty => {
                    if field(0) == 0 || n >= capacity {
                        opening = !opening;
                    }
                    opening
                }
                Pattern::LongLived | Pattern::Full => n < capacity && field(0) % 8 != 0,
            }
        };
        let n = live.len() + long.len();
        if open {
            let value = step as u64;
            let res = t.insert_with(|_| value);
            if n >= capacity {
                assert_eq!(res, Err(TableFull));
                continue;
            }
            let id = res.expect("below capacity");
            let raw = id.get();
            assert!(u64::from(raw) <= space, "{id} outside the space");
            // Counter order: the values passed since the last issue are all skipped ones,
            // and each skipped value belongs to the turn of one live session.
            let step_len = match last {
                None => 1,
                Some(prev) => {
                    let d = (u64::from(raw) + space - u64::from(prev)) % space;
                    if d == 0 { space } else { d }
                }
            };
            let skips = step_len - 1;
            assert!(
                skips <= n as u64,
                "{id} skipped {skips} values with only {n} live (seed {seed} step {step})"
            );
            skipped += skips;
            pos += step_len;
            // The horizon: a recurrence comes exactly one turn of the counter later.
            if let Some((p, i)) = at.insert(raw, (pos, issued)) {
                // One turn later, or more if it was still live when the counter came round.
                assert!(
                    pos > p && (pos - p).is_multiple_of(space),
                    "{id} recurred {} values after its last issue, not whole turns later",
                    pos - p
                );
                recurrences += 1;
                min_between = min_between.min(issued - i - 1);
            }
            // Unique among live ids.
            assert!(
                live.iter().chain(&long).all(|(l, _)| *l != id),
                "{id} issued while live"
            );
            issued += 1;
            last = Some(raw);
            let is_long = matches!(pattern, Pattern::LongLived) && long.len() < 3 && field(1) < 8;
            if is_long {
                long.push((id, value));
            } else {
                live.push((id, value));
            }
        } else {
            let from_long = !long.is_empty() && live.is_empty();
            let pool = if from_long { &mut long } else { &mut live };
            let i = field(2) as usize % pool.len();
            let (id, value) = pool.swap_remove(i);
            assert_eq!(t.remove(id), Some(value));
            released.push(id);
            if released.len() > 256 {
                released.swap_remove(field(3) as usize % 256);
            }
        }
        let n = live.len() + long.len();
        assert_eq!(t.len(), n);
        assert!(t.peak() <= capacity);
        assert!(
            t.array_len() <= (8 * t.peak()).max(MIN_ARRAY),
            "array {} for a peak of {}",
            t.array_len(),
            t.peak()
        );
        // Released ids never resolve unless they were issued again; live ones resolve to
        // their own values.
        if let Some(&stale) = released.get(field(3) as usize % released.len().max(1)) {
            let owner = live.iter().chain(&long).find(|(l, _)| *l == stale);
            assert_eq!(t.get(stale), owner.map(|(_, v)| v), "stale {stale}");
        }
        if let Some(&(id, v)) = live.get(field(1) as usize % live.len().max(1)) {
            assert_eq!(t.get(id), Some(&v));
        }
        if step % 8192 == 0 {
            let mut want: Vec<(SessionId, u64)> = live.iter().chain(&long).copied().collect();
            want.sort_by_key(|&(_, v)| v);
            let got: Vec<(SessionId, u64)> = t.iter().map(|(id, &v)| (id, v)).collect();
            // Oldest first, unless an id lived through a whole turn of the counter.
            if recurrences == 0 {
                assert_eq!(got, want, "iter() is oldest first");
            }
        }
    }
    assert_eq!(
        skipped,
        t.skipped(),
        "the model and the table count the same skips"
    );
    Report {
        issued,
        skipped,
        recurrences,
        min_between,
    }
}

/// Full width, millions of operations per pattern: no id recurs at all, stale ids never
/// resolve, memory follows the peak, and skips stay rare.
#[test]
fn random_patterns_full_width_never_repeat() {
    for (k, pattern) in [
        Pattern::Even,
        Pattern::Bursty,
        Pattern::LongLived,
        Pattern::Full,
    ]
    .into_iter()
    .enumerate()
    {
        for capacity in [1, 3, 64, 1000] {
            let rep = random_workload(
                k as u64 * 100 + capacity as u64,
                32,
                capacity,
                pattern,
                ops(600_000),
            );
            assert_eq!(rep.recurrences, 0, "{pattern:?} cap {capacity}");
            assert!(
                rep.skipped * 4 <= rep.issued + 64,
                "{pattern:?} cap {capacity}: {} skips for {} issues",
                rep.skipped,
                rep.issued
            );
        }
    }
}

/// Narrowed spaces wrap many times: every recurrence comes exactly one turn of the counter
/// later, and in every pattern most of the space is issued in between.
#[test]
fn random_patterns_narrow_recur_only_after_a_full_turn() {
    for (k, pattern) in [
        Pattern::Even,
        Pattern::Bursty,
        Pattern::LongLived,
        Pattern::Full,
    ]
    .into_iter()
    .enumerate()
    {
        for bits in [4, 6, 10] {
            let space = (1u64 << bits) - 1;
            let rep = random_workload(
                k as u64 * 1000 + u64::from(bits),
                bits,
                usize::MAX,
                pattern,
                ops(400_000),
            );
            assert!(
                rep.recurrences > 100,
                "{pattern:?} bits {bits}: only {} recurrences",
                rep.recurrences
            );
            // At most a quarter of the space is live, so at least half of a turn is issued.
            assert!(
                2 * rep.min_between >= space,
                "{pattern:?} bits {bits}: an id recurred after only {} others",
                rep.min_between
            );
        }
    }
}

/// One long-lived session beside a sequential loop: the array stays small (the counter skips
/// the long-lived id's position instead of growing), and the long-lived id keeps resolving.
#[test]
fn memory_follows_the_peak_not_the_churn() {
    let mut t: IdTable<u32> = IdTable::new(1000, rng(8).next_u32());
    let keep = t.insert_with(|_| u32::MAX).expect("empty");
    for i in 0..ops(1_000_000) as u32 {
        let id = t.insert_with(|_| i).expect("room");
        t.remove(id);
    }
    assert_eq!(t.get(keep), Some(&u32::MAX));
    assert_eq!(t.peak(), 2);
    assert!(t.array_len() <= 16, "array {}", t.array_len());
    // A burst to 500 live grows it once, to at most eight slots each.
    let burst: Vec<_> = (0..499)
        .map(|i| t.insert_with(|_| i).expect("room"))
        .collect();
    assert!(t.array_len() <= 8 * 500, "array {}", t.array_len());
    for (i, id) in burst.iter().enumerate() {
        assert_eq!(t.get(*id), Some(&(i as u32)));
    }
}
