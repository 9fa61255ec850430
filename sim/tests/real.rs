//! `laxsim run --real`: the scenarios' socket faults in real loopback streams, under the
//! stress run's oracle. The faults must really happen, the oracle must pass without a planted
//! bug and fail with one.
use std::sync::Arc;

use laxnet_sim::real::{run_real, skipped};
use laxnet_sim::scenario::{Scenario, default_dir, load_dir};

fn scenario(name: &str) -> Arc<Scenario> {
    let all = load_dir(&default_dir()).expect("scenarios load");
    Arc::new(
        all.into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no scenario {name}")),
    )
}

#[test]
fn socket_and_record_faults_happen_and_the_oracle_passes() {
    let chaos = run_real(&scenario("socket-chaos"), 1, 3, None);
    assert!(chaos.violations.is_empty(), "{:#?}", chaos.violations);
    let f = chaos.faults;
    assert!(
        f.short > 0 && f.stalls > 0 && f.resets > 0,
        "socket-chaos made no short I/O, stall or reset: {f:?}"
    );
    assert!(chaos.sessions > 0 && chaos.messages > 0, "{chaos:?}");

    // Corruption is rare (drawn per write, at most once per stream): a few seeds.
    let mut corrupted = 0;
    for seed in 1..6 {
        let crypto = run_real(&scenario("crypto-faults"), seed, 3, None);
        assert!(crypto.violations.is_empty(), "{:#?}", crypto.violations);
        corrupted += crypto.faults.corrupted;
    }
    assert!(
        corrupted > 0,
        "crypto-faults corrupted no record in 5 seeds"
    );
}

#[test]
fn what_loopback_cannot_make_is_listed() {
    assert!(skipped(&scenario("crash-restart")).contains(&"crashes/restarts"));
    assert!(skipped(&scenario("partition-heartbeat")).contains(&"partitions"));
    assert!(skipped(&scenario("hostile-peers")).contains(&"hostile hosts"));
    assert!(skipped(&scenario("crypto-faults")).contains(&"record duplicate/reorder/splice/drop"));
}

#[cfg(feature = "planted-bugs")]
#[test]
fn real_sockets_catch_a_planted_bug_under_faults() {
    for bug in ["no-flush-on-close", "deliver-after-close"] {
        let r = run_real(&scenario("socket-chaos"), 0, 3, Some(bug.into()));
        assert!(!r.violations.is_empty(), "{bug} not caught on real sockets");
    }
}

/// The scenario's `max_record` applies on real sockets too, and the stress oracle refuses a
/// record or frame refused as malformed on a connection no fault harmed.
#[cfg(feature = "planted-bugs")]
#[test]
fn small_records_on_real_sockets_catch_a_record_length_off_by_one() {
    let sc = scenario("small-records-hpke");
    let clean = run_real(&sc, 0, 3, None);
    assert!(clean.violations.is_empty(), "{:#?}", clean.violations);
    let r = run_real(&sc, 0, 3, Some("record-limit-off-by-one".into()));
    assert!(
        r.violations
            .iter()
            .any(|v| v.contains("record larger than the maximum")),
        "{:#?}",
        r.violations
    );
}
