//! The workload's subscribers: what a host does when a session opens (draw its fate: closer,
//! life, mute, bursts) or closes, and when a message arrives (answer, close on request); the
//! late subscriber; and the tasks that wait in `ready()`.

use laxnet::{Direction, Protocol, Received, Service, SessionEvent, SessionRef, Topic};

use crate::msg::{BULK, Body, Bulk, CLOSE_REQ, Data};
use crate::state::hosts::Live;
use crate::state::{Shared, lock};

pub(super) fn subscribe(shared: &Shared, svc: &Service, h: u16, proto: Protocol) {
    let sh = shared.clone();
    let r1 = svc.sub(Topic::sessions(proto), move |ev: &SessionEvent| {
        on_session(&sh, h, ev)
    });
    let sh = shared.clone();
    let r2 = svc.sub(Topic::message::<Data>(proto), move |m: &Received<Data>| {
        check_type(&sh, h, &m.msg.0, false);
        on_message(&sh, h, &m.session, &m.msg.0);
        let mut st = lock(&sh);
        let host = &mut st.hosts[h as usize];
        host.inbox.cb[2] += 1;
        if host.late_sub.is_some() {
            host.late_expected += 1;
        }
    });
    let sh = shared.clone();
    let r3 = svc.sub(Topic::message::<Bulk>(proto), move |m: &Received<Bulk>| {
        check_type(&sh, h, &m.msg.0, true);
        on_message(&sh, h, &m.session, &m.msg.0)
    });
    for r in [r1.err(), r2.err(), r3.err()].into_iter().flatten() {
        lock(shared).violation(Some(h), None, format!("subscribe failed: {r}"));
    }
}

/// A message reaches the subscribers of the type it was sent as (`Data` and `Bulk` share
/// their layout, so a frame dispatched to the wrong type's decoder would decode).
fn check_type(shared: &Shared, h: u16, body: &Body, bulk: bool) {
    if (body.flags & BULK != 0) != bulk {
        let (sent, got) = if bulk {
            ("Data", "Bulk")
        } else {
            ("Bulk", "Data")
        };
        lock(shared).violation(
            Some(h),
            None,
            format!(
                "a message sent as {sent} (seq {}) was delivered as {got}",
                body.seq
            ),
        );
    }
}

/// A subscription made while sessions run must reach them at once, and one ended must not:
/// servers add a second subscriber to `Data` a third into the run and drop it at two thirds;
/// every `Data` delivered meanwhile must reach it too (checked at quiescence).
pub(super) fn late_subscriber(shared: &Shared, svc: &Service, h: u16, proto: laxnet::Protocol) {
    let (now, end, active) = {
        let st = lock(shared);
        let host = &st.hosts[h as usize];
        (st.now_us, st.sc.duration_ms * 1000, host.late_sub)
    };
    match active {
        None if now >= end / 3
            && now < 2 * end / 3
            && !lock(shared).hosts[h as usize].late_done =>
        {
            let sh = shared.clone();
            let res = svc.sub(Topic::message::<Data>(proto), move |_m: &Received<Data>| {
                lock(&sh).hosts[h as usize].late_got += 1;
            });
            let mut st = lock(shared);
            match res {
                Ok(id) => st.hosts[h as usize].late_sub = Some(id),
                Err(e) => st.violation(Some(h), None, format!("subscribe failed: {e}")),
            }
        }
        Some(id) if now >= 2 * end / 3 => {
            let gone = svc.unsub(id);
            let mut st = lock(shared);
            let host = &mut st.hosts[h as usize];
            host.late_sub = None;
            host.late_done = true;
            if !gone {
                st.violation(Some(h), None, "unsub of a live subscription failed".into());
            }
        }
        _ => {}
    }
}

pub(super) fn on_session(shared: &Shared, h: u16, ev: &SessionEvent) {
    let mut st = lock(shared);
    let cb = &mut st.hosts[h as usize].inbox.cb;
    match ev {
        SessionEvent::Opened { .. } => cb[0] += 1,
        SessionEvent::Closed { .. } => cb[1] += 1,
        _ => {}
    }
    match ev {
        SessionEvent::Opened { session, direction } => {
            let connected = *direction == Direction::Connected;
            let idx = st.on_opened(h, session, connected);
            let w = st.sc.workload.clone();
            let now = st.now_us;
            let host = &mut st.hosts[h as usize];
            let server = host.server;
            let rng = &mut host.rng;
            let (closer, close) = if server {
                if rng.chance(w.closer_server) {
                    ("server", true)
                } else {
                    ("", false)
                }
            } else {
                let r = rng.unit();
                if r < w.closer_client {
                    ("client", true)
                } else if r < w.closer_client + w.closer_both {
                    ("both", true)
                } else {
                    ("", false)
                }
            };
            let life = rng.range(w.life_ms[0], w.life_ms[1]) * 1000;
            let mute = server && rng.chance(w.mute);
            let burst_close = rng.chance(w.close_burst);
            let on_open = rng.chance(w.close_on_open);
            let first_send = if server {
                w.server_push_gap_ms
                    .map_or(u64::MAX, |g| now + rng.range(g[0], g[1]) * 1000)
            } else {
                now + rng.range(0, w.send_gap_ms[1]) * 1000
            };
            let id = session.id().get();
            host.live.insert(
                id,
                Live {
                    sref: session.clone(),
                    sess: idx,
                    next_send_us: first_send,
                    close_at_us: close.then_some(now + life),
                    closer,
                    burst_close,
                    mute,
                    waiting: false,
                    room_since_us: None,
                    lost_reported: false,
                },
            );
            if on_open {
                st.edge("close-during-connect");
                st.close(h, id, "on-open");
            }
        }
        SessionEvent::Closed { id, reason } => st.on_closed(h, id.get(), reason),
        _ => {}
    }
}

pub(super) fn on_message(shared: &Shared, h: u16, session: &SessionRef, body: &Body) {
    let mut st = lock(shared);
    let id = session.id().get();
    st.on_recv(h, id, body);
    if body.seq == u64::MAX || !st.hosts[h as usize].server {
        return;
    }
    let Some(live) = st.hosts[h as usize].live.get(&id) else {
        return;
    };
    if live.mute {
        return;
    }
    let w = &st.sc.workload;
    let (reply, rb) = (w.reply, w.reply_burst);
    let host = &mut st.hosts[h as usize];
    if host.rng.chance(reply) {
        let n = host.rng.range(rb[0], rb[1]);
        // Replies that meet a full queue are not sent (logged as send errors): a callback
        // cannot wait in `ready()`, so the oracle's wake-up rule watches step-loop senders.
        let _ = st.send_burst(h, session, n, 0);
    }
    if body.flags & CLOSE_REQ != 0 {
        st.close(h, id, "both");
    }
}

/// A bulk sender's back-pressure: after `QueueFull` the session waits in `ready()` (sending
/// nothing meanwhile, see `step`) until there is room or the session ends. The oracle counts
/// the waiters: every one must have its answer once the host drained.
pub(super) async fn wait_room(shared: Shared, h: u16, inc: u16, sref: SessionRef) {
    let res = sref.ready().await;
    lock(&shared).on_ready(h, inc, sref.id().get(), res);
}
