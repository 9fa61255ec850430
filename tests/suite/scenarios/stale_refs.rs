//! Scenario 7: stale refs.

use std::sync::Arc;

use laxnet::{Config, SendError, SessionId, SessionRef, SubscribeError};

use super::{close_client_session, round_trip, server_session, setup_echo};
use crate::harness::{Ctx, Seq};

/// The id's raw value, cross-checked against its `#<value>` form.
fn raw(id: SessionId) -> u32 {
    assert_eq!(id.to_string(), format!("#{}", id.get()));
    assert_eq!(SessionId::from_raw(id.get()), Some(id));
    id.get()
}

pub(crate) async fn stale_ref(ctx: Arc<Ctx>) {
    let sc = Config::default().with_max_sessions(1);
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
    // B takes the counter's next value: one past A's (the counter never goes back).
    assert_eq!(
        raw(b_srv),
        raw(a_srv).wrapping_add(1).max(1),
        "B has the next id ({a_srv} / {b_srv})"
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
