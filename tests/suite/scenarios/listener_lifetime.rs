//! Scenario 13: listener lifetime.

use std::sync::Arc;
use std::time::Duration;

use laxnet::{Config, ConnectError, HandshakeError, Service, SessionId, SessionRef};

use super::{close_client_session, send_all, server_session};
use crate::harness::Ctx;

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
