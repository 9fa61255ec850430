//! Scenario 4: close with queued data.

use std::sync::Arc;

use laxnet::{CloseReason, Config};

use super::{CLOSE_BODY, RECORD_OVERHEAD, peer_normal, records_in, server_session};
use crate::harness::{Ctx, Seq};

pub(crate) async fn close_with_queued_data(ctx: Arc<Ctx>) {
    const LEN: usize = 1500;
    // ~3 MB in all, under a 4 MiB send queue limit; under encryption ~450 KB (a debug build
    // seals and opens ~1 MB a second), still all queued before the close.
    let n: u64 = if ctx.encrypted() { 300 } else { 2000 };
    let config = Config::default().with_send_queue_limit(4 << 20);
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
    assert_eq!(ctx.server.closed(srv), Some(peer_normal()));
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
    assert_eq!(ctx.client.closed(c.id()), Some(peer_normal()));
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
        // authenticated Close record per session: with its reason (a normal close) where it
        // closed, empty where it answered the peer's close.
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
            records_in(wire - 2 * RECORD_OVERHEAD - CLOSE_BODY, payload, n, what);
        }
    }
}
