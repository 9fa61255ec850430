//! Many seeds of many scenarios on several threads, with a progress line, a summary table and
//! the edge-coverage check.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // wall clock for seeds/s only

use std::collections::{BTreeMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::fingerprint::Fingerprint;
use crate::runner::{RunOpts, run_seed};
use crate::scenario::Scenario;

/// How to run a suite.
#[derive(Debug, Clone)]
pub struct SuiteOpts {
    /// Seeds to run for every scenario.
    pub seeds: Range<u64>,
    /// Worker threads.
    pub jobs: usize,
    /// Run every seed twice and compare trace hashes.
    pub check_determinism: bool,
    /// Planted bug.
    pub plant: Option<String>,
    /// Stop at the first failing seed.
    pub fail_fast: bool,
    /// Show a progress line on stderr.
    pub progress: bool,
}

/// The result of one seed.
#[derive(Debug, Clone)]
pub struct SeedResult {
    /// Scenario.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Trace hash.
    pub hash: u64,
    /// Failures: invariant violations, nondeterminism.
    pub failures: Vec<String>,
    /// Failures counted.
    pub failure_count: u64,
    /// Edge counts.
    pub edges: BTreeMap<String, u64>,
    /// Simulated time.
    pub sim_time: Duration,
    /// Sessions opened.
    pub sessions: u64,
    /// Messages delivered.
    pub messages: u64,
    /// Faults injected.
    pub faults: u64,
    /// Wall time (both runs with --check-determinism).
    pub wall: Duration,
}

impl SeedResult {
    /// True if the seed passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Per-scenario totals.
#[derive(Debug, Clone, Default)]
pub struct ScenarioSummary {
    /// Name.
    pub name: String,
    /// Seeds run.
    pub seeds: u64,
    /// Seeds passed.
    pub passed: u64,
    /// Seeds failed.
    pub failed: u64,
    /// Total simulated time.
    pub sim_time: Duration,
    /// Sessions.
    pub sessions: u64,
    /// Messages.
    pub messages: u64,
    /// Faults.
    pub faults: u64,
    /// Summed per-seed wall time (thread time).
    pub wall: Duration,
    /// Edge totals.
    pub edges: BTreeMap<String, u64>,
    /// Expected edges never reached.
    pub missing_edges: Vec<String>,
}

impl ScenarioSummary {
    /// Seeds per second of one thread.
    pub fn seeds_per_s(&self) -> f64 {
        self.seeds as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// The whole suite's result.
pub struct SuiteResult {
    /// Every seed, sorted by scenario then seed.
    pub seeds: Vec<SeedResult>,
    /// Per scenario, in scenario order.
    pub scenarios: Vec<ScenarioSummary>,
    /// Real elapsed time.
    pub elapsed: Duration,
    /// Stopped early (--fail-fast).
    pub stopped_early: bool,
}

impl SuiteResult {
    /// True if every seed passed and every expected edge was reached.
    pub fn passed(&self) -> bool {
        self.seeds.iter().all(|s| s.passed())
            && self.scenarios.iter().all(|s| s.missing_edges.is_empty())
    }
}

fn run_one(sc: &Arc<Scenario>, seed: u64, opts: &SuiteOpts) -> SeedResult {
    let start = Instant::now();
    let ro = RunOpts {
        seed,
        plant: opts.plant.clone(),
        ..Default::default()
    };
    let o = run_seed(sc, &ro);
    let mut failures = o.violations.clone();
    let mut failure_count = o.violation_count;
    if opts.check_determinism {
        let again = run_seed(sc, &ro);
        if again.hash != o.hash {
            failures.push(format!(
                "nondeterministic: trace hash {:016x} on the first run, {:016x} on the second",
                o.hash, again.hash
            ));
            failure_count += 1;
        }
    }
    SeedResult {
        scenario: sc.name.clone(),
        seed,
        hash: o.hash,
        failures,
        failure_count,
        edges: o.edges.clone(),
        sim_time: o.sim_time,
        sessions: o.sessions,
        messages: o.messages,
        faults: o.faults,
        wall: start.elapsed(),
    }
}

/// Runs every seed of every scenario.
pub fn run_suite(scs: &[Arc<Scenario>], opts: &SuiteOpts) -> SuiteResult {
    run_suite_where(scs, opts, |_| true)
}

/// Runs the seeds of `opts.seeds` that `keep` keeps (a shard's), of every scenario.
pub fn run_suite_where(
    scs: &[Arc<Scenario>],
    opts: &SuiteOpts,
    keep: impl Fn(u64) -> bool,
) -> SuiteResult {
    let start = Instant::now();
    let mut queue = VecDeque::new();
    for (i, _) in scs.iter().enumerate() {
        for seed in opts.seeds.clone().filter(|s| keep(*s)) {
            queue.push_back((i, seed));
        }
    }
    let total = queue.len();
    let queue = Arc::new(Mutex::new(queue));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<SeedResult>();
    let mut workers = Vec::new();
    for w in 0..opts.jobs.max(1) {
        let queue = queue.clone();
        let stop = stop.clone();
        let tx = tx.clone();
        let scs: Vec<Arc<Scenario>> = scs.to_vec();
        let opts = opts.clone();
        let h = std::thread::Builder::new()
            .name(format!("laxsim-{w}"))
            .stack_size(64 << 20)
            .spawn(move || {
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Some((i, seed)) =
                        queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
                    else {
                        return;
                    };
                    let r = run_one(&scs[i], seed, &opts);
                    if !r.passed() && opts.fail_fast {
                        stop.store(true, Ordering::Relaxed);
                    }
                    if tx.send(r).is_err() {
                        return;
                    }
                }
            });
        match h {
            Ok(h) => workers.push(h),
            Err(e) => eprintln!("laxsim: cannot start a worker thread: {e}"),
        }
    }
    drop(tx);
    let tty = opts.progress && std::io::stderr().is_terminal();
    let mut results = Vec::with_capacity(total);
    let mut failed = 0;
    let mut last_print = Instant::now();
    for r in rx {
        if !r.passed() {
            failed += 1;
        }
        results.push(r);
        if opts.progress
            && (last_print.elapsed() > Duration::from_millis(if tty { 100 } else { 5000 })
                || results.len() == total)
        {
            last_print = Instant::now();
            let done = results.len();
            let width = 30;
            let filled = done * width / total.max(1);
            let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
            let line = format!(
                "[{bar}] {done}/{total} seeds, {failed} failed, {:.1}s",
                start.elapsed().as_secs_f64()
            );
            let mut e = std::io::stderr();
            if tty {
                let _ = write!(e, "\r{line}");
            } else {
                let _ = writeln!(e, "{line}");
            }
            let _ = e.flush();
        }
    }
    if tty {
        eprintln!();
    }
    for w in workers {
        let _ = w.join();
    }
    results.sort_by(|a, b| (&a.scenario, a.seed).cmp(&(&b.scenario, b.seed)));
    let mut scenarios = Vec::new();
    for sc in scs {
        let mut s = ScenarioSummary {
            name: sc.name.clone(),
            ..Default::default()
        };
        for r in results.iter().filter(|r| r.scenario == sc.name) {
            s.seeds += 1;
            if r.passed() {
                s.passed += 1;
            } else {
                s.failed += 1;
            }
            s.sim_time += r.sim_time;
            s.sessions += r.sessions;
            s.messages += r.messages;
            s.faults += r.faults;
            s.wall += r.wall;
            for (k, v) in &r.edges {
                *s.edges.entry(k.clone()).or_default() += v;
            }
        }
        s.missing_edges = sc
            .expect_edges
            .iter()
            .filter(|e| s.edges.get(*e).copied().unwrap_or(0) == 0)
            .cloned()
            .collect();
        scenarios.push(s);
    }
    SuiteResult {
        stopped_early: results.len() < total,
        seeds: results,
        scenarios,
        elapsed: start.elapsed(),
    }
}

/// The replay command for a failing seed, with this build's fingerprint (replay warns when
/// its own differs).
pub fn replay_command(scenario: &str, seed: u64, plant: Option<&str>) -> String {
    let mut s = format!("laxsim replay --scenario {scenario} --seed {seed}");
    if let Some(p) = plant {
        s.push_str(&format!(" --plant {p}"));
    }
    s.push_str(&format!(" --fingerprint {}", Fingerprint::current()));
    s
}

/// The human summary: a table, the failing seeds with their replay commands, the missing
/// edges.
pub fn print_summary(r: &SuiteResult, plant: Option<&str>) {
    println!(
        "{:<24} {:>6} {:>6} {:>6} {:>10} {:>9} {:>10} {:>9} {:>8} {:>8}",
        "scenario",
        "seeds",
        "passed",
        "failed",
        "sim time",
        "sessions",
        "messages",
        "faults",
        "wall",
        "seeds/s"
    );
    let mut tot = ScenarioSummary::default();
    for s in &r.scenarios {
        println!(
            "{:<24} {:>6} {:>6} {:>6} {:>9.1}s {:>9} {:>10} {:>9} {:>7.2}s {:>8.1}",
            s.name,
            s.seeds,
            s.passed,
            s.failed,
            s.sim_time.as_secs_f64(),
            s.sessions,
            s.messages,
            s.faults,
            s.wall.as_secs_f64(),
            s.seeds_per_s()
        );
        tot.seeds += s.seeds;
        tot.passed += s.passed;
        tot.failed += s.failed;
        tot.sim_time += s.sim_time;
        tot.sessions += s.sessions;
        tot.messages += s.messages;
        tot.faults += s.faults;
    }
    println!(
        "{:<24} {:>6} {:>6} {:>6} {:>9.1}s {:>9} {:>10} {:>9} {:>7.2}s {:>8.1}",
        "total (real time)",
        tot.seeds,
        tot.passed,
        tot.failed,
        tot.sim_time.as_secs_f64(),
        tot.sessions,
        tot.messages,
        tot.faults,
        r.elapsed.as_secs_f64(),
        tot.seeds as f64 / r.elapsed.as_secs_f64().max(1e-9)
    );
    println!("(wall and seeds/s per scenario are per worker thread; the total line is real time)");
    let failing: Vec<&SeedResult> = r.seeds.iter().filter(|s| !s.passed()).collect();
    if !failing.is_empty() {
        println!("\nbuild: {}", Fingerprint::current());
        println!("\nfailing seeds ({}):", failing.len());
        for f in failing.iter().take(50) {
            println!(
                "\n{} seed {}: {} failure(s)",
                f.scenario, f.seed, f.failure_count
            );
            for v in f.failures.iter().take(3) {
                for (i, line) in v.lines().enumerate() {
                    println!("  {}{line}", if i == 0 { "- " } else { "  " });
                }
            }
            println!("  replay: {}", replay_command(&f.scenario, f.seed, plant));
        }
        if failing.len() > 50 {
            println!("\n... and {} more failing seeds", failing.len() - 50);
        }
    }
    for s in &r.scenarios {
        if !s.missing_edges.is_empty() {
            println!(
                "\nscenario {} never reached expected edge(s): {}",
                s.name,
                s.missing_edges.join(", ")
            );
        }
    }
    if r.stopped_early {
        println!("\nstopped at the first failure (--fail-fast)");
    }
    println!(
        "\n{}",
        if r.passed() {
            "laxsim: all seeds passed"
        } else {
            "laxsim: FAILED"
        }
    );
}

/// The `--json` summary.
pub fn json_summary(r: &SuiteResult, plant: Option<&str>) -> serde_json::Value {
    use serde_json::json;
    let failing: Vec<serde_json::Value> = r
        .seeds
        .iter()
        .filter(|s| !s.passed())
        .map(|s| {
            json!({
                "scenario": s.scenario,
                "seed": s.seed,
                "failures": s.failure_count,
                "first": s.failures.iter().take(3).collect::<Vec<_>>(),
                "replay": replay_command(&s.scenario, s.seed, plant),
            })
        })
        .collect();
    let scenarios: Vec<serde_json::Value> = r
        .scenarios
        .iter()
        .map(|s| {
            json!({
                "scenario": s.name,
                "seeds": s.seeds,
                "passed": s.passed,
                "failed": s.failed,
                "sim_time_s": s.sim_time.as_secs_f64(),
                "sessions": s.sessions,
                "messages": s.messages,
                "faults": s.faults,
                "wall_s": s.wall.as_secs_f64(),
                "seeds_per_s": s.seeds_per_s(),
                "edges": s.edges,
                "missing_edges": s.missing_edges,
            })
        })
        .collect();
    json!({
        "passed": r.passed(),
        "plant": plant,
        "elapsed_s": r.elapsed.as_secs_f64(),
        "stopped_early": r.stopped_early,
        "failing": failing,
        "scenarios": scenarios,
    })
}
