//! The ciphertext-fault invariants can fail: with the library's test-only null cipher (which
//! neither encrypts nor authenticates), every kind of ciphertext fault gets through to the
//! application, and the oracle must report it. (Feature `null-cipher`; run by `ci/sim.sh`.)
#![cfg(feature = "null-cipher")]

use std::sync::Arc;

use laxnet_sim::runner::{Outcome, RunOpts, run_seed};
use laxnet_sim::scenario::{CipherName, IoFaults, Scenario, default_dir, load_dir};
use laxnet_sim::schedule::Fault;
use laxnet_sim::shrink::shrink;

fn scenario(name: &str) -> Scenario {
    let all = load_dir(&default_dir()).expect("scenarios load");
    all.into_iter()
        .find(|s| s.name == name)
        .expect("scenario exists")
}

/// crypto-faults with only the ciphertext fault `kind`, at a high rate.
fn only(kind: &str, cipher: Option<CipherName>) -> Arc<Scenario> {
    let mut sc = scenario("crypto-faults");
    sc.cipher = cipher;
    sc.duration_ms = 500;
    for io in [&mut sc.server.io, &mut sc.client.io] {
        *io = IoFaults {
            short_read: io.short_read,
            short_write: io.short_write,
            ..IoFaults::default()
        };
        let p = 0.05;
        match kind {
            "corrupt" => io.ct_corrupt = p,
            "duplicate" => io.ct_duplicate = p,
            "reorder" => io.ct_reorder = p,
            "splice" => io.ct_splice = p,
            "drop" => io.ct_drop = p,
            _ => unreachable!("{kind}"),
        }
    }
    Arc::new(sc)
}

fn run(sc: &Arc<Scenario>, seed: u64) -> Outcome {
    run_seed(
        sc,
        &RunOpts {
            seed,
            ..Default::default()
        },
    )
}

/// The violations of the two ciphertext invariants.
fn ciphertext_violations(o: &Outcome) -> Vec<&String> {
    o.violations
        .iter()
        .filter(|v| v.contains("after a ciphertext fault") || v.contains("not Crypto"))
        .collect()
}

const KINDS: [&str; 5] = ["corrupt", "duplicate", "reorder", "splice", "drop"];

#[test]
fn every_ciphertext_fault_is_caught_without_authentication() {
    for kind in KINDS {
        let sc = only(kind, Some(CipherName::Null));
        let o = run(&sc, 1);
        let edge = format!("ciphertext-{kind}");
        assert!(
            o.edges.get(&edge).copied().unwrap_or(0) > 0,
            "{kind}: the fault never reached a receiver: {:?}",
            o.edges
        );
        let caught = ciphertext_violations(&o);
        assert!(
            !caught.is_empty(),
            "{kind} with the null cipher: the oracle reported no ciphertext violation; all violations: {:#?}",
            &o.violations[..o.violations.len().min(5)]
        );
    }
}

#[test]
fn the_same_runs_pass_with_a_real_cipher() {
    for kind in KINDS {
        let o = run(&only(kind, None), 1);
        assert!(
            o.edges
                .get(&format!("ciphertext-{kind}"))
                .copied()
                .unwrap_or(0)
                > 0,
            "{kind}: {:?}",
            o.edges
        );
        assert!(
            o.passed(),
            "{kind} with ChaCha20-Poly1305: {:#?}",
            o.violations
        );
    }
}

#[test]
fn a_failing_null_cipher_seed_shrinks_to_its_ciphertext_fault() {
    let sc = only("corrupt", Some(CipherName::Null));
    let s = shrink(&sc, 1, None, 60, |_| {}).expect("seed 1 fails with the null cipher");
    let ct: Vec<&Fault> = s
        .schedule
        .faults
        .iter()
        .filter(|f| matches!(f, Fault::Ct { .. }))
        .collect();
    assert!(
        !ct.is_empty() && ct.len() < s.original,
        "the minimal schedule keeps a ciphertext fault and drops the rest: {:?}",
        s.schedule.faults
    );
    let o = run_seed(
        &sc,
        &RunOpts {
            seed: 1,
            schedule: Some(s.schedule.faults.clone()),
            ..Default::default()
        },
    );
    assert!(!o.passed(), "the minimal schedule still fails");
}
