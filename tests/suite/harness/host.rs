//! A host: one [`Service`] per incarnation, a loop that runs the scenario's jobs on the host's
//! own runtime, the subscriptions that record its event log, and (on tokio) the thread it
//! runs on, which a crash stops.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use laxnet::{
    CloseReason, Config, Protocol, Received, Service, SessionEvent, SessionId, Status,
    TokioRuntime, Topic, TurmoilRuntime,
};
use tokio::sync::{mpsc, oneshot};

use super::backends::Backend;
use super::ctx::Ctx;
use super::fixtures::Seq;
use super::lock;
use super::log::{Rec, SessionLog, sessions_of};

type Job = Box<dyn FnOnce(Service) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// What the scenario sends a host's loop.
pub(super) enum Msg {
    Start(Box<Config>, oneshot::Sender<()>),
    Job(Job),
}

struct HostState {
    name: &'static str,
    backend: Backend,
    /// The protocol its recording subscriptions (and echo) listen to.
    protocol: Protocol,
    /// Sender of the current incarnation's loop; `None` while the host is down.
    tx: Mutex<Option<mpsc::UnboundedSender<Msg>>>,
    /// Bumped every time the host software (re)starts.
    incarnation: AtomicU32,
    /// The configuration of the last `start`, reused when the host restarts.
    config: Mutex<Option<Config>>,
    /// The event log of every incarnation.
    events: Mutex<Vec<(u32, Rec)>>,
    /// Tokio backend: stops the current host thread (simulated crash).
    crash: Mutex<Option<oneshot::Sender<()>>>,
    /// Tokio backend: fired by the host thread once its runtime is dropped.
    stopped: Mutex<Option<oneshot::Sender<()>>>,
}

/// A handle to one host and the service living on it.
#[derive(Clone)]
pub(crate) struct Host(Arc<HostState>);

impl Host {
    pub(super) fn new(name: &'static str, backend: Backend, protocol: Protocol) -> Host {
        Host(Arc::new(HostState {
            name,
            backend,
            protocol,
            tx: Mutex::new(None),
            incarnation: AtomicU32::new(0),
            config: Mutex::new(None),
            events: Mutex::new(Vec::new()),
            crash: Mutex::new(None),
            stopped: Mutex::new(None),
        }))
    }

    pub(crate) fn name(&self) -> &'static str {
        self.0.name
    }

    /// The protocol of the scenario this host runs.
    pub(crate) fn protocol(&self) -> Protocol {
        self.0.protocol
    }

    pub(super) fn sender(&self) -> mpsc::UnboundedSender<Msg> {
        lock(&self.0.tx)
            .clone()
            .unwrap_or_else(|| panic!("host {} is not running", self.0.name))
    }

    pub(super) fn is_up(&self) -> bool {
        lock(&self.0.tx).is_some()
    }

    /// Runs `f` on this host with its service; returns what it returns.
    pub(crate) async fn exec<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Service) -> R + Send + 'static,
    ) -> R {
        self.exec_async(move |svc: Service| async move { f(&svc) })
            .await
    }

    /// Runs the future `f` makes on this host (in a task of its own); returns its output.
    pub(crate) async fn exec_async<R, F, Fut>(&self, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(Service) -> Fut + Send + 'static,
        Fut: Future<Output = R> + Send + 'static,
    {
        self.spawn(f).await
    }

    /// Starts the future `f` makes on this host *now*; the returned future yields its output.
    pub(crate) fn spawn<R, F, Fut>(&self, f: F) -> impl Future<Output = R> + 'static
    where
        R: Send + 'static,
        F: FnOnce(Service) -> Fut + Send + 'static,
        Fut: Future<Output = R> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |svc| {
            Box::pin(async move {
                let _ = tx.send(f(svc).await);
            })
        });
        let name = self.0.name;
        if self.sender().send(Msg::Job(job)).is_err() {
            panic!("host {name} is not running");
        }
        async move {
            rx.await
                .unwrap_or_else(|_| panic!("a job on host {name} panicked or was dropped"))
        }
    }

    /// The host's status snapshot.
    pub(crate) async fn status(&self) -> Status {
        self.exec(|s| s.status()).await
    }

    /// The current incarnation (1 for the first run of the host software).
    pub(crate) fn incarnation(&self) -> u32 {
        self.0.incarnation.load(SeqCst)
    }

    /// The event log of the current incarnation.
    pub(crate) fn events(&self) -> Vec<Rec> {
        self.events_of(self.incarnation())
    }

    /// The event log of incarnation `inc`.
    pub(crate) fn events_of(&self, inc: u32) -> Vec<Rec> {
        lock(&self.0.events)
            .iter()
            .filter(|(i, _)| *i == inc)
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Sessions of the current incarnation, lifecycle-checked (see [`sessions_of`]).
    pub(crate) fn sessions(&self) -> BTreeMap<SessionId, SessionLog> {
        sessions_of(&self.events())
    }

    /// Messages received on session `id` (current incarnation), in order.
    pub(crate) fn msgs(&self, id: SessionId) -> Vec<u64> {
        self.sessions()
            .get(&id)
            .map(|s| s.msgs.clone())
            .unwrap_or_default()
    }

    /// How `id` closed, if it did (current incarnation).
    pub(crate) fn closed(&self, id: SessionId) -> Option<CloseReason> {
        self.sessions().get(&id).and_then(|s| s.closed.clone())
    }

    /// Ids of the sessions opened so far, in the order they opened (current incarnation).
    pub(crate) fn opened(&self) -> Vec<SessionId> {
        self.events()
            .iter()
            .filter_map(|r| match r {
                Rec::Opened { id, .. } => Some(*id),
                _ => None,
            })
            .collect()
    }

    fn record(&self, inc: u32, r: Rec) {
        lock(&self.0.events).push((inc, r));
    }

    /// A service on this host's backend, seeded with `seed` (unless `cfg` has a seed), with
    /// logging off and no subscriptions. Call it on the host (inside [`Host::exec`] and
    /// friends); the host's own service is made by the harness.
    pub(crate) fn new_service(&self, mut cfg: Config, seed: u64) -> Service {
        if cfg.rng_seed.is_none() {
            cfg.rng_seed = Some(seed);
        }
        cfg.logging = false;
        match self.0.backend {
            Backend::Tokio => Service::with_runtime(cfg, TokioRuntime::new()),
            Backend::Turmoil { .. } => Service::with_runtime(cfg, TurmoilRuntime::new(seed)),
        }
    }

    /// Creates this incarnation's service and its recording subscriptions.
    fn start_service(&self, cfg: Config, inc: u32) -> Service {
        let name_salt = self.0.name.bytes().fold(0u64, |h, b| h * 131 + b as u64);
        let seed = match self.0.backend {
            Backend::Tokio => 0x7070,
            Backend::Turmoil { seed } => seed,
        } ^ name_salt
            ^ ((inc as u64) << 40);
        // `LAXNET_PLANT=<bug> cargo test --features sim,planted-bugs --test suite` checks that
        // the suite catches that planted bug (it must fail).
        #[cfg(feature = "planted-bugs")]
        let cfg = {
            let mut cfg = cfg;
            if let Ok(bug) = std::env::var("LAXNET_PLANT") {
                cfg.planted = Some(bug.parse().expect("LAXNET_PLANT names a planted bug"));
            }
            cfg
        };
        let svc = self.new_service(cfg, seed);
        let protocol = self.0.protocol;
        let h = self.clone();
        svc.sub(Topic::sessions(protocol), move |ev: &SessionEvent| {
            let r = match ev {
                SessionEvent::Opened { session, direction } => Rec::Opened {
                    id: session.id(),
                    dir: *direction,
                    peer: session.peer_addr(),
                },
                SessionEvent::Closed { id, reason } => Rec::Closed {
                    id: *id,
                    reason: reason.clone(),
                },
                other => Rec::Note(format!("unexpected session event {other:?}")),
            };
            h.record(inc, r);
        })
        .expect("sessions subscription");
        let h = self.clone();
        svc.sub(Topic::message::<Seq>(protocol), move |m: &Received<Seq>| {
            h.record(
                inc,
                Rec::Msg {
                    id: m.session.id(),
                    seq: m.msg.seq,
                    len: m.msg.data.len(),
                    intact: m.msg.intact(),
                },
            );
        })
        .expect("message subscription");
        svc
    }

    /// The host software: (re)starts the service if it was configured, then runs jobs.
    pub(super) async fn run(self) -> turmoil::Result {
        let inc = self.0.incarnation.load(SeqCst) + 1;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let config = lock(&self.0.config).clone();
        let mut svc = config.map(|cfg| self.start_service(cfg, inc));
        // Publish the channel last: a visible incarnation is a started one.
        *lock(&self.0.tx) = Some(tx);
        self.0.incarnation.store(inc, SeqCst);
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Start(cfg, done) => {
                    let cfg = *cfg;
                    *lock(&self.0.config) = Some(cfg.clone());
                    svc = Some(self.start_service(cfg, inc));
                    let _ = done.send(());
                }
                Msg::Job(job) => {
                    let s = svc
                        .clone()
                        .unwrap_or_else(|| panic!("host {}: job before start", self.0.name));
                    tokio::spawn(job(s));
                }
            }
        }
        Ok(())
    }

    /// Tokio backend: runs the host software on a thread of its own, on a runtime with
    /// `workers` worker threads (0: a current-thread runtime).
    pub(super) fn spawn_thread(&self, workers: usize) {
        let h = self.clone();
        let (crash_tx, crash_rx) = oneshot::channel::<()>();
        *lock(&self.0.crash) = Some(crash_tx);
        std::thread::Builder::new()
            .name(format!("host-{}", self.0.name))
            .spawn(move || {
                let rt = if workers == 0 {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                } else {
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(workers)
                        .enable_all()
                        .build()
                }
                .expect("host runtime");
                rt.block_on(async {
                    tokio::select! {
                        _ = h.clone().run() => {}
                        _ = crash_rx => {}
                    }
                });
                // Dropping the runtime drops every task of the host: its sessions' tasks
                // end as if the machine had died.
                drop(rt);
                if let Some(tx) = lock(&h.0.stopped).take() {
                    let _ = tx.send(());
                }
            })
            .expect("host thread");
    }

    /// Marks the host down: no more jobs reach it (its loop ends once the channel is gone).
    pub(super) fn mark_down(&self) {
        *lock(&self.0.tx) = None;
    }

    /// Tokio backend: stops the host and waits until its runtime is gone.
    pub(super) async fn kill_thread(&self) {
        let (tx, rx) = oneshot::channel();
        *lock(&self.0.stopped) = Some(tx);
        self.mark_down();
        let crash = lock(&self.0.crash).take();
        if let Some(c) = crash {
            let _ = c.send(());
        }
        let _ = rx.await;
    }

    /// Waits until incarnation `inc` is up.
    pub(super) async fn wait_up(&self, inc: u32, ctx: &Ctx) {
        ctx.wait_for(&format!("host {} incarnation {inc}", self.0.name), || {
            self.incarnation() >= inc && self.is_up()
        })
        .await;
    }
}

/// Subscribes the service to echo every [`Seq`] back on the session it came from. A failed
/// echo is recorded as a [`Rec::Note`] (which fails every later log check).
pub(crate) fn install_echo(host: &Host, svc: &Service) {
    let h = host.clone();
    let protocol = host.protocol();
    svc.sub(Topic::message::<Seq>(protocol), move |m: &Received<Seq>| {
        if let Err(e) = m.session.send(&m.msg) {
            h.record(
                h.incarnation(),
                Rec::Note(format!(
                    "echo of {} on {} failed: {e}",
                    m.msg.seq,
                    m.session.id()
                )),
            );
        }
    })
    .expect("echo subscription");
}
