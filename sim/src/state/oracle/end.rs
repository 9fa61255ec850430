//! The end of the run: every session got exactly one `Closed`, and both directions of a
//! graceful end held (the flush lost nothing, and a clean end looked clean to the peer).

use crate::log::fmt_id;
use crate::reasons::Cause;
use crate::state::State;
use crate::state::oracle::session::Sess;

impl State {
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
}
