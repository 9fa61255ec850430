//! Scenario 8: protocol names and misuse. A name that is no protocol fails to parse (names
//! exist only there now); `bits-hpke` on a service without `Config::encryption` fails with
//! `NotConfigured`, the same way for `accept` and `connect`, before any I/O.

use std::sync::Arc;

use laxnet::{AcceptError, Config, ConnectError, Protocol, Service};

use super::{close_client_session, server_session};
use crate::harness::Ctx;

pub(crate) async fn protocol_misuse(ctx: Arc<Ctx>) {
    let unknown = "nope".parse::<Protocol>().unwrap_err();
    assert_eq!(unknown.name(), "nope");
    for p in Protocol::ALL {
        assert_eq!(p.name().parse::<Protocol>(), Ok(p));
    }
    ctx.start(Config::default(), Config::default()).await;
    let addr = ctx.listen().await;
    let bind = ctx.bind_addr();
    let accept = ctx
        .server
        .exec_async(move |svc: Service| async move {
            svc.accept(bind, Protocol::BitsHpke).await.map(|_| ())
        })
        .await;
    assert!(
        matches!(accept, Err(AcceptError::NotConfigured)),
        "{accept:?}"
    );
    let a = addr.clone();
    let connect = ctx
        .client
        .exec_async(move |svc: Service| async move {
            svc.connect(&a, Protocol::BitsHpke).await.map(|_| ())
        })
        .await;
    assert!(
        matches!(connect, Err(ConnectError::NotConfigured)),
        "{connect:?}"
    );
    // Refused before touching the network: no connection attempt, failed or not.
    let c = ctx.client.status().await;
    assert_eq!((c.connected, c.connect_failures), (0, 0), "{c}");
    // "bits" still works, and its session is the only one the server ever accepted.
    let c = ctx.connect().await;
    let srv = server_session(&ctx, 0).await;
    let s = ctx.server.status().await;
    assert_eq!((s.accepted, s.handshake_failures), (1, 0), "{s}");
    close_client_session(&ctx, &c, srv).await;
    ctx.assert_no_leaks().await;
}
