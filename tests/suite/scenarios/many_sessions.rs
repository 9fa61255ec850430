//! Scenario 2: many sessions.

use std::sync::Arc;

use laxnet::{CloseKind, CloseReason, Config, Service, SessionRef};

use super::{peer_normal, setup_echo};
use crate::harness::{Ctx, Seq};

pub(crate) async fn many_sessions(ctx: Arc<Ctx>) {
    // A debug build spends ~80 ms of CPU per encrypted handshake (both sides): fewer, still
    // concurrent, sessions under encryption.
    let sessions: usize = if ctx.encrypted() { 12 } else { 120 };
    const PER: u64 = 5;
    let addr = setup_echo(&ctx, Config::default(), Config::default()).await;
    let proto = ctx.protocol();
    let refs: Vec<SessionRef> = ctx
        .client
        .exec_async(move |svc: Service| async move {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..sessions {
                let (svc, addr) = (svc.clone(), addr.clone());
                set.spawn(async move { (i, svc.connect(&addr, proto).await) });
            }
            let mut out = vec![None; sessions];
            while let Some(r) = set.join_next().await {
                let (i, r) = r.expect("connect task");
                out[i] = Some(r.unwrap_or_else(|e| panic!("connect {i}: {e}")));
            }
            out.into_iter().map(Option::unwrap).collect()
        })
        .await;
    // Interleaved: message k of every session, then message k + 1 of every session.
    let r2 = refs.clone();
    ctx.client
        .exec(move |_| {
            for k in 0..PER {
                for (i, s) in r2.iter().enumerate() {
                    s.send(&Seq::new(i as u64 * 1000 + k, 8 + i)).unwrap();
                }
            }
        })
        .await;
    let total = sessions as u64 * PER;
    ctx.wait_for("every echo", || {
        ctx.client
            .sessions()
            .values()
            .map(|s| s.msgs.len() as u64)
            .sum::<u64>()
            >= total
    })
    .await;
    for (i, s) in refs.iter().enumerate() {
        let want: Vec<u64> = (0..PER).map(|k| i as u64 * 1000 + k).collect();
        assert_eq!(ctx.client.msgs(s.id()), want, "client session {i}");
    }
    let server = ctx.server.sessions();
    assert_eq!(server.len(), sessions);
    for s in server.values() {
        let base = s.msgs[0] / 1000 * 1000;
        let want: Vec<u64> = (0..PER).map(|k| base + k).collect();
        assert_eq!(s.msgs, want, "server session {}", s.id);
    }
    let st = ctx.server.status().await;
    assert_eq!(st.accepted, sessions as u64, "{st}");
    assert_eq!(st.live(), sessions, "{st}");
    assert_eq!(st.slots, sessions, "{st}");
    assert_eq!(st.msgs_in, total, "{st}");

    let r2 = refs.clone();
    ctx.client
        .exec(move |_| r2.iter().for_each(|s| s.close()))
        .await;
    ctx.wait_for("every session closed on both sides", || {
        ctx.client.sessions().values().all(|s| s.closed.is_some())
            && ctx.server.sessions().values().all(|s| s.closed.is_some())
    })
    .await;
    for s in ctx.client.sessions().values() {
        assert_eq!(s.closed, Some(CloseReason::Local), "{}", s.id);
    }
    for s in ctx.server.sessions().values() {
        assert_eq!(s.closed, Some(peer_normal()), "{}", s.id);
    }
    ctx.assert_no_leaks().await;
    let st = ctx.server.status().await;
    assert_eq!(st.closed(CloseKind::Peer), sessions as u64, "{st}");
}
