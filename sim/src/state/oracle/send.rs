//! The oracle's view of sends: every send's result against the frame limit, the send-queue
//! limit and the heartbeat rule; and of the tasks waiting in `ready()` after `QueueFull`,
//! which must be woken within a tick of their session leaving `Open` or their queue draining.

use std::time::Duration;

use laxnet::{CloseReason, SendError};

use crate::log::{Ev, fmt_id};
use crate::msg;
use crate::reasons::Cause;
use crate::state::State;

/// What one send did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Sent (or refused as too large, which queues nothing).
    Ok,
    /// Refused: the queue is full.
    QueueFull,
    /// Failed otherwise: the session is closed or gone.
    Failed,
}

impl State {
    /// Accounts for one send's result and checks the heartbeat rule.
    pub(crate) fn after_send(
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
}
