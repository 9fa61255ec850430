//! The [`Service`]: acceptors, connectors, the session table, subscriptions, status.
//!
//! A service is an explicit, cloneable handle (an `Arc`): there is no global instance, and
//! several services in one process (one per simulated host) share nothing.

pub(crate) mod status;
pub(crate) mod topic;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::sync::{mpsc, watch};

use crate::buffer::{PoolStats, SegmentQueue};
use crate::config::Config;
use crate::control::{self, Control};
use crate::crypto::handshake::SessionKeys;
use crate::crypto::io::Sealed;
use crate::crypto::{self, Encryption, HandshakeError};
use crate::error::{
    AcceptError, CloseCode, CloseReason, ConnectError, PeerClose, ProtocolViolation, Refusal,
    SubscribeError,
};
use crate::event::{SessionEvent, SubId};
use crate::id::{IdTable, SessionId};
use crate::message::Message;
use crate::planted::Bug;
use crate::protocol::Protocol;
use crate::registry::{Registry, Target};
use crate::runtime::{BoxFuture, BoxStream, Listener, Runtime, TokioRuntime};
use crate::session::context::Context;
use crate::session::context::SessionCounters;
use crate::session::driver::Driver;
use crate::session::shared::{Phase, SendState};
use crate::session::{Direction, Handlers, SessionHost, SessionRef, SessionShared};
use crate::time::Instant;

pub use status::{ProtocolCount, SessionInfo, SessionState, Status};
pub use topic::{Inbox, Topic};

struct Sessions {
    table: IdTable<Arc<SessionShared>>,
    rng: ChaCha20Rng,
}

type CloseWatchers = BTreeMap<SessionId, Vec<Box<dyn FnOnce(&CloseReason) + Send>>>;

/// The state behind a [`Service`] handle.
pub(crate) struct ServiceInner {
    pub(crate) core: Arc<Context>,
    sessions: Mutex<Sessions>,
    registry: Mutex<Arc<Registry>>,
    registry_version: AtomicU64,
    next_sub: AtomicU64,
    close_watchers: Mutex<CloseWatchers>,
    shutdown: watch::Sender<bool>,
    live: watch::Sender<usize>,
    /// Encrypted connections still in their handshake (pre-authentication), and who may start
    /// one.
    admission: Arc<crypto::admission::Admission>,
    /// Refusals still being written (see [`refuse`]).
    refusing: Arc<AtomicUsize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here completes its mutation before anything can panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ServiceInner {
    /// The current registry snapshot and its version.
    pub(crate) fn registry(&self) -> (u64, Arc<Registry>) {
        let r = lock(&self.registry);
        (self.registry_version.load(Relaxed), r.clone())
    }

    /// The registry if it changed since `version` (one atomic load when it did not).
    pub(crate) fn registry_if_newer(&self, version: u64) -> (u64, Option<Arc<Registry>>) {
        if self.registry_version.load(Relaxed) == version {
            return (version, None);
        }
        let (v, r) = self.registry();
        (v, Some(r))
    }

    fn modify_registry<E>(
        &self,
        f: impl FnOnce(&Registry) -> Result<Registry, E>,
    ) -> Result<(), E> {
        let mut r = lock(&self.registry);
        let next = f(&r)?;
        *r = Arc::new(next);
        self.registry_version.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Adds a subscription: `target` gets `topic`'s deliveries. Callbacks
    /// ([`Service::sub`]) and inboxes ([`Inbox::add`]) both come through here.
    pub(crate) fn subscribe<E>(
        &self,
        topic: Topic<E>,
        target: Target<E>,
    ) -> Result<SubId, SubscribeError> {
        let id = SubId(self.next_sub.fetch_add(1, Relaxed));
        self.modify_registry(|r| topic.subscribe(r, id, target))?;
        Ok(id)
    }

    fn is_full(&self) -> bool {
        lock(&self.sessions).table.len() >= self.core.config.max_sessions
    }

    fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Registers a new session, publishes `Opened` and starts its task. At `max_sessions`,
    /// hands the stream (and record state) back.
    #[allow(clippy::type_complexity)]
    fn open_session(
        self: &Arc<Self>,
        stream: BoxStream,
        peer: SocketAddr,
        protocol: Protocol,
        direction: Direction,
        sealed: Option<Box<Sealed>>,
    ) -> Result<SessionRef, (BoxStream, Option<Box<Sealed>>)> {
        let core = &self.core;
        let now = core.runtime.now();
        let shared = {
            let mut s = lock(&self.sessions);
            let Sessions { table, rng } = &mut *s;
            let mut made = None;
            let res = table.insert_with(rng, |id| {
                let sh = Arc::new(SessionShared {
                    id,
                    protocol,
                    peer,
                    direction,
                    opened_at: now,
                    core: core.clone(),
                    last_recv: AtomicU64::new(now.as_nanos_u64()),
                    in_flight: Default::default(),
                    max_record: sealed.as_ref().map(|s| s.max_record),
                    peer_key: sealed.as_ref().and_then(|s| s.peer_key),
                    counters: SessionCounters::default(),
                    state: Mutex::new(SendState {
                        queue: SegmentQueue::new(core.pool.clone(), core.config.segment_size),
                        phase: Phase::Open,
                        waker: None,
                        app_close: None,
                    }),
                    want_room: Default::default(),
                    room: Default::default(),
                });
                made = Some(sh.clone());
                sh
            });
            if res.is_err() {
                return Err((stream, sealed));
            }
            self.live.send_replace(table.len());
            made.expect("insert_with made the session")
        };
        match direction {
            Direction::Accepted => core.counters.accepted.fetch_add(1, Relaxed),
            _ => core.counters.connected.fetch_add(1, Relaxed),
        };
        if core.logging() {
            tracing::debug!(target: "laxnet", id = %shared.id, %peer, ?direction, "session opened");
        }
        let sref = SessionRef {
            shared: shared.clone(),
        };
        let (_, registry) = self.registry();
        let opened = SessionEvent::Opened {
            session: sref.clone(),
            direction,
        };
        // `Opened` is published before the task that reads the session's messages exists.
        if catch_unwind(AssertUnwindSafe(|| registry.publish(protocol, &opened))).is_err() {
            core.counters.panics.fetch_add(1, Relaxed);
            shared.request_close(CloseReason::Panic);
        }
        let driver = Driver::new(self.clone() as Arc<dyn SessionHost>, shared, stream, sealed);
        core.runtime.spawn(Box::pin(driver.run()));
        Ok(sref)
    }

    /// Publishes `Closed` (unless `publish` is false because it already was) and releases
    /// the session's id. Called once per session by its task.
    pub(crate) fn close_session(
        &self,
        shared: &Arc<SessionShared>,
        reason: CloseReason,
        publish: bool,
    ) {
        let core = &self.core;
        core.counters.closes[reason.kind().index()].fetch_add(1, Relaxed);
        if publish {
            self.publish_closed(shared, &reason);
        }
        if core.config.plants().on(Bug::DoubleClosed) {
            self.publish_closed(shared, &reason);
        }
        // Destroy: the id is released, then refs turn stale (a stale ref's id never
        // resolves). Fold and remove under the table lock, so a status snapshot (which reads
        // the totals under the same lock) counts this session exactly once; sends fail with
        // `Closed` from here on, so the totals no longer move.
        {
            let mut s = lock(&self.sessions);
            let done = &core.counters.done;
            let c = &shared.counters;
            for (from, to) in [
                (&c.bytes_in, &done.bytes_in),
                (&c.bytes_out, &done.bytes_out),
                (&c.msgs_in, &done.msgs_in),
                (&c.msgs_out, &done.msgs_out),
            ] {
                to.fetch_add(from.load(Relaxed), Relaxed);
            }
            if !core.config.plants().on(Bug::LeakSlot) {
                s.table.remove(shared.id);
                self.live.send_replace(s.table.len());
            }
        }
        {
            let mut st = shared.lock();
            st.phase = Phase::Destroyed;
            st.queue.clear();
            st.waker = None;
        }
        shared.room.notify_waiters();
    }

    /// Publishes `Closed` to the session subscribers of its protocol and to its close
    /// watchers.
    pub(crate) fn publish_closed(&self, shared: &Arc<SessionShared>, reason: &CloseReason) {
        let (_, registry) = self.registry();
        let closed = SessionEvent::Closed {
            id: shared.id,
            reason: reason.clone(),
        };
        let watchers = lock(&self.close_watchers)
            .remove(&shared.id)
            .unwrap_or_default();
        let publish = || {
            registry.publish(shared.protocol, &closed);
            for w in watchers {
                w(reason);
            }
        };
        if catch_unwind(AssertUnwindSafe(publish)).is_err() {
            self.core.counters.panics.fetch_add(1, Relaxed);
        }
    }

    fn sealed(&self, keys: &SessionKeys, is_client: bool, enc: &Encryption) -> Sealed {
        let c = &self.core.config;
        Sealed::new(
            keys,
            is_client,
            enc,
            &self.core.pool,
            c.read_buffer,
            c.read_buffer_max,
            c.segment_size,
        )
    }

    /// Encrypted connections in their handshake now.
    pub(crate) fn handshaking(&self) -> usize {
        self.admission.len()
    }

    fn slots_created(&self) -> usize {
        lock(&self.sessions).table.slots_created()
    }

    /// Live sessions in slot order, with the destroyed sessions' totals (bytes in/out,
    /// messages in/out) and the pool's counters read under the same lock: a session takes
    /// pooled buffers only once it is in the table and gives them all back before it leaves,
    /// so with no session live the snapshot shows no pooled byte in use.
    pub(crate) fn snapshot_with_done(&self) -> ([u64; 4], Vec<Arc<SessionShared>>, PoolStats) {
        let s = lock(&self.sessions);
        let pool = self.core.pool.stats();
        let d = &self.core.counters.done;
        let done = [
            d.bytes_in.load(Relaxed),
            d.bytes_out.load(Relaxed),
            d.msgs_in.load(Relaxed),
            d.msgs_out.load(Relaxed),
        ];
        (done, s.table.iter().map(|(_, s)| s.clone()).collect(), pool)
    }

    /// Live sessions in slot order.
    fn snapshot(&self) -> Vec<Arc<SessionShared>> {
        lock(&self.sessions)
            .table
            .iter()
            .map(|(_, s)| s.clone())
            .collect()
    }
}

impl SessionHost for ServiceInner {
    fn handlers(&self) -> (u64, Arc<dyn Handlers>) {
        let (v, r) = self.registry();
        (v, r)
    }

    fn handlers_if_newer(&self, version: u64) -> Option<(u64, Arc<dyn Handlers>)> {
        match self.registry_if_newer(version) {
            (v, Some(r)) => Some((v, r)),
            (_, None) => None,
        }
    }

    fn destroy(&self, shared: &Arc<SessionShared>, reason: CloseReason, publish: bool) {
        self.close_session(shared, reason, publish);
    }

    fn publish_closed(&self, shared: &Arc<SessionShared>, reason: &CloseReason) {
        ServiceInner::publish_closed(self, shared, reason);
    }
}

/// A handle to a network service: listeners, outbound connections and their sessions.
///
/// Cheap to clone; all clones are the same service. See the crate docs for an example.
#[derive(Clone)]
pub struct Service {
    inner: Arc<ServiceInner>,
}

impl Service {
    /// A service on real Tokio sockets. Call inside a Tokio runtime (with `net` and `time`).
    pub fn new(config: Config) -> Service {
        Service::with_runtime(config, TokioRuntime::new())
    }

    /// A service on the given runtime backend (for simulation: `TurmoilRuntime`).
    pub fn with_runtime(config: Config, runtime: impl Runtime) -> Service {
        let runtime: Arc<dyn Runtime> = Arc::new(runtime);
        let rng = match config.rng_seed {
            Some(seed) => ChaCha20Rng::seed_from_u64(seed),
            None => ChaCha20Rng::from_seed(runtime.entropy()),
        };
        let mut config = config;
        config.max_sessions = config.max_sessions.clamp(1, crate::id::MAX_SLOTS);
        let core = Arc::new(Context::new(config, runtime));
        let mut table =
            IdTable::with_generation_bits(core.config.max_sessions, core.config.id_generation_bits);
        if core.config.plants().on(Bug::NoGenerationBump) {
            table.bump = 0;
        } else if core.config.plants().on(Bug::GenerationOffByOne) {
            table.bump = 2;
        }
        let inner = Arc::new(ServiceInner {
            sessions: Mutex::new(Sessions { table, rng }),
            registry: Mutex::new(Arc::new(Registry::default())),
            registry_version: AtomicU64::new(0),
            next_sub: AtomicU64::new(1),
            close_watchers: Mutex::new(BTreeMap::new()),
            shutdown: watch::Sender::new(false),
            live: watch::Sender::new(0),
            admission: Default::default(),
            refusing: Default::default(),
            core,
        });
        let svc = Service { inner };
        if let Some(idle) = svc.inner.core.config.idle_timeout {
            svc.spawn_idle_sweep(idle);
        }
        svc
    }

    /// The configuration (with `max_sessions` clamped to what ids can address).
    pub fn config(&self) -> &Config {
        &self.inner.core.config
    }

    /// Now, on the service's runtime clock.
    pub fn now(&self) -> Instant {
        self.inner.core.runtime.now()
    }

    /// Registers message type `T` for decoding without subscribing to it (received `T`s are
    /// then counted as unhandled instead of closing the session). Subscribing registers too.
    pub fn register<T: Message>(&self) -> Result<(), SubscribeError> {
        self.inner.modify_registry(|r| r.with_message::<T>(None))
    }

    /// Subscribes `f` to `topic`. Callbacks run on the session's task, in per-session order.
    ///
    /// ```no_run
    /// # async fn demo(svc: laxnet::Service) -> Result<(), Box<dyn std::error::Error>> {
    /// use laxnet::{Protocol, Received, SessionEvent, Topic};
    /// # #[derive(borsh::BorshSerialize, borsh::BorshDeserialize, Debug)] struct Chat { text: String }
    /// # laxnet::message!(Chat = 1);
    /// svc.sub(Topic::sessions(Protocol::Bits), |ev: &SessionEvent| println!("{ev:?}"))?;
    /// svc.sub(Topic::message::<Chat>(Protocol::Bits), |m: &Received<Chat>| {
    ///     let _ = m.session.send(&m.msg); // echo
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn sub<E: 'static>(
        &self,
        topic: Topic<E>,
        f: impl Fn(&E) + Send + Sync + 'static,
    ) -> Result<SubId, SubscribeError> {
        self.inner.subscribe(topic, Target::Callback(Arc::new(f)))
    }

    /// Ends a subscription (a callback's; an inbox's end when it is dropped). Returns false if
    /// it did not exist.
    pub fn unsub(&self, id: SubId) -> bool {
        self.inner
            .modify_registry(|r| r.without(id).ok_or(()))
            .is_ok()
    }

    /// A new, empty [`Inbox`]; add topics with [`Inbox::add`].
    pub fn inbox(&self) -> Inbox {
        let (tx, rx) = mpsc::unbounded_channel();
        Inbox {
            rx,
            tx,
            subs: Vec::new(),
            service: self.clone(),
        }
    }

    /// Calls `f` once with the reason when session `id` closes: interest in one session's
    /// close, keyed by its id. Fails if the session is already gone.
    pub fn on_close(
        &self,
        id: SessionId,
        f: impl FnOnce(&CloseReason) + Send + 'static,
    ) -> Result<(), SubscribeError> {
        // Hold the watcher lock while checking liveness so a concurrent close cannot slip
        // between the check and the insert.
        let mut w = lock(&self.inner.close_watchers);
        match self.acquire(id) {
            Some(s) if !matches!(s.shared.phase(), Phase::Destroyed) => {
                w.entry(id).or_default().push(Box::new(f));
                Ok(())
            }
            _ => Err(SubscribeError::SessionGone),
        }
    }

    /// A ref to live session `id`, or `None` if no such session (never a newer session that
    /// reuses the slot).
    pub fn acquire(&self, id: SessionId) -> Option<SessionRef> {
        let s = lock(&self.inner.sessions);
        s.table.get(id).map(|shared| SessionRef {
            shared: shared.clone(),
        })
    }

    /// Listens on `addr` (`"host:port"`, port 0 for any) and opens a session with `protocol`
    /// for every connection, up to `Config::max_sessions`. [`Protocol::BitsHpke`] without an
    /// identity key pair in `Config::encryption` fails with `NotConfigured` before any I/O.
    pub async fn accept(&self, addr: &str, protocol: Protocol) -> Result<Acceptor, AcceptError> {
        if self.inner.is_shut_down() {
            return Err(AcceptError::Shutdown);
        }
        if protocol.is_encrypted() {
            let enc = self.inner.core.config.encryption.as_ref();
            if enc.and_then(|e| e.identity.as_ref()).is_none() {
                return Err(AcceptError::NotConfigured);
            }
        }
        let listener = self
            .inner
            .core
            .runtime
            .bind(addr)
            .await
            .map_err(AcceptError::Io)?;
        let local_addr = listener.local_addr().map_err(AcceptError::Io)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = accept_loop(self.inner.clone(), listener, protocol, stop_rx);
        spawn_guarded(&self.inner.core, Box::pin(task));
        if self.inner.core.logging() {
            tracing::info!(target: "laxnet", %local_addr, %protocol, "listening");
        }
        Ok(Acceptor {
            local_addr,
            stop: stop_tx,
        })
    }

    /// Connects to `addr` and opens a session with `protocol`. Fails after
    /// `Config::connect_timeout`. [`Protocol::BitsHpke`] without the server's key in
    /// `Config::encryption` fails with `NotConfigured` before any I/O.
    pub async fn connect(
        &self,
        addr: &str,
        protocol: Protocol,
    ) -> Result<SessionRef, ConnectError> {
        let inner = &self.inner;
        if inner.is_shut_down() {
            return Err(ConnectError::Shutdown);
        }
        // The encryption settings and the client's handshake keys, checked before any I/O.
        let hpke = match protocol {
            Protocol::Bits => None,
            Protocol::BitsHpke => {
                let core = &inner.core;
                match (
                    core.config.encryption.as_ref(),
                    core.handshake_keys.as_ref().and_then(|k| k.client()),
                ) {
                    (Some(enc), Some(keys)) => Some((enc, keys)),
                    _ => return Err(ConnectError::NotConfigured),
                }
            }
        };
        if lock(&inner.sessions).table.len() >= inner.core.config.max_sessions {
            return Err(ConnectError::TooManySessions);
        }
        let rt = &inner.core.runtime;
        let timeout = inner.core.config.connect_timeout;
        // "bits": the server's Open frame (or its refusal) is part of connecting.
        let connecting = async {
            let (mut stream, peer) = rt.connect(addr).await.map_err(ConnectError::Io)?;
            if hpke.is_none() {
                read_open(&mut stream).await?;
            }
            Ok((stream, peer))
        };
        let res = crate::runtime::timeout(&**rt, timeout, connecting).await;
        let (mut stream, peer) = match res {
            None => {
                inner.core.counters.connect_failures.fetch_add(1, Relaxed);
                return Err(ConnectError::Timeout);
            }
            Some(Err(e)) => {
                inner.core.counters.connect_failures.fetch_add(1, Relaxed);
                return Err(e);
            }
            Some(Ok(x)) => x,
        };
        let sealed = if let Some((enc, keys)) = hpke {
            match crypto::io::client(&**rt, &mut stream, enc, keys).await {
                Ok((keys, finished)) => {
                    inner.core.counters.handshakes.fetch_add(1, Relaxed);
                    let mut sealed = Box::new(inner.sealed(&keys, true, enc));
                    // Written by the session task with its first records.
                    sealed.queue_finished(&finished);
                    Some(sealed)
                }
                Err(HandshakeError::Refused(code)) => {
                    inner.core.counters.connect_failures.fetch_add(1, Relaxed);
                    let code = CloseCode::from_u8(code);
                    return Err(ConnectError::Refused(Refusal::from(code)));
                }
                Err(e) => {
                    inner.core.counters.handshake_failures.fetch_add(1, Relaxed);
                    return Err(ConnectError::Handshake(e));
                }
            }
        } else {
            None
        };
        if inner.is_shut_down() {
            if let Some(mut s) = sealed {
                let body = close_body(CloseCode::ShuttingDown);
                crypto::io::refuse(&**rt, &mut stream, &mut s, &body).await;
            }
            return Err(ConnectError::Shutdown);
        }
        match inner.open_session(stream, peer, protocol, Direction::Connected, sealed) {
            Ok(s) => Ok(s),
            Err((mut stream, sealed)) => {
                if let Some(mut s) = sealed {
                    let body = close_body(CloseCode::Full);
                    crypto::io::refuse(&**rt, &mut stream, &mut s, &body).await;
                }
                Err(ConnectError::TooManySessions)
            }
        }
    }

    /// Switches this service's logging (tracing events and session spans under the target
    /// `laxnet`) on or off at run time.
    pub fn set_logging(&self, on: bool) {
        self.inner.core.set_logging(on);
    }

    /// Whether logging is on.
    pub fn logging(&self) -> bool {
        self.inner.core.logging()
    }

    /// Stops every listener, closes every session (reason `Shutdown`, each flushed within the
    /// linger time) and returns when all of them are destroyed. Later `accept`/`connect`
    /// calls fail with `Shutdown`. Finally drops every subscription (callbacks often hold a
    /// clone of the service; without a shutdown that cycle keeps the service alive).
    pub async fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        for s in self.inner.snapshot() {
            s.request_close(CloseReason::Shutdown);
        }
        let mut live = self.inner.live.subscribe();
        let _ = live.wait_for(|n| *n == 0).await;
        // Handshakes in progress see the shutdown and give up; none outlives the service.
        self.inner.admission.idle().await;
        // Subscriptions often capture a clone of the service: dropping them here breaks that
        // cycle so the service's memory is freed once the last handle goes.
        let _ = self
            .inner
            .modify_registry(|_| Ok::<_, Infallible>(Registry::default()));
        lock(&self.inner.close_watchers).clear();
        self.inner.core.pool.trim();
    }

    fn spawn_idle_sweep(&self, idle: std::time::Duration) {
        let inner = Arc::downgrade(&self.inner);
        let core = self.inner.core.clone();
        let mut stop = self.inner.shutdown.subscribe();
        let period = core.config.idle_sweep;
        let task = async move {
            loop {
                let tick = crate::runtime::sleep(&*core.runtime, period);
                tokio::select! {
                    biased;
                    Ok(_) = stop.wait_for(|s| *s) => return,
                    () = tick => {}
                }
                let Some(inner) = inner.upgrade() else { return };
                let now = core.runtime.now();
                for s in inner.snapshot() {
                    if s.silent_for(now, idle) {
                        s.request_close(CloseReason::Idle);
                    }
                }
            }
        };
        spawn_guarded(&self.inner.core, Box::pin(task));
    }

    pub(crate) fn inner(&self) -> &Arc<ServiceInner> {
        &self.inner
    }
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("runtime", &self.inner.core.runtime.name())
            .finish()
    }
}

/// A listener started by [`Service::accept`]. Dropping the handle keeps it listening;
/// [`Acceptor::close`] or service shutdown stops it.
#[derive(Debug)]
pub struct Acceptor {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl Acceptor {
    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting; sessions already open are not affected.
    pub fn close(&self) {
        self.stop.send_replace(true);
    }
}

async fn accept_loop(
    inner: Arc<ServiceInner>,
    listener: Box<dyn Listener>,
    protocol: Protocol,
    mut stop: watch::Receiver<bool>,
) {
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        let res = tokio::select! {
            biased;
            Ok(_) = shutdown.wait_for(|s| *s) => return,
            // A dropped `Acceptor` handle closes the channel: keep listening (a disabled branch).
            Ok(_) = stop.wait_for(|s| *s) => return,
            r = listener.accept() => r,
        };
        let core = &inner.core;
        match res {
            Ok((stream, peer)) if protocol.is_encrypted() => {
                start_server_handshake(&inner, stream, peer)
            }
            Ok((stream, _)) if inner.is_shut_down() => {
                let refusal = control::frame(&close_body(CloseCode::ShuttingDown));
                refuse(&inner, stream, &refusal);
            }
            Ok((stream, peer)) => {
                if let Err((stream, _)) =
                    inner.open_session(stream, peer, protocol, Direction::Accepted, None)
                {
                    // At max_sessions: the client learns why instead of its `connect`
                    // succeeding.
                    core.counters.refused.fetch_add(1, Relaxed);
                    if core.logging() {
                        tracing::warn!(target: "laxnet", %peer, "refused: max sessions reached");
                    }
                    let refusal = control::frame(&close_body(CloseCode::Full));
                    refuse(&inner, stream, &refusal);
                }
            }
            Err(e) => {
                if core.logging() {
                    tracing::warn!(target: "laxnet", error = %e, "accept failed");
                }
                // Out of descriptors and similar: back off instead of spinning.
                crate::runtime::sleep(&*core.runtime, std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Runs the server side of an encrypted handshake in its own task, so a slow client never
/// holds up the accept loop. The connection holds no session (no id, no event) until the
/// client has proved liveness; admission ([`crypto::admission`]) bounds how many run at once,
/// in all and per source, evicting stalled attempts to make room for new ones.
fn start_server_handshake(inner: &Arc<ServiceInner>, stream: BoxStream, peer: SocketAddr) {
    let core = &inner.core;
    let Some(enc) = core.config.encryption.as_ref() else {
        return;
    };
    if inner.is_full() {
        core.counters.refused.fetch_add(1, Relaxed);
        let code = CloseCode::Full.to_u8();
        return refuse(inner, stream, &crypto::io::refusal(code));
    }
    let source = crypto::admission::Source::of(peer.ip());
    let mut limits = enc.admission_limits();
    if core.config.plants().on(Bug::RefuseInsteadOfEvict) {
        limits.evict = false;
    }
    let admitted = inner.admission.admit(source, core.runtime.now(), limits);
    if admitted.evicted > 0 {
        core.counters
            .handshakes_evicted
            .fetch_add(admitted.evicted.into(), Relaxed);
    }
    let Some(mut ticket) = admitted.ticket else {
        core.counters.handshakes_refused.fetch_add(1, Relaxed);
        let code = CloseCode::Busy.to_u8();
        return refuse(inner, stream, &crypto::io::refusal(code));
    };
    let inner2 = inner.clone();
    let mut stream = stream;
    spawn_guarded(
        core,
        Box::pin(async move {
            let inner = inner2;
            // Borrowed from the service's own configuration, not cloned per connection (an
            // allow-list can be long).
            let (Some(enc), Some(keys)) = (
                inner.core.config.encryption.as_ref(),
                inner.core.handshake_keys.as_ref().and_then(|k| k.server()),
            ) else {
                return;
            };
            let rt = &*inner.core.runtime;
            let mut stop = inner.shutdown.subscribe();
            let res = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => None,
                r = crypto::io::server(rt, &mut stream, enc, keys, &mut ticket) => Some(r),
            };
            // The place goes back before the session opens (or the stream is dropped).
            if matches!(res, Some(Err(_))) && inner.core.config.plants().on(Bug::HandshakeSlotLeak)
            {
                std::mem::forget(ticket);
            } else {
                drop(ticket);
            }
            let Some(res) = res else {
                // The service is shutting down: give up (dropping the stream closes it).
                return;
            };
            let counters = &inner.core.counters;
            match res {
                Ok(keys) => {
                    counters.handshakes.fetch_add(1, Relaxed);
                    let mut sealed = Box::new(inner.sealed(&keys, false, enc));
                    drop(keys);
                    if inner.is_shut_down() {
                        // Authenticated close: the client learns why, it sees no truncation.
                        let body = close_body(CloseCode::ShuttingDown);
                        crypto::io::refuse(rt, &mut stream, &mut sealed, &body).await;
                        return;
                    }
                    if let Err((mut stream, Some(mut sealed))) = inner.open_session(
                        stream,
                        peer,
                        Protocol::BitsHpke,
                        Direction::Accepted,
                        Some(sealed),
                    ) {
                        counters.refused.fetch_add(1, Relaxed);
                        let body = close_body(CloseCode::Full);
                        crypto::io::refuse(rt, &mut stream, &mut sealed, &body).await;
                    }
                }
                // Evicted (counted when it happened).
                Err(HandshakeError::Busy) => {
                    let code = CloseCode::Busy.to_u8();
                    refuse(&inner, stream, &crypto::io::refusal(code));
                }
                Err(e) => {
                    if matches!(
                        e,
                        HandshakeError::Peer(crypto::PeerMisbehaved::UnknownClientKey)
                    ) {
                        let code = CloseCode::NotAllowed.to_u8();
                        refuse(&inner, stream, &crypto::io::refusal(code));
                    }
                    counters.handshake_failures.fetch_add(1, Relaxed);
                    if inner.core.logging() {
                        tracing::info!(target: "laxnet", %peer, error = %e, "handshake failed");
                    }
                }
            }
        }),
    );
}

/// A close body with `code` and nothing else (`docs/wire.md`).
fn close_body(code: CloseCode) -> Vec<u8> {
    control::close_body(&PeerClose::new(code))
}

/// Reads a "bits" server's first frame: its Open frame, or its refusal (a close frame).
/// Reads exactly that frame, so no application byte is taken before the session exists.
async fn read_open(stream: &mut BoxStream) -> Result<(), ConnectError> {
    use tokio::io::AsyncReadExt;
    let mut header = [0u8; crate::message::HEADER_BYTES];
    stream
        .read_exact(&mut header)
        .await
        .map_err(ConnectError::Io)?;
    let len = control::header_body_len(&header).map_err(ConnectError::Protocol)?;
    let mut body = [0u8; control::MAX_BODY];
    stream
        .read_exact(&mut body[..len])
        .await
        .map_err(ConnectError::Io)?;
    match control::decode(&body[..len]).map_err(ConnectError::Protocol)? {
        Control::Open { .. } => Ok(()),
        Control::Close(pc) => Err(ConnectError::Refused(Refusal::from(pc.code))),
        Control::Unknown => Err(ConnectError::Protocol(ProtocolViolation::BadControl)),
    }
}

/// Refusals written at once, at most: each holds a connection (and a small task) for up to
/// the linger time; beyond it a flood of connections is dropped without a word.
const MAX_REFUSING: usize = 1024;

/// Refuses a connection that gets no session: writes `refusal`, shuts the write side down,
/// and reads what the client sends until it closes (a close over unread bytes would reset
/// the connection, and a reset can overtake the refusal), all bounded by the linger time,
/// in a task of its own. Beyond [`MAX_REFUSING`] refusals at once (a flood), the stream is
/// dropped instead, which closes it: a refusal is best effort, a client may see a reset.
fn refuse(inner: &Arc<ServiceInner>, stream: BoxStream, refusal: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let core = &inner.core;
    if core.config.plants().on(Bug::RefusalLooksLikeReset)
        || inner.refusing.load(Relaxed) >= MAX_REFUSING
    {
        return;
    }
    inner.refusing.fetch_add(1, Relaxed);
    let refusing = inner.refusing.clone();
    let rt = core.runtime.clone();
    let linger = core.config.linger;
    let refusal = refusal.to_vec();
    let mut stream = stream;
    spawn_guarded(
        core,
        Box::pin(async move {
            let io = async {
                stream.write_all(&refusal).await?;
                stream.shutdown().await?;
                let mut buf = [0u8; 512];
                while stream.read(&mut buf).await? > 0 {}
                Ok::<_, std::io::Error>(())
            };
            let _ = crate::runtime::timeout(&*rt, linger, io).await;
            refusing.fetch_sub(1, Relaxed);
        }),
    );
}

/// Spawns a service task; a panic in it is counted and logged instead of vanishing.
fn spawn_guarded(core: &Arc<Context>, task: BoxFuture<'static, ()>) {
    let c = core.clone();
    let mut task = task;
    core.runtime.spawn(Box::pin(std::future::poll_fn(
        move |cx| match catch_unwind(AssertUnwindSafe(|| task.as_mut().poll(cx))) {
            Ok(p) => p,
            Err(_) => {
                c.counters.panics.fetch_add(1, Relaxed);
                tracing::error!(target: "laxnet", "a service task panicked");
                std::task::Poll::Ready(())
            }
        },
    )));
}
