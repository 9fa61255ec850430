//! One seed of a user's simulation test, start to verdict: builds the turmoil simulation
//! with the test's hosts (each incarnation of a host runs the user's function with a fresh
//! [`Ctx`]), applies the fault profile's planned network faults (partitions, holds, spikes,
//! server crashes and restarts), checks the user's `always` invariants after every step,
//! waits for the clients to finish and the services to go quiet, then runs the end-of-run
//! checks: every session closed exactly once, no ref or id reaching past its `Closed`, close
//! reasons that match across each connection not cut by a fault, no session, buffer or
//! handshake left, no panic counted. (Heartbeat honesty is checked at each `Closed`, in
//! [`crate::app::world`].)
// SystemTime: only the fixed turmoil epoch; Instant: the wall time a seed took, reported only.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use laxnet::{CloseCode, CloseReason, Service, SessionRef};

use crate::app::world::{App, AppHost, Ctx, World};
use crate::faulty::Graveyard;
use crate::log::{Ev, fmt_id};
use crate::runner::{Action, actions, catch_sim_panics};
use crate::scenario::Scenario;
use crate::schedule::{Fault, Recorder};
use crate::state::{Shared, State, lock};

/// The error a host function may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A host's software: called once per incarnation.
pub(crate) type HostFn =
    Arc<dyn Fn(Ctx) -> Pin<Box<dyn Future<Output = Result<(), BoxError>>>> + Send + Sync>;

/// One host of the test.
#[derive(Clone)]
pub(crate) struct HostDef {
    pub name: String,
    pub client: bool,
    pub f: HostFn,
}

/// What every seed of a test runs.
#[derive(Clone)]
pub(crate) struct Def {
    /// Servers first, then clients (the order of the scenario's host indices).
    pub hosts: Vec<HostDef>,
    pub sc: Arc<Scenario>,
    /// Simulated time the clients have to finish.
    pub time_limit: Duration,
    /// Simulated time the services have to go quiet after that.
    pub drain: Duration,
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
pub(crate) fn run_seed(def: &Def, seed: u64, schedule: Option<&[Fault]>) -> SeedOutcome {
    let started = Instant::now();
    let rec = match schedule {
        Some(s) => Recorder::scripted(s),
        None => Recorder::random(seed),
    };
    let mut state = State::new(def.sc.clone(), seed, rec);
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
    drop((services, refs, checks));
    let reached = std::mem::take(&mut world.app().reached);
    let st = lock(&shared);
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
        lock(&world.shared).now_us = t.as_micros() as u64;
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
                    .filter(|(_, h)| h.client && !h.finished)
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
                    format!(
                        "client(s) {} did not finish within {:?} of simulated time",
                        waiting.join(", "),
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
                            "not quiescent {:?} after the clients finished: {what}",
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
    let t = sim.elapsed();
    // Whatever the teardown of the simulator does must not reach the log.
    lock(&world.shared).frozen = true;
    drop(sim);
    t
}

/// The services of the current incarnations, with their numbers and hosts.
fn live_services(world: &World) -> Vec<(u32, u16, Service)> {
    world
        .app()
        .services
        .iter()
        .filter_map(|s| s.svc.clone().map(|svc| (s.no, s.host, svc)))
        .collect()
}

/// `None` when every service is back to empty (no session, pooled buffer or handshake) and
/// every session the oracle saw open has its `Closed`; else what is left.
fn quiet(world: &World) -> Option<(Option<u16>, String)> {
    for (_, h, svc) in live_services(world) {
        let s = svc.status();
        if s.live() != 0 || s.pool.in_use_bytes != 0 || s.handshaking != 0 {
            let ids: Vec<String> = svc
                .sessions()
                .iter()
                .map(|i| format!("{} ({:?})", i.id, i.state))
                .collect();
            let name = lock(&world.shared).hosts[h as usize].name.clone();
            return Some((
                Some(h),
                format!(
                    "{name} has {} live sessions [{}], {} pooled bytes in use, {} handshakes in progress",
                    s.live(),
                    ids.join(", "),
                    s.pool.in_use_bytes,
                    s.handshaking
                ),
            ));
        }
    }
    let app = world.app();
    if let Some((&(_, id), _)) = app.open.iter().next() {
        return Some((None, format!("{} has no Closed yet", fmt_id(id))));
    }
    None
}

/// Runs the user's `always` checks (outside the locks); the first failure of each is
/// reported, once.
fn run_checks(world: &World, at_end: bool) {
    let checks: Vec<(u16, usize, String, crate::app::world::Check)> = {
        let app = world.app();
        app.hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| !h.down)
            .flat_map(|(h, host)| {
                host.checks
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| !c.2)
                    .map(move |(i, c)| (h as u16, i, c.0.clone(), c.1.clone()))
            })
            .collect()
    };
    for (h, i, name, check) in checks {
        if let Err(b) = check() {
            if let Some(c) = world.app().hosts[h as usize].checks.get_mut(i) {
                c.2 = true;
            }
            let svc = {
                let app = world.app();
                app.services
                    .iter()
                    .rev()
                    .find(|s| s.host == h && s.svc.is_some())
                    .map(|s| s.no)
            };
            let when = if at_end { " at the end of the run" } else { "" };
            world.fail(
                Some(h),
                svc,
                &b.sessions,
                format!("invariant \"{name}\" failed{when}: {}", b.what),
            );
        }
    }
}

/// Refs and ids after `Closed`: a closed session's ref says it is closed, with the reason
/// `Closed` carried, and its id resolves (`Service::acquire`) to nothing, unless a newer
/// session the oracle saw open carries the same id again.
fn probe_closed(world: &World) {
    type Probe = (usize, u16, u32, Option<Service>, SessionRef, CloseReason);
    let probes: Vec<Probe> = {
        let app = world.app();
        let st = lock(&world.shared);
        app.followed
            .iter()
            .filter_map(|(&idx, f)| {
                let s = &st.sessions[idx];
                let reason = s.reason.clone()?;
                let svc = app
                    .services
                    .iter()
                    .find(|x| x.no == f.svc)
                    .and_then(|x| x.svc.clone());
                Some((idx, s.host, f.svc, svc, f.sref.clone(), reason))
            })
            .collect()
    };
    for (idx, h, no, svc, sref, reason) in probes {
        let id = sref.id();
        let mut bad = Vec::new();
        if sref.is_open() {
            bad.push(format!("a ref to {id} says it is open after its Closed"));
        }
        if sref.close_reason().as_ref() != Some(&reason) {
            bad.push(format!(
                "a ref to {id} reports close reason {:?} after Closed said \"{reason}\"",
                sref.close_reason()
            ));
        }
        if let Some(svc) = svc
            && svc.acquire(id).is_some()
            && !world.app().open.contains_key(&(no, id.get()))
        {
            bad.push(format!(
                "acquire({id}) resolves after its Closed, and no newer session with that id opened"
            ));
        }
        for what in bad {
            lock(&world.shared).violation(Some(h), Some(idx), what);
        }
    }
}

/// The code (and detail) a session closing for `r` sends its peer, and whether it surely
/// arrives (a clean close flushes it before the end of stream; the abortive ones send it at
/// best effort before dropping the connection). `None`: it sends none.
fn code_sent(r: &CloseReason) -> Option<(CloseCode, u16, bool)> {
    Some(match r {
        CloseReason::Local => (CloseCode::Normal, 0, true),
        CloseReason::Shutdown => (CloseCode::Shutdown, 0, true),
        CloseReason::Heartbeat => (CloseCode::Heartbeat, 0, false),
        CloseReason::Idle => (CloseCode::Idle, 0, false),
        CloseReason::Protocol(v) => (CloseCode::Protocol, v.detail(), false),
        CloseReason::Panic => (CloseCode::Panic, 0, false),
        _ => return None,
    })
}

/// A session's stream was cut or spoiled by a fault (a reset or I/O error, a crash, a
/// ciphertext fault): what its peer reports need not match what it sent.
fn faulted(s: &crate::state::streams::StreamInfo) -> bool {
    s.reset || s.io_error.is_some() || s.crashed || s.ct.is_some() || s.landed.is_some()
}

/// Close reasons across a connection: when neither end was cut by a fault, the reason one
/// side reports for the peer's close matches what the peer sent. A peer that closed cleanly
/// (`close()`, `close_with`, shutdown) sends its reason before its end of stream, so a side
/// that read everything the peer wrote reports `Peer` with the peer's code, never
/// `PeerClosed`; and a side that reports `Peer` reports the code of the peer's own reason.
fn check_reasons(world: &World) {
    let mut bad = Vec::new();
    {
        let app = world.app();
        let st = lock(&world.shared);
        for &idx in app.followed.keys() {
            let a = &st.sessions[idx];
            let (Some(ra), Some(sa)) = (a.reason.as_ref(), a.stream) else {
                continue;
            };
            let sa_info = &st.streams[sa as usize];
            let Some(sb) = sa_info.peer else { continue };
            let sb_info = &st.streams[sb as usize];
            let Some(b_idx) = sb_info.sess else { continue };
            let b = &st.sessions[b_idx];
            let Some(rb) = b.reason.as_ref() else {
                continue;
            };
            if faulted(sa_info) || faulted(sb_info) {
                continue;
            }
            let Some((code, detail, sure)) = code_sent(rb) else {
                continue;
            };
            let peer = format!("{} on {}", fmt_id(b.id), st.hosts[b.host as usize].name);
            match ra {
                CloseReason::PeerClosed if sure && sa_info.read_total >= sb_info.written => {
                    bad.push((
                        a.host,
                        idx,
                        format!(
                            "{} reports \"{ra}\" (no reason), but its peer {peer} closed with \"{rb}\", which sends its reason ({code:?}), and nothing it wrote was lost",
                            fmt_id(a.id)
                        ),
                    ));
                }
                CloseReason::Peer(pc) if pc.code != code || pc.detail != detail => {
                    bad.push((
                        a.host,
                        idx,
                        format!(
                            "{} reports \"{ra}\", but its peer {peer} closed with \"{rb}\", which sends {code:?}",
                            fmt_id(a.id)
                        ),
                    ));
                }
                _ => {}
            }
        }
    }
    for (h, idx, what) in bad {
        lock(&world.shared).violation(Some(h), Some(idx), what);
    }
}

/// The end of the run: sessions never closed, panics counted by a service, refs and ids,
/// close reasons across each connection.
fn end_checks(world: &World) {
    probe_closed(world);
    check_reasons(world);
    let never: Vec<(usize, u16, u32)> = {
        let app = world.app();
        let st = lock(&world.shared);
        app.open
            .values()
            .map(|&i| (i, st.sessions[i].host, st.sessions[i].id))
            .collect()
    };
    for (idx, h, id) in never {
        lock(&world.shared).violation(
            Some(h),
            Some(idx),
            format!("session {} never got a Closed event", fmt_id(id)),
        );
    }
    for (_, h, svc) in live_services(world) {
        let s = svc.status();
        if s.panics != 0 {
            world.fail(
                Some(h),
                None,
                &[],
                format!(
                    "the service counted {} panics (in a subscriber or a service task)",
                    s.panics
                ),
            );
        }
    }
}

/// The host index and name of a plan's host (`server0`, `client1`, ...).
fn host_of(def: &Def, plan_name: &str) -> Option<(u16, String)> {
    (0..def.sc.host_count())
        .find(|&i| def.sc.host_name(i) == plan_name)
        .map(|i| (i, def.hosts[i as usize].name.clone()))
}

fn apply(sim: &mut turmoil::Sim<'_>, def: &Def, world: &World, act: &Action, base_max: u64) {
    let net = |world: &World, a: &str, b: &str, what: &'static str, edge: Option<&'static str>| {
        let (Some((ia, _)), Some((ib, _))) = (host_of(def, a), host_of(def, b)) else {
            return;
        };
        let mut st = lock(&world.shared);
        if let Some(e) = edge {
            st.edge(e);
        }
        st.log(
            ia,
            Ev::Net {
                what,
                arg: ib as u64,
            },
        );
    };
    let name = |n: &str| host_of(def, n).map(|(_, s)| s).unwrap_or_default();
    match act {
        Action::Partition(a, b) => {
            sim.partition(name(a).as_str(), name(b).as_str());
            net(world, a, b, "partition", Some("partition"));
        }
        Action::Repair(a, b) => {
            sim.repair(name(a).as_str(), name(b).as_str());
            net(world, a, b, "repair", None);
        }
        Action::Hold(a, b) => {
            sim.hold(name(a).as_str(), name(b).as_str());
            net(world, a, b, "hold", None);
        }
        Action::Release(a, b) => {
            sim.release(name(a).as_str(), name(b).as_str());
            net(world, a, b, "release", Some("hold-release"));
        }
        Action::Spike(max) => {
            sim.set_max_message_latency(Duration::from_millis(*max));
            let mut st = lock(&world.shared);
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
            lock(&world.shared).log(
                0,
                Ev::Net {
                    what: "spike-end",
                    arg: base_max,
                },
            );
        }
        Action::Crash(n) => {
            let Some((h, hname)) = host_of(def, n) else {
                return;
            };
            {
                let mut app = world.app();
                if app.hosts[h as usize].down {
                    return;
                }
                app.hosts[h as usize].down = true;
                let mut st = lock(&world.shared);
                st.hosts[h as usize].down = true;
                st.log(h, Ev::Crash);
            }
            sim.crash(hname.as_str());
            world.flush_held();
            let (old, checks) = {
                let mut app = world.app();
                let checks = std::mem::take(&mut app.hosts[h as usize].checks);
                let old: Vec<Service> = app
                    .services
                    .iter_mut()
                    .filter(|s| s.host == h)
                    .filter_map(|s| s.svc.take())
                    .collect();
                (old, checks)
            };
            for svc in &old {
                let live = svc.status().live();
                if live != 0 {
                    world.fail(
                        Some(h),
                        None,
                        &[],
                        format!(
                            "after the crash {live} sessions of the old incarnation are still live"
                        ),
                    );
                }
            }
            drop((old, checks));
        }
        Action::Restart(n) => {
            let Some((h, hname)) = host_of(def, n) else {
                return;
            };
            {
                let mut st = lock(&world.shared);
                if !st.hosts[h as usize].down {
                    return;
                }
                st.hosts[h as usize].down = false;
                st.edge("host-restart");
            }
            sim.bounce(hname.as_str());
        }
    }
}

/// The event log of a run, formatted, for determinism diffs.
pub(crate) fn log_lines(st: &State) -> Vec<String> {
    st.log.iter().map(|e| st.fmt_entry(e)).collect()
}
