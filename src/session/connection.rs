//! [`Connection`]: one session's protocol state machine, sans I/O.
//!
//! It owns everything a session does with bytes — the receive buffer and frame parser
//! ([`Inbound`]), the frames taken from the send queue, the record layer of an encrypted
//! session ([`Sealed`]) — and the close sequence: which reason ended it, whether the close is
//! clean (flush, then the close message, then shut the write side down, then wait for the
//! peer's end of stream, all bounded by the linger time) or abortive (stop reading and drop
//! what was not yet taken for writing; the endings that can still write finish the frames
//! taken and send their close message, bounded by the linger time), and when it is over.
//! It also speaks the control messages ([`crate::control`]): the Open frame a "bits" server
//! writes first, the close message with this side's reason (a control frame on "bits", the
//! Close record's payload on "bits-hpke"), and the peer's, which becomes
//! [`CloseReason::Peer`] at its end of stream. It never
//! touches a socket, a clock, a task or the service: bytes, time and requests come in as
//! values, and what to write, when to wake and what happened go out as values. The session's
//! task ([`super::driver`]) is a loop that feeds it.
//!
//! # Call order
//!
//! Each turn of the driver, in this order (quinn-proto's `Connection` uses the same shape):
//!
//! 1. [`handle_queued`](Connection::handle_queued) with the shared send queue (under its
//!    lock), and [`handle_close`](Connection::handle_close) if a close was requested;
//! 2. reading: a socket read into [`read_buf`](Connection::read_buf), then
//!    [`handle_read`](Connection::handle_read), [`handle_eof`](Connection::handle_eof),
//!    [`handle_read_error`](Connection::handle_read_error) or
//!    [`handle_would_block`](Connection::handle_would_block); then
//!    [`poll_frame`](Connection::poll_frame) until it returns `Ok(None)`, handing each frame's
//!    [`body`](Connection::body) to the application and [`consume`](Connection::consume)-ing
//!    it (a violation goes to [`handle_violation`](Connection::handle_violation));
//! 3. writing: [`poll_transmit`](Connection::poll_transmit) for the bytes to write, then
//!    [`handle_written`](Connection::handle_written) or
//!    [`handle_write_error`](Connection::handle_write_error);
//! 4. closing: when [`wants_shutdown`](Connection::wants_shutdown), shut the write side down
//!    and call [`handle_shutdown`](Connection::handle_shutdown);
//!    [`poll_timeout`](Connection::poll_timeout) says when to call
//!    [`handle_timeout`](Connection::handle_timeout);
//! 5. [`poll_event`](Connection::poll_event) until `None` (a close the connection decided
//!    itself, which the senders must learn; a protocol error; an expired linger), and
//!    [`is_done`](Connection::is_done): the session is over; [`release`](Connection::release)
//!    gives its buffers back.
//!
//! The close sequence and the bytes around the frames (records, the close message) are in
//! `connection/close.rs`; the state-machine tests in `connection/tests.rs`.

use std::io::{ErrorKind, IoSlice};
use std::time::Duration;

use crate::buffer::{BufferPool, SegmentQueue};
use crate::control::{self, CONTROL_ID, Control};
use crate::crypto::CryptoError;
use crate::crypto::io::Sealed;
use crate::crypto::record::{self, Opener, RecordType};
use crate::error::{CloseCode, CloseReason, PeerClose, ProtocolViolation};
use crate::planted::{Bug, Plants};
use crate::session::inbound::{FrameRef, Inbound};
use crate::time::Instant;

/// Smallest spare room offered to a socket read of an encrypted session.
const MIN_READ: usize = 512;

/// What happened that the driver must act on (see [`Connection::poll_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// The connection started closing for this reason on its own (end of stream, a failed
    /// read or write, a protocol or record violation): the senders must learn it.
    Closing(CloseReason),
    /// The peer broke the protocol (counted by the service).
    ProtocolError,
    /// The linger time ran out before the close sequence finished (the reason is
    /// `CloseReason::LingerExpired` from now on if a clean close left bytes unsent).
    LingerExpired,
}

/// The sizes and limits a connection works with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// How long a clean close may take.
    pub(crate) linger: Duration,
    /// Largest frame body accepted.
    pub(crate) max_frame: usize,
    /// Initial and largest read size.
    pub(crate) read_buffer: usize,
    /// Largest read size a busy session adapts to.
    pub(crate) read_buffer_max: usize,
    /// Size of the send queue's segments.
    pub(crate) segment_size: usize,
}

/// One session's protocol state (see the module docs for the call order).
pub(crate) struct Connection {
    inbound: Inbound,
    /// Frames taken from the shared send queue, being written (or sealed, when encrypted).
    out: SegmentQueue,
    /// The record layer of an encrypted session.
    sealed: Option<Box<Sealed>>,
    pool: BufferPool,
    linger: Duration,
    plants: Plants,
    /// Set once the close sequence has started.
    reason: Option<CloseReason>,
    /// When a clean close must be over.
    deadline: Option<Instant>,
    /// Frames were left in the shared queue at the last [`Connection::handle_queued`].
    more_queued: bool,
    /// No more reads: end of stream, read error, or a violation.
    read_done: bool,
    /// The write side is shut down (or broken).
    write_done: bool,
    linger_expired: bool,
    /// Nothing more is delivered (a violation, or an abortive close).
    stopped: bool,
    /// Events not yet polled (at most one of each kind per session).
    closing: Option<CloseReason>,
    protocol_error: bool,
    linger_event: bool,
    /// The close message (with this side's reason, if it has one to give) is queued.
    close_queued: bool,
    /// Bytes of the close message queued at the end of `wire_out` (encrypted).
    close_len: usize,
    /// The application's code and text for its close (`SessionRef::close_with`).
    app_close: Option<(u32, String)>,
    /// Frames may still be taken from the shared queue (not after an abortive close).
    take_more: bool,
    /// Bytes left in the shared queue at the last [`Connection::handle_queued`].
    queue_left: usize,
    /// The peer's close message, once read.
    peer_close: Option<PeerClose>,
    /// "bits": the peer's close frame was read; no frame may follow it.
    close_frame_read: bool,
    /// Bytes of the Open frame not yet written (not session traffic: the client reads it
    /// before its session exists).
    unsent_open: usize,
    /// Why a write failed, if one did.
    write_error: Option<CloseReason>,
    /// Application bytes an abortive close dropped, and that close's reason (a sender's
    /// clean reason adopted afterwards does not make the ending lossless).
    dropped: Option<(usize, CloseReason)>,
}

impl Connection {
    /// A connection over a fresh stream; `sealed` holds the record layer of an encrypted one.
    pub(crate) fn new(
        pool: BufferPool,
        limits: Limits,
        sealed: Option<Box<Sealed>>,
        plants: Plants,
    ) -> Connection {
        let max_frame = if plants.on(Bug::FrameLimitOffByOne) {
            limits.max_frame - 1
        } else {
            limits.max_frame
        };
        Connection {
            inbound: Inbound::new(
                pool.clone(),
                limits.read_buffer,
                limits.read_buffer_max,
                max_frame,
            ),
            out: SegmentQueue::new(pool.clone(), limits.segment_size),
            sealed,
            pool,
            linger: limits.linger,
            plants,
            reason: None,
            deadline: None,
            more_queued: false,
            read_done: false,
            write_done: false,
            linger_expired: false,
            stopped: false,
            closing: None,
            protocol_error: false,
            linger_event: false,
            close_queued: false,
            close_len: 0,
            app_close: None,
            take_more: true,
            queue_left: 0,
            peer_close: None,
            close_frame_read: false,
            unsent_open: 0,
            write_error: None,
            dropped: None,
        }
    }

    /// A "bits" server's connection: the Open frame goes first, before any frame a sender
    /// queues (a connecting client waits for it, see `docs/wire.md`).
    pub(crate) fn queue_open(&mut self) {
        debug_assert!(self.out.is_empty() && self.sealed.is_none());
        self.out.push(&control::open_frame());
        self.unsent_open = control::OPEN_FRAME;
    }

    // ---- inputs ------------------------------------------------------------------------

    /// Takes the frames queued by senders when the previous ones are all written: the whole
    /// queue is swapped out, so senders keep filling an empty one. Returns whether it took
    /// any.
    pub(crate) fn handle_queued(&mut self, queue: &mut SegmentQueue) -> bool {
        if !self.take_more {
            self.more_queued = false;
            return false;
        }
        let took = self.out.is_empty() && !queue.is_empty();
        if took {
            std::mem::swap(&mut self.out, queue);
        }
        self.more_queued = !queue.is_empty();
        self.queue_left = queue.len();
        took
    }

    /// Room for the next socket read (records, on an encrypted session).
    pub(crate) fn read_buf(&mut self) -> &mut [u8] {
        match self.sealed.as_mut() {
            Some(s) => s.wire_in.spare(MIN_READ),
            None => self.inbound.spare(),
        }
    }

    /// `n` bytes were read into [`Connection::read_buf`], which offered `offered` bytes of
    /// room. Frames (and, encrypted, records) are then opened by [`Connection::poll_frame`].
    pub(crate) fn handle_read(&mut self, n: usize, offered: usize) {
        match self.sealed.as_mut() {
            Some(s) => {
                s.wire_in.commit(n);
                s.wire_in.note_read(n, offered);
            }
            None => {
                self.inbound.commit(n);
                self.inbound.note_read(n, offered);
            }
        }
    }

    /// A read would block: an idle session holds no read memory.
    pub(crate) fn handle_would_block(&mut self) {
        self.inbound.release_idle();
        if let Some(s) = self.sealed.as_mut() {
            s.wire_in.release_idle();
        }
    }

    /// The peer's end of stream: clean only at a frame boundary and, when encrypted, after
    /// its authenticated close. With the peer's close message read, the reason is the
    /// peer's ([`CloseReason::Peer`]); without, [`CloseReason::PeerClosed`].
    pub(crate) fn handle_eof(&mut self, now: Instant) {
        self.read_done = true;
        if let Some(s) = &self.sealed
            && (!s.close_received || !s.wire_in.is_empty())
        {
            return self.peer_misbehaved(CloseReason::Crypto(CryptoError::Truncated), None);
        }
        match self.inbound.finish() {
            Ok(()) => {
                let reason = self.peer_reason().unwrap_or(CloseReason::PeerClosed);
                self.close(reason, Some(now));
            }
            Err(v) => self.handle_violation(v, now),
        }
    }

    /// The peer's reason, if its close message was read (once).
    fn peer_reason(&mut self) -> Option<CloseReason> {
        self.peer_close.take().map(CloseReason::Peer)
    }

    /// A read failed. After the peer's close message the peer's reason stands (a peer that
    /// closed abortively may reset the connection right after saying why).
    pub(crate) fn handle_read_error(&mut self, kind: ErrorKind) {
        self.read_done = true;
        let failed = CloseReason::from_io_kind(kind);
        // Unless bytes are lost with the connection: then the failure is the reason.
        let reason = match self.unsent() > 0 {
            true => failed,
            false => self.peer_reason().unwrap_or(failed),
        };
        self.close(reason, None);
    }

    /// The peer broke the protocol (a frame could not be parsed or dispatched): stop reading
    /// and close abortively, telling the peer why (best effort, until `now` + linger).
    pub(crate) fn handle_violation(&mut self, v: ProtocolViolation, now: Instant) {
        self.peer_misbehaved(CloseReason::Protocol(v), Some(now));
    }

    fn peer_misbehaved(&mut self, reason: CloseReason, now: Option<Instant>) {
        self.stopped = true;
        self.read_done = true;
        self.protocol_error = true;
        self.close(reason, now);
        self.release_reads();
    }

    /// `n` bytes of [`Connection::poll_transmit`]'s slices were written. Returns how many of
    /// them count as session traffic (a client's handshake Finished does not).
    pub(crate) fn handle_written(&mut self, n: usize) -> usize {
        if n == 0 {
            self.write_failed(CloseReason::Io(ErrorKind::WriteZero));
            return 0;
        }
        let offered = self.transmit_queue().len();
        self.transmit_queue().advance(n);
        let counted = match self.sealed.as_mut() {
            Some(s) => s.record_bytes(n),
            None => {
                let open = n.min(self.unsent_open);
                self.unsent_open -= open;
                n - open
            }
        };
        if self.plants.on(Bug::BytesOutOffered) {
            offered
        } else {
            counted
        }
    }

    /// A write failed.
    pub(crate) fn handle_write_error(&mut self, kind: ErrorKind) {
        self.write_failed(CloseReason::from_io_kind(kind));
    }

    fn write_failed(&mut self, reason: CloseReason) {
        // A clean close under way loses what it had not written: it is not clean any more.
        let lost = self.unsent() > 0;
        if self.reason.as_ref().is_some_and(CloseReason::is_clean) && lost {
            self.reason = Some(reason.clone());
        }
        self.write_error = Some(reason.clone());
        // After the peer's close message its reason stands (the peer is gone on purpose),
        // unless bytes were lost: then the failure is the reason.
        let reason = match lost {
            true => reason,
            false => self.peer_reason().unwrap_or(reason),
        };
        self.write_done = true;
        self.read_done = true;
        self.clear_out();
        if let Some(s) = self.sealed.as_mut() {
            s.wire_out.clear();
        }
        self.close(reason, None);
    }

    /// The write side was shut down (whatever the socket said: the close goes on).
    pub(crate) fn handle_shutdown(&mut self) {
        self.write_done = true;
    }

    /// Application bytes queued and not yet written: frames taken and not written (or not
    /// sealed), frames still in the shared queue and, encrypted, sealed records not yet
    /// written; the handshake's Finished and this side's close message are not counted.
    pub(crate) fn unsent(&self) -> usize {
        let queued = if self.more_queued { self.queue_left } else { 0 };
        match &self.sealed {
            // The close frame is queued only once every frame is written.
            None if self.close_queued => queued,
            None => self.out.len() - self.unsent_open + queued,
            Some(s) => {
                let close = if self.close_queued { self.close_len } else { 0 };
                let records = s
                    .wire_out
                    .len()
                    .saturating_sub(close.min(s.wire_out.len()))
                    .saturating_sub(s.unsent_finished());
                self.out.len() + queued + records
            }
        }
    }

    // ---- outputs -----------------------------------------------------------------------

    /// The next complete frame, opening records as needed on an encrypted session; `Ok(None)`
    /// when more bytes are needed, or when a record failed (the connection then closes with
    /// `Crypto`: nothing from that record or after it is delivered). A violation must go to
    /// [`Connection::handle_violation`].
    #[inline]
    pub(crate) fn poll_frame(&mut self) -> Result<Option<FrameRef>, ProtocolViolation> {
        // After a violation or an abortive close nothing more is delivered.
        if self.stopped {
            return Ok(None);
        }
        match self.inbound.poll_frame()? {
            Some(f) if f.id != CONTROL_ID && !self.close_frame_read => Ok(Some(f)),
            Some(f) => self.poll_control(f),
            None => self.poll_records(),
        }
    }

    /// [`Connection::poll_frame`] once the frames at hand are consumed: opens records until
    /// one completes a frame.
    #[inline(never)]
    fn poll_records(&mut self) -> Result<Option<FrameRef>, ProtocolViolation> {
        while !self.stopped && self.open_record() {
            match self.inbound.poll_frame()? {
                Some(f) if f.id != CONTROL_ID && !self.close_frame_read => return Ok(Some(f)),
                Some(f) => return self.poll_control(f),
                None => {}
            }
        }
        Ok(None)
    }

    /// A control frame (or any frame after the peer's close frame): taken in here, never
    /// delivered; then the next frame.
    #[inline(never)]
    fn poll_control(&mut self, f: FrameRef) -> Result<Option<FrameRef>, ProtocolViolation> {
        if self.close_frame_read || f.id != CONTROL_ID {
            return Err(ProtocolViolation::BadControl);
        }
        match control::decode(self.inbound.body(&f))? {
            // Only a client reads the Open frame, before its session exists.
            Control::Open { .. } => return Err(ProtocolViolation::BadControl),
            Control::Close(pc) => {
                // On "bits-hpke" the reason travels in the Close record, not in a frame.
                if self.sealed.is_some() {
                    return Err(ProtocolViolation::BadControl);
                }
                self.peer_close = Some(pc);
                self.close_frame_read = true;
            }
            Control::Unknown => {}
        }
        self.inbound.consume(&f);
        self.poll_frame()
    }

    /// The body of `frame` (from [`Connection::poll_frame`]).
    #[inline]
    pub(crate) fn body(&self, frame: &FrameRef) -> &[u8] {
        self.inbound.body(frame)
    }

    /// Done with `frame`.
    #[inline]
    pub(crate) fn consume(&mut self, frame: &FrameRef) {
        self.inbound.consume(frame);
    }

    fn transmit_queue(&mut self) -> &mut SegmentQueue {
        match self.sealed.as_mut() {
            Some(s) => &mut s.wire_out,
            None => &mut self.out,
        }
    }

    /// The bytes to write next, as up to `slices.len()` slices (seals queued frames into
    /// records first, and queues the close message when a closing session has flushed
    /// everything). Returns how many slices it filled; 0: nothing to write.
    pub(crate) fn poll_transmit<'a>(&'a mut self, slices: &mut [IoSlice<'a>]) -> usize {
        if self.write_done {
            return 0;
        }
        self.seal_records();
        if self.write_done {
            return 0;
        }
        self.queue_close();
        self.transmit_queue().io_slices(slices)
    }

    /// When [`Connection::handle_timeout`] must be called next (the linger deadline).
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.deadline.filter(|_| !self.is_done())
    }

    /// The next thing that happened (see [`Event`]).
    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        if let Some(r) = self.closing.take() {
            return Some(Event::Closing(r));
        }
        if std::mem::take(&mut self.protocol_error) {
            return Some(Event::ProtocolError);
        }
        if std::mem::take(&mut self.linger_event) {
            return Some(Event::LingerExpired);
        }
        None
    }

    /// The close sequence is over (or the linger time ran out).
    pub(crate) fn is_done(&self) -> bool {
        self.reason.is_some() && (self.linger_expired || (self.write_done && self.read_done))
    }

    /// Why the session is closing, once it is.
    pub(crate) fn reason(&self) -> Option<&CloseReason> {
        self.reason.as_ref()
    }

    /// No more reads are wanted.
    pub(crate) fn read_done(&self) -> bool {
        self.read_done
    }

    /// An encrypted session.
    pub(crate) fn encrypted(&self) -> bool {
        self.sealed.is_some()
    }

    /// Everything taken from the send queue is written (or sealed) and the connection still
    /// takes frames: the next ones may be taken ([`Connection::handle_queued`]). (A session
    /// closing abortively takes nothing more; frames left queued then are the driver's to
    /// drop, not a reason to stay awake.)
    pub(crate) fn wants_queue(&self) -> bool {
        self.take_more && self.out.is_empty()
    }

    /// Frames taken and not yet written, counted as `wire_len` counts plaintext frames, plus
    /// sealed records waiting for the socket (the send-queue limit's measure).
    pub(crate) fn in_flight(&self, wire_len: impl Fn(usize) -> usize) -> usize {
        let sealed = self.sealed.as_ref().map_or(0, |s| s.wire_out.len());
        wire_len(self.out.len() - self.unsent_open) + sealed
    }

    /// Gives the read buffers back to the pool (nothing more is read).
    fn release_reads(&mut self) {
        self.inbound.release();
        if let Some(s) = self.sealed.as_mut() {
            s.wire_in.release();
        }
    }

    /// The record layer of an encrypted session (for `fuzz_api`, which queues a client's
    /// Finished the way the service does after its handshake).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn sealed_mut(&mut self) -> Option<&mut Sealed> {
        self.sealed.as_deref_mut()
    }

    /// Drops every plaintext frame taken and not written, the Open frame's unwritten part
    /// with them (its count must never exceed what `out` holds).
    fn clear_out(&mut self) {
        self.out.clear();
        self.unsent_open = 0;
    }

    /// Gives every buffer back to the pool.
    pub(crate) fn release(&mut self) {
        self.inbound.release();
        self.clear_out();
        if let Some(s) = self.sealed.as_mut() {
            s.wire_in.release();
            s.wire_out.clear();
        }
    }
}

mod close;

#[cfg(test)]
mod tests;
