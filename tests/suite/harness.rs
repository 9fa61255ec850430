//! The two-backend harness: a scenario is written once against [`Ctx`] and run on real loopback
//! sockets ([`run_tokio`]) and inside the turmoil simulator ([`run_turmoil`]).
//!
//! Each "host" (server, client) owns one [`Service`] and runs a loop that executes closures sent
//! to it over a channel, so every call to a service happens on the runtime (and clock) of the
//! host that owns it. Every host records what its subscribers saw in an event log ([`Rec`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use borsh::{BorshDeserialize, BorshSerialize};
use laxnet::runtime::BoxStream;
use laxnet::{
    Acceptor, CloseReason, Config, Direction, Encryption, KeyPair, Received, Runtime, Service,
    SessionEvent, SessionId, SessionRef, Status, TokioRuntime, Topic, TurmoilRuntime,
};
use tokio::sync::{mpsc, oneshot};

/// The plaintext protocol.
pub(crate) const BITS: &str = laxnet::BITS;

/// The encrypted protocol.
pub(crate) const HPKE: &str = laxnet::BITS_HPKE;

/// The server's static key pair, the same on every run and backend (derived once: an X25519
/// operation costs about 10 ms in a debug build).
pub(crate) fn server_key() -> &'static KeyPair {
    static KEY: LazyLock<KeyPair> = LazyLock::new(|| KeyPair::from_seed(&[7; 32]));
    &KEY
}

/// Time allowed for a handshake in the suite: generous, because a debug build spends tens of
/// milliseconds of CPU on each, and a loaded machine must not turn that into failures.
/// Scenarios that test the timeout set their own.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The encryption settings a server gets by default under [`HPKE`]: its key pair.
pub(crate) fn server_encryption() -> Encryption {
    let mut e = Encryption::server(server_key().clone());
    e.handshake_timeout = HANDSHAKE_TIMEOUT;
    e
}

/// The encryption settings a client gets by default under [`HPKE`]: the server's public key,
/// pinned.
pub(crate) fn client_encryption() -> Encryption {
    let mut e = Encryption::client(server_key().public());
    e.handshake_timeout = HANDSHAKE_TIMEOUT;
    e
}

/// Seeds every turmoil scenario runs with.
pub(crate) const SEEDS: [u64; 3] = [1, 2, 3];

/// The workhorse message: a sequence number and a payload derived from it.
#[derive(BorshSerialize, BorshDeserialize, Debug, Clone, PartialEq)]
pub(crate) struct Seq {
    pub(crate) seq: u64,
    pub(crate) data: Vec<u8>,
}
laxnet::message!(Seq = 1);

impl Seq {
    /// Message `seq` with a `len`-byte payload whose content depends on `seq`.
    pub(crate) fn new(seq: u64, len: usize) -> Seq {
        Seq {
            seq,
            data: pattern(seq, len),
        }
    }

    /// True if the payload is the one [`Seq::new`] makes.
    pub(crate) fn intact(&self) -> bool {
        self.data
            .iter()
            .enumerate()
            .all(|(i, b)| *b == pattern_byte(self.seq, i))
    }

    /// Bytes of this message on the wire (frame header included).
    pub(crate) fn wire_len(&self) -> u64 {
        8 + 8 + 4 + self.data.len() as u64
    }

    /// The frame exactly as the "bits" format puts it on the wire.
    pub(crate) fn frame(&self) -> Vec<u8> {
        let body = borsh::to_vec(self).unwrap();
        let mut f = ((body.len() + 4) as u32).to_le_bytes().to_vec();
        f.extend_from_slice(&<Seq as laxnet::Message>::ID.to_le_bytes());
        f.extend_from_slice(&body);
        f
    }
}

fn pattern_byte(seq: u64, i: usize) -> u8 {
    (seq as u8).wrapping_mul(31).wrapping_add(i as u8)
}

fn pattern(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| pattern_byte(seq, i)).collect()
}

/// A raw frame: `len` prefix, message id, body.
pub(crate) fn raw_frame(id: u32, body: &[u8]) -> Vec<u8> {
    let mut f = ((body.len() + 4) as u32).to_le_bytes().to_vec();
    f.extend_from_slice(&id.to_le_bytes());
    f.extend_from_slice(body);
    f
}

/// One entry of a host's event log, written by the subscriptions every host installs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Rec {
    Opened {
        id: SessionId,
        dir: Direction,
        peer: SocketAddr,
    },
    Closed {
        id: SessionId,
        reason: CloseReason,
    },
    Msg {
        id: SessionId,
        seq: u64,
        len: usize,
        intact: bool,
    },
    /// Something a helper subscriber wants the test to see (e.g. an echo that failed).
    Note(String),
}

/// What one session went through, as rebuilt from an event log by [`sessions_of`].
#[derive(Debug, Clone)]
pub(crate) struct SessionLog {
    pub(crate) id: SessionId,
    pub(crate) dir: Direction,
    pub(crate) peer: SocketAddr,
    pub(crate) msgs: Vec<u64>,
    pub(crate) bytes: u64,
    pub(crate) closed: Option<CloseReason>,
}

/// Rebuilds every session's history from a log and checks the lifecycle contract on the way:
/// one `Opened` first, messages only between `Opened` and `Closed`, at most one `Closed`, nothing
/// after it, every payload intact. Panics with the offending record otherwise.
pub(crate) fn sessions_of(log: &[Rec]) -> BTreeMap<SessionId, SessionLog> {
    let mut out: BTreeMap<SessionId, SessionLog> = BTreeMap::new();
    for (i, r) in log.iter().enumerate() {
        match r {
            Rec::Opened { id, dir, peer } => {
                let prev = out.insert(
                    *id,
                    SessionLog {
                        id: *id,
                        dir: *dir,
                        peer: *peer,
                        msgs: Vec::new(),
                        bytes: 0,
                        closed: None,
                    },
                );
                assert!(prev.is_none(), "record {i}: second Opened for {id}: {r:?}");
            }
            Rec::Closed { id, reason } => {
                let s = out
                    .get_mut(id)
                    .unwrap_or_else(|| panic!("record {i}: Closed before Opened: {r:?}"));
                assert!(
                    s.closed.is_none(),
                    "record {i}: second Closed for {id}: {r:?} (first: {:?})",
                    s.closed
                );
                s.closed = Some(reason.clone());
            }
            Rec::Msg {
                id,
                seq,
                len,
                intact,
            } => {
                let s = out
                    .get_mut(id)
                    .unwrap_or_else(|| panic!("record {i}: message before Opened: {r:?}"));
                assert!(
                    s.closed.is_none(),
                    "record {i}: message after Closed ({:?}): {r:?}",
                    s.closed
                );
                assert!(*intact, "record {i}: corrupted payload: {r:?}");
                s.msgs.push(*seq);
                s.bytes += 8 + 8 + 4 + *len as u64;
            }
            Rec::Note(n) => panic!("record {i}: {n}"),
        }
    }
    out
}

type Job = Box<dyn FnOnce(Service) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

enum Msg {
    Start(Box<Config>, oneshot::Sender<()>),
    Job(Job),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Tokio,
    Turmoil { seed: u64 },
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct HostState {
    name: &'static str,
    backend: Backend,
    /// The protocol its recording subscriptions (and echo) listen to.
    protocol: &'static str,
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
    fn new(name: &'static str, backend: Backend, protocol: &'static str) -> Host {
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
    pub(crate) fn protocol(&self) -> &'static str {
        self.0.protocol
    }

    fn sender(&self) -> mpsc::UnboundedSender<Msg> {
        lock(&self.0.tx)
            .clone()
            .unwrap_or_else(|| panic!("host {} is not running", self.0.name))
    }

    fn is_up(&self) -> bool {
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
    async fn run(self) -> turmoil::Result {
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
    fn spawn_thread(&self, workers: usize) {
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

    /// Tokio backend: stops the host and waits until its runtime is gone.
    async fn kill_thread(&self) {
        let (tx, rx) = oneshot::channel();
        *lock(&self.0.stopped) = Some(tx);
        *lock(&self.0.tx) = None;
        let crash = lock(&self.0.crash).take();
        if let Some(c) = crash {
            let _ = c.send(());
        }
        let _ = rx.await;
    }

    /// Waits until incarnation `inc` is up.
    async fn wait_up(&self, inc: u32, ctx: &Ctx) {
        ctx.wait_for(&format!("host {} incarnation {inc}", self.0.name), || {
            self.incarnation() >= inc && self.is_up()
        })
        .await;
    }
}

/// Requests from the scenario to the turmoil step loop.
#[derive(Default)]
struct SimControl {
    crash_client: AtomicBool,
    restart_client: AtomicBool,
    /// Set by the step loop once the requested crash/restart is done.
    done: AtomicBool,
}

/// What a scenario gets: the two hosts plus backend-specific helpers.
pub(crate) struct Ctx {
    pub(crate) server: Host,
    pub(crate) client: Host,
    backend: Backend,
    /// The protocol of this run ([`BITS`] or [`HPKE`]): the hosts' subscriptions, the
    /// listener and every connection use it.
    protocol: &'static str,
    addr: Mutex<Option<String>>,
    acceptors: Mutex<Vec<Acceptor>>,
    sim: Arc<SimControl>,
}

impl Ctx {
    fn new(backend: Backend, protocol: &'static str) -> Arc<Ctx> {
        Arc::new(Ctx {
            server: Host::new("server", backend, protocol),
            client: Host::new("client", backend, protocol),
            backend,
            protocol,
            addr: Mutex::new(None),
            acceptors: Mutex::default(),
            sim: Arc::default(),
        })
    }

    /// The protocol of this run.
    pub(crate) fn protocol(&self) -> &'static str {
        self.protocol
    }

    /// True if this run uses the encrypted protocol.
    pub(crate) fn encrypted(&self) -> bool {
        self.protocol == HPKE
    }

    /// True inside the turmoil simulator (virtual time).
    pub(crate) fn is_sim(&self) -> bool {
        matches!(self.backend, Backend::Turmoil { .. })
    }

    /// The turmoil seed, or 0 on tokio.
    pub(crate) fn seed(&self) -> u64 {
        match self.backend {
            Backend::Tokio => 0,
            Backend::Turmoil { seed } => seed,
        }
    }

    /// The default bound on a wait: real seconds on tokio, virtual seconds on turmoil.
    pub(crate) fn patience(&self) -> Duration {
        if self.is_sim() {
            Duration::from_secs(30)
        } else {
            Duration::from_secs(15)
        }
    }

    /// Sleeps on the test's clock (virtual on turmoil).
    pub(crate) async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }

    /// Creates the services on both hosts. Under [`HPKE`], a config without encryption
    /// settings gets the defaults ([`server_encryption`], [`client_encryption`]).
    pub(crate) async fn start(&self, mut server: Config, mut client: Config) {
        if self.encrypted() {
            server.encryption.get_or_insert_with(server_encryption);
            client.encryption.get_or_insert_with(client_encryption);
        }
        for (h, cfg) in [(&self.server, server), (&self.client, client)] {
            let (tx, rx) = oneshot::channel();
            if h.sender().send(Msg::Start(Box::new(cfg), tx)).is_err() {
                panic!("host {} is not running", h.name());
            }
            rx.await.expect("service start");
        }
    }

    /// The address the server binds to on this backend.
    pub(crate) fn bind_addr(&self) -> &'static str {
        if self.is_sim() {
            "0.0.0.0:7000"
        } else {
            "127.0.0.1:0"
        }
    }

    /// Starts the server's listener for this run's protocol; returns (and remembers) the
    /// address to dial.
    pub(crate) async fn listen(&self) -> String {
        let bind = self.bind_addr();
        let protocol = self.protocol;
        let acceptor = self
            .server
            .exec_async(
                move |s: Service| async move { s.accept(bind, protocol).await.expect("accept") },
            )
            .await;
        let local = acceptor.local_addr();
        // Keep the handle: see `scenarios::dropped_acceptor_keeps_listening`.
        lock(&self.acceptors).push(acceptor);
        let addr = if self.is_sim() {
            "server:7000".to_string()
        } else {
            local.to_string()
        };
        *lock(&self.addr) = Some(addr.clone());
        addr
    }

    /// The address the server binds its `n`-th extra listener to (port 0 on tokio).
    pub(crate) fn bind_addr_n(&self, n: u16) -> String {
        if self.is_sim() {
            format!("0.0.0.0:{}", 7000 + n)
        } else {
            "127.0.0.1:0".to_string()
        }
    }

    /// The address to dial for a listener bound with [`Ctx::bind_addr_n`] to `local`.
    pub(crate) fn dial_addr(&self, local: SocketAddr) -> String {
        if self.is_sim() {
            format!("server:{}", local.port())
        } else {
            local.to_string()
        }
    }

    /// The address clients dial ("127.0.0.1:PORT" on tokio, "server:7000" on turmoil).
    pub(crate) fn server_addr(&self) -> String {
        lock(&self.addr).clone().expect("listen() first")
    }

    /// Connects one client session to the server.
    pub(crate) async fn connect(&self) -> SessionRef {
        self.try_connect().await.expect("connect")
    }

    /// Connects one client session to the server; returns the error if that fails.
    pub(crate) async fn try_connect(&self) -> Result<SessionRef, laxnet::ConnectError> {
        let addr = self.server_addr();
        let protocol = self.protocol;
        self.client
            .exec_async(move |s: Service| async move { s.connect(&addr, protocol).await })
            .await
    }

    /// A raw byte stream to the server, through the backend's `Runtime::connect`.
    pub(crate) async fn raw_connect(&self) -> std::io::Result<BoxStream> {
        let addr = self.server_addr();
        let res = match self.backend {
            Backend::Tokio => TokioRuntime::new().connect(&addr).await,
            Backend::Turmoil { seed } => TurmoilRuntime::new(seed).connect(&addr).await,
        };
        res.map(|(s, _)| s)
    }

    /// Waits (bounded by [`Ctx::patience`]) until `cond` holds; panics if it never does.
    pub(crate) async fn wait_for(&self, what: &str, mut cond: impl FnMut() -> bool) {
        self.wait_until(what, async || cond()).await
    }

    /// [`Ctx::wait_for`] with an async condition (e.g. one that asks a host for its status).
    pub(crate) async fn wait_until(&self, what: &str, mut cond: impl AsyncFnMut() -> bool) {
        let step = if self.is_sim() {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(5)
        };
        let deadline = tokio::time::Instant::now() + self.patience();
        loop {
            if cond().await {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "timed out after {:?} waiting for: {what}\nserver log: {:#?}\nclient log: {:#?}",
                    self.patience(),
                    tail(&self.server.events()),
                    tail(&self.client.events())
                );
            }
            tokio::time::sleep(step).await;
        }
    }

    /// Awaits `fut`, bounded by [`Ctx::patience`].
    pub(crate) async fn within<T>(&self, what: &str, fut: impl Future<Output = T>) -> T {
        match tokio::time::timeout(self.patience(), fut).await {
            Ok(v) => v,
            Err(_) => panic!("timed out after {:?}: {what}", self.patience()),
        }
    }

    /// Crashes the client host: its runtime and every task on it are dropped.
    pub(crate) async fn crash_client(&self) {
        match self.backend {
            Backend::Tokio => self.client.kill_thread().await,
            Backend::Turmoil { .. } => {
                self.sim.done.store(false, SeqCst);
                self.sim.crash_client.store(true, SeqCst);
                self.wait_for("the simulator to crash the client", || {
                    self.sim.done.load(SeqCst)
                })
                .await;
            }
        }
        assert!(!self.client.is_up());
    }

    /// Restarts the crashed client host; its service comes back with the same configuration
    /// (and a fresh event log, see [`Host::events`]).
    pub(crate) async fn restart_client(&self) {
        let next = self.client.incarnation() + 1;
        match self.backend {
            Backend::Tokio => self.client.spawn_thread(0),
            Backend::Turmoil { .. } => {
                self.sim.done.store(false, SeqCst);
                self.sim.restart_client.store(true, SeqCst);
            }
        }
        self.client.wait_up(next, self).await;
    }

    /// Waits until neither service has a live session or a pool block in use.
    pub(crate) async fn assert_no_leaks(&self) {
        for h in [&self.server, &self.client] {
            let hh = h.clone();
            self.wait_until(
                &format!("{}: no live session, no pool bytes", h.name()),
                async || {
                    let st = hh.status().await;
                    st.live() == 0 && st.pool.in_use_bytes == 0 && st.pool.in_use_blocks == 0
                },
            )
            .await;
            let st = h.status().await;
            assert_eq!(st.panics, 0, "{}: {st}", h.name());
        }
    }
}

fn tail(log: &[Rec]) -> &[Rec] {
    &log[log.len().saturating_sub(40)..]
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

/// Runs `body` over `protocol` on real loopback sockets: server and client each on a Tokio
/// runtime of their own (a 2-worker multi-thread runtime for the server, a current-thread one
/// for the client).
pub(crate) fn run_tokio<F, Fut>(protocol: &'static str, body: F)
where
    F: FnOnce(Arc<Ctx>) -> Fut,
    Fut: Future<Output = ()>,
{
    let ctx = Ctx::new(Backend::Tokio, protocol);
    ctx.server.spawn_thread(2);
    ctx.client.spawn_thread(0);
    // Stops the host threads even if the scenario panics.
    struct Teardown(Host, Host);
    impl Drop for Teardown {
        fn drop(&mut self) {
            *lock(&self.0.0.tx) = None;
            *lock(&self.1.0.tx) = None;
        }
    }
    let _teardown = Teardown(ctx.server.clone(), ctx.client.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test runtime");
    rt.block_on(async {
        let c = ctx.clone();
        c.server.wait_up(1, &ctx).await;
        c.client.wait_up(1, &ctx).await;
        tokio::time::timeout(Duration::from_secs(90), body(ctx.clone()))
            .await
            .expect("scenario timed out");
    });
}

/// Runs `body` over `protocol` inside a turmoil simulation with `seed`: hosts "server" and
/// "client", the body as client "test", and a step loop that honours crash/restart requests.
pub(crate) fn run_turmoil<F, Fut>(seed: u64, protocol: &'static str, body: F)
where
    F: FnOnce(Arc<Ctx>) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .simulation_duration(Duration::from_secs(120))
        .tcp_capacity(4096)
        .build();
    let ctx = Ctx::new(Backend::Turmoil { seed }, protocol);
    for h in [ctx.server.clone(), ctx.client.clone()] {
        sim.host(h.name(), move || h.clone().run());
    }
    let fut = body(ctx.clone());
    let c = ctx.clone();
    sim.client("test", async move {
        c.server.wait_up(1, &c).await;
        c.client.wait_up(1, &c).await;
        fut.await;
        Ok(())
    });
    loop {
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => panic!("seed {seed}: simulation failed: {e}"),
        }
        let ctl = &ctx.sim;
        if ctl.crash_client.swap(false, SeqCst) {
            sim.crash("client");
            *lock(&ctx.client.0.tx) = None;
            ctl.done.store(true, SeqCst);
        }
        if ctl.restart_client.swap(false, SeqCst) {
            sim.bounce("client");
            ctl.done.store(true, SeqCst);
        }
    }
}
