//! The scenarios, written once against [`Ctx`]; `main.rs` instantiates each per backend and
//! protocol under the name of its function. One file per scenario, numbered as they were
//! written (the file's docs say what it checks):
//!
//! | # | file | scenario functions (test names) |
//! |---|---|---|
//! | 1 | `echo` | `echo` |
//! | 2 | `many_sessions` | `many_sessions` |
//! | 3 | `close_from_either_side` | `close_from_server`, `close_from_client` |
//! | 4 | `close_with_queued_data` | `close_with_queued_data` |
//! | 5 | `peer_crash` | `peer_crash` |
//! | 6 | `heartbeat_silent_peer` | `heartbeat_silent_peer` |
//! | 7 | `stale_refs` | `stale_ref` |
//! | 8 | `protocol_misuse` | `protocol_misuse` ("bits" only) |
//! | 9 | `bad_input` | `bad_input` ("bits" only) |
//! | 10 | `max_sessions` | `max_sessions` |
//! | 11 | `shutdown` | `shutdown` |
//! | 12 | `duplicate_message_ids` | `duplicate_message_id` |
//! | 13 | `listener_lifetime` | `dropped_acceptor_keeps_listening` |
//! | 14 | `status_while_closing` | `status_consistent_while_closing` |
//! | 15 | `bad_handshakes` | `bad_handshake` ("bits-hpke" only) |
//! | 16 | `refused_after_handshake` | `server_refuses_after_handshake`, `client_refuses_after_handshake` ("bits-hpke" only) |
//! | 17 | `back_pressure` | `bulk_send_waits_for_room`, `a_message_larger_than_the_queue_limit_is_sent` |
//! | 18 | `partial_frame` | `waiting_partial_frame_holds_a_small_block` ("bits" only) |
//!
//! This module holds the helpers that more than one scenario uses; a helper that only one
//! scenario uses lives in its file.

use laxnet::{CloseCode, CloseReason, Config, PeerClose, SessionId, SessionRef};
use tokio::io::AsyncReadExt;

use crate::harness::{Ctx, Seq, install_echo};

mod back_pressure;
mod bad_handshakes;
mod bad_input;
mod close_from_either_side;
mod close_reasons;
mod close_with_queued_data;
mod duplicate_message_ids;
mod echo;
mod heartbeat_silent_peer;
mod listener_lifetime;
mod many_sessions;
mod max_sessions;
mod partial_frame;
mod peer_crash;
mod protocol_misuse;
mod refused_after_handshake;
mod shutdown;
mod stale_refs;
mod status_while_closing;

pub(crate) use back_pressure::{
    a_message_larger_than_the_queue_limit_is_sent, bulk_send_waits_for_room,
};
pub(crate) use bad_handshakes::bad_handshake;
pub(crate) use bad_input::bad_input;
pub(crate) use close_from_either_side::{close_from_client, close_from_server};
pub(crate) use close_reasons::close_with_reaches_the_peer;
pub(crate) use close_with_queued_data::close_with_queued_data;
pub(crate) use duplicate_message_ids::duplicate_message_id;
pub(crate) use echo::echo;
pub(crate) use heartbeat_silent_peer::heartbeat_silent_peer;
pub(crate) use listener_lifetime::dropped_acceptor_keeps_listening;
pub(crate) use many_sessions::many_sessions;
pub(crate) use max_sessions::max_sessions;
pub(crate) use partial_frame::waiting_partial_frame_holds_a_small_block;
pub(crate) use peer_crash::peer_crash;
pub(crate) use protocol_misuse::protocol_misuse;
pub(crate) use refused_after_handshake::{
    client_refuses_after_handshake, server_refuses_after_handshake,
};
pub(crate) use shutdown::shutdown;
pub(crate) use stale_refs::stale_ref;
pub(crate) use status_while_closing::status_consistent_while_closing;

/// Starts both services (the server echoing every `Seq`) and the server's listener.
async fn setup_echo(ctx: &Ctx, server: Config, client: Config) -> String {
    ctx.start(server, client).await;
    let h = ctx.server.clone();
    ctx.server.exec(move |s| install_echo(&h, s)).await;
    ctx.listen().await
}

/// The server-side id of the `n`-th (0-based) session the server opened.
async fn server_session(ctx: &Ctx, n: usize) -> SessionId {
    ctx.wait_for(&format!("the server to open session #{n}"), || {
        ctx.server.opened().len() > n
    })
    .await;
    ctx.server.opened()[n]
}

/// Sends `Seq`s `seqs` of `len` bytes on `s`, on the client host, in one go.
async fn send_all(ctx: &Ctx, s: &SessionRef, seqs: impl IntoIterator<Item = u64>, len: usize) {
    let s = s.clone();
    let seqs: Vec<u64> = seqs.into_iter().collect();
    ctx.client
        .exec(move |_| {
            for q in seqs {
                s.send(&Seq::new(q, len))
                    .unwrap_or_else(|e| panic!("send {q} on {}: {e}", s.id()));
            }
        })
        .await;
}

/// Sends `Seq` `seq` from the client on `s` and waits for the server's echo of it.
async fn round_trip(ctx: &Ctx, s: &SessionRef, seq: u64) {
    send_all(ctx, s, [seq], 16).await;
    let id = s.id();
    ctx.wait_for(&format!("the echo of {seq} on {id}"), || {
        ctx.client.msgs(id).last() == Some(&seq)
    })
    .await;
}

/// Closes client session `s` and waits until both sides published `Closed`.
async fn close_client_session(ctx: &Ctx, s: &SessionRef, server_id: SessionId) {
    let s2 = s.clone();
    ctx.client.exec(move |_| s2.close()).await;
    let id = s.id();
    ctx.wait_for(&format!("{id} closed on both sides"), || {
        ctx.client.closed(id).is_some() && ctx.server.closed(server_id).is_some()
    })
    .await;
    assert_eq!(ctx.client.closed(id), Some(CloseReason::Local));
    assert_eq!(ctx.server.closed(server_id), Some(peer_normal()));
}

/// What a side sees when its peer's application closed (without a code or text).
fn peer_normal() -> CloseReason {
    CloseReason::Peer(PeerClose::new(CloseCode::Normal))
}

/// What a side sees when its peer's service shut down.
fn peer_shutdown() -> CloseReason {
    CloseReason::Peer(PeerClose::new(CloseCode::Shutdown))
}

/// Endings a side sees when its peer vanished or dropped it.
fn peer_gone(r: &CloseReason) -> bool {
    matches!(
        r,
        CloseReason::PeerClosed | CloseReason::Reset | CloseReason::Io(_)
    )
}

/// Bytes of a close body without text (a Close record's payload when it carries a reason).
const CLOSE_BODY: u64 = laxnet::wire::CLOSE_BODY as u64;

/// Bytes a "bits-hpke" record adds around its payload: length, type, tag.
const RECORD_OVERHEAD: u64 = laxnet::wire::RECORD_OVERHEAD as u64;
/// The default largest record payload (`Encryption::max_record`).
const MAX_RECORD: u64 = 16 << 10;

/// Checks that `wire` bytes on an encrypted session are `payload` bytes of frames sealed in
/// whole records, and returns how many records: every record is full or carries the rest of
/// one batch of queued sends, so there are at least `payload / MAX_RECORD` (rounded up) and
/// at most one partial record per send plus the full ones.
fn records_in(wire: u64, payload: u64, sends: u64, what: &str) -> u64 {
    assert!(
        wire >= payload && (wire - payload).is_multiple_of(RECORD_OVERHEAD),
        "{what}: {wire} wire bytes are not {payload} payload bytes in whole records"
    );
    let records = (wire - payload) / RECORD_OVERHEAD;
    let (min, max) = (payload.div_ceil(MAX_RECORD), sends + payload / MAX_RECORD);
    assert!(
        (min..=max).contains(&records),
        "{what}: {records} records for {payload} bytes in {sends} sends (expected {min}..={max})"
    );
    records
}

/// Reads `raw` to its end (bounded); returns the bytes and whether it ended cleanly.
async fn read_to_end(ctx: &Ctx, raw: &mut laxnet::runtime::BoxStream) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    ctx.within("the raw peer's stream to end", async {
        loop {
            match raw.read(&mut buf).await {
                Ok(0) => return (got, true),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => return (got, false),
            }
        }
    })
    .await
}

/// A seeded xorshift stream of bytes.
fn garbage(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
