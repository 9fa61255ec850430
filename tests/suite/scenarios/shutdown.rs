//! Scenario 11: shutdown.

use std::sync::Arc;

use laxnet::{AcceptError, CloseKind, CloseReason, Config, ConnectError, Service};

use super::{peer_shutdown, read_to_end, round_trip, server_session, setup_echo};
use crate::harness::{Ctx, Seq};

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
    assert_eq!(st.closed(CloseKind::Shutdown), SESSIONS as u64, "{st}");

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
        assert_eq!(ctx.client.closed(c.id()), Some(peer_shutdown()));
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
