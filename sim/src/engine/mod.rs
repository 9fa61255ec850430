//! The one simulation engine: a seed of a test, start to verdict. Users' simulation tests
//! ([`crate::app::Sim`]) and laxsim's own scenarios ([`crate::runner`]) both describe a run
//! as a [`Def`] (hosts, each an async function of a [`Ctx`]; the scenario with its faults;
//! coverage goals) and run it here; there is no other driver loop.
//!
//! [`run_seed`] builds the turmoil simulation with the hosts (each incarnation of a host runs
//! its function with a fresh [`Ctx`]), applies the planned network faults ([`net`]:
//! partitions, holds, spikes, server crashes and restarts), checks the `always` invariants
//! after every step, waits for the hosts that must finish to return and the services to go
//! quiet, then runs the end-of-run checks ([`checks`]): every session closed exactly once, no
//! ref or id reaching past its `Closed`, close reasons that match across each connection not
//! cut by a fault, no session, buffer or handshake left, no panic counted, and every coverage
//! goal with a per-seed minimum reached that often. (Heartbeat honesty is checked at each
//! `Closed`, in [`world`].) A run of laxsim's workloads ([`Def::workload`]) also runs the
//! workload oracle's own per-step and end-of-run checks over the state the workload hooks
//! fill ([`crate::state`]).
// SystemTime: only the fixed turmoil epoch; Instant: the wall time a seed took, reported only.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

pub mod checks;
pub mod net;
pub mod panics;
pub mod world;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use laxnet::{Service, SessionRef};

use crate::faulty::Graveyard;
use crate::log::{Ev, fmt_id};
use crate::scenario::Scenario;
use crate::schedule::{Fault, Recorder};
use crate::state::{Shared, State, lock};
use checks::{end_checks, probe_closed, quiet, run_checks};
use net::{actions, apply};
pub use panics::catch_sim_panics;
pub(crate) use world::{App, AppHost, World};
pub use world::{Broken, Ctx};

/// The error a host function may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A host's software: called once per incarnation.
pub type HostFn =
    Arc<dyn Fn(Ctx) -> Pin<Box<dyn Future<Output = Result<(), BoxError>>>> + Send + Sync>;

/// One host of a run.
#[derive(Clone)]
pub struct HostDef {
    /// Its name on the simulated network.
    pub name: String,
    /// A client: its services get the client side's socket faults (else the server side's).
    pub client: bool,
    /// The run's work is done only when this host's function has returned.
    pub finish: bool,
    /// Its software.
    pub f: HostFn,
}

/// A coverage goal: `per_seed` > 0 asks every seed to reach it that often (checked by the
/// engine); every goal is also reported across seeds, where reaching it in no seed fails a
/// test (checked by the caller over many seeds).
#[derive(Clone, Debug)]
pub struct Goal {
    /// Its name: a test's own (`Ctx::sometimes`) or a lifecycle edge laxsim counts
    /// ([`crate::edges::EDGES`]).
    pub name: String,
    /// Times every seed must reach it (0: no per-seed minimum).
    pub per_seed: u64,
}

/// What every seed of a test runs.
#[derive(Clone)]
pub struct Def {
    /// In the order of the scenario's host indices (servers, clients, rogues).
    pub hosts: Vec<HostDef>,
    /// The scenario: network, socket faults and fault plan (and, for laxsim's own
    /// scenarios, the workload).
    pub sc: Arc<Scenario>,
    /// Simulated time the finishing hosts have to return.
    pub time_limit: Duration,
    /// Simulated time the services have to go quiet after that.
    pub drain: Duration,
    /// The declared coverage goals.
    pub goals: Vec<Goal>,
    /// The hosts run laxsim's workloads: the workload oracle's per-step check (tasks waiting
    /// in `ready()`) and end-of-run checks (`State::final_checks`) run too.
    pub workload: bool,
    /// Print events as they happen.
    pub echo: bool,
}

/// What one seed produced.
pub struct SeedOutcome {
    /// The seed.
    pub seed: u64,
    /// FNV-1a over the event log (two runs of one seed must agree).
    pub hash: u64,
    /// Failed checks, each with the last events of the sessions involved.
    pub violations: Vec<String>,
    /// How many checks failed in all.
    pub violation_count: u64,
    /// Simulated time.
    pub sim_time: Duration,
    /// Sessions opened.
    pub sessions: u64,
    /// Messages of watched types delivered.
    pub messages: u64,
    /// Fault decisions taken.
    pub faults: u64,
    /// Coverage goals seen in this run: name → times reached.
    pub reached: BTreeMap<String, u64>,
    /// Every fault decision, in order (a schedule that replays this run).
    pub records: Vec<Fault>,
    /// The run's state (event log, sessions), for timelines and determinism diffs.
    pub state: Shared,
    /// Wall time of the run.
    pub wall: Duration,
}

impl SeedOutcome {
    /// True if no check failed.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Drops a host incarnation's graveyards (in creation order) when its main future goes.
struct Graves(Arc<Mutex<Vec<Graveyard>>>);

impl Drop for Graves {
    fn drop(&mut self) {
        let all = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        for g in all {
            drop(g);
        }
    }
}

async fn host_main(world: Arc<World>, h: u16, name: Arc<str>, f: HostFn) -> turmoil::Result {
    let inc = {
        let mut st = lock(&world.shared);
        let host = &mut st.hosts[h as usize];
        host.inc = host.starts;
        host.starts += 1;
        host.down = false;
        let inc = host.inc;
        st.log(h, Ev::Start { inc });
        inc
    };
    {
        let mut app = world.app();
        let host = &mut app.hosts[h as usize];
        host.down = false;
        host.finished = false;
        host.checks.clear();
    }
    let graves = Arc::new(Mutex::new(Vec::new()));
    let _graves = Graves(graves.clone());
    let ctx = Ctx {
        world: world.clone(),
        host: h,
        inc,
        name: name.clone(),
        graves,
    };
    let res = f(ctx).await;
    if let Err(e) = res {
        world.fail(
            Some(h),
            None,
            &[],
            format!("host {name} returned an error: {e}"),
        );
    }
    world.app().hosts[h as usize].finished = true;
    lock(&world.shared).log(
        h,
        Ev::User {
            id: None,
            what: "host function returned".into(),
        },
    );
    // The host stays up (its services' tasks keep running) until the run ends.
    std::future::pending::<()>().await;
    Ok(())
}

/// Runs `seed` of `def`; with `schedule`, replays those fault decisions instead of drawing.
pub fn run_seed(def: &Def, seed: u64, schedule: Option<&[Fault]>) -> SeedOutcome {
    let started = Instant::now();
    let rec = match schedule {
        Some(s) => Recorder::scripted(s),
        None => Recorder::random(seed),
    };
    let mut state = State::new(def.sc.clone(), seed, rec);
    state.echo = def.echo;
    for (i, h) in def.hosts.iter().enumerate() {
        state.hosts[i].name = h.name.clone();
    }
    let plan = state.rec.plan(&def.sc, schedule);
    let shared: Shared = Arc::new(Mutex::new(state));
    let world = Arc::new(World {
        shared: shared.clone(),
        app: Mutex::new(App {
            hosts: def
                .hosts
                .iter()
                .map(|h| AppHost {
                    finished: false,
                    client: h.client,
                    finish: h.finish,
                    down: false,
                    checks: Vec::new(),
                })
                .collect(),
            ..App::default()
        }),
        seed,
    });
    let run = format!("{} seed {seed}", def.sc.name);
    let (res, panics) = catch_sim_panics(&run, || drive(def, &world, &plan, schedule.is_some()));
    let sim_time = match res {
        Ok(t) => t,
        Err(_) => Duration::from_micros(lock(&shared).now_us),
    };
    {
        let mut st = lock(&shared);
        for p in panics {
            st.violation(None, None, format!("panic: {p}"));
        }
        st.frozen = true;
    }
    // Break the cycles (service → subscriber → world → service; checks → user state).
    let (services, refs, checks) = {
        let mut app = world.app();
        let services: Vec<Service> = app
            .services
            .iter_mut()
            .filter_map(|s| s.svc.take())
            .collect();
        let refs: Vec<SessionRef> = std::mem::take(&mut app.followed)
            .into_values()
            .map(|f| f.sref)
            .collect();
        let checks: Vec<_> = app
            .hosts
            .iter_mut()
            .flat_map(|h| std::mem::take(&mut h.checks))
            .collect();
        (services, refs, checks)
    };
    // The workload's handles into the state (service → runtime → state → service).
    let handles = lock(&shared).release_handles();
    drop((services, refs, checks, handles));
    let named = std::mem::take(&mut world.app().named);
    let st = lock(&shared);
    let reached: BTreeMap<String, u64> = def
        .goals
        .iter()
        .map(|g| g.name.clone())
        .chain(named)
        .map(|g| {
            let n = st.reached(&g);
            (g, n)
        })
        .collect();
    let violations = st
        .violations
        .iter()
        .map(|v| describe(&st, v.t_us, v.host, v.sess, &v.what))
        .collect();
    let out = SeedOutcome {
        seed,
        hash: st.trace_hash(),
        violations,
        violation_count: st.violation_count,
        sim_time,
        sessions: st.sessions.len() as u64,
        messages: st.delivered,
        faults: st.faults_injected(),
        reached,
        records: st.rec.records.clone(),
        state: shared.clone(),
        wall: started.elapsed(),
    };
    drop(st);
    out
}

/// A violation for people: when, where, what, and the last events of the session involved
/// (or of the host, when no session is named).
fn describe(st: &State, t_us: u64, host: Option<u16>, sess: Option<usize>, what: &str) -> String {
    let mut s = format!(
        "t={:.3}ms {}: {what}",
        t_us as f64 / 1000.0,
        host.and_then(|h| st.hosts.get(h as usize))
            .map_or("-", |h| h.name.as_str()),
    );
    if let Some(idx) = sess {
        let ss = &st.sessions[idx];
        s.push_str(&format!(
            "\n      last events of {} on {}:",
            fmt_id(ss.id),
            st.hosts[ss.host as usize].name
        ));
        for l in st.session_tail(idx, 12) {
            s.push_str("\n        ");
            s.push_str(&l);
        }
    } else if let Some(h) = host {
        let mine: Vec<_> = st
            .log
            .iter()
            .filter(|e| e.host == h && !matches!(e.ev, Ev::Violation { .. }))
            .collect();
        if !mine.is_empty() {
            s.push_str(&format!(
                "\n      last events of {}:",
                st.hosts[h as usize].name
            ));
            for e in &mine[mine.len().saturating_sub(8)..] {
                s.push_str("\n        ");
                s.push_str(&st.fmt_entry(e));
            }
        }
    }
    s
}

/// The step loop. Returns the simulated time.
fn drive(def: &Def, world: &Arc<World>, plan: &[Fault], scripted: bool) -> Duration {
    let sc = &def.sc;
    let (lat_min, lat_max) = plan
        .iter()
        .find_map(|f| match f {
            Fault::Latency { min_ms, max_ms } => Some((*min_ms, *max_ms)),
            _ => None,
        })
        .unwrap_or(if scripted {
            (sc.net.latency_ms[0], sc.net.latency_ms[0])
        } else {
            (sc.net.latency_ms[0], sc.net.latency_ms[1])
        });
    let lat_max = lat_max.max(lat_min);
    let mut b = turmoil::Builder::new();
    b.rng_seed(world.seed)
        .epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .tick_duration(Duration::from_millis(1))
        .simulation_duration(def.time_limit + def.drain + Duration::from_secs(60))
        .min_message_latency(Duration::from_millis(lat_min))
        .max_message_latency(Duration::from_millis(lat_max))
        .tcp_capacity(sc.net.tcp_capacity);
    let mut sim = b.build();
    for (i, hd) in def.hosts.iter().enumerate() {
        let world = world.clone();
        let f = hd.f.clone();
        let name: Arc<str> = hd.name.as_str().into();
        let h = i as u16;
        sim.host(hd.name.as_str(), move || {
            host_main(world.clone(), h, name.clone(), f.clone())
        });
    }
    let acts = actions(plan);
    let faults_end = Duration::from_millis(acts.last().map_or(0, |a| a.0));
    let mut next = 0;
    let mut drain_from: Option<Duration> = None;
    let mut last_probe = Duration::ZERO;
    loop {
        let t = sim.elapsed();
        {
            let mut st = lock(&world.shared);
            st.now_us = t.as_micros() as u64;
            if def.workload {
                st.check_waiters();
            }
        }
        while next < acts.len() && Duration::from_millis(acts[next].0) <= t {
            apply(&mut sim, def, world, &acts[next].1, lat_max);
            next += 1;
        }
        run_checks(world, false);
        if t >= last_probe + Duration::from_millis(16) {
            last_probe = t;
            probe_closed(world);
        }
        if drain_from.is_none() {
            let waiting: Vec<String> = {
                let app = world.app();
                app.hosts
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| h.finish && !h.finished)
                    .map(|(i, _)| def.hosts[i].name.clone())
                    .collect()
            };
            if waiting.is_empty() && t >= faults_end {
                drain_from = Some(t);
            } else if t >= def.time_limit {
                let h = def.hosts.iter().position(|h| h.name == waiting[0]);
                world.fail(
                    h.map(|h| h as u16),
                    None,
                    &[],
                    // A user's clients run their function; a workload host drains itself.
                    format!(
                        "{} {} {} within {:?} of simulated time",
                        if def.workload { "host(s)" } else { "client(s)" },
                        waiting.join(", "),
                        if def.workload {
                            "did not finish draining"
                        } else {
                            "did not finish"
                        },
                        def.time_limit
                    ),
                );
                break;
            }
        }
        if let Some(from) = drain_from {
            match quiet(world) {
                None => break,
                Some(left) if t >= from + def.drain => {
                    let (h, what) = left;
                    world.fail(
                        h,
                        None,
                        &[],
                        format!(
                            "not quiescent {:?} after the run's work finished: {what}",
                            def.drain
                        ),
                    );
                    break;
                }
                Some(_) => {}
            }
        }
        if let Err(e) = sim.step() {
            world.fail(None, None, &[], format!("simulator error: {e}"));
            break;
        }
    }
    end_checks(world);
    run_checks(world, true);
    {
        let mut st = lock(&world.shared);
        if def.workload {
            st.final_checks();
        }
        for g in def.goals.iter().filter(|g| g.per_seed > 0) {
            let got = st.reached(&g.name);
            if got < g.per_seed {
                st.violation(
                    None,
                    None,
                    format!(
                        "coverage goal {} reached {got} times, at least {} expected in every seed",
                        g.name, g.per_seed
                    ),
                );
            }
        }
    }
    let t = sim.elapsed();
    // Whatever the teardown of the simulator does must not reach the log.
    lock(&world.shared).frozen = true;
    drop(sim);
    t
}

/// The event log of a run, formatted, for determinism diffs.
pub(crate) fn log_lines(st: &State) -> Vec<String> {
    st.log.iter().map(|e| st.fmt_entry(e)).collect()
}
