//! Scenario 12: duplicate message ids.

use std::sync::Arc;

use borsh::{BorshDeserialize, BorshSerialize};
use laxnet::{Config, Message, SubscribeError, Topic};

use super::{close_client_session, round_trip, server_session, setup_echo};
use crate::harness::{Ctx, Seq};

#[derive(BorshSerialize, BorshDeserialize, Debug, Clone)]
struct Impostor {
    x: u8,
}
laxnet::message!(Impostor = 1);

#[derive(BorshSerialize, BorshDeserialize, Debug, Clone)]
struct First42 {
    x: u32,
}
#[derive(BorshSerialize, BorshDeserialize, Debug, Clone)]
struct Second42 {
    y: u32,
}
laxnet::message!(First42 = 42, Second42 = 42);

pub(crate) async fn duplicate_message_id(ctx: Arc<Ctx>) {
    setup_echo(&ctx, Config::default(), Config::default()).await;
    let proto = ctx.protocol();
    let results = ctx
        .server
        .exec(move |svc| {
            let mut inbox = svc.inbox();
            vec![
                svc.register::<Impostor>(),
                svc.sub(Topic::message::<Impostor>(proto), |_| {})
                    .map(|_| ()),
                inbox.add(Topic::message::<Impostor>(proto)).map(|_| ()),
                svc.register::<Seq>(), // the same type again is fine
                svc.register::<First42>(),
                svc.register::<Second42>(),
                svc.sub(Topic::message::<Second42>(proto), |_| {})
                    .map(|_| ()),
                svc.register::<First42>(),
            ]
        })
        .await;
    let dup1 = Err(SubscribeError::DuplicateId {
        id: 1,
        existing: Seq::name(),
        refused: Impostor::name(),
    });
    let dup42 = Err(SubscribeError::DuplicateId {
        id: 42,
        existing: First42::name(),
        refused: Second42::name(),
    });
    assert_eq!(
        results,
        vec![
            dup1.clone(),
            dup1.clone(),
            dup1,
            Ok(()),
            Ok(()),
            dup42.clone(),
            dup42,
            Ok(())
        ]
    );
    // The refused registrations changed nothing: Seq still echoes, and id 42 decodes as the
    // first type (registered without subscribers: counted as unhandled, session kept).
    ctx.client
        .exec(|svc| svc.register::<Second42>())
        .await
        .unwrap();
    let c = ctx.connect().await;
    let srv = server_session(&ctx, 0).await;
    round_trip(&ctx, &c, 1).await;
    let c2 = c.clone();
    ctx.client
        .exec(move |_| c2.send(&Second42 { y: 7 }))
        .await
        .unwrap();
    round_trip(&ctx, &c, 2).await;
    let st = ctx.server.status().await;
    assert_eq!((st.unhandled, st.msgs_in), (1, 3), "{st}");
    assert_eq!(ctx.server.closed(srv), None);
    close_client_session(&ctx, &c, srv).await;
    ctx.assert_no_leaks().await;
}
