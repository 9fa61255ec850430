//! Scenario 6: heartbeat against a silent peer.

use std::sync::Arc;
use std::time::Duration;

use laxnet::{
    CloseCode, CloseKind, CloseReason, Config, PeerClose, SendError, Service, SessionRef, wire,
};

use super::{close_client_session, read_to_end, round_trip, server_session, setup_echo};
use crate::harness::{Ctx, Seq};

/// The peer that stops talking.
enum Silent {
    /// "bits": a raw socket that never sends a byte.
    Raw(laxnet::runtime::BoxStream),
    /// "bits-hpke" (a raw socket cannot complete the handshake): a real encrypted client
    /// session that does one round trip, then never sends again.
    Session(SessionRef),
}

/// The silent peer's `Seq`s before the server's heartbeat check dropped it.
const SILENT_BEFORE: u64 = 40;

pub(crate) async fn heartbeat_silent_peer(ctx: Arc<Ctx>) {
    // Virtual time is exact; real time gets generous margins.
    let sim = ctx.is_sim();
    let t = if sim {
        Duration::from_secs(2)
    } else {
        Duration::from_millis(1000)
    };
    let sc = Config::default().with_heartbeat(t);
    setup_echo(&ctx, sc, Config::default()).await;
    let good = ctx.connect().await;
    let good_srv = server_session(&ctx, 0).await;
    let silent = if ctx.encrypted() {
        let s = ctx.connect().await;
        round_trip(&ctx, &s, SILENT_BEFORE).await;
        Silent::Session(s)
    } else {
        Silent::Raw(ctx.raw_connect().await.expect("raw connect"))
    };
    let silent_id = server_session(&ctx, 1).await;

    // The server probes the silent session just before and just after the timeout, measuring
    // the silence on its own clock.
    let probe = ctx.server.spawn(move |svc: Service| async move {
        let s = svc.acquire(silent_id).unwrap();
        let idle = || {
            svc.sessions()
                .into_iter()
                .find(|i| i.id == silent_id)
                .map(|i| i.idle)
                .unwrap()
        };
        // Late enough that a timeout fired early (at T/2, say) is caught on both backends.
        let before_target = if sim {
            t - Duration::from_millis(10)
        } else {
            t * 6 / 10
        };
        let i = idle();
        if i < before_target {
            tokio::time::sleep(before_target - i).await;
        }
        let before = idle();
        let r1 = s.send(&Seq::new(7, 0));
        let open1 = s.is_open();
        let after_target = t + Duration::from_millis(10);
        let i = idle();
        if i < after_target {
            tokio::time::sleep(after_target - i).await;
        }
        let after = idle();
        let r2 = s.send(&Seq::new(8, 0));
        let r3 = s.send(&Seq::new(9, 0));
        (before, r1, open1, after, r2, r3)
    });
    // Meanwhile the good session keeps talking (its echoes are sends too).
    let pings = async {
        let mut q = 0;
        let stop = if ctx.is_sim() { t * 2 } else { t * 3 / 2 };
        let start = tokio::time::Instant::now();
        while tokio::time::Instant::now() - start < stop {
            round_trip(&ctx, &good, q).await;
            q += 1;
            ctx.sleep(t / 10).await;
        }
        q
    };
    let ((before, r1, open1, after, r2, r3), pinged) = tokio::join!(probe, pings);

    let guard = if sim {
        Duration::ZERO
    } else {
        Duration::from_millis(200)
    };
    if before + guard < t {
        assert_eq!(
            r1,
            Ok(()),
            "send after {before:?} of silence (timeout {t:?})"
        );
        assert!(open1);
    } else {
        eprintln!("heartbeat: machine too slow to probe before the timeout ({before:?})");
    }
    if sim {
        assert!(before >= t - Duration::from_millis(20), "{before:?}");
    }
    assert!(after > t, "{after:?}");
    assert_eq!(r2, Err(SendError::Closed(CloseReason::Heartbeat)));
    assert!(
        r3 == Err(SendError::Closed(CloseReason::Heartbeat)) || r3 == Err(SendError::Stale),
        "{r3:?}"
    );
    ctx.wait_for("the server's Closed(Heartbeat)", || {
        ctx.server.closed(silent_id).is_some()
    })
    .await;
    assert_eq!(ctx.server.closed(silent_id), Some(CloseReason::Heartbeat));
    let st = ctx.server.status().await;
    assert_eq!(st.heartbeat_expiries, 1, "{st}");
    assert_eq!(st.closed(CloseKind::Heartbeat), 1, "{st}");
    // The silent peer got exactly the frame sent before the timeout, then its stream ended.
    let probed_in_time = before + guard < t;
    let silent = match silent {
        Silent::Raw(mut raw) => {
            let (bytes, clean) = read_to_end(&ctx, &mut raw).await;
            // The server's Open frame, the probe, and the server's reason in a close frame.
            let mut heartbeat = vec![0u8; 17];
            heartbeat[..4].copy_from_slice(&13u32.to_le_bytes());
            heartbeat[4..8].copy_from_slice(&wire::CONTROL_ID.to_le_bytes());
            heartbeat[8..10].copy_from_slice(&[1, 2]); // close, code 2: heartbeat
            assert_eq!(
                bytes[..wire::OPEN_FRAME],
                [6, 0, 0, 0, 255, 255, 255, 255, 0, 1]
            );
            assert!(bytes.ends_with(&heartbeat), "{bytes:?}");
            if probed_in_time {
                let probe = Seq::new(7, 0).frame();
                assert_eq!(bytes[wire::OPEN_FRAME..bytes.len() - 17], probe);
            }
            assert!(clean, "the stream of the expired session was reset");
            Some(raw)
        }
        Silent::Session(s) => {
            // A heartbeat expiry is abortive, but the server still tells the client why in
            // its authenticated Close record (the server had read everything the client
            // sent, so no reset spoils it).
            let id = s.id();
            ctx.wait_for("the silent client's Closed", || {
                ctx.client.closed(id).is_some()
            })
            .await;
            assert_eq!(
                ctx.client.closed(id),
                Some(CloseReason::Peer(PeerClose::new(CloseCode::Heartbeat)))
            );
            let got = ctx.client.msgs(id);
            if probed_in_time {
                assert_eq!(got, [SILENT_BEFORE, 7]);
            } else {
                assert!(
                    got == [SILENT_BEFORE] || got == [SILENT_BEFORE, 7],
                    "{got:?}"
                );
            }
            assert_eq!(ctx.server.msgs(silent_id), [SILENT_BEFORE]);
            let c = ctx.client.status().await;
            assert_eq!(c.closed(CloseKind::Peer), 1, "{c}");
            None
        }
    };

    // The talking session was never closed, and every ping came back in order.
    assert!(pinged >= 5, "{pinged}");
    assert_eq!(ctx.client.msgs(good.id()), (0..pinged).collect::<Vec<_>>());
    assert_eq!(ctx.server.closed(good_srv), None);
    assert_eq!(ctx.client.closed(good.id()), None);
    close_client_session(&ctx, &good, good_srv).await;
    drop(silent);
    ctx.assert_no_leaks().await;
}
