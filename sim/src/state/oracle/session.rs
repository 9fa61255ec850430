//! The session lifecycle oracle: every session opens on a new stream with the peer key its
//! handshake proved and a well-formed id (generations advance by one per slot, ids recur
//! only past the horizon), is closed exactly once with the reason its first cause implies
//! (and the one its senders were told; a clean one lost no bytes, and its peer was told why),
//! and delivers only its peer's messages, in order and intact.

use laxnet::{CloseCode, CloseReason, SessionRef, wire};

use crate::log::{Ev, fmt_id};
use crate::msg::{self, Body};
use crate::reasons::Cause;
use crate::state::State;
use crate::state::hosts::Kept;

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

impl State {
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

    /// The id horizon: ids come from a counter over `1..2^id_bits` that advances by one per
    /// issue and skips a value only when a live session's table position blocks it, each
    /// live session blocking at most one value per issue. So every id must follow the
    /// previous one in counter order, at most as many values on as sessions are live — and
    /// then an id can recur only whole turns of the counter later, never before.
    fn check_id(&mut self, h: u16, idx: usize, id: u32) {
        let bits = self.sc.side(h).service.id_bits.clamp(4, 32);
        let space = u64::from(u32::MAX >> (32 - bits)); // nonzero ids: 1..=space
        let host = &mut self.hosts[h as usize];
        // Sessions in the table before this one: the library removes a session right after
        // publishing its `Closed`, in the same step.
        let live = host.open_now as u64;
        let mut bad = Vec::new();
        if id == 0 || u64::from(id) > space {
            bad.push(format!(
                "id {} is outside the {space} ids of a {bits}-bit id space",
                fmt_id(id)
            ));
        }
        // Values the counter passed since the previous issue, this one included (a whole
        // turn if it did not move).
        let prev = host.last_id;
        let step = match prev {
            None => 1,
            Some(prev) => match (u64::from(id) + space - u64::from(prev)) % space {
                0 => space,
                d => d,
            },
        };
        host.last_id = Some(id);
        let recurred = !host.ids_seen.insert(id);
        if step - 1 > live {
            bad.push(format!(
                "id {} follows {}: the id counter skipped {} ids, but only {live} live sessions can block one{}",
                fmt_id(id),
                prev.map_or_else(String::new, fmt_id),
                step - 1,
                if prev == Some(id) {
                    " (reissued: the counter did not move)"
                } else {
                    ""
                }
            ));
        } else if step > 1 {
            self.edge("id-skipped");
        }
        if prev.is_some_and(|p| id < p) {
            self.edge("id-wrapped");
        }
        // Given the order above, a recurrence comes whole turns of the counter later.
        if recurred {
            self.edge("id-recurred");
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

    /// `stream` read its peer's clean end of stream without a close message: a peer that shut
    /// down cleanly after deciding to close on its own (`close()`, its shutdown), not answering
    /// this side's close, must have sent its reason first.
    pub(crate) fn check_reason_sent(&mut self, stream: u64) {
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
        // A server that evicted this client's handshake after its ServerHello (it waited too
        // long for the Finished) answers with its plaintext refusal, which the client, open
        // since its Finished went out, reads as the server's close. The server's stream then
        // carries no session and wrote exactly its ServerHello and the refusal.
        let refused_after_hello = s.stream.is_some_and(|st| {
            let mine = &self.streams[st as usize];
            mine.peer.is_some_and(|p| {
                let server = &self.streams[p as usize];
                server.sess.is_none()
                    && server.written == (wire::SERVER_HELLO + wire::REFUSAL) as u64
                    && mine.read_total >= server.written
            })
        });
        if refused_after_hello
            && matches!(reason, CloseReason::Peer(p) if p.code == CloseCode::Busy)
        {
            self.edge("refused-after-hello");
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
}
