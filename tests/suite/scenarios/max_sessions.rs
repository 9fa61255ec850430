//! Scenario 10: max sessions.

use std::sync::Arc;

use laxnet::{CloseReason, Config, ConnectError, HandshakeError, SessionRef};

use super::{close_client_session, peer_gone, round_trip, server_session, setup_echo};
use crate::harness::Ctx;

pub(crate) async fn max_sessions(ctx: Arc<Ctx>) {
    let sc = Config::default().with_max_sessions(3);
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
        // A failed handshake is a failed connect too.
        assert_eq!((c.connected, c.connect_failures), (4, 2), "{c}");
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
    assert_eq!(
        (c.connected, c.handshake_failures, c.connect_failures),
        (3, 2, 2),
        "{c}"
    );
    assert_eq!(
        ctx.client.sessions().len(),
        3,
        "a refused client opened a session"
    );
    admitted
}
