//! The scenarios, written once against [`Ctx`]; `main.rs` instantiates each per backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use borsh::{BorshDeserialize, BorshSerialize};
use laxnet::{
    AcceptError, CloseReason, Config, ConnectError, CryptoError, Direction, Event, HandshakeError,
    KeyPair, Message, ProtocolViolation, SendError, Service, SessionEvent, SessionId, SessionRef,
    SubscribeError, Topic,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{BITS, Ctx, HPKE, Seq, install_echo, raw_frame, server_encryption};

// ---------------------------------------------------------------------------------------------
// helpers

/// Starts both services (the server echoing every `Seq`) and the server's listener.
async fn setup_echo(ctx: &Ctx, server: Config, client: Config) -> String {
    ctx.start(server, client).await;
    let h = ctx.server.clone();
    ctx.server.exec(move |s| install_echo(&h, s)).await;
    ctx.listen().await
}

/// The server-side id of the `n`-th (0-based) session the server opened.
async fn server_session(ctx: &Ctx, n: usize) -> SessionId {
    ctx.wait_for(&format!("the server to open session #{n}"), || {
        ctx.server.opened().len() > n
    })
    .await;
    ctx.server.opened()[n]
}

/// Sends `Seq`s `seqs` of `len` bytes on `s`, on the client host, in one go.
async fn send_all(ctx: &Ctx, s: &SessionRef, seqs: impl IntoIterator<Item = u64>, len: usize) {
    let s = s.clone();
    let seqs: Vec<u64> = seqs.into_iter().collect();
    ctx.client
        .exec(move |_| {
            for q in seqs {
                s.send(&Seq::new(q, len))
                    .unwrap_or_else(|e| panic!("send {q} on {}: {e}", s.id()));
            }
        })
        .await;
}

/// Sends `Seq` `seq` from the client on `s` and waits for the server's echo of it.
async fn round_trip(ctx: &Ctx, s: &SessionRef, seq: u64) {
    send_all(ctx, s, [seq], 16).await;
    let id = s.id();
    ctx.wait_for(&format!("the echo of {seq} on {id}"), || {
        ctx.client.msgs(id).last() == Some(&seq)
    })
    .await;
}

/// Closes client session `s` and waits until both sides published `Closed`.
async fn close_client_session(ctx: &Ctx, s: &SessionRef, server_id: SessionId) {
    let s2 = s.clone();
    ctx.client.exec(move |_| s2.close()).await;
    let id = s.id();
    ctx.wait_for(&format!("{id} closed on both sides"), || {
        ctx.client.closed(id).is_some() && ctx.server.closed(server_id).is_some()
    })
    .await;
    assert_eq!(ctx.client.closed(id), Some(CloseReason::Local));
    assert_eq!(ctx.server.closed(server_id), Some(CloseReason::PeerClosed));
}

/// Endings a side sees when its peer vanished or dropped it.
fn peer_gone(r: &CloseReason) -> bool {
    matches!(
        r,
        CloseReason::PeerClosed | CloseReason::Reset | CloseReason::Io(_)
    )
}

/// Endings an encrypted session sees when its peer's host dies (no authenticated close was
/// sent): the end of stream is `Truncated`, or the connection is reset (the dead host had
/// unread data, or our write met its closed socket). Never `PeerClosed`.
fn crashed_under_hpke(r: &CloseReason) -> bool {
    matches!(
        r,
        CloseReason::Crypto(CryptoError::Truncated) | CloseReason::Reset
    )
}

/// Bytes a "bits-hpke" record adds around its payload: length, type, tag.
const RECORD_OVERHEAD: u64 = 4 + 1 + 16;
/// The default largest record payload (`Encryption::max_record`).
const MAX_RECORD: u64 = 16 << 10;

/// Checks that `wire` bytes on an encrypted session are `payload` bytes of frames sealed in
/// whole records, and returns how many records: every record is full or carries the rest of
/// one batch of queued sends, so there are at least `payload / MAX_RECORD` (rounded up) and
/// at most one partial record per send plus the full ones.
fn records_in(wire: u64, payload: u64, sends: u64, what: &str) -> u64 {
    assert!(
        wire >= payload && (wire - payload).is_multiple_of(RECORD_OVERHEAD),
        "{what}: {wire} wire bytes are not {payload} payload bytes in whole records"
    );
    let records = (wire - payload) / RECORD_OVERHEAD;
    let (min, max) = (payload.div_ceil(MAX_RECORD), sends + payload / MAX_RECORD);
    assert!(
        (min..=max).contains(&records),
        "{what}: {records} records for {payload} bytes in {sends} sends (expected {min}..={max})"
    );
    records
}

/// (slot, generation) from the `#slot.gen` form, cross-checked against the raw layout.
fn slot_gen(id: SessionId) -> (u32, u32) {
    let text = id.to_string();
    let (slot, generation) = text
        .strip_prefix('#')
        .and_then(|t| t.split_once('.'))
        .unwrap_or_else(|| panic!("id {text:?} is not #slot.gen"));
    let (slot, generation): (u32, u32) = (slot.parse().unwrap(), generation.parse().unwrap());
    assert_eq!(slot, (id.get() & 0x1_FFFF) - 1, "{text}");
    assert_eq!(generation, id.get() >> 17, "{text}");
    assert_eq!(SessionId::from_raw(id.get()), Some(id));
    (slot, generation)
}

/// Reads `raw` to its end (bounded); returns the bytes and whether it ended cleanly.
async fn read_to_end(ctx: &Ctx, raw: &mut laxnet::runtime::BoxStream) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    ctx.within("the raw peer's stream to end", async {
        loop {
            match raw.read(&mut buf).await {
                Ok(0) => return (got, true),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => return (got, false),
            }
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// 1. echo

pub(crate) async fn echo(ctx: Arc<Ctx>) {
    setup_echo(&ctx, Config::default(), Config::default()).await;
    // The client also listens through an Inbox (the async alternative to callbacks).
    let proto = ctx.protocol();
    let mut inbox = ctx
        .client
        .exec(move |svc| {
            let mut inbox = svc.inbox();
            inbox
                .sessions(proto)
                .unwrap()
                .messages::<Seq>(proto)
                .unwrap();
            inbox
        })
        .await;
    let sess = ctx.connect().await;
    let id = sess.id();
    const N: u64 = 300;
    // Empty, small and segment-crossing (> 16 KiB) payloads.
    let len = |q: u64| match q % 50 {
        0 => 40_000,
        1 => 0,
        k => (k * 37) as usize,
    };
    let expected: u64 = (0..N).map(|q| Seq::new(q, len(q)).wire_len()).sum();
    // A burst from one synchronous call, then sends spread over time.
    let s = sess.clone();
    ctx.client
        .exec(move |_| {
            for q in 0..100 {
                s.send(&Seq::new(q, len(q))).unwrap();
            }
        })
        .await;
    let s = sess.clone();
    ctx.client
        .exec_async(move |_| async move {
            for q in 100..N {
                s.send(&Seq::new(q, len(q))).unwrap();
                if q % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
        .await;
    ctx.wait_for("all echoes", || ctx.client.msgs(id).len() as u64 >= N)
        .await;
    assert_eq!(ctx.client.msgs(id), (0..N).collect::<Vec<_>>());
    let srv_id = server_session(&ctx, 0).await;
    assert_eq!(ctx.server.msgs(srv_id), (0..N).collect::<Vec<_>>());
    assert_eq!(ctx.client.sessions()[&id].bytes, expected);
    let (cl, sl) = (&ctx.client.sessions()[&id], &ctx.server.sessions()[&srv_id]);
    assert_eq!(
        (cl.dir, sl.dir),
        (Direction::Connected, Direction::Accepted)
    );
    assert_eq!(cl.peer, sess.peer_addr());
    assert_eq!(sess.direction(), Direction::Connected);
    assert_eq!(sess.protocol(), proto);

    let (c, s) = (ctx.client.status().await, ctx.server.status().await);
    assert_eq!((c.connected, c.accepted), (1, 0), "{c}");
    assert_eq!((s.connected, s.accepted), (0, 1), "{s}");
    // Byte counters count the wire: the frames themselves over "bits"; records (every frame
    // byte once, plus each record's overhead) over "bits-hpke", the handshake excluded. Every
    // frame arrived, so every record did: what one side wrote, the other read.
    let (up, down) = if ctx.encrypted() {
        assert_eq!(
            (c.bytes_out, c.bytes_in),
            (s.bytes_in, s.bytes_out),
            "{c}\n{s}"
        );
        records_in(c.bytes_out, expected, N, "client -> server");
        records_in(c.bytes_in, expected, N, "server -> client");
        for st in [&c, &s] {
            assert_eq!((st.handshakes, st.handshake_failures), (1, 0), "{st}");
        }
        (c.bytes_out, c.bytes_in)
    } else {
        (expected, expected)
    };
    for (st, wire) in [(&c, (down, up)), (&s, (up, down))] {
        assert_eq!((st.msgs_in, st.msgs_out), (N, N), "{st}");
        assert_eq!((st.bytes_in, st.bytes_out), wire, "{st}");
        assert_eq!(st.live(), 1, "{st}");
    }
    // The per-session listing agrees, and nothing is left queued.
    let info = ctx.client.exec(|s| s.sessions()).await;
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].id, id);
    assert_eq!((info[0].msgs_in, info[0].msgs_out), (N, N));
    assert_eq!((info[0].bytes_in, info[0].bytes_out), (down, up));
    assert_eq!(info[0].queued, 0);
    assert_eq!(info[0].protocol, proto);

    close_client_session(&ctx, &sess, srv_id).await;
    ctx.assert_no_leaks().await;
    // The inbox saw the same story as the callbacks: Opened, every echo in order, Closed.
    let mut seen = Vec::new();
    while let Some(ev) = inbox.try_recv() {
        seen.push(match ev {
            Event::Session(SessionEvent::Opened { session, .. }) => {
                assert_eq!(session.id(), id);
                "opened".to_string()
            }
            Event::Session(SessionEvent::Closed { id: i, reason }) => {
                assert_eq!((i, reason), (id, CloseReason::Local));
                "closed".to_string()
            }
            Event::Message(m) => {
                let m = m.downcast::<Seq>().expect("a Seq");
                assert_eq!(m.session.id(), id);
                assert!(m.msg.intact());
                m.msg.seq.to_string()
            }
            other => panic!("unexpected inbox event {other:?}"),
        });
    }
    let mut want = vec!["opened".to_string()];
    want.extend((0..N).map(|q| q.to_string()));
    want.push("closed".to_string());
    assert_eq!(seen, want);
    ctx.client.exec(move |_| drop(inbox)).await;
    // Counters of destroyed sessions are kept; a clean encrypted close added exactly one
    // (empty) authenticated Close record each way.
    let close = if ctx.encrypted() { RECORD_OVERHEAD } else { 0 };
    let (c, s) = (ctx.client.status().await, ctx.server.status().await);
    for (st, (wire_in, wire_out)) in [(&c, (down, up)), (&s, (up, down))] {
        assert_eq!((st.msgs_in, st.msgs_out), (N, N), "{st}");
        assert_eq!(
            (st.bytes_in, st.bytes_out),
            (wire_in + close, wire_out + close),
            "{st}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. many sessions

pub(crate) async fn many_sessions(ctx: Arc<Ctx>) {
    // A debug build spends ~80 ms of CPU per encrypted handshake (both sides): fewer, still
    // concurrent, sessions under encryption.
    let sessions: usize = if ctx.encrypted() { 12 } else { 120 };
    const PER: u64 = 5;
    let addr = setup_echo(&ctx, Config::default(), Config::default()).await;
    let proto = ctx.protocol();
    let refs: Vec<SessionRef> = ctx
        .client
        .exec_async(move |svc: Service| async move {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..sessions {
                let (svc, addr) = (svc.clone(), addr.clone());
                set.spawn(async move { (i, svc.connect(&addr, proto).await) });
            }
            let mut out = vec![None; sessions];
            while let Some(r) = set.join_next().await {
                let (i, r) = r.expect("connect task");
                out[i] = Some(r.unwrap_or_else(|e| panic!("connect {i}: {e}")));
            }
            out.into_iter().map(Option::unwrap).collect()
        })
        .await;
    // Interleaved: message k of every session, then message k + 1 of every session.
    let r2 = refs.clone();
    ctx.client
        .exec(move |_| {
            for k in 0..PER {
                for (i, s) in r2.iter().enumerate() {
                    s.send(&Seq::new(i as u64 * 1000 + k, 8 + i)).unwrap();
                }
            }
        })
        .await;
    let total = sessions as u64 * PER;
    ctx.wait_for("every echo", || {
        ctx.client
            .sessions()
            .values()
            .map(|s| s.msgs.len() as u64)
            .sum::<u64>()
            >= total
    })
    .await;
    for (i, s) in refs.iter().enumerate() {
        let want: Vec<u64> = (0..PER).map(|k| i as u64 * 1000 + k).collect();
        assert_eq!(ctx.client.msgs(s.id()), want, "client session {i}");
    }
    let server = ctx.server.sessions();
    assert_eq!(server.len(), sessions);
    for s in server.values() {
        let base = s.msgs[0] / 1000 * 1000;
        let want: Vec<u64> = (0..PER).map(|k| base + k).collect();
        assert_eq!(s.msgs, want, "server session {}", s.id);
    }
    let st = ctx.server.status().await;
    assert_eq!(st.accepted, sessions as u64, "{st}");
    assert_eq!(st.live(), sessions, "{st}");
    assert_eq!(st.slots, sessions, "{st}");
    assert_eq!(st.msgs_in, total, "{st}");

    let r2 = refs.clone();
    ctx.client
        .exec(move |_| r2.iter().for_each(|s| s.close()))
        .await;
    ctx.wait_for("every session closed on both sides", || {
        ctx.client.sessions().values().all(|s| s.closed.is_some())
            && ctx.server.sessions().values().all(|s| s.closed.is_some())
    })
    .await;
    for s in ctx.client.sessions().values() {
        assert_eq!(s.closed, Some(CloseReason::Local), "{}", s.id);
    }
    for s in ctx.server.sessions().values() {
        assert_eq!(s.closed, Some(CloseReason::PeerClosed), "{}", s.id);
    }
    ctx.assert_no_leaks().await;
    let st = ctx.server.status().await;
    assert_eq!(st.closed("peer-closed"), sessions as u64, "{st}");
}

// ---------------------------------------------------------------------------------------------
// 3. close from either side

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Server,
    Client,
}

async fn close_from(ctx: Arc<Ctx>, side: Side) {
    setup_echo(&ctx, Config::default(), Config::default()).await;
    const SESSIONS: usize = 3;
    let mut pairs = Vec::new();
    for n in 0..SESSIONS {
        let c = ctx.connect().await;
        let s = server_session(&ctx, n).await;
        pairs.push((c, s));
    }
    for (c, _) in &pairs {
        send_all(&ctx, c, 0..10, 32).await;
    }
    ctx.wait_for("the echoes", || {
        pairs
            .iter()
            .all(|(c, _)| ctx.client.msgs(c.id()).len() == 10)
    })
    .await;
    // The closing side queues a few more messages and closes at once: they still arrive,
    // before the other side's `Closed`.
    let refs: Vec<SessionRef> = match side {
        Side::Client => pairs.iter().map(|(c, _)| c.clone()).collect(),
        Side::Server => {
            let ids: Vec<SessionId> = pairs.iter().map(|(_, s)| *s).collect();
            ctx.server
                .exec(move |svc| ids.iter().map(|i| svc.acquire(*i).unwrap()).collect())
                .await
        }
    };
    let host = match side {
        Side::Client => &ctx.client,
        Side::Server => &ctx.server,
    };
    let r2 = refs.clone();
    host.exec(move |_| {
        for s in &r2 {
            for q in 100..105 {
                s.send(&Seq::new(q, 64)).unwrap();
            }
            assert!(s.is_open());
            s.close();
            assert!(!s.is_open());
            assert_eq!(
                s.send(&Seq::new(999, 1)),
                Err(SendError::Closed(CloseReason::Local))
            );
            s.close(); // idempotent
        }
    })
    .await;
    ctx.wait_for("every session closed on both sides", || {
        ctx.client.sessions().values().all(|s| s.closed.is_some())
            && ctx.server.sessions().values().all(|s| s.closed.is_some())
    })
    .await;
    let (local, remote) = match side {
        Side::Client => (&ctx.client, &ctx.server),
        Side::Server => (&ctx.server, &ctx.client),
    };
    // `sessions()` already checked: one Opened first, messages, exactly one Closed last.
    for s in local.sessions().values() {
        assert_eq!(
            s.closed,
            Some(CloseReason::Local),
            "{side:?} side, {}",
            s.id
        );
    }
    for s in remote.sessions().values() {
        assert_eq!(
            s.closed,
            Some(CloseReason::PeerClosed),
            "other side, {}",
            s.id
        );
    }
    // The messages queued right before close() all arrived.
    for (c, s) in &pairs {
        let (client_msgs, server_msgs) = (ctx.client.msgs(c.id()), ctx.server.msgs(*s));
        match side {
            Side::Client => {
                let mut want: Vec<u64> = (0..10).collect();
                want.extend(100..105);
                assert_eq!(server_msgs, want);
            }
            Side::Server => {
                let mut want: Vec<u64> = (0..10).collect();
                want.extend(100..105);
                assert_eq!(client_msgs, want);
            }
        }
    }
    ctx.assert_no_leaks().await;
    // Refs on either side are stale once their session is destroyed.
    let r2 = refs.clone();
    let res = host
        .exec(move |_| {
            r2.iter()
                .map(|s| s.send(&Seq::new(1, 1)))
                .collect::<Vec<_>>()
        })
        .await;
    assert!(res.iter().all(|r| *r == Err(SendError::Stale)), "{res:?}");
    let st = local.status().await;
    assert_eq!(st.closed("local"), SESSIONS as u64, "{st}");
    assert_eq!(st.linger_expired, 0, "{st}");
}

pub(crate) async fn close_from_server(ctx: Arc<Ctx>) {
    close_from(ctx, Side::Server).await
}

pub(crate) async fn close_from_client(ctx: Arc<Ctx>) {
    close_from(ctx, Side::Client).await
}

// ---------------------------------------------------------------------------------------------
// 4. close with queued data

pub(crate) async fn close_with_queued_data(ctx: Arc<Ctx>) {
    const LEN: usize = 1500;
    // ~3 MB in all, under a 4 MiB send queue limit; under encryption ~450 KB (a debug build
    // seals and opens ~1 MB a second), still all queued before the close.
    let n: u64 = if ctx.encrypted() { 300 } else { 2000 };
    let mut config = Config::default();
    config.send_queue_limit = 4 << 20;
    ctx.start(config.clone(), config).await;
    ctx.listen().await;

    // Client -> server.
    let c = ctx.connect().await;
    let srv = server_session(&ctx, 0).await;
    let c2 = c.clone();
    ctx.client
        .exec(move |_| {
            for q in 0..n {
                c2.send(&Seq::new(q, LEN)).unwrap();
            }
            c2.close();
        })
        .await;
    ctx.wait_for("the server to see the close", || {
        ctx.server.closed(srv).is_some()
    })
    .await;
    assert_eq!(ctx.server.msgs(srv), (0..n).collect::<Vec<_>>());
    assert_eq!(ctx.server.closed(srv), Some(CloseReason::PeerClosed));
    ctx.wait_for("the client's Closed", || {
        ctx.client.closed(c.id()).is_some()
    })
    .await;
    assert_eq!(ctx.client.closed(c.id()), Some(CloseReason::Local));

    // Server -> client.
    let c = ctx.connect().await;
    let srv = server_session(&ctx, 1).await;
    ctx.server
        .exec(move |svc| {
            let s = svc.acquire(srv).unwrap();
            for q in 0..n {
                s.send(&Seq::new(q, LEN)).unwrap();
            }
            s.close();
        })
        .await;
    ctx.wait_for("the client to see the close", || {
        ctx.client.closed(c.id()).is_some()
    })
    .await;
    assert_eq!(ctx.client.msgs(c.id()), (0..n).collect::<Vec<_>>());
    assert_eq!(ctx.client.closed(c.id()), Some(CloseReason::PeerClosed));
    ctx.wait_for("the server's Closed", || ctx.server.closed(srv).is_some())
        .await;
    assert_eq!(ctx.server.closed(srv), Some(CloseReason::Local));

    ctx.assert_no_leaks().await;
    let (c, s) = (ctx.client.status().await, ctx.server.status().await);
    for st in [&c, &s] {
        assert_eq!(st.linger_expired, 0, "{st}");
        assert_eq!((st.msgs_in, st.msgs_out), (n, n), "{st}");
    }
    if ctx.encrypted() {
        // Everything written was read, and each side wrote its n frames in records plus one
        // authenticated Close record per session.
        assert_eq!(
            (c.bytes_out, c.bytes_in),
            (s.bytes_in, s.bytes_out),
            "{c}\n{s}"
        );
        let payload = n * Seq::new(0, LEN).wire_len();
        for (wire, what) in [
            (c.bytes_out, "client -> server"),
            (s.bytes_out, "server -> client"),
        ] {
            records_in(wire - 2 * RECORD_OVERHEAD, payload, n, what);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 5. peer crash

pub(crate) async fn peer_crash(ctx: Arc<Ctx>) {
    setup_echo(&ctx, Config::default(), Config::default()).await;
    let c = ctx.connect().await;
    let srv = server_session(&ctx, 0).await;
    for q in 0..5 {
        round_trip(&ctx, &c, q).await;
    }
    // Leave traffic in flight both ways when the client dies.
    send_all(&ctx, &c, 5..50, 2000).await;
    ctx.server
        .exec(move |svc| {
            let s = svc.acquire(srv).unwrap();
            for q in 1000..1050 {
                let _ = s.send(&Seq::new(q, 2000));
            }
        })
        .await;
    let old = ctx.client.incarnation();
    ctx.crash_client().await;

    ctx.wait_for("the server to notice the crash", || {
        ctx.server.closed(srv).is_some()
    })
    .await;
    let reason = ctx.server.closed(srv).unwrap();
    if ctx.encrypted() {
        // The crashed client never sent its authenticated Close record. The simulation is
        // deterministic per seed: with the suite's seeds the crashed host had no unread data,
        // so its sockets ended with a FIN (turmoil resets only streams with unread data), and
        // the server read an end of stream without a Close record.
        if ctx.is_sim() {
            assert_eq!(
                reason,
                CloseReason::Crypto(CryptoError::Truncated),
                "seed {}",
                ctx.seed()
            );
        }
        assert!(crashed_under_hpke(&reason), "server saw {reason:?}");
    } else {
        assert!(peer_gone(&reason), "server saw {reason:?}");
    }
    // The crashed host's session task was dropped: exactly one Closed(Aborted) there.
    let dead = crate::harness::sessions_of(&ctx.client.events_of(old));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[&c.id()].closed, Some(CloseReason::Aborted));
    // The echoes of the crashed session that were still running fail, but never panic.
    ctx.wait_until("the server to destroy the session", async || {
        ctx.server.status().await.live() == 0
    })
    .await;

    // The server keeps serving.
    ctx.restart_client().await;
    assert_eq!(ctx.client.incarnation(), old + 1);
    let c2 = ctx.connect().await;
    let srv2 = server_session(&ctx, 1).await;
    assert_ne!(srv, srv2);
    for q in 0..5 {
        round_trip(&ctx, &c2, q).await;
    }
    close_client_session(&ctx, &c2, srv2).await;
    // Exactly one Closed per server session, all checked by `sessions()`.
    let server = ctx.server.sessions();
    assert_eq!(server.len(), 2);
    assert!(server.values().all(|s| s.closed.is_some()));
    ctx.assert_no_leaks().await;
    let st = ctx.server.status().await;
    assert_eq!(st.accepted, 2, "{st}");
}

// ---------------------------------------------------------------------------------------------
// 6. heartbeat against a silent peer

/// The peer that stops talking.
enum Silent {
    /// "bits": a raw socket that never sends a byte.
    Raw(laxnet::runtime::BoxStream),
    /// "bits-hpke" (a raw socket cannot complete the handshake): a real encrypted client
    /// session that does one round trip, then never sends again.
    Session(SessionRef),
}

/// The silent peer's `Seq`s before the server's heartbeat check dropped it.
const SILENT_BEFORE: u64 = 40;

pub(crate) async fn heartbeat_silent_peer(ctx: Arc<Ctx>) {
    // Virtual time is exact; real time gets generous margins.
    let sim = ctx.is_sim();
    let t = if sim {
        Duration::from_secs(2)
    } else {
        Duration::from_millis(1000)
    };
    let mut sc = Config::default();
    sc.heartbeat = Some(t);
    setup_echo(&ctx, sc, Config::default()).await;
    let good = ctx.connect().await;
    let good_srv = server_session(&ctx, 0).await;
    let silent = if ctx.encrypted() {
        let s = ctx.connect().await;
        round_trip(&ctx, &s, SILENT_BEFORE).await;
        Silent::Session(s)
    } else {
        Silent::Raw(ctx.raw_connect().await.expect("raw connect"))
    };
    let silent_id = server_session(&ctx, 1).await;

    // The server probes the silent session just before and just after the timeout, measuring
    // the silence on its own clock.
    let probe = ctx.server.spawn(move |svc: Service| async move {
        let s = svc.acquire(silent_id).unwrap();
        let idle = || {
            svc.sessions()
                .into_iter()
                .find(|i| i.id == silent_id)
                .map(|i| i.idle)
                .unwrap()
        };
        // Late enough that a timeout fired early (at T/2, say) is caught on both backends.
        let before_target = if sim {
            t - Duration::from_millis(10)
        } else {
            t * 6 / 10
        };
        let i = idle();
        if i < before_target {
            tokio::time::sleep(before_target - i).await;
        }
        let before = idle();
        let r1 = s.send(&Seq::new(7, 0));
        let open1 = s.is_open();
        let after_target = t + Duration::from_millis(10);
        let i = idle();
        if i < after_target {
            tokio::time::sleep(after_target - i).await;
        }
        let after = idle();
        let r2 = s.send(&Seq::new(8, 0));
        let r3 = s.send(&Seq::new(9, 0));
        (before, r1, open1, after, r2, r3)
    });
    // Meanwhile the good session keeps talking (its echoes are sends too).
    let pings = async {
        let mut q = 0;
        let stop = if ctx.is_sim() { t * 2 } else { t * 3 / 2 };
        let start = tokio::time::Instant::now();
        while tokio::time::Instant::now() - start < stop {
            round_trip(&ctx, &good, q).await;
            q += 1;
            ctx.sleep(t / 10).await;
        }
        q
    };
    let ((before, r1, open1, after, r2, r3), pinged) = tokio::join!(probe, pings);

    let guard = if sim {
        Duration::ZERO
    } else {
        Duration::from_millis(200)
    };
    if before + guard < t {
        assert_eq!(
            r1,
            Ok(()),
            "send after {before:?} of silence (timeout {t:?})"
        );
        assert!(open1);
    } else {
        eprintln!("heartbeat: machine too slow to probe before the timeout ({before:?})");
    }
    if sim {
        assert!(before >= t - Duration::from_millis(20), "{before:?}");
    }
    assert!(after > t, "{after:?}");
    assert_eq!(r2, Err(SendError::Closed(CloseReason::Heartbeat)));
    assert!(
        r3 == Err(SendError::Closed(CloseReason::Heartbeat)) || r3 == Err(SendError::Stale),
        "{r3:?}"
    );
    ctx.wait_for("the server's Closed(Heartbeat)", || {
        ctx.server.closed(silent_id).is_some()
    })
    .await;
    assert_eq!(ctx.server.closed(silent_id), Some(CloseReason::Heartbeat));
    let st = ctx.server.status().await;
    assert_eq!(st.heartbeat_expiries, 1, "{st}");
    assert_eq!(st.closed("heartbeat"), 1, "{st}");
    // The silent peer got exactly the frame sent before the timeout, then its stream ended.
    let probed_in_time = before + guard < t;
    let silent = match silent {
        Silent::Raw(mut raw) => {
            let (bytes, clean) = read_to_end(&ctx, &mut raw).await;
            if probed_in_time {
                assert_eq!(bytes, Seq::new(7, 0).frame());
            }
            assert!(clean, "the stream of the expired session was reset");
            Some(raw)
        }
        Silent::Session(s) => {
            // A heartbeat expiry is abortive: the server drops the connection without an
            // authenticated Close record, so the client must see a truncated stream (an end
            // of stream, not a reset: the server had read everything the client sent).
            let id = s.id();
            ctx.wait_for("the silent client's Closed", || {
                ctx.client.closed(id).is_some()
            })
            .await;
            assert_eq!(
                ctx.client.closed(id),
                Some(CloseReason::Crypto(CryptoError::Truncated))
            );
            let got = ctx.client.msgs(id);
            if probed_in_time {
                assert_eq!(got, [SILENT_BEFORE, 7]);
            } else {
                assert!(
                    got == [SILENT_BEFORE] || got == [SILENT_BEFORE, 7],
                    "{got:?}"
                );
            }
            assert_eq!(ctx.server.msgs(silent_id), [SILENT_BEFORE]);
            let c = ctx.client.status().await;
            assert_eq!(c.closed("crypto"), 1, "{c}");
            None
        }
    };

    // The talking session was never closed, and every ping came back in order.
    assert!(pinged >= 5, "{pinged}");
    assert_eq!(ctx.client.msgs(good.id()), (0..pinged).collect::<Vec<_>>());
    assert_eq!(ctx.server.closed(good_srv), None);
    assert_eq!(ctx.client.closed(good.id()), None);
    close_client_session(&ctx, &good, good_srv).await;
    drop(silent);
    ctx.assert_no_leaks().await;
}

// ---------------------------------------------------------------------------------------------
// 7. stale refs

pub(crate) async fn stale_ref(ctx: Arc<Ctx>) {
    let mut sc = Config::default();
    sc.max_sessions = 1;
    setup_echo(&ctx, sc, Config::default()).await;
    let a = ctx.connect().await;
    let a_srv = server_session(&ctx, 0).await;
    let ra: SessionRef = ctx.server.exec(move |s| s.acquire(a_srv).unwrap()).await;
    assert_eq!(ra.id(), a_srv);
    let ra2 = ra.clone();
    assert_eq!(
        ctx.server.exec(move |_| ra2.send(&Seq::new(1, 4))).await,
        Ok(())
    );
    ctx.wait_for("A to get 1", || ctx.client.msgs(a.id()) == [1])
        .await;
    close_client_session(&ctx, &a, a_srv).await;
    ctx.wait_until("A destroyed on the server", async || {
        ctx.server.status().await.live() == 0
    })
    .await;

    let b = ctx.connect().await;
    let b_srv = server_session(&ctx, 1).await;
    assert_ne!(a_srv, b_srv);
    let (sa, ga) = slot_gen(a_srv);
    let (sb, gb) = slot_gen(b_srv);
    assert_eq!(sa, sb, "B reuses A's slot ({a_srv} / {b_srv})");
    assert_eq!(
        gb,
        (ga + 1) % (1 << 15),
        "B has the next generation ({a_srv} / {b_srv})"
    );

    let ra2 = ra.clone();
    let (send, open, acquired, on_close, b_open) = ctx
        .server
        .exec(move |svc| {
            let send = ra2.send(&Seq::new(666, 4));
            ra2.close(); // must not touch B
            (
                send,
                ra2.is_open(),
                svc.acquire(a_srv).is_some(),
                svc.on_close(a_srv, |_| {}),
                svc.acquire(b_srv).map(|r| r.is_open()),
            )
        })
        .await;
    assert_eq!(send, Err(SendError::Stale));
    assert!(!open);
    assert!(!acquired, "acquire(old id) found a session");
    assert_eq!(on_close, Err(SubscribeError::SessionGone));
    assert_eq!(b_open, Some(true), "B was closed through A's stale ref");
    // B gets what is sent to B, and nothing that was sent through A's ref.
    ctx.server
        .exec(move |svc| svc.acquire(b_srv).unwrap().send(&Seq::new(777, 4)))
        .await
        .unwrap();
    ctx.wait_for("B to get 777", || !ctx.client.msgs(b.id()).is_empty())
        .await;
    round_trip(&ctx, &b, 5).await;
    assert_eq!(ctx.client.msgs(b.id()), [777, 5]);
    assert_eq!(ctx.client.closed(b.id()), None);
    close_client_session(&ctx, &b, b_srv).await;
    ctx.assert_no_leaks().await;
    let st = ctx.server.status().await;
    assert_eq!((st.accepted, st.refused, st.slots), (2, 0, 1), "{st}");
}

// ---------------------------------------------------------------------------------------------
// 8. unknown protocol

pub(crate) async fn unknown_protocol(ctx: Arc<Ctx>) {
    ctx.start(Config::default(), Config::default()).await;
    let addr = ctx.listen().await;
    let bind = ctx.bind_addr();
    let (accept, sub_s, sub_m, inbox_s, inbox_m, protocols) = ctx
        .server
        .exec_async(move |svc: Service| async move {
            let accept = svc.accept(bind, "nope").await.map(|_| ());
            let sub_s = svc.sub(Topic::sessions("nope"), |_| {});
            let sub_m = svc.sub(Topic::message::<Seq>("nope"), |_| {});
            let mut inbox = svc.inbox();
            let inbox_s = inbox.sessions("nope").map(|_| ());
            let inbox_m = inbox.messages::<Seq>("nope").map(|_| ());
            (accept, sub_s, sub_m, inbox_s, inbox_m, svc.protocols())
        })
        .await;
    assert!(
        matches!(&accept, Err(AcceptError::UnknownProtocol(p)) if p == "nope"),
        "{accept:?}"
    );
    let unknown = SubscribeError::UnknownProtocol("nope".into());
    assert_eq!(sub_s.unwrap_err(), unknown);
    assert_eq!(sub_m.unwrap_err(), unknown);
    assert_eq!(inbox_s.unwrap_err(), unknown);
    assert_eq!(inbox_m.unwrap_err(), unknown);
    assert!(protocols.iter().any(|p| p == BITS), "{protocols:?}");
    assert!(!protocols.iter().any(|p| p == "nope"), "{protocols:?}");
    let a = addr.clone();
    let connect = ctx
        .client
        .exec_async(move |svc: Service| async move { svc.connect(&a, "nope").await.map(|_| ()) })
        .await;
    assert!(
        matches!(&connect, Err(ConnectError::UnknownProtocol(p)) if p == "nope"),
        "{connect:?}"
    );
    // Refused before touching the network.
    let (c, s) = (ctx.client.status().await, ctx.server.status().await);
    assert_eq!((c.connected, c.connect_failures), (0, 0), "{c}");
    assert_eq!(s.accepted, 0, "{s}");
    // "bits" still works.
    let c = ctx.connect().await;
    let srv = server_session(&ctx, 0).await;
    close_client_session(&ctx, &c, srv).await;
    ctx.assert_no_leaks().await;
}

// ---------------------------------------------------------------------------------------------
// 9. bad input

/// A seeded xorshift stream of bytes.
fn garbage(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

enum Expect {
    Exactly(ProtocolViolation),
    AnyProtocol,
}

pub(crate) async fn bad_input(ctx: Arc<Ctx>) {
    const MAX: usize = 4096;
    let mut sc = Config::default();
    sc.max_frame = MAX;
    setup_echo(&ctx, sc, Config::default()).await;
    let good = ctx.connect().await;
    let good_srv = server_session(&ctx, 0).await;

    // The good session talks the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let (g, st) = (good.clone(), stop.clone());
    let pinger = ctx.client.spawn(move |_| async move {
        let mut q = 0u64;
        while !st.load(SeqCst) {
            g.send(&Seq::new(q, 100)).unwrap();
            q += 1;
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        q
    });
    // The server watches its pool: nobody's claimed frame size may ever be allocated.
    let st = stop.clone();
    let sampler = ctx.server.spawn(move |svc: Service| async move {
        let mut max = 0;
        while !st.load(SeqCst) {
            max = max.max(svc.status().pool.in_use_bytes);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        max
    });

    let huge: u32 = 64 << 20;
    let mut attacks: Vec<(&str, Vec<u8>, bool, Expect)> = vec![
        (
            "header claiming 64 MiB",
            {
                let mut b = huge.to_le_bytes().to_vec();
                b.extend_from_slice(&1u32.to_le_bytes());
                b.extend_from_slice(&[0u8; 100]);
                b
            },
            false,
            Expect::Exactly(ProtocolViolation::FrameTooLarge {
                len: huge,
                max: MAX as u32,
            }),
        ),
        (
            "one byte over the maximum",
            {
                // A frame of exactly the maximum is fine (it is echoed below), the next is not.
                let mut b = Seq::new(4242, MAX - 16).frame();
                assert_eq!(b.len(), MAX + 4);
                b.extend_from_slice(&(MAX as u32 + 1).to_le_bytes());
                b.extend_from_slice(&[0u8; 64]);
                b
            },
            false,
            Expect::Exactly(ProtocolViolation::FrameTooLarge {
                len: MAX as u32 + 1,
                max: MAX as u32,
            }),
        ),
        (
            "unknown message id",
            raw_frame(999, &[1, 2, 3]),
            false,
            Expect::Exactly(ProtocolViolation::UnknownMessage { id: 999 }),
        ),
        (
            "undecodable body",
            raw_frame(Seq::ID, &[1, 2, 3]),
            false,
            Expect::Exactly(ProtocolViolation::Undecodable {
                id: Seq::ID,
                type_name: Seq::name(),
            }),
        ),
        (
            "frame too short for an id",
            vec![2, 0, 0, 0, 9, 9],
            false,
            Expect::Exactly(ProtocolViolation::FrameTooShort { len: 2 }),
        ),
        (
            "stream ends inside a frame",
            Seq::new(1, 50).frame()[..30].to_vec(),
            true,
            Expect::Exactly(ProtocolViolation::TruncatedFrame),
        ),
    ];
    for i in 0..3u64 {
        let mut g = garbage(ctx.seed() * 10 + i, 2000);
        if i == 2 {
            // Past the length check, so the id and body parsers see the garbage too.
            g[..4].copy_from_slice(&200u32.to_le_bytes());
        }
        attacks.push(("random garbage", g, true, Expect::AnyProtocol));
    }

    let mut raws = Vec::new();
    let attack_count = attacks.len();
    for (n, (what, bytes, eof, expect)) in attacks.into_iter().enumerate() {
        let mut raw = ctx.raw_connect().await.expect("raw connect");
        let id = server_session(&ctx, n + 1).await;
        let _ = raw.write_all(&bytes).await;
        if eof {
            let _ = raw.shutdown().await;
        }
        ctx.wait_for(&format!("attack {what:?} to close {id}"), || {
            ctx.server.closed(id).is_some()
        })
        .await;
        let reason = ctx.server.closed(id).unwrap();
        match expect {
            Expect::Exactly(v) => {
                assert_eq!(reason, CloseReason::Protocol(v), "attack {what:?}")
            }
            Expect::AnyProtocol => assert!(
                matches!(reason, CloseReason::Protocol(_)),
                "attack {what:?}: {reason:?}"
            ),
        }
        // The good session still works after every attack.
        let before = ctx.client.msgs(good.id()).len();
        ctx.wait_for(&format!("pings to flow after attack {what:?}"), || {
            ctx.client.msgs(good.id()).len() >= before + 3
        })
        .await;
        raws.push(raw);
    }
    // The maximum-size frame of the second attack was accepted and echoed before the
    // oversize one closed its session.
    let boundary = ctx.server.opened()[2];
    assert_eq!(ctx.server.msgs(boundary), [4242]);

    stop.store(true, SeqCst);
    let (sent, max_in_use) = tokio::join!(pinger, sampler);
    ctx.wait_for("every ping echoed", || {
        ctx.client.msgs(good.id()).len() as u64 == sent
    })
    .await;
    assert_eq!(ctx.client.msgs(good.id()), (0..sent).collect::<Vec<_>>());
    assert_eq!(ctx.client.closed(good.id()), None);
    assert_eq!(ctx.server.closed(good_srv), None);
    let st = ctx.server.status().await;
    assert_eq!(st.closed("protocol"), attack_count as u64, "{st}");
    assert_eq!(st.pool.oversize_allocations, 0, "{st}");
    assert!(
        max_in_use < 1 << 20,
        "pool in use peaked at {max_in_use} bytes"
    );
    close_client_session(&ctx, &good, good_srv).await;
    drop(raws);
    ctx.assert_no_leaks().await;
}

// ---------------------------------------------------------------------------------------------
// 10. max sessions

pub(crate) async fn max_sessions(ctx: Arc<Ctx>) {
    let mut sc = Config::default();
    sc.max_sessions = 3;
    setup_echo(&ctx, sc, Config::default()).await;
    let admitted = if ctx.encrypted() {
        max_sessions_refused_before_handshake(&ctx).await
    } else {
        let mut clients = Vec::new();
        for _ in 0..5 {
            clients.push(ctx.connect().await);
        }
        ctx.wait_until("3 admitted, 2 refused", async || {
            let st = ctx.server.status().await;
            st.refused == 2 && st.live() == 3
        })
        .await;
        ctx.wait_for("the refused clients to see their sessions close", || {
            ctx.client
                .sessions()
                .values()
                .filter(|s| s.closed.is_some())
                .count()
                == 2
        })
        .await;
        let (refused, admitted): (Vec<_>, Vec<_>) = clients
            .iter()
            .cloned()
            .partition(|c| ctx.client.closed(c.id()).is_some());
        for c in &refused {
            let r = ctx.client.closed(c.id()).unwrap();
            assert!(peer_gone(&r), "refused client saw {r:?}");
        }
        admitted
    };
    for (q, c) in admitted.iter().enumerate() {
        round_trip(&ctx, c, q as u64).await;
    }
    let st = ctx.server.status().await;
    assert_eq!((st.accepted, st.refused, st.live()), (3, 2, 3), "{st}");
    assert_eq!(ctx.server.opened().len(), 3);

    // One leaves; a newcomer is admitted.
    let gone = &admitted[0];
    let gone_srv = *ctx
        .server
        .sessions()
        .values()
        .find(|s| s.msgs == [0])
        .map(|s| &s.id)
        .unwrap();
    close_client_session(&ctx, gone, gone_srv).await;
    ctx.wait_until("the slot to free up", async || {
        ctx.server.status().await.live() == 2
    })
    .await;
    let newcomer = ctx.connect().await;
    let newcomer_srv = server_session(&ctx, 3).await;
    round_trip(&ctx, &newcomer, 10).await;
    let st = ctx.server.status().await;
    assert_eq!((st.accepted, st.refused, st.live()), (4, 2, 3), "{st}");

    for c in admitted[1..].iter().chain([&newcomer]) {
        let c2 = c.clone();
        ctx.client.exec(move |_| c2.close()).await;
    }
    ctx.wait_for("everything closed", || {
        ctx.client.sessions().values().all(|s| s.closed.is_some())
            && ctx.server.sessions().values().all(|s| s.closed.is_some())
    })
    .await;
    assert_eq!(
        ctx.server.closed(newcomer_srv),
        Some(CloseReason::PeerClosed)
    );
    ctx.assert_no_leaks().await;
    if ctx.encrypted() {
        let (c, s) = (ctx.client.status().await, ctx.server.status().await);
        assert_eq!((s.handshakes, s.handshake_failures), (4, 0), "{s}");
        assert_eq!((c.handshakes, c.handshake_failures), (4, 2), "{c}");
        assert_eq!((c.connected, c.connect_failures), (4, 0), "{c}");
    }
}

/// Under "bits-hpke" a full server refuses a connection before the handshake (it drops the
/// stream at once), so the refused client's `connect` fails and no session exists on either
/// side. Each connection waits for the previous session to open on the server, so which ones
/// are refused is deterministic. Returns the three admitted sessions.
async fn max_sessions_refused_before_handshake(ctx: &Ctx) -> Vec<SessionRef> {
    let mut admitted = Vec::new();
    for n in 0..3 {
        admitted.push(ctx.connect().await);
        server_session(ctx, n).await;
    }
    for _ in 0..2 {
        match ctx.try_connect().await {
            // Our hello may or may not have reached the server before it dropped the stream:
            // an end of stream, or a reset.
            Err(ConnectError::Handshake(
                HandshakeError::Closed | HandshakeError::Io(std::io::ErrorKind::ConnectionReset),
            )) => {}
            Err(e) => panic!("refused connect failed with {e:?}"),
            Ok(s) => panic!("connect past max_sessions opened {}", s.id()),
        }
    }
    let st = ctx.server.status().await;
    assert_eq!((st.refused, st.live(), st.accepted), (2, 3, 3), "{st}");
    let c = ctx.client.status().await;
    assert_eq!((c.connected, c.handshake_failures), (3, 2), "{c}");
    assert_eq!(
        ctx.client.sessions().len(),
        3,
        "a refused client opened a session"
    );
    admitted
}

// ---------------------------------------------------------------------------------------------
// 11. shutdown

pub(crate) async fn shutdown(ctx: Arc<Ctx>) {
    const SESSIONS: usize = 4;
    const QUEUED: u64 = 50;
    setup_echo(&ctx, Config::default(), Config::default()).await;
    let mut clients = Vec::new();
    for n in 0..SESSIONS {
        let c = ctx.connect().await;
        round_trip(&ctx, &c, 0).await;
        server_session(&ctx, n).await;
        clients.push(c);
    }
    let accepted_before = ctx.server.status().await.accepted;
    // Every session has messages queued when the server shuts down: they are flushed first.
    let bind = ctx.bind_addr();
    let addr = ctx.server_addr();
    let proto = ctx.protocol();
    let done = ctx.server.spawn(move |svc: Service| async move {
        for s in svc.sessions() {
            let r = svc.acquire(s.id).unwrap();
            for q in 1000..1000 + QUEUED {
                r.send(&Seq::new(q, 300)).unwrap();
            }
        }
        svc.shutdown().await;
        let st = svc.status();
        let listed = svc.sessions().len();
        let accept = svc.accept(bind, proto).await.map(|_| ());
        let connect = svc.connect(&addr, proto).await.map(|_| ());
        svc.shutdown().await; // a second shutdown returns at once
        (st, listed, accept, connect)
    });
    let (st, listed, accept, connect) = ctx.within("server.shutdown()", done).await;
    assert_eq!(st.live(), 0, "{st}");
    assert_eq!(listed, 0);
    assert_eq!(st.pool.in_use_bytes, 0, "{st}");
    assert!(matches!(accept, Err(AcceptError::Shutdown)), "{accept:?}");
    assert!(
        matches!(connect, Err(ConnectError::Shutdown)),
        "{connect:?}"
    );
    assert_eq!(st.closed("shutdown"), SESSIONS as u64, "{st}");

    let server = ctx.server.sessions();
    assert_eq!(server.len(), SESSIONS);
    for s in server.values() {
        assert_eq!(s.closed, Some(CloseReason::Shutdown), "{}", s.id);
    }
    ctx.wait_for("the clients to see the shutdown", || {
        ctx.client.sessions().values().all(|s| s.closed.is_some())
    })
    .await;
    for c in &clients {
        let mut want = vec![0];
        want.extend(1000..1000 + QUEUED);
        assert_eq!(ctx.client.msgs(c.id()), want, "{}", c.id());
        assert_eq!(ctx.client.closed(c.id()), Some(CloseReason::PeerClosed));
    }
    // The listener is gone: a new connection is refused or dropped, never admitted.
    if let Ok(mut raw) = ctx.raw_connect().await {
        let _ = read_to_end(&ctx, &mut raw).await;
    }
    let st = ctx.server.status().await;
    assert_eq!(st.accepted, accepted_before, "{st}");
    assert_eq!(st.linger_expired, 0, "{st}");

    // The client shuts down too (nothing left to close), then refuses to connect.
    let addr = ctx.server_addr();
    let connect = ctx
        .client
        .exec_async(move |svc: Service| async move {
            svc.shutdown().await;
            svc.connect(&addr, proto).await.map(|_| ())
        })
        .await;
    assert!(
        matches!(connect, Err(ConnectError::Shutdown)),
        "{connect:?}"
    );
    ctx.assert_no_leaks().await;
}

// ---------------------------------------------------------------------------------------------
// 12. duplicate message ids

#[derive(BorshSerialize, BorshDeserialize, Debug, Clone)]
struct Impostor {
    x: u8,
}
laxnet::message!(Impostor = 1);

#[derive(BorshSerialize, BorshDeserialize, Debug, Clone)]
struct First42 {
    x: u32,
}
#[derive(BorshSerialize, BorshDeserialize, Debug, Clone)]
struct Second42 {
    y: u32,
}
laxnet::message!(First42 = 42, Second42 = 42);

pub(crate) async fn duplicate_message_id(ctx: Arc<Ctx>) {
    setup_echo(&ctx, Config::default(), Config::default()).await;
    let proto = ctx.protocol();
    let results = ctx
        .server
        .exec(move |svc| {
            let mut inbox = svc.inbox();
            vec![
                svc.register::<Impostor>(),
                svc.sub(Topic::message::<Impostor>(proto), |_| {})
                    .map(|_| ()),
                inbox.messages::<Impostor>(proto).map(|_| ()),
                svc.register::<Seq>(), // the same type again is fine
                svc.register::<First42>(),
                svc.register::<Second42>(),
                svc.sub(Topic::message::<Second42>(proto), |_| {})
                    .map(|_| ()),
                svc.register::<First42>(),
            ]
        })
        .await;
    let dup1 = Err(SubscribeError::DuplicateId {
        id: 1,
        existing: Seq::name(),
        refused: Impostor::name(),
    });
    let dup42 = Err(SubscribeError::DuplicateId {
        id: 42,
        existing: First42::name(),
        refused: Second42::name(),
    });
    assert_eq!(
        results,
        vec![
            dup1.clone(),
            dup1.clone(),
            dup1,
            Ok(()),
            Ok(()),
            dup42.clone(),
            dup42,
            Ok(())
        ]
    );
    // The refused registrations changed nothing: Seq still echoes, and id 42 decodes as the
    // first type (registered without subscribers: counted as unhandled, session kept).
    ctx.client
        .exec(|svc| svc.register::<Second42>())
        .await
        .unwrap();
    let c = ctx.connect().await;
    let srv = server_session(&ctx, 0).await;
    round_trip(&ctx, &c, 1).await;
    let c2 = c.clone();
    ctx.client
        .exec(move |_| c2.send(&Second42 { y: 7 }))
        .await
        .unwrap();
    round_trip(&ctx, &c, 2).await;
    let st = ctx.server.status().await;
    assert_eq!((st.unhandled, st.msgs_in), (1, 3), "{st}");
    assert_eq!(ctx.server.closed(srv), None);
    close_client_session(&ctx, &c, srv).await;
    ctx.assert_no_leaks().await;
}

// ---------------------------------------------------------------------------------------------
// 13. listener lifetime

/// `Acceptor` docs: "Dropping the handle keeps it listening; `Acceptor::close` or service
/// shutdown stops it."
pub(crate) async fn dropped_acceptor_keeps_listening(ctx: Arc<Ctx>) {
    ctx.start(Config::default(), Config::default()).await;
    let (b1, b2) = (ctx.bind_addr_n(0), ctx.bind_addr_n(1));
    let proto = ctx.protocol();
    let (dropped, closed) = ctx
        .server
        .exec_async(move |svc: Service| async move {
            let dropped = svc.accept(&b1, proto).await.unwrap().local_addr();
            let acc = svc.accept(&b2, proto).await.unwrap();
            acc.close();
            (dropped, acc.local_addr())
        })
        .await;
    // Give both accept loops time to react to their handles.
    ctx.sleep(Duration::from_millis(50)).await;
    let (a1, a2) = (ctx.dial_addr(dropped), ctx.dial_addr(closed));
    let (kept, stopped) = ctx
        .client
        .exec_async(move |svc: Service| async move {
            let kept = svc.connect(&a1, proto).await;
            let stopped = svc.connect(&a2, proto).await;
            (kept, stopped)
        })
        .await;
    let kept = kept.unwrap_or_else(|e| {
        panic!("the listener whose Acceptor was dropped no longer accepts: {e}")
    });
    let srv = server_session(&ctx, 0).await;
    round_trip_without_echo(&ctx, &kept, srv).await;
    // The closed listener admits nobody (the connect fails, or its stream is dropped). Under
    // encryption nobody answers the handshake, so the connect itself fails.
    if ctx.encrypted() {
        // Refused by the closed port, or (had the listener still been closing) dropped before
        // the server's hello.
        assert!(
            match &stopped {
                Err(ConnectError::Io(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
                Err(ConnectError::Handshake(h)) => matches!(
                    h,
                    HandshakeError::Closed
                        | HandshakeError::Io(std::io::ErrorKind::ConnectionReset)
                ),
                _ => false,
            },
            "{:?}",
            stopped.map(|s| s.id())
        );
    } else if let Ok(s) = stopped {
        ctx.wait_for("the closed listener's connection to be dropped", || {
            ctx.client.closed(s.id()).is_some()
        })
        .await;
    }
    ctx.sleep(Duration::from_millis(20)).await;
    let st = ctx.server.status().await;
    assert_eq!(st.accepted, 1, "{st}");
    if ctx.encrypted() {
        assert_eq!(st.handshakes, 1, "{st}");
    }
    close_client_session(&ctx, &kept, srv).await;
    ctx.assert_no_leaks().await;
}

/// A message from the client arrives on server session `srv`.
async fn round_trip_without_echo(ctx: &Ctx, c: &SessionRef, srv: SessionId) {
    send_all(ctx, c, [1], 8).await;
    ctx.wait_for("the server to receive 1", || ctx.server.msgs(srv) == [1])
        .await;
}

// ---------------------------------------------------------------------------------------------
// 14. status snapshots while sessions close

/// Every message was received before any session closes, so every `status()` snapshot taken
/// while they close must still count exactly that many (a destroyed session's counters move
/// into the service totals; a snapshot must count them once).
pub(crate) async fn status_consistent_while_closing(ctx: Arc<Ctx>) {
    // Fewer sessions under encryption: each handshake costs ~80 ms of CPU in a debug build.
    let (sessions, rounds): (u64, u64) = if ctx.encrypted() { (8, 2) } else { (100, 5) };
    setup_echo(&ctx, Config::default(), Config::default()).await;
    let sim = ctx.is_sim();
    let (mut polls, mut bad) = (0, Vec::new());
    for round in 1..=rounds {
        let mut refs = Vec::new();
        for q in 0..sessions {
            let c = ctx.connect().await;
            send_all(&ctx, &c, [q], 8).await;
            refs.push(c);
        }
        let n = round * sessions;
        ctx.wait_until("every message echoed", async || {
            ctx.server.status().await.msgs_in == n && ctx.client.status().await.msgs_in == n
        })
        .await;
        let poller = ctx.server.spawn(move |svc: Service| async move {
            let (mut polls, mut bad) = (0u64, Vec::new());
            loop {
                let st = svc.status();
                polls += 1;
                if (st.msgs_in, st.msgs_out) != (n, n) {
                    bad.push((st.msgs_in, st.msgs_out, st.live()));
                }
                if st.live() == 0 {
                    return (polls, bad);
                }
                if sim {
                    // A task that never sleeps stops virtual time (and the whole simulation).
                    tokio::time::sleep(Duration::from_millis(1)).await;
                } else if polls % 256 == 0 {
                    // Bursts of snapshots: the session tasks run on the other worker meanwhile.
                    tokio::task::yield_now().await;
                }
            }
        });
        ctx.client
            .exec(move |_| refs.iter().for_each(|s| s.close()))
            .await;
        let (p, b) = ctx.within("every session to close", poller).await;
        polls += p;
        bad.extend(b);
    }
    assert!(
        bad.is_empty(),
        "{} of {polls} status snapshots miscounted (msgs_in, msgs_out, live), e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    ctx.assert_no_leaks().await;
}

// ---------------------------------------------------------------------------------------------
// 15. bad handshakes ("bits-hpke" only: the encrypted listener's counterpart of `bad_input`)

/// What the encrypted listener sends a bad handshake before dropping it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// Nothing: the hello was rejected (or never completed).
    Nothing,
    /// Its ServerHello: the hello was plausible, the client's finish was not.
    ServerHello,
}

/// Bytes of a ClientHello without a client key: header, client random, ephemeral key.
const HELLO_LEN: usize = 8 + 32 * 2;
/// Bytes of the ServerHello: header, server random, ephemeral key, finished tag.
const SERVER_HELLO_LEN: usize = 8 + 32 * 3;

/// A ClientHello that passes every check the server can make before the client's finished
/// tag: known magic and cipher (ChaCha20-Poly1305), no client key, valid X25519 points. Only
/// a client holding the ephemeral secret could finish it (and the suite never does).
fn plausible_hello(seed: u8) -> Vec<u8> {
    let mut h = b"LXN3".to_vec();
    h.extend_from_slice(&[1, 0, 0, 0]);
    h.extend_from_slice(&[seed; 32]);
    h.extend_from_slice(&KeyPair::from_seed(&[seed; 32]).public().to_bytes());
    assert_eq!(h.len(), HELLO_LEN);
    h
}

/// Handshake header `magic ‖ cipher ‖ flags ‖ reserved` followed by zeros, to a hello's length.
fn hello_with_header(header: [u8; 8]) -> Vec<u8> {
    let mut h = header.to_vec();
    h.resize(HELLO_LEN, 0);
    h
}

/// Raw connections that fail the handshake of the encrypted listener. Each must be counted as
/// one handshake failure, open no session (no `Opened`, no id, no `accepted`), get exactly the
/// answer its stage calls for, and leave the good session talking; a client pinning the wrong
/// key fails to connect; a silent attempt makes room for a newcomer when the handshake places
/// are full (evicted), attempts past their hellos do not (newcomers are then refused at once);
/// connections that never finish time out, not earlier (at the handshake timeout after a
/// hello, at the hello deadline without one); afterwards a real client
/// gets in.
pub(crate) async fn bad_handshake(ctx: Arc<Ctx>) {
    assert!(ctx.encrypted(), "bad_handshake runs over {HPKE} only");
    // The silent connections must outlast the steps between their connect and the client
    // refused over the cap: a wide margin on real time.
    let timeout = Duration::from_secs(if ctx.is_sim() { 2 } else { 3 });
    let hello_timeout = timeout / 2;
    let mut sc = Config::default();
    let mut enc = server_encryption();
    enc.handshake_timeout = timeout;
    enc.hello_timeout = hello_timeout;
    enc.max_handshakes = 2;
    sc.encryption = Some(enc);
    let addr = setup_echo(&ctx, sc, Config::default()).await;
    let good = ctx.connect().await;
    let good_srv = server_session(&ctx, 0).await;

    // The good session talks the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let (g, st) = (good.clone(), stop.clone());
    let pinger = ctx.client.spawn(move |_| async move {
        let mut q = 0u64;
        while !st.load(SeqCst) {
            g.send(&Seq::new(q, 100)).unwrap();
            q += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        q
    });
    let pings_flow = async |what: &str| {
        let before = ctx.client.msgs(good.id()).len();
        ctx.wait_for(&format!("pings to flow after {what}"), || {
            ctx.client.msgs(good.id()).len() >= before + 3
        })
        .await;
    };
    let failures = async || ctx.server.status().await.handshake_failures;
    let no_new_session = |what: &str| {
        assert_eq!(ctx.server.opened(), [good_srv], "{what} opened a session");
    };

    let hello = plausible_hello(ctx.seed() as u8 + 1);
    let header = |cipher: u8, flags: u8, reserved: u8| {
        let mut h = *b"LXN3____";
        h[4..].copy_from_slice(&[cipher, flags, reserved, 0]);
        h
    };
    let mut attacks: Vec<(&str, Vec<u8>, bool, Answer)> = vec![
        (
            "random garbage",
            garbage(ctx.seed() * 10 + 7, 2000),
            true,
            Answer::Nothing,
        ),
        (
            "a plaintext \"bits\" frame",
            Seq::new(1, 200).frame(),
            false,
            Answer::Nothing,
        ),
        (
            "an unknown cipher",
            hello_with_header(header(0x77, 0, 0)),
            false,
            Answer::Nothing,
        ),
        (
            "unknown flags",
            hello_with_header(header(1, 0x80, 0)),
            false,
            Answer::Nothing,
        ),
        (
            "nonzero reserved bytes",
            hello_with_header(header(1, 0, 1)),
            false,
            Answer::Nothing,
        ),
        (
            "a hello cut short by the end of stream",
            hello[..50].to_vec(),
            true,
            Answer::Nothing,
        ),
        (
            "the end of stream instead of the finished tag",
            hello.clone(),
            true,
            Answer::ServerHello,
        ),
    ];
    let mut bad_finish = hello.clone();
    bad_finish.extend_from_slice(&[0x5a; 32]);
    attacks.push((
        "a forged finished tag",
        bad_finish,
        false,
        Answer::ServerHello,
    ));

    let mut expected_failures = 0;
    let mut raws = Vec::new();
    for (what, bytes, eof, answer) in attacks {
        let mut raw = ctx.raw_connect().await.expect("raw connect");
        let _ = raw.write_all(&bytes).await;
        if eof {
            let _ = raw.shutdown().await;
        }
        expected_failures += 1;
        ctx.wait_until(&format!("{what} to fail the handshake"), async || {
            failures().await >= expected_failures
        })
        .await;
        let (got, _) = read_to_end(&ctx, &mut raw).await;
        match answer {
            Answer::Nothing => assert!(got.is_empty(), "{what}: the server sent {got:?}"),
            Answer::ServerHello => {
                assert_eq!(
                    got.len(),
                    SERVER_HELLO_LEN,
                    "{what}: the server sent {got:?}"
                );
                assert_eq!(&got[..4], b"LXN3", "{what}");
            }
        }
        assert_eq!(failures().await, expected_failures, "{what}");
        no_new_session(what);
        pings_flow(what).await;
        raws.push(raw);
    }

    // A real client that pins another key: the server answers, the client finds it cannot
    // be the key it pinned, and gives up; the server counts a failure too.
    let (host, a) = (ctx.client.clone(), addr.clone());
    let (res, mallory) = ctx
        .client
        .exec_async(move |_| async move {
            let mut cfg = Config::default();
            let mut enc = crate::harness::client_encryption();
            enc.server_key = Some(KeyPair::from_seed(&[8; 32]).public());
            cfg.encryption = Some(enc);
            let m = host.new_service(cfg, 8);
            let res = m.connect(&a, HPKE).await.map(|s| s.id());
            m.shutdown().await;
            (res, m.status())
        })
        .await;
    assert!(
        matches!(
            res,
            Err(ConnectError::Handshake(
                HandshakeError::ServerNotAuthenticated
            ))
        ),
        "{res:?}"
    );
    assert_eq!(
        (
            mallory.handshakes,
            mallory.handshake_failures,
            mallory.connected
        ),
        (0, 1, 0),
        "{mallory}"
    );
    assert_eq!(
        (mallory.live(), mallory.pool.in_use_bytes, mallory.panics),
        (0, 0, 0),
        "{mallory}"
    );
    expected_failures += 1;
    ctx.wait_until("the wrong-key client to fail on the server", async || {
        failures().await >= expected_failures
    })
    .await;
    no_new_session("the wrong-key client");

    // Admission with two places (`max_handshakes`). A silent connection and one that sent
    // its hello take both; a third connection evicts the silent one (stalled: no hello yet),
    // which is closed at once, before any handshake work.
    let started = tokio::time::Instant::now();
    let mut silent = ctx.raw_connect().await.expect("raw connect");
    let mut after_hello = ctx.raw_connect().await.expect("raw connect");
    after_hello
        .write_all(&hello)
        .await
        .expect("write the hello");
    // The server answered the second, so it accepted (and admitted) the first one too.
    let mut sh = [0u8; SERVER_HELLO_LEN];
    ctx.within("the ServerHello", after_hello.read_exact(&mut sh))
        .await
        .expect("the ServerHello");
    assert_eq!(&sh[..4], b"LXN3");
    let second_at = started.elapsed();
    let mut second_hello = ctx.raw_connect().await.expect("raw connect");
    ctx.wait_until("the silent attempt to be evicted", async || {
        ctx.server.status().await.handshakes_evicted == 1
    })
    .await;
    let (got, _) = read_to_end(&ctx, &mut silent).await;
    assert!(got.is_empty(), "the evicted connection got {got:?}");
    // Both places are now held by attempts past their hellos: not stalled (until their
    // ClientFinished is `hello_timeout` late), so further connections are refused at once.
    second_hello
        .write_all(&plausible_hello(ctx.seed() as u8 + 2))
        .await
        .expect("write the hello");
    ctx.within("the second ServerHello", second_hello.read_exact(&mut sh))
        .await
        .expect("the second ServerHello");
    let mut over_cap = ctx.raw_connect().await.expect("raw connect");
    ctx.wait_until("a connection over the cap to be refused", async || {
        ctx.server.status().await.handshakes_refused == 1
    })
    .await;
    let (got, _) = read_to_end(&ctx, &mut over_cap).await;
    assert!(got.is_empty(), "the connection over the cap got {got:?}");
    match ctx.try_connect().await {
        Err(ConnectError::Handshake(
            HandshakeError::Closed | HandshakeError::Io(std::io::ErrorKind::ConnectionReset),
        )) => {}
        Err(e) => panic!("a client over the handshake cap failed with {e:?}"),
        Ok(s) => panic!("a client over the handshake cap opened {}", s.id()),
    }
    let st = ctx.server.status().await;
    assert_eq!(
        (st.handshakes_refused, st.handshakes_evicted),
        (2, 1),
        "{st}"
    );
    assert_eq!(st.handshake_failures, expected_failures, "{st}");
    // With nobody else connecting, the two time out at the handshake timeout, not before
    // (measured from before their connects: a lower bound on both backends).
    expected_failures += 2;
    ctx.wait_until("the stalled handshakes to time out", async || {
        failures().await >= expected_failures
    })
    .await;
    let waited = started.elapsed();
    assert!(
        waited >= timeout,
        "timed out after {waited:?} (timeout {timeout:?})"
    );
    if ctx.is_sim() {
        // The second one connected `second_at` later.
        assert!(
            waited <= second_at + timeout + Duration::from_millis(100),
            "{waited:?}, the second connected at {second_at:?}"
        );
    }
    for (what, raw) in [("first", &mut after_hello), ("second", &mut second_hello)] {
        let (got, _) = read_to_end(&ctx, raw).await;
        assert!(
            got.is_empty(),
            "after the {what} ServerHello, the server sent {got:?}"
        );
    }
    // A silent connection with room to spare is dropped at the hello deadline, not before.
    let started = tokio::time::Instant::now();
    let mut late_silent = ctx.raw_connect().await.expect("raw connect");
    expected_failures += 1;
    ctx.wait_until("the silent connection to time out", async || {
        failures().await >= expected_failures
    })
    .await;
    let waited = started.elapsed();
    assert!(
        waited >= hello_timeout && waited < timeout,
        "dropped after {waited:?} (hello timeout {hello_timeout:?})"
    );
    if ctx.is_sim() {
        assert!(
            waited <= hello_timeout + Duration::from_millis(100),
            "{waited:?}"
        );
    }
    let (got, _) = read_to_end(&ctx, &mut late_silent).await;
    assert!(got.is_empty(), "the silent connection got {got:?}");
    no_new_session("the stalled connections");
    pings_flow("the timeouts").await;
    raws.extend([silent, after_hello, second_hello, over_cap, late_silent]);

    stop.store(true, SeqCst);
    let sent = pinger.await;
    ctx.wait_for("every ping echoed", || {
        ctx.client.msgs(good.id()).len() as u64 == sent
    })
    .await;
    assert_eq!(ctx.client.msgs(good.id()), (0..sent).collect::<Vec<_>>());
    assert_eq!(ctx.client.closed(good.id()), None);
    assert_eq!(ctx.server.closed(good_srv), None);
    let st = ctx.server.status().await;
    assert_eq!(st.handshake_failures, expected_failures, "{st}");
    assert_eq!(
        (
            st.handshakes,
            st.accepted,
            st.refused,
            st.handshakes_refused
        ),
        (1, 1, 0, 2),
        "{st}"
    );
    assert_eq!(st.live(), 1, "{st}");
    let c = ctx.client.status().await;
    assert_eq!((c.handshakes, c.handshake_failures), (1, 1), "{c}");

    // With its handshake slots free again, the listener admits a real client.
    let late = ctx.connect().await;
    let late_srv = server_session(&ctx, 1).await;
    round_trip(&ctx, &late, 1).await;
    close_client_session(&ctx, &late, late_srv).await;
    close_client_session(&ctx, &good, good_srv).await;
    drop(raws);
    ctx.assert_no_leaks().await;
    let st = ctx.server.status().await;
    assert_eq!((st.handshakes, st.accepted), (2, 2), "{st}");
    assert_eq!(st.closed("peer-closed"), 2, "{st}");
    assert_eq!(st.closes.iter().map(|(_, n)| n).sum::<u64>(), 2, "{st}");
}

// ---------------------------------------------------------------------------------------------
// 16. sessions refused after their handshake ("bits-hpke" only)

/// Two clients complete their handshakes at once with a server that has room for one session
/// (both pass the capacity check it makes before the handshake). The one that does not fit
/// is refused like any connection beyond `max_sessions`, and its client, whose `connect`
/// succeeded, must see a clean refusal (`PeerClosed`, as over "bits"), not an end of stream
/// without an authenticated close (`Crypto(Truncated)`, the documented sign of a truncation
/// attack): the server holds the session keys and can close authentically.
pub(crate) async fn server_refuses_after_handshake(ctx: Arc<Ctx>) {
    let mut sc = Config::default();
    sc.max_sessions = 1;
    let addr = setup_echo(&ctx, sc, Config::default()).await;
    let (a, b) = ctx
        .client
        .exec_async(move |svc: Service| async move {
            tokio::join!(svc.connect(&addr, HPKE), svc.connect(&addr, HPKE))
        })
        .await;
    let (a, b) = match (a, b) {
        (Ok(a), Ok(b)) => (a, b),
        other => panic!("the two handshakes did not overlap (no race to test): {other:?}"),
    };
    ctx.wait_until("one session admitted, one refused", async || {
        let st = ctx.server.status().await;
        st.refused == 1 && st.live() == 1 && st.handshakes == 2
    })
    .await;
    let srv = server_session(&ctx, 0).await;
    ctx.wait_for("the refused client to see its session close", || {
        ctx.client.closed(a.id()).is_some() || ctx.client.closed(b.id()).is_some()
    })
    .await;
    let (refused, admitted) = if ctx.client.closed(a.id()).is_some() {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(
        ctx.client.closed(refused.id()),
        Some(CloseReason::PeerClosed),
        "the client of a session refused after its handshake"
    );
    round_trip(&ctx, &admitted, 1).await;
    close_client_session(&ctx, &admitted, srv).await;
    ctx.assert_no_leaks().await;
    let st = ctx.server.status().await;
    assert_eq!((st.accepted, st.refused, st.handshakes), (1, 1, 2), "{st}");
}

/// The client-side twin of [`server_refuses_after_handshake`]: a client with room for one
/// session connects twice at once; both handshakes complete (its capacity check, too, comes
/// before the handshake) and the second `connect` fails with `TooManySessions`. The server,
/// which opened that session when the handshake completed, must see a clean close
/// (`PeerClosed`), not `Crypto(Truncated)`: the client holds the keys and can close
/// authentically.
pub(crate) async fn client_refuses_after_handshake(ctx: Arc<Ctx>) {
    let mut cc = Config::default();
    cc.max_sessions = 1;
    let addr = setup_echo(&ctx, Config::default(), cc).await;
    let (a, b) = ctx
        .client
        .exec_async(move |svc: Service| async move {
            tokio::join!(svc.connect(&addr, HPKE), svc.connect(&addr, HPKE))
        })
        .await;
    let kept = match (a, b) {
        (Ok(s), Err(ConnectError::TooManySessions))
        | (Err(ConnectError::TooManySessions), Ok(s)) => s,
        other => panic!("expected one session and one TooManySessions: {other:?}"),
    };
    ctx.wait_for("both server sessions, one of them closed", || {
        let server = ctx.server.sessions();
        server.len() == 2 && server.values().any(|s| s.closed.is_some())
    })
    .await;
    let server = ctx.server.sessions();
    let (dropped, srv): (Vec<_>, Vec<_>) = server.values().partition(|s| s.closed.is_some());
    assert_eq!(
        dropped[0].closed,
        Some(CloseReason::PeerClosed),
        "the server session of a connect refused by its client after the handshake"
    );
    let srv = srv[0].id;
    let c = ctx.client.status().await;
    assert_eq!((c.handshakes, c.connected, c.live()), (2, 1, 1), "{c}");
    round_trip(&ctx, &kept, 1).await;
    close_client_session(&ctx, &kept, srv).await;
    ctx.assert_no_leaks().await;
}

// ---------------------------------------------------------------------------------------------
// 17. back-pressure: `SessionRef::ready`

/// Starts both services, the client's with a send-queue limit of `limit` bytes, and opens one
/// session: the client's ref and the server's session id.
async fn connect_with_queue_limit(ctx: &Arc<Ctx>, limit: usize) -> (SessionRef, SessionId) {
    let mut client = Config::default();
    client.send_queue_limit = limit;
    ctx.start(Config::default(), client).await;
    ctx.listen().await;
    let c = ctx.connect().await;
    let srv = server_session(ctx, 0).await;
    (c, srv)
}

/// A bulk sender with a small send queue: it sends until `QueueFull`, waits in `ready()` and
/// sends the same message again. `ready()` must return only once there is room (the retry
/// never fails), must return at all (the session's task wakes it), and must end with the
/// session: a waiter is woken by `close()` with `Closed`, and a ref to a destroyed session
/// gets `Stale`. Every message arrives, in order.
pub(crate) async fn bulk_send_waits_for_room(ctx: Arc<Ctx>) {
    const LEN: usize = 1000;
    const LIMIT: usize = 64 << 10;
    // ~4 MB in all (~600 KB under encryption: a debug build seals ~1 MB a second).
    let n: u64 = if ctx.encrypted() { 600 } else { 4000 };
    let (c, srv) = connect_with_queue_limit(&ctx, LIMIT).await;

    let c2 = c.clone();
    let fulls = ctx
        .within(
            "the bulk sender",
            ctx.client.exec_async(move |_| async move {
                let mut fulls = 0u64;
                for q in 0..n {
                    let msg = Seq::new(q, LEN);
                    match c2.send(&msg) {
                        Ok(()) => {}
                        Err(SendError::QueueFull { queued, limit }) => {
                            assert_eq!(limit, LIMIT);
                            assert!(queued > LIMIT / 2, "QueueFull at {queued} bytes queued");
                            fulls += 1;
                            c2.ready().await.expect("ready on an open session");
                            // At most half the limit is queued now: a 1 KB message fits.
                            c2.send(&msg)
                                .unwrap_or_else(|e| panic!("send {q} right after ready(): {e}"));
                        }
                        Err(e) => panic!("send {q}: {e}"),
                    }
                }
                fulls
            }),
        )
        .await;
    // The sender never yields between sends, so each wait follows a queue that filled from at
    // most empty to over the limit, by at most the limit plus one frame.
    let frame = Seq::new(0, LEN).wire_len();
    let total = n * frame;
    assert!(
        fulls >= total / (LIMIT as u64 + frame) - 1,
        "{fulls} waits for {total} bytes through a {LIMIT}-byte queue"
    );
    ctx.wait_for("the server to receive every message", || {
        ctx.server.msgs(srv).len() as u64 >= n
    })
    .await;
    assert_eq!(ctx.server.msgs(srv), (0..n).collect::<Vec<_>>());
    if !ctx.encrypted() {
        // The receiving session's reads adapted to the bulk stream: it took read blocks well
        // above the initial 4 KiB (up to `read_buffer_max`; turmoil hands out one written
        // segment per read, so there they stop at 32 KiB). The server sends nothing, so no
        // other block is that large.
        let pool = ctx.server.status().await.pool;
        assert!(
            pool.in_use_bytes + pool.retained_bytes >= 4 * Config::default().read_buffer,
            "the read size did not grow for a bulk stream: {pool:?}"
        );
    }

    // Waiters on a full queue are woken by the close, with `Closed`.
    let c2 = c.clone();
    let (sent, waited) = ctx
        .client
        .exec_async(move |_| async move {
            let mut q = n;
            loop {
                match c2.send(&Seq::new(q, LEN)) {
                    Ok(()) => q += 1,
                    Err(SendError::QueueFull { .. }) => break,
                    Err(e) => panic!("send {q}: {e}"),
                }
            }
            // The session's task has not run since (same thread, no await): no room yet.
            let mut first = std::pin::pin!(c2.ready());
            let mut second = std::pin::pin!(c2.ready());
            for w in [first.as_mut(), second.as_mut()] {
                assert!(
                    futures::poll!(w).is_pending(),
                    "ready() returned with a full queue"
                );
            }
            c2.close();
            // None of these awaits yields (close() already woke the waiters), so the session
            // is still closing, not destroyed, for the third call.
            (q, [first.await, second.await, c2.ready().await])
        })
        .await;
    let closed = Err(SendError::Closed(CloseReason::Local));
    assert_eq!(waited, [closed.clone(), closed.clone(), closed]);

    // The close flushed the queue: the server has everything sent before it.
    ctx.wait_for("both sides' Closed", || {
        ctx.client.closed(c.id()).is_some() && ctx.server.closed(srv).is_some()
    })
    .await;
    assert_eq!(ctx.server.msgs(srv), (0..sent).collect::<Vec<_>>());
    assert_eq!(ctx.server.closed(srv), Some(CloseReason::PeerClosed));
    let c2 = c.clone();
    assert_eq!(
        ctx.client
            .exec_async(|_| async move { c2.ready().await })
            .await,
        Err(SendError::Stale)
    );
    ctx.assert_no_leaks().await;
}

/// The send-queue limit is a high-water mark: a queue below it accepts a message of any size
/// up to the maximum frame, even one several times the limit; while the queue is then over
/// the limit the next send meets `QueueFull`, and after `ready()` it goes through. (Under a
/// "would exceed" rule the big message failed on an empty queue while `ready()` returned at
/// once, so a sender following the documented retry pattern spun forever.)
pub(crate) async fn a_message_larger_than_the_queue_limit_is_sent(ctx: Arc<Ctx>) {
    const LIMIT: usize = 16 << 10;
    const BIG: usize = 100 << 10;
    let (c, srv) = connect_with_queue_limit(&ctx, LIMIT).await;
    let c2 = c.clone();
    let (second, after_ready) = ctx
        .within(
            "the sender",
            ctx.client.exec_async(move |_| async move {
                c2.send(&Seq::new(0, BIG))
                    .unwrap_or_else(|e| panic!("a {BIG}-byte message on an empty queue: {e}"));
                // The session's task has not run since (same thread, no await): the queue
                // holds the big message, over the limit.
                let second = c2.send(&Seq::new(1, 10));
                c2.ready().await.expect("ready on an open session");
                (second, c2.send(&Seq::new(1, 10)))
            }),
        )
        .await;
    match second {
        Err(SendError::QueueFull { queued, limit }) => {
            assert_eq!(limit, LIMIT);
            assert!(queued > BIG, "QueueFull at {queued} bytes queued");
        }
        other => panic!("a send on a queue over its limit: {other:?}"),
    }
    assert_eq!(after_ready, Ok(()));
    ctx.wait_for("the server to receive both messages", || {
        ctx.server.msgs(srv).len() == 2
    })
    .await;
    assert_eq!(ctx.server.msgs(srv), vec![0, 1]);
    c.close();
    ctx.wait_for("both sides' Closed", || {
        ctx.client.closed(c.id()).is_some() && ctx.server.closed(srv).is_some()
    })
    .await;
    ctx.assert_no_leaks().await;
}

// ---------------------------------------------------------------------------------------------
// 18. a session waiting for the rest of a frame holds a small block ("bits" only: raw bytes)

/// A raw peer sends ~100 KiB of frames and the first 10 bytes of one more, then waits. The
/// server's reads grew for the burst (read blocks well above 4 KiB were taken), but once a
/// read would block the 10 waiting bytes sit in one `read_buffer`-size block: memory follows
/// what is buffered, not the read size reached. The rest of the frame then completes it.
pub(crate) async fn waiting_partial_frame_holds_a_small_block(ctx: Arc<Ctx>) {
    const N: u64 = 400;
    let small = Config::default().read_buffer;
    ctx.start(Config::default(), Config::default()).await;
    ctx.listen().await;
    let mut raw = ctx.raw_connect().await.expect("raw connect");
    let srv = server_session(&ctx, 0).await;
    let mut burst: Vec<u8> = (0..N).flat_map(|q| Seq::new(q, 256).frame()).collect();
    let last = Seq::new(N, 256).frame();
    burst.extend_from_slice(&last[..10]);
    raw.write_all(&burst).await.expect("write the burst");
    ctx.wait_for("the server to receive the complete frames", || {
        ctx.server.msgs(srv).len() as u64 == N
    })
    .await;
    ctx.wait_until("the waiting session to hold one small block", async || {
        ctx.server.status().await.pool.in_use_bytes <= small
    })
    .await;
    let pool = ctx.server.status().await.pool;
    assert_eq!(
        (pool.in_use_blocks, pool.in_use_bytes),
        (1, small),
        "{pool:?}"
    );
    assert!(
        pool.retained_bytes >= 4 * small,
        "the reads did not grow for the burst, so this proves nothing: {pool:?}"
    );

    raw.write_all(&last[10..]).await.expect("write the rest");
    ctx.wait_for("the completed frame", || {
        ctx.server.msgs(srv).len() as u64 == N + 1
    })
    .await;
    assert_eq!(ctx.server.msgs(srv), (0..=N).collect::<Vec<_>>());
    let _ = raw.shutdown().await;
    ctx.wait_for("the server to see the end of stream", || {
        ctx.server.closed(srv).is_some()
    })
    .await;
    assert_eq!(ctx.server.closed(srv), Some(CloseReason::PeerClosed));
    drop(raw);
    ctx.assert_no_leaks().await;
}
