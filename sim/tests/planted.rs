//! The oracle is tested: every planted library bug is caught. (Feature `planted-bugs`; the
//! full 200-seed check of the command line is in `ci/sim.sh`.)
#![cfg(feature = "planted-bugs")]

use std::sync::Arc;

use laxnet_sim::runner::{RunOpts, run_seed};
use laxnet_sim::scenario::{Scenario, default_dir, load_dir};

fn scenario(name: &str) -> Arc<Scenario> {
    let all = load_dir(&default_dir()).expect("scenarios load");
    Arc::new(
        all.into_iter()
            .find(|s| s.name == name)
            .expect("scenario exists"),
    )
}

/// Each bug with a scenario meant to catch it and what the report must say. (The race
/// `buffers-after-release` needs threads: `laxsim stress`, tests/stress.rs.)
const CASES: [(&str, &str, &str); 23] = [
    ("no-flush-on-close", "steady-echo", "lost messages"),
    ("double-closed", "steady-echo", "Closed published 2 times"),
    ("deliver-after-close", "close-races", "after its Closed"),
    ("id-counter-stuck", "admission", "the counter did not move"),
    (
        "leak-slot",
        "admission",
        "returned a live session after it was destroyed",
    ),
    (
        "heartbeat-ignored",
        "partition-heartbeat",
        "past the heartbeat timeout",
    ),
    ("lost-ready-wakeup", "slow-consumer", "lost or late wake-up"),
    ("refuse-below-limit", "slow-consumer", "within its limit"),
    (
        "ready-not-told-of-close",
        "slow-consumer",
        "although it left Open",
    ),
    ("no-flush-after-peer-eof", "churn", "before its linger"),
    (
        "stale-heartbeat-on-records",
        "partition-heartbeat-hpke",
        "closed by heartbeat after only",
    ),
    (
        "half-frame-on-too-large",
        "hostile-peers",
        "nothing the oracle saw gave it a reason",
    ),
    ("id-wrap-off-by-one", "churn", "outside the 31 ids"),
    (
        "no-close-record",
        "churn-hpke",
        "without sending its reason",
    ),
    ("last-reason-wins", "admission", "changed what senders"),
    ("bytes-out-offered", "churn-hpke", "but its socket took"),
    (
        "handshake-slot-leak",
        "close-races-hpke",
        "did not finish draining",
    ),
    (
        "refuse-instead-of-evict",
        "handshake-flood",
        "a stalled handshake",
    ),
    (
        "frame-limit-off-by-one",
        "hostile-peers",
        "exceeds the maximum of 4095",
    ),
    (
        "reason-not-sent",
        "steady-echo",
        "without sending its reason",
    ),
    (
        "refusal-looks-like-reset",
        "admission",
        "a refusal that looks like a reset",
    ),
    ("linger-expiry-clean", "slow-consumer", "closed cleanly"),
    (
        "record-limit-off-by-one",
        "small-records-hpke",
        "record larger than the maximum",
    ),
];

#[test]
fn every_planted_bug_is_caught() {
    for (bug, sc_name, needle) in CASES {
        let sc = scenario(sc_name);
        let mut caught = None;
        for seed in 0..3 {
            let o = run_seed(
                &sc,
                &RunOpts {
                    seed,
                    plant: Some(bug.to_string()),
                    ..Default::default()
                },
            );
            if !o.passed() {
                caught = Some(o);
                break;
            }
        }
        let o = caught
            .unwrap_or_else(|| panic!("planted bug {bug} not caught by {sc_name} seeds 0..3"));
        assert!(
            o.violations.iter().any(|v| v.contains(needle)),
            "{bug}: expected a violation mentioning {needle:?}, got {:#?}",
            &o.violations[..o.violations.len().min(3)]
        );
    }
}

#[test]
fn the_same_seeds_pass_without_a_plant() {
    for (_, sc_name, _) in CASES {
        let o = run_seed(
            &scenario(sc_name),
            &RunOpts {
                seed: 0,
                ..Default::default()
            },
        );
        assert!(
            o.passed(),
            "{sc_name} seed 0 without a plant: {:#?}",
            o.violations
        );
    }
}
