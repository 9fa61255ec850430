//! What the workload does to a session, with the oracle's checks of each call: a burst of
//! sends, `close()`, and the probes of refs kept after close (they must never send or
//! resolve again).

use laxnet::{SendError, SessionRef};

use crate::log::{Ev, fmt_id};
use crate::msg::{self, Body, Bulk, Data};
use crate::reasons::Cause;
use crate::state::State;
use crate::state::oracle::send::Sent;

/// How a burst of sends went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Burst {
    /// A send failed with anything but a full queue; the rest of the burst was not sent.
    pub stopped: bool,
    /// At least one send met `QueueFull` (the workload then waits in `ready()`).
    pub queue_full: bool,
}

impl State {
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
            flags: if bulk { flags | msg::BULK } else { flags },
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

    /// Probes host `h`: the accounting, `Status` and pool checks; every session not yet
    /// `Closed` resolves to itself (`Service::acquire`); a closed session's kept ref must never
    /// send again, and its id must never resolve again.
    pub fn probe(&mut self, h: u16) {
        let Some(svc) = self.hosts[h as usize].svc.clone() else {
            return;
        };
        self.check_accounting(h);
        let status = svc.status();
        self.check_status(h, &svc, &status);
        self.check_pool(h, &svc.config().pool, &status.pool, false);
        // Every session not yet Closed resolves to itself.
        let live: Vec<(SessionRef, usize)> = self.hosts[h as usize]
            .live
            .values()
            .map(|l| (l.sref.clone(), l.sess))
            .collect();
        for (sref, idx) in live {
            let got = svc.acquire(sref.id()).map(|r| r.id());
            if got != Some(sref.id()) {
                self.violation(
                    Some(h),
                    Some(idx),
                    format!(
                        "acquire({}) of a session not yet Closed gave {}",
                        fmt_id(sref.id().get()),
                        got.map_or("nothing".to_string(), |g| fmt_id(g.get()))
                    ),
                );
            }
        }
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
            let reused = self.hosts[h as usize]
                .last_id
                .is_some_and(|latest| latest != id);
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
