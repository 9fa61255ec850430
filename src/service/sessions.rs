//! The session table: opening a session (id, `Opened`, its task), closing it (`Closed`, the
//! id released, its totals folded into the service's), looking sessions up, and the
//! [`SessionHost`] face the session tasks see.

use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use super::{Service, ServiceInner, lock};
use crate::buffer::{PoolStats, SegmentQueue};
use crate::crypto::io::Sealed;
use crate::error::{CloseReason, SubscribeError};
use crate::event::SessionEvent;
use crate::id::SessionId;
use crate::planted::Bug;
use crate::protocol::Protocol;
use crate::runtime::BoxStream;
use crate::session::context::SessionCounters;
use crate::session::driver::Driver;
use crate::session::shared::{Phase, SendState};
use crate::session::{Direction, Handlers, SessionHost, SessionRef, SessionShared};

impl ServiceInner {
    pub(super) fn is_full(&self) -> bool {
        lock(&self.sessions).table.len() >= self.core.config.max_sessions
    }

    /// Registers a new session, publishes `Opened` and starts its task. At `max_sessions`,
    /// hands the stream (and record state) back.
    #[allow(clippy::type_complexity)]
    pub(super) fn open_session(
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
            let table = &mut s.table;
            let mut made = None;
            let res = table.insert_with(|id| {
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
            st.phase = Phase::Destroyed(reason);
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

    pub(super) fn peak_sessions(&self) -> usize {
        lock(&self.sessions).table.peak()
    }

    /// Live sessions, oldest first, with the destroyed sessions' totals (bytes in/out,
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

    /// Live sessions, oldest first.
    pub(super) fn snapshot(&self) -> Vec<Arc<SessionShared>> {
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

impl Service {
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
            Some(s) if !matches!(s.shared.phase(), Phase::Destroyed(_)) => {
                w.entry(id).or_default().push(Box::new(f));
                Ok(())
            }
            _ => Err(SubscribeError::SessionGone),
        }
    }

    /// A ref to live session `id`, or `None` if no such session. Never a different session:
    /// an id is issued again only after the service's id counter went round all 2^32 - 1
    /// values (see [`SessionId`]). O(1): one array index and one comparison.
    pub fn acquire(&self, id: SessionId) -> Option<SessionRef> {
        let s = lock(&self.inner.sessions);
        s.table.get(id).map(|shared| SessionRef {
            shared: shared.clone(),
        })
    }
}
