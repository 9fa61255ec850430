//! The [`Service`]: acceptors, connectors, the session table, subscriptions, status.
//!
//! A service is an explicit, cloneable handle (an `Arc`): there is no global instance, and
//! several services in one process (one per simulated host) share nothing.
//!
//! This file holds the handle, the state behind it and the glue its parts share; each part
//! has its own file: `sessions` (the session table: open, close, look up), `subscribe`
//! (the registry of subscriptions), `accept` (listeners and the server handshake),
//! `connect` (outbound sessions), `shutdown` (shutdown and the idle sweep), `status` and
//! `topic`.

mod accept;
mod connect;
mod sessions;
mod shutdown;
pub(crate) mod status;
mod subscribe;
pub(crate) mod topic;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use tokio::sync::watch;

use crate::config::Config;
use crate::control;
use crate::crypto::handshake::SessionKeys;
use crate::crypto::io::Sealed;
use crate::crypto::{self, Encryption};
use crate::error::{CloseCode, CloseReason, PeerClose};
use crate::id::{IdTable, SessionId};
use crate::registry::Registry;
use crate::runtime::{BoxFuture, Runtime, TokioRuntime};
use crate::session::SessionShared;
use crate::session::context::Context;
use crate::time::Instant;

pub use accept::Acceptor;
pub use status::{ProtocolCount, SessionInfo, SessionState, Status};
pub use topic::{Inbox, Topic};

struct Sessions {
    table: IdTable<Arc<SessionShared>>,
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
    /// Refusals still being written (see [`accept::refuse`]).
    refusing: Arc<AtomicUsize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here completes its mutation before anything can panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ServiceInner {
    fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
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
        let mut rng = match config.rng_seed {
            Some(seed) => ChaCha20Rng::seed_from_u64(seed),
            None => ChaCha20Rng::from_seed(runtime.entropy()),
        };
        let mut config = config;
        config.max_sessions = config
            .max_sessions
            .clamp(1, crate::id::max_capacity(config.id_bits));
        let core = Arc::new(Context::new(config, runtime));
        let mut table = IdTable::with_id_bits(
            core.config.max_sessions,
            core.config.id_bits,
            rng.next_u32(),
        );
        table.plants = core.config.plants();
        let inner = Arc::new(ServiceInner {
            sessions: Mutex::new(Sessions { table }),
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

    /// Switches this service's logging (tracing events and session spans under the target
    /// `laxnet`) on or off at run time.
    pub fn set_logging(&self, on: bool) {
        self.inner.core.set_logging(on);
    }

    /// Whether logging is on.
    pub fn logging(&self) -> bool {
        self.inner.core.logging()
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

/// A close body with `code` and nothing else (`docs/wire.md`).
fn close_body(code: CloseCode) -> Vec<u8> {
    control::close_body(&PeerClose::new(code))
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
