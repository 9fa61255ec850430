//! Scenario 14: status snapshots while sessions close.

use std::sync::Arc;
use std::time::Duration;

use laxnet::{Config, Service};

use super::{send_all, setup_echo};
use crate::harness::Ctx;

/// Every message was received before any session closes, so every `status()` snapshot taken
/// while they close must still count exactly that many (a destroyed session's counters move
/// into the service totals; a snapshot must count them once).
pub(crate) async fn status_consistent_while_closing(ctx: Arc<Ctx>) {
    // Fewer sessions under encryption: each handshake costs ~80 ms of CPU in a debug build.
    let (sessions, rounds): (u64, u64) = if ctx.encrypted() { (8, 2) } else { (100, 5) };
    setup_echo(&ctx, Config::default(), Config::default()).await;
    let sim = ctx.is_sim();
    let (mut polls, mut bad) = (0, Vec::new());
    for round in 1..=rounds {
        let mut refs = Vec::new();
        for q in 0..sessions {
            let c = ctx.connect().await;
            send_all(&ctx, &c, [q], 8).await;
            refs.push(c);
        }
        let n = round * sessions;
        ctx.wait_until("every message echoed", async || {
            ctx.server.status().await.msgs_in == n && ctx.client.status().await.msgs_in == n
        })
        .await;
        let poller = ctx.server.spawn(move |svc: Service| async move {
            let (mut polls, mut bad) = (0u64, Vec::new());
            loop {
                let st = svc.status();
                polls += 1;
                if (st.msgs_in, st.msgs_out) != (n, n) {
                    bad.push((st.msgs_in, st.msgs_out, st.live()));
                }
                if st.live() == 0 {
                    return (polls, bad);
                }
                if sim {
                    // A task that never sleeps stops virtual time (and the whole simulation).
                    tokio::time::sleep(Duration::from_millis(1)).await;
                } else if polls % 256 == 0 {
                    // Bursts of snapshots: the session tasks run on the other worker meanwhile.
                    tokio::task::yield_now().await;
                }
            }
        });
        ctx.client
            .exec(move |_| refs.iter().for_each(|s| s.close()))
            .await;
        let (p, b) = ctx.within("every session to close", poller).await;
        polls += p;
        bad.extend(b);
    }
    assert!(
        bad.is_empty(),
        "{} of {polls} status snapshots miscounted (msgs_in, msgs_out, live), e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    ctx.assert_no_leaks().await;
}
