//! The library's accounting against what the run observed: per-session bytes and queued
//! bytes against what the sockets moved, the buffer pool's counters and size classes, no
//! pooled buffer held once nothing moves, `Status` at every probe, and the service's totals
//! at every probe and at quiescence.

use laxnet::wire;

use crate::log::fmt_id;
use crate::state::State;

impl State {
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
    /// freed; the retained bytes stay within the budget; blocks and bytes agree; the bytes are
    /// those of blocks of the size classes and no block is oversize (the pool's efficiency:
    /// what it hands out and keeps is class-sized and reusable). At
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
        // Every block but an oversize one is of a class: a power of two from `min_class` to
        // `max_class`, so (the classes being multiples of the smallest) the bytes of any set
        // of blocks are a multiple of `min_class`, between `min_class` and `max_class` times
        // their number. The library never asks for more than a frame or a record with its
        // headers (1 MiB and 16 KiB by default, `max_frame` in the scenarios) nor more than a
        // segment, all far below the default `max_class` (16 MiB): a run makes no oversize
        // block, and every block taken comes from a class and can be retained and reused.
        let (min, max) = (cfg.min_class, cfg.max_class);
        for (what, blocks, bytes) in [
            ("in use", p.in_use_blocks, p.in_use_bytes),
            ("retained", p.retained_blocks, p.retained_bytes),
        ] {
            if bytes % min != 0 || bytes < blocks * min || bytes > blocks * max {
                bad.push(format!(
                    "pool: {blocks} blocks {what} hold {bytes} bytes, not a sum of size classes ({min}..={max} bytes, powers of two)"
                ));
            }
        }
        if p.oversize_allocations != 0 {
            bad.push(format!(
                "pool: {} oversize blocks, but nothing asked for more than the largest class ({max} bytes)",
                p.oversize_allocations
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
    /// bytes queued, its Open frame unwritten, bytes on their way to it, or half a frame
    /// read), its service must hold
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
            // A "bits" server's Open frame is no message (`queued_bytes` leaves it out) but
            // waits in the session's send queue until it is written (a stalled write).
            let open_written = st.hpke || st.connected || st.written >= wire::OPEN_FRAME as u64;
            // A closing session is finishing, not idle (its Close record may wait for a
            // stalled write, its read block for an end of stream that already came).
            l.sref.is_open()
                && open_written
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

    /// Mid-run, at a probe (between the library's polls, when its counters are settled):
    /// `Status` against what the oracle saw on this incarnation. The live sessions per
    /// protocol are the sessions with an `Opened` and no `Closed` yet, split into open and
    /// closing as [`laxnet::Service::sessions`] lists them; `accepted` / `connected` count the
    /// `Opened` events per side; the closes per kind count the `Closed` events' reasons; the
    /// totals (bytes, messages) are those of [`State::check_totals`], exact here too (live
    /// sessions' counters plus the destroyed sessions' sums); every encrypted session
    /// completed a handshake, so `handshakes` is at least their number.
    pub fn check_status(&mut self, h: u16, svc: &laxnet::Service, status: &laxnet::Status) {
        let inc = self.hosts[h as usize].inc;
        let (mut accepted, mut connected, mut live, mut hpke) = (0u64, 0u64, 0usize, 0u64);
        let mut closes: Vec<(laxnet::CloseKind, u64)> =
            status.closes.iter().map(|&(k, _)| (k, 0)).collect();
        for s in self.sessions.iter().filter(|s| s.host == h && s.inc == inc) {
            if s.connected {
                connected += 1;
            } else {
                accepted += 1;
            }
            hpke += s.stream.is_some_and(|st| self.streams[st as usize].hpke) as u64;
            match &s.reason {
                Some(r) if s.closed > 0 => {
                    if let Some(c) = closes.iter_mut().find(|(k, _)| *k == r.kind()) {
                        c.1 += 1;
                    }
                }
                _ => live += 1,
            }
        }
        let listed = svc.sessions();
        let mut bad = Vec::new();
        for row in &status.sessions {
            let of = |state| {
                listed
                    .iter()
                    .filter(|i| i.protocol == row.protocol && i.state == state)
                    .count()
            };
            let (open, closing) = (
                of(laxnet::SessionState::Open),
                of(laxnet::SessionState::Closing),
            );
            if (row.open, row.closing) != (open, closing) {
                bad.push(format!(
                    "status counts {} open / {} closing {} sessions, the session list has {open} / {closing}",
                    row.open, row.closing, row.protocol
                ));
            }
        }
        if status.live() != live {
            bad.push(format!(
                "status counts {} live sessions, the oracle saw {live} opened and not closed",
                status.live()
            ));
        }
        if (status.accepted, status.connected) != (accepted, connected) {
            bad.push(format!(
                "status counts {} accepted / {} connected, the oracle saw {accepted} / {connected} Opened",
                status.accepted, status.connected
            ));
        }
        if status.closes != closes || closes.iter().any(|&(k, n)| status.closed(k) != n) {
            bad.push(format!(
                "status counts closes {:?}, the oracle saw Closed with {closes:?}",
                status.closes
            ));
        }
        if status.handshakes < hpke {
            bad.push(format!(
                "status counts {} handshakes, but {hpke} encrypted sessions opened",
                status.handshakes
            ));
        }
        for what in bad {
            self.violation(Some(h), None, what);
        }
        self.check_totals(h, status);
    }

    /// The service's totals are the sums of what its sessions' sockets moved and of the
    /// messages the oracle saw sent and delivered (at quiescence, and at every probe).
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
}
