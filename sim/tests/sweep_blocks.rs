//! The simulation suite as a test binary for `cargo nextest` (and `cargo test`): one test per
//! scenario and block of seeds, named `SCENARIO::seeds_FIRST_LAST` (`churn::seeds_0000_0099`),
//! so `cargo nextest run -p laxnet-sim --test sweep_blocks --partition hash:K/N` runs shard K
//! of a sweep split over N machines, `cargo nextest archive` ships the built binary to them and
//! nextest's JUnit report carries each failure: every failing seed's violations and its exact
//! `laxsim replay` command with the build fingerprint (docs/simulation-ci.md).
//!
//! Environment: `LAXSIM_BLOCK_SEEDS=A..B` the seeds (default `0..2`), `LAXSIM_BLOCK_SIZE=N`
//! seeds per test (default 2; blocks start at multiples of N), `LAXSIM_BLOCK_PLANT=BUG` a
//! planted bug (a build with feature `planted-bugs`; the blocks must then fail),
//! `LAXSIM_SCENARIOS=DIR` the scenarios (default:
//! the workspace's `scenarios/`, found through `CARGO_MANIFEST_DIR` at run time, which
//! `cargo nextest run --archive-file ... --workspace-remap DIR` sets to the checkout).
//!
//! In a debug build without `LAXSIM_BLOCK_SEEDS` the tests are listed as ignored: the
//! simulator is many times slower unoptimized, and the ordinary `cargo test --workspace` should
//! stay short (`--include-ignored` runs them anyway). Sweeps use `--release` (or
//! `--cargo-profile release` with nextest).
//!
//! A block passes when each of its seeds passes the oracle. Whether a scenario reached its
//! expected edges is a property of a whole sweep, not of a block: `laxsim run` and
//! `laxsim merge` check it.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use laxnet_sim::fingerprint::Fingerprint;
use laxnet_sim::scenario::{Scenario, default_dir, load_dir};
use laxnet_sim::suite::{SuiteOpts, run_suite};
use laxnet_sim::sweep::{block_name, blocks, failure_text, name_width};
use libtest_mimic::{Arguments, Failed, Trial};

fn env_range(var: &str, default: Range<u64>) -> Range<u64> {
    let Ok(spec) = std::env::var(var) else {
        return default;
    };
    let parsed = spec
        .split_once("..")
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
    match parsed {
        Some((a, b)) if a < b => a..b,
        _ => panic!("{var}={spec:?}: expected A..B with A < B"),
    }
}

fn scenario_dir() -> PathBuf {
    if std::env::var_os("LAXSIM_SCENARIOS").is_some() {
        return default_dir();
    }
    match std::env::var_os("CARGO_MANIFEST_DIR") {
        Some(d) => PathBuf::from(d).join("../scenarios"),
        None => default_dir(),
    }
}

fn run_block(sc: &Arc<Scenario>, seeds: Range<u64>, plant: Option<String>) -> Result<(), Failed> {
    let r = run_suite(
        std::slice::from_ref(sc),
        &SuiteOpts {
            seeds,
            jobs: 1,
            check_determinism: false,
            plant: plant.clone(),
            fail_fast: false,
            progress: false,
        },
    );
    let failing: Vec<String> = r
        .seeds
        .iter()
        .filter(|s| !s.passed())
        .map(|s| failure_text(s, plant.as_deref()))
        .collect();
    if failing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} seed(s) failed\n{}build: {}\n(from a checkout: cargo run --release -p laxnet-sim -- replay ...)",
        failing.len(),
        failing.join(""),
        Fingerprint::current()
    )
    .into())
}

fn main() {
    let args = Arguments::from_args();
    let seeds = env_range("LAXSIM_BLOCK_SEEDS", 0..2);
    let size = std::env::var("LAXSIM_BLOCK_SIZE")
        .ok()
        .map(|s| {
            s.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .unwrap_or_else(|| panic!("LAXSIM_BLOCK_SIZE={s:?}: expected a positive number"))
        })
        .unwrap_or(2);
    let plant = std::env::var("LAXSIM_BLOCK_PLANT").ok();
    if let Some(p) = &plant {
        assert!(
            laxnet_sim::plantable().contains(&p.as_str()),
            "LAXSIM_BLOCK_PLANT={p}: not a bug this build can plant (feature planted-bugs?)"
        );
    }
    let ignored = cfg!(debug_assertions) && std::env::var_os("LAXSIM_BLOCK_SEEDS").is_none();
    let dir = scenario_dir();
    let scenarios = load_dir(&dir).unwrap_or_else(|e| panic!("scenarios: {e}"));
    assert!(!scenarios.is_empty(), "no scenarios in {}", dir.display());
    let width = name_width(&seeds);
    let mut trials = Vec::new();
    for sc in scenarios.into_iter().map(Arc::new) {
        for b in blocks(&seeds, size) {
            let sc = sc.clone();
            let plant = plant.clone();
            let name = block_name(&sc.name, &b, width);
            trials.push(
                Trial::test(name, move || run_block(&sc, b, plant)).with_ignored_flag(ignored),
            );
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
