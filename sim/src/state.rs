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

use laxnet::{CloseReason, PublicKey, SendError, Service, SessionRef};

use crate::faulty::hs;
use crate::msg::{self, Body, Bulk, Data};
use crate::rng::Rng;
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
}

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
                self.left -= k as u64;
                b = &b[k..];
            } else {
                self.hdr[self.have] = b[0];
                self.have += 1;
                b = &b[1..];
                if self.have == 4 {
                    self.left = u32::from_le_bytes(self.hdr) as u64;
                    self.have = 0;
                }
            }
        }
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
    /// Sessions opened and not yet closed.
    pub open_now: usize,
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
        hs::client_out(self.sc.client_auth)
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
                open_now: 0,
                connecting: 0,
                last_stream: None,
                done: false,
                down: false,
                next_connect_us: 0,
                next_probe_us: 0,
                next_server: i % sc.hosts.servers.max(1),
                draining: false,
                waiters: 0,
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
            (true, true) => (self.client_out(), hs::SERVER_OUT),
            (true, false) => (hs::SERVER_OUT, self.client_out()),
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
        };
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
        if !hpke {
            // Encrypted: the session opens when the handshake completes (see below).
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
        self.hosts[host as usize].last_stream = Some(stream);
    }

    /// `got` was read from `stream` (empty: end of stream) at host time `now_ns`.
    pub fn read_bytes(&mut self, stream: u64, got: &[u8], now_ns: u64) {
        let info = &mut self.streams[stream as usize];
        let before = info.read_total;
        info.read_total += got.len() as u64;
        if !got.is_empty() {
            info.rf.feed(got);
            info.last_read_ns = now_ns;
        }
        let (hpke, connected, total, peer) =
            (info.hpke, info.connected, info.read_total, info.peer);
        if !hpke {
            return;
        }
        let hello_in = if connected {
            hs::SERVER_OUT
        } else {
            self.client_out()
        };
        if before < hello_in && total >= hello_in {
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
    }

    /// Encrypted `stream` finished writing a record carrying `payload` plaintext bytes
    /// (`close`: the final `Close` record). Checks the record against what its session sent:
    /// a record cannot carry frames that were never sent, and the `Close` record comes after
    /// every frame that was.
    pub fn record_written(&mut self, stream: u64, payload: u64, close: bool) {
        let info = &mut self.streams[stream as usize];
        info.plain_written += payload;
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
        let close = len == hs::RECORD_OVERHEAD;
        let t = self.now_us;
        let act = self.rec.decide_ct(io, stream, record, close, t)?;
        let payload = len.saturating_sub(hs::RECORD_OVERHEAD);
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
        });
        if let Some(st) = stream {
            self.streams[st as usize].sess = Some(idx);
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
        let host = &mut self.hosts[h as usize];
        let reissued = !host.ids_seen.insert(id);
        let slot = id & 0x1_FFFF;
        let slot_reused = host.slot_latest.insert(slot, id).is_some();
        host.by_id.insert(id, idx);
        host.open_now += 1;
        let open_now = host.open_now;
        if reissued {
            self.violation(
                Some(h),
                Some(idx),
                format!(
                    "id {} reissued within the run (generation did not advance)",
                    fmt_id(id)
                ),
            );
        }
        if slot_reused {
            self.edge("slot-reused");
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
        if let Some(st) = stream {
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
        let (large, large_payload, payload, bulk_mix) =
            (w.large, w.large_payload, w.payload, w.bulk_mix);
        let host = &mut self.hosts[h as usize];
        let Some(svc) = host.svc.clone() else {
            return Sent::Failed;
        };
        let len = if host.rng.chance(large) {
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
        match res {
            Ok(()) => {
                let seq = s.sent;
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
                if matches!(e, SendError::Closed(_)) {
                    self.cause(idx);
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
        sref.close();
        self.log(h, Ev::Close { id, how });
        self.cause(idx);
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
            if let Some(r) = svc.acquire(sref.id()) {
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
        host.open_now = 0;
        host.connecting = 0;
        host.last_stream = None;
        host.done = false;
        host.draining = false;
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

    // ---- the end of the run --------------------------------------------------------------

    /// Post-run checks over every session: exactly one `Closed`, and no loss after a
    /// graceful close. Also counts the edges that need both ends.
    pub fn final_checks(&mut self) {
        let margin = 2_000; // µs: two ticks
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
            // Everything sent before a graceful close() must arrive, provided the close
            // finished within the linger time (so it flushed and saw the peer's end of
            // stream) and the peer read to a clean end of stream; resets injected into
            // either stream are excused.
            let linger = self.sc.side(s.host).service.linger_ms * 1000;
            let (Some(called), Some(closed), Some(sent)) =
                (s.close_called_us, s.closed_us, s.sent_at_close)
            else {
                continue;
            };
            let in_time = closed.saturating_sub(called) + margin < linger;
            let clean = s.reason == Some(CloseReason::Local)
                && r.reason == Some(CloseReason::PeerClosed)
                && in_time
                && !self.streams[s.stream.unwrap_or(0) as usize].reset
                && !self.streams[pstream as usize].reset;
            if !clean {
                continue;
            }
            self.edge("graceful-close-checked");
            if r.recv_next != sent {
                let h = s.host;
                self.violation_at(
                    closed,
                    Some(h),
                    Some(idx),
                    format!(
                        "graceful close of {} lost messages: {sent} sent before close(), the peer ({} on {}) received {}",
                        fmt_id(s.id),
                        fmt_id(r.id),
                        self.hosts[r.host as usize].name,
                        r.recv_next
                    ),
                );
            }
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
            .filter(|e| e.t_us >= s.opened_us)
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
