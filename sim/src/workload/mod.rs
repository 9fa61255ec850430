//! The programs the simulated hosts run: servers accept and answer, clients connect, send and
//! close, both sides close in all the ways the scenario asks for, keep refs after close and
//! probe them, and at the end drain and check quiescence. A session whose burst meets
//! `QueueFull` waits in `SessionRef::ready()` before it sends again, and the oracle checks
//! those waiters (no lost wake-up, none left after the shutdown). Every observation goes to
//! the oracle in [`crate::state::State`].
//!
//! This file holds a host's main loop and its configuration; `events` its subscribers,
//! `step` one pass of its loop, `actions` what it does to a session (sends, `close()`,
//! probes), `drain` the end of its run.
#![allow(clippy::disallowed_methods)] // the workload paces itself with tokio's (virtual) timers

use std::time::Duration;

pub mod actions;
mod drain;
mod events;
mod inbox;
mod step;

use laxnet::{Config, Encryption, Service};

use crate::engine::{BoxError, Ctx};
use crate::faulty::FaultyRuntime;
use crate::keys::{client_key, server_key};
use crate::state::{State, lock};
use drain::drain;
use events::{late_subscriber, subscribe, wait_room};
use step::{connect, step};

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
        e.max_record = st.sc.max_record();
        c.encryption = Some(e);
    }
    #[cfg(feature = "planted-bugs")]
    {
        c.planted = opts.plant.as_deref().and_then(|p| p.parse().ok());
    }
    c
}

/// The software of a workload host, as the engine runs it: one incarnation per call (the
/// engine calls it again on restart, with the incarnation in `ctx`).
pub async fn host_main(ctx: Ctx, opts: HostOpts) -> Result<(), BoxError> {
    let (shared, h, inc) = (ctx.shared().clone(), ctx.host(), ctx.incarnation());
    let (svc, server, tick, _grave, proto) = {
        let mut st = lock(&shared);
        let cfg = config(&st, h, inc, &opts);
        let io = st.sc.side(h).io.clone();
        let hpke = st.sc.protocol.encrypted();
        let rt = FaultyRuntime::new(shared.clone(), h, mix(opts.seed, h, inc) ^ 1, io, hpke);
        let grave = rt.graveyard();
        let svc = Service::with_runtime(cfg, rt);
        let host = &mut st.hosts[h as usize];
        host.svc = Some(svc.clone());
        host.draining = false;
        let server = host.server;
        (
            svc,
            server,
            Duration::from_millis(st.sc.workload.tick_ms),
            grave,
            st.sc.protocol.lib(),
        )
    };
    ctx.adopt(&svc);
    subscribe(&shared, &svc, h, proto);
    // Hosts with an even index wait in `recv` in a task of their own, the others poll with
    // `try_recv` every tick (so each of the two has hosts that depend on it alone).
    let mut polled = None;
    if lock(&shared).sc.workload.inbox {
        match inbox::open(&svc, proto) {
            Ok(i) if h % 2 == 0 => drop(tokio::spawn(inbox::consume(shared.clone(), h, i))),
            Ok(i) => polled = Some(i),
            Err(e) => lock(&shared).violation(Some(h), None, e),
        }
    }
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
        if let Some(i) = polled.as_mut() {
            inbox::poll(&shared, h, i);
        }
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
    if let Some(i) = polled.as_mut() {
        inbox::poll(&shared, h, i);
    }
    inbox::check(&shared, h);
    Ok(())
}
