//! Ending sessions from the service's side: [`Service::shutdown`] and the idle sweep.

use std::convert::Infallible;
use std::sync::Arc;

use super::{Service, lock, spawn_guarded};
use crate::error::CloseReason;
use crate::registry::Registry;

impl Service {
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

    pub(super) fn spawn_idle_sweep(&self, idle: std::time::Duration) {
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
}
