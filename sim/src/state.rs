//! The state one simulated run shares between its hosts, the fault layer and the driver loop:
//! the ordered event log (hashed into the trace hash), the oracle's view of every session and
//! stream, the edge counters and the violations.
//!
//! Everything sits behind one mutex. The simulation is single-threaded, so it is never
//! contended; the rule is only that nobody holds it across an `.await` or while calling into
//! the simulator (a crash runs library drop code that publishes `Closed` events, which lock it).
//! Library calls made under the lock (`send`, `close`, `acquire`, `status`, `sessions`) never
//! call back into subscribers synchronously; `ready()` is only awaited outside it, in a task of
//! its own (`workload::wait_room`).
//!
//! # Ciphertext faults ("bits-hpke")
//!
//! The invariant: *nothing from a record that fails authentication is delivered; the
//! session closes.* The faulty socket layer spoils at most one record per stream after the
//! handshake and tells the oracle which record on the wire is the first bad one, and how
//! much plaintext the intact records before it carry ([`CtMark`]). The sender's messages are
//! frames of known size ([`msg::frame_len`]) queued in send order, so the oracle knows that
//! exactly the first `good_msgs` of them lie wholly in those records. Then, for the session
//! reading that stream:
//!
//! - (b) it delivers only messages from its peer with a seq below `good_msgs`, and at most
//!   `good_msgs` of them, from the moment the fault is decided (a message beyond them ends
//!   in a record that reaches the wire only at or after the bad one), checked at every
//!   delivery ([`State::check_ciphertext_delivery`]);
//! - (a) once it has read the whole bad record (or the end of stream inside it, or right
//!   after a dropped record), it closes with `CloseReason::Crypto(_)`, unless it had a
//!   visible reason to close before that read: `close()` called, a send failed with
//!   `Closed`, its host shutting down, an injected reset; the first reason wins, and only
//!   the clean ones keep a session reading ([`State::check_crypto_close`]).
//!
//! Both rules fail with the library's null cipher (feature `null-cipher`,
//! `tests/null_cipher.rs`). On every encrypted stream the oracle also checks that records
//! carry no more plaintext than was sent and that the `Close` record follows all of it, and
//! that every session reports the peer key its handshake proved (`SessionRef::peer_key`: the
//! servers' shared key on a connected session; on an accepted one the clients' shared key with
//! `client_auth`, else none; none at all in plaintext runs).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use laxnet::{CloseReason, ProtocolViolation, PublicKey, SendError, Service, SessionRef, wire};

use crate::msg::{self, Body, Bulk, Data};
use crate::reasons::Cause;
use crate::rng::Rng;
use crate::rogue::{Attack, Plan};
use crate::scenario::IoFaults;
use crate::scenario::Scenario;
use crate::schedule::{CtAct, Fault, IoAct, Recorder};

/// Every lifecycle edge the run counts; scenarios list the ones they must reach.
pub const EDGES: &[&str] = &[
    "slot-reused",
    "close-during-connect",
    "connect-aborted",
    "stale-ref-send",
    "heartbeat-expiry",
    "send-queue-overflow",
    "destroy-with-queued-data",
    "crash-mid-frame",
    "reset-mid-frame",
    "peer-crash",
    "host-restart",
    "both-ends-close",
    "close-during-burst",
    "graceful-close-checked",
    "admission-refused",
    "linger-expired",
    "partition",
    "hold-release",
    "latency-spike",
    "short-read",
    "short-write",
    "io-stall",
    "io-reset",
    "truncated-frame",
    "aborted",
    "idle-close",
    "ciphertext-corrupt",
    "ciphertext-duplicate",
    "ciphertext-reorder",
    "ciphertext-splice",
    "ciphertext-drop",
    "crypto-close",
    "ready-room",
    "ready-closed",
    "close-while-waiting",
    "send-too-large",
    "max-frame-sent",
    "hostile-frame-rejected",
    "hostile-boundary-frame",
    "hostile-handshake",
    "handshake-failed",
    "handshake-refused",
    "id-recurred",
    "reason-checked",
    "reason-sent-checked",
    "peer-reason",
    "refusal-typed",
    "clean-close-lossless",
    "clean-end-checked",
    "quiet-checked",
    "listener-paused",
    "handshake-evicted",
    "close-while-closing",
    "closing-at-shutdown",
    "late-subscriber",
];

/// Violations kept per run (the rest are only counted).
pub const MAX_VIOLATIONS: usize = 50;

/// The shared state handle.
pub type Shared = Arc<Mutex<State>>;

/// Locks the shared state (a poisoned lock means a panic, which is reported anyway).
pub fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// One event of the log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ev {
    /// A host's software started (incarnation `inc`).
    Start {
        /// Incarnation.
        inc: u16,
    },
    /// The driver crashed this host.
    Crash,
    /// A network fault started or ended (`what`), between this host and `peer`.
    Net {
        /// partition, repair, hold, release, spike, spike-end.
        what: &'static str,
        /// The other host, or the latency for spikes.
        arg: u64,
    },
    /// A socket-layer fault on a stream.
    Io {
        /// Stream number.
        stream: u64,
        /// What.
        act: IoAct,
    },
    /// `connect` failed.
    ConnectErr {
        /// Why.
        what: String,
    },
    /// Session opened.
    Opened {
        /// Id (raw).
        id: u32,
        /// True if this side connected.
        connected: bool,
        /// Its stream.
        stream: Option<u64>,
    },
    /// Session closed.
    Closed {
        /// Id.
        id: u32,
        /// Reason.
        reason: String,
    },
    /// A send succeeded.
    Send {
        /// Id.
        id: u32,
        /// Seq.
        seq: u64,
        /// Payload bytes.
        len: u32,
    },
    /// A send failed.
    SendErr {
        /// Id.
        id: u32,
        /// The error.
        err: String,
    },
    /// A `SessionRef::ready()` that the workload awaited after `QueueFull` returned.
    Ready {
        /// Id.
        id: u32,
        /// "room", or the error.
        res: String,
    },
    /// A message was delivered.
    Recv {
        /// Receiving session id.
        id: u32,
        /// Sender host.
        from: u16,
        /// Sender session id.
        from_id: u32,
        /// Seq.
        seq: u64,
    },
    /// The workload called `close()`.
    Close {
        /// Id.
        id: u32,
        /// Why (client, server, both, on-open, end).
        how: &'static str,
    },
    /// A stale-ref probe.
    Probe {
        /// Id.
        id: u32,
        /// The result.
        res: String,
    },
    /// The host drained: its final status.
    Quiesced {
        /// Live sessions.
        live: u64,
        /// Pool bytes in use.
        in_use: u64,
        /// Panics counted by the service.
        panics: u64,
    },
    /// An invariant failed.
    Violation {
        /// What.
        what: String,
    },
    /// A ciphertext fault on a record this host writes.
    Ct {
        /// Stream number.
        stream: u64,
        /// Record number (0 = the first after the handshake).
        record: u64,
        /// What.
        act: CtAct,
    },
    /// This host read the first record a ciphertext fault spoiled (or the end of stream
    /// after a dropped one).
    CtRead {
        /// The reading stream.
        stream: u64,
        /// The writing stream, which took the fault.
        from: u64,
    },
}

/// One log entry: sim time, host, incarnation, event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Sim time in microseconds.
    pub t_us: u64,
    /// Host index.
    pub host: u16,
    /// Host incarnation.
    pub inc: u16,
    /// What happened.
    pub ev: Ev,
}

/// Tracks frame boundaries in a byte stream of "bits" frames (`len: u32 LE`, then `len`
/// bytes), to tell whether a stream stopped in the middle of a frame. On "bits-hpke" it skips
/// the fixed-size handshake and then tracks records, which have the same length header.
#[derive(Debug, Default, Clone)]
pub struct FrameTrack {
    skip: u64,
    skipped: u64,
    hdr: [u8; 4],
    have: usize,
    left: u64,
    /// The current frame's first bytes (its id, and a control frame's body).
    head: Vec<u8>,
    /// Its length.
    len: u64,
    /// "bits": the code of the last close control frame completed, if any.
    pub close_code: Option<u8>,
}

/// Bytes of a frame kept to parse control frames: the id and a close body with its text.
const HEAD_KEEP: usize = 4 + wire::CLOSE_BODY + wire::CLOSE_TEXT_MAX;

impl FrameTrack {
    /// A tracker that first lets `skip` bytes (a handshake) pass.
    pub fn with_skip(skip: u64) -> FrameTrack {
        FrameTrack {
            skip,
            ..FrameTrack::default()
        }
    }

    /// Feeds bytes that went through.
    pub fn feed(&mut self, mut b: &[u8]) {
        while !b.is_empty() {
            if self.skipped < self.skip {
                let k = ((self.skip - self.skipped) as usize).min(b.len());
                self.skipped += k as u64;
                b = &b[k..];
            } else if self.left > 0 {
                let k = (self.left as usize).min(b.len());
                let keep = HEAD_KEEP.saturating_sub(self.head.len()).min(k);
                self.head.extend_from_slice(&b[..keep]);
                self.left -= k as u64;
                b = &b[k..];
                if self.left == 0 {
                    self.frame_done();
                }
            } else {
                self.hdr[self.have] = b[0];
                self.have += 1;
                b = &b[1..];
                if self.have == 4 {
                    self.left = u32::from_le_bytes(self.hdr) as u64;
                    self.len = self.left;
                    self.head.clear();
                    self.have = 0;
                }
            }
        }
    }

    /// A frame is complete: a close control frame records its code.
    fn frame_done(&mut self) {
        let h = &self.head;
        if self.skip == 0 && h.len() >= 6 && h[..4] == wire::CONTROL_ID.to_le_bytes() && h[4] == 1 {
            self.close_code = Some(h[5]);
        }
        let _ = self.len;
    }

    /// True if the bytes so far end inside a frame (or inside the handshake).
    pub fn mid_frame(&self) -> bool {
        (self.skipped > 0 && self.skipped < self.skip) || self.have > 0 || self.left > 0
    }
}

/// One stream created by the faulty runtime.
#[derive(Debug)]
pub struct StreamInfo {
    /// Owning host.
    pub host: u16,
    /// Its incarnation.
    pub inc: u16,
    /// Created by `connect` (else by `accept`).
    pub connected: bool,
    /// The stream at the other end, once both exist.
    pub peer: Option<u64>,
    /// The session using it.
    pub sess: Option<usize>,
    /// Host-clock nanoseconds of the last read that returned bytes (or of creation).
    pub last_read_ns: u64,
    /// Bytes written.
    pub written: u64,
    /// Frame position of what was written.
    pub wf: FrameTrack,
    /// Frame position of what was read.
    pub rf: FrameTrack,
    /// A reset was injected.
    pub reset: bool,
    /// Still owned by the library (not dropped).
    pub open: bool,
    /// Read polls so far.
    pub rops: u64,
    /// Write polls so far.
    pub wops: u64,
    /// An encrypted ("bits-hpke") stream.
    pub hpke: bool,
    /// Bytes read.
    pub read_total: u64,
    /// Encrypted: plaintext bytes (frames) in the records written so far.
    pub plain_written: u64,
    /// Encrypted: the ciphertext fault this stream's write side took, if any.
    pub ct: Option<CtMark>,
    /// Encrypted: when ([`State::ord`]) this stream read the first record spoiled by a
    /// ciphertext fault of its peer stream.
    pub landed: Option<u64>,
    /// When ([`State::ord`]) a reset was injected.
    pub reset_ord: Option<u64>,
    /// The first thing that happened to this stream that ends a session ([`Cause::Eof`],
    /// [`Cause::Io`], [`Cause::Violation`]), with its [`State::ord`] and sim time.
    pub cause: Option<(u64, Cause, u64)>,
    /// Encrypted: this side wrote its whole `Close` record.
    pub close_record: bool,
    /// This side wrote a close message with a reason: a close control frame ("bits", with
    /// its code) or a Close record with a payload ("bits-hpke", code unknown to the oracle).
    pub reason_sent: Option<Option<u8>>,
    /// The library shut this side's write half down (after its close message, if any).
    pub shut_down: bool,
    /// The first bytes written (to recognise a refusal).
    pub head_out: Vec<u8>,
    /// The last failed read or write (whatever the stream's first cause).
    pub io_error: Option<std::io::ErrorKind>,
    /// Read polls before the first write (a refusal at accept: none).
    pub rops_at_first_write: Option<u64>,
    /// A hostile host's end: the attack it sends.
    pub rogue: Option<RogueInfo>,
    /// The host of this stream or of its peer crashed while it was open.
    pub crashed: bool,
    /// Encrypted: the handshake on this stream completed (as far as the bytes tell).
    pub hs_done: bool,
    /// The address of the other end.
    pub remote: SocketAddr,
}

/// The attack a hostile host's stream carries (see [`crate::rogue`]).
#[derive(Debug, Clone)]
pub struct RogueInfo {
    /// The attack.
    pub attack: Attack,
    /// The violation the server must see, and after how many bytes.
    pub expect: Option<(u64, ProtocolViolation)>,
    /// Valid messages before it.
    pub valid: u64,
}

impl StreamInfo {
    /// Application bytes (frames) written: all bytes on "bits", the records' plaintext on
    /// "bits-hpke".
    pub fn app_written(&self) -> u64 {
        if self.hpke {
            self.plain_written
        } else {
            self.written
        }
    }
}

/// A ciphertext fault on the write side of a stream, as the oracle sees it.
///
/// Records are numbered in the order the library sealed them (`record`) and, separately, in
/// the order they went on the wire. The fault makes one wire record *bad*: the corrupted
/// record, the second copy of a duplicate, the later record sent first by a reorder, the
/// spliced foreign record, or whatever is sent first after a dropped record. Every record
/// before it on the wire is intact and in order, and it carries exactly the plaintext of
/// the library's first records, which is `good_plain` bytes of frames: the first
/// `good_msgs` messages of the sender are wholly inside it.
#[derive(Debug, Clone)]
pub struct CtMark {
    /// The fault.
    pub act: CtAct,
    /// The record it hit (sealing order).
    pub record: u64,
    /// When it was decided (sim µs).
    pub t_us: u64,
    /// The sending session (index into [`State::sessions`]).
    pub sender: usize,
    /// Plaintext bytes in the intact records before the bad one.
    pub good_plain: u64,
    /// Messages of the sender wholly inside those bytes.
    pub good_msgs: u64,
    /// Stream offset (handshake included) where the bad record starts, once it is sent.
    pub bad_from: Option<u64>,
    /// Stream offset where it ends, once its header is sent.
    pub bad_end: Option<u64>,
    /// A dropped record was followed by the end of stream: the end itself is the fault.
    pub eof_bad: bool,
    /// The fault came to nothing: a held record went out in order at shutdown.
    pub cancelled: bool,
}

/// The oracle's view of one session.
#[derive(Debug, Clone)]
pub struct Sess {
    /// Host.
    pub host: u16,
    /// Incarnation.
    pub inc: u16,
    /// Id (raw).
    pub id: u32,
    /// This side connected.
    pub connected: bool,
    /// Its stream.
    pub stream: Option<u64>,
    /// When `Opened` arrived.
    pub opened_us: u64,
    /// `Closed` events seen.
    pub closed: u32,
    /// When the first `Closed` arrived.
    pub closed_us: Option<u64>,
    /// Its reason.
    pub reason: Option<CloseReason>,
    /// When the workload first called `close()` on an open session.
    pub close_called_us: Option<u64>,
    /// Successful sends (the next seq).
    pub sent: u64,
    /// Successful sends when `close()` was called.
    pub sent_at_close: Option<u64>,
    /// Wire bytes of the successful sends.
    pub enq_bytes: u64,
    /// Next expected seq from the peer.
    pub recv_next: u64,
    /// The peer identity bound by the first message.
    pub sender: Option<(u16, u16, u32)>,
    /// A send already failed with `Closed(Heartbeat)`.
    pub hb_fired: bool,
    /// Wire bytes of the first n successful sends, for every n (cumulative frame ends).
    pub frame_ends: Vec<u64>,
    /// Messages delivered.
    pub recv_count: u64,
    /// When ([`State::ord`]) a reason to close was first visible: `close()` called, a send
    /// failing with `Closed`, the host shutting down.
    pub cause_ord: Option<u64>,
    /// The first cause that happened to the session itself ([`Cause::CloseCalled`],
    /// [`Cause::Shutdown`], [`Cause::Heartbeat`], [`Cause::Crash`]), with its order and sim
    /// time. Its stream's causes are kept on the stream.
    pub cause: Option<(u64, Cause, u64)>,
    /// The reason the library first reported to a sender or a `ready()` waiter
    /// (`SendError::Closed(reason)`): `Closed` must carry the same.
    pub told: Option<CloseReason>,
}

/// A session the workload is driving.
pub struct Live {
    /// The ref from `Opened`.
    pub sref: SessionRef,
    /// Index into [`State::sessions`].
    pub sess: usize,
    /// Next burst (sim µs).
    pub next_send_us: u64,
    /// When its closer acts (sim µs), if anyone closes it before the end.
    pub close_at_us: Option<u64>,
    /// Who closes: "client", "server", "both".
    pub closer: &'static str,
    /// Send a burst right before closing.
    pub burst_close: bool,
    /// A server session that never sends.
    pub mute: bool,
    /// A task waits in `ready()` after `QueueFull`; the workload sends nothing meanwhile.
    pub waiting: bool,
    /// Since when (sim µs) the waiting session's queue has been at or below the low-water mark.
    pub room_since_us: Option<u64>,
    /// A lost wake-up was reported for this session (once).
    pub lost_reported: bool,
}

/// A ref kept after its session closed.
pub struct Kept {
    /// The ref.
    pub sref: SessionRef,
    /// Index into [`State::sessions`].
    pub sess: usize,
}

/// One host's workload state.
pub struct HostState {
    /// Name.
    pub name: String,
    /// True for servers.
    pub server: bool,
    /// Current incarnation.
    pub inc: u16,
    /// Incarnations started so far.
    pub starts: u16,
    /// Its service (None while crashed).
    pub svc: Option<Service>,
    /// Workload RNG.
    pub rng: Rng,
    /// Sessions being driven, by id.
    pub live: BTreeMap<u32, Live>,
    /// Refs kept after close.
    pub kept: VecDeque<Kept>,
    /// Current id → session index (this incarnation).
    pub by_id: BTreeMap<u32, usize>,
    /// Ids issued in this incarnation.
    pub ids_seen: BTreeSet<u32>,
    /// Slot → latest id issued on it (this incarnation).
    pub slot_latest: BTreeMap<u32, u32>,
    /// Id → how many ids its slot had issued before it (this incarnation), to tell a
    /// recurrence at the horizon from a reissue before it.
    pub issued_at: BTreeMap<u32, u64>,
    /// Slot → ids issued on it (this incarnation).
    pub slot_issues: BTreeMap<u32, u64>,
    /// Sessions opened and not yet closed.
    pub open_now: usize,
    /// The most sessions open at once (this incarnation).
    pub peak_open: usize,
    /// Connects in flight.
    pub connecting: usize,
    /// The stream the runtime created last (taken by the next `Opened`).
    pub last_stream: Option<u64>,
    /// Drained and checked.
    pub done: bool,
    /// Currently crashed.
    pub down: bool,
    /// Next connect attempt (sim µs).
    pub next_connect_us: u64,
    /// Next stale probe (sim µs).
    pub next_probe_us: u64,
    /// Round-robin server choice.
    pub next_server: u16,
    /// Workload phase over: no new connects or sends.
    pub draining: bool,
    /// Tasks of this incarnation waiting in `ready()`.
    pub waiters: u64,
    /// The subscriber added while sessions run (servers; see `workload::late_subscriber`).
    pub late_sub: Option<laxnet::SubId>,
    /// It was added and dropped again.
    pub late_done: bool,
    /// `Data` messages delivered while it was subscribed.
    pub late_expected: u64,
    /// Messages it got.
    pub late_got: u64,
    /// A server whose listener is closed (`Acceptor::close`) for a while.
    pub paused: bool,
}

/// Library handles to drop outside the state lock.
pub struct Handles(pub Option<Service>, pub Vec<SessionRef>);

/// A failed invariant.
#[derive(Debug, Clone)]
pub struct Violation {
    /// Sim time (µs).
    pub t_us: u64,
    /// Host.
    pub host: Option<u16>,
    /// Session index.
    pub sess: Option<usize>,
    /// What failed.
    pub what: String,
}

/// The shared state of one run.
pub struct State {
    /// The scenario.
    pub sc: Arc<Scenario>,
    /// Sim time of the current step (µs), set by the driver loop.
    pub now_us: u64,
    /// The event log.
    pub log: Vec<Entry>,
    /// Every session ever opened.
    pub sessions: Vec<Sess>,
    /// Every stream ever created.
    pub streams: Vec<StreamInfo>,
    /// Streams waiting for their other end: (client addr, server addr) → stream.
    pub unpaired: BTreeMap<(SocketAddr, SocketAddr), u64>,
    /// The hosts.
    pub hosts: Vec<HostState>,
    /// Failed invariants (the first [`MAX_VIOLATIONS`]).
    pub violations: Vec<Violation>,
    /// All failed invariants, counted.
    pub violation_count: u64,
    /// Edge counters.
    pub edges: BTreeMap<&'static str, u64>,
    /// Fault decisions.
    pub rec: Recorder,
    /// Messages delivered.
    pub delivered: u64,
    /// `Closed` events held while a host crashes.
    pub crash_closed: Vec<(u16, u32, CloseReason)>,
    /// The run is over: the log takes no more entries.
    pub frozen: bool,
    /// Print events as they happen (replay --trace).
    pub echo: bool,
    /// A counter that orders observations (not time: many happen in one sim step).
    pub ord: u64,
    /// The key every connected session must report as its peer's (encrypted runs).
    server_key: Option<PublicKey>,
    /// The key every accepted session must report (encrypted runs with `client_auth`).
    client_key: Option<PublicKey>,
}

/// How a burst of sends went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Burst {
    /// A send failed with anything but a full queue; the rest of the burst was not sent.
    pub stopped: bool,
    /// At least one send met `QueueFull` (the workload then waits in `ready()`).
    pub queue_full: bool,
}

/// What one send did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sent {
    Ok,
    QueueFull,
    Failed,
}

impl State {
    /// Bytes a connecting side writes before its records (ClientHello and ClientFinished).
    pub fn client_out(&self) -> u64 {
        wire::client_handshake(self.sc.client_auth) as u64
    }

    /// A fresh state.
    pub fn new(sc: Arc<Scenario>, seed: u64, rec: Recorder) -> State {
        let hosts = (0..sc.host_count())
            .map(|i| HostState {
                name: sc.host_name(i),
                server: sc.is_server(i),
                inc: 0,
                starts: 0,
                svc: None,
                rng: Rng::new(seed, 1 + i as u64),
                live: BTreeMap::new(),
                kept: VecDeque::new(),
                by_id: BTreeMap::new(),
                ids_seen: BTreeSet::new(),
                slot_latest: BTreeMap::new(),
                issued_at: BTreeMap::new(),
                slot_issues: BTreeMap::new(),
                open_now: 0,
                peak_open: 0,
                connecting: 0,
                last_stream: None,
                done: false,
                down: false,
                next_connect_us: 0,
                next_probe_us: 0,
                next_server: i % sc.hosts.servers.max(1),
                draining: false,
                waiters: 0,
                late_sub: None,
                late_done: false,
                late_expected: 0,
                late_got: 0,
                paused: false,
            })
            .collect();
        let server_key = sc
            .protocol
            .encrypted()
            .then(|| crate::workload::server_key(seed).public());
        let client_key = (sc.protocol.encrypted() && sc.client_auth)
            .then(|| crate::workload::client_key(seed).public());
        State {
            server_key,
            client_key,
            sc,
            now_us: 0,
            log: Vec::new(),
            sessions: Vec::new(),
            streams: Vec::new(),
            unpaired: BTreeMap::new(),
            hosts,
            violations: Vec::new(),
            violation_count: 0,
            edges: BTreeMap::new(),
            rec,
            delivered: 0,
            crash_closed: Vec::new(),
            frozen: false,
            echo: false,
            ord: 0,
        }
    }

    /// The next observation number.
    pub fn next_ord(&mut self) -> u64 {
        self.ord += 1;
        self.ord
    }

    /// Session `idx` has a visible reason to close from now on (first call wins).
    pub fn cause(&mut self, idx: usize) {
        if self.sessions[idx].cause_ord.is_none() {
            let o = self.next_ord();
            self.sessions[idx].cause_ord = Some(o);
        }
    }

    /// Appends an event.
    pub fn log(&mut self, host: u16, ev: Ev) {
        if self.frozen {
            return;
        }
        let inc = self.hosts.get(host as usize).map_or(0, |h| h.inc);
        let e = Entry {
            t_us: self.now_us,
            host,
            inc,
            ev,
        };
        if self.echo {
            println!("{}", self.fmt_entry(&e));
        }
        self.log.push(e);
    }

    /// Counts an edge.
    pub fn edge(&mut self, name: &'static str) {
        debug_assert!(EDGES.contains(&name), "unknown edge {name}");
        *self.edges.entry(name).or_default() += 1;
    }

    /// Records a violation.
    pub fn violation(&mut self, host: Option<u16>, sess: Option<usize>, what: String) {
        let t = self.now_us;
        self.violation_at(t, host, sess, what);
    }

    /// Records a violation that happened at sim time `t_us`.
    pub fn violation_at(
        &mut self,
        t_us: u64,
        host: Option<u16>,
        sess: Option<usize>,
        what: String,
    ) {
        self.violation_count += 1;
        if self.violations.len() >= MAX_VIOLATIONS {
            return;
        }
        if let Some(h) = host {
            self.log(h, Ev::Violation { what: what.clone() });
        }
        self.violations.push(Violation {
            t_us,
            host,
            sess,
            what,
        });
    }

    /// Formats a log entry for people.
    pub fn fmt_entry(&self, e: &Entry) -> String {
        let host = self
            .hosts
            .get(e.host as usize)
            .map_or("?", |h| h.name.as_str());
        format!(
            "{:>10.3}ms {host}/{} {}",
            e.t_us as f64 / 1000.0,
            e.inc,
            fmt_ev(&e.ev)
        )
    }

    /// The trace hash: FNV-1a over the ordered event log.
    pub fn trace_hash(&self) -> u64 {
        let mut h = Fnv::default();
        for e in &self.log {
            e.hash(&mut h);
        }
        h.finish()
    }

    // ---- streams -------------------------------------------------------------------------

    /// Registers a stream the runtime just created; pairs it with its other end.
    pub fn new_stream(
        &mut self,
        host: u16,
        connected: bool,
        local: SocketAddr,
        peer: SocketAddr,
        now_ns: u64,
    ) -> u64 {
        let id = self.streams.len() as u64;
        let inc = self.hosts[host as usize].inc;
        let hpke = self.sc.protocol.encrypted();
        let (wskip, rskip) = match (hpke, connected) {
            (false, _) => (0, 0),
            (true, true) => (self.client_out(), wire::SERVER_HANDSHAKE as u64),
            (true, false) => (wire::SERVER_HANDSHAKE as u64, self.client_out()),
        };
        let key = if connected {
            (local, peer)
        } else {
            (peer, local)
        };
        let mut info = StreamInfo {
            host,
            inc,
            connected,
            peer: None,
            sess: None,
            last_read_ns: now_ns,
            written: 0,
            wf: FrameTrack::with_skip(wskip),
            rf: FrameTrack::with_skip(rskip),
            reset: false,
            open: true,
            rops: 0,
            wops: 0,
            hpke,
            read_total: 0,
            plain_written: 0,
            ct: None,
            landed: None,
            reset_ord: None,
            cause: None,
            close_record: false,
            reason_sent: None,
            shut_down: false,
            head_out: Vec::new(),
            io_error: None,
            rops_at_first_write: None,
            rogue: None,
            crashed: false,
            hs_done: false,
            remote: peer,
        };
        if !connected && self.hosts[host as usize].paused {
            self.violation(
                Some(host),
                None,
                format!("a connection from {peer} was accepted while the listener was closed"),
            );
        }
        match self.unpaired.remove(&key) {
            Some(other) if self.streams[other as usize].connected != connected => {
                info.peer = Some(other);
                self.streams[other as usize].peer = Some(id);
            }
            _ => {
                self.unpaired.insert(key, id);
            }
        }
        self.streams.push(info);
        if !hpke && !connected {
            // Encrypted: the session opens when the handshake completes (see below); a
            // "bits" client's when it has read the server's Open frame.
            self.hosts[host as usize].last_stream = Some(id);
        }
        id
    }

    /// The handshake on encrypted `stream` just completed (the connecting side read the last
    /// byte of the ServerHello — its ClientFinished leaves later, with its first records —,
    /// the accepting side read the ClientFinished). The library opens the session in the
    /// same poll, so its `Opened` event belongs to this stream; handshakes overlap, so the
    /// stream created last would be the wrong guess.
    pub fn handshake_done(&mut self, stream: u64) {
        let host = self.streams[stream as usize].host;
        self.streams[stream as usize].hs_done = true;
        self.hosts[host as usize].last_stream = Some(stream);
    }

    /// Records `cause` for `stream` unless it already has one (the first cause wins).
    pub fn stream_cause(&mut self, stream: u64, cause: Cause) {
        if self.streams[stream as usize].cause.is_none() {
            let (o, t) = (self.next_ord(), self.now_us);
            self.streams[stream as usize].cause = Some((o, cause, t));
        }
    }

    /// A read or write on `stream` failed with `kind` (injected, or the simulated network's).
    /// After reading the peer's whole close message the session keeps the peer's reason.
    pub fn stream_error(&mut self, stream: u64, kind: std::io::ErrorKind) {
        self.streams[stream as usize].io_error = Some(kind);
        let info = &self.streams[stream as usize];
        let said = info.peer.and_then(|p| {
            let peer = &self.streams[p as usize];
            peer.reason_sent.filter(|_| info.read_total >= peer.written)
        });
        match said {
            Some(code) => self.stream_cause(
                stream,
                Cause::PeerSaid {
                    code,
                    io: Some(kind),
                },
            ),
            None => self.stream_cause(stream, Cause::Io(kind)),
        }
    }

    /// `stream` read its peer's clean end of stream without a close message: a peer that shut
    /// down cleanly after deciding to close on its own (`close()`, its shutdown), not answering
    /// this side's close, must have sent its reason first.
    fn check_reason_sent(&mut self, stream: u64) {
        let Some(p) = self.streams[stream as usize].peer else {
            return;
        };
        let peer = &self.streams[p as usize];
        if !peer.shut_down || peer.reset || peer.crashed || peer.reason_sent.is_some() {
            return;
        }
        let Some(pidx) = peer.sess else { return };
        let (ph, pid) = (peer.host, self.sessions[pidx].id);
        if let Some((_, cause @ (Cause::CloseCalled | Cause::Shutdown), _)) = self.first_cause(pidx)
        {
            self.violation(
                Some(ph),
                Some(pidx),
                format!(
                    "{} closed for {cause:?} and shut its stream down cleanly without sending its reason",
                    fmt_id(pid)
                ),
            );
        } else {
            self.edge("reason-sent-checked");
        }
    }

    /// A server stream dropped without a session: the library refused the connection, and a
    /// refusal is typed: on "bits" the stream wrote a close frame (never an Open frame alone,
    /// never nothing), on "bits-hpke" a refusal in place of the ServerHello if it dropped the
    /// connection before reading from it. Injected resets, crashes and the end of the run
    /// excuse it.
    fn check_refusal(&mut self, stream: u64) {
        let info = &self.streams[stream as usize];
        let h = info.host;
        let host = &self.hosts[h as usize];
        if info.connected
            || info.sess.is_some()
            || info.hs_done
            || info.reset
            || info.crashed
            || info.rogue.is_some()
            || host.down
            || host.draining
            || !self.sc.is_server(h)
            || matches!(info.cause, Some((_, Cause::Io(_), _)))
        {
            return;
        }
        let silent = if info.hpke {
            info.rops == 0 && info.written == 0
        } else {
            info.written == 0
        };
        if silent {
            let what = format!(
                "the server dropped a connection from {} without a session and without saying why (a refusal that looks like a reset)",
                info.remote
            );
            self.violation(Some(h), None, what);
        } else {
            self.edge("refusal-typed");
        }
    }

    /// The library shut `stream`'s write half down.
    pub fn shut_down(&mut self, stream: u64) {
        self.streams[stream as usize].shut_down = true;
    }

    /// The hostile peer at the other end of `stream`, if any.
    fn rogue_peer(&self, stream: u64) -> Option<&RogueInfo> {
        let p = self.streams[stream as usize].peer?;
        self.streams[p as usize].rogue.as_ref()
    }

    /// The hostile peer of session `idx`, if any.
    fn sess_rogue(&self, idx: usize) -> Option<&RogueInfo> {
        self.rogue_peer(self.sessions[idx].stream?)
    }

    /// `got` was read from `stream` (empty: end of stream) at host time `now_ns`.
    pub fn read_bytes(&mut self, stream: u64, got: &[u8], now_ns: u64) {
        let info = &mut self.streams[stream as usize];
        let before = info.read_total;
        info.read_total += got.len() as u64;
        let mid_frame = info.rf.mid_frame();
        if !got.is_empty() {
            info.rf.feed(got);
            info.last_read_ns = now_ns;
        }
        let (hpke, connected, total, peer) =
            (info.hpke, info.connected, info.read_total, info.peer);
        if got.is_empty() {
            // The end of the stream: clean at a frame (record) boundary, and on "bits-hpke"
            // only after the peer's whole Close record.
            let close_record = peer.is_some_and(|p| self.streams[p as usize].close_record);
            let said = peer.and_then(|p| self.streams[p as usize].reason_sent);
            match said {
                Some(code) if !mid_frame && (!hpke || close_record) => {
                    self.stream_cause(stream, Cause::PeerSaid { code, io: None })
                }
                _ => {
                    self.check_reason_sent(stream);
                    self.stream_cause(
                        stream,
                        Cause::Eof {
                            mid_frame,
                            hpke,
                            close_record,
                        },
                    )
                }
            }
        }
        if let Some((at, v)) = self.rogue_peer(stream).and_then(|r| r.expect.clone())
            && before < at
            && total >= at
        {
            self.stream_cause(stream, Cause::Violation(v));
        }
        if !hpke {
            let open = wire::OPEN_FRAME as u64;
            if connected && before < open && total >= open && self.rogue_peer(stream).is_none() {
                self.handshake_done(stream);
            }
            return;
        }
        let hello_in = if connected {
            wire::SERVER_HANDSHAKE as u64
        } else {
            self.client_out()
        };
        if before < hello_in && total >= hello_in && self.rogue_peer(stream).is_none() {
            self.handshake_done(stream);
        }
        let Some(p) = peer else { return };
        let Some(m) = &self.streams[p as usize].ct else {
            return;
        };
        if m.cancelled || self.streams[stream as usize].landed.is_some() {
            return;
        }
        let eof = got.is_empty();
        let landed = m.bad_end.is_some_and(|e| total >= e)
            || (eof && (m.eof_bad || m.bad_from.is_some_and(|f| total > f)));
        if !landed {
            return;
        }
        let edge = m.act.edge();
        let o = self.next_ord();
        let info = &mut self.streams[stream as usize];
        info.landed = Some(o);
        let host = info.host;
        self.edge(edge);
        self.log(host, Ev::CtRead { stream, from: p });
    }

    /// The library wrote `n` bytes to `stream`, the first of `buf`.
    pub fn wrote_bytes(&mut self, stream: u64, buf: &[u8]) {
        let info = &mut self.streams[stream as usize];
        info.written += buf.len() as u64;
        info.wf.feed(buf);
        if info.rops_at_first_write.is_none() {
            info.rops_at_first_write = Some(info.rops);
        }
        let keep = 8usize.saturating_sub(info.head_out.len()).min(buf.len());
        info.head_out.extend_from_slice(&buf[..keep]);
        if !info.hpke
            && let Some(code) = info.wf.close_code
        {
            info.reason_sent = Some(Some(code));
        }
    }

    /// Registers the stream a hostile host (`h`) opened with raw sockets, carrying `plan`.
    pub fn rogue_stream(
        &mut self,
        h: u16,
        local: SocketAddr,
        peer: SocketAddr,
        plan: &Plan,
    ) -> u64 {
        let now_ns = self.now_us * 1000;
        let id = self.new_stream(h, true, local, peer, now_ns);
        self.hosts[h as usize].last_stream = None;
        let info = &mut self.streams[id as usize];
        info.hpke = false;
        info.rogue = Some(RogueInfo {
            attack: plan.attack,
            expect: plan.expect.clone(),
            valid: plan.valid,
        });
        id
    }

    /// The hostile connection on `stream` is over (its socket was dropped).
    pub fn rogue_done(&mut self, stream: u64) {
        let info = &mut self.streams[stream as usize];
        info.open = false;
        if info.rogue.as_ref().is_some_and(|r| r.attack.encrypted()) {
            self.edge("hostile-handshake");
        }
    }

    /// Encrypted `stream` finished writing a record carrying `payload` plaintext bytes
    /// (`close`: the final `Close` record). Checks the record against what its session sent:
    /// a record cannot carry frames that were never sent, and the `Close` record comes after
    /// every frame that was.
    pub fn record_written(&mut self, stream: u64, payload: u64, close: bool) {
        // A Close record carries the reason (a close body) or nothing. The oracle cannot see
        // a record's type: the record after all the session's frames, with a payload of a
        // close body's size, is its Close record.
        let enq = self.streams[stream as usize]
            .sess
            .map(|i| self.sessions[i].enq_bytes);
        let info = &mut self.streams[stream as usize];
        let reasoned = (wire::CLOSE_BODY as u64..=(wire::CLOSE_BODY + wire::CLOSE_TEXT_MAX) as u64)
            .contains(&payload);
        let (payload, close) = if !close && reasoned && enq == Some(info.plain_written) {
            info.reason_sent = Some(None);
            (0, true)
        } else {
            (payload, close)
        };
        info.plain_written += payload;
        info.close_record |= close;
        let plain = info.plain_written;
        let Some(idx) = info.sess else { return };
        let s = &self.sessions[idx];
        let (host, id, enq) = (s.host, s.id, s.enq_bytes);
        if plain > enq {
            self.violation(
                Some(host),
                Some(idx),
                format!(
                    "{} wrote records with {plain} plaintext bytes, but only {enq} bytes of messages were sent",
                    fmt_id(id)
                ),
            );
        } else if close && plain != enq {
            self.violation(
                Some(host),
                Some(idx),
                format!(
                    "{} wrote its Close record after {plain} plaintext bytes, but {enq} bytes of messages were sent before it",
                    fmt_id(id)
                ),
            );
        }
    }

    /// Decides the ciphertext fault (if any) for record `record` of `stream`: `len` is the
    /// record's length field (body and tag), `plain_before` the plaintext in the records
    /// before it, `splice_candidates` the records a splice could take. Records the mark.
    pub fn decide_ct(
        &mut self,
        io: &IoFaults,
        stream: u64,
        record: u64,
        len: u64,
        plain_before: u64,
        splice_candidates: usize,
    ) -> Option<CtAct> {
        let info = &self.streams[stream as usize];
        let (host, sender) = (info.host, info.sess?);
        if info.ct.is_some() {
            return None;
        }
        let close = len == wire::EMPTY_RECORD_LEN as u64;
        let t = self.now_us;
        let act = self.rec.decide_ct(io, stream, record, close, t)?;
        let payload = len.saturating_sub(wire::EMPTY_RECORD_LEN as u64);
        let good_plain = match act {
            CtAct::Reorder if close => {
                // A scripted reorder landed on the Close record: there is no next record.
                self.rec.unrecord_last();
                return None;
            }
            CtAct::Splice { .. } if splice_candidates == 0 => {
                self.rec.unrecord_last();
                return None;
            }
            CtAct::Duplicate => plain_before + payload,
            _ => plain_before,
        };
        let good_msgs = self.sessions[sender]
            .frame_ends
            .partition_point(|e| *e <= good_plain) as u64;
        self.streams[stream as usize].ct = Some(CtMark {
            act,
            record,
            t_us: t,
            sender,
            good_plain,
            good_msgs,
            bad_from: None,
            bad_end: None,
            eof_bad: false,
            cancelled: false,
        });
        self.log(
            host,
            Ev::Ct {
                stream,
                record,
                act,
            },
        );
        Some(act)
    }

    /// The bad record of `stream`'s ciphertext fault went on the wire: from stream offset
    /// `from`, ending at `end` once its header is known.
    pub fn ct_sent(&mut self, stream: u64, from: u64, end: Option<u64>) {
        if let Some(m) = self.streams[stream as usize].ct.as_mut() {
            m.bad_from.get_or_insert(from);
            if end.is_some() {
                m.bad_end = end;
            }
        }
    }

    /// `stream` shut down with its fault still pending: `eof` says a dropped record is now
    /// followed by the end of stream; otherwise a held record went out in order after all.
    pub fn ct_shutdown(&mut self, stream: u64, eof: bool) {
        if let Some(m) = self.streams[stream as usize].ct.as_mut()
            && m.bad_from.is_none()
        {
            if eof {
                m.eof_bad = true;
            } else {
                m.cancelled = true;
            }
        }
    }

    /// Records an injected socket fault.
    pub fn io_fault(&mut self, stream: u64, act: IoAct) {
        if act == IoAct::Reset && self.streams[stream as usize].reset_ord.is_none() {
            let o = self.next_ord();
            self.streams[stream as usize].reset_ord = Some(o);
            self.stream_error(stream, std::io::ErrorKind::ConnectionReset);
        }
        let (host, mid) = {
            let s = &self.streams[stream as usize];
            (s.host, s.wf.mid_frame() || s.rf.mid_frame())
        };
        match act {
            IoAct::Short { .. } => {}
            IoAct::Stall { .. } => self.edge("io-stall"),
            IoAct::Reset => {
                self.streams[stream as usize].reset = true;
                self.edge("io-reset");
                if mid {
                    self.edge("reset-mid-frame");
                }
            }
        }
        self.log(host, Ev::Io { stream, act });
    }

    // ---- sessions ------------------------------------------------------------------------

    /// `Opened` arrived on host `h`.
    pub fn on_opened(&mut self, h: u16, sref: &SessionRef, connected: bool) -> usize {
        let id = sref.id().get();
        let now = self.now_us;
        let stream = self.hosts[h as usize].last_stream.take();
        let idx = self.sessions.len();
        let inc = self.hosts[h as usize].inc;
        self.sessions.push(Sess {
            host: h,
            inc,
            id,
            connected,
            stream,
            opened_us: now,
            closed: 0,
            closed_us: None,
            reason: None,
            close_called_us: None,
            sent: 0,
            sent_at_close: None,
            enq_bytes: 0,
            recv_next: 0,
            sender: None,
            hb_fired: false,
            frame_ends: Vec::new(),
            recv_count: 0,
            cause_ord: None,
            cause: None,
            told: None,
        });
        if let Some(st) = stream {
            self.streams[st as usize].sess = Some(idx);
            if self.rogue_peer(st).is_some_and(|r| r.attack.encrypted()) {
                self.violation(
                    Some(h),
                    Some(idx),
                    format!(
                        "session {} opened for a hostile connection that never completed a handshake",
                        fmt_id(id)
                    ),
                );
            }
        } else {
            self.violation(
                Some(h),
                Some(idx),
                format!("session {} opened without a new stream", fmt_id(id)),
            );
        }
        self.log(
            h,
            Ev::Opened {
                id,
                connected,
                stream,
            },
        );
        let want_key = if connected {
            self.server_key
        } else {
            self.client_key
        };
        if sref.peer_key() != want_key {
            self.violation(
                Some(h),
                Some(idx),
                format!(
                    "session {} reports peer key {:?}, but its handshake proved {want_key:?}",
                    fmt_id(id),
                    sref.peer_key()
                ),
            );
        }
        let max = self.sc.side(h).service.max_sessions;
        self.check_id(h, idx, id);
        let host = &mut self.hosts[h as usize];
        host.by_id.insert(id, idx);
        host.open_now += 1;
        host.peak_open = host.peak_open.max(host.open_now);
        let open_now = host.open_now;
        if laxnet::SessionId::from_raw(id) != Some(sref.id()) {
            self.violation(
                Some(h),
                Some(idx),
                format!("SessionId::from_raw({id:#x}) does not give back the id it came from"),
            );
        }
        if open_now > max {
            self.violation(
                Some(h),
                Some(idx),
                format!("{open_now} sessions open, over max_sessions = {max}"),
            );
        }
        idx
    }

    /// The id horizon: a slot's ids advance by exactly one generation per issue (modulo the
    /// generations the service uses), so an id recurs only after its slot issued that many
    /// more ids — and never before.
    fn check_id(&mut self, h: u16, idx: usize, id: u32) {
        let bits = self.sc.side(h).service.id_generation_bits.clamp(1, 15);
        let generations = 1u64 << bits;
        let mask = (1u32 << bits) - 1;
        let (slot, generation) = (id & 0x1_FFFF, id >> 17);
        let host = &mut self.hosts[h as usize];
        let issued = *host.slot_issues.get(&slot).unwrap_or(&0);
        host.slot_issues.insert(slot, issued + 1);
        let previous = host.slot_latest.insert(slot, id);
        let earlier = host.issued_at.insert(id, issued);
        host.ids_seen.insert(id);
        let mut bad = Vec::new();
        if generation > mask {
            bad.push(format!(
                "id {} carries generation {generation}, outside the {generations} generations the service uses",
                fmt_id(id)
            ));
        }
        if let Some(prev) = previous {
            self.edge("slot-reused");
            let want = ((prev >> 17) + 1) & mask;
            if generation != want {
                bad.push(format!(
                    "id {} follows {} on its slot: the generation must advance by exactly one (to {want})",
                    fmt_id(id),
                    fmt_id(prev)
                ));
            }
        }
        if let Some(at) = earlier {
            if issued - at < generations {
                bad.push(format!(
                    "id {} reissued within the horizon: its slot issued {} ids since, the horizon is {generations}",
                    fmt_id(id),
                    issued - at
                ));
            } else {
                self.edge("id-recurred");
            }
        }
        for what in bad {
            self.violation(Some(h), Some(idx), what);
        }
    }

    /// `Closed` arrived on host `h`. While the host crashes, the events are held and
    /// processed in id order afterwards ([`State::flush_crash`]): tokio drops a crashed
    /// host's tasks in an order that depends on process-global task ids.
    pub fn on_closed(&mut self, h: u16, id: u32, reason: &CloseReason) {
        if self.hosts[h as usize].down {
            self.crash_closed.push((h, id, reason.clone()));
            return;
        }
        self.closed_now(h, id, reason);
    }

    /// Processes the `Closed` events held during a crash, in id order.
    pub fn flush_crash(&mut self) {
        let mut held = std::mem::take(&mut self.crash_closed);
        held.sort_by_key(|(h, id, _)| (*h, *id));
        for (h, id, reason) in held {
            self.closed_now(h, id, &reason);
        }
    }

    fn closed_now(&mut self, h: u16, id: u32, reason: &CloseReason) {
        self.log(
            h,
            Ev::Closed {
                id,
                reason: reason.to_string(),
            },
        );
        let Some(&idx) = self.hosts[h as usize].by_id.get(&id) else {
            self.violation(
                Some(h),
                None,
                format!("Closed for unknown session {}", fmt_id(id)),
            );
            return;
        };
        let now = self.now_us;
        let s = &mut self.sessions[idx];
        s.closed += 1;
        if s.closed > 1 {
            let n = s.closed;
            self.violation(
                Some(h),
                Some(idx),
                format!("Closed published {n} times for {}", fmt_id(id)),
            );
            return;
        }
        s.closed_us = Some(now);
        s.reason = Some(reason.clone());
        let (stream, enq) = (s.stream, s.enq_bytes);
        self.hosts[h as usize].open_now -= 1;
        match reason {
            CloseReason::Heartbeat => {}
            CloseReason::Aborted => self.edge("aborted"),
            CloseReason::Idle => self.edge("idle-close"),
            CloseReason::Protocol(laxnet::ProtocolViolation::TruncatedFrame) => {
                self.edge("truncated-frame")
            }
            _ => {}
        }
        self.check_reason(h, idx, reason);
        if let Some(st) = stream {
            self.check_lossless(h, idx, st, enq, reason);
            self.check_crypto_close(h, idx, st, reason);
            let (written, peer) = {
                let info = &self.streams[st as usize];
                (info.app_written(), info.peer)
            };
            if enq > written {
                self.edge("destroy-with-queued-data");
            }
            if let Some(p) = peer {
                let ph = self.streams[p as usize].host;
                if self.hosts[ph as usize].down {
                    self.edge("peer-crash");
                }
            }
        }
        let keep = self.sc.workload.keep_refs;
        let host = &mut self.hosts[h as usize];
        if let Some(l) = host.live.remove(&id)
            && keep > 0
        {
            if host.kept.len() >= keep {
                host.kept.pop_front();
            }
            host.kept.push_back(Kept {
                sref: l.sref,
                sess: idx,
            });
        }
    }

    /// A clean ending lost nothing: every message the session sent was written (a close whose
    /// linger ran out with bytes unsent is `LingerExpired`, never clean).
    fn check_lossless(&mut self, h: u16, idx: usize, st: u64, enq: u64, reason: &CloseReason) {
        if !reason.is_clean() {
            return;
        }
        let info = &self.streams[st as usize];
        let app = if info.hpke {
            info.plain_written
        } else if info.connected {
            info.written
        } else {
            info.written.saturating_sub(wire::OPEN_FRAME as u64)
        };
        if app < enq {
            let id = self.sessions[idx].id;
            self.violation(
                Some(h),
                Some(idx),
                format!(
                    "{} closed cleanly (\"{reason}\") with {} of its {enq} bytes of messages unsent",
                    fmt_id(id),
                    enq - app
                ),
            );
        } else {
            self.edge("clean-close-lossless");
        }
    }

    /// Records `cause` for session `idx` unless it already has one (the first cause wins).
    pub fn session_cause(&mut self, idx: usize, cause: Cause) {
        if self.sessions[idx].cause.is_none() {
            let (o, t) = (self.next_ord(), self.now_us);
            self.sessions[idx].cause = Some((o, cause, t));
        }
    }

    /// The first cause of session `idx`: its own or its stream's, whichever came first.
    pub fn first_cause(&self, idx: usize) -> Option<(u64, Cause, u64)> {
        let s = &self.sessions[idx];
        let stream = s
            .stream
            .and_then(|st| self.streams[st as usize].cause.clone());
        match (s.cause.clone(), stream) {
            (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// A sender or `ready()` waiter of session `idx` was told it is closed for `reason`.
    /// Everyone must be told the same reason, and `Closed` must carry it.
    pub fn told(&mut self, h: u16, idx: usize, reason: &CloseReason) {
        let s = &mut self.sessions[idx];
        match &s.told {
            None => s.told = Some(reason.clone()),
            Some(t) if t == reason => {}
            Some(t) => {
                let (t, id) = (t.clone(), s.id);
                self.violation(
                    Some(h),
                    Some(idx),
                    format!(
                        "{} told one sender it closed for \"{t}\" and another for \"{reason}\"",
                        fmt_id(id)
                    ),
                );
            }
        }
    }

    /// The reason a session reports is the reason it was closed for: the one its first cause
    /// implies ([`Cause::allows`]), and the one its senders were told. A ciphertext fault on
    /// the stream it reads is checked by [`State::check_crypto_close`] instead; a crash may
    /// cut short a close that had started (`Aborted`); the idle sweep closes with no cause
    /// the oracle can see (`Idle`, only where an idle timeout is configured).
    fn check_reason(&mut self, h: u16, idx: usize, reason: &CloseReason) {
        let s = &self.sessions[idx];
        let id = s.id;
        let crashed = matches!(s.cause, Some((_, Cause::Crash, _)))
            || s.stream.is_some_and(|st| self.streams[st as usize].crashed);
        if crashed && *reason == CloseReason::Aborted {
            return;
        }
        // A clean close that lost bytes (its linger ran out, or its stream failed) is not
        // clean in the end, whatever its senders were told.
        let linger_after_clean = |t: &CloseReason| t.is_clean() && !reason.is_clean();
        if let Some(t) = s.told.clone()
            && t != *reason
            && !linger_after_clean(&t)
        {
            self.violation(
                Some(h),
                Some(idx),
                format!(
                    "{} closed with \"{reason}\" but its senders were told \"{t}\"",
                    fmt_id(id)
                ),
            );
            return;
        }
        let ct_fault = s
            .stream
            .and_then(|st| self.streams[st as usize].peer)
            .is_some_and(|p| {
                self.streams[p as usize]
                    .ct
                    .as_ref()
                    .is_some_and(|m| !m.cancelled)
            });
        if ct_fault {
            return;
        }
        let idle = self.sc.side(h).service.idle_timeout_ms.is_some();
        if idle && *reason == CloseReason::Idle {
            return;
        }
        // A clean close whose stream then failed with bytes unsent reports the failure.
        let io_error = s.stream.and_then(|st| self.streams[st as usize].io_error);
        if io_error.is_some_and(|k| Cause::Io(k).allows(reason))
            && self.first_cause(idx).is_some_and(|(_, c, _)| c.clean())
        {
            self.edge("reason-checked");
            return;
        }
        // `LingerExpired` only once the linger time has passed since the close began.
        if let CloseReason::LingerExpired { .. } = reason
            && let Some((_, _, t)) = self.first_cause(idx)
        {
            let linger_us = self.sc.side(h).service.linger_ms * 1000;
            if self.now_us < t + linger_us {
                let what = format!(
                    "{} closed with \"{reason}\" {:.3}ms after its close began, before its linger of {}ms ran out",
                    fmt_id(id),
                    (self.now_us - t) as f64 / 1000.0,
                    linger_us / 1000
                );
                self.violation(Some(h), Some(idx), what);
                return;
            }
        }
        match self.first_cause(idx) {
            Some((_, cause, t)) if !cause.allows(reason) => {
                let what = format!(
                    "{} closed with \"{reason}\", but the first thing that closed it was {cause:?} at {:.3}ms, which means \"{}\"",
                    fmt_id(id),
                    t as f64 / 1000.0,
                    cause.expected()
                );
                self.violation(Some(h), Some(idx), what);
            }
            Some((_, Cause::Violation(_), _)) => {
                self.edge("reason-checked");
                self.edge("hostile-frame-rejected");
                let valid = self.sess_rogue(idx).map_or(0, |r| r.valid);
                let s = &self.sessions[idx];
                if s.recv_count != valid {
                    let what = format!(
                        "{} delivered {} messages from a hostile peer that sent {valid} valid ones before its violation",
                        fmt_id(id),
                        s.recv_count
                    );
                    self.violation(Some(h), Some(idx), what);
                }
            }
            Some(_) => self.edge("reason-checked"),
            None => self.violation(
                Some(h),
                Some(idx),
                format!(
                    "{} closed with \"{reason}\" although nothing the oracle saw gave it a reason to",
                    fmt_id(id)
                ),
            ),
        }
    }

    /// Host `h` is about to crash: its open sessions' tasks will be dropped, and the streams
    /// of this incarnation (and their peers) lose their ends.
    pub fn crash_causes(&mut self, h: u16) {
        let live: Vec<usize> = self.hosts[h as usize]
            .live
            .values()
            .map(|l| l.sess)
            .collect();
        for idx in live {
            self.session_cause(idx, Cause::Crash);
        }
        let inc = self.hosts[h as usize].inc;
        for i in 0..self.streams.len() {
            let s = &self.streams[i];
            if s.host == h && s.inc == inc && s.open {
                let peer = s.peer;
                self.streams[i].crashed = true;
                if let Some(p) = peer {
                    self.streams[p as usize].crashed = true;
                }
            }
        }
    }

    /// Invariant (a) of ciphertext faults (see [`State::check_ciphertext_delivery`] for (b)):
    /// a session that read the record a ciphertext fault spoiled closes with
    /// `CloseReason::Crypto(_)`.
    ///
    /// "Read" means the reading stream handed the library the whole of the first bad record
    /// (see [`CtMark`]), or the end of stream after part of it or after a dropped record: the
    /// library opens every complete record in the same poll, and an end of stream without
    /// the peer's `Close` record is `Crypto(Truncated)`.
    ///
    /// The exception: the session already had a reason to close before that read. The
    /// first reason wins, and only clean reasons (`Local`, `Shutdown`) keep a session
    /// reading, so the oracle excuses a session whose application called `close()`, whose
    /// host started shutting down, or whose sends failed with `Closed` before the read
    /// (ordered by [`State::ord`], not time), or whose socket took an injected reset. The
    /// idle sweep closes without a visible cause, so `Idle` is excused too. Invariant (b)
    /// holds in every case.
    pub fn check_crypto_close(&mut self, h: u16, idx: usize, st: u64, reason: &CloseReason) {
        let info = &self.streams[st as usize];
        let Some(landed) = info.landed else { return };
        if matches!(reason, CloseReason::Crypto(_)) {
            self.edge("crypto-close");
            return;
        }
        let s = &self.sessions[idx];
        let excused = s.cause_ord.is_some_and(|c| c < landed)
            || info.reset_ord.is_some_and(|r| r < landed)
            || *reason == CloseReason::Idle;
        if excused {
            return;
        }
        let what = match info.peer.and_then(|p| self.streams[p as usize].ct.as_ref()) {
            Some(m) => format!("{:?} of record {}", m.act, m.record),
            None => "?".into(),
        };
        let id = s.id;
        self.violation(
            Some(h),
            Some(idx),
            format!(
                "{} read a record spoiled by a ciphertext fault ({what}) but closed with {reason}, not Crypto",
                fmt_id(id)
            ),
        );
    }

    /// Invariant (b) of ciphertext faults: once the stream feeding session `idx` took a
    /// ciphertext fault, the session delivers only messages of its peer wholly inside the
    /// intact records before the first bad one (see [`CtMark`]): from the right sender,
    /// with a seq below `good_msgs`, and no more than `good_msgs` of them. This holds from
    /// the moment the fault is decided, before any of its bytes are sent: messages beyond
    /// `good_msgs` end in records that reach the wire only at or after the bad one.
    pub fn check_ciphertext_delivery(&mut self, idx: usize, b: &Body) -> Option<String> {
        let s = &self.sessions[idx];
        let p = self.streams[s.stream? as usize].peer?;
        let m = self.streams[p as usize].ct.as_ref()?;
        if m.cancelled {
            return None;
        }
        let snd = &self.sessions[m.sender];
        let from_sender = (snd.host, snd.inc, snd.id) == (b.host, b.inc, b.sid);
        if from_sender && b.seq < m.good_msgs && s.recv_count < m.good_msgs {
            return None;
        }
        Some(format!(
            "{} delivered seq {} from {}/{} {} after a ciphertext fault ({:?} of record {}) on its peer's stream: only the first {} messages of {} lie in the intact records before it{}",
            fmt_id(s.id),
            b.seq,
            b.host,
            b.inc,
            fmt_id(b.sid),
            m.act,
            m.record,
            m.good_msgs,
            fmt_id(snd.id),
            if s.recv_count >= m.good_msgs {
                format!(" (this is delivery number {})", s.recv_count + 1)
            } else {
                String::new()
            }
        ))
    }

    /// A message arrived on session `id` of host `h`.
    pub fn on_recv(&mut self, h: u16, id: u32, b: &Body) {
        self.log(
            h,
            Ev::Recv {
                id,
                from: b.host,
                from_id: b.sid,
                seq: b.seq,
            },
        );
        self.delivered += 1;
        let Some(&idx) = self.hosts[h as usize].by_id.get(&id) else {
            self.violation(
                Some(h),
                None,
                format!("message delivered to unknown session {}", fmt_id(id)),
            );
            return;
        };
        let me = (b.host, b.inc, b.sid);
        if self.sess_rogue(idx).is_some() {
            self.edge("hostile-boundary-frame");
        }
        let s = &self.sessions[idx];
        let mut bad = Vec::new();
        if s.closed > 0 {
            bad.push(format!(
                "message seq {} delivered to {} after its Closed",
                b.seq,
                fmt_id(id)
            ));
        }
        match s.sender {
            None => {
                // The first message: it must come from the session at the other end of this
                // session's connection.
                if let Some(peer) = s
                    .stream
                    .and_then(|st| self.streams[st as usize].peer)
                    .and_then(|p| self.streams[p as usize].sess)
                {
                    let p = &self.sessions[peer];
                    if (p.host, p.inc, p.id) != me {
                        bad.push(format!(
                            "message from {}/{} {} delivered to {}, whose peer is {}/{} {}",
                            b.host,
                            b.inc,
                            fmt_id(b.sid),
                            fmt_id(id),
                            p.host,
                            p.inc,
                            fmt_id(p.id)
                        ));
                    }
                }
            }
            Some(prev) if prev != me => bad.push(format!(
                "message from {}/{} {} delivered to {}, which was receiving from {}/{} {}",
                b.host,
                b.inc,
                fmt_id(b.sid),
                fmt_id(id),
                prev.0,
                prev.1,
                fmt_id(prev.2)
            )),
            Some(_) => {}
        }
        if b.seq != s.recv_next {
            bad.push(format!(
                "{} expected seq {} but got {} (gap or reorder)",
                fmt_id(id),
                s.recv_next,
                b.seq
            ));
        }
        if !msg::pattern_ok(b.seq, &b.payload) {
            bad.push(format!(
                "corrupt payload in seq {} on {}",
                b.seq,
                fmt_id(id)
            ));
        }
        if let Some(v) = self.check_ciphertext_delivery(idx, b) {
            bad.push(v);
        }
        let s = &mut self.sessions[idx];
        s.sender.get_or_insert(me);
        s.recv_next = b.seq + 1;
        s.recv_count += 1;
        for what in bad {
            self.violation(Some(h), Some(idx), what);
        }
    }

    /// Sends `n` messages on live session `id` of host `h`; the last carries `flags`. Stops at
    /// the first send that fails with anything but a full queue (sends that meet a full queue
    /// are counted, and the burst goes on).
    pub fn send_burst(&mut self, h: u16, sref: &SessionRef, n: u64, flags: u8) -> Burst {
        let mut burst = Burst::default();
        let Some(&idx) = self.hosts[h as usize].by_id.get(&sref.id().get()) else {
            burst.stopped = true;
            return burst;
        };
        for i in 0..n {
            let f = if i + 1 == n { flags } else { 0 };
            match self.send_one(h, idx, sref, f) {
                Sent::Ok => {}
                Sent::QueueFull => burst.queue_full = true,
                Sent::Failed => {
                    burst.stopped = true;
                    break;
                }
            }
        }
        burst
    }

    fn send_one(&mut self, h: u16, idx: usize, sref: &SessionRef, flags: u8) -> Sent {
        let w = &self.sc.workload;
        let (large, large_payload, payload, bulk_mix, too_large) =
            (w.large, w.large_payload, w.payload, w.bulk_mix, w.too_large);
        let max_frame = self.sc.side(h).service.max_frame;
        let host = &mut self.hosts[h as usize];
        let Some(svc) = host.svc.clone() else {
            return Sent::Failed;
        };
        let len = if host.rng.chance(too_large) {
            // At the frame limit: exactly at it (accepted), or a byte or two over (refused).
            (max_frame.saturating_sub(msg::FRAME_FIXED) + host.rng.range(0, 2) as usize) as u64
        } else if host.rng.chance(large) {
            host.rng.range(large_payload[0], large_payload[1])
        } else {
            host.rng.range(payload[0], payload[1])
        } as usize;
        let bulk = host.rng.chance(bulk_mix);
        let s = &self.sessions[idx];
        let body = Body {
            host: h,
            inc: host.inc,
            sid: s.id,
            seq: s.sent,
            flags,
            payload: msg::pattern(s.sent, len),
        };
        let now = svc.now();
        let res = if bulk {
            sref.send(&Bulk(body))
        } else {
            sref.send(&Data(body))
        };
        self.after_send(h, idx, res, now.since_origin(), len)
    }

    /// Accounts for one send's result and checks the heartbeat rule.
    fn after_send(
        &mut self,
        h: u16,
        idx: usize,
        res: Result<(), SendError>,
        now: Duration,
        len: usize,
    ) -> Sent {
        let hb = self.sc.side(h).service.heartbeat();
        let s = &self.sessions[idx];
        let (id, hb_fired) = (s.id, s.hb_fired);
        let silent = s.stream.map(|st| {
            let last = Duration::from_nanos(self.streams[st as usize].last_read_ns);
            now.saturating_sub(last)
        });
        // The frame's length field: message id and body.
        let frame_field = msg::FRAME_FIXED + len;
        let max_frame = self.sc.side(h).service.max_frame;
        match res {
            Err(SendError::TooLarge { len: l, max }) => {
                self.log(
                    h,
                    Ev::SendErr {
                        id,
                        err: format!("too large ({l} > {max})"),
                    },
                );
                if l != frame_field || max != max_frame || frame_field <= max_frame {
                    self.violation(
                        Some(h),
                        Some(idx),
                        format!(
                            "{} refused a message of {frame_field} bytes as too large ({l} > {max}) with max_frame = {max_frame}",
                            fmt_id(id)
                        ),
                    );
                } else {
                    self.edge("send-too-large");
                }
                // Nothing was queued: the burst goes on, and what follows must arrive intact.
                Sent::Ok
            }
            Ok(()) => {
                if frame_field == max_frame {
                    self.edge("max-frame-sent");
                }
                if frame_field > max_frame {
                    self.violation(
                        Some(h),
                        Some(idx),
                        format!(
                            "{} accepted a message of {frame_field} bytes, over max_frame = {max_frame}",
                            fmt_id(id)
                        ),
                    );
                }
                let seq = self.sessions[idx].sent;
                let s = &mut self.sessions[idx];
                s.sent += 1;
                s.enq_bytes += msg::frame_len(len);
                let end = s.enq_bytes;
                s.frame_ends.push(end);
                self.log(
                    h,
                    Ev::Send {
                        id,
                        seq,
                        len: len as u32,
                    },
                );
                if let (Some(hb), Some(silent)) = (hb, silent)
                    && silent > hb
                {
                    self.violation(
                        Some(h),
                        Some(idx),
                        format!(
                            "send on {} succeeded after {silent:?} of silence, past the heartbeat timeout {hb:?}",
                            fmt_id(id)
                        ),
                    );
                }
                Sent::Ok
            }
            Err(e) => {
                let sent = if matches!(e, SendError::QueueFull { .. }) {
                    Sent::QueueFull
                } else {
                    Sent::Failed
                };
                if let SendError::Closed(r) = &e {
                    self.cause(idx);
                    if *r == CloseReason::Heartbeat {
                        self.session_cause(idx, Cause::Heartbeat);
                    }
                    self.told(h, idx, r);
                }
                self.log(
                    h,
                    Ev::SendErr {
                        id,
                        err: e.to_string(),
                    },
                );
                match e {
                    SendError::QueueFull { queued, limit } => {
                        self.edge("send-queue-overflow");
                        // The limit is a high-water mark: a send is refused only over it, and
                        // a queue holds at most the limit plus one frame (with its record
                        // overhead; bounded here, generously, by twice the frame).
                        let one_frame = 2 * (self.sc.side(h).service.max_frame + 8);
                        if queued <= limit {
                            self.violation(
                                Some(h),
                                Some(idx),
                                format!("send refused with {queued} bytes queued, within its limit {limit}"),
                            );
                        } else if queued > limit + one_frame {
                            self.violation(
                                Some(h),
                                Some(idx),
                                format!(
                                    "send queue holds {queued} bytes, over its limit {limit} by more than one frame (at most {one_frame} bytes)"
                                ),
                            );
                        }
                    }
                    SendError::Closed(CloseReason::Heartbeat) if !hb_fired => {
                        self.sessions[idx].hb_fired = true;
                        self.edge("heartbeat-expiry");
                        match (hb, silent) {
                            (Some(hb), Some(silent)) if silent <= hb => self.violation(
                                Some(h),
                                Some(idx),
                                format!(
                                    "{} closed by heartbeat after only {silent:?} of silence (timeout {hb:?})",
                                    fmt_id(id)
                                ),
                            ),
                            (None, _) => self.violation(
                                Some(h),
                                Some(idx),
                                format!("{} closed by heartbeat with no heartbeat configured", fmt_id(id)),
                            ),
                            _ => {}
                        }
                    }
                    _ => {}
                }
                sent
            }
        }
    }

    /// The workload closes live session `id` on host `h`.
    pub fn close(&mut self, h: u16, id: u32, how: &'static str) {
        let Some(l) = self.hosts[h as usize].live.get(&id) else {
            return;
        };
        let (sref, idx) = (l.sref.clone(), l.sess);
        let was_open = sref.is_open();
        // On a session already closing, close() changes nothing: senders keep being told the
        // reason of the first close.
        let before = (!was_open).then(|| closed_as(h, &sref));
        sref.close();
        self.log(h, Ev::Close { id, how });
        self.cause(idx);
        if was_open {
            self.session_cause(idx, Cause::CloseCalled);
        }
        if let Some(before) = before {
            let after = closed_as(h, &sref);
            if after != before {
                self.violation(
                    Some(h),
                    Some(idx),
                    format!(
                        "close() on {}, which was closing, changed what senders are told from {before:?} to {after:?}",
                        fmt_id(id)
                    ),
                );
            }
        }
        let now = self.now_us;
        let s = &mut self.sessions[idx];
        if was_open && s.close_called_us.is_none() {
            s.close_called_us = Some(now);
            s.sent_at_close = Some(s.sent);
        }
    }

    /// Probes the kept refs of host `h`: a closed session's ref must never send again, and
    /// its id must never resolve again.
    pub fn probe(&mut self, h: u16) {
        let Some(svc) = self.hosts[h as usize].svc.clone() else {
            return;
        };
        self.check_accounting(h);
        let pool = svc.status().pool;
        self.check_pool(h, &svc.config().pool, &pool, false);
        let kept: Vec<(SessionRef, usize)> = self.hosts[h as usize]
            .kept
            .iter()
            .map(|k| (k.sref.clone(), k.sess))
            .collect();
        for (sref, idx) in kept {
            let id = sref.id().get();
            let s = &self.sessions[idx];
            if s.closed == 0 {
                continue;
            }
            let body = Body {
                host: h,
                inc: s.inc,
                sid: id,
                seq: u64::MAX,
                flags: 0,
                payload: Vec::new(),
            };
            let res = sref.send(&Data(body));
            let slot = id & 0x1_FFFF;
            let reused = self.hosts[h as usize]
                .slot_latest
                .get(&slot)
                .is_some_and(|latest| *latest != id);
            let res_s = match &res {
                Ok(()) => "ok".to_string(),
                Err(e) => e.to_string(),
            };
            self.log(h, Ev::Probe { id, res: res_s });
            match res {
                Ok(()) => self.violation(
                    Some(h),
                    Some(idx),
                    format!("send on the ref of closed session {} succeeded", fmt_id(id)),
                ),
                Err(SendError::Stale) if reused => self.edge("stale-ref-send"),
                Err(SendError::Stale) | Err(SendError::Closed(_)) => {}
                Err(e) => self.violation(
                    Some(h),
                    Some(idx),
                    format!(
                        "send on the ref of closed session {} failed with {e}, not Stale/Closed",
                        fmt_id(id)
                    ),
                ),
            }
            // An id that came round again at the horizon resolves to its new session.
            let recurred = self.hosts[h as usize]
                .by_id
                .get(&id)
                .is_some_and(|&now| now != idx && self.sessions[now].closed == 0);
            if let Some(r) = svc.acquire(sref.id()).filter(|_| !recurred) {
                let same = r.id() == sref.id();
                self.violation(
                    Some(h),
                    Some(idx),
                    format!(
                        "acquire({}) returned a live session after it was destroyed{}",
                        fmt_id(id),
                        if same { "" } else { " (a different id!)" }
                    ),
                );
            }
        }
    }

    /// Host `h` crashed: forget its incarnation's sessions. Returns the handles to drop
    /// outside the lock.
    pub fn crashed(&mut self, h: u16) -> Handles {
        let host = &mut self.hosts[h as usize];
        let svc = host.svc.take();
        let mut refs: Vec<SessionRef> = std::mem::take(&mut host.live)
            .into_values()
            .map(|l| l.sref)
            .collect();
        refs.extend(std::mem::take(&mut host.kept).into_iter().map(|k| k.sref));
        host.by_id.clear();
        host.ids_seen.clear();
        host.slot_latest.clear();
        host.issued_at.clear();
        host.slot_issues.clear();
        host.open_now = 0;
        host.peak_open = 0;
        host.connecting = 0;
        host.last_stream = None;
        host.done = false;
        host.draining = false;
        host.paused = false;
        host.late_sub = None;
        host.late_done = false;
        host.late_expected = 0;
        host.late_got = 0;
        // The crash dropped the tasks waiting in `ready()` with everything else.
        host.waiters = 0;
        Handles(svc, refs)
    }

    /// Takes every service and ref out of the state (they reference it through the runtime:
    /// a cycle). Drop the result outside the lock.
    pub fn release_handles(&mut self) -> Vec<Handles> {
        self.hosts
            .iter_mut()
            .map(|host| {
                let svc = host.svc.take();
                let mut refs: Vec<SessionRef> = std::mem::take(&mut host.live)
                    .into_values()
                    .map(|l| l.sref)
                    .collect();
                refs.extend(std::mem::take(&mut host.kept).into_iter().map(|k| k.sref));
                Handles(svc, refs)
            })
            .collect()
    }

    /// A task that waited in `ready()` after `QueueFull` on session `id` of incarnation `inc`
    /// of host `h` got its answer: room, or the session's end (`Closed` / `Stale`).
    pub fn on_ready(&mut self, h: u16, inc: u16, id: u32, res: Result<(), SendError>) {
        let host = &mut self.hosts[h as usize];
        if host.inc != inc || host.down {
            return;
        }
        host.waiters = host.waiters.saturating_sub(1);
        if let Some(l) = host.live.get_mut(&id) {
            l.waiting = false;
        }
        let text = match &res {
            Ok(()) => "room".to_string(),
            Err(e) => e.to_string(),
        };
        self.log(h, Ev::Ready { id, res: text });
        let sess = self.hosts[h as usize].by_id.get(&id).copied();
        if let (Some(idx), Err(SendError::Closed(r))) = (sess, &res) {
            self.told(h, idx, r);
        }
        match res {
            Ok(()) => self.edge("ready-room"),
            Err(SendError::Closed(_) | SendError::Stale) => self.edge("ready-closed"),
            Err(e) => {
                let sess = self.hosts[h as usize].by_id.get(&id).copied();
                self.violation(
                    Some(h),
                    sess,
                    format!("ready() on {} failed with {e}", fmt_id(id)),
                )
            }
        }
    }

    /// The oracle's side of `ready()`, checked at every simulator step: a task waiting in
    /// `ready()` after `QueueFull` must have its answer within a tick (the oracle allows two,
    /// one for its own step granularity) of its session leaving `Open` (the close wakes
    /// waiters at once: they get `Closed`, not only at the destroy) or of its queue reaching
    /// the low-water mark (half the send-queue limit; the write that got it there wakes them).
    /// A lost or late wake-up shows here.
    pub fn check_waiters(&mut self) {
        let now = self.now_us;
        let margin = 2_000; // µs: two ticks
        let mut late = Vec::new();
        for h in 0..self.hosts.len() {
            let host = &self.hosts[h];
            if host.waiters == 0 || host.down || host.svc.is_none() {
                continue;
            }
            let low_water = self.sc.side(h as u16).service.send_queue_limit / 2;
            for (id, l) in self.hosts[h].live.iter_mut() {
                if !l.waiting {
                    continue;
                }
                let open = l.sref.is_open();
                let queued = l.sref.queued_bytes();
                let why = if !open {
                    Some("it left Open")
                } else if queued <= low_water {
                    Some("its queue reached the low-water mark")
                } else {
                    None
                };
                match why {
                    None => l.room_since_us = None,
                    Some(why) => {
                        let since = *l.room_since_us.get_or_insert(now);
                        if now.saturating_sub(since) >= margin && !l.lost_reported {
                            l.lost_reported = true;
                            late.push((h as u16, *id, l.sess, why, since, queued));
                        }
                    }
                }
            }
        }
        for (h, id, sess, why, since, queued) in late {
            self.violation(
                Some(h),
                Some(sess),
                format!(
                    "a task still waits in ready() on {} although {why} at {:.3}ms ({queued} bytes queued): lost or late wake-up",
                    fmt_id(id),
                    since as f64 / 1000.0
                ),
            );
        }
    }

    // ---- the end of the run --------------------------------------------------------------

    /// Post-run checks over every session: exactly one `Closed`, and no loss after a
    /// graceful close. Also counts the edges that need both ends.
    pub fn final_checks(&mut self) {
        for idx in 0..self.sessions.len() {
            let s = self.sessions[idx].clone();
            if s.closed == 0 {
                let h = s.host;
                self.violation_at(
                    s.opened_us,
                    Some(h),
                    Some(idx),
                    format!("session {} never got a Closed event", fmt_id(s.id)),
                );
                continue;
            }
            let Some(peer) = s
                .stream
                .and_then(|st| self.streams[st as usize].peer)
                .map(|p| (p, &self.streams[p as usize]))
                .and_then(|(p, ps)| ps.sess.map(|x| (p, x)))
            else {
                continue;
            };
            let (pstream, pidx) = peer;
            let r = self.sessions[pidx].clone();
            if s.close_called_us.is_some() && r.close_called_us.is_some() && s.connected {
                self.edge("both-ends-close");
            }
            self.check_pair(idx, pidx, pstream);
        }
    }

    /// Session `idx` closed within its linger time: from its first cause (when its close
    /// sequence started) to `Closed`, with two ticks of slack for the oracle's view.
    fn in_time(&self, idx: usize) -> bool {
        let s = &self.sessions[idx];
        let linger = self.sc.side(s.host).service.linger_ms * 1000;
        match (self.first_cause(idx), s.closed_us) {
            (Some((_, _, start)), Some(closed)) => closed.saturating_sub(start) + 2_000 < linger,
            _ => false,
        }
    }

    /// The connection between sessions `a` and `b` took no fault that may lose data or cut
    /// it short: no injected reset, no ciphertext fault, no crash, no failed read or write.
    fn pair_unharmed(&self, a: usize, b: usize) -> bool {
        [a, b].iter().all(|&x| {
            let Some(st) = self.sessions[x].stream else {
                return false;
            };
            let info = &self.streams[st as usize];
            !info.reset
                && !info.crashed
                && info.ct.as_ref().is_none_or(|m| m.cancelled)
                && !matches!(info.cause, Some((_, Cause::Io(_), _)))
        })
    }

    /// Both directions of a graceful end, for session `idx` and its peer `pidx` (reading
    /// `pstream`):
    ///
    /// - flush: what either side queued before it learned of the end arrives at the other,
    ///   when both ended cleanly (`Local`, `PeerClosed`, `Shutdown`) within their linger time
    ///   and nothing harmed the connection;
    /// - a clean end looks clean: when `idx` ended cleanly in time, its peer, if it learned of
    ///   the end from the end of the stream, saw it at a frame boundary and, encrypted, after
    ///   the authenticated `Close` record.
    fn check_pair(&mut self, idx: usize, pidx: usize, _pstream: u64) {
        let (s, r) = (self.sessions[idx].clone(), self.sessions[pidx].clone());
        if !self.pair_unharmed(idx, pidx) {
            return;
        }
        let clean = |x: &Sess| x.reason.as_ref().is_some_and(|r| r.is_clean());
        let s_ok = clean(&s) && self.in_time(idx);
        if !s_ok {
            return;
        }
        if let Some((_, cause @ Cause::Eof { .. }, _)) = self.first_cause(pidx) {
            self.edge("clean-end-checked");
            if !cause.clean() {
                self.violation_at(
                    r.closed_us.unwrap_or(self.now_us),
                    Some(r.host),
                    Some(pidx),
                    format!(
                        "{} on {} saw its peer's end as {cause:?} although the peer ({} on {}) closed cleanly in time ({})",
                        fmt_id(r.id),
                        self.hosts[r.host as usize].name,
                        fmt_id(s.id),
                        self.hosts[s.host as usize].name,
                        s.reason.as_ref().map_or(String::new(), |x| x.to_string()),
                    ),
                );
            }
        }
        if !(clean(&r) && self.in_time(pidx)) {
            return;
        }
        self.edge("graceful-close-checked");
        if r.recv_next != s.sent {
            let closed = s.closed_us.unwrap_or(self.now_us);
            self.violation_at(
                closed,
                Some(s.host),
                Some(idx),
                format!(
                    "graceful close of {} lost messages: {} sent before it learned of the end ({}), the peer ({} on {}, {}) received {}",
                    fmt_id(s.id),
                    s.sent,
                    s.reason.as_ref().map_or(String::new(), |x| x.to_string()),
                    fmt_id(r.id),
                    self.hosts[r.host as usize].name,
                    r.reason.as_ref().map_or(String::new(), |x| x.to_string()),
                    r.recv_next
                ),
            );
        }
    }

    /// Bytes the library counts for `stream`'s session as sent and received: everything on
    /// "bits"; on "bits-hpke" everything after the handshake messages this side wrote (its
    /// hello, and a client's Finished) and read.
    fn counted_bytes(&self, stream: u64) -> (u64, u64) {
        let info = &self.streams[stream as usize];
        if !info.hpke {
            // A "bits" server's Open frame is read by `connect`, before the session exists.
            let open = wire::OPEN_FRAME as u64;
            return if info.connected {
                (info.written, info.read_total.saturating_sub(open))
            } else {
                (info.written.saturating_sub(open), info.read_total)
            };
        }
        let (out, inn) = if info.connected {
            (self.client_out(), wire::SERVER_HANDSHAKE as u64)
        } else {
            (wire::SERVER_HANDSHAKE as u64, self.client_out())
        };
        (
            info.written.saturating_sub(out),
            info.read_total.saturating_sub(inn),
        )
    }

    /// The library's accounting of live sessions against what their sockets moved: bytes
    /// sent and received per session, and the bytes queued (the send-queue limit's measure)
    /// against what was sent and not yet written. Checked between the library's polls, when
    /// its counters are settled; partial writes must be counted as written, no more.
    pub fn check_accounting(&mut self, h: u16) {
        let Some(svc) = self.hosts[h as usize].svc.clone() else {
            return;
        };
        let mut bad = Vec::new();
        for info in svc.sessions() {
            let id = info.id.get();
            let Some(l) = self.hosts[h as usize].live.get(&id) else {
                continue;
            };
            let idx = l.sess;
            let s = &self.sessions[idx];
            let Some(st) = s.stream else { continue };
            let (out, inn) = self.counted_bytes(st);
            let stream = &self.streams[st as usize];
            if info.bytes_out != out || (!stream.hpke && info.bytes_in != inn) {
                bad.push((
                    idx,
                    format!(
                        "{} counts {} bytes out / {} in, but its socket took {out} / gave {inn}",
                        fmt_id(id),
                        info.bytes_out,
                        info.bytes_in
                    ),
                ));
            }
            if !stream.hpke && info.state == laxnet::SessionState::Open {
                // (`out`: the server's Open frame is no session traffic.)
                let unsent = s.enq_bytes.saturating_sub(out);
                if info.queued as u64 != unsent {
                    bad.push((
                        idx,
                        format!(
                            "{} reports {} bytes queued, but {unsent} bytes of its sends are not written yet ({} sent, {} written)",
                            fmt_id(id),
                            info.queued,
                            s.enq_bytes,
                            stream.written
                        ),
                    ));
                }
            }
        }
        for (idx, what) in bad {
            self.violation(Some(h), Some(idx), what);
        }
    }

    /// The pool's counters are consistent: every block allocated is in use, retained or
    /// freed; the retained bytes stay within the budget; blocks and bytes agree. At
    /// quiescence (after the shutdown's trim) nothing is in use or retained.
    pub fn check_pool(
        &mut self,
        h: u16,
        cfg: &laxnet::PoolConfig,
        p: &laxnet::PoolStats,
        quiescent: bool,
    ) {
        let mut bad = Vec::new();
        let made = p.allocations + p.oversize_allocations;
        let held = (p.in_use_blocks + p.retained_blocks) as u64 + p.frees;
        if made != held {
            bad.push(format!(
                "pool counters: {made} blocks allocated, but {} in use + {} retained + {} freed = {held}",
                p.in_use_blocks, p.retained_blocks, p.frees
            ));
        }
        if p.retained_bytes > cfg.keep_total {
            bad.push(format!(
                "pool retains {} bytes, over its budget of {}",
                p.retained_bytes, cfg.keep_total
            ));
        }
        if (p.in_use_blocks == 0) != (p.in_use_bytes == 0)
            || (p.retained_blocks == 0) != (p.retained_bytes == 0)
        {
            bad.push(format!("pool counters disagree: {p:?}"));
        }
        if quiescent && (p.in_use_blocks != 0 || p.retained_blocks != 0 || p.retained_bytes != 0) {
            bad.push(format!(
                "after the shutdown the pool still holds {} blocks in use and {} retained ({} bytes)",
                p.in_use_blocks, p.retained_blocks, p.retained_bytes
            ));
        }
        for what in bad {
            self.violation(Some(h), None, what);
        }
    }

    /// After the workload stopped: if nothing moves on host `h` any more (no session has
    /// bytes queued, bytes on their way to it, or half a frame read), its service must hold
    /// no pooled buffer (idle sessions give back their read blocks and send segments).
    /// Returns true once it could check.
    pub fn check_quiet(&mut self, h: u16) -> bool {
        let Some(svc) = self.hosts[h as usize].svc.clone() else {
            return true;
        };
        let quiet = self.hosts[h as usize].live.values().all(|l| {
            let s = &self.sessions[l.sess];
            let Some(st) = s.stream.map(|st| &self.streams[st as usize]) else {
                return false;
            };
            let Some(peer) = st.peer.map(|p| &self.streams[p as usize]) else {
                return false;
            };
            // The peer has nothing left to send either: no half frame is waiting for its rest
            // (frames span records, so the record boundary alone does not tell).
            let peer_done = match peer.sess.map(|p| &self.sessions[p]) {
                Some(p) => {
                    let host = &self.hosts[p.host as usize];
                    let idle = host
                        .live
                        .get(&p.id)
                        .filter(|pl| pl.sess == peer.sess.unwrap_or(usize::MAX))
                        .is_none_or(|pl| pl.sref.queued_bytes() == 0);
                    idle && p.enq_bytes == peer.app_written()
                }
                None => peer.rogue.is_none(),
            };
            // A closing session is finishing, not idle (its Close record may wait for a
            // stalled write, its read block for an end of stream that already came).
            l.sref.is_open()
                && l.sref.queued_bytes() == 0
                && peer_done
                && peer.written == st.read_total
                && !st.rf.mid_frame()
        });
        if !quiet || self.hosts[h as usize].connecting > 0 {
            return false;
        }
        let status = svc.status();
        if status.handshaking > 0 {
            return false;
        }
        self.edge("quiet-checked");
        self.check_pool(h, &svc.config().pool, &status.pool, false);
        if status.pool.in_use_bytes != 0 {
            let live: Vec<String> = self.hosts[h as usize]
                .live
                .values()
                .map(|l| {
                    let s = &self.sessions[l.sess];
                    let st = s.stream.map(|x| &self.streams[x as usize]);
                    format!(
                        "{} (open {}, stream {:?}: read {:?} of {:?}, {:?})",
                        fmt_id(s.id),
                        l.sref.is_open(),
                        s.stream,
                        st.map(|x| x.read_total),
                        st.and_then(|x| x.peer)
                            .map(|p| self.streams[p as usize].written),
                        st.map(|x| &x.rf)
                    )
                })
                .collect();
            self.violation(
                Some(h),
                None,
                format!(
                    "nothing moves, but the service holds {} pooled bytes in {} blocks (idle sessions must hold none); live: {}",
                    status.pool.in_use_bytes,
                    status.pool.in_use_blocks,
                    live.join(", ")
                ),
            );
        }
        true
    }

    /// At quiescence: the service's totals are the sums of what its sessions' sockets moved
    /// and of the messages the oracle saw sent and delivered.
    pub fn check_totals(&mut self, h: u16, status: &laxnet::Status) {
        let inc = self.hosts[h as usize].inc;
        let (mut out, mut inn, mut sent, mut got) = (0, 0, 0, 0);
        let mut hpke = false;
        for s in self.sessions.iter().filter(|s| s.host == h && s.inc == inc) {
            sent += s.sent;
            got += s.recv_count;
            if let Some(st) = s.stream {
                let (o, i) = self.counted_bytes(st);
                out += o;
                inn += i;
                hpke |= self.streams[st as usize].hpke;
            }
        }
        let mut bad = Vec::new();
        if status.msgs_out != sent || status.msgs_in != got {
            bad.push(format!(
                "status counts {} messages out / {} in, the oracle saw {sent} sent / {got} delivered",
                status.msgs_out, status.msgs_in
            ));
        }
        if status.bytes_out != out || (!hpke && status.bytes_in != inn) {
            bad.push(format!(
                "status counts {} bytes out / {} in, the sessions' sockets moved {out} / {inn}",
                status.bytes_out, status.bytes_in
            ));
        }
        for what in bad {
            self.violation(Some(h), None, what);
        }
    }

    /// Handshake admission on an encrypted server: `stream` (accepted by host `h`) is being
    /// dropped. If the library never read from it, it refused the connection, which it may do
    /// only when `max_handshakes` handshakes are in progress (or `max_handshakes_per_source`
    /// from its source) or the service is full. The handshakes in progress are the other
    /// accepted streams of this incarnation that are open and have not completed theirs.
    pub fn check_admission(&mut self, stream: u64) {
        self.check_refusal(stream);
        let info = &self.streams[stream as usize];
        let h = info.host;
        let host = &self.hosts[h as usize];
        // A refusal reads what the client sent after writing why; before that the library
        // never read from the stream.
        let refused =
            info.head_out.starts_with(&wire::REFUSAL_MAGIC) && info.rops_at_first_write == Some(0);
        if !info.hpke
            || info.connected
            || (info.rops > 0 && !refused)
            || info.hs_done
            || host.down
            || host.draining
            || !self.sc.is_server(h)
        {
            return;
        }
        let svc = &self.sc.side(h).service;
        let max_hs = svc.max_handshakes.unwrap_or(256);
        let per_source = svc.max_handshakes_per_source.unwrap_or(16);
        let (inc, ip) = (info.inc, info.remote.ip());
        let busy: Vec<&StreamInfo> = self
            .streams
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                *i as u64 != stream
                    && s.host == h
                    && s.inc == inc
                    && s.hpke
                    && !s.connected
                    && s.open
                    && !s.hs_done
            })
            .map(|(_, s)| s)
            .collect();
        // A stalled attempt (no whole ClientHello yet) is evicted to make room rather than
        // the newcomer refused.
        let hello = wire::CLIENT_HELLO as u64
            + if self.sc.client_auth {
                wire::CLIENT_HELLO_KEY as u64
            } else {
                0
            };
        let stalled = |s: &&&StreamInfo| s.read_total < hello;
        let same: Vec<&&StreamInfo> = busy.iter().filter(|s| s.remote.ip() == ip).collect();
        let source_full = same.len() >= per_source;
        let global_full = busy.len() >= max_hs;
        let refusable = (source_full && !same.iter().any(&stalled))
            || (global_full && !busy.iter().any(|s| stalled(&s)));
        let full = host.open_now >= svc.max_sessions;
        let (from_source, busy) = (same.len(), busy.len());
        if (source_full || global_full) && !refusable && !full {
            self.violation(
                Some(h),
                None,
                format!(
                    "a connection was refused although a stalled handshake (no ClientHello yet) held a place it could have taken ({busy} in progress, {from_source} from its source)"
                ),
            );
        } else if busy < max_hs && from_source < per_source && !full {
            self.violation(
                Some(h),
                None,
                format!(
                    "a connection was refused with only {busy} handshakes in progress (max_handshakes = {max_hs}) and {} of {} sessions open",
                    host.open_now, svc.max_sessions
                ),
            );
        }
    }

    /// The last `n` log lines about session `idx`.
    pub fn session_tail(&self, idx: usize, n: usize) -> Vec<String> {
        let s = &self.sessions[idx];
        let mine: Vec<&Entry> = self
            .log
            .iter()
            .filter(|e| e.host == s.host && e.inc == s.inc && ev_id(&e.ev) == Some(s.id))
            .filter(|e| !matches!(e.ev, Ev::Probe { .. }))
            .filter(|e| e.t_us >= s.opened_us && s.closed_us.is_none_or(|c| e.t_us <= c))
            .collect();
        mine[mine.len().saturating_sub(n)..]
            .iter()
            .map(|e| self.fmt_entry(e))
            .collect()
    }

    /// Number of fault decisions taken (network and socket).
    pub fn faults_injected(&self) -> u64 {
        self.rec
            .records
            .iter()
            .filter(|f| !matches!(f, Fault::Latency { .. }))
            .count() as u64
    }
}

/// What a send on a session that is not open says (`Closed(reason)` or `Stale`): a probe that
/// is never queued.
pub fn closed_as(h: u16, sref: &SessionRef) -> Result<(), SendError> {
    sref.send(&Data(Body {
        host: h,
        inc: 0,
        sid: sref.id().get(),
        seq: u64::MAX,
        flags: 0,
        payload: Vec::new(),
    }))
}

/// The session id an event is about, if any.
pub fn ev_id(ev: &Ev) -> Option<u32> {
    match ev {
        Ev::Opened { id, .. }
        | Ev::Closed { id, .. }
        | Ev::Send { id, .. }
        | Ev::SendErr { id, .. }
        | Ev::Ready { id, .. }
        | Ev::Recv { id, .. }
        | Ev::Close { id, .. }
        | Ev::Probe { id, .. } => Some(*id),
        _ => None,
    }
}

/// Formats a raw id as the library does (`#slot.generation`).
pub fn fmt_id(id: u32) -> String {
    match laxnet::SessionId::from_raw(id) {
        Some(i) => i.to_string(),
        None => format!("#raw{id}"),
    }
}

/// Formats an event for people.
pub fn fmt_ev(ev: &Ev) -> String {
    match ev {
        Ev::Start { inc } => format!("start (incarnation {inc})"),
        Ev::Crash => "CRASH".into(),
        Ev::Net { what, arg } => format!("net {what} {arg}"),
        Ev::Io { stream, act } => format!("io-fault stream {stream}: {act:?}"),
        Ev::Ct {
            stream,
            record,
            act,
        } => format!("ciphertext fault stream {stream} record {record}: {act:?}"),
        Ev::CtRead { stream, from } => {
            format!("stream {stream} read the record spoiled by stream {from}'s ciphertext fault")
        }
        Ev::ConnectErr { what } => format!("connect failed: {what}"),
        Ev::Opened {
            id,
            connected,
            stream,
        } => format!(
            "{} opened ({}, stream {})",
            fmt_id(*id),
            if *connected { "connected" } else { "accepted" },
            stream.map_or("?".into(), |s| s.to_string())
        ),
        Ev::Closed { id, reason } => format!("{} CLOSED: {reason}", fmt_id(*id)),
        Ev::Send { id, seq, len } => format!("{} send seq {seq} ({len} B)", fmt_id(*id)),
        Ev::SendErr { id, err } => format!("{} send failed: {err}", fmt_id(*id)),
        Ev::Ready { id, res } => format!("{} ready(): {res}", fmt_id(*id)),
        Ev::Recv {
            id,
            from,
            from_id,
            seq,
        } => format!(
            "{} recv seq {seq} from host {from} {}",
            fmt_id(*id),
            fmt_id(*from_id)
        ),
        Ev::Close { id, how } => format!("{} close() ({how})", fmt_id(*id)),
        Ev::Probe { id, res } => format!("{} stale-ref probe: {res}", fmt_id(*id)),
        Ev::Quiesced {
            live,
            in_use,
            panics,
        } => format!("quiesced: live {live}, pool in use {in_use} B, panics {panics}"),
        Ev::Violation { what } => format!("VIOLATION: {what}"),
    }
}

/// FNV-1a, 64 bit.
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}
