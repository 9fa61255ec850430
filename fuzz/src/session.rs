//! The session state machine as a whole: `laxnet`'s sans-IO `Connection` driven the way its
//! task drives it, by a sequence of events decoded with `arbitrary` — bytes arriving in any
//! chunking, reads ending or failing, application sends, writes completing partially or
//! failing, close requests, the write side's shutdown, time passing — with its invariants
//! checked after every step against a model written here from the wire formats alone.
//!
//! Input: a [`Setup`] (plaintext or encrypted with the null cipher, client or server side,
//! sizes and limits), then [`Op`]s. [`Harness`] is the reusable part: it takes one op at a
//! time, so a later whole-stack target can feed the same vocabulary from a simulation.
//!
//! Invariants checked:
//! - delivery: the frames delivered are exactly those of the bytes fed, in order (a model
//!   parses the records and frames independently); a violation closes the session with the
//!   model's reason after every frame before it, and nothing is delivered after a violation
//!   or an abortive close;
//! - end of stream: clean (`PeerClosed`) exactly at a frame boundary and, encrypted, after
//!   the peer's Close record with nothing after it (or, on a client, the server's refusal in
//!   place of its first record), as `Peer(..)` when that close gave a reason; a Close record
//!   whose payload is not a close body (docs/wire.md) is `BadControl`;
//! - one close: at most one `Closing`, `ProtocolError` and `LingerExpired` event each; the
//!   connection's reason is always the one senders see (the first wins); every input
//!   sequence ends in `is_done` by the linger deadline at the latest;
//! - output: the bytes written are a prefix of the frames sent, then, once closing, the close
//!   message for the connection's reason ("bits": a control frame, after a whole frame;
//!   encrypted: the client's Finished, then records whose payloads are that prefix, then at
//!   most one Close record, last, whose payload is the close message or empty when the
//!   reason sends none); nothing is written after an abortive close that sends no reason,
//!   nor after the shutdown; a clean close shuts the write side down only once everything
//!   accepted before it and its close message are written; one that sends its reason, only
//!   after that reason;
//! - bounds: sends are refused over the send-queue limit, the bytes queued and in flight
//!   stay under the limit plus one frame plus the records being written, the buffers held
//!   stay bounded, and every buffer is back in the pool after `release`.

use std::collections::VecDeque;
use std::io::{ErrorKind, IoSlice};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use borsh::{BorshDeserialize, BorshSerialize};
use laxnet::fuzz_api::{
    BufferPool, CF_LEN, Cipher, CloseReason, Conn, ConnEvent, CryptoError, Instant, Limits,
    PoolConfig, ProtocolViolation, RECORD_HEADER, RECORD_OVERHEAD, RECORD_TAG, RecordSealer,
    SealedParams, SegmentQueue, close_message, control_frame, encode_frame, sends_reason,
};

use crate::records::null_keys;

/// The configuration of one run.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// Encrypted (with the null cipher) or plaintext.
    pub encrypted: bool,
    /// The client side (it writes its handshake Finished ahead of its records).
    pub client: bool,
    /// Largest frame: 16, 256, 4096 or 65536 bytes (modulo 4).
    pub max_frame: u8,
    /// Read sizes (see `frames::read_sizes`).
    pub reads: u8,
    /// Send-queue limit: 0, 1 KiB, 16 KiB or 256 KiB (modulo 4).
    pub send_limit: u8,
    /// Largest record payload: 64, 512, 4096 or 16384 bytes (modulo 4).
    pub max_record: u8,
}

/// One event.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// The peer sends a frame with message id `id` (ids from 128 are unknown here) and a
    /// `len`-byte body (modulo the largest frame plus 16) of `fill` bytes. Encrypted, it waits
    /// for [`Op::PeerRecord`].
    PeerFrame {
        /// Message id.
        id: u8,
        /// Body length.
        len: u16,
        /// Body byte.
        fill: u8,
    },
    /// Encrypted: the peer seals up to `take` bytes of its waiting frames into a record (a
    /// Close record if `close`).
    PeerRecord {
        /// Payload bytes.
        take: u16,
        /// A Close record.
        close: bool,
    },
    /// Raw bytes from the peer.
    PeerRaw([u8; 4]),
    /// One socket read of at most `max` bytes (would block when the peer sent nothing).
    Read {
        /// Largest read.
        max: u16,
    },
    /// The peer's end of stream (a socket read of 0 bytes).
    Eof,
    /// A socket read fails.
    ReadError(u8),
    /// The application sends a message (`kind` picks one of three ids) of `len` bytes.
    Send {
        /// Which message type.
        kind: u8,
        /// Length.
        len: u16,
        /// Byte.
        fill: u8,
    },
    /// One vectored write that takes at most `max` bytes (0: the socket wrote nothing).
    Write {
        /// Largest write.
        max: u16,
    },
    /// A socket write fails.
    WriteError(u8),
    /// The write side's shutdown completes, if the connection wants it.
    Shutdown,
    /// A close request: `close()` on a ref, or the service's shutdown, idle sweep or
    /// heartbeat.
    Close(u8),
    /// Time passes.
    Tick {
        /// Milliseconds.
        ms: u16,
    },
}

/// The whole input.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The configuration.
    pub setup: Setup,
    /// The events, in order.
    pub ops: Vec<Op>,
}

macro_rules! payload {
    ($($name:ident = $id:expr),*) => {$(
        /// A message the application sends.
        #[derive(BorshSerialize, BorshDeserialize, Debug)]
        pub struct $name(pub Vec<u8>);
        laxnet::message!($name = $id);
    )*};
}
payload!(P1 = 1, P2 = 2, P3 = 100);

/// The client's handshake Finished in these runs.
pub const CF: [u8; CF_LEN] = [0xCF; CF_LEN];

const LINGER: Duration = Duration::from_millis(500);

fn known(id: u32) -> bool {
    id < 128
}

fn io_kind(k: u8) -> ErrorKind {
    [
        ErrorKind::ConnectionReset,
        ErrorKind::BrokenPipe,
        ErrorKind::TimedOut,
        ErrorKind::Other,
    ][usize::from(k % 4)]
}

/// What a stream of frames parses to (written from the format, not with the library).
struct FrameModel {
    frames: Vec<(u32, Vec<u8>)>,
    error: Option<ProtocolViolation>,
    partial: usize,
}

fn model_frames(mut b: &[u8], max_frame: usize) -> FrameModel {
    let mut m = FrameModel {
        frames: Vec::new(),
        error: None,
        partial: 0,
    };
    loop {
        if b.len() < 4 {
            m.partial = b.len();
            return m;
        }
        let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if len as usize > max_frame {
            m.error = Some(ProtocolViolation::FrameTooLarge {
                len,
                max: u32::try_from(max_frame).unwrap_or(u32::MAX),
            });
            return m;
        }
        if len < 4 {
            m.error = Some(ProtocolViolation::FrameTooShort { len });
            return m;
        }
        let total = 4 + len as usize;
        if b.len() < total {
            m.partial = b.len();
            return m;
        }
        let id = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        if !known(id) {
            m.error = Some(ProtocolViolation::UnknownMessage { id });
            return m;
        }
        m.frames.push((id, b[8..total].to_vec()));
        b = &b[total..];
    }
}

/// What the bytes received parse to: frames, then the reason the session must close with
/// (if the bytes hold a violation), and whether the stream may end here cleanly.
struct Model {
    frames: Vec<(u32, Vec<u8>)>,
    error: Option<CloseReason>,
    clean_end: bool,
    /// The peer's close gave a reason (a Close body, or a server's refusal): a clean end is
    /// `Peer(..)`, not `PeerClosed`.
    said: bool,
}

fn model(fed: &[u8], encrypted: bool, client: bool, max_frame: usize, max_record: usize) -> Model {
    if !encrypted {
        let f = model_frames(fed, max_frame);
        return Model {
            clean_end: f.error.is_none() && f.partial == 0,
            frames: f.frames,
            error: f.error.map(CloseReason::Protocol),
            said: false,
        };
    }
    let mut w = fed;
    let mut plain = Vec::new();
    let mut close_seen = false;
    let mut said = false;
    let mut record_error = None;
    // A client may find the server's refusal (docs/wire.md: "LXNR" and a code byte) where its
    // first record should be: an admission that evicted it after its ServerHello. It reads
    // as the server's close, with a reason; until five bytes are in, nothing is decided.
    if client && REFUSAL.starts_with(fed) {
        return Model {
            frames: Vec::new(),
            error: None,
            clean_end: false,
            said: false,
        };
    }
    if client && fed.len() >= 5 && fed[..4] == REFUSAL[..] {
        w = &fed[5..];
        close_seen = true;
        said = true;
    }
    loop {
        // Frames are checked after every record, before the next one is opened.
        let f = model_frames(&plain, max_frame);
        if let Some(e) = f.error {
            return Model {
                frames: f.frames,
                error: Some(CloseReason::Protocol(e)),
                clean_end: false,
                said,
            };
        }
        if let Some(e) = record_error {
            return Model {
                frames: f.frames,
                error: Some(e),
                clean_end: false,
                said,
            };
        }
        if w.len() < RECORD_HEADER {
            return Model {
                clean_end: close_seen && w.is_empty() && f.partial == 0,
                frames: f.frames,
                error: None,
                said,
            };
        }
        let len = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as usize;
        if len > max_record + 1 + RECORD_TAG {
            record_error = Some(CloseReason::Crypto(CryptoError::RecordTooLarge));
            continue;
        }
        if len < 1 + RECORD_TAG {
            record_error = Some(CloseReason::Crypto(CryptoError::BadRecord));
            continue;
        }
        if w.len() < RECORD_HEADER + len {
            return Model {
                clean_end: false,
                frames: f.frames,
                error: None,
                said,
            };
        }
        if close_seen || w[RECORD_HEADER] > 1 {
            record_error = Some(CloseReason::Crypto(CryptoError::BadRecord));
            continue;
        }
        if w[RECORD_HEADER] == 1 {
            close_seen = true;
            said = close_payload_says(&w[RECORD_HEADER + 1..RECORD_HEADER + len - RECORD_TAG]);
            if !close_payload_ok(&w[RECORD_HEADER + 1..RECORD_HEADER + len - RECORD_TAG]) {
                record_error = Some(CloseReason::Protocol(ProtocolViolation::BadControl));
                continue;
            }
        } else {
            plain.extend_from_slice(&w[RECORD_HEADER + 1..RECORD_HEADER + len - RECORD_TAG]);
        }
        w = &w[RECORD_HEADER + len..];
    }
}

/// A Close record's payload as docs/wire.md defines it: empty (no reason given), or a control
/// body of at most 128 bytes whose kind is not Open; a Close body (kind 1) holds its 9 fixed
/// bytes and then `text_len` (at most 64) bytes of UTF-8. Anything else is `BadControl`.
fn close_payload_ok(p: &[u8]) -> bool {
    if p.is_empty() {
        return true;
    }
    if p.len() > 128 {
        return false;
    }
    match p[0] {
        0 => false,
        1 => {
            let Some(&text_len) = p.get(8) else {
                return false;
            };
            let text_len = usize::from(text_len);
            text_len <= 64
                && p.get(9..9 + text_len)
                    .is_some_and(|t| std::str::from_utf8(t).is_ok())
        }
        _ => true,
    }
}

/// A valid Close record payload that gives the peer's reason (a Close body, kind 1).
fn close_payload_says(p: &[u8]) -> bool {
    close_payload_ok(p) && p.first() == Some(&1)
}

/// The refusal's magic (docs/wire.md).
const REFUSAL: &[u8; 4] = b"LXNR";

/// A connection and everything around it that its task and its peer would be.
pub struct Harness {
    setup: Setup,
    pool: BufferPool,
    conn: Conn,
    max_frame: usize,
    read_max: usize,
    max_record: usize,
    send_limit: usize,
    now: Instant,
    /// The senders' view: the shared send queue and the close phase.
    queue: SegmentQueue,
    phase: Option<CloseReason>,
    /// The peer: bytes in the socket, and (encrypted) its frames waiting for a record.
    incoming: VecDeque<u8>,
    peer_plain: Vec<u8>,
    peer_sealer: RecordSealer,
    /// Every byte read.
    fed: Vec<u8>,
    delivered: Vec<(u32, Vec<u8>)>,
    /// A violation or an abortive close happened at this many frames delivered.
    stopped: Option<usize>,
    /// Frames accepted by `send`, as they go on the wire.
    sent: Vec<u8>,
    written: Vec<u8>,
    /// Bytes written when the writing had to stop (abortive close, shutdown).
    write_frozen: Option<usize>,
    /// A write failed (or wrote nothing).
    write_failed: bool,
    closing_events: usize,
    /// The reason of the connection's own `Closing` event.
    closing_reason: Option<CloseReason>,
    /// A read was dispatched to `Ok(None)` in this step.
    drained: bool,
    protocol_errors: usize,
    linger_events: usize,
}

impl Harness {
    /// A connection with `setup`.
    pub fn new(setup: Setup) -> Harness {
        let pool = BufferPool::new(PoolConfig::default());
        let max_frame = [16, 256, 4096, 1 << 16][usize::from(setup.max_frame % 4)];
        let (read_buffer, read_max) = crate::frames::read_sizes(setup.reads);
        let send_limit = [0, 1 << 10, 16 << 10, 256 << 10][usize::from(setup.send_limit % 4)];
        let max_record = [64, 512, 4096, 16384][usize::from(setup.max_record % 4)];
        let limits = Limits {
            linger: LINGER,
            max_frame,
            read_buffer,
            read_buffer_max: read_max,
            segment_size: 512,
        };
        let sealed = setup.encrypted.then(|| SealedParams {
            keys: null_keys(),
            is_client: setup.client,
            max_record,
            record_limit: u64::MAX,
        });
        let mut conn = Conn::new(&pool, limits, sealed.as_ref());
        if setup.encrypted && setup.client {
            conn.queue_finished(&CF);
        }
        Harness {
            setup,
            queue: SegmentQueue::new(pool.clone(), 512),
            pool,
            conn,
            max_frame,
            read_max,
            max_record: Conn::max_record(max_record),
            send_limit,
            now: Instant::ZERO,
            phase: None,
            incoming: VecDeque::new(),
            peer_plain: Vec::new(),
            peer_sealer: RecordSealer::new(Cipher::Null, &[0; 32], &[0; 12], u64::MAX),
            fed: Vec::new(),
            delivered: Vec::new(),
            stopped: None,
            sent: Vec::new(),
            written: Vec::new(),
            write_frozen: None,
            write_failed: false,
            closing_events: 0,
            closing_reason: None,
            drained: false,
            protocol_errors: 0,
            linger_events: 0,
        }
    }

    /// The session is over (its task would publish `Closed` and destroy it now).
    pub fn is_done(&self) -> bool {
        self.conn.is_done()
    }

    fn wire_len(&self, plain: usize) -> usize {
        if self.setup.encrypted {
            plain + plain.div_ceil(self.max_record) * RECORD_OVERHEAD
        } else {
            plain
        }
    }

    /// Taken and not yet written, in wire bytes, as the driver publishes it.
    fn in_flight(&self) -> usize {
        self.conn.in_flight_wire(self.max_record)
    }

    /// A close request from outside (the first reason wins).
    fn request_close(&mut self, reason: CloseReason) -> bool {
        if self.phase.is_some() {
            return false;
        }
        self.phase = Some(reason);
        true
    }

    /// The driver's step 1: take the queued frames, notice a close request.
    fn sync(&mut self) {
        self.conn.handle_queued(&mut self.queue);
        if let Some(r) = self.phase.clone()
            && self.conn.reason().is_none()
        {
            self.conn.handle_close(r.clone(), self.now);
            self.stop_for(&r);
        }
    }

    /// Nothing more may be delivered (a violation, or an abortive close).
    fn stop_delivery(&mut self) {
        if self.stopped.is_none() {
            self.stopped = Some(self.delivered.len());
        }
    }

    /// Nothing more may be written (an abortive close, a failed write, the shutdown). A
    /// violation during a clean close stops only the delivery: the flush goes on.
    fn freeze_writes(&mut self) {
        if self.write_frozen.is_none() {
            self.write_frozen = Some(self.written.len());
        }
    }

    fn stop(&mut self) {
        self.stop_delivery();
        self.freeze_writes();
    }

    /// An abortive close for `reason` stops the delivery, and the writing unless it still
    /// sends its reason (the frames already taken, then its close message).
    fn stop_for(&mut self, reason: &CloseReason) {
        if reason.is_clean() {
            return;
        }
        if sends_reason(reason) {
            self.stop_delivery();
        } else {
            self.stop();
        }
    }

    /// The driver's `events`.
    fn events(&mut self) {
        while let Some(ev) = self.conn.poll_event() {
            match ev {
                ConnEvent::Closing(reason) => {
                    self.closing_events += 1;
                    self.closing_reason = Some(reason.clone());
                    assert_eq!(self.closing_events, 1, "a second Closing event");
                    self.stop_for(&reason);
                    if !self.request_close(reason.clone())
                        && let Some(first) = self.phase.clone()
                        && first != reason
                    {
                        self.conn.adopt_reason(first);
                    }
                }
                ConnEvent::ProtocolError => {
                    self.protocol_errors += 1;
                    assert_eq!(self.protocol_errors, 1, "a second ProtocolError event");
                    self.stop_delivery();
                }
                ConnEvent::LingerExpired => {
                    self.linger_events += 1;
                    assert_eq!(self.linger_events, 1, "a second LingerExpired event");
                }
            }
        }
    }

    /// The driver's dispatch: every complete frame, or the violation.
    fn dispatch(&mut self) {
        loop {
            match self.conn.poll_frame() {
                Ok(None) => break,
                Ok(Some(f)) => {
                    if !known(f.id()) {
                        self.conn.handle_violation(
                            ProtocolViolation::UnknownMessage { id: f.id() },
                            self.now,
                        );
                        break;
                    }
                    assert!(
                        self.stopped.is_none(),
                        "a frame delivered after the session stopped"
                    );
                    self.delivered.push((f.id(), self.conn.body(&f).to_vec()));
                    self.conn.consume(&f);
                }
                Err(v) => {
                    self.conn.handle_violation(v, self.now);
                    break;
                }
            }
        }
    }

    fn peer_frame(&mut self, id: u8, len: u16, fill: u8) {
        let body_len = usize::from(len) % (self.max_frame + 16);
        let mut frame = ((body_len + 4) as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&u32::from(id).to_le_bytes());
        frame.resize(frame.len() + body_len, fill);
        if self.setup.encrypted {
            self.peer_plain.extend(frame);
        } else {
            self.incoming.extend(frame);
        }
    }

    fn peer_record(&mut self, take: u16, close: bool) {
        if !self.setup.encrypted {
            return;
        }
        let n = usize::from(take).min(self.peer_plain.len());
        let payload: Vec<u8> = self.peer_plain.drain(..n).collect();
        let rec = self.peer_sealer.seal(close, &payload).expect("null seal");
        self.incoming.extend(rec);
    }

    fn read(&mut self, max: u16) {
        if self.conn.read_done() {
            return;
        }
        if self.incoming.is_empty() {
            self.conn.handle_would_block();
            return;
        }
        let buf = self.conn.read_buf();
        let offered = buf.len();
        assert!(offered > 0, "no room offered to a read");
        let n = usize::from(max)
            .max(1)
            .min(offered)
            .min(self.incoming.len());
        for (dst, src) in buf[..n].iter_mut().zip(self.incoming.drain(..n)) {
            *dst = src;
        }
        self.fed.extend_from_slice(&buf[..n]);
        self.conn.handle_read(n, offered);
        self.dispatch();
        self.drained = true;
    }

    fn send(&mut self, kind: u8, len: u16, fill: u8) {
        if self.phase.is_some() {
            return; // Closed: refused.
        }
        let queued = self.wire_len(self.queue.len()) + self.in_flight();
        if queued > self.send_limit {
            return; // QueueFull.
        }
        let body = vec![fill; usize::from(len)];
        let (id, r) = match kind % 3 {
            0 => (
                1u32,
                encode_frame(&mut self.queue, &P1(body.clone()), self.max_frame),
            ),
            1 => (
                2,
                encode_frame(&mut self.queue, &P2(body.clone()), self.max_frame),
            ),
            _ => (
                100,
                encode_frame(&mut self.queue, &P3(body.clone()), self.max_frame),
            ),
        };
        let frame_len = 4 + 4 + body.len();
        match r {
            Ok(total) => {
                assert!(frame_len <= self.max_frame, "sent a frame over the limit");
                assert_eq!(total, 4 + frame_len);
                self.sent
                    .extend_from_slice(&(frame_len as u32).to_le_bytes());
                self.sent.extend_from_slice(&id.to_le_bytes());
                self.sent
                    .extend_from_slice(&(body.len() as u32).to_le_bytes());
                self.sent.extend_from_slice(&body);
            }
            Err(e) => {
                assert!(frame_len > self.max_frame, "send refused: {e:?}");
            }
        }
    }

    /// The bytes `poll_transmit` offers.
    fn transmit(&mut self) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); 64];
        let n = self.conn.poll_transmit(&mut slices);
        slices[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    fn write(&mut self, max: u16) {
        let bytes = self.transmit();
        if bytes.is_empty() {
            return;
        }
        assert!(
            self.write_frozen.is_none(),
            "bytes to write after the writing stopped"
        );
        let n = usize::from(max).min(bytes.len());
        self.written.extend_from_slice(&bytes[..n]);
        let counted = self.conn.handle_written(n);
        assert!(counted <= n);
        if n == 0 {
            self.write_failed = true;
            self.stop();
        }
        self.check_output(false);
    }

    fn write_error(&mut self, k: u8) {
        if self.transmit().is_empty() {
            return;
        }
        self.conn.handle_write_error(io_kind(k));
        self.write_failed = true;
        self.stop();
    }

    fn shutdown(&mut self) {
        if self.conn.wants_shutdown() {
            // A clean close shuts down only once everything accepted is written.
            self.check_output(true);
            self.conn.handle_shutdown();
            self.freeze_writes();
        }
    }

    fn tick(&mut self, ms: u16) {
        self.now = Instant::from_origin(self.now.since_origin() + Duration::from_millis(ms.into()));
        if let Some(t) = self.conn.poll_timeout()
            && t <= self.now
        {
            self.conn.handle_timeout(self.now);
        }
    }

    /// Applies one event the way the session's task would, then checks the invariants.
    /// Events after the session is over are ignored (its task has ended).
    pub fn step(&mut self, op: &Op) {
        if self.is_done() {
            return;
        }
        self.sync();
        self.events();
        match *op {
            Op::PeerFrame { id, len, fill } => self.peer_frame(id, len, fill),
            Op::PeerRecord { take, close } => self.peer_record(take, close),
            Op::PeerRaw(b) => self.incoming.extend(b),
            Op::Read { max } => self.read(max),
            Op::Eof => {
                if !self.conn.read_done() {
                    let open = self.conn.reason().is_none();
                    self.conn.handle_eof(self.now);
                    if open {
                        self.check_eof();
                    }
                }
            }
            Op::ReadError(k) => {
                if !self.conn.read_done() {
                    self.conn.handle_read_error(io_kind(k));
                }
            }
            Op::Send { kind, len, fill } => self.send(kind, len, fill),
            Op::Write { max } => self.write(max),
            Op::WriteError(k) => self.write_error(k),
            Op::Shutdown => self.shutdown(),
            Op::Close(k) => {
                let r = [
                    CloseReason::Local,
                    CloseReason::Shutdown,
                    CloseReason::Idle,
                    CloseReason::Heartbeat,
                ][usize::from(k % 4)]
                .clone();
                self.request_close(r);
            }
            Op::Tick { ms } => self.tick(ms),
        }
        let errors = self.protocol_errors;
        self.events();
        if std::mem::take(&mut self.drained) {
            self.check_violation(errors);
        }
        self.check();
    }

    /// After a read and its dispatch: the bytes fed hold a violation exactly when the session
    /// reported one, after delivering every frame before it, with the model's reason.
    fn check_violation(&self, errors_before: usize) {
        let m = model(
            &self.fed,
            self.setup.encrypted,
            self.setup.client,
            self.max_frame,
            self.max_record,
        );
        if self.protocol_errors > errors_before {
            let e = m.error.as_ref().unwrap_or_else(|| {
                panic!(
                    "a violation reported ({:?}) in bytes that hold none",
                    self.conn.reason()
                )
            });
            assert_eq!(
                self.delivered.len(),
                m.frames.len(),
                "frames before the violation lost"
            );
            if let Some(r) = &self.closing_reason {
                assert_eq!(r, e, "closed for another reason than the violation");
            }
        } else if self.stopped.is_none() {
            assert!(
                m.error.is_none(),
                "the bytes fed hold {:?}, the session goes on",
                m.error
            );
            assert_eq!(
                self.delivered.len(),
                m.frames.len(),
                "a complete frame withheld"
            );
        }
    }

    fn check_eof(&mut self) {
        let m = model(
            &self.fed,
            self.setup.encrypted,
            self.setup.client,
            self.max_frame,
            self.max_record,
        );
        {
            let reason = self.conn.reason().cloned();
            if m.clean_end && m.said {
                assert!(
                    matches!(reason, Some(CloseReason::Peer(_))),
                    "the peer's close gave a reason, the session closed with {reason:?}"
                );
            } else if m.clean_end {
                assert_eq!(reason, Some(CloseReason::PeerClosed));
            } else {
                assert!(
                    matches!(
                        reason,
                        Some(CloseReason::Protocol(ProtocolViolation::TruncatedFrame))
                            | Some(CloseReason::Crypto(CryptoError::Truncated))
                    ),
                    "end of stream mid-frame or mid-record closed with {reason:?}"
                );
            }
        }
    }

    /// The frames delivered are the model's, and none after the session stopped.
    fn check_delivery(&self) {
        let m = model(
            &self.fed,
            self.setup.encrypted,
            self.setup.client,
            self.max_frame,
            self.max_record,
        );
        assert!(
            self.delivered.len() <= m.frames.len()
                && self.delivered[..] == m.frames[..self.delivered.len()],
            "delivered frames are not the ones fed"
        );
        if let Some(at) = self.stopped {
            assert_eq!(
                self.delivered.len(),
                at,
                "delivered after the session stopped"
            );
        }
    }

    /// The bytes written: the client's Finished, then the frames sent (in records when
    /// encrypted), then at most one Close record. `flushed`: all of it must be there.
    fn check_output(&self, flushed: bool) {
        let mut w = &self.written[..];
        if self.setup.encrypted && self.setup.client {
            let n = w.len().min(CF_LEN);
            assert_eq!(w[..n], CF[..n], "the Finished goes first");
            w = &w[n..];
        }
        let mut plain = Vec::new();
        let mut closed = false;
        let mut partial = false;
        let mut close_payload = 0;
        if self.setup.encrypted {
            while w.len() >= RECORD_HEADER {
                assert!(!closed, "bytes after the Close record");
                let len = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as usize;
                assert!((1 + RECORD_TAG..=self.max_record + 1 + RECORD_TAG).contains(&len));
                let total = RECORD_HEADER + len;
                let body = &w[RECORD_HEADER..total.min(w.len())];
                if let Some(&ty) = body.first() {
                    assert!(ty <= 1);
                    closed = ty == 1;
                }
                let payload = &body[1.min(body.len())..body.len().min(len - RECORD_TAG)];
                if closed {
                    let want = self.close_body().unwrap_or_default();
                    assert!(
                        want.starts_with(payload),
                        "the Close record's payload is not the reason's close message"
                    );
                    close_payload = payload.len();
                } else {
                    plain.extend_from_slice(payload);
                }
                if total > w.len() {
                    partial = true;
                    w = &[];
                    break;
                }
                w = &w[total..];
            }
            assert!(flushed || w.len() < RECORD_HEADER);
            if !w.is_empty() {
                assert!(!closed, "bytes after the Close record");
            }
        } else {
            plain.extend_from_slice(w);
        }
        // "bits": the frames sent (a prefix), then, at a frame boundary, the close frame.
        let close_frame = match (self.setup.encrypted, self.close_body()) {
            (false, Some(b)) => control_frame(&b),
            _ => Vec::new(),
        };
        let is_prefix = plain.len() <= self.sent.len() && plain[..] == self.sent[..plain.len()];
        let frames = if is_prefix {
            plain.len()
        } else {
            self.frame_ends()
                .into_iter()
                .filter(|&b| b <= plain.len() && plain[..b] == self.sent[..b])
                .find(|&b| !close_frame.is_empty() && close_frame.starts_with(&plain[b..]))
                .expect("written bytes are not the frames sent (then the close frame)")
        };
        if flushed {
            let clean = self.conn.reason().is_some_and(|r| !sends_reason(r));
            if clean {
                assert_eq!(
                    frames,
                    self.sent.len(),
                    "shut down before everything was written"
                );
            }
            if self.setup.encrypted {
                assert!(
                    closed && w.is_empty() && !partial,
                    "shut down without the Close record"
                );
                let want = self.close_body().unwrap_or_default();
                assert_eq!(close_payload, want.len(), "shut down without the reason");
            } else {
                assert_eq!(
                    plain.len() - frames,
                    close_frame.len(),
                    "shut down without the close frame"
                );
            }
        }
    }

    /// The close message the connection's reason sends, if any.
    fn close_body(&self) -> Option<Vec<u8>> {
        self.conn.reason().and_then(close_message)
    }

    /// Where the frames sent end (0 included): a close frame starts at one of them.
    fn frame_ends(&self) -> Vec<usize> {
        let mut ends = vec![0];
        let mut at = 0;
        while at + 4 <= self.sent.len() {
            let s = &self.sent;
            at += 4 + u32::from_le_bytes([s[at], s[at + 1], s[at + 2], s[at + 3]]) as usize;
            ends.push(at);
        }
        ends
    }

    fn check(&self) {
        // The connection's reason is the senders' (the first reason wins), except that a
        // clean close that loses bytes is not clean: its linger ran out (`LingerExpired`) or
        // a write failed (that failure's reason).
        if let Some(r) = self.conn.reason() {
            let clean = self.phase.as_ref().is_some_and(CloseReason::is_clean);
            let expired = matches!(r, CloseReason::LingerExpired { unsent } if *unsent > 0)
                && self.linger_events == 1;
            let failed = matches!(r, CloseReason::Io(_) | CloseReason::Reset) && self.write_failed;
            if !(clean && (expired || failed)) {
                assert_eq!(Some(r), self.phase.as_ref(), "the close reasons differ");
            }
        }
        if let Some(at) = self.write_frozen {
            assert_eq!(self.written.len(), at, "written after the writing stopped");
        }
        self.check_delivery();
        // Queue bounds: the limit is a high-water mark, plus what is being written.
        let queued = self.wire_len(self.queue.len()) + self.in_flight();
        let bound = self.send_limit
            + self.wire_len(self.max_frame + 4)
            + 6 * (self.max_record + RECORD_OVERHEAD)
            + CF_LEN;
        assert!(queued <= bound, "{queued} bytes queued, bound {bound}");
        let held = self.pool.stats().in_use_bytes;
        let frames = (self.max_frame + 4).max(self.read_max).next_power_of_two();
        let records = (self.max_record + RECORD_OVERHEAD)
            .max(self.read_max)
            .next_power_of_two();
        let hbound = 4 * frames + 4 * records + 2 * bound + (64 << 10);
        assert!(
            held <= hbound,
            "{held} bytes of buffers held, bound {hbound}"
        );
    }

    /// Ends the session the way a well-behaved world would (close requested, everything
    /// written and shut down, the peer's end of stream, the linger time), checking that it
    /// ends, then releases it and checks that no buffer leaked.
    pub fn finish(mut self) {
        for turn in 0..10_000 {
            if self.is_done() {
                break;
            }
            assert!(turn < 9_999, "the session never ended");
            match turn {
                0 => {
                    self.request_close(CloseReason::Local);
                }
                _ if turn % 5 == 1 && self.setup.encrypted && !self.peer_plain.is_empty() => {
                    self.peer_record(u16::MAX, false);
                }
                _ if turn % 5 == 2 => {
                    if self.incoming.is_empty() {
                        self.step(&Op::Eof);
                        continue;
                    }
                    self.step(&Op::Read { max: u16::MAX });
                    continue;
                }
                _ if turn % 5 == 3 => {
                    self.step(&Op::Write { max: u16::MAX });
                    continue;
                }
                _ if turn % 5 == 4 => {
                    self.step(&Op::Shutdown);
                    continue;
                }
                _ => {}
            }
            if turn > 100 {
                self.step(&Op::Tick { ms: 100 });
            } else {
                self.step(&Op::Tick { ms: 0 });
            }
        }
        assert!(self.conn.reason().is_some(), "over without a reason");
        assert!(self.closing_events <= 1);
        self.conn.release();
        drop(self.conn);
        drop(self.queue);
        let held = self.pool.stats();
        assert_eq!(held.in_use_bytes, 0, "buffers leaked: {held:?}");
    }
}

/// The target.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let mut h = Harness::new(input.setup);
    for op in &input.ops {
        h.step(op);
    }
    h.finish();
}
