//! Shrinking a failing seed's fault schedule: drop faults (in halves, quarters, ... then one
//! by one) and weaken the rest (shorter partitions and holds, shorter stalls, larger short
//! reads, less latency) for as long as the run still fails the same way. [`minimize`] is the
//! search over any engine's runs; [`shrink`] runs it over laxsim's scenarios, `Sim::shrink`
//! over a user's test.

use std::sync::Arc;

use crate::runner::{Outcome, RunOpts, run_seed};
use crate::scenario::Scenario;
use crate::schedule::{Fault, Schedule};

/// The result of a shrink.
pub struct Shrunk {
    /// The minimal schedule found.
    pub schedule: Schedule,
    /// Faults in the original recording.
    pub original: usize,
    /// Runs it took.
    pub runs: usize,
    /// The failure being preserved.
    pub signature: String,
    /// The replayed first violation of the minimal schedule.
    pub first_violation: String,
}

/// A violation's kind: its text without numbers and ids, so that "the same failure" survives
/// the changes shrinking makes.
pub fn signature(v: &str) -> String {
    let first = v.lines().next().unwrap_or("");
    // Drop the "t=...ms host: " prefix.
    let msg = first.split_once(": ").map_or(first, |(_, m)| m);
    msg.chars()
        .filter(|c| !c.is_ascii_digit() && *c != '#' && *c != '.')
        .collect()
}

fn fails_like(o: &Outcome, sig: &str) -> bool {
    o.violations.iter().any(|v| signature(v) == sig)
}

/// Shrinks `seed` of `sc`. Fails if the seed passes.
pub fn shrink(
    sc: &Arc<Scenario>,
    seed: u64,
    plant: Option<String>,
    max_runs: usize,
    mut progress: impl FnMut(&str),
) -> Result<Shrunk, String> {
    let base = RunOpts {
        seed,
        plant: plant.clone(),
        ..Default::default()
    };
    let first = run_seed(sc, &base);
    let Some(v0) = first.violations.first() else {
        return Err(format!("{} seed {seed} passes: nothing to shrink", sc.name));
    };
    let sig = signature(v0);
    let faults = first.records.clone();
    let original = faults.len();
    let mut runs = 1;
    let try_run = |faults: &[Fault], runs: &mut usize| -> bool {
        *runs += 1;
        let o = run_seed(
            sc,
            &RunOpts {
                schedule: Some(faults.to_vec()),
                ..base.clone()
            },
        );
        fails_like(&o, &sig)
    };
    if !try_run(&faults, &mut runs) {
        return Err(
            "the recorded schedule does not reproduce the failure (nondeterminism?)".into(),
        );
    }
    progress(&format!("{original} fault decisions; preserving: {sig}"));
    let faults = minimize(faults, max_runs, &mut runs, try_run, progress);
    let last = run_seed(
        sc,
        &RunOpts {
            schedule: Some(faults.clone()),
            ..base.clone()
        },
    );
    runs += 1;
    Ok(Shrunk {
        schedule: Schedule {
            scenario: sc.name.clone(),
            seed,
            plant,
            faults,
        },
        original,
        runs,
        signature: sig,
        first_violation: last.violations.first().cloned().unwrap_or_default(),
    })
}

/// Drops faults from `faults` (ddmin style: halves, quarters, ... then one by one) and
/// weakens the rest for as long as `fails` says a run with the candidate schedule still fails
/// the same way. `fails` counts its runs in the counter it gets; shrinking stops at
/// `max_runs`. The engine-independent half of [`shrink`] (users' tests use it too).
pub fn minimize(
    mut faults: Vec<Fault>,
    max_runs: usize,
    runs: &mut usize,
    mut fails: impl FnMut(&[Fault], &mut usize) -> bool,
    mut progress: impl FnMut(&str),
) -> Vec<Fault> {
    // Removal, ddmin style.
    let mut n = 2usize;
    while !faults.is_empty() && *runs < max_runs {
        let chunk = faults.len().div_ceil(n);
        let mut removed = false;
        let mut start = 0;
        while start < faults.len() && *runs < max_runs {
            let end = (start + chunk).min(faults.len());
            let cand: Vec<Fault> = faults[..start]
                .iter()
                .chain(&faults[end..])
                .cloned()
                .collect();
            if fails(&cand, runs) {
                faults = cand;
                removed = true;
                progress(&format!("{} faults left", faults.len()));
            } else {
                start = end;
            }
        }
        if !removed {
            if chunk <= 1 {
                break;
            }
            n = (n * 2).min(faults.len().max(1));
        } else {
            n = n.saturating_sub(1).max(2);
        }
    }
    // Weakening.
    let mut i = 0;
    while i < faults.len() && *runs < max_runs {
        match faults[i].weaken() {
            Some(w) => {
                let mut cand = faults.clone();
                cand[i] = w;
                if fails(&cand, runs) {
                    faults = cand;
                    continue;
                }
                i += 1;
            }
            None => i += 1,
        }
    }
    faults
}
