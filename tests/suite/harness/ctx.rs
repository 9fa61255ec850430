//! [`Ctx`]: what a scenario gets: the two hosts, the listener and connections over the run's
//! protocol, waits bounded by the backend's clock, and crash/restart of the client host.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use laxnet::runtime::BoxStream;
use laxnet::{
    Acceptor, Config, Protocol, Runtime, Service, SessionRef, TokioRuntime, TurmoilRuntime,
};
use tokio::sync::oneshot;

use super::backends::Backend;
use super::fixtures::{HPKE, client_encryption, server_encryption};
use super::host::{Host, Msg};
use super::lock;
use super::log::tail;

/// Requests from the scenario to the turmoil step loop.
#[derive(Default)]
pub(super) struct SimControl {
    pub(super) crash_client: AtomicBool,
    pub(super) restart_client: AtomicBool,
    /// Set by the step loop once the requested crash/restart is done.
    pub(super) done: AtomicBool,
}

/// What a scenario gets: the two hosts plus backend-specific helpers.
pub(crate) struct Ctx {
    pub(crate) server: Host,
    pub(crate) client: Host,
    backend: Backend,
    /// The protocol of this run ([`BITS`] or [`HPKE`]): the hosts' subscriptions, the
    /// listener and every connection use it.
    protocol: Protocol,
    addr: Mutex<Option<String>>,
    acceptors: Mutex<Vec<Acceptor>>,
    pub(super) sim: Arc<SimControl>,
}

impl Ctx {
    pub(super) fn new(backend: Backend, protocol: Protocol) -> Arc<Ctx> {
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
    pub(crate) fn protocol(&self) -> Protocol {
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
