//! [`SessionShared`] and [`SessionRef`]: the state a session shares between its driver task
//! and every task holding a ref.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use tokio::sync::Notify;

use crate::buffer::SegmentQueue;
use crate::crypto::PublicKey;
use crate::error::{CloseReason, SendError};
use crate::id::SessionId;
use crate::message::{HEADER_BYTES, LEN_BYTES, Message, encode_frame};
use crate::planted::Bug;
use crate::protocol::Protocol;
use crate::session::context::{Context, SessionCounters};
use crate::time::Instant;

/// Which side opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Direction {
    /// Accepted by one of this service's listeners.
    Accepted,
    /// Opened by this service's `connect`.
    Connected,
}

/// Heartbeat: a session that last received at `last` is silent at `now` once more than
/// `timeout` has passed (exactly `timeout` is not yet silent).
pub(crate) fn silent(last: Instant, now: Instant, timeout: std::time::Duration) -> bool {
    now.saturating_since(last) > timeout
}

/// The send-queue limit is a high-water mark: sends are refused only while the bytes queued
/// are over it.
pub(crate) fn over_limit(queued: usize, limit: usize) -> bool {
    queued > limit
}

/// The low-water mark: [`SessionRef::ready`] returns once the bytes queued are at half the
/// limit or below.
pub(crate) fn has_room(queued: usize, limit: usize) -> bool {
    queued <= limit / 2
}

fn core_limit(sh: &SessionShared) -> usize {
    sh.core.config.send_queue_limit
}

/// Where a session is in its life, as seen by senders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Sends are accepted.
    Open,
    /// Closing for `reason`: no new sends; the driver flushes and shuts down.
    Closing(CloseReason),
    /// The driver has finished and released the id; the session ended for this reason. Refs
    /// are stale.
    Destroyed(CloseReason),
}

/// The part protected by the session's lock.
pub(crate) struct SendState {
    /// Frames queued by `send`, not yet taken by the driver.
    pub(crate) queue: SegmentQueue,
    pub(crate) phase: Phase,
    /// The driver's waker, taken by a send that makes the queue non-empty and by `close`.
    pub(crate) waker: Option<Waker>,
    /// The application's code and text for the peer (`SessionRef::close_with`).
    pub(crate) app_close: Option<(u32, String)>,
}

/// One session's state shared by its driver and its refs.
pub(crate) struct SessionShared {
    pub(crate) id: SessionId,
    pub(crate) protocol: Protocol,
    pub(crate) peer: SocketAddr,
    pub(crate) direction: Direction,
    pub(crate) opened_at: Instant,
    pub(crate) core: Arc<Context>,
    /// When anything was last received ([`Instant::as_nanos_u64`]); the heartbeat clock.
    pub(crate) last_recv: AtomicU64,
    /// Bytes the driver has taken from the queue and not yet written.
    pub(crate) in_flight: AtomicUsize,
    /// For encrypted sessions, the largest record payload: queued frames are counted with
    /// the record overhead they will carry, so the send-queue limit holds in wire bytes.
    pub(crate) max_record: Option<usize>,
    /// The peer's static key, authenticated by the encrypted handshake.
    pub(crate) peer_key: Option<PublicKey>,
    pub(crate) counters: SessionCounters,
    pub(crate) state: Mutex<SendState>,
    /// Set by a sender waiting in [`SessionRef::ready`]; the driver clears it and wakes
    /// `room` once the bytes queued and in flight fall to the low-water mark.
    pub(crate) want_room: AtomicBool,
    pub(crate) room: Notify,
}

impl SessionShared {
    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, SendState> {
        // A poisoned lock means a panic while holding it: the state is still a consistent
        // queue (every mutation completes or rolls back before it can panic), so keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn last_recv(&self) -> Instant {
        Instant::from_nanos_u64(self.last_recv.load(Relaxed))
    }

    pub(crate) fn touch(&self, now: Instant) {
        self.last_recv.store(now.as_nanos_u64(), Relaxed);
    }

    /// Requests the close sequence with `reason` (the first reason wins). Returns true if this
    /// call started it.
    pub(crate) fn request_close(&self, reason: CloseReason) -> bool {
        self.request_close_with(reason, None)
    }

    /// [`SessionShared::request_close`], with the application's code and text for the peer.
    pub(crate) fn request_close_with(
        &self,
        reason: CloseReason,
        app: Option<(u32, String)>,
    ) -> bool {
        let waker = {
            let mut st = self.lock();
            if st.phase != Phase::Open {
                if self.core.config.plants().on(Bug::LastReasonWins)
                    && matches!(st.phase, Phase::Closing(_))
                {
                    st.phase = Phase::Closing(reason);
                }
                return false;
            }
            st.phase = Phase::Closing(reason);
            st.app_close = app;
            st.waker.take()
        };
        if !self.core.config.plants().on(Bug::ReadyNotToldOfClose) {
            self.room.notify_waiters();
        }
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Called by the driver after it published a lower `in_flight`: wakes the senders
    /// waiting in [`SessionRef::ready`] once there is room for them.
    pub(crate) fn wrote(&self, in_flight: usize) {
        // Pairs with the store in `ready` (store, then load on both sides, all SeqCst): either
        // the driver sees `want_room` or the sender sees the lower `in_flight`.
        if self.core.config.plants().on(Bug::LostReadyWakeup) {
            return;
        }
        if has_room(in_flight, self.core.config.send_queue_limit) && self.want_room.load(SeqCst) {
            self.want_room.store(false, SeqCst);
            self.room.notify_waiters();
        }
    }

    /// Bytes that `plain` bytes of frames take on the wire (record overhead included for an
    /// encrypted session: frames are sealed `max_record` at a time from the front).
    pub(crate) fn wire_len(&self, plain: usize) -> usize {
        match self.max_record {
            Some(m) => plain + plain.div_ceil(m) * crate::crypto::record::OVERHEAD,
            None => plain,
        }
    }

    /// The current phase.
    pub(crate) fn phase(&self) -> Phase {
        self.lock().phase.clone()
    }

    /// True if nothing has been received for longer than `timeout` at `now`.
    pub(crate) fn silent_for(&self, now: Instant, timeout: std::time::Duration) -> bool {
        silent(self.last_recv(), now, timeout)
    }
}

/// A cheap, cloneable handle to send on a session or close it.
///
/// A ref points at one session for its whole life: once that session is destroyed, the ref
/// fails with [`SendError::Stale`] forever, even after its id is issued to a new session.
/// `send` takes the session's own lock; there is no table lookup per send.
#[derive(Clone)]
pub struct SessionRef {
    pub(crate) shared: Arc<SessionShared>,
}

impl SessionRef {
    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.shared.id
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.peer
    }

    /// The peer's static public key, as the encrypted handshake proved it: on a session this
    /// side connected, the server's (the key [`Encryption::server_key`] pinned); on a session
    /// this side accepted, the client's, if it presented one ([`Encryption::identity`] on the
    /// client; the server then checked it against [`Encryption::allowed_clients`], if set).
    /// `None` on plaintext sessions and for clients without a key.
    ///
    /// [`Encryption::server_key`]: crate::Encryption::server_key
    /// [`Encryption::identity`]: crate::Encryption::identity
    /// [`Encryption::allowed_clients`]: crate::Encryption::allowed_clients
    pub fn peer_key(&self) -> Option<PublicKey> {
        self.shared.peer_key
    }

    /// The protocol the session was opened with.
    pub fn protocol(&self) -> Protocol {
        self.shared.protocol
    }

    /// Whether this side accepted or connected the session.
    pub fn direction(&self) -> Direction {
        self.shared.direction
    }

    /// True while sends are accepted (not closing, not destroyed).
    pub fn is_open(&self) -> bool {
        self.shared.phase() == Phase::Open
    }

    /// Why the session is closing or closed, once it is: the reason its `Closed` event
    /// carries (the first reason wins). `None` while it is open.
    pub fn close_reason(&self) -> Option<CloseReason> {
        match self.shared.phase() {
            Phase::Open => None,
            Phase::Closing(r) | Phase::Destroyed(r) => Some(r),
        }
    }

    /// Resolves with the reason once the session is over: its `Closed` event was published,
    /// its buffers are back in the pool and its id is released (at once if that already
    /// happened). For a task that owns one session and must learn of its end without a
    /// subscription:
    ///
    /// ```no_run
    /// # async fn demo(session: laxnet::SessionRef) {
    /// let reason = session.closed().await;
    /// println!("session {} ended: {reason}", session.id());
    /// # }
    /// ```
    ///
    /// Cancel-safe; any number of tasks may wait at once.
    pub async fn closed(&self) -> CloseReason {
        let sh = &*self.shared;
        loop {
            let notified = sh.room.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check: the notification of the destroy is not lost.
            notified.as_mut().enable();
            if let Phase::Destroyed(r) = &sh.lock().phase {
                return r.clone();
            }
            notified.await;
        }
    }

    /// Bytes queued by [`send`](Self::send) and not yet written to the socket, counted as
    /// [`Config::send_queue_limit`](crate::Config::send_queue_limit) counts them (wire bytes,
    /// record overhead included on encrypted sessions). For senders that pace themselves: a
    /// send fails with `QueueFull` while this is over the limit, and [`ready`](Self::ready)
    /// returns once it is at half the limit. 0 once the session is destroyed.
    pub fn queued_bytes(&self) -> usize {
        let sh = &*self.shared;
        let st = sh.lock();
        if matches!(st.phase, Phase::Destroyed(_)) {
            return 0;
        }
        sh.wire_len(st.queue.len()) + sh.in_flight.load(SeqCst)
    }

    /// Queues `msg` for sending. Never blocks: the message is serialized straight into the
    /// session's send queue and the session's task writes it.
    ///
    /// Fails with `QueueFull` while the bytes queued are over
    /// [`Config::send_queue_limit`](crate::Config::send_queue_limit) (nothing is queued then;
    /// [`ready`](Self::ready) waits for room). Below the limit a message is accepted whole,
    /// whatever its size up to the maximum frame.
    ///
    /// With a heartbeat configured, a session that has received nothing for longer than the
    /// heartbeat timeout is closed here (reason `Heartbeat`) and the send fails.
    pub fn send<T: Message>(&self, msg: &T) -> Result<(), SendError> {
        let sh = &*self.shared;
        let core = &*sh.core;
        let heartbeat = core
            .config
            .heartbeat
            .filter(|_| !core.config.plants().on(Bug::HeartbeatIgnored));
        if let Some(timeout) = heartbeat {
            let now = core.runtime.now();
            if sh.silent_for(now, timeout) {
                let reason = if sh.request_close(CloseReason::Heartbeat) {
                    core.counters.heartbeat_expiries.fetch_add(1, Relaxed);
                    CloseReason::Heartbeat
                } else {
                    return Err(self.closed_error());
                };
                return Err(SendError::Closed(reason));
            }
        }
        let waker = {
            let mut st = sh.lock();
            match &st.phase {
                Phase::Open => {}
                Phase::Closing(r) => return Err(SendError::Closed(r.clone())),
                Phase::Destroyed(_) => return Err(SendError::Stale),
            }
            // The limit is a high-water mark: a send is refused while the queue is over it and
            // accepted whole below it, so any frame up to `max_frame` can be sent, and a
            // sender that `ready()` let through always finds room.
            let queued = sh.wire_len(st.queue.len()) + sh.in_flight.load(Relaxed);
            if over_limit(queued, core.config.send_queue_limit) {
                // A message that could never be sent says so first: `TooLarge` whatever the
                // queue holds, so a sender that waits for room never waits for nothing.
                let max = core.config.max_frame;
                let len = borsh::object_length(msg)
                    .map_err(|e| SendError::Encode(e.to_string()))?
                    + (HEADER_BYTES - LEN_BYTES);
                if len > max {
                    return Err(SendError::TooLarge { len, max });
                }
                core.counters.queue_full.fetch_add(1, Relaxed);
                return Err(SendError::QueueFull {
                    queued,
                    limit: core.config.send_queue_limit,
                });
            }
            let was_empty = st.queue.is_empty();
            let mark = core
                .config
                .plants()
                .on(Bug::RefuseBelowLimit)
                .then(|| st.queue.mark());
            if let Err(e) = encode_frame(&mut st.queue, msg, core.config.max_frame) {
                if matches!(e, SendError::TooLarge { .. })
                    && core.config.plants().on(Bug::HalfFrameOnTooLarge)
                {
                    st.queue.reserve(crate::message::HEADER_BYTES);
                }
                return Err(e);
            }
            if let Some(mark) = mark.filter(|_| {
                sh.wire_len(st.queue.len()) + sh.in_flight.load(Relaxed)
                    > core.config.send_queue_limit
            }) {
                st.queue.truncate(mark);
                core.counters.queue_full.fetch_add(1, Relaxed);
                return Err(SendError::QueueFull {
                    queued,
                    limit: core.config.send_queue_limit,
                });
            }
            // Counted under the lock, so a concurrent destroy folds it into the totals. Every
            // writer holds the lock, so a plain load and store suffice: no locked instruction.
            let out = &sh.counters.msgs_out;
            out.store(out.load(Relaxed) + 1, Relaxed);
            if was_empty { st.waker.take() } else { None }
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Waits until the session has room for more messages: returns at once while the bytes
    /// queued and in flight are at most half of [`Config::send_queue_limit`], otherwise when
    /// the session's task has written enough to get there. Fails with
    /// [`SendError::Closed`] and the session's close reason once it is closing, and also once
    /// it is destroyed (where [`send`](Self::send) says `Stale`): a waiter learns why its
    /// session ended.
    ///
    /// This is the async answer to [`SendError::QueueFull`]: a bulk sender sends until it
    /// gets `QueueFull`, then `ready().await?` and sends the same message again, instead of
    /// spinning. Cancel-safe; any number of tasks may wait at once.
    ///
    /// [`Config::send_queue_limit`]: crate::Config::send_queue_limit
    pub async fn ready(&self) -> Result<(), SendError> {
        let sh = &*self.shared;
        loop {
            let notified = sh.room.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check: a notification after the check is not lost.
            notified.as_mut().enable();
            {
                let st = sh.lock();
                match &st.phase {
                    Phase::Open => {}
                    Phase::Closing(r) | Phase::Destroyed(r) => {
                        return Err(SendError::Closed(r.clone()));
                    }
                }
                sh.want_room.store(true, SeqCst);
                let queued = sh.wire_len(st.queue.len()) + sh.in_flight.load(SeqCst);
                if has_room(queued, core_limit(sh)) {
                    return Ok(());
                }
            }
            notified.await;
        }
    }

    /// Starts the graceful close: no new sends, queued messages are flushed (within the
    /// linger time), then the connection is shut down and one `Closed` event is published.
    /// Idempotent; callable from any task.
    pub fn close(&self) {
        self.shared.request_close(CloseReason::Local);
    }

    /// [`close`](Self::close), telling the peer an application code and a short text (at
    /// most 64 bytes of UTF-8; a longer text is cut at a character boundary). The peer's
    /// `Closed` event carries them in [`CloseReason::Peer`](crate::CloseReason::Peer) (code
    /// [`CloseCode::Normal`](crate::CloseCode::Normal)). Like `close`, only the first close
    /// request counts.
    pub fn close_with(&self, code: u32, text: &str) {
        let text = crate::control::clip(text).to_owned();
        self.shared
            .request_close_with(CloseReason::Local, Some((code, text)));
    }

    fn closed_error(&self) -> SendError {
        match self.shared.phase() {
            Phase::Open => SendError::Closed(CloseReason::Local),
            Phase::Closing(r) => SendError::Closed(r),
            Phase::Destroyed(_) => SendError::Stale,
        }
    }
}

impl fmt::Debug for SessionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRef")
            .field("id", &self.shared.id)
            .field("peer", &self.shared.peer)
            .field("protocol", &self.shared.protocol)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{has_room, over_limit, silent};
    use crate::time::Instant;

    #[test]
    fn heartbeat_expires_just_after_its_timeout() {
        let t = |ns: u64| Instant::from_origin(Duration::from_nanos(ns));
        let timeout = Duration::from_millis(150);
        let last = t(1_000);
        assert!(!silent(last, t(1_000), timeout));
        assert!(
            !silent(last, t(1_000 + 150_000_000), timeout),
            "exactly the timeout"
        );
        assert!(silent(last, t(1_000 + 150_000_001), timeout));
        // A clock that reads earlier than the last receive is not silent.
        assert!(!silent(last, t(0), timeout));
    }

    #[test]
    fn the_limit_is_a_high_water_mark_and_half_of_it_the_low_water_mark() {
        let limit = 8192;
        assert!(!over_limit(0, limit));
        assert!(
            !over_limit(limit, limit),
            "at the limit a send still goes in"
        );
        assert!(over_limit(limit + 1, limit));
        assert!(has_room(0, limit));
        assert!(has_room(limit / 2, limit));
        assert!(!has_room(limit / 2 + 1, limit));
        // Any frame can be sent: one below the limit takes the queue over it by one frame.
        assert!(!over_limit(limit - 1, limit));
        assert!(has_room(0, 1), "a one-byte limit still makes room at zero");
    }
}
