//! Scenario 16: sessions refused after their handshake ("bits-hpke" only).

use std::sync::Arc;

use laxnet::{CloseCode, CloseReason, Config, ConnectError, PeerClose, Service};

use super::{close_client_session, round_trip, server_session, setup_echo};
use crate::harness::{Ctx, HPKE};

/// Two clients complete their handshakes at once with a server that has room for one session
/// (both pass the capacity check it makes before the handshake). The one that does not fit
/// is refused like any connection beyond `max_sessions`, and its client, whose `connect`
/// succeeded, must see the refusal's reason in the authenticated Close record (the peer
/// closed: service full), not an end of stream without an authenticated close
/// (`Crypto(Truncated)`, the documented sign of a truncation attack): the server holds the
/// session keys and can close authentically.
pub(crate) async fn server_refuses_after_handshake(ctx: Arc<Ctx>) {
    let sc = Config::default().with_max_sessions(1);
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
        Some(CloseReason::Peer(PeerClose::new(CloseCode::Full))),
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
/// which opened that session when the handshake completed, must see the client's reason
/// (service full) in its authenticated Close, not `Crypto(Truncated)`: the client holds the
/// keys and can close authentically.
pub(crate) async fn client_refuses_after_handshake(ctx: Arc<Ctx>) {
    let cc = Config::default().with_max_sessions(1);
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
        Some(CloseReason::Peer(PeerClose::new(CloseCode::Full))),
        "the server session of a connect refused by its client after the handshake"
    );
    let srv = srv[0].id;
    let c = ctx.client.status().await;
    assert_eq!((c.handshakes, c.connected, c.live()), (2, 1, 1), "{c}");
    round_trip(&ctx, &kept, 1).await;
    close_client_session(&ctx, &kept, srv).await;
    ctx.assert_no_leaks().await;
}
