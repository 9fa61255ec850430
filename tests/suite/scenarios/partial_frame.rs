//! Scenario 18: a session waiting for the rest of a frame holds a small block ("bits" only: raw
//! bytes).

use std::sync::Arc;

use laxnet::{CloseReason, Config};
use tokio::io::AsyncWriteExt;

use super::server_session;
use crate::harness::{Ctx, Seq};

/// A raw peer sends ~100 KiB of frames and the first 10 bytes of one more, then waits. The
/// server's reads grew for the burst (read blocks well above 4 KiB were taken), but once a
/// read would block the 10 waiting bytes sit in one `read_buffer`-size block: memory follows
/// what is buffered, not the read size reached. The rest of the frame then completes it.
pub(crate) async fn waiting_partial_frame_holds_a_small_block(ctx: Arc<Ctx>) {
    const N: u64 = 400;
    let small = Config::default().read_buffer;
    ctx.start(Config::default(), Config::default()).await;
    ctx.listen().await;
    let mut raw = ctx.raw_connect().await.expect("raw connect");
    let srv = server_session(&ctx, 0).await;
    let mut burst: Vec<u8> = (0..N).flat_map(|q| Seq::new(q, 256).frame()).collect();
    let last = Seq::new(N, 256).frame();
    burst.extend_from_slice(&last[..10]);
    raw.write_all(&burst).await.expect("write the burst");
    ctx.wait_for("the server to receive the complete frames", || {
        ctx.server.msgs(srv).len() as u64 == N
    })
    .await;
    ctx.wait_until("the waiting session to hold one small block", async || {
        ctx.server.status().await.pool.in_use_bytes <= small
    })
    .await;
    let pool = ctx.server.status().await.pool;
    assert_eq!(
        (pool.in_use_blocks, pool.in_use_bytes),
        (1, small),
        "{pool:?}"
    );
    assert!(
        pool.retained_bytes >= 4 * small,
        "the reads did not grow for the burst, so this proves nothing: {pool:?}"
    );

    raw.write_all(&last[10..]).await.expect("write the rest");
    ctx.wait_for("the completed frame", || {
        ctx.server.msgs(srv).len() as u64 == N + 1
    })
    .await;
    assert_eq!(ctx.server.msgs(srv), (0..=N).collect::<Vec<_>>());
    let _ = raw.shutdown().await;
    ctx.wait_for("the server to see the end of stream", || {
        ctx.server.closed(srv).is_some()
    })
    .await;
    assert_eq!(ctx.server.closed(srv), Some(CloseReason::PeerClosed));
    drop(raw);
    ctx.assert_no_leaks().await;
}
