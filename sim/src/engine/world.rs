//! What one run of a user's simulation test shares: the simulator's `State` (event log,
//! streams, fault recorder, violations) and the test's own part (`App`: the services the
//! hosts made, the sessions they saw, the user's invariants and coverage goals); the host
//! handle user code gets ([`Ctx`]); and the lifecycle oracle over the user's sessions.
//!
//! Lock order: `World::app` before the state's lock, never the other way round, and neither
//! is held while user code or a library call that may publish events runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use laxnet::{
    CloseReason, Config, Direction, Message, Protocol, Received, Runtime, Service, SessionEvent,
    SessionId, SessionRef, Topic,
};

use crate::faulty::{FaultyRuntime, Graveyard};
use crate::log::{Ev, fmt_id};
use crate::rng::Rng;
use crate::state::oracle::session::Sess;
use crate::state::{Shared, lock};

/// A failed user invariant: what is wrong, and the sessions it is about (their last events
/// go into the report).
#[derive(Debug, Clone)]
pub struct Broken {
    /// What is wrong.
    pub what: String,
    /// The sessions involved (ids on the host that checked).
    pub sessions: Vec<SessionId>,
}

impl Broken {
    /// A failure saying `what`.
    pub fn new(what: impl Into<String>) -> Broken {
        Broken {
            what: what.into(),
            sessions: Vec::new(),
        }
    }

    /// Names a session the failure is about.
    pub fn session(mut self, id: SessionId) -> Broken {
        self.sessions.push(id);
        self
    }
}

impl From<String> for Broken {
    fn from(what: String) -> Broken {
        Broken::new(what)
    }
}

impl From<&str> for Broken {
    fn from(what: &str) -> Broken {
        Broken::new(what)
    }
}

/// A user invariant checked during the run.
pub(crate) type Check = Arc<dyn Fn() -> Result<(), Broken> + Send + Sync>;

/// A session the oracle follows.
pub(crate) struct Followed {
    /// The service it belongs to (run-wide service number).
    pub svc: u32,
    /// The ref from `Opened` (kept to the end of the run, to probe after close).
    pub sref: SessionRef,
}

/// One service a host made.
pub(crate) struct Svc {
    pub no: u32,
    pub host: u16,
    pub inc: u16,
    /// `None` once its host crashed (the handle is dropped with the incarnation).
    pub svc: Option<Service>,
    /// Its configured heartbeat timeout.
    pub heartbeat: Option<Duration>,
}

/// One host of the test.
pub(crate) struct AppHost {
    /// Its function returned (clients: their work is done).
    pub finished: bool,
    /// A client (else a server): its services get the client side's socket faults.
    pub client: bool,
    /// The run's work is done only when this host's function has returned.
    pub finish: bool,
    /// Crashed and not yet restarted: `Closed` events are held.
    pub down: bool,
    /// `always` checks of the current incarnation: (name, check, failed already).
    pub checks: Vec<(String, Check, bool)>,
}

/// The test's part of one run.
#[derive(Default)]
pub(crate) struct App {
    pub hosts: Vec<AppHost>,
    /// Every service made, in order (current and crashed incarnations).
    pub services: Vec<Svc>,
    /// Session index (into `State::sessions`) → what the oracle keeps about it.
    pub followed: BTreeMap<usize, Followed>,
    /// (service, raw id) → the open session with that id.
    pub open: BTreeMap<(u32, u32), usize>,
    /// `Closed` events held while their host crashes: (service, id, reason, the service's
    /// clock in ns).
    pub held: Vec<(u32, u32, CloseReason, u64)>,
    /// Coverage goals named by `Ctx::sometimes` in this run (their counts are in the
    /// state's counters, with laxsim's edges).
    pub named: BTreeSet<String>,
}

/// Everything one run shares.
pub(crate) struct World {
    pub shared: Shared,
    pub app: Mutex<App>,
    pub seed: u64,
}

impl World {
    pub fn app(&self) -> MutexGuard<'_, App> {
        self.app.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A failed check on host `h` about `sessions` of service `svc` (if known).
    pub fn fail(&self, h: Option<u16>, svc: Option<u32>, sessions: &[SessionId], what: String) {
        let app = self.app();
        let mut st = lock(&self.shared);
        let idx = svc.and_then(|svc| {
            sessions
                .iter()
                .find_map(|id| app.open.get(&(svc, id.get())).copied())
                .or_else(|| {
                    // A closed session: the latest one of that id on the service.
                    sessions.iter().find_map(|id| {
                        app.followed
                            .iter()
                            .rev()
                            .find(|(i, f)| f.svc == svc && st.sessions[**i].id == id.get())
                            .map(|(i, _)| *i)
                    })
                })
        });
        st.violation(h, idx, what);
    }

    /// `Opened` on service `svc` of host `h`.
    fn opened(&self, svc: u32, h: u16, session: &SessionRef, direction: Direction) {
        let mut app = self.app();
        let mut st = lock(&self.shared);
        let id = session.id().get();
        let stream = st.hosts[h as usize].last_stream.take();
        let idx = st.sessions.len();
        let (now, inc) = (st.now_us, st.hosts[h as usize].inc);
        let connected = direction == Direction::Connected;
        st.sessions.push(Sess {
            host: h,
            inc,
            id,
            connected,
            stream,
            opened_us: now,
            closed: 0,
            closed_us: None,
            reason: None,
            close_called_us: None,
            sent: 0,
            sent_at_close: None,
            enq_bytes: 0,
            recv_next: 0,
            sender: None,
            hb_fired: false,
            frame_ends: Vec::new(),
            recv_count: 0,
            cause_ord: None,
            cause: None,
            told: None,
        });
        if let Some(s) = stream {
            st.streams[s as usize].sess = Some(idx);
        }
        st.log(
            h,
            Ev::Opened {
                id,
                connected,
                stream,
            },
        );
        app.followed.insert(
            idx,
            Followed {
                svc,
                sref: session.clone(),
            },
        );
        if let Some(prev) = app.open.insert((svc, id), idx) {
            let at = st.sessions[prev].opened_us as f64 / 1000.0;
            st.violation(
                Some(h),
                Some(idx),
                format!(
                    "{} opened while the session with the same id (opened at {at:.3}ms) had no Closed yet",
                    fmt_id(id),
                ),
            );
        }
        if !session.is_open() && session.close_reason().is_none() {
            st.violation(
                Some(h),
                Some(idx),
                format!(
                    "{} is neither open nor closed in its Opened event",
                    fmt_id(id)
                ),
            );
        }
    }

    /// `Closed` on service `svc` of host `h` (held while the host crashes).
    /// `now_ns` is the service's clock (its streams' read times are on it).
    fn closed(&self, svc: u32, h: u16, id: u32, reason: &CloseReason, now_ns: u64) {
        let mut app = self.app();
        if app.hosts[h as usize].down {
            app.held.push((svc, id, reason.clone(), now_ns));
            return;
        }
        closed_now(&mut app, &self.shared, svc, h, id, reason, now_ns);
    }

    /// Processes the `Closed` events held during a crash, in (service, id) order: tokio drops
    /// a crashed host's tasks in an order that depends on process-global task ids.
    pub fn flush_held(&self) {
        let mut app = self.app();
        let mut held = std::mem::take(&mut app.held);
        held.sort_by_key(|(svc, id, _, _)| (*svc, *id));
        for (svc, id, reason, now_ns) in held {
            let h = app
                .services
                .iter()
                .find(|s| s.no == svc)
                .map_or(0, |s| s.host);
            closed_now(&mut app, &self.shared, svc, h, id, &reason, now_ns);
        }
    }

    /// A message of a watched type arrived on session `id` of service `svc`.
    fn received(&self, svc: u32, h: u16, id: u32, type_name: &str) {
        let app = self.app();
        let mut st = lock(&self.shared);
        st.log(
            h,
            Ev::User {
                id: Some(id),
                what: format!("recv {type_name}"),
            },
        );
        st.delivered += 1;
        match app.open.get(&(svc, id)) {
            Some(&idx) => {
                st.sessions[idx].recv_next += 1;
                st.sessions[idx].recv_count += 1;
            }
            None => {
                let idx = app
                    .followed
                    .iter()
                    .rev()
                    .find(|(i, f)| f.svc == svc && st.sessions[**i].id == id)
                    .map(|(i, _)| *i);
                let what = match idx {
                    Some(_) => format!(
                        "a {type_name} was delivered to {} after its Closed",
                        fmt_id(id)
                    ),
                    None => format!(
                        "a {type_name} was delivered to {}, which never opened",
                        fmt_id(id)
                    ),
                };
                st.violation(Some(h), idx, what);
            }
        }
    }
}

fn closed_now(
    app: &mut App,
    shared: &Shared,
    svc: u32,
    h: u16,
    id: u32,
    reason: &CloseReason,
    now_ns: u64,
) {
    let mut st = lock(shared);
    st.log(
        h,
        Ev::Closed {
            id,
            reason: reason.to_string(),
        },
    );
    let Some(idx) = app.open.remove(&(svc, id)) else {
        let again = app
            .followed
            .iter()
            .rev()
            .find(|(i, f)| f.svc == svc && st.sessions[**i].id == id)
            .map(|(i, _)| *i);
        let what = match again {
            Some(_) => format!("Closed published again for {} ({reason})", fmt_id(id)),
            None => format!("Closed for {}, which never opened", fmt_id(id)),
        };
        st.violation(Some(h), again, what);
        return;
    };
    let now = st.now_us;
    let s = &mut st.sessions[idx];
    s.closed += 1;
    s.closed_us = Some(now);
    s.reason = Some(reason.clone());
    let stream = s.stream;
    if *reason == CloseReason::Heartbeat {
        // Heartbeat honesty: the session heard nothing for its heartbeat timeout. The
        // `Closed` comes after the decision, so the silence measured here is at least the
        // one the library saw (bytes read at the socket count as heard).
        let hb = app
            .services
            .iter()
            .find(|x| x.no == svc)
            .and_then(|x| x.heartbeat);
        let silent = stream.map(|st_no| {
            Duration::from_nanos(now_ns.saturating_sub(st.streams[st_no as usize].last_read_ns))
        });
        let what = match (hb, silent) {
            (None, _) => Some(format!(
                "{} closed by heartbeat with no heartbeat configured",
                fmt_id(id)
            )),
            (Some(hb), Some(silent)) if silent < hb => Some(format!(
                "{} closed by heartbeat (timeout {hb:?}) although it read bytes {silent:?} before",
                fmt_id(id)
            )),
            _ => None,
        };
        if let Some(what) = what {
            st.violation(Some(h), Some(idx), what);
        }
    }
}

/// What a host's function gets: its name, the seed, services on the simulated network with
/// laxsim's socket faults, seeded randomness, an event log shared with the timeline, and the
/// invariants and coverage goals of the test.
#[derive(Clone)]
pub struct Ctx {
    pub(crate) world: Arc<World>,
    pub(crate) host: u16,
    pub(crate) inc: u16,
    pub(crate) name: Arc<str>,
    pub(crate) graves: Arc<Mutex<Vec<Graveyard>>>,
}

/// Mixes the run's seed with a host, incarnation and stream into a seed of its own.
fn mix(seed: u64, h: u16, inc: u16, n: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ ((h as u64) << 32)
        ^ ((inc as u64) << 48)
        ^ n.wrapping_mul(0xA076_1D64_78BD_642F)
        ^ 0xA99
}

impl Ctx {
    /// This host's name (what other hosts connect to: `"{name}:{port}"`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The run's seed.
    pub fn seed(&self) -> u64 {
        self.world.seed
    }

    /// Which start of this host this is: 0, then one more after every crash and restart.
    pub fn incarnation(&self) -> u16 {
        self.inc
    }

    /// Simulated time since the run started.
    pub fn elapsed(&self) -> Duration {
        Duration::from_micros(lock(&self.world.shared).now_us)
    }

    /// A service with your `config` on this simulated host, its sockets going through
    /// laxsim's fault layer (the profile's faults for this host's role), its sessions followed
    /// by the lifecycle oracle. Without an `rng_seed` in `config`, one is derived from the
    /// seed. Make it here, never with `Service::new` (real sockets) inside a simulation.
    pub fn service(&self, mut config: Config) -> Service {
        let (no, io) = {
            let app = self.world.app();
            let no = app.services.len() as u32; // never removed: numbers stay unique
            let client = app.hosts[self.host as usize].client;
            drop(app);
            let st = lock(&self.world.shared);
            let io = if client {
                st.sc.client.io.clone()
            } else {
                st.sc.server.io.clone()
            };
            (no, io)
        };
        config
            .rng_seed
            .get_or_insert(mix(self.world.seed, self.host, self.inc, no as u64));
        let rt = FaultyRuntime::new(
            self.world.shared.clone(),
            self.host,
            mix(self.world.seed, self.host, self.inc, 1000 + no as u64),
            io,
            false,
        );
        self.graves
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(rt.graveyard());
        let heartbeat = config.heartbeat;
        let clock = rt.clock();
        let svc = Service::with_runtime(config, rt);
        for proto in Protocol::ALL {
            let world = self.world.clone();
            let h = self.host;
            let clock = clock.clone();
            let r = svc.sub(Topic::sessions(proto), move |ev: &SessionEvent| match ev {
                SessionEvent::Opened { session, direction } => {
                    world.opened(no, h, session, *direction)
                }
                SessionEvent::Closed { id, reason } => {
                    let now_ns = clock.now().since_origin().as_nanos();
                    let now_ns = u64::try_from(now_ns).unwrap_or(u64::MAX);
                    world.closed(no, h, id.get(), reason, now_ns)
                }
                _ => {}
            });
            if let Err(e) = r {
                self.world.fail(
                    Some(self.host),
                    None,
                    &[],
                    format!("the oracle could not subscribe: {e}"),
                );
            }
        }
        self.world.app().services.push(Svc {
            no,
            host: self.host,
            inc: self.inc,
            svc: Some(svc.clone()),
            heartbeat,
        });
        svc
    }

    /// Follows messages of type `T` on `svc`: each delivery goes into the event log (so the
    /// timeline and the determinism check see it), and one delivered to a session after its
    /// `Closed` fails the run. `svc` must be a service made by [`Ctx::service`].
    pub fn watch<T: Message>(&self, svc: &Service, protocol: Protocol) {
        let no = self
            .world
            .app()
            .services
            .iter()
            .rev()
            .find(|s| {
                s.svc
                    .as_ref()
                    .is_some_and(|s| std::ptr::eq(s.config(), svc.config()))
            })
            .map(|s| s.no);
        let Some(no) = no else {
            self.world.fail(
                Some(self.host),
                None,
                &[],
                "watch() on a service not made by Ctx::service".into(),
            );
            return;
        };
        let world = self.world.clone();
        let h = self.host;
        let name = short_type_name::<T>();
        let r = svc.sub(Topic::message::<T>(protocol), move |m: &Received<T>| {
            world.received(no, h, m.session.id().get(), name)
        });
        if let Err(e) = r {
            self.world.fail(
                Some(self.host),
                None,
                &[],
                format!("watch() could not subscribe: {e}"),
            );
        }
    }

    /// A seeded random number generator for this host's code: the same seed gives the same
    /// numbers. `stream` tells several generators of one host apart.
    pub fn rng(&self, stream: u64) -> Rng {
        Rng::new(self.world.seed, mix(0, self.host, self.inc, stream))
    }

    /// Writes `what` into the run's event log (it shows in failure reports, the timeline,
    /// and the determinism check compares it).
    pub fn log(&self, what: impl Into<String>) {
        lock(&self.world.shared).log(
            self.host,
            Ev::User {
                id: None,
                what: what.into(),
            },
        );
    }

    /// Like [`Ctx::log`], about one session (it shows among that session's last events).
    pub fn log_session(&self, id: SessionId, what: impl Into<String>) {
        lock(&self.world.shared).log(
            self.host,
            Ev::User {
                id: Some(id.get()),
                what: what.into(),
            },
        );
    }

    /// An invariant of this host's state, checked after every step of the simulation and
    /// once more at the end of the run (after quiescence). It belongs to this incarnation: a
    /// crash drops it with the state it looks at. Its first failure fails the seed.
    pub fn always(
        &self,
        name: impl Into<String>,
        check: impl Fn() -> Result<(), Broken> + Send + Sync + 'static,
    ) {
        let mut app = self.world.app();
        app.hosts[self.host as usize]
            .checks
            .push((name.into(), Arc::new(check), false));
    }

    /// Asserts `cond` right here; fails the seed with `name` if it does not hold.
    pub fn check(&self, name: &str, cond: bool, broken: impl FnOnce() -> Broken) {
        if !cond {
            let b = broken();
            let svc = self.last_service();
            self.world.fail(
                Some(self.host),
                svc,
                &b.sessions,
                format!("invariant \"{name}\" failed: {}", b.what),
            );
        }
    }

    /// A coverage goal: `name` must be reached (`cond` true here) in at least one seed of
    /// the test, or the test fails. Declare goals that might never be called at all with
    /// `Sim::sometimes`.
    ///
    /// Goals count in the same counters as the lifecycle edges laxsim's oracle counts (such as
    /// `host-restart`, `heartbeat-expiry`; the list is `laxnet_sim::edges::EDGES`), so a test
    /// may also declare one of those with `Sim::sometimes` or `Sim::at_least`.
    pub fn sometimes(&self, name: &str, cond: bool) {
        if !self.world.app().named.contains(name) {
            self.world.app().named.insert(name.to_string());
        }
        lock(&self.world.shared).goal(name, cond);
    }

    /// Registers `svc`, made by laxsim's own workload (not by [`Ctx::service`], and followed
    /// by the workload oracle, not by this one), with the engine: a crash of this host drops
    /// it with the incarnation and checks that none of its sessions is left live, and the run
    /// waits for it to go quiet.
    pub(crate) fn adopt(&self, svc: &Service) {
        let mut app = self.world.app();
        let no = app.services.len() as u32;
        app.services.push(Svc {
            no,
            host: self.host,
            inc: self.inc,
            svc: Some(svc.clone()),
            heartbeat: svc.config().heartbeat,
        });
    }

    /// The run's shared state (the workload hooks write their observations into it).
    pub(crate) fn shared(&self) -> &Shared {
        &self.world.shared
    }

    /// This host's index in the run.
    pub(crate) fn host(&self) -> u16 {
        self.host
    }

    fn last_service(&self) -> Option<u32> {
        let app = self.world.app();
        app.services
            .iter()
            .rev()
            .find(|s| s.host == self.host && s.inc == self.inc)
            .map(|s| s.no)
    }
}

/// `T`'s name without its module path.
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}
