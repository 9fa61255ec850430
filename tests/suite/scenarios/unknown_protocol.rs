//! Scenario 8: unknown protocol.

use std::sync::Arc;

use laxnet::{AcceptError, Config, ConnectError, Service, SubscribeError, Topic};

use super::{close_client_session, server_session};
use crate::harness::{BITS, Ctx, Seq};

pub(crate) async fn unknown_protocol(ctx: Arc<Ctx>) {
    ctx.start(Config::default(), Config::default()).await;
    let addr = ctx.listen().await;
    let bind = ctx.bind_addr();
    let (accept, sub_s, sub_m, inbox_s, inbox_m, protocols) = ctx
        .server
        .exec_async(move |svc: Service| async move {
            let accept = svc.accept(bind, "nope").await.map(|_| ());
            let sub_s = svc.sub(Topic::sessions("nope"), |_| {});
            let sub_m = svc.sub(Topic::message::<Seq>("nope"), |_| {});
            let mut inbox = svc.inbox();
            let inbox_s = inbox.sessions("nope").map(|_| ());
            let inbox_m = inbox.messages::<Seq>("nope").map(|_| ());
            (accept, sub_s, sub_m, inbox_s, inbox_m, svc.protocols())
        })
        .await;
    assert!(
        matches!(&accept, Err(AcceptError::UnknownProtocol(p)) if p == "nope"),
        "{accept:?}"
    );
    let unknown = SubscribeError::UnknownProtocol("nope".into());
    assert_eq!(sub_s.unwrap_err(), unknown);
    assert_eq!(sub_m.unwrap_err(), unknown);
    assert_eq!(inbox_s.unwrap_err(), unknown);
    assert_eq!(inbox_m.unwrap_err(), unknown);
    assert!(protocols.iter().any(|p| p == BITS), "{protocols:?}");
    assert!(!protocols.iter().any(|p| p == "nope"), "{protocols:?}");
    let a = addr.clone();
    let connect = ctx
        .client
        .exec_async(move |svc: Service| async move { svc.connect(&a, "nope").await.map(|_| ()) })
        .await;
    assert!(
        matches!(&connect, Err(ConnectError::UnknownProtocol(p)) if p == "nope"),
        "{connect:?}"
    );
    // Refused before touching the network.
    let (c, s) = (ctx.client.status().await, ctx.server.status().await);
    assert_eq!((c.connected, c.connect_failures), (0, 0), "{c}");
    assert_eq!(s.accepted, 0, "{s}");
    // "bits" still works.
    let c = ctx.connect().await;
    let srv = server_session(&ctx, 0).await;
    close_client_session(&ctx, &c, srv).await;
    ctx.assert_no_leaks().await;
}
