//! The ciphertext oracle ("bits-hpke"): deciding the ciphertext faults and checking what a
//! session does after its peer's stream took one.
//!
//! The invariant: *nothing from a record that fails authentication is delivered; the
//! session closes.* The faulty socket layer spoils at most one record per stream after the
//! handshake and tells the oracle which record on the wire is the first bad one, and how
//! much plaintext the intact records before it carry ([`CtMark`]). The sender's messages are
//! frames of known size (`msg::frame_len`) queued in send order, so the oracle knows that
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
//! carry no more plaintext than was sent, no data record more than `max_record` bytes, and
//! that the `Close` record follows all of it, and that every session reports the peer key its handshake proved (`SessionRef::peer_key`: the
//! servers' shared key on a connected session; on an accepted one the clients' shared key with
//! `client_auth`, else none; none at all in plaintext runs).

use laxnet::{CloseReason, wire};

use crate::log::{Ev, fmt_id};
use crate::msg::Body;
use crate::scenario::IoFaults;
use crate::schedule::CtAct;
use crate::state::State;
use crate::state::streams::CtMark;

impl State {
    /// Encrypted `stream` finished writing a record carrying `payload` plaintext bytes
    /// (`close`: the final `Close` record). Checks the record against what its session sent:
    /// a record cannot carry frames that were never sent, and the `Close` record comes after
    /// every frame that was.
    pub fn record_written(&mut self, stream: u64, payload: u64, close: bool) {
        // A Close record carries the reason (a close body) or nothing. The oracle cannot see
        // a record's type: the record after all the session's frames, with a payload of a
        // close body's size, is its Close record. A stream without a session writes no
        // frames: its only record is the Close record of a refusal after the handshake (the
        // service is full or shutting down; either side).
        let max_record = self.sc.max_record() as u64;
        let enq = Some(
            self.streams[stream as usize]
                .sess
                .map_or(0, |i| self.sessions[i].enq_bytes),
        );
        let info = &mut self.streams[stream as usize];
        let reasoned = (wire::CLOSE_BODY as u64..=(wire::CLOSE_BODY + wire::CLOSE_TEXT_MAX) as u64)
            .contains(&payload);
        let (payload, close) = if !close && reasoned && enq == Some(info.plain_written) {
            info.reason_sent = Some(None);
            (0, true)
        } else {
            // An abortive close that still tells the peer why (heartbeat, idle, a violation)
            // finishes only the frames already taken: its Close record can come while sent
            // messages are unwritten. Which it was, the end of the stream tells.
            if !close && reasoned && enq.is_some_and(|e| e > info.plain_written) {
                info.close_maybe = Some(payload);
            }
            (payload, close)
        };
        // A data record carries at most `max_record` bytes. (A record of a close body's size
        // may still turn out to be the Close record, whose payload has its own bound: it is
        // judged when the next record starts, `record_started`.)
        let over = !close && payload > max_record && info.close_maybe != Some(payload);
        let full = !close && payload == max_record;
        info.plain_written += payload;
        info.close_record |= close;
        let plain = info.plain_written;
        let Some(idx) = info.sess else { return };
        let s = &self.sessions[idx];
        let (host, id, enq) = (s.host, s.id, s.enq_bytes);
        if full {
            self.edge("record-full");
        }
        if over {
            self.record_over_max(stream, payload);
        } else if plain > enq {
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

    /// Encrypted `stream` starts writing another record: the one before was data after all
    /// (see [`StreamInfo::close_maybe`]).
    ///
    /// [`StreamInfo::close_maybe`]: crate::state::streams::StreamInfo::close_maybe
    pub fn record_started(&mut self, stream: u64) {
        let max_record = self.sc.max_record() as u64;
        if let Some(payload) = self.streams[stream as usize].close_maybe.take()
            && payload > max_record
        {
            self.record_over_max(stream, payload);
        }
    }

    /// A data record of `stream` carried `payload` bytes, over `max_record`.
    fn record_over_max(&mut self, stream: u64, payload: u64) {
        let Some(idx) = self.streams[stream as usize].sess else {
            return;
        };
        let s = &self.sessions[idx];
        let (host, id) = (s.host, s.id);
        self.violation(
            Some(host),
            Some(idx),
            format!(
                "{} wrote a data record with {payload} plaintext bytes, over max_record ({})",
                fmt_id(id),
                self.sc.max_record()
            ),
        );
    }

    /// `stream` shut its write half down with no record in progress: a last record of a
    /// close body's size that was counted as data ([`StreamInfo::close_maybe`]) was its
    /// `Close` record, with a reason. (The library shuts down only after its close message;
    /// had that record been data, the reader would have opened it as a message and reported
    /// the end as one without an authenticated close, which the reason check catches.)
    ///
    /// [`StreamInfo::close_maybe`]: crate::state::streams::StreamInfo::close_maybe
    pub fn settle_close_record(&mut self, stream: u64) {
        let info = &mut self.streams[stream as usize];
        let Some(payload) = info.close_maybe.take() else {
            return;
        };
        info.plain_written -= payload;
        info.close_record = true;
        info.reason_sent = Some(None);
        self.edge("close-record-after-loss");
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
}
