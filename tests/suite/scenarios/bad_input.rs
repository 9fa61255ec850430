//! Scenario 9: bad input.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use laxnet::{CloseKind, CloseReason, Config, Message, ProtocolViolation, Service};
use tokio::io::AsyncWriteExt;

use super::{close_client_session, garbage, server_session, setup_echo};
use crate::harness::{Ctx, Seq, raw_frame};

enum Expect {
    Exactly(ProtocolViolation),
    AnyProtocol,
}

pub(crate) async fn bad_input(ctx: Arc<Ctx>) {
    const MAX: usize = 4096;
    let sc = Config::default().with_max_frame(MAX);
    setup_echo(&ctx, sc, Config::default()).await;
    let good = ctx.connect().await;
    let good_srv = server_session(&ctx, 0).await;

    // The good session talks the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let (g, st) = (good.clone(), stop.clone());
    let pinger = ctx.client.spawn(move |_| async move {
        let mut q = 0u64;
        while !st.load(SeqCst) {
            g.send(&Seq::new(q, 100)).unwrap();
            q += 1;
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        q
    });
    // The server watches its pool: nobody's claimed frame size may ever be allocated.
    let st = stop.clone();
    let sampler = ctx.server.spawn(move |svc: Service| async move {
        let mut max = 0;
        while !st.load(SeqCst) {
            max = max.max(svc.status().pool.in_use_bytes);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        max
    });

    let huge: u32 = 64 << 20;
    let mut attacks: Vec<(&str, Vec<u8>, bool, Expect)> = vec![
        (
            "header claiming 64 MiB",
            {
                let mut b = huge.to_le_bytes().to_vec();
                b.extend_from_slice(&1u32.to_le_bytes());
                b.extend_from_slice(&[0u8; 100]);
                b
            },
            false,
            Expect::Exactly(ProtocolViolation::FrameTooLarge {
                len: huge,
                max: MAX as u32,
            }),
        ),
        (
            "one byte over the maximum",
            {
                // A frame of exactly the maximum is fine (it is echoed below), the next is not.
                let mut b = Seq::new(4242, MAX - 16).frame();
                assert_eq!(b.len(), MAX + 4);
                b.extend_from_slice(&(MAX as u32 + 1).to_le_bytes());
                b.extend_from_slice(&[0u8; 64]);
                b
            },
            false,
            Expect::Exactly(ProtocolViolation::FrameTooLarge {
                len: MAX as u32 + 1,
                max: MAX as u32,
            }),
        ),
        (
            "unknown message id",
            raw_frame(999, &[1, 2, 3]),
            false,
            Expect::Exactly(ProtocolViolation::UnknownMessage { id: 999 }),
        ),
        (
            "undecodable body",
            raw_frame(Seq::ID, &[1, 2, 3]),
            false,
            Expect::Exactly(ProtocolViolation::Undecodable {
                id: Seq::ID,
                type_name: Seq::name(),
            }),
        ),
        (
            "frame too short for an id",
            vec![2, 0, 0, 0, 9, 9],
            false,
            Expect::Exactly(ProtocolViolation::FrameTooShort { len: 2 }),
        ),
        (
            "stream ends inside a frame",
            Seq::new(1, 50).frame()[..30].to_vec(),
            true,
            Expect::Exactly(ProtocolViolation::TruncatedFrame),
        ),
    ];
    for i in 0..3u64 {
        let mut g = garbage(ctx.seed() * 10 + i, 2000);
        if i == 2 {
            // Past the length check, so the id and body parsers see the garbage too.
            g[..4].copy_from_slice(&200u32.to_le_bytes());
        }
        attacks.push(("random garbage", g, true, Expect::AnyProtocol));
    }

    let mut raws = Vec::new();
    let attack_count = attacks.len();
    for (n, (what, bytes, eof, expect)) in attacks.into_iter().enumerate() {
        let mut raw = ctx.raw_connect().await.expect("raw connect");
        let id = server_session(&ctx, n + 1).await;
        let _ = raw.write_all(&bytes).await;
        if eof {
            let _ = raw.shutdown().await;
        }
        ctx.wait_for(&format!("attack {what:?} to close {id}"), || {
            ctx.server.closed(id).is_some()
        })
        .await;
        let reason = ctx.server.closed(id).unwrap();
        match expect {
            Expect::Exactly(v) => {
                assert_eq!(reason, CloseReason::Protocol(v), "attack {what:?}")
            }
            Expect::AnyProtocol => assert!(
                matches!(reason, CloseReason::Protocol(_)),
                "attack {what:?}: {reason:?}"
            ),
        }
        // The good session still works after every attack.
        let before = ctx.client.msgs(good.id()).len();
        ctx.wait_for(&format!("pings to flow after attack {what:?}"), || {
            ctx.client.msgs(good.id()).len() >= before + 3
        })
        .await;
        raws.push(raw);
    }
    // The maximum-size frame of the second attack was accepted and echoed before the
    // oversize one closed its session.
    let boundary = ctx.server.opened()[2];
    assert_eq!(ctx.server.msgs(boundary), [4242]);

    stop.store(true, SeqCst);
    let (sent, max_in_use) = tokio::join!(pinger, sampler);
    ctx.wait_for("every ping echoed", || {
        ctx.client.msgs(good.id()).len() as u64 == sent
    })
    .await;
    assert_eq!(ctx.client.msgs(good.id()), (0..sent).collect::<Vec<_>>());
    assert_eq!(ctx.client.closed(good.id()), None);
    assert_eq!(ctx.server.closed(good_srv), None);
    let st = ctx.server.status().await;
    assert_eq!(st.closed(CloseKind::Protocol), attack_count as u64, "{st}");
    assert_eq!(st.pool.oversize_allocations, 0, "{st}");
    assert!(
        max_in_use < 1 << 20,
        "pool in use peaked at {max_in_use} bytes"
    );
    close_client_session(&ctx, &good, good_srv).await;
    drop(raws);
    ctx.assert_no_leaks().await;
}
