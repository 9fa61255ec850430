//! Scenario 1: echo.

use std::sync::Arc;
use std::time::Duration;

use laxnet::{CloseReason, Config, Direction, Event, SessionEvent, Topic};

use super::{RECORD_OVERHEAD, close_client_session, records_in, server_session, setup_echo};
use crate::harness::{Ctx, Seq};

pub(crate) async fn echo(ctx: Arc<Ctx>) {
    // The echo callback cannot wait for room: a send queue that holds every echo (about
    // 500 KB) keeps a slow client (a busy machine) from losing some to `QueueFull`.
    let mut server = Config::default();
    server.send_queue_limit = 1 << 20;
    setup_echo(&ctx, server, Config::default()).await;
    // The client also listens through an Inbox (the async alternative to callbacks).
    let proto = ctx.protocol();
    let mut inbox = ctx
        .client
        .exec(move |svc| {
            let mut inbox = svc.inbox();
            inbox
                .add(Topic::sessions(proto))
                .unwrap()
                .add(Topic::message::<Seq>(proto))
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

    // A side counts bytes out once its write returned, and its peer may read them (and this
    // scenario see every echo) a moment before: wait until each side's count of what it
    // wrote matches what the other read.
    ctx.wait_until("the byte counters to settle", async || {
        let (c, s) = (ctx.client.status().await, ctx.server.status().await);
        (c.bytes_out, s.bytes_out) == (s.bytes_in, c.bytes_in)
    })
    .await;
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
    // Counters of destroyed sessions are kept. The client closed: its close message carries
    // its reason (a close frame on "bits", a Close record with the reason on "bits-hpke");
    // the server answered with an end of stream ("bits") or an empty Close record.
    let (close_up, close_down) = if ctx.encrypted() {
        (laxnet::wire::close_record(0) as u64, RECORD_OVERHEAD)
    } else {
        (laxnet::wire::close_frame(0) as u64, 0)
    };
    let (c, s) = (ctx.client.status().await, ctx.server.status().await);
    for (st, (wire_in, wire_out)) in [
        (&c, (down + close_down, up + close_up)),
        (&s, (up + close_up, down + close_down)),
    ] {
        assert_eq!((st.msgs_in, st.msgs_out), (N, N), "{st}");
        assert_eq!((st.bytes_in, st.bytes_out), (wire_in, wire_out), "{st}");
    }
}
