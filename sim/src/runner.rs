//! Runs one seed of one scenario: builds the turmoil sim, registers the hosts, drives the
//! step loop (applying the planned partitions, holds, spikes, crashes and restarts at their
//! times), and collects the oracle's verdict and the trace hash.
#![allow(clippy::disallowed_types)] // SystemTime: only the fixed turmoil epoch

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, SystemTime};

use crate::log::Ev;
use crate::scenario::Scenario;
use crate::schedule::{Fault, Recorder};
use crate::state::{Shared, State, lock};
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

thread_local! {
    static IN_SIM: RefCell<bool> = const { RefCell::new(false) };
    static PANICS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// What runs on this thread (scenario and seed), for the one report a panic that aborts
    /// the process gets.
    static RUN: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Installs (once) a panic hook that records panics raised while a sim runs on this thread,
/// including panics that something downstream catches, and defers to the previous hook
/// everywhere else.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_sim = IN_SIM.with(|f| *f.borrow());
            // A panic while unwinding from another (in a destructor) or out of a function
            // that cannot unwind: the process aborts right after this hook, so nothing
            // downstream can report the run. Say here which run it was and what panicked
            // first. (`PanicHookInfo::can_unwind` is unstable: the message tells.)
            let text = info.to_string();
            let aborts = text.contains("panic in a destructor during cleanup")
                || text.contains("panic in a function that cannot unwind");
            if in_sim && aborts {
                let run = RUN.with(|r| r.borrow().clone());
                eprintln!("laxsim: {run}: a panic while unwinding aborts the process");
                PANICS.with(|p| {
                    for (i, earlier) in p.borrow().iter().enumerate() {
                        eprintln!("  panic {}: {earlier}", i + 1);
                    }
                });
                eprintln!("  then: {text}");
                prev(info);
            } else if in_sim {
                PANICS.with(|p| p.borrow_mut().push(info.to_string()));
                if std::env::var_os("LAXSIM_PANIC_TRACE").is_some() {
                    prev(info);
                }
            } else {
                prev(info);
            }
        }));
    });
}

/// One timed step of a network-level plan, as the driver loop applies it.
#[derive(Debug, Clone)]
pub enum Action {
    /// Partition two hosts.
    Partition(String, String),
    /// Repair a partition.
    Repair(String, String),
    /// Hold messages between two hosts.
    Hold(String, String),
    /// Release held messages.
    Release(String, String),
    /// Raise the maximum latency.
    Spike(u64),
    /// Back to the base latency.
    SpikeEnd,
    /// Crash a host.
    Crash(String),
    /// Restart a crashed host.
    Restart(String),
}

/// The plan's faults as timed actions (ms), in time order (plan order breaks ties).
pub fn actions(plan: &[Fault]) -> Vec<(u64, Action)> {
    let mut out = Vec::new();
    for f in plan {
        match f {
            Fault::Partition {
                at_ms,
                dur_ms,
                a,
                b,
            } => {
                out.push((*at_ms, Action::Partition(a.clone(), b.clone())));
                out.push((at_ms + dur_ms, Action::Repair(a.clone(), b.clone())));
            }
            Fault::Hold {
                at_ms,
                dur_ms,
                a,
                b,
            } => {
                out.push((*at_ms, Action::Hold(a.clone(), b.clone())));
                out.push((at_ms + dur_ms, Action::Release(a.clone(), b.clone())));
            }
            Fault::Spike {
                at_ms,
                dur_ms,
                max_ms,
            } => {
                out.push((*at_ms, Action::Spike(*max_ms)));
                out.push((at_ms + dur_ms, Action::SpikeEnd));
            }
            Fault::Crash {
                at_ms,
                down_ms,
                host,
            } => {
                out.push((*at_ms, Action::Crash(host.clone())));
                out.push((at_ms + down_ms, Action::Restart(host.clone())));
            }
            Fault::Latency { .. } | Fault::Io { .. } | Fault::Ct { .. } => {}
        }
    }
    out.sort_by_key(|(t, _)| *t); // stable: plan order breaks ties
    out
}

fn host_index(st: &State, name: &str) -> Option<u16> {
    st.hosts
        .iter()
        .position(|h| h.name == name)
        .map(|i| i as u16)
}

/// Runs `f` (one simulated run, named by `run`: scenario and seed) on this thread,
/// collecting the panics raised inside it, including those something downstream caught. A
/// panic that aborts the process (one raised while unwinding) is printed with `run` first.
pub fn catch_sim_panics<R>(
    run: &str,
    f: impl FnOnce() -> R,
) -> (std::thread::Result<R>, Vec<String>) {
    install_hook();
    RUN.with(|r| *r.borrow_mut() = run.to_string());
    IN_SIM.with(|f| *f.borrow_mut() = true);
    PANICS.with(|p| p.borrow_mut().clear());
    let res = catch_unwind(AssertUnwindSafe(f));
    IN_SIM.with(|f| *f.borrow_mut() = false);
    let panics = PANICS.with(|p| std::mem::take(&mut *p.borrow_mut()));
    (res, panics)
}

/// Runs `opts.seed` of `sc`.
pub fn run_seed(sc: &Arc<Scenario>, opts: &RunOpts) -> Outcome {
    let rec = match &opts.schedule {
        Some(s) => Recorder::scripted(s),
        None => Recorder::random(opts.seed),
    };
    let mut state = State::new(sc.clone(), opts.seed, rec);
    state.echo = opts.echo;
    let plan = state.rec.plan(sc, opts.schedule.as_deref());
    let shared: Shared = Arc::new(Mutex::new(state));
    let run = format!("{} seed {}", sc.name, opts.seed);
    let (res, panics) = catch_sim_panics(&run, || drive(sc, opts, &plan, &shared));
    let sim_time = match res {
        Ok(t) => t,
        Err(_) => Duration::from_micros(lock(&shared).now_us),
    };
    let mut st = lock(&shared);
    for p in panics {
        st.violation(None, None, format!("panic: {p}"));
    }
    // Break the reference cycles (service → runtime → shared state → service).
    let handles = st.release_handles();
    let violations = st
        .violations
        .iter()
        .map(|v| {
            let mut s = format!(
                "t={:.3}ms {}: {}",
                v.t_us as f64 / 1000.0,
                v.host
                    .and_then(|h| st.hosts.get(h as usize))
                    .map_or("-", |h| h.name.as_str()),
                v.what
            );
            if let Some(idx) = v.sess {
                let ss = &st.sessions[idx];
                s.push_str(&format!(
                    "\n      last events of {} on {}:",
                    crate::log::fmt_id(ss.id),
                    st.hosts[ss.host as usize].name
                ));
                for l in st.session_tail(idx, 12) {
                    s.push_str("\n        ");
                    s.push_str(&l);
                }
            }
            s
        })
        .collect();
    if let Ok(d) = std::env::var("LAXSIM_DUMP") {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let text: String = st.log.iter().map(|e| st.fmt_entry(e) + "\n").collect();
        let _ = std::fs::write(format!("{d}.{}.{n}", opts.seed), text);
    }
    let out = Outcome {
        scenario: sc.name.clone(),
        seed: opts.seed,
        hash: st.trace_hash(),
        violations,
        violation_count: st.violation_count,
        edges: st.edges.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        sim_time,
        sessions: st.sessions.len() as u64,
        messages: st.delivered,
        faults: st.faults_injected(),
        records: st.rec.records.clone(),
        state: shared.clone(),
    };
    drop(st);
    drop(handles);
    out
}

/// The step loop. Returns the simulated time.
fn drive(sc: &Arc<Scenario>, opts: &RunOpts, plan: &[Fault], shared: &Shared) -> Duration {
    let (lat_min, lat_max) = plan
        .iter()
        .find_map(|f| match f {
            Fault::Latency { min_ms, max_ms } => Some((*min_ms, *max_ms)),
            _ => None,
        })
        .unwrap_or(match opts.schedule {
            // A schedule without a latency record: the least latency the scenario allows.
            Some(_) => (sc.net.latency_ms[0], sc.net.latency_ms[0]),
            None => (sc.net.latency_ms[0], sc.net.latency_ms[1]),
        });
    let lat_max = lat_max.max(lat_min);
    let mut b = turmoil::Builder::new();
    b.rng_seed(opts.seed)
        .epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .tick_duration(Duration::from_millis(1))
        .simulation_duration(Duration::from_secs(3600))
        .min_message_latency(Duration::from_millis(lat_min))
        .max_message_latency(Duration::from_millis(lat_max))
        .tcp_capacity(sc.net.tcp_capacity);
    let mut sim = b.build();
    let hopts = HostOpts {
        seed: opts.seed,
        plant: opts.plant.clone(),
        logging: opts.logging,
    };
    for h in 0..sc.host_count() {
        let shared = shared.clone();
        if sc.is_rogue(h) {
            let seed = opts.seed;
            sim.host(sc.host_name(h), move || {
                crate::rogue::rogue_main(shared.clone(), h, seed)
            });
            continue;
        }
        let hopts = hopts.clone();
        sim.host(sc.host_name(h), move || {
            workload::host_main(shared.clone(), h, hopts.clone())
        });
    }
    let acts = actions(plan);
    let mut next = 0;
    let end = Duration::from_millis(sc.duration_ms + sc.drain_ms);
    loop {
        let t = sim.elapsed();
        {
            let mut st = lock(shared);
            st.now_us = t.as_micros() as u64;
            st.check_waiters();
        }
        while next < acts.len() && Duration::from_millis(acts[next].0) <= t {
            apply(&mut sim, shared, &acts[next].1, lat_max);
            next += 1;
        }
        if lock(shared).hosts.iter().all(|h| h.done) {
            let mut st = lock(shared);
            st.final_checks();
            for (edge, min) in &sc.expect_min {
                let got = st.edges.get(edge.as_str()).copied().unwrap_or(0);
                if got < *min {
                    st.violation(
                        None,
                        None,
                        format!("edge {edge} reached {got} times, the scenario expects at least {min} per seed"),
                    );
                }
            }
            break;
        }
        if t >= end {
            let mut st = lock(shared);
            let stuck: Vec<String> = st
                .hosts
                .iter()
                .filter(|h| !h.done)
                .map(|h| h.name.clone())
                .collect();
            st.violation(
                None,
                None,
                format!(
                    "not quiescent after {end:?}: hosts {} did not finish draining",
                    stuck.join(", ")
                ),
            );
            break;
        }
        if let Err(e) = sim.step() {
            lock(shared).violation(None, None, format!("simulator error: {e}"));
            break;
        }
    }
    let t = sim.elapsed();
    // Whatever the teardown of the simulator does (tokio drops tasks in an order that depends
    // on process-global task ids) must not reach the log.
    lock(shared).frozen = true;
    drop(sim);
    t
}

fn apply(sim: &mut turmoil::Sim<'_>, shared: &Shared, act: &Action, base_max: u64) {
    let idx = |name: &str| host_index(&lock(shared), name).unwrap_or(0);
    match act {
        Action::Partition(a, b) => {
            sim.partition(a.as_str(), b.as_str());
            let (ia, ib) = (idx(a), idx(b));
            let mut st = lock(shared);
            st.edge("partition");
            st.log(
                ia,
                Ev::Net {
                    what: "partition",
                    arg: ib as u64,
                },
            );
        }
        Action::Repair(a, b) => {
            sim.repair(a.as_str(), b.as_str());
            let (ia, ib) = (idx(a), idx(b));
            lock(shared).log(
                ia,
                Ev::Net {
                    what: "repair",
                    arg: ib as u64,
                },
            );
        }
        Action::Hold(a, b) => {
            sim.hold(a.as_str(), b.as_str());
            let (ia, ib) = (idx(a), idx(b));
            lock(shared).log(
                ia,
                Ev::Net {
                    what: "hold",
                    arg: ib as u64,
                },
            );
        }
        Action::Release(a, b) => {
            sim.release(a.as_str(), b.as_str());
            let (ia, ib) = (idx(a), idx(b));
            let mut st = lock(shared);
            st.edge("hold-release");
            st.log(
                ia,
                Ev::Net {
                    what: "release",
                    arg: ib as u64,
                },
            );
        }
        Action::Spike(max) => {
            sim.set_max_message_latency(Duration::from_millis(*max));
            let mut st = lock(shared);
            st.edge("latency-spike");
            st.log(
                0,
                Ev::Net {
                    what: "spike",
                    arg: *max,
                },
            );
        }
        Action::SpikeEnd => {
            sim.set_max_message_latency(Duration::from_millis(base_max));
            lock(shared).log(
                0,
                Ev::Net {
                    what: "spike-end",
                    arg: base_max,
                },
            );
        }
        Action::Crash(name) => {
            let h = idx(name);
            {
                let mut st = lock(shared);
                if st.hosts[h as usize].down || st.hosts[h as usize].svc.is_none() {
                    return;
                }
                st.hosts[h as usize].down = true;
                st.log(h, Ev::Crash);
                st.crash_causes(h);
                let mut mid = false;
                for s in st.streams.iter().filter(|s| s.host == h && s.open) {
                    mid |= s.wf.mid_frame() || s.rf.mid_frame();
                    if let Some(p) = s.peer {
                        mid |= st.streams[p as usize].rf.mid_frame();
                    }
                }
                if mid {
                    st.edge("crash-mid-frame");
                }
            }
            sim.crash(name.as_str());
            let old = {
                let mut st = lock(shared);
                st.flush_crash();
                let old = st.crashed(h);
                if let Some(svc) = &old.0 {
                    let status = svc.status();
                    if status.live() != 0 {
                        st.violation(
                            Some(h),
                            None,
                            format!(
                                "after the crash {} sessions of the old incarnation are still live",
                                status.live()
                            ),
                        );
                    }
                }
                old
            };
            drop(old);
        }
        Action::Restart(name) => {
            let h = idx(name);
            {
                let mut st = lock(shared);
                if !st.hosts[h as usize].down {
                    return;
                }
                st.hosts[h as usize].down = false;
                st.edge("host-restart");
            }
            sim.bounce(name.as_str());
        }
    }
}
