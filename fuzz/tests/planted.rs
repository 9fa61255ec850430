//! The whole-stack target can find a bug: with a library bug planted (feature
//! `planted-bugs`), some generated input of the `sim` target fails, naming what the oracle
//! saw; without the plant, the same inputs pass (`tests/replay.rs`). Run by `ci/sim.sh`.
#![cfg(feature = "planted-bugs")]

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// Bugs a generic workload reaches, and what the oracle must say about each.
const CASES: [(&str, &str); 2] = [
    ("no-flush-on-close", "lost messages"),
    ("double-closed", "Closed published 2 times"),
];

#[test]
fn a_planted_bug_fails_a_generated_input() {
    for (bug, needle) in CASES {
        let mut rng = ChaCha8Rng::seed_from_u64(0x0051_0017);
        let mut found = None;
        for i in 0..200 {
            let mut d = vec![0u8; 16 + (rng.next_u32() % 785) as usize];
            rng.fill_bytes(&mut d);
            if let Err(v) = laxnet_sim::fuzz::run_planted(&d, Some(bug)) {
                found = Some((i, v));
                break;
            }
        }
        let (i, v) = found.unwrap_or_else(|| panic!("{bug}: no failing input in 200"));
        assert!(
            v.violations.iter().any(|l| l.contains(needle)),
            "{bug}: input {i} failed without mentioning {needle:?}: {v}"
        );
        eprintln!("{bug}: found by generated input {i}");
    }
}
