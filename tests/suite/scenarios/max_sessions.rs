//! Scenario 10: max sessions.

use std::sync::Arc;

use laxnet::{Config, ConnectError, Refusal, SessionRef};

use super::{close_client_session, peer_normal, round_trip, server_session, setup_echo};
use crate::harness::Ctx;

pub(crate) async fn max_sessions(ctx: Arc<Ctx>) {
    let sc = Config::default().with_max_sessions(3);
    setup_echo(&ctx, sc, Config::default()).await;
    let admitted = refused_with_a_reason(&ctx).await;
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
    assert_eq!(ctx.server.closed(newcomer_srv), Some(peer_normal()));
    ctx.assert_no_leaks().await;
    if ctx.encrypted() {
        let (c, s) = (ctx.client.status().await, ctx.server.status().await);
        assert_eq!((s.handshakes, s.handshake_failures), (4, 0), "{s}");
        assert_eq!((c.handshakes, c.handshake_failures), (4, 0), "{c}");
    }
    let c = ctx.client.status().await;
    assert_eq!((c.connected, c.connect_failures), (4, 2), "{c}");
}

/// A full server refuses a connection and says why: the refused client's `connect` fails
/// with `Refused(Full)` (on "bits" the server's refusal comes instead of its Open frame; on
/// "bits-hpke" instead of its ServerHello), and no session exists on either side. Each
/// connection waits for the previous session to open on the server, so which ones are
/// refused is deterministic. Returns the three admitted sessions.
async fn refused_with_a_reason(ctx: &Ctx) -> Vec<SessionRef> {
    let mut admitted = Vec::new();
    for n in 0..3 {
        admitted.push(ctx.connect().await);
        server_session(ctx, n).await;
    }
    for _ in 0..2 {
        match ctx.try_connect().await {
            Err(ConnectError::Refused(Refusal::Full)) => {}
            Err(e) => panic!("refused connect failed with {e:?}"),
            Ok(s) => panic!("connect past max_sessions opened {}", s.id()),
        }
    }
    let st = ctx.server.status().await;
    assert_eq!((st.refused, st.live(), st.accepted), (2, 3, 3), "{st}");
    let c = ctx.client.status().await;
    assert_eq!(
        (c.connected, c.connect_failures, c.handshake_failures),
        (3, 2, 0),
        "{c}"
    );
    assert_eq!(
        ctx.client.sessions().len(),
        3,
        "a refused client opened a session"
    );
    admitted
}
