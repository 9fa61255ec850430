//! One pass of a host's workload loop: stale-ref probes, new connects, bursts of sends (and
//! `ready()` waits after `QueueFull`), and the closes that are due; and the connect tasks.

use std::time::Duration;

use laxnet::{ConnectError, HandshakeError, PeerMisbehaved, Protocol, Service, SessionRef};

use crate::log::Ev;
use crate::msg::CLOSE_REQ;
use crate::state::{Shared, State, lock};
use crate::workload::PORT;

/// Connects to start and `ready()` waiters to spawn (incarnation, session).
pub(super) type StepOut = (Vec<(String, Option<Duration>)>, Vec<(u16, SessionRef)>);

/// One pass of host `h`'s workload loop. Returns the connects to start and the sessions
/// whose sends met `QueueFull`, to wait in `ready()`.
pub(super) fn step(st: &mut State, h: u16) -> StepOut {
    let now = st.now_us;
    let w = st.sc.workload.clone();
    let servers = st.sc.hosts.servers;
    let mut connects = Vec::new();
    if now >= st.hosts[h as usize].next_probe_us {
        st.probe(h);
        let host = &mut st.hosts[h as usize];
        host.next_probe_us = now + host.rng.range(w.probe_gap_ms[0], w.probe_gap_ms[1]) * 1000;
    }
    let host = &mut st.hosts[h as usize];
    if !host.server
        && host.live.len() + host.connecting < w.sessions_per_client
        && now >= host.next_connect_us
    {
        host.connecting += 1;
        host.next_connect_us =
            now + host.rng.range(w.connect_gap_ms[0], w.connect_gap_ms[1]) * 1000;
        let target = host.next_server;
        host.next_server = (host.next_server + 1) % servers;
        let abort = host.rng.chance(w.connect_abort).then(|| {
            Duration::from_millis(host.rng.range(w.connect_abort_ms[0], w.connect_abort_ms[1]))
        });
        connects.push((format!("server{target}:{PORT}"), abort));
    }
    let mut waits = Vec::new();
    let host = &mut st.hosts[h as usize];
    let ids: Vec<u32> = host.live.keys().copied().collect();
    for id in ids {
        let host = &mut st.hosts[h as usize];
        let Some(l) = host.live.get_mut(&id) else {
            continue;
        };
        let sref = l.sref.clone();
        if now >= l.next_send_us && !l.mute && !l.waiting {
            let gap = if host.server {
                w.server_push_gap_ms
            } else {
                Some(w.send_gap_ms)
            };
            l.next_send_us = match gap {
                Some(g) => now + host.rng.range(g[0].max(1), g[1].max(1)) * 1000,
                None => u64::MAX,
            };
            let n = host.rng.range(w.burst[0], w.burst[1]);
            if st.send_burst(h, &sref, n, 0).queue_full {
                let host = &mut st.hosts[h as usize];
                if let Some(l) = host.live.get_mut(&id) {
                    l.waiting = true;
                    l.room_since_us = None;
                    host.waiters += 1;
                    waits.push((host.inc, sref.clone()));
                }
            }
        }
        let host = &mut st.hosts[h as usize];
        let Some(l) = host.live.get_mut(&id) else {
            continue;
        };
        if !l.sref.is_open() && host.rng.chance(w.close_again) {
            st.edge("close-while-closing");
            st.close(h, id, "again");
            continue;
        }
        let host = &mut st.hosts[h as usize];
        let Some(l) = host.live.get_mut(&id) else {
            continue;
        };
        if l.waiting && host.rng.chance(w.close_waiting) {
            l.close_at_us = None;
            st.edge("close-while-waiting");
            st.close(h, id, "waiting");
            continue;
        }
        let host = &mut st.hosts[h as usize];
        let Some(l) = host.live.get_mut(&id) else {
            continue;
        };
        if l.close_at_us.is_some_and(|t| now >= t) {
            l.close_at_us = None;
            let (closer, burst_close) = (l.closer, l.burst_close);
            if burst_close {
                let n = host.rng.range(w.burst[0], w.burst[1]).max(2);
                st.edge("close-during-burst");
                let _ = st.send_burst(h, &sref, n, 0);
            }
            if closer == "both" {
                let _ = st.send_burst(h, &sref, 1, CLOSE_REQ);
            }
            st.close(h, id, closer);
        }
    }
    (connects, waits)
}

pub(super) async fn connect(
    shared: Shared,
    h: u16,
    svc: Service,
    addr: String,
    abort: Option<Duration>,
    proto: Protocol,
) {
    let res = match abort {
        Some(d) => tokio::time::timeout(d, svc.connect(&addr, proto))
            .await
            .ok(),
        None => Some(svc.connect(&addr, proto).await),
    };
    let mut st = lock(&shared);
    let host = &mut st.hosts[h as usize];
    host.connecting = host.connecting.saturating_sub(1);
    match res {
        None => {
            st.edge("connect-aborted");
            st.edge("close-during-connect");
            st.log(
                h,
                Ev::ConnectErr {
                    what: "abandoned".into(),
                },
            );
        }
        Some(Err(e)) => {
            st.log(
                h,
                Ev::ConnectErr {
                    what: e.to_string(),
                },
            );
            // Nothing tampers with handshakes: the server must always authenticate. (Closed,
            // I/O errors and timeouts come from crashes, resets and aborts.)
            if let ConnectError::Handshake(HandshakeError::Peer(
                PeerMisbehaved::Malformed | PeerMisbehaved::ServerNotAuthenticated,
            ))
            | ConnectError::NotConfigured = &e
            {
                st.violation(
                    Some(h),
                    None,
                    format!("connect to {addr} failed although nothing tampered with it: {e}"),
                );
            }
        }
        Some(Ok(_)) => {}
    }
}
