//! Many seeds of a user's simulation test on several threads, the determinism guard (a seed
//! run twice, the first differing event and its usual causes), and the [`Report`]: the
//! summary table, the coverage goals, and for every failing seed its failures and the one
//! command that replays it.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // wall clock for seeds/s only

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engine::{Def, SeedOutcome, log_lines, run_seed};
use crate::log::{ev_id, fmt_id};
use crate::state::lock;

/// The usual causes of a seed that does not replay, for the determinism guard's report.
pub const NONDETERMINISM_CAUSES: &str = "\
the usual causes, in code that runs on a simulated host:
  - a tokio::select! without `biased;` (its branch order is drawn from tokio's RNG, which
    turmoil seeds only with --cfg tokio_unstable; write `biased;` first in every select!)
  - iterating a HashMap/HashSet where the order matters (use BTreeMap/BTreeSet)
  - real time: std::time::Instant::now, SystemTime (use tokio::time or Ctx::elapsed, which
    are simulated)
  - unseeded randomness: rand::thread_rng, OsRng, getrandom (use Ctx::rng)
  - threads of your own, blocking I/O, or global state shared between seeds (statics,
    thread-locals, lazy caches)";

/// One seed in a report.
#[derive(Debug, Clone)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// Failures, each with the last events of the sessions involved (empty: passed).
    pub failures: Vec<String>,
    /// All failed checks, counted.
    pub failure_count: u64,
    /// The trace hash.
    pub hash: u64,
    /// Simulated time.
    pub sim_time: Duration,
    /// Sessions opened.
    pub sessions: u64,
    /// Watched messages delivered.
    pub messages: u64,
    /// Fault decisions.
    pub faults: u64,
    /// Wall time.
    pub wall: Duration,
}

impl SeedReport {
    /// True if no check failed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The result of a simulation test.
#[derive(Debug, Clone)]
pub struct Report {
    /// The test's name.
    pub name: String,
    /// The fault profile's name.
    pub profile: String,
    /// Every seed run, in seed order.
    pub seeds: Vec<SeedReport>,
    /// Coverage goals: name → seeds that reached it.
    pub goals: BTreeMap<String, u64>,
    /// True when the goals count (a whole suite, not one replayed seed).
    pub goals_checked: bool,
    /// Worker threads.
    pub threads: usize,
    /// Real time.
    pub elapsed: Duration,
    /// The command that replays one seed (`{seed}` stands for the seed).
    pub replay: String,
}

impl Report {
    /// Goals no seed reached.
    pub fn missing_goals(&self) -> Vec<&str> {
        if !self.goals_checked {
            return Vec::new();
        }
        self.goals
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(g, _)| g.as_str())
            .collect()
    }

    /// True if every seed passed and every goal was reached.
    pub fn passed(&self) -> bool {
        self.seeds.iter().all(|s| s.passed()) && self.missing_goals().is_empty()
    }

    /// The failing seeds.
    pub fn failing(&self) -> impl Iterator<Item = &SeedReport> {
        self.seeds.iter().filter(|s| !s.passed())
    }

    /// The command that replays `seed` alone.
    pub fn replay_command(&self, seed: u64) -> String {
        self.replay.replace("{seed}", &seed.to_string())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.seeds.len() as u64;
        let passed = self.seeds.iter().filter(|s| s.passed()).count() as u64;
        let sum = |g: fn(&SeedReport) -> u64| self.seeds.iter().map(g).sum::<u64>();
        let sim: Duration = self.seeds.iter().map(|s| s.sim_time).sum();
        writeln!(
            f,
            "{:<24} {:>6} {:>6} {:>6} {:>10} {:>9} {:>10} {:>9} {:>8} {:>8}",
            "test (profile)",
            "seeds",
            "passed",
            "failed",
            "sim time",
            "sessions",
            "messages",
            "faults",
            "wall",
            "seeds/s"
        )?;
        writeln!(
            f,
            "{:<24} {:>6} {:>6} {:>6} {:>9.1}s {:>9} {:>10} {:>9} {:>7.2}s {:>8.1}",
            format!("{} ({})", self.name, self.profile),
            n,
            passed,
            n - passed,
            sim.as_secs_f64(),
            sum(|s| s.sessions),
            sum(|s| s.messages),
            sum(|s| s.faults),
            self.elapsed.as_secs_f64(),
            n as f64 / self.elapsed.as_secs_f64().max(1e-9)
        )?;
        writeln!(
            f,
            "({} worker threads; wall and seeds/s are real time)",
            self.threads
        )?;
        if !self.goals.is_empty() {
            writeln!(f, "\ncoverage goals (seeds that reached it / seeds run):")?;
            for (g, k) in &self.goals {
                let mark = if *k == 0 && self.goals_checked {
                    "  NEVER REACHED"
                } else {
                    ""
                };
                writeln!(f, "  {g:<40} {k:>6}/{n}{mark}")?;
            }
        }
        let failing: Vec<&SeedReport> = self.failing().collect();
        if !failing.is_empty() {
            writeln!(f, "\nfailing seeds ({}):", failing.len())?;
            for s in failing.iter().take(20) {
                writeln!(f, "\nseed {}: {} failure(s)", s.seed, s.failure_count)?;
                for v in s.failures.iter().take(3) {
                    for (i, line) in v.lines().enumerate() {
                        writeln!(f, "  {}{line}", if i == 0 { "- " } else { "  " })?;
                    }
                }
                writeln!(f, "  replay: {}", self.replay_command(s.seed))?;
            }
            if failing.len() > 20 {
                writeln!(f, "\n... and {} more failing seeds", failing.len() - 20)?;
            }
        }
        let missing = self.missing_goals();
        if !missing.is_empty() {
            writeln!(
                f,
                "\ncoverage goal(s) no seed reached: {}",
                missing.join(", ")
            )?;
        }
        write!(
            f,
            "\n{}",
            if self.passed() {
                format!("laxsim: {}: all seeds passed", self.name)
            } else {
                format!("laxsim: {}: FAILED", self.name)
            }
        )
    }
}

/// Where two runs of one seed first differ, with the events before it and the sessions it
/// concerns, and the usual causes; `None` if the event logs are the same.
pub fn first_difference(a: &SeedOutcome, b: &SeedOutcome) -> Option<String> {
    let (sa, sb) = (lock(&a.state), lock(&b.state));
    let (la, lb) = (log_lines(&sa), log_lines(&sb));
    let i = (0..la.len().max(lb.len())).find(|&i| la.get(i) != lb.get(i))?;
    let mut out = format!(
        "seed {} is not deterministic: two runs differ at event {i} of {}/{} (trace hashes {:016x} / {:016x})\n",
        a.seed,
        la.len(),
        lb.len(),
        a.hash,
        b.hash
    );
    out.push_str("  the same before it:\n");
    for l in &la[i.saturating_sub(5)..i] {
        out.push_str(&format!("      {l}\n"));
    }
    out.push_str(&format!(
        "  first run:  {}\n  second run: {}\n",
        la.get(i).map_or("(log ended)", |s| s.as_str()),
        lb.get(i).map_or("(log ended)", |s| s.as_str())
    ));
    let ids: BTreeSet<u32> = [sa.log.get(i), sb.log.get(i)]
        .into_iter()
        .flatten()
        .filter_map(|e| ev_id(&e.ev))
        .collect();
    if !ids.is_empty() {
        let names: Vec<String> = ids.iter().map(|id| fmt_id(*id)).collect();
        out.push_str(&format!("  sessions involved: {}\n", names.join(", ")));
    }
    out.push_str(NONDETERMINISM_CAUSES);
    Some(out)
}

pub(crate) fn summarize(o: &SeedOutcome, extra: Option<String>) -> SeedReport {
    let mut failures = o.violations.clone();
    let mut count = o.violation_count;
    if let Some(e) = extra {
        failures.insert(0, e);
        count += 1;
    }
    SeedReport {
        seed: o.seed,
        failures,
        failure_count: count,
        hash: o.hash,
        sim_time: o.sim_time,
        sessions: o.sessions,
        messages: o.messages,
        faults: o.faults,
        wall: o.wall,
    }
}

/// One seed, run twice when `twice` (the second run must replay the first exactly).
pub(crate) fn one_seed(def: &Def, seed: u64, twice: bool) -> (SeedOutcome, SeedReport) {
    let o = run_seed(def, seed, None);
    let extra = if twice {
        let again = run_seed(def, seed, None);
        first_difference(&o, &again)
    } else {
        None
    };
    let r = summarize(&o, extra);
    (o, r)
}

/// Runs `seeds` of `def` on `threads` threads. Returns the seed reports (in seed order), the
/// goals reached (name → seeds), and the outcome of the first failing seed.
pub(crate) fn run_seeds(
    def: &Def,
    seeds: Vec<u64>,
    threads: usize,
    twice: bool,
) -> (Vec<SeedReport>, BTreeMap<String, u64>, Option<SeedOutcome>) {
    let queue = Arc::new(Mutex::new(seeds.into_iter().collect::<VecDeque<u64>>()));
    let (tx, rx) = mpsc::channel::<(SeedReport, BTreeMap<String, u64>, Option<SeedOutcome>)>();
    let mut workers = Vec::new();
    for w in 0..threads.max(1) {
        let queue = queue.clone();
        let tx = tx.clone();
        let def = def.clone();
        let h = std::thread::Builder::new()
            .name(format!("laxsim-app-{w}"))
            .stack_size(64 << 20)
            .spawn(move || {
                loop {
                    let Some(seed) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
                    else {
                        return;
                    };
                    let (o, r) = one_seed(&def, seed, twice);
                    let reached = o.reached.clone();
                    let keep = (!r.passed()).then_some(o);
                    if tx.send((r, reached, keep)).is_err() {
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
    let mut reports = Vec::new();
    let mut goals: BTreeMap<String, u64> = BTreeMap::new();
    let mut first_fail: Option<SeedOutcome> = None;
    for (r, reached, o) in rx {
        for (g, n) in reached {
            *goals.entry(g).or_default() += u64::from(n > 0);
        }
        if let Some(o) = o
            && first_fail.as_ref().is_none_or(|f| o.seed < f.seed)
        {
            first_fail = Some(o);
        }
        reports.push(r);
    }
    for w in workers {
        let _ = w.join();
    }
    reports.sort_by_key(|r| r.seed);
    (reports, goals, first_fail)
}

/// The time a suite started, for the report.
pub(crate) fn now() -> Instant {
    Instant::now()
}
