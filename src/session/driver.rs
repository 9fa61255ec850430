//! The session task: the only code that awaits a session's socket or reads the clock for it.
//!
//! One task per session, written as a hand-rolled poll loop (no `select!`, so no scheduling
//! randomness): each turn it
//! 1. syncs with the shared state under one short lock: takes the frames queued by `send`
//!    (swapping the whole queue) and notices a close request;
//! 2. reads what the socket has, feeds [`Inbound`], dispatches complete frames to subscribers;
//! 3. writes queued bytes with one vectored write;
//! 4. when closing: once the queue is flushed, shuts the write side down and waits for the
//!    peer's end of stream, all bounded by the linger timer;
//!
//! and repeats until nothing progresses (then it sleeps until the socket, a sender or the
//! timer wakes it) or its budget is used up (then it yields). The waker for senders is
//! registered only when the task is about to sleep, under the lock that `send` takes, so a
//! `send` from a callback never wakes the task that is running it, and none is lost.
//!
//! When the close sequence ends it publishes `Closed` exactly once and destroys the session:
//! buffers go back to the pool, the id is released and every ref turns stale.

use std::future::Future;
use std::io::IoSlice;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::buffer::SegmentQueue;
use crate::crypto::CryptoError;
use crate::crypto::io::Sealed;
use crate::crypto::record::{self, Opener, RecordType};
use crate::error::{CloseReason, ProtocolViolation};
use crate::planted::{self, Bug};
use crate::registry::Registry;
use crate::runtime::{BoxFuture, BoxStream};
use crate::service::ServiceInner;
use crate::session::inbound::Inbound;
use crate::session::shared::{Phase, SessionRef, SessionShared};

/// Socket reads or writes per poll before the task yields to others.
const BUDGET: usize = 64;
/// Smallest spare room offered to a socket read of an encrypted session.
const MIN_READ: usize = 512;
/// Slices per vectored write.
const MAX_SLICES: usize = 64;

/// Drives one session from open to destroy.
pub(crate) struct Driver {
    shared: Arc<SessionShared>,
    /// The driver's own reference, lent by value to every dispatch (see `Handler::dispatch`);
    /// `None` only while a dispatch runs (a panicking subscriber ends the task).
    sref: Option<SessionRef>,
    service: Arc<ServiceInner>,
    stream: Option<BoxStream>,
    inbound: Inbound,
    /// Frames taken from the shared queue, being written (or sealed, when encrypted).
    out: SegmentQueue,
    /// The record layer of an encrypted session.
    sealed: Option<Box<Sealed>>,
    registry: Arc<Registry>,
    registry_version: u64,
    /// Set once the close sequence has started.
    reason: Option<CloseReason>,
    linger: Option<BoxFuture<'static, ()>>,
    /// The task's waker, held here while the task runs and moved into the shared state only
    /// when it is about to sleep (see `park`).
    waker: Option<Waker>,
    /// No more reads: end of stream, read error, or a protocol violation.
    read_done: bool,
    /// The write side is shut down (or broken).
    write_done: bool,
    finished: bool,
    /// `Closed` was already published (only early under a planted bug).
    closed_published: bool,
    span: tracing::Span,
}

impl Driver {
    pub(crate) fn new(
        service: Arc<ServiceInner>,
        shared: Arc<SessionShared>,
        stream: BoxStream,
        sealed: Option<Box<Sealed>>,
    ) -> Driver {
        let core = &shared.core;
        let max_frame = if planted::on(&core.config, Bug::FrameLimitOffByOne) {
            core.config.max_frame - 1
        } else {
            core.config.max_frame
        };
        let inbound = Inbound::new(
            core.pool.clone(),
            core.config.read_buffer,
            core.config.read_buffer_max,
            max_frame,
        );
        let out = SegmentQueue::new(core.pool.clone(), core.config.segment_size);
        let (registry_version, registry) = service.registry();
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
            service,
            stream: Some(stream),
            inbound,
            out,
            sealed,
            registry,
            registry_version,
            reason: None,
            linger: None,
            waker: None,
            read_done: false,
            write_done: false,
            finished: false,
            closed_published: false,
            span,
        }
    }

    /// Starts the close sequence (the first reason wins) and arms the linger timer.
    fn begin_close(&mut self, reason: CloseReason) {
        if self.reason.is_some() {
            return;
        }
        let core = &self.shared.core;
        if core.logging() {
            tracing::debug!(target: "laxnet", %reason, "closing");
        }
        // Senders see the close from now on (no-op if a ref or the service requested it).
        self.shared.request_close(reason.clone());
        if reason.is_clean() {
            let deadline = core.runtime.now() + core.config.linger;
            self.linger = Some(core.runtime.sleep_until(deadline));
        } else {
            // Abortive: the peer is gone or hostile; flushing to it is pointless.
            self.read_done = true;
            self.write_done = true;
            self.out.clear();
            if let Some(s) = self.sealed.as_mut() {
                s.wire_out.clear();
            }
        }
        self.plant_on_close(&reason);
        self.reason = Some(reason);
    }

    fn plant_on_close(&mut self, reason: &CloseReason) {
        let config = &self.shared.core.config;
        if planted::on(config, Bug::NoFlushOnClose) && *reason == CloseReason::Local {
            self.out.clear();
            self.shared.lock().queue.clear();
        }
        if planted::on(config, Bug::DeliverAfterClose) && reason.is_clean() {
            self.service.publish_closed(&self.shared, reason);
            self.closed_published = true;
        }
        if planted::on(config, Bug::NoFlushAfterPeerEof) && *reason == CloseReason::PeerClosed {
            self.write_done = true;
        }
    }

    /// Step 1: one short lock on the shared state.
    fn sync(&mut self) -> bool {
        let mut took = false;
        let closing = {
            let mut st = self.shared.lock();
            if self.out.is_empty() && !st.queue.is_empty() {
                std::mem::swap(&mut self.out, &mut st.queue);
                // Everything taken and not yet written counts against the send-queue limit,
                // sealed records included.
                self.update_in_flight();
                took = true;
            }
            // While the task runs it needs no wake-up: a send or close request made now is
            // seen by the next `sync` or by `park`. (Waking a running task makes Tokio poll it
            // once more for nothing and, on a multi-thread runtime, invites another worker to
            // steal it.)
            if let Some(w) = st.waker.take() {
                self.waker = Some(w);
            }
            match &st.phase {
                Phase::Closing(r) if self.reason.is_none() => Some(r.clone()),
                _ => None,
            }
        };
        if let Some(r) = closing {
            self.begin_close(r);
        }
        took
    }

    /// Publishes the bytes taken from the queue and not yet written, in wire bytes.
    fn update_in_flight(&self) -> usize {
        let sealed = self.sealed.as_ref().map_or(0, |s| s.wire_out.len());
        let pending = self.shared.wire_len(self.out.len()) + sealed;
        // SeqCst: pairs with `SessionRef::ready` (see `SessionShared::wrote`).
        self.shared.in_flight.store(pending, SeqCst);
        pending
    }

    /// Step 2: one socket read and the frames it completes.
    fn read(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(stream) = self.stream.as_mut() else {
            return false;
        };
        let spare = match self.sealed.as_mut() {
            Some(s) => s.wire_in.spare(MIN_READ),
            None => self.inbound.spare(),
        };
        let offered = spare.len();
        let mut buf = ReadBuf::new(spare);
        match Pin::new(stream).poll_read(cx, &mut buf) {
            Poll::Pending => {
                // Nothing to read: an idle session holds no read memory.
                self.inbound.release_idle();
                if let Some(s) = self.sealed.as_mut() {
                    s.wire_in.release_idle();
                }
                false
            }
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len();
                if n == 0 {
                    self.end_of_stream();
                    return true;
                }
                self.shared.counters.bytes_in.fetch_add(n as u64, Relaxed);
                if self.sealed.is_none()
                    || !planted::on(&self.shared.core.config, Bug::StaleHeartbeatOnRecords)
                {
                    self.shared.touch(self.shared.core.runtime.now());
                }
                match self.sealed.as_mut() {
                    Some(s) => {
                        s.wire_in.commit(n);
                        s.wire_in.note_read(n, offered);
                        self.open_records();
                    }
                    None => {
                        self.inbound.commit(n);
                        self.inbound.note_read(n, offered);
                        self.dispatch();
                    }
                }
                true
            }
            Poll::Ready(Err(e)) => {
                self.read_done = true;
                self.begin_close(CloseReason::from_io(&e));
                true
            }
        }
    }

    /// The peer's end of stream: clean only at a frame boundary and, when encrypted, after
    /// its authenticated close.
    fn end_of_stream(&mut self) {
        self.read_done = true;
        if let Some(s) = &self.sealed
            && (!s.close_received || !s.wire_in.is_empty())
        {
            return self.crypto_failure(CryptoError::Truncated);
        }
        match self.inbound.finish() {
            Ok(()) => self.begin_close(CloseReason::PeerClosed),
            Err(v) => self.violation(v),
        }
    }

    /// Opens every complete record, moving its frames to the inbound buffer and dispatching
    /// them. Nothing from a record that fails authentication (or after it) is delivered.
    fn open_records(&mut self) {
        loop {
            let Some(s) = self.sealed.as_mut() else {
                return;
            };
            if self.read_done {
                return;
            }
            let total = match Opener::record_len(s.wire_in.data(), s.max_record) {
                Ok(Some(t)) => t,
                Ok(None) => return,
                Err(e) => return self.crypto_failure(e),
            };
            if s.wire_in.len() < total {
                s.wire_in.reserve_total(total);
                return;
            }
            let record = &mut s.wire_in.data_mut()[..total];
            match s.opener.open(record) {
                Err(e) => return self.crypto_failure(e),
                Ok((_, _)) if s.close_received => {
                    return self.crypto_failure(CryptoError::BadRecord);
                }
                Ok((RecordType::Close, _)) => s.close_received = true,
                Ok((RecordType::Data, range)) => {
                    let n = range.len();
                    self.inbound.spare_for(n)[..n].copy_from_slice(&record[range]);
                    self.inbound.commit(n);
                }
            }
            s.wire_in.consume(total);
            if s.wire_in.is_empty() {
                s.wire_in.shrink_if_idle();
            }
            self.dispatch();
        }
    }

    fn crypto_failure(&mut self, e: CryptoError) {
        self.peer_misbehaved(CloseReason::Crypto(e));
    }

    fn violation(&mut self, v: ProtocolViolation) {
        self.peer_misbehaved(CloseReason::Protocol(v));
    }

    /// The peer broke the protocol: stop reading, count it, close (abortively).
    fn peer_misbehaved(&mut self, reason: CloseReason) {
        self.read_done = true;
        self.shared
            .core
            .counters
            .protocol_errors
            .fetch_add(1, Relaxed);
        self.begin_close(reason);
    }

    /// Hands every complete frame to its subscribers, in order.
    fn dispatch(&mut self) {
        let (version, registry) = self.service.registry_if_newer(self.registry_version);
        if let Some(r) = registry {
            self.registry = r;
            self.registry_version = version;
        }
        // Counted once per batch, not per frame (one atomic add instead of one per message).
        let (mut received, mut unhandled) = (0u64, 0u64);
        // Runs of one message type (the common case) look their handler up once.
        let mut cached = None;
        let mut sref = self
            .sref
            .take()
            .expect("the session's own ref is back after every dispatch");
        let outcome = loop {
            let frame = match self.inbound.poll_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break Ok(()),
                Err(v) => break Err(v),
            };
            let handler = match cached {
                Some((id, h)) if id == frame.id => h,
                _ => match self.registry.handler(frame.id) {
                    Ok(h) => {
                        cached = Some((frame.id, h));
                        h
                    }
                    Err(v) => break Err(v),
                },
            };
            let body = self.inbound.body(&frame);
            let (back, result) = handler.dispatch(self.shared.protocol, sref, body);
            sref = back;
            match result {
                Ok(delivered) => {
                    received += 1;
                    unhandled += u64::from(!delivered);
                }
                Err(v) => break Err(v),
            }
            self.inbound.consume(&frame);
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
            self.violation(v);
        }
    }

    /// Step 3a (encrypted sessions): seals queued frames into records, many frames per
    /// record, while fewer than a few records wait for the socket.
    fn seal_records(&mut self) -> bool {
        let Some(s) = self.sealed.as_mut() else {
            return false;
        };
        let mut progress = false;
        while !self.out.is_empty() && s.wire_out.len() < 4 * s.max_record {
            let n = self.out.len().min(s.max_record);
            let mut block = self.shared.core.pool.take(n + record::OVERHEAD);
            let mut at = record::HEADER + 1;
            for chunk in self.out.chunks() {
                let take = chunk.len().min(record::HEADER + 1 + n - at);
                block[at..at + take].copy_from_slice(&chunk[..take]);
                at += take;
                if at == record::HEADER + 1 + n {
                    break;
                }
            }
            match s.sealer.seal(RecordType::Data, &mut block, n) {
                Ok(total) => s.wire_out.push(&block[..total]),
                Err(e) => {
                    self.write_failed(CloseReason::Crypto(e));
                    return true;
                }
            }
            self.out.advance(n);
            progress = true;
        }
        progress
    }

    /// Step 3a': when an encrypted session is closing cleanly and everything queued is
    /// sealed, queues the authenticated end of stream (once), so it leaves with the same write
    /// as the records before it. Returns whether it queued it.
    fn queue_close_record(&mut self) -> bool {
        let Some(s) = self.sealed.as_mut() else {
            return false;
        };
        // (An abortive close has set `write_done`.)
        if self.reason.is_none() || s.close_sent || self.write_done || !self.out.is_empty() {
            return false;
        }
        if !self.shared.lock().queue.is_empty() {
            return false;
        }
        s.close_sent = true;
        if planted::on(&self.shared.core.config, Bug::NoCloseRecord) {
            return true;
        }
        let mut block = self.shared.core.pool.take(record::OVERHEAD);
        match s.sealer.seal(RecordType::Close, &mut block, 0) {
            Ok(total) => s.wire_out.push(&block[..total]),
            Err(_) => s.wire_out.clear(),
        }
        true
    }

    /// Step 3: seal (if encrypted), then one vectored write of queued bytes.
    fn write(&mut self, cx: &mut Context<'_>) -> bool {
        if self.write_done {
            return false;
        }
        let mut progress = self.seal_records();
        if self.write_done {
            return progress;
        }
        progress |= self.queue_close_record();
        let queue = match self.sealed.as_mut() {
            Some(s) => &mut s.wire_out,
            None => &mut self.out,
        };
        if queue.is_empty() {
            return progress;
        }
        let Some(stream) = self.stream.as_mut() else {
            return progress;
        };
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let n = queue.io_slices(&mut slices);
        match Pin::new(stream).poll_write_vectored(cx, &slices[..n]) {
            Poll::Pending => progress,
            Poll::Ready(Ok(0)) => {
                self.write_failed(CloseReason::Io(std::io::ErrorKind::WriteZero));
                true
            }
            Poll::Ready(Ok(written)) => {
                let offered = queue.len();
                queue.advance(written);
                let mut counted = match self.sealed.as_mut() {
                    Some(s) => s.record_bytes(written),
                    None => written,
                };
                if planted::on(&self.shared.core.config, Bug::BytesOutOffered) {
                    counted = offered;
                }
                let in_flight = self.update_in_flight();
                self.shared.wrote(in_flight);
                self.shared
                    .counters
                    .bytes_out
                    .fetch_add(counted as u64, Relaxed);
                true
            }
            Poll::Ready(Err(e)) => {
                self.write_failed(CloseReason::from_io(&e));
                true
            }
        }
    }

    fn write_failed(&mut self, reason: CloseReason) {
        self.write_done = true;
        self.read_done = true;
        self.out.clear();
        if let Some(s) = self.sealed.as_mut() {
            s.wire_out.clear();
        }
        self.begin_close(reason);
    }

    /// Step 4: the close sequence. Returns true when it is complete.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> bool {
        if self.reason.is_none() {
            return false;
        }
        if let Some(timer) = self.linger.as_mut()
            && timer.as_mut().poll(cx).is_ready()
        {
            self.shared
                .core
                .counters
                .linger_expired
                .fetch_add(1, Relaxed);
            return true;
        }
        let flushed = self.out.is_empty() && self.shared.lock().queue.is_empty();
        if !self.write_done && flushed {
            // Usually already queued (and written) by this turn's write step.
            if self.queue_close_record() {
                // Progress the poll loop cannot see: run another turn to write it.
                cx.waker().wake_by_ref();
                return false;
            }
            if self.sealed.as_ref().is_some_and(|s| !s.wire_out.is_empty()) {
                return false;
            }
            let Some(stream) = self.stream.as_mut() else {
                return true;
            };
            match Pin::new(stream).poll_shutdown(cx) {
                Poll::Pending => return false,
                Poll::Ready(_) => self.write_done = true,
            }
        }
        self.write_done && self.read_done
    }

    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..BUDGET {
            let mut progress = self.sync();
            if !self.read_done {
                progress |= self.read(cx);
            }
            progress |= self.write(cx);
            if self.poll_close(cx) {
                return Poll::Ready(());
            }
            if !progress && self.park(cx) {
                return Poll::Pending;
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
        let frames = self.out.is_empty() && !st.queue.is_empty();
        let close = self.reason.is_none() && matches!(st.phase, Phase::Closing(_));
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
        let late = planted::on(&self.shared.core.config, Bug::BuffersAfterRelease);
        if !late {
            self.release_buffers();
        }
        self.linger = None;
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
        self.service
            .close_session(&shared, reason, !self.closed_published);
        if late {
            self.release_buffers();
        }
    }

    /// Gives the session's buffers back to the pool (part of the destroy, before the id goes).
    fn release_buffers(&mut self) {
        self.inbound.release();
        self.out.clear();
        if let Some(s) = self.sealed.as_mut() {
            s.wire_in.release();
            s.wire_out.clear();
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
                    let reason = self.reason.clone().unwrap_or(CloseReason::Aborted);
                    self.finish(reason);
                    Poll::Ready(())
                }
                Err(_) => {
                    self.shared.core.counters.panics.fetch_add(1, Relaxed);
                    tracing::error!(target: "laxnet", id = %self.shared.id, "a subscriber panicked; closing the session");
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
