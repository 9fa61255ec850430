//! Scenario 3: close from either side.

use std::sync::Arc;

use laxnet::{CloseKind, CloseReason, Config, SendError, SessionId, SessionRef};

use super::{peer_normal, send_all, server_session, setup_echo};
use crate::harness::{Ctx, Seq};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Server,
    Client,
}

async fn close_from(ctx: Arc<Ctx>, side: Side) {
    setup_echo(&ctx, Config::default(), Config::default()).await;
    const SESSIONS: usize = 3;
    let mut pairs = Vec::new();
    for n in 0..SESSIONS {
        let c = ctx.connect().await;
        let s = server_session(&ctx, n).await;
        pairs.push((c, s));
    }
    for (c, _) in &pairs {
        send_all(&ctx, c, 0..10, 32).await;
    }
    ctx.wait_for("the echoes", || {
        pairs
            .iter()
            .all(|(c, _)| ctx.client.msgs(c.id()).len() == 10)
    })
    .await;
    // The closing side queues a few more messages and closes at once: they still arrive,
    // before the other side's `Closed`.
    let refs: Vec<SessionRef> = match side {
        Side::Client => pairs.iter().map(|(c, _)| c.clone()).collect(),
        Side::Server => {
            let ids: Vec<SessionId> = pairs.iter().map(|(_, s)| *s).collect();
            ctx.server
                .exec(move |svc| ids.iter().map(|i| svc.acquire(*i).unwrap()).collect())
                .await
        }
    };
    let host = match side {
        Side::Client => &ctx.client,
        Side::Server => &ctx.server,
    };
    // `closed()` waiters started before the close resolve with the reason once the session
    // is over, on the closing side and on the other.
    let other_refs: Vec<SessionRef> = match side {
        Side::Server => pairs.iter().map(|(c, _)| c.clone()).collect(),
        Side::Client => {
            let ids: Vec<SessionId> = pairs.iter().map(|(_, s)| *s).collect();
            ctx.server
                .exec(move |svc| ids.iter().map(|i| svc.acquire(*i).unwrap()).collect())
                .await
        }
    };
    let (local_host, other_host) = match side {
        Side::Client => (&ctx.client, &ctx.server),
        Side::Server => (&ctx.server, &ctx.client),
    };
    fn waits(
        h: &crate::harness::Host,
        refs: Vec<SessionRef>,
    ) -> impl std::future::Future<Output = Vec<CloseReason>> + 'static {
        h.spawn(move |_| async move {
            let mut reasons = Vec::new();
            for r in refs {
                reasons.push(r.closed().await);
            }
            reasons
        })
    }
    let local_closed = waits(local_host, refs.clone());
    let other_closed = waits(other_host, other_refs.clone());
    let r2 = refs.clone();
    host.exec(move |_| {
        for s in &r2 {
            for q in 100..105 {
                s.send(&Seq::new(q, 64)).unwrap();
            }
            assert!(s.is_open());
            s.close();
            assert!(!s.is_open());
            assert_eq!(
                s.send(&Seq::new(999, 1)),
                Err(SendError::Closed(CloseReason::Local))
            );
            s.close(); // idempotent
        }
    })
    .await;
    ctx.wait_for("every session closed on both sides", || {
        ctx.client.sessions().values().all(|s| s.closed.is_some())
            && ctx.server.sessions().values().all(|s| s.closed.is_some())
    })
    .await;
    let (local, remote) = match side {
        Side::Client => (&ctx.client, &ctx.server),
        Side::Server => (&ctx.server, &ctx.client),
    };
    // `sessions()` already checked: one Opened first, messages, exactly one Closed last.
    for s in local.sessions().values() {
        assert_eq!(
            s.closed,
            Some(CloseReason::Local),
            "{side:?} side, {}",
            s.id
        );
    }
    for s in remote.sessions().values() {
        assert_eq!(s.closed, Some(peer_normal()), "other side, {}", s.id);
    }
    // The messages queued right before close() all arrived.
    for (c, s) in &pairs {
        let (client_msgs, server_msgs) = (ctx.client.msgs(c.id()), ctx.server.msgs(*s));
        match side {
            Side::Client => {
                let mut want: Vec<u64> = (0..10).collect();
                want.extend(100..105);
                assert_eq!(server_msgs, want);
            }
            Side::Server => {
                let mut want: Vec<u64> = (0..10).collect();
                want.extend(100..105);
                assert_eq!(client_msgs, want);
            }
        }
    }
    ctx.assert_no_leaks().await;
    // Refs on either side are stale once their session is destroyed.
    let r2 = refs.clone();
    let res = host
        .exec(move |_| {
            r2.iter()
                .map(|s| s.send(&Seq::new(1, 1)))
                .collect::<Vec<_>>()
        })
        .await;
    assert!(res.iter().all(|r| *r == Err(SendError::Stale)), "{res:?}");
    assert_eq!(local_closed.await, vec![CloseReason::Local; SESSIONS]);
    assert_eq!(other_closed.await, vec![peer_normal(); SESSIONS]);
    // After the end, `closed()` answers at once, `close_reason()` and `ready()` say why.
    let r2 = refs.clone();
    let after = host
        .exec_async(move |_| async move {
            let mut out = Vec::new();
            for s in &r2 {
                out.push((s.closed().await, s.close_reason(), s.ready().await));
            }
            out
        })
        .await;
    for (closed, reason, ready) in after {
        assert_eq!(closed, CloseReason::Local);
        assert_eq!(reason, Some(CloseReason::Local));
        assert_eq!(ready, Err(SendError::Closed(CloseReason::Local)));
    }
    let st = local.status().await;
    assert_eq!(st.closed(CloseKind::Local), SESSIONS as u64, "{st}");
    assert_eq!(st.linger_expired, 0, "{st}");
}

pub(crate) async fn close_from_server(ctx: Arc<Ctx>) {
    close_from(ctx, Side::Server).await
}

pub(crate) async fn close_from_client(ctx: Arc<Ctx>) {
    close_from(ctx, Side::Client).await
}
