//! The close sequence of [`Connection`] (the first reason wins; clean closes flush within the
//! linger, abortive ones drop what is queued; a linger that expires with bytes unsent is not
//! clean), and the bytes around the frames: opening records (encrypted sessions), sealing
//! queued frames into records, and queuing this side's close message (a control frame on
//! "bits", the Close record on "bits-hpke"; `docs/wire.md`).

use super::*;

impl Connection {
    /// The application's code and text for the close message of a local close
    /// (`SessionRef::close_with`).
    pub(crate) fn set_app_close(&mut self, code: u32, text: String) {
        self.app_close = Some((code, text));
    }

    /// Starts the close sequence for `reason` (the first reason wins): a clean reason (or the
    /// peer's close) flushes and waits for the peer's end of stream until `now` + linger; an
    /// abortive one that can still write (heartbeat, idle, a violation, a panic) stops
    /// reading, finishes the frames already taken and sends its reason, until `now` +
    /// linger; any other drops everything at once.
    pub(crate) fn handle_close(&mut self, reason: CloseReason, now: Instant) {
        self.begin(reason, Some(now));
    }

    /// The close sequence: clean reasons need `now` (for the linger deadline); the abortive
    /// ones this connection decides on its own do not read the clock.
    pub(super) fn begin(&mut self, reason: CloseReason, now: Option<Instant>) {
        if self.reason.is_some() {
            return;
        }
        // (Without the time, after a failed read, even the peer's close is abortive.)
        if let Some(now) = now.filter(|_| reason.flushes()) {
            self.deadline = Some(now + self.linger);
        } else if let Some(now) = now.filter(|_| reason.sends_reason() && !self.write_done) {
            // Abortive, but the peer can still be told why: the frames already taken are
            // finished (a frame is never cut), nothing more is taken, nothing more is read.
            self.stopped = true;
            self.read_done = true;
            self.take_more = false;
            self.more_queued = false;
            self.deadline = Some(now + self.linger);
            // Nothing more is read or delivered: a session waiting to send its reason holds
            // no read memory.
            self.release_reads();
        } else {
            // Abortive: the peer is gone or hostile; flushing to it is pointless.
            self.stopped = true;
            self.read_done = true;
            self.write_done = true;
            let before = self.unsent();
            self.clear_out();
            if let Some(s) = self.sealed.as_mut() {
                s.wire_out.clear();
            }
            let dropped = before - self.unsent();
            if dropped > 0 && self.dropped.is_none() {
                self.dropped = Some((dropped, reason.clone()));
            }
        }
        if self.plants.on(Bug::NoFlushOnClose) && reason == CloseReason::Local {
            self.clear_out();
            self.more_queued = false;
        }
        if self.plants.on(Bug::NoFlushAfterPeerEof)
            && matches!(reason, CloseReason::PeerClosed | CloseReason::Peer(_))
        {
            self.write_done = true;
        }
        self.reason = Some(reason);
    }

    /// The close reason is `reason` after all (a sender asked first; the first reason wins),
    /// whatever this connection decided on its own. The sequence already under way goes on.
    pub(crate) fn adopt_reason(&mut self, reason: CloseReason) {
        self.reason = Some(reason);
    }

    /// A close this connection decided on its own (also announced by [`Connection::poll_event`]).
    pub(super) fn close(&mut self, reason: CloseReason, now: Option<Instant>) {
        if self.reason.is_none() {
            self.closing = Some(reason.clone());
            self.begin(reason, now);
        }
    }

    /// Time passed: a close still under way at its deadline is over. A clean one that leaves
    /// bytes unsent is not clean after all: its reason becomes
    /// [`CloseReason::LingerExpired`].
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if let Some(d) = self.deadline
            && now >= d
            && !self.is_done()
        {
            self.linger_expired = true;
            self.linger_event = true;
            self.deadline = None;
            let unsent = self.unsent();
            if unsent > 0
                && self.reason.as_ref().is_some_and(CloseReason::is_clean)
                && !self.plants.on(Bug::LingerExpiryClean)
            {
                self.reason = Some(CloseReason::LingerExpired {
                    unsent: unsent as u64,
                });
            }
        }
    }

    /// True when the write side should be shut down now: the session is closing and
    /// everything, its close message included, is written.
    pub(crate) fn wants_shutdown(&self) -> bool {
        if self.reason.is_none() || self.write_done || self.linger_expired {
            return false;
        }
        let flushed = self.out.is_empty() && !self.more_queued && self.close_queued;
        match &self.sealed {
            Some(s) => flushed && s.wire_out.is_empty(),
            None => flushed,
        }
    }

    /// The reason a session that ends with `reason` reports when `lost` more bytes (senders
    /// queued them after the connection last looked) are dropped with it: a clean reason
    /// that loses bytes becomes the failed write's reason, or that of the abortive close that
    /// dropped them (a sender's clean reason adopted after it), or `LingerExpired`.
    pub(crate) fn final_reason(&self, reason: CloseReason, lost: usize) -> CloseReason {
        let dropped = self.dropped.as_ref().map_or(0, |(n, _)| *n);
        let unsent = self.unsent() + dropped + lost;
        if !reason.is_clean() || unsent == 0 || self.plants.on(Bug::LingerExpiryClean) {
            return reason;
        }
        self.write_error
            .clone()
            .or_else(|| self.dropped.as_ref().map(|(_, r)| r.clone()))
            .unwrap_or(CloseReason::LingerExpired {
                unsent: unsent as u64,
            })
    }

    /// Opens the next complete record into the inbound buffer. Returns whether it did.
    pub(super) fn open_record(&mut self) -> bool {
        let Some(s) = self.sealed.as_mut() else {
            return false;
        };
        if self.read_done {
            return false;
        }
        match s.take_refusal() {
            Ok(None) => {}
            Err(()) => return false,
            Ok(Some(code)) => {
                // Read as the server's close: its end of stream follows.
                s.close_received = true;
                self.peer_close = Some(PeerClose::refused(CloseCode::from_u8(code)));
                return true;
            }
        }
        let max_record = match self.plants.on(Bug::RecordLimitOffByOne) {
            true => s.max_record - 1,
            false => s.max_record,
        };
        let total = match Opener::record_len(s.wire_in.data(), max_record) {
            Ok(Some(t)) => t,
            Ok(None) => return false,
            Err(e) => {
                self.peer_misbehaved(CloseReason::Crypto(e), None);
                return false;
            }
        };
        if s.wire_in.len() < total {
            s.wire_in.reserve_total(total);
            return false;
        }
        let record = &mut s.wire_in.data_mut()[..total];
        match s.opener.open(record) {
            Err(e) => {
                self.peer_misbehaved(CloseReason::Crypto(e), None);
                return false;
            }
            Ok(_) if s.close_received => {
                self.peer_misbehaved(CloseReason::Crypto(CryptoError::BadRecord), None);
                return false;
            }
            Ok((RecordType::Close, range)) => {
                s.close_received = true;
                // An empty payload: a peer that gives no reason (or an older one).
                match control::decode(&record[range.clone()]) {
                    _ if range.is_empty() => {}
                    Ok(Control::Close(pc)) => self.peer_close = Some(pc),
                    Ok(Control::Unknown) => {}
                    Ok(Control::Open { .. }) | Err(_) => {
                        // Authenticated but malformed: the peer's own bug, not tampering.
                        self.peer_misbehaved(
                            CloseReason::Protocol(ProtocolViolation::BadControl),
                            None,
                        );
                        return false;
                    }
                }
            }
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
        true
    }

    /// This side's close message body (`docs/wire.md`), or `None` when it has no reason to
    /// give (it answers the peer's close).
    pub(super) fn close_body(&self) -> Option<Vec<u8>> {
        let (code, detail) = self.reason.as_ref()?.code()?;
        let (app_code, text) = match (&self.app_close, self.reason.as_ref()) {
            (Some((c, t)), Some(CloseReason::Local)) => (*c, t.clone()),
            _ => (0, String::new()),
        };
        if self.plants.on(Bug::ReasonNotSent) {
            return None;
        }
        Some(control::close_body(&PeerClose {
            code,
            detail,
            app_code,
            text,
        }))
    }

    /// Seals queued frames into records, many frames per record, while fewer than a few
    /// records wait for the socket.
    pub(super) fn seal_records(&mut self) {
        let Some(s) = self.sealed.as_mut() else {
            return;
        };
        while !self.out.is_empty() && s.wire_out.len() < 4 * s.max_record {
            let n = self.out.len().min(s.max_record);
            let mut block = self.pool.take(n + record::OVERHEAD);
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
                Err(e) => return self.write_failed(CloseReason::Crypto(e)),
            }
            self.out.advance(n);
        }
    }

    /// When a session is closing and everything queued is written (plaintext) or sealed
    /// (encrypted), queues its close message (once): on "bits" a close control frame with
    /// this side's reason, if it has one; on "bits-hpke" the authenticated Close record,
    /// with the reason as its payload, so it leaves with the same write as the records
    /// before it.
    pub(super) fn queue_close(&mut self) {
        // (An abortive close that cannot write has set `write_done`.)
        if self.reason.is_none()
            || self.close_queued
            || self.write_done
            || !self.out.is_empty()
            || self.more_queued
        {
            return;
        }
        self.close_queued = true;
        let body = self.close_body();
        let Some(s) = self.sealed.as_mut() else {
            if let Some(body) = body {
                self.out.push(&control::frame(&body));
            }
            return;
        };
        s.close_sent = true;
        if self.plants.on(Bug::NoCloseRecord) {
            return;
        }
        let body = body.unwrap_or_default();
        let mut block = self.pool.take(record::OVERHEAD + body.len());
        block[record::HEADER + 1..record::HEADER + 1 + body.len()].copy_from_slice(&body);
        // Data records never take the last record of the limit: the Close record's.
        let total = s
            .sealer
            .seal(RecordType::Close, &mut block, body.len())
            .expect("the sealer keeps a record for the Close record");
        s.wire_out.push(&block[..total]);
        self.close_len = total;
    }
}
