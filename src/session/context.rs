//! [`Context`]: what every session of a service shares with it — the runtime, the
//! configuration, the buffer pool, the counters and the logging switch. The service builds it
//! once; sessions hold an `Arc` of it and never reach into the service itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::buffer::BufferPool;
use crate::config::Config;
use crate::crypto;
use crate::error::CloseKind;
use crate::runtime::Runtime;

/// Service-wide counters (relaxed atomics).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) connected: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    pub(crate) closes: [AtomicU64; CloseKind::ALL.len()],
    pub(crate) heartbeat_expiries: AtomicU64,
    pub(crate) queue_full: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) linger_expired: AtomicU64,
    pub(crate) unhandled: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) handshakes: AtomicU64,
    pub(crate) handshake_failures: AtomicU64,
    pub(crate) handshakes_refused: AtomicU64,
    pub(crate) handshakes_evicted: AtomicU64,
    /// Traffic of destroyed sessions (live sessions keep their own counters).
    pub(crate) done: SessionCounters,
}

/// What sessions share with their service.
pub(crate) struct Context {
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) config: Config,
    /// Computed once from `config.encryption` (present exactly when it is).
    pub(crate) handshake_keys: Option<crypto::io::HandshakeKeys>,
    pub(crate) pool: BufferPool,
    pub(crate) counters: Counters,
    logging: AtomicBool,
}

impl Context {
    /// The context of a service with `config` on `runtime`.
    pub(crate) fn new(config: Config, runtime: Arc<dyn Runtime>) -> Context {
        Context {
            pool: BufferPool::new(config.pool.clone()),
            logging: AtomicBool::new(config.logging),
            counters: Counters::default(),
            runtime,
            handshake_keys: config
                .encryption
                .as_ref()
                .map(crypto::io::HandshakeKeys::new),
            config,
        }
    }

    /// The service's logging switch.
    pub(crate) fn logging(&self) -> bool {
        self.logging.load(Relaxed)
    }

    /// Switches logging on or off.
    pub(crate) fn set_logging(&self, on: bool) {
        self.logging.store(on, Relaxed);
    }
}

/// Per-session counters (relaxed atomics: statistics, not synchronization).
#[derive(Debug, Default)]
pub(crate) struct SessionCounters {
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) msgs_in: AtomicU64,
    pub(crate) msgs_out: AtomicU64,
}
