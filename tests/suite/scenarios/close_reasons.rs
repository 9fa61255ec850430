//! Scenario 20: the peer learns why a session ended.

use std::sync::Arc;

use laxnet::{CloseCode, CloseReason, Config, PeerClose};

use super::{server_session, setup_echo};
use crate::harness::Ctx;

/// A client closes with an application code and text (`close_with`): the server's `Closed`
/// carries them (the peer closed: normal, code 7, "bye"), the client's says `Local`. A text
/// over 64 bytes arrives cut at a character boundary.
pub(crate) async fn close_with_reaches_the_peer(ctx: Arc<Ctx>) {
    setup_echo(&ctx, Config::default(), Config::default()).await;
    for (n, (code, text, want)) in [
        (7, "bye".to_string(), "bye".to_string()),
        (8, "é".repeat(40), "é".repeat(32)),
    ]
    .into_iter()
    .enumerate()
    {
        let c = ctx.connect().await;
        let srv = server_session(&ctx, n).await;
        let c2 = c.clone();
        ctx.client.exec(move |_| c2.close_with(code, &text)).await;
        ctx.wait_for("both sides' Closed", || {
            ctx.client.closed(c.id()).is_some() && ctx.server.closed(srv).is_some()
        })
        .await;
        assert_eq!(ctx.client.closed(c.id()), Some(CloseReason::Local));
        let mut told = PeerClose::new(CloseCode::Normal);
        told.app_code = code;
        told.text = want;
        let got = ctx.server.closed(srv).unwrap();
        assert_eq!(got, CloseReason::Peer(told));
        assert!(got.is_clean());
    }
    ctx.assert_no_leaks().await;
}
