//! Stream byte tracking: every stream the faulty runtime (or a hostile host) creates, paired
//! with its other end, with what was written and read, where the frames (records) lie, the
//! first thing that ended it, and, on encrypted streams, where a ciphertext fault put its
//! first bad record and when the reading end reached it.

use std::net::SocketAddr;

use laxnet::{ProtocolViolation, wire};

use crate::attack::{Attack, Plan};
use crate::log::Ev;
use crate::reasons::Cause;
use crate::schedule::{CtAct, IoAct};
use crate::state::State;

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
    /// Encrypted: the last record written has a close body's size but came while messages
    /// sent were still unwritten, so it was counted as data. If nothing follows it before the
    /// stream ends, it was the `Close` record of an abortive close that left those messages
    /// untaken (settled by [`State::settle_close_record`] when the stream shuts down at a
    /// record boundary; cleared when another record starts).
    pub close_maybe: Option<u64>,
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
    /// Encrypted servers: when accepted, a refusal of this stream was allowed (the handshakes
    /// in progress or the sessions open were at their limit). The library decides then; the
    /// refused stream is dropped (and checked) later, when a handshake may have finished or
    /// a session closed meanwhile (see [`State::note_accepted`]).
    pub refusable_at_accept: bool,
    /// Encrypted servers: a later connection was accepted while the handshake places (all of
    /// them, or its source's) were full and this attempt, admitted, had read nothing: the
    /// library may have evicted it to make room (it evicts its oldest stalled attempt), and
    /// an evicted attempt that read nothing writes the same refusal as a refused newcomer.
    pub evictable: bool,
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

impl State {
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
            refusable_at_accept: false,
            evictable: false,
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
            close_maybe: None,
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

    /// The library shut `stream`'s write half down.
    pub fn shut_down(&mut self, stream: u64) {
        self.settle_close_record(stream);
        self.streams[stream as usize].shut_down = true;
    }

    /// The hostile peer at the other end of `stream`, if any.
    pub(crate) fn rogue_peer(&self, stream: u64) -> Option<&RogueInfo> {
        let p = self.streams[stream as usize].peer?;
        self.streams[p as usize].rogue.as_ref()
    }

    /// The hostile peer of session `idx`, if any.
    pub(crate) fn sess_rogue(&self, idx: usize) -> Option<&RogueInfo> {
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

    /// Bytes the library counts for `stream`'s session as sent and received: everything on
    /// "bits"; on "bits-hpke" everything after the handshake messages this side wrote (its
    /// hello, and a client's Finished) and read.
    pub(crate) fn counted_bytes(&self, stream: u64) -> (u64, u64) {
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
}
