//! The programs the simulated hosts run: servers accept and answer, clients connect, send and
//! close, both sides close in all the ways the scenario asks for, keep refs after close and
//! probe them, and at the end drain and check quiescence. A session whose burst meets
//! `QueueFull` waits in `SessionRef::ready()` before it sends again, and the oracle checks
//! those waiters (no lost wake-up, none left after the shutdown). Every observation goes to
//! the oracle in [`crate::state::State`].
#![allow(clippy::disallowed_methods)] // the workload paces itself with tokio's (virtual) timers

use std::time::Duration;

use laxnet::{
    Config, ConnectError, Direction, Encryption, HandshakeError, KeyPair, PeerMisbehaved, Protocol,
    Received, Service, SessionEvent, SessionRef, Topic,
};

use crate::faulty::FaultyRuntime;
use crate::msg::{Body, Bulk, CLOSE_REQ, Data};
use crate::rng::Rng;
use crate::state::{Ev, Live, Shared, State, lock};

/// The port servers listen on.
pub const PORT: u16 = 7000;

/// What a host runs, per run.
#[derive(Clone, Debug)]
pub struct HostOpts {
    /// The run's seed.
    pub seed: u64,
    /// A planted bug for every service.
    pub plant: Option<String>,
    /// The library's logging switch.
    pub logging: bool,
}

fn mix(seed: u64, h: u16, inc: u16) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((h as u64) << 32) ^ ((inc as u64) << 48) ^ 0x5EED
}

fn config(st: &State, h: u16, inc: u16, opts: &HostOpts) -> Config {
    let s = &st.sc.side(h).service;
    let mut c = Config::default();
    c.max_sessions = s.max_sessions;
    c.heartbeat = s.heartbeat();
    c.idle_timeout = s.idle_timeout_ms.map(Duration::from_millis);
    c.send_queue_limit = s.send_queue_limit;
    c.linger = s.linger();
    c.max_frame = s.max_frame;
    c.connect_timeout = Duration::from_millis(s.connect_timeout_ms);
    c.segment_size = s.segment_size;
    c.rng_seed = Some(mix(opts.seed, h, inc));
    c.logging = opts.logging;
    c.id_bits = s.id_bits;
    if st.sc.protocol.encrypted() {
        let key = server_key(opts.seed);
        let mut e = if st.sc.is_server(h) {
            Encryption::server(key)
        } else {
            Encryption::client(key.public())
        };
        if st.sc.client_auth {
            let client = client_key(opts.seed);
            if st.sc.is_server(h) {
                e.allowed_clients = Some(vec![client.public()]);
            } else {
                e.identity = Some(client);
            }
        }
        // Without a `cipher` the library's default applies, which follows the CPU
        // (`Cipher::preferred()`); traces do not depend on it (both ciphers make records of
        // the same sizes, and the trace holds no ciphertext).
        if let Some(cipher) = st.sc.cipher {
            e.cipher = cipher.cipher();
        }
        if let Some(n) = s.max_handshakes {
            e.max_handshakes = n;
        }
        if let Some(ms) = s.handshake_timeout_ms {
            e.handshake_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = s.hello_timeout_ms {
            e.hello_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = s.max_handshakes_per_source {
            e.max_handshakes_per_source = n;
        }
        c.encryption = Some(e);
    }
    #[cfg(feature = "planted-bugs")]
    {
        c.planted = opts.plant.as_deref().and_then(|p| p.parse().ok());
    }
    c
}

/// The static key pair of every server of a run with seed `seed` (they share it, as a
/// cluster behind one name would, because a client pins one server key). Restarts keep it.
pub fn server_key(seed: u64) -> KeyPair {
    fleet_key(seed, 0x4B45_5953)
}

/// The static key pair every client of a run with seed `seed` presents when the scenario has
/// `client_auth` (one fleet key, as the servers share theirs).
pub fn client_key(seed: u64) -> KeyPair {
    fleet_key(seed, 0x434C_4945)
}

/// A key pair from the run's seed and a stream tag that keeps the fleets' keys apart.
fn fleet_key(seed: u64, stream: u64) -> KeyPair {
    let mut rng = Rng::new(seed, stream);
    let mut b = [0u8; 32];
    for c in b.chunks_mut(8) {
        c.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    KeyPair::from_seed(&b)
}

/// The software of host `h`: one incarnation per call (turmoil calls it again on restart).
pub async fn host_main(shared: Shared, h: u16, opts: HostOpts) -> turmoil::Result {
    let (svc, server, tick, _grave, proto) = {
        let mut st = lock(&shared);
        let inc = {
            let host = &mut st.hosts[h as usize];
            host.inc = host.starts;
            host.starts += 1;
            host.inc
        };
        let cfg = config(&st, h, inc, &opts);
        let io = st.sc.side(h).io.clone();
        let hpke = st.sc.protocol.encrypted();
        let rt = FaultyRuntime::new(shared.clone(), h, mix(opts.seed, h, inc) ^ 1, io, hpke);
        let grave = rt.graveyard();
        let svc = Service::with_runtime(cfg, rt);
        let host = &mut st.hosts[h as usize];
        host.svc = Some(svc.clone());
        host.draining = false;
        host.done = false;
        let server = host.server;
        st.log(h, Ev::Start { inc });
        (
            svc,
            server,
            Duration::from_millis(st.sc.workload.tick_ms),
            grave,
            st.sc.protocol.lib(),
        )
    };
    subscribe(&shared, &svc, h, proto);
    // The logging switch is the service's own, and reads back what was set.
    let logging = svc.logging();
    svc.set_logging(!logging);
    let flipped = svc.logging();
    svc.set_logging(logging);
    if flipped == logging || svc.logging() != logging {
        lock(&shared).violation(Some(h), None, "set_logging did not switch logging".into());
    }
    // Keep the acceptor handle for the whole incarnation (laxnet up to 85af22e stopped
    // listening when the handle was dropped, contrary to its docs).
    let mut acceptor = None;
    let listen_addr = format!("0.0.0.0:{PORT}");
    if server {
        match svc.accept(&listen_addr, proto).await {
            Ok(a) => acceptor = Some(a),
            Err(e) => lock(&shared).violation(Some(h), None, format!("accept failed: {e}")),
        }
    }
    // While the listener is paused (`Acceptor::close`), until this sim time.
    let mut paused_until = None;
    loop {
        tokio::time::sleep(tick).await;
        if server {
            let now = lock(&shared).now_us;
            match paused_until {
                Some(t) if now >= t => {
                    // Listening again on the same port: the old listener must be gone.
                    match svc.accept(&listen_addr, proto).await {
                        Ok(a) => acceptor = Some(a),
                        Err(e) => lock(&shared).violation(
                            Some(h),
                            None,
                            format!("listening again after Acceptor::close failed: {e}"),
                        ),
                    }
                    paused_until = None;
                    lock(&shared).hosts[h as usize].paused = false;
                }
                None => {
                    let mut st = lock(&shared);
                    let w = st.sc.workload.clone();
                    let host = &mut st.hosts[h as usize];
                    if acceptor.is_some() && host.rng.chance(w.listen_pause) {
                        let ms = host.rng.range(w.listen_pause_ms[0], w.listen_pause_ms[1]);
                        if let Some(a) = acceptor.take() {
                            a.close();
                        }
                        host.paused = true;
                        paused_until = Some(now + ms * 1000);
                        st.edge("listener-paused");
                    }
                }
                Some(_) => {}
            }
        }
        if server {
            late_subscriber(&shared, &svc, h, proto);
        }
        let (connects, waits) = {
            let mut st = lock(&shared);
            if st.now_us >= st.sc.duration_ms * 1000 {
                break;
            }
            step(&mut st, h)
        };
        for (addr, abort) in connects {
            tokio::spawn(connect(shared.clone(), h, svc.clone(), addr, abort, proto));
        }
        for (inc, sref) in waits {
            tokio::spawn(wait_room(shared.clone(), h, inc, sref));
        }
    }
    drain(&shared, h, &svc).await;
    Ok(())
}

fn subscribe(shared: &Shared, svc: &Service, h: u16, proto: Protocol) {
    let sh = shared.clone();
    let r1 = svc.sub(Topic::sessions(proto), move |ev: &SessionEvent| {
        on_session(&sh, h, ev)
    });
    let sh = shared.clone();
    let r2 = svc.sub(Topic::message::<Data>(proto), move |m: &Received<Data>| {
        on_message(&sh, h, &m.session, &m.msg.0);
        let mut st = lock(&sh);
        let host = &mut st.hosts[h as usize];
        if host.late_sub.is_some() {
            host.late_expected += 1;
        }
    });
    let sh = shared.clone();
    let r3 = svc.sub(Topic::message::<Bulk>(proto), move |m: &Received<Bulk>| {
        on_message(&sh, h, &m.session, &m.msg.0)
    });
    for r in [r1.err(), r2.err(), r3.err()].into_iter().flatten() {
        lock(shared).violation(Some(h), None, format!("subscribe failed: {r}"));
    }
}

/// A subscription made while sessions run must reach them at once, and one ended must not:
/// servers add a second subscriber to `Data` a third into the run and drop it at two thirds;
/// every `Data` delivered meanwhile must reach it too (checked at quiescence).
fn late_subscriber(shared: &Shared, svc: &Service, h: u16, proto: laxnet::Protocol) {
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

fn on_session(shared: &Shared, h: u16, ev: &SessionEvent) {
    let mut st = lock(shared);
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

fn on_message(shared: &Shared, h: u16, session: &SessionRef, body: &Body) {
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
async fn wait_room(shared: Shared, h: u16, inc: u16, sref: SessionRef) {
    let res = sref.ready().await;
    lock(&shared).on_ready(h, inc, sref.id().get(), res);
}

/// Connects to start and `ready()` waiters to spawn (incarnation, session).
type StepOut = (Vec<(String, Option<Duration>)>, Vec<(u16, SessionRef)>);

/// One pass of host `h`'s workload loop. Returns the connects to start and the sessions
/// whose sends met `QueueFull`, to wait in `ready()`.
fn step(st: &mut State, h: u16) -> StepOut {
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

async fn connect(
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

/// The end of the run: close everything, wait for every session to be destroyed, then check
/// that the service is back to empty.
async fn drain(shared: &Shared, h: u16, svc: &Service) {
    // The workload stopped: once nothing moves, the service must hold no pooled buffers.
    for _ in 0..300 {
        if lock(shared).check_quiet(h) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let budget = {
        let mut st = lock(shared);
        st.hosts[h as usize].draining = true;
        // Half of the open sessions are closed just before the shutdown (their closes
        // overlap it; see below).
        let ids: Vec<u32> = st.hosts[h as usize].live.keys().copied().collect();
        for id in ids {
            if st.hosts[h as usize].rng.chance(0.5) {
                st.close(h, id, "before-shutdown");
            }
        }
        // `shutdown` closes every session below: a visible reason to close, and the reason
        // of every session still open.
        let open: Vec<usize> = st.hosts[h as usize].by_id.values().copied().collect();
        for idx in open {
            if st.sessions[idx].closed == 0 {
                st.cause(idx);
            }
        }
        let live: Vec<(usize, bool)> = st.hosts[h as usize]
            .live
            .values()
            .map(|l| (l.sess, l.sref.is_open()))
            .collect();
        for (idx, open) in live {
            if open {
                st.session_cause(idx, crate::reasons::Cause::Shutdown);
            }
        }
        // Leave the driver loop some slack after this host's own deadline.
        Duration::from_millis(st.sc.drain_ms.saturating_sub(200).max(100))
    };
    // The shutdown asks every session to close; one already closing keeps its reason. Its
    // first poll makes the requests, so what senders are told is compared around it.
    let closing: Vec<(usize, SessionRef, Result<(), laxnet::SendError>)> = {
        let st = lock(shared);
        st.hosts[h as usize]
            .live
            .values()
            .filter(|l| !l.sref.is_open())
            .map(|l| (l.sess, l.sref.clone(), crate::state::closed_as(h, &l.sref)))
            .collect()
    };
    let mut shutdown = std::pin::pin!(svc.shutdown());
    let first = std::future::poll_fn(|cx| match shutdown.as_mut().poll(cx) {
        std::task::Poll::Ready(()) => std::task::Poll::Ready(true),
        std::task::Poll::Pending => std::task::Poll::Ready(false),
    })
    .await;
    {
        let mut st = lock(shared);
        for (idx, sref, before) in closing {
            st.edge("closing-at-shutdown");
            let after = crate::state::closed_as(h, &sref);
            if after != before && !matches!(after, Err(laxnet::SendError::Stale)) {
                let id = sref.id();
                st.violation(
                    Some(h),
                    Some(idx),
                    format!(
                        "the shutdown changed what senders of closing session {id} are told from {before:?} to {after:?}"
                    ),
                );
            }
        }
    }
    let finished = first || tokio::time::timeout(budget, shutdown).await.is_ok();
    // Let the tasks that the shutdown woke in `ready()` record their answers.
    tokio::time::sleep(Duration::from_millis(1)).await;
    // A shut-down service refuses new work, before any I/O.
    let proto = lock(shared).sc.protocol.lib();
    let connect = svc.connect(&format!("server0:{PORT}"), proto).await;
    let accept = svc.accept(&format!("0.0.0.0:{}", PORT + 1), proto).await;
    if !matches!(connect, Err(ConnectError::Shutdown))
        || !matches!(accept, Err(laxnet::AcceptError::Shutdown))
    {
        lock(shared).violation(
            Some(h),
            None,
            format!(
                "after the shutdown, connect gave {:?} and accept {:?}, not Shutdown",
                connect.map(|s| s.id()),
                accept.map(|a| a.local_addr())
            ),
        );
    }
    let mut st = lock(shared);
    let waiters = st.hosts[h as usize].waiters;
    if finished && waiters != 0 {
        st.violation(
            Some(h),
            None,
            format!("{waiters} tasks are still waiting in ready() after the service shut down"),
        );
    }
    st.probe(h);
    let status = svc.status();
    if !finished {
        st.violation(
            Some(h),
            None,
            format!(
                "shutdown did not finish within {budget:?}: {} sessions still live",
                status.live()
            ),
        );
    }
    if status.live() != 0 {
        st.violation(
            Some(h),
            None,
            format!(
                "at quiescence {} sessions are still live (slot leak)",
                status.live()
            ),
        );
    }
    if status.pool.in_use_bytes != 0 {
        st.violation(
            Some(h),
            None,
            format!(
                "at quiescence {} pooled bytes are still in use (buffer leak)",
                status.pool.in_use_bytes
            ),
        );
    }
    if status.panics != 0 {
        st.violation(
            Some(h),
            None,
            format!("the service counted {} panics", status.panics),
        );
    }
    st.check_pool(h, &svc.config().pool, &status.pool, true);
    let peak = st.hosts[h as usize].peak_open;
    if status.slots != peak {
        st.violation(
            Some(h),
            None,
            format!(
                "status reports {} id slots created, but at most {peak} sessions were open at once",
                status.slots
            ),
        );
    }
    if status.handshaking != 0 {
        st.violation(
            Some(h),
            None,
            format!(
                "at quiescence {} handshakes are still counted in progress (handshake slot leak)",
                status.handshaking
            ),
        );
    }
    st.check_totals(h, &status);
    let host = &st.hosts[h as usize];
    let (got, want, late_done) = (host.late_got, host.late_expected, host.late_done);
    if got != want {
        st.violation(
            Some(h),
            None,
            format!(
                "a subscriber added while sessions ran got {got} messages, but {want} were delivered while it was subscribed"
            ),
        );
    }
    if late_done {
        st.edge("late-subscriber");
    }
    for _ in 0..status.refused {
        st.edge("admission-refused");
    }
    for _ in 0..status.handshake_failures {
        st.edge("handshake-failed");
    }
    for _ in 0..status.handshakes_refused {
        st.edge("handshake-refused");
    }
    for _ in 0..status.handshakes_evicted {
        st.edge("handshake-evicted");
    }
    for _ in 0..status.linger_expired {
        st.edge("linger-expired");
    }
    let ids: Vec<u32> = st.hosts[h as usize].ids_seen.iter().copied().collect();
    for id in ids {
        if let Some(sid) = laxnet::SessionId::from_raw(id)
            && svc.acquire(sid).is_some()
        {
            st.violation(
                Some(h),
                None,
                format!(
                    "acquire({}) still resolves after the service drained",
                    crate::state::fmt_id(id)
                ),
            );
        }
    }
    st.log(
        h,
        Ev::Quiesced {
            live: status.live() as u64,
            in_use: status.pool.in_use_bytes as u64,
            panics: status.panics,
        },
    );
    st.hosts[h as usize].done = true;
}
