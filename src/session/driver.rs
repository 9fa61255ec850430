//! The session task: a loop that feeds the session's [`Connection`] from the runtime. It is
//! the only code that awaits a session's socket or reads the clock for it, and it reports to
//! its service only through [`SessionHost`].
//!
//! One task per session, written as a hand-rolled poll loop (no `select!`, so no scheduling
//! randomness); each turn it
//! 1. syncs with the shared state under one short lock: hands the frames queued by `send` to
//!    the connection (swapping the whole queue) and notices a close request;
//! 2. reads what the socket has and dispatches the complete frames to subscribers;
//! 3. writes what the connection has to write with one vectored write;
//! 4. shuts the write side down when the connection wants it, and runs the linger timer;
//!
//! and repeats until nothing progresses (then it sleeps until the socket, a sender or the
//! timer wakes it) or its budget is used up (then it yields). The waker for senders is
//! registered only when the task is about to sleep, under the lock that `send` takes, so a
//! `send` from a callback never wakes the task that is running it, and none is lost.
//!
//! When the connection is done the task publishes `Closed` exactly once and destroys the
//! session: buffers go back to the pool, the id is released and every ref turns stale.

use std::future::Future;
use std::io::IoSlice;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::crypto::io::Sealed;
use crate::error::CloseReason;
use crate::planted::{Bug, Plants};
use crate::runtime::{BoxFuture, BoxStream};
use crate::session::connection::{Connection, Event, Limits};
use crate::session::shared::{Direction, Phase, SessionRef, SessionShared};
use crate::session::{Handlers, SessionHost};
use crate::time::Instant;

/// Socket reads or writes per poll before the task yields to others.
const BUDGET: usize = 64;
/// Slices per vectored write.
const MAX_SLICES: usize = 64;

/// Drives one session from open to destroy.
pub(crate) struct Driver {
    shared: Arc<SessionShared>,
    /// The driver's own reference, lent by value to every dispatch (see `Deliver::dispatch`);
    /// `None` only while a dispatch runs (a panicking subscriber ends the task).
    sref: Option<SessionRef>,
    host: Arc<dyn SessionHost>,
    stream: Option<BoxStream>,
    conn: Connection,
    handlers: Arc<dyn Handlers>,
    handlers_version: u64,
    /// The linger timer and the deadline it was armed for.
    timer: Option<(Instant, BoxFuture<'static, ()>)>,
    /// The task's waker, held here while the task runs and moved into the shared state only
    /// when it is about to sleep (see `park`).
    waker: Option<Waker>,
    plants: Plants,
    /// A subscriber panicked: the session only sends its reason now, then finishes.
    panicked: bool,
    finished: bool,
    /// `Closed` was already published (only early under a planted bug).
    closed_published: bool,
    span: tracing::Span,
}

impl Driver {
    pub(crate) fn new(
        host: Arc<dyn SessionHost>,
        shared: Arc<SessionShared>,
        stream: BoxStream,
        sealed: Option<Box<Sealed>>,
    ) -> Driver {
        let core = &shared.core;
        let c = &core.config;
        let plants = c.plants();
        let limits = Limits {
            linger: c.linger,
            max_frame: c.max_frame,
            read_buffer: c.read_buffer,
            read_buffer_max: c.read_buffer_max,
            segment_size: c.segment_size,
        };
        let encrypted = sealed.is_some();
        let mut conn = Connection::new(core.pool.clone(), limits, sealed, plants);
        if shared.direction == Direction::Accepted && !encrypted {
            // A "bits" client waits for it before its `connect` returns.
            conn.queue_open();
        }
        let (handlers_version, handlers) = host.handlers();
        let span = if core.logging() {
            tracing::debug_span!(target: "laxnet", "session", id = %shared.id, peer = %shared.peer, protocol = %shared.protocol)
        } else {
            tracing::Span::none()
        };
        Driver {
            sref: Some(SessionRef {
                shared: shared.clone(),
            }),
            shared,
            host,
            stream: Some(stream),
            conn,
            handlers,
            handlers_version,
            timer: None,
            waker: None,
            plants,
            panicked: false,
            finished: false,
            closed_published: false,
            span,
        }
    }

    fn now(&self) -> Instant {
        self.shared.core.runtime.now()
    }

    /// A close requested from outside (a ref, the service): the connection starts its close
    /// sequence.
    fn begin_close(&mut self, reason: CloseReason) {
        if self.conn.reason().is_some() {
            return;
        }
        let now = self.now();
        self.conn.handle_close(reason.clone(), now);
        self.closing(&reason);
    }

    /// The close has started for `reason` (from outside, or decided by the connection).
    fn closing(&mut self, reason: &CloseReason) {
        if self.shared.core.logging() {
            tracing::debug!(target: "laxnet", %reason, "closing");
        }
        if self.plants.on(Bug::NoFlushOnClose) && *reason == CloseReason::Local {
            self.shared.lock().queue.clear();
        }
        if self.plants.on(Bug::DeliverAfterClose) && reason.is_clean() {
            self.host.publish_closed(&self.shared, reason);
            self.closed_published = true;
        }
    }

    /// Acts on what the connection reports.
    fn events(&mut self) {
        while let Some(ev) = self.conn.poll_event() {
            let counters = &self.shared.core.counters;
            match ev {
                Event::Closing(reason) => {
                    // Senders see the close from now on. If one asked first, its reason wins.
                    if !self.shared.request_close(reason.clone())
                        && let Phase::Closing(first) = self.shared.phase()
                        && first != reason
                    {
                        self.conn.adopt_reason(first);
                    }
                    self.closing(&reason);
                }
                Event::ProtocolError => {
                    counters.protocol_errors.fetch_add(1, Relaxed);
                }
                Event::LingerExpired => {
                    counters.linger_expired.fetch_add(1, Relaxed);
                }
            }
        }
    }

    /// Step 1: one short lock on the shared state.
    fn sync(&mut self) -> bool {
        let (took, closing) = {
            let mut st = self.shared.lock();
            let took = self.conn.handle_queued(&mut st.queue);
            // While the task runs it needs no wake-up: a send or close request made now is
            // seen by the next `sync` or by `park`. (Waking a running task makes Tokio poll it
            // once more for nothing and, on a multi-thread runtime, invites another worker to
            // steal it.)
            if let Some(w) = st.waker.take() {
                self.waker = Some(w);
            }
            let closing = match &st.phase {
                Phase::Closing(r) if self.conn.reason().is_none() => Some(r.clone()),
                _ => None,
            };
            if closing.is_some()
                && let Some((code, text)) = st.app_close.take()
            {
                self.conn.set_app_close(code, text);
            }
            (took, closing)
        };
        if took {
            // Everything taken and not yet written counts against the send-queue limit.
            self.update_in_flight();
        }
        if let Some(r) = closing {
            self.begin_close(r);
        }
        took
    }

    /// Publishes the bytes taken from the queue and not yet written, in wire bytes.
    fn update_in_flight(&self) -> usize {
        let pending = self.conn.in_flight(|p| self.shared.wire_len(p));
        // SeqCst: pairs with `SessionRef::ready` (see `SessionShared::wrote`).
        self.shared.in_flight.store(pending, SeqCst);
        pending
    }

    /// Step 2: one socket read and the frames it completes.
    fn read(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(stream) = self.stream.as_mut() else {
            return false;
        };
        let spare = self.conn.read_buf();
        let offered = spare.len();
        let mut buf = ReadBuf::new(spare);
        let res = Pin::new(stream).poll_read(cx, &mut buf);
        let n = buf.filled().len();
        match res {
            Poll::Pending => {
                self.conn.handle_would_block();
                return false;
            }
            Poll::Ready(Ok(())) if n == 0 => {
                let now = self.now();
                self.conn.handle_eof(now);
            }
            Poll::Ready(Ok(())) => {
                self.shared.counters.bytes_in.fetch_add(n as u64, Relaxed);
                if !(self.conn.encrypted() && self.plants.on(Bug::StaleHeartbeatOnRecords)) {
                    self.shared.touch(self.now());
                }
                self.conn.handle_read(n, offered);
                self.dispatch();
            }
            Poll::Ready(Err(e)) => self.conn.handle_read_error(e.kind()),
        }
        self.events();
        true
    }

    /// Hands every complete frame to its subscribers, in order. (Its own function: the frame
    /// loop is the receive path's hot loop and keeps its registers to itself.)
    #[inline(never)]
    fn dispatch(&mut self) {
        if let Some((version, handlers)) = self.host.handlers_if_newer(self.handlers_version) {
            self.handlers = handlers;
            self.handlers_version = version;
        }
        // Counted once per batch, not per frame (one atomic add instead of one per message).
        let (mut received, mut unhandled) = (0u64, 0u64);
        // Runs of one message type (the common case) look their handler up once.
        let mut cached = None;
        let mut sref = self
            .sref
            .take()
            .expect("the session's own ref is back after every dispatch");
        let handlers = self.handlers.clone();
        let outcome = loop {
            let frame = match self.conn.poll_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break Ok(()),
                Err(v) => break Err(v),
            };
            let handler = match cached {
                Some((id, h)) if id == frame.id => h,
                _ => match handlers.handler(frame.id) {
                    Ok(h) => {
                        cached = Some((frame.id, h));
                        h
                    }
                    Err(v) => break Err(v),
                },
            };
            let body = self.conn.body(&frame);
            let (back, result) = handler.dispatch(self.shared.protocol, sref, body);
            sref = back;
            match result {
                Ok(delivered) => {
                    received += 1;
                    unhandled += u64::from(!delivered);
                }
                Err(v) => break Err(v),
            }
            self.conn.consume(&frame);
        };
        self.sref = Some(sref);
        if received > 0 {
            self.shared.counters.msgs_in.fetch_add(received, Relaxed);
        }
        if unhandled > 0 {
            let c = &self.shared.core.counters;
            c.unhandled.fetch_add(unhandled, Relaxed);
        }
        if let Err(v) = outcome {
            let now = self.now();
            self.conn.handle_violation(v, now);
        }
    }

    /// Step 3: one vectored write of what the connection has to write.
    fn write(&mut self, cx: &mut Context<'_>) -> bool {
        if self.conn.reason().is_some() && self.stream.is_some() {
            // Closing: frames that callbacks queued during this turn's reads (before the
            // close) go out before the close message, which must come last.
            self.sync();
        }
        let Some(stream) = self.stream.as_mut() else {
            return false;
        };
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let n = self.conn.poll_transmit(&mut slices);
        let res = if n == 0 {
            None
        } else {
            Some(Pin::new(stream).poll_write_vectored(cx, &slices[..n]))
        };
        let progress = match res {
            None | Some(Poll::Pending) => false,
            Some(Poll::Ready(Ok(written))) => {
                let counted = self.conn.handle_written(written);
                let in_flight = self.update_in_flight();
                self.shared.wrote(in_flight);
                self.shared
                    .counters
                    .bytes_out
                    .fetch_add(counted as u64, Relaxed);
                true
            }
            Some(Poll::Ready(Err(e))) => {
                self.conn.handle_write_error(e.kind());
                true
            }
        };
        self.events();
        progress
    }

    /// Step 4: the linger timer, and the write side's shutdown when the connection wants it.
    fn close_step(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        match self.conn.poll_timeout() {
            None => self.timer = None,
            Some(deadline) => {
                let rt = &self.shared.core.runtime;
                let timer = match &mut self.timer {
                    Some((d, t)) if *d == deadline => t,
                    slot => &mut slot.insert((deadline, rt.sleep_until(deadline))).1,
                };
                if timer.as_mut().poll(cx).is_ready() {
                    self.timer = None;
                    let now = self.now();
                    self.conn.handle_timeout(now);
                    self.events();
                    progress = true;
                }
            }
        }
        if self.conn.wants_shutdown()
            && let Some(stream) = self.stream.as_mut()
            && Pin::new(stream).poll_shutdown(cx).is_ready()
        {
            self.conn.handle_shutdown();
            progress = true;
        }
        progress
    }

    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // `park` refused to sleep on the previous turn and nothing progressed since.
        let mut refused = false;
        for _ in 0..BUDGET {
            let mut progress = self.sync();
            if !self.conn.read_done() {
                progress |= self.read(cx);
            }
            progress |= self.write(cx);
            progress |= self.close_step(cx);
            if self.conn.is_done() {
                return Poll::Ready(());
            }
            if progress {
                refused = false;
            } else if self.park(cx) {
                return Poll::Pending;
            } else {
                // `park` refuses only for work the next `sync` takes (frames, a close
                // request); refusing twice with nothing done in between is a task that spins
                // without ever sleeping.
                debug_assert!(
                    !refused,
                    "session task spins: park refused twice, no progress"
                );
                refused = true;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Registers the task's waker for senders and close requests, unless one of them has
    /// already given the task work (checked under the same lock, so no wake-up is lost).
    /// Returns false if the task must go round again instead of sleeping.
    fn park(&mut self, cx: &Context<'_>) -> bool {
        let mut st = self.shared.lock();
        let frames = self.conn.wants_queue() && !st.queue.is_empty();
        let close = self.conn.reason().is_none() && matches!(st.phase, Phase::Closing(_));
        if frames || close {
            return false;
        }
        st.waker = match self.waker.take() {
            Some(w) if w.will_wake(cx.waker()) => Some(w),
            _ => Some(cx.waker().clone()),
        };
        true
    }

    /// Publishes `Closed` and destroys the session. Runs exactly once.
    fn finish(&mut self, reason: CloseReason) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.stream = None;
        // A clean ending that drops bytes is not clean (see `Connection::final_reason`).
        let lost = self.shared.lock().queue.len();
        let reason = self.conn.final_reason(reason, lost);
        let late = self.plants.on(Bug::BuffersAfterRelease);
        if !late {
            self.conn.release();
        }
        self.timer = None;
        let shared = self.shared.clone();
        {
            // Whatever is still queued is lost: make it visible as `Closing` to senders until
            // the id is released below.
            let mut st = shared.lock();
            st.queue.clear();
            if st.phase == Phase::Open {
                st.phase = Phase::Closing(reason.clone());
            }
        }
        self.shared.in_flight.store(0, Relaxed);
        if shared.core.logging() {
            tracing::debug!(target: "laxnet", %reason, "closed");
        }
        self.host.destroy(&shared, reason, !self.closed_published);
        if late {
            self.conn.release();
        }
    }

    /// The task's future.
    pub(crate) fn run(mut self) -> impl Future<Output = ()> + Send {
        std::future::poll_fn(move |cx| {
            let span = self.span.clone();
            let _enter = span.enter();
            match catch_unwind(AssertUnwindSafe(|| self.poll_inner(cx))) {
                Ok(Poll::Pending) => Poll::Pending,
                Ok(Poll::Ready(())) => {
                    let reason = self.conn.reason().cloned().unwrap_or(CloseReason::Aborted);
                    self.finish(reason);
                    Poll::Ready(())
                }
                Err(_) if !self.panicked && self.conn.reason().is_none() => {
                    // The panic left the connection intact (it came from a subscriber): the
                    // session stops reading and tells the peer why, bounded by the linger.
                    self.panicked = true;
                    self.shared.core.counters.panics.fetch_add(1, Relaxed);
                    tracing::error!(target: "laxnet", id = %self.shared.id, "a subscriber panicked; closing the session");
                    self.shared.request_close(CloseReason::Panic);
                    self.begin_close(CloseReason::Panic);
                    self.events();
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Err(_) => {
                    if !self.panicked {
                        self.shared.core.counters.panics.fetch_add(1, Relaxed);
                        tracing::error!(target: "laxnet", id = %self.shared.id, "a subscriber panicked; closing the session");
                    }
                    self.finish(CloseReason::Panic);
                    Poll::Ready(())
                }
            }
        })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The task was dropped before it finished (its runtime shut down): still publish
        // `Closed` and release everything, so nothing leaks and nobody waits forever.
        if !self.finished {
            self.finish(CloseReason::Aborted);
        }
    }
}
