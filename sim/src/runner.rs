//! laxsim's own scenarios as tests of the one engine ([`crate::engine`]): a scenario becomes
//! a [`Def`] whose hosts are the workload's host programs (servers and clients,
//! [`crate::workload::host_main`]) and the hostile hosts ([`crate::rogue::rogue_main`]), and
//! whose coverage goals are the scenario's `expect_edges` and `expect_min` (the latter a
//! per-seed minimum the engine checks); [`run_seed`] runs one seed of it and collects the
//! verdict, edges and trace hash as an [`Outcome`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::{self, Ctx, Def, Goal, HostDef};
use crate::scenario::Scenario;
use crate::schedule::Fault;
use crate::state::{Shared, lock};
use crate::workload::{self, HostOpts};

/// How to run a seed.
#[derive(Debug, Clone, Default)]
pub struct RunOpts {
    /// The seed.
    pub seed: u64,
    /// A planted bug (`laxnet::planted::Bug` name) for every service.
    pub plant: Option<String>,
    /// Replay this fault schedule instead of drawing faults from the seed.
    pub schedule: Option<Vec<Fault>>,
    /// Switch the library's logging on.
    pub logging: bool,
    /// Print oracle events as they happen.
    pub echo: bool,
}

/// What one run produced.
pub struct Outcome {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// FNV-1a over the event log.
    pub hash: u64,
    /// Failed invariants, each with the session's last events (the first
    /// [`MAX_VIOLATIONS`](crate::state::MAX_VIOLATIONS)).
    pub violations: Vec<String>,
    /// How many invariants failed in all.
    pub violation_count: u64,
    /// Edge counts.
    pub edges: BTreeMap<String, u64>,
    /// Simulated time.
    pub sim_time: Duration,
    /// Sessions opened.
    pub sessions: u64,
    /// Messages delivered.
    pub messages: u64,
    /// Fault decisions taken.
    pub faults: u64,
    /// Every fault decision, in order (a schedule that replays this run).
    pub records: Vec<Fault>,
    /// The run's state, for timelines.
    pub state: Shared,
}

impl Outcome {
    /// True if no invariant failed.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// The engine's description of scenario `sc` run with `opts`.
pub fn scenario_def(sc: &Arc<Scenario>, opts: &RunOpts) -> Def {
    let hopts = HostOpts {
        seed: opts.seed,
        plant: opts.plant.clone(),
        logging: opts.logging,
    };
    let hosts = (0..sc.host_count())
        .map(|h| {
            let f: engine::HostFn = if sc.is_rogue(h) {
                Arc::new(|ctx: Ctx| Box::pin(crate::rogue::rogue_main(ctx)))
            } else {
                let hopts = hopts.clone();
                Arc::new(move |ctx: Ctx| Box::pin(workload::host_main(ctx, hopts.clone())))
            };
            HostDef {
                name: sc.host_name(h),
                client: !sc.is_server(h),
                finish: true,
                f,
            }
        })
        .collect();
    let goals = sc
        .expect_edges
        .iter()
        .filter(|e| !sc.expect_min.contains_key(*e))
        .map(|e| Goal {
            name: e.clone(),
            per_seed: 0,
        })
        .chain(sc.expect_min.iter().map(|(e, n)| Goal {
            name: e.clone(),
            per_seed: *n,
        }))
        .collect();
    Def {
        hosts,
        sc: sc.clone(),
        // Every host drains itself (and checks its service is back to empty) before its
        // program returns: the services are quiet by then.
        time_limit: Duration::from_millis(sc.duration_ms + sc.drain_ms),
        drain: Duration::from_millis(100),
        goals,
        workload: true,
        echo: opts.echo,
    }
}

/// Runs `opts.seed` of `sc`.
pub fn run_seed(sc: &Arc<Scenario>, opts: &RunOpts) -> Outcome {
    let def = scenario_def(sc, opts);
    let o = engine::run_seed(&def, opts.seed, opts.schedule.as_deref());
    let st = lock(&o.state);
    if let Ok(d) = std::env::var("LAXSIM_DUMP") {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let text: String = st.log.iter().map(|e| st.fmt_entry(e) + "\n").collect();
        let _ = std::fs::write(format!("{d}.{}.{n}", opts.seed), text);
    }
    let edges = st.edges.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    drop(st);
    Outcome {
        scenario: sc.name.clone(),
        seed: opts.seed,
        hash: o.hash,
        violations: o.violations,
        violation_count: o.violation_count,
        edges,
        sim_time: o.sim_time,
        sessions: o.sessions,
        messages: o.messages,
        faults: o.faults,
        records: o.records,
        state: o.state,
    }
}
