//! Scenario 5: peer crash.

use std::sync::Arc;

use laxnet::{CloseReason, Config, CryptoError};

use super::{close_client_session, peer_gone, round_trip, send_all, server_session, setup_echo};
use crate::harness::{Ctx, Seq};

/// Endings an encrypted session sees when its peer's host dies (no authenticated close was
/// sent): the end of stream is `Truncated`, or the connection is reset (the dead host had
/// unread data, or our write met its closed socket). Never `PeerClosed`.
fn crashed_under_hpke(r: &CloseReason) -> bool {
    matches!(
        r,
        CloseReason::Crypto(CryptoError::Truncated) | CloseReason::Reset
    )
}

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
