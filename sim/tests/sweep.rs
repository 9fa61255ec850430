//! laxsim as a test command: every scenario over a fixed seed range, failing on the first
//! violation. This is what mutation testing runs to ask "does the simulator alone catch this
//! mutant?" (`ci/mutants.sh`, docs/testing.md).
//!
//! It does nothing unless `LAXSIM_SWEEP` names the seeds (`A..B`), so the ordinary `cargo test`
//! (a debug build, where a sweep would be slow) skips it; `LAXSIM_SWEEP_JOBS` sets the worker
//! threads (default 2).

use std::sync::Arc;

use laxnet_sim::scenario::{default_dir, load_dir};
use laxnet_sim::suite::{SuiteOpts, run_suite};

#[test]
fn every_scenario_passes_the_sweep_seeds() {
    let Ok(spec) = std::env::var("LAXSIM_SWEEP") else {
        return;
    };
    let (a, b) = spec
        .split_once("..")
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .expect("LAXSIM_SWEEP is A..B");
    let jobs = std::env::var("LAXSIM_SWEEP_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or(2);
    let scenarios: Vec<_> = load_dir(&default_dir())
        .expect("scenarios load")
        .into_iter()
        .map(Arc::new)
        .collect();
    let r = run_suite(
        &scenarios,
        &SuiteOpts {
            seeds: a..b,
            jobs,
            check_determinism: false,
            plant: None,
            fail_fast: true,
            progress: false,
        },
    );
    let failed: Vec<String> = r
        .seeds
        .iter()
        .filter(|s| !s.passed())
        .map(|s| {
            format!(
                "{} seed {}: {}",
                s.scenario,
                s.seed,
                s.failures.join("\n  ")
            )
        })
        .collect();
    let missing: Vec<String> = r
        .scenarios
        .iter()
        .filter(|s| !s.missing_edges.is_empty())
        .map(|s| format!("{}: never reached {:?}", s.name, s.missing_edges))
        .collect();
    assert!(
        failed.is_empty() && missing.is_empty(),
        "laxsim sweep {spec} failed:\n{}\n{}",
        failed.first().map_or("", |s| s.as_str()),
        missing.join("\n")
    );
}
