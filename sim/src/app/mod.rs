//! Simulation tests of your own service: laxsim as a library for the code users build on
//! laxnet.
//!
//! A plain `#[test]` describes hosts (servers and clients, each an async function that gets a
//! [`Ctx`] and makes its [`laxnet::Service`]s with [`Ctx::service`]), a fault profile
//! ([`Faults`]), and seeds; [`Sim::run`] runs every seed in the simulator on several threads
//! with laxsim's socket-fault layer under every service and the lifecycle oracle on every
//! session, checks the test's own invariants ([`Ctx::always`], [`Ctx::check`]) and coverage
//! goals ([`Ctx::sometimes`]), prints the summary, and on a failure panics with the seed, the
//! failed check, the last events of the sessions involved and the one command that replays
//! that seed alone.
//!
//! ```no_run
//! use laxnet::{Config, Protocol};
//! use laxnet_sim::{Faults, Sim};
//!
//! Sim::new("echo")
//!     .server("server", |ctx| async move {
//!         let svc = ctx.service(Config::default());
//!         let _acceptor = svc.accept("0.0.0.0:7000", Protocol::Bits).await?;
//!         std::future::pending::<()>().await;
//!         Ok(())
//!     })
//!     .client("client", |ctx| async move {
//!         let svc = ctx.service(Config::default());
//!         if let Ok(s) = svc.connect("server:7000", Protocol::Bits).await {
//!             s.close();
//!         }
//!         Ok(())
//!     })
//!     .faults(Faults::profile("socket-chaos").unwrap())
//!     .seeds(0..100)
//!     .run();
//! ```
//!
//! Environment variables (read by [`Sim::run`] and [`Sim::check`]): `LAXSIM_SEED=N` runs seed
//! `N` alone and prints its per-session timeline; `LAXSIM_TIMELINE=FILE.html` also writes
//! the timeline picture; `LAXSIM_SEEDS=A..B` replaces the seed range (CI runs more);
//! `LAXSIM_THREADS=N` the worker threads; `LAXSIM_CHECK_DETERMINISM=1` runs every seed twice
//! and fails a seed whose two runs differ, showing the first differing event;
//! `LAXSIM_SHRINK=1` (with `LAXSIM_SEED`) shrinks the failing seed's fault schedule
//! ([`Sim::shrink`]), writes it to a file (`LAXSIM_SHRINK=FILE` names it) and prints the
//! command that replays it: `LAXSIM_SCHEDULE=FILE` runs the seed with that schedule instead
//! of the faults its seed draws ([`Sim::run_schedule`]).
//!
//! The parts: [`faults`] the profiles; [`seeds`] many seeds, the determinism guard, the
//! [`Report`]. One seed runs on [`crate::engine`], the one engine laxsim's own scenarios run
//! on too ([`Ctx`], the lifecycle oracle over user sessions, the driver loop).

pub mod faults;
pub mod seeds;

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use crate::engine::{BoxError, Broken, Ctx, SeedOutcome};
pub use crate::schedule::{Fault, Schedule};
pub use crate::shrink::Shrunk;
pub use faults::Faults;
pub use seeds::{NONDETERMINISM_CAUSES, Report, SeedReport, first_difference};

use crate::engine::{self as drive, Def, Goal, HostDef};

/// How many runs `LAXSIM_SHRINK` may take (as `laxsim shrink`'s default).
const SHRINK_RUNS: usize = 300;

/// Reads a schedule file (JSON, as `LAXSIM_SHRINK` and `laxsim shrink` write it).
fn load_schedule(path: &Path) -> Result<Schedule, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    Schedule::parse(&text)
}

/// A simulation test: hosts, faults, seeds, goals. See the [module docs](self).
pub struct Sim {
    name: String,
    servers: Vec<HostDef>,
    clients: Vec<HostDef>,
    faults: Faults,
    seeds: Range<u64>,
    threads: usize,
    time_limit: Duration,
    drain: Duration,
    goals: Vec<Goal>,
    replay: Option<String>,
    cargo_args: String,
    determinism: bool,
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

fn parse_range(s: &str) -> Option<Range<u64>> {
    let (a, b) = s.split_once("..")?;
    Some(a.trim().parse().ok()?..b.trim().parse().ok()?)
}

impl Sim {
    /// A test named `name` (in the summary and the replay command), with no hosts, no
    /// faults, seeds `0..100`.
    pub fn new(name: impl Into<String>) -> Sim {
        Sim {
            name: name.into(),
            servers: Vec::new(),
            clients: Vec::new(),
            faults: Faults::none(),
            seeds: 0..100,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            time_limit: Duration::from_secs(60),
            drain: Duration::from_secs(5),
            goals: Vec::new(),
            replay: None,
            cargo_args: String::new(),
            determinism: false,
        }
    }

    fn host<F, Fut>(name: &str, client: bool, f: F) -> HostDef
    where
        F: Fn(Ctx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + 'static,
    {
        HostDef {
            name: name.to_string(),
            client,
            finish: client,
            f: Arc::new(move |ctx| Box::pin(f(ctx))),
        }
    }

    /// A server host named `name` (others reach it at `"{name}:{port}"`). `f` runs once per
    /// incarnation: at the start, and again after each crash of the host. A server runs until
    /// the run ends; its returning early is no failure.
    pub fn server<F, Fut>(mut self, name: &str, f: F) -> Sim
    where
        F: Fn(Ctx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + 'static,
    {
        self.servers.push(Sim::host(name, false, f));
        self
    }

    /// A client host named `name`. The run's work is done when every client's function has
    /// returned; then every service must go quiet (no session, buffer or handshake left)
    /// within the drain time. Close your sessions before returning.
    pub fn client<F, Fut>(mut self, name: &str, f: F) -> Sim
    where
        F: Fn(Ctx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + 'static,
    {
        self.clients.push(Sim::host(name, true, f));
        self
    }

    /// The fault profile (default [`Faults::none`]).
    pub fn faults(mut self, faults: Faults) -> Sim {
        self.faults = faults;
        self
    }

    /// The seeds to run (default `0..100`; `LAXSIM_SEEDS=A..B` overrides).
    pub fn seeds(mut self, seeds: Range<u64>) -> Sim {
        self.seeds = seeds;
        self
    }

    /// Worker threads (default: the machine's parallelism; `LAXSIM_THREADS` overrides).
    pub fn threads(mut self, n: usize) -> Sim {
        self.threads = n.max(1);
        self
    }

    /// Simulated time the clients have to finish (default 60 s).
    pub fn time_limit(mut self, d: Duration) -> Sim {
        self.time_limit = d;
        self
    }

    /// Simulated time every service has to go quiet once the clients finished (default 5 s).
    pub fn drain(mut self, d: Duration) -> Sim {
        self.drain = d;
        self
    }

    /// Declares a coverage goal that [`Ctx::sometimes`] must reach in at least one seed
    /// (goals only named by `Ctx::sometimes` are declared when first called).
    /// laxsim's lifecycle edges count in the same counters (`laxnet_sim::edges::EDGES`:
    /// `host-restart`, `heartbeat-expiry`, ...), so they can be goals too.
    pub fn sometimes(mut self, goal: &str) -> Sim {
        self.goals.push(Goal {
            name: goal.to_string(),
            per_seed: 0,
        });
        self
    }

    /// Declares a coverage goal that every seed must reach at least `n` times (a seed that
    /// reaches it fewer times fails; laxsim's scenario files say this with `expect_min`). It
    /// is reached by [`Ctx::sometimes`] or, for a lifecycle edge, by laxsim's oracle.
    pub fn at_least(mut self, goal: &str, n: u64) -> Sim {
        self.goals.push(Goal {
            name: goal.to_string(),
            per_seed: n,
        });
        self
    }

    /// The command that replays one seed, with `{seed}` for the seed (default: derived from
    /// the test binary and the test's name, e.g. `LAXSIM_SEED={seed} cargo test -p mycrate
    /// --test sim my_test -- --exact --nocapture`). Name features here if the test needs
    /// them.
    pub fn replay_command(mut self, cmd: impl Into<String>) -> Sim {
        self.replay = Some(cmd.into());
        self
    }

    /// Extra `cargo test` arguments for the derived replay command, such as the features the
    /// test was built with (`"--features my-feature"`).
    pub fn cargo_args(mut self, args: &str) -> Sim {
        if !self.cargo_args.is_empty() {
            self.cargo_args.push(' ');
        }
        self.cargo_args.push_str(args);
        self
    }

    /// Runs every seed twice and fails the seeds whose two runs differ (also
    /// `LAXSIM_CHECK_DETERMINISM=1`).
    pub fn check_determinism(mut self, on: bool) -> Sim {
        self.determinism = on;
        self
    }

    fn def(&self) -> Def {
        let sc = self.faults.scenario(
            &self.name,
            self.servers.len() as u16,
            self.clients.len() as u16,
        );
        Def {
            hosts: self
                .servers
                .iter()
                .chain(self.clients.iter())
                .cloned()
                .collect(),
            sc: Arc::new(sc),
            time_limit: self.time_limit,
            drain: self.drain,
            goals: self.goals.clone(),
            workload: false,
            echo: false,
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.servers.is_empty() || self.clients.is_empty() {
            return Err(format!(
                "simulation test {}: needs at least one server and one client",
                self.name
            ));
        }
        let mut names: Vec<&str> = self
            .servers
            .iter()
            .chain(self.clients.iter())
            .map(|h| h.name.as_str())
            .collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("two hosts named {:?}", w[0]));
        }
        Ok(())
    }

    /// One seed, once: its outcome (event log, sessions, failures). Ignores the environment.
    pub fn run_seed(&self, seed: u64) -> SeedOutcome {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        drive::run_seed(&self.def(), seed, None)
    }

    /// Runs `seed` twice; `Err` with the first differing event if the runs differ.
    pub fn determinism(&self, seed: u64) -> Result<(), String> {
        let a = self.run_seed(seed);
        let b = self.run_seed(seed);
        match first_difference(&a, &b) {
            Some(d) => Err(d),
            None => Ok(()),
        }
    }

    /// The replay command template (`{seed}` for the seed).
    fn replay_template(&self) -> String {
        if let Some(r) = &self.replay {
            return if r.contains("{seed}") {
                r.clone()
            } else {
                format!("LAXSIM_SEED={{seed}} {r}")
            };
        }
        let pkg = std::env::var("CARGO_PKG_NAME").ok();
        let exe = std::env::current_exe().ok();
        let stem = exe
            .as_ref()
            .and_then(|p| p.file_stem())
            .map(|s| s.to_string_lossy().into_owned());
        // Test binaries are named `<target>-<hash>`.
        let target = stem.map(|s| match s.rsplit_once('-') {
            Some((t, h)) if h.len() == 16 && h.chars().all(|c| c.is_ascii_hexdigit()) => {
                t.to_string()
            }
            _ => s,
        });
        let test = std::thread::current()
            .name()
            .filter(|n| *n != "main")
            .map(str::to_string);
        let mut cmd = String::from("LAXSIM_SEED={seed} cargo test");
        if let Some(p) = &pkg {
            cmd.push_str(&format!(" -p {p}"));
        }
        if !self.cargo_args.is_empty() {
            cmd.push(' ');
            cmd.push_str(&self.cargo_args);
        }
        match (&target, &pkg) {
            (Some(t), Some(p)) if *t == p.replace('-', "_") => cmd.push_str(" --lib"),
            (Some(t), _) => cmd.push_str(&format!(" --test {t}")),
            _ => {}
        }
        match test {
            Some(t) => cmd.push_str(&format!(" -- {t} --exact --nocapture")),
            None => cmd.push_str(" -- --nocapture"),
        }
        cmd
    }

    /// Runs the test and returns its report (prints nothing but what `LAXSIM_SEED`,
    /// `LAXSIM_SHRINK` and `LAXSIM_SCHEDULE` ask for). The environment variables of the
    /// [module docs](self) apply.
    pub fn check(&self) -> Report {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let def = self.def();
        let schedule = std::env::var_os("LAXSIM_SCHEDULE").map(|p| {
            let p = PathBuf::from(p);
            load_schedule(&p).unwrap_or_else(|e| panic!("LAXSIM_SCHEDULE={}: {e}", p.display()))
        });
        let env_seed = std::env::var("LAXSIM_SEED")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        if let (Some(s), Some(e)) = (&schedule, env_seed)
            && s.seed != e
        {
            panic!(
                "LAXSIM_SCHEDULE is a schedule of seed {}, LAXSIM_SEED says {e}",
                s.seed
            );
        }
        let single = schedule.as_ref().map(|s| s.seed).or(env_seed);
        let seeds: Vec<u64> = match single {
            Some(s) => vec![s],
            None => std::env::var("LAXSIM_SEEDS")
                .ok()
                .and_then(|s| parse_range(&s))
                .unwrap_or(self.seeds.clone())
                .collect(),
        };
        let threads = std::env::var("LAXSIM_THREADS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(self.threads)
            .clamp(1, seeds.len().max(1));
        let twice = self.determinism || env_flag("LAXSIM_CHECK_DETERMINISM");
        let start = seeds::now();
        let (reports, mut goals, first_fail) = match &schedule {
            Some(sched) => {
                let o = drive::run_seed(&def, sched.seed, Some(&sched.faults));
                let goals: BTreeMap<String, u64> = o
                    .reached
                    .iter()
                    .map(|(g, n)| (g.clone(), u64::from(*n > 0)))
                    .collect();
                let r = seeds::summarize(&o, None);
                let keep = (!o.passed()).then_some(o);
                (vec![r], goals, keep)
            }
            None => seeds::run_seeds(&def, seeds, threads, twice),
        };
        for g in &self.goals {
            goals.entry(g.name.clone()).or_default();
        }
        let mut report = Report {
            name: self.name.clone(),
            profile: self.faults.name().to_string(),
            seeds: reports,
            goals,
            goals_checked: single.is_none(),
            threads,
            elapsed: start.elapsed(),
            replay: match std::env::var_os("LAXSIM_SCHEDULE") {
                Some(p) if schedule.is_some() => format!(
                    "LAXSIM_SCHEDULE={} {}",
                    Path::new(&p).display(),
                    self.replay_template()
                ),
                _ => self.replay_template(),
            },
        };
        if let Some(seed) = single {
            let script = schedule.as_ref().map(|s| s.faults.as_slice());
            self.show_single(&def, seed, first_fail.as_ref(), script);
            if schedule.is_some() {
                println!(
                    "(seed {seed} ran with the fault schedule of LAXSIM_SCHEDULE, not its own faults)"
                );
            } else if let Some(target) =
                std::env::var_os("LAXSIM_SHRINK").filter(|v| !v.is_empty() && v != "0")
            {
                self.shrink_and_show(seed, first_fail.is_some(), &target, &report);
            }
        }
        report.elapsed = start.elapsed();
        report
    }

    /// Runs `seed` with `schedule`'s fault decisions instead of drawing its own (the
    /// schedule's seed still drives latencies, your code's randomness and the library's).
    /// Ignores the environment.
    pub fn run_schedule(&self, schedule: &Schedule) -> SeedOutcome {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        drive::run_seed(&self.def(), schedule.seed, Some(&schedule.faults))
    }

    /// Shrinks the fault schedule of failing `seed`: drops and weakens fault decisions for
    /// as long as the run still fails with the same first failure (numbers and ids aside),
    /// in at most `max_runs` runs; `progress` hears how it goes. `Err` if the seed passes or
    /// its recorded schedule does not reproduce the failure. Ignores the environment.
    pub fn shrink(
        &self,
        seed: u64,
        max_runs: usize,
        mut progress: impl FnMut(&str),
    ) -> Result<Shrunk, String> {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let def = self.def();
        let first = drive::run_seed(&def, seed, None);
        let Some(v0) = first.violations.first() else {
            return Err(format!(
                "{} seed {seed} passes: nothing to shrink",
                self.name
            ));
        };
        let sig = crate::shrink::signature(v0);
        let faults = first.records.clone();
        drop(first);
        let original = faults.len();
        let mut runs = 1;
        let fails = |f: &[Fault], runs: &mut usize| -> bool {
            *runs += 1;
            let o = drive::run_seed(&def, seed, Some(f));
            o.violations
                .iter()
                .any(|v| crate::shrink::signature(v) == sig)
        };
        if !fails(&faults, &mut runs) {
            return Err(
                "the recorded schedule does not reproduce the failure (nondeterminism?)".into(),
            );
        }
        progress(&format!("{original} fault decisions; preserving: {sig}"));
        let faults = crate::shrink::minimize(faults, max_runs, &mut runs, fails, progress);
        let last = drive::run_seed(&def, seed, Some(&faults));
        runs += 1;
        Ok(Shrunk {
            schedule: Schedule {
                scenario: self.name.clone(),
                seed,
                plant: None,
                faults,
            },
            original,
            runs,
            signature: sig,
            first_violation: last.violations.first().cloned().unwrap_or_default(),
        })
    }

    /// `LAXSIM_SHRINK`: shrinks `seed`, writes the schedule to `target` (`1`: a file in the
    /// temporary directory) and prints it with the command that replays it.
    fn shrink_and_show(&self, seed: u64, failed: bool, target: &std::ffi::OsStr, r: &Report) {
        if !failed {
            println!("LAXSIM_SHRINK: seed {seed} passed, nothing to shrink");
            return;
        }
        let path = if target == "1" {
            let stem: String = self
                .name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            std::env::temp_dir().join(format!("laxsim-{stem}-seed{seed}.schedule.json"))
        } else {
            PathBuf::from(target)
        };
        println!("shrinking the fault schedule of seed {seed} (at most {SHRINK_RUNS} runs)");
        let s = match self.shrink(seed, SHRINK_RUNS, |m| println!("shrink: {m}")) {
            Ok(s) => s,
            Err(e) => {
                println!("LAXSIM_SHRINK: {e}");
                return;
            }
        };
        println!(
            "shrunk {} fault decisions to {} in {} runs; still fails with: {}",
            s.original,
            s.schedule.faults.len(),
            s.runs,
            s.first_violation.lines().next().unwrap_or("")
        );
        for f in &s.schedule.faults {
            println!("  {f:?}");
        }
        let text = serde_json::to_string_pretty(&s.schedule).unwrap_or_default();
        match std::fs::write(&path, text + "\n") {
            Ok(()) => println!(
                "schedule written to {}\nreplay it: LAXSIM_SCHEDULE={} {}",
                path.display(),
                path.display(),
                r.replay_command(seed)
            ),
            Err(e) => println!("cannot write {}: {e}", path.display()),
        }
    }

    /// `LAXSIM_SEED`: the seed's timeline as text, and as HTML with `LAXSIM_TIMELINE`.
    fn show_single(
        &self,
        def: &Def,
        seed: u64,
        failed: Option<&SeedOutcome>,
        script: Option<&[Fault]>,
    ) {
        let rerun;
        let o = match failed {
            Some(o) => o,
            None => {
                rerun = drive::run_seed(def, seed, script);
                &rerun
            }
        };
        let st = crate::state::lock(&o.state);
        println!("{}", crate::timeline::text(&st));
        if let Some(path) = std::env::var_os("LAXSIM_TIMELINE").map(PathBuf::from) {
            let title = format!("{} seed {seed}", self.name);
            match std::fs::write(&path, crate::timeline::html(&st, &title)) {
                Ok(()) => println!("timeline written to {}", path.display()),
                Err(e) => println!("cannot write {}: {e}", path.display()),
            }
        }
    }

    /// Runs the test, prints the summary, and panics (failing the `#[test]`) if a seed failed
    /// or a coverage goal was never reached.
    pub fn run(self) {
        let r = self.check();
        println!("{r}");
        if !r.passed() {
            let first = r.failing().next().map(|s| {
                format!(
                    "\nfirst failing seed {}: {}\nreplay it alone: {}",
                    s.seed,
                    s.failures.first().map_or("", |f| f.as_str()),
                    r.replay_command(s.seed)
                )
            });
            panic!(
                "simulation test {} failed{}",
                self.name,
                first.unwrap_or_else(|| ": coverage goals not reached".into())
            );
        }
    }
}
