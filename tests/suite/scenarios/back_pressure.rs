//! Scenario 17: back-pressure: `SessionRef::ready`.

use std::sync::Arc;

use laxnet::{CloseReason, Config, SendError, SessionId, SessionRef};

use super::{peer_normal, server_session};
use crate::harness::{Ctx, Seq};

/// Starts both services, the client's with a send-queue limit of `limit` bytes, and opens one
/// session: the client's ref and the server's session id.
async fn connect_with_queue_limit(ctx: &Arc<Ctx>, limit: usize) -> (SessionRef, SessionId) {
    let client = Config::default().with_send_queue_limit(limit);
    ctx.start(Config::default(), client).await;
    ctx.listen().await;
    let c = ctx.connect().await;
    let srv = server_session(ctx, 0).await;
    (c, srv)
}

/// A bulk sender with a small send queue: it sends until `QueueFull`, waits in `ready()` and
/// sends the same message again. `ready()` must return only once there is room (the retry
/// never fails), must return at all (the session's task wakes it), and must end with the
/// session: a waiter is woken by `close()` with `Closed`, and a ref to a destroyed session
/// gets `Stale`. Every message arrives, in order.
pub(crate) async fn bulk_send_waits_for_room(ctx: Arc<Ctx>) {
    const LEN: usize = 1000;
    const LIMIT: usize = 64 << 10;
    // ~4 MB in all (~600 KB under encryption: a debug build seals ~1 MB a second).
    let n: u64 = if ctx.encrypted() { 600 } else { 4000 };
    let (c, srv) = connect_with_queue_limit(&ctx, LIMIT).await;

    let c2 = c.clone();
    let fulls = ctx
        .within(
            "the bulk sender",
            ctx.client.exec_async(move |_| async move {
                let mut fulls = 0u64;
                for q in 0..n {
                    let msg = Seq::new(q, LEN);
                    match c2.send(&msg) {
                        Ok(()) => {}
                        Err(SendError::QueueFull { queued, limit }) => {
                            assert_eq!(limit, LIMIT);
                            assert!(queued > LIMIT / 2, "QueueFull at {queued} bytes queued");
                            fulls += 1;
                            c2.ready().await.expect("ready on an open session");
                            // At most half the limit is queued now: a 1 KB message fits.
                            c2.send(&msg)
                                .unwrap_or_else(|e| panic!("send {q} right after ready(): {e}"));
                        }
                        Err(e) => panic!("send {q}: {e}"),
                    }
                }
                fulls
            }),
        )
        .await;
    // The sender never yields between sends, so each wait follows a queue that filled from at
    // most empty to over the limit, by at most the limit plus one frame.
    let frame = Seq::new(0, LEN).wire_len();
    let total = n * frame;
    assert!(
        fulls >= total / (LIMIT as u64 + frame) - 1,
        "{fulls} waits for {total} bytes through a {LIMIT}-byte queue"
    );
    ctx.wait_for("the server to receive every message", || {
        ctx.server.msgs(srv).len() as u64 >= n
    })
    .await;
    assert_eq!(ctx.server.msgs(srv), (0..n).collect::<Vec<_>>());
    if !ctx.encrypted() {
        // The receiving session's reads adapted to the bulk stream: it took read blocks well
        // above the initial 4 KiB (up to `read_buffer_max`; turmoil hands out one written
        // segment per read, so there they stop at 32 KiB). The server sends nothing, so no
        // other block is that large.
        let pool = ctx.server.status().await.pool;
        assert!(
            pool.in_use_bytes + pool.retained_bytes >= 4 * Config::default().read_buffer,
            "the read size did not grow for a bulk stream: {pool:?}"
        );
    }

    // Waiters on a full queue are woken by the close, with `Closed`.
    let c2 = c.clone();
    let (sent, waited) = ctx
        .client
        .exec_async(move |_| async move {
            let mut q = n;
            loop {
                match c2.send(&Seq::new(q, LEN)) {
                    Ok(()) => q += 1,
                    Err(SendError::QueueFull { .. }) => break,
                    Err(e) => panic!("send {q}: {e}"),
                }
            }
            // A message over the frame limit is refused as too large even with the queue
            // full: it could never be sent, and waiting for room would wait for nothing.
            let huge = Seq::new(q, Config::default().max_frame);
            assert!(
                matches!(c2.send(&huge), Err(SendError::TooLarge { .. })),
                "a message over max_frame while the queue is full"
            );
            // The session's task has not run since (same thread, no await): no room yet.
            let mut first = std::pin::pin!(c2.ready());
            let mut second = std::pin::pin!(c2.ready());
            for w in [first.as_mut(), second.as_mut()] {
                assert!(
                    futures::poll!(w).is_pending(),
                    "ready() returned with a full queue"
                );
            }
            c2.close();
            // None of these awaits yields (close() already woke the waiters), so the session
            // is still closing, not destroyed, for the third call.
            (q, [first.await, second.await, c2.ready().await])
        })
        .await;
    let closed = Err(SendError::Closed(CloseReason::Local));
    assert_eq!(waited, [closed.clone(), closed.clone(), closed]);

    // The close flushed the queue: the server has everything sent before it.
    ctx.wait_for("both sides' Closed", || {
        ctx.client.closed(c.id()).is_some() && ctx.server.closed(srv).is_some()
    })
    .await;
    assert_eq!(ctx.server.msgs(srv), (0..sent).collect::<Vec<_>>());
    assert_eq!(ctx.server.closed(srv), Some(peer_normal()));
    // Once destroyed, `ready()` still says why the session ended (a send says `Stale`).
    let c2 = c.clone();
    assert_eq!(
        ctx.client
            .exec_async(|_| async move { (c2.ready().await, c2.send(&Seq::new(0, 1))) })
            .await,
        (
            Err(SendError::Closed(CloseReason::Local)),
            Err(SendError::Stale)
        )
    );
    ctx.assert_no_leaks().await;
}

/// The send-queue limit is a high-water mark: a queue below it accepts a message of any size
/// up to the maximum frame, even one several times the limit; while the queue is then over
/// the limit the next send meets `QueueFull`, and after `ready()` it goes through. (Under a
/// "would exceed" rule the big message failed on an empty queue while `ready()` returned at
/// once, so a sender following the documented retry pattern spun forever.)
pub(crate) async fn a_message_larger_than_the_queue_limit_is_sent(ctx: Arc<Ctx>) {
    const LIMIT: usize = 16 << 10;
    const BIG: usize = 100 << 10;
    let (c, srv) = connect_with_queue_limit(&ctx, LIMIT).await;
    let c2 = c.clone();
    let (second, after_ready) = ctx
        .within(
            "the sender",
            ctx.client.exec_async(move |_| async move {
                c2.send(&Seq::new(0, BIG))
                    .unwrap_or_else(|e| panic!("a {BIG}-byte message on an empty queue: {e}"));
                // The session's task has not run since (same thread, no await): the queue
                // holds the big message, over the limit.
                let second = c2.send(&Seq::new(1, 10));
                c2.ready().await.expect("ready on an open session");
                (second, c2.send(&Seq::new(1, 10)))
            }),
        )
        .await;
    match second {
        Err(SendError::QueueFull { queued, limit }) => {
            assert_eq!(limit, LIMIT);
            assert!(queued > BIG, "QueueFull at {queued} bytes queued");
        }
        other => panic!("a send on a queue over its limit: {other:?}"),
    }
    assert_eq!(after_ready, Ok(()));
    ctx.wait_for("the server to receive both messages", || {
        ctx.server.msgs(srv).len() == 2
    })
    .await;
    assert_eq!(ctx.server.msgs(srv), vec![0, 1]);
    c.close();
    ctx.wait_for("both sides' Closed", || {
        ctx.client.closed(c.id()).is_some() && ctx.server.closed(srv).is_some()
    })
    .await;
    ctx.assert_no_leaks().await;
}
