//! The session state machine without a runtime: two connections wired back to back, bytes
//! moved by hand, time passed as a value. Each test runs in microseconds.

use std::io::IoSlice;
use std::time::Duration;

use borsh::{BorshDeserialize, BorshSerialize};
use zeroize::Zeroizing;

use super::{Connection, Event, Limits};
use crate::buffer::{BufferPool, PoolConfig, SegmentQueue};
use crate::crypto::handshake::SessionKeys;
use crate::crypto::io::Sealed;
use crate::crypto::{Cipher, CryptoError, Encryption, KeyPair};
use crate::error::{CloseCode, CloseReason, PeerClose, ProtocolViolation};
use crate::message::encode_frame;
use crate::planted::Plants;
use crate::time::Instant;

#[derive(BorshSerialize, BorshDeserialize, Debug, PartialEq)]
struct Note {
    seq: u32,
    text: Vec<u8>,
}
crate::message!(Note = 9);

const LINGER: Duration = Duration::from_millis(500);

fn at(ms: u64) -> Instant {
    Instant::from_origin(Duration::from_millis(ms))
}

fn limits() -> Limits {
    Limits {
        linger: LINGER,
        max_frame: 1 << 16,
        read_buffer: 4096,
        read_buffer_max: 1 << 16,
        segment_size: 4096,
    }
}

/// A plaintext pair, or an encrypted one sharing fixed keys (client first).
fn pair(encrypted: bool) -> (Connection, Connection, BufferPool) {
    pair_with(encrypted, |e| e)
}

/// As [`pair`], with both ends' `Encryption` settings changed by `tune`.
fn pair_with(
    encrypted: bool,
    tune: impl Fn(Encryption) -> Encryption,
) -> (Connection, Connection, BufferPool) {
    let pool = BufferPool::new(PoolConfig::default());
    let side = |is_client: bool| {
        let sealed = encrypted.then(|| {
            let keys = SessionKeys {
                cipher: Cipher::ChaCha20Poly1305,
                peer_key: None,
                c2s_key: Zeroizing::new([1; 32]),
                c2s_nonce: Zeroizing::new([2; 12]),
                s2c_key: Zeroizing::new([3; 32]),
                s2c_nonce: Zeroizing::new([4; 12]),
            };
            let enc = tune(Encryption::client(KeyPair::from_seed(&[5; 32]).public()));
            Box::new(Sealed::new(
                &keys,
                is_client,
                &enc,
                &pool,
                4096,
                1 << 16,
                4096,
            ))
        });
        Connection::new(pool.clone(), limits(), sealed, Plants::default())
    };
    (side(true), side(false), pool)
}

/// Frames for `seqs`, as senders queue them.
fn queue(pool: &BufferPool, seqs: std::ops::Range<u32>, len: usize) -> SegmentQueue {
    let mut q = SegmentQueue::new(pool.clone(), 4096);
    for seq in seqs {
        let note = Note {
            seq,
            text: vec![seq as u8; len],
        };
        encode_frame(&mut q, &note, 1 << 16).expect("fits");
    }
    q
}

/// Everything `from` has to write, at most `max` bytes, as one write.
fn transmit(from: &mut Connection, max: usize) -> Vec<u8> {
    let mut slices = [IoSlice::new(&[]); 64];
    let n = from.poll_transmit(&mut slices);
    let mut bytes: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
    bytes.truncate(max);
    if !bytes.is_empty() {
        let counted = from.handle_written(bytes.len());
        assert!(counted <= bytes.len());
    }
    bytes
}

/// Writes all `from` has and reads it into `to`; returns the frames `to` delivers.
fn pipe(from: &mut Connection, to: &mut Connection) -> Vec<u32> {
    let mut seqs = Vec::new();
    loop {
        let bytes = transmit(from, usize::MAX);
        if bytes.is_empty() {
            break;
        }
        seqs.extend(feed(to, &bytes));
    }
    seqs
}

/// Hands `bytes` to `to` as reads and returns the frames it delivers.
fn feed(to: &mut Connection, mut bytes: &[u8]) -> Vec<u32> {
    let mut seqs = Vec::new();
    while !bytes.is_empty() {
        let buf = to.read_buf();
        let n = buf.len().min(bytes.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        let offered = buf.len();
        to.handle_read(n, offered);
        bytes = &bytes[n..];
        loop {
            match to.poll_frame() {
                Ok(Some(f)) => {
                    let note: Note = borsh::from_slice(to.body(&f)).expect("a note");
                    seqs.push(note.seq);
                    to.consume(&f);
                }
                Ok(None) => break,
                Err(v) => {
                    to.handle_violation(v, at(0));
                    break;
                }
            }
        }
    }
    seqs
}

fn events(c: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// Runs both ends' clean close to the end: flush, shut down, read the other's end.
fn finish_clean(a: &mut Connection, b: &mut Connection, now: Instant) -> (Vec<u32>, Vec<u32>) {
    let mut got = (Vec::new(), Vec::new());
    for _ in 0..8 {
        got.0.extend(pipe(b, a));
        got.1.extend(pipe(a, b));
        if a.wants_shutdown() {
            a.handle_shutdown();
            b.handle_eof(now);
        }
        if b.wants_shutdown() {
            b.handle_shutdown();
            a.handle_eof(now);
        }
        if a.is_done() && b.is_done() {
            break;
        }
    }
    got
}

#[test]
fn a_close_flushes_what_was_queued_in_both_directions() {
    for encrypted in [false, true] {
        let (mut c, mut s, pool) = pair(encrypted);
        assert!(c.handle_queued(&mut queue(&pool, 0..50, 300)));
        assert!(s.handle_queued(&mut queue(&pool, 0..20, 10)));
        c.handle_close(CloseReason::Local, at(0));
        assert!(!c.wants_shutdown(), "not before the queue is flushed");
        let (to_client, to_server) = finish_clean(&mut c, &mut s, at(1));
        assert_eq!(
            to_server,
            (0..50).collect::<Vec<_>>(),
            "encrypted: {encrypted}"
        );
        assert_eq!(
            to_client,
            (0..20).collect::<Vec<_>>(),
            "encrypted: {encrypted}"
        );
        assert!(c.is_done() && s.is_done());
        assert_eq!(c.reason(), Some(&CloseReason::Local));
        assert_eq!(s.reason(), Some(&peer(CloseCode::Normal)));
        assert_eq!(events(&mut s), [Event::Closing(peer(CloseCode::Normal))]);
        assert_eq!(events(&mut c), []);
        c.release();
        s.release();
        assert_eq!(pool.stats().in_use_bytes, 0);
    }
}

#[test]
fn frames_left_in_the_send_queue_are_flushed_before_the_shutdown() {
    for encrypted in [false, true] {
        let (mut c, mut s, pool) = pair(encrypted);
        assert!(c.handle_queued(&mut queue(&pool, 0..5, 100)));
        let mut more = queue(&pool, 5..9, 100);
        // Still busy with the first frames: the rest stays queued.
        assert!(!c.handle_queued(&mut more));
        c.handle_close(CloseReason::Local, at(0));
        assert_eq!(pipe(&mut c, &mut s), (0..5).collect::<Vec<_>>());
        assert!(
            !c.wants_shutdown(),
            "frames are still queued (encrypted: {encrypted})"
        );
        assert!(c.handle_queued(&mut more));
        let (_, got) = finish_clean(&mut c, &mut s, at(1));
        assert_eq!(got, (5..9).collect::<Vec<_>>());
        assert_eq!(
            s.reason(),
            Some(&peer(CloseCode::Normal)),
            "the end came last"
        );
    }
}

#[test]
fn the_linger_bounds_a_close_the_peer_never_answers() {
    let (mut c, mut s, pool) = pair(false);
    assert!(c.handle_queued(&mut queue(&pool, 0..3, 10)));
    c.handle_close(CloseReason::Local, at(100));
    assert_eq!(c.poll_timeout(), Some(at(100) + LINGER));
    pipe(&mut c, &mut s);
    assert!(c.wants_shutdown());
    c.handle_shutdown();
    // The peer never ends its side.
    assert!(!c.is_done());
    c.handle_timeout(at(599));
    assert!(
        !c.is_done() && events(&mut c).is_empty(),
        "not before the deadline"
    );
    c.handle_timeout(at(600));
    assert!(c.is_done());
    assert_eq!(events(&mut c), [Event::LingerExpired]);
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(
        c.reason(),
        Some(&CloseReason::Local),
        "everything was written: only the peer's end is missing"
    );
}

#[test]
fn a_close_during_a_partial_write_sends_the_rest() {
    let (mut c, mut s, pool) = pair(false);
    let q = queue(&pool, 0..10, 200);
    let total = q.len();
    let mut q = q;
    assert!(c.handle_queued(&mut q));
    let in_flight = |c: &Connection| c.in_flight(|p| p);
    assert_eq!(in_flight(&c), total);
    let first = transmit(&mut c, 777);
    assert_eq!(
        in_flight(&c),
        total - 777,
        "only what was written leaves the count"
    );
    c.handle_close(CloseReason::Local, at(0));
    let mut got = feed(&mut s, &first);
    got.extend(pipe(&mut c, &mut s));
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    assert_eq!(in_flight(&c), 0);
    assert!(c.wants_shutdown());
}

#[test]
fn the_peers_end_inside_a_frame_is_a_violation() {
    for encrypted in [false, true] {
        let (mut c, mut s, pool) = pair(encrypted);
        assert!(c.handle_queued(&mut queue(&pool, 0..2, 100)));
        let bytes = transmit(&mut c, usize::MAX);
        let cut = bytes.len() - 30;
        assert_eq!(feed(&mut s, &bytes[..cut]).len(), usize::from(!encrypted));
        s.handle_eof(at(0));
        let want = if encrypted {
            CloseReason::Crypto(CryptoError::Truncated)
        } else {
            CloseReason::Protocol(ProtocolViolation::TruncatedFrame)
        };
        assert_eq!(s.reason(), Some(&want));
        assert_eq!(
            events(&mut s),
            [Event::Closing(want), Event::ProtocolError],
            "encrypted: {encrypted}"
        );
        if encrypted {
            assert!(
                s.is_done(),
                "a truncation: nothing to send, nothing to read"
            );
        } else {
            // A violation is told to the peer (which may still read) before the end.
            assert!(!s.is_done());
            assert_eq!(pipe(&mut s, &mut c), Vec::<u32>::new());
            assert!(s.wants_shutdown());
            s.handle_shutdown();
            assert!(s.is_done());
            c.handle_eof(at(1));
            let mut told = PeerClose::new(CloseCode::Protocol);
            told.detail = ProtocolViolation::TruncatedFrame.detail();
            assert_eq!(c.reason(), Some(&CloseReason::Peer(told)));
        }
    }
}

#[test]
fn an_abortive_close_that_cannot_write_drops_what_was_queued() {
    let (mut c, _s, pool) = pair(true);
    assert!(c.handle_queued(&mut queue(&pool, 0..10, 500)));
    c.handle_close(CloseReason::Aborted, at(0));
    assert!(c.is_done());
    assert_eq!(c.in_flight(|p| p), 0);
    let mut slices = [IoSlice::new(&[]); 4];
    assert_eq!(c.poll_transmit(&mut slices), 0);
}

fn peer(code: CloseCode) -> CloseReason {
    CloseReason::Peer(PeerClose::new(code))
}

/// Runs `c`'s close to its shutdown and `s`'s read of it; returns the frames `s` got.
fn close_to(c: &mut Connection, s: &mut Connection, now: Instant) -> Vec<u32> {
    let got = pipe(c, s);
    assert!(c.wants_shutdown(), "the close message is written");
    c.handle_shutdown();
    s.handle_eof(now);
    got
}

#[test]
fn an_abortive_close_finishes_the_frames_taken_and_tells_the_peer_why() {
    for encrypted in [false, true] {
        let (mut c, mut s, pool) = pair(encrypted);
        assert!(c.handle_queued(&mut queue(&pool, 0..10, 500)));
        // The first write stops inside a frame: the rest of that frame still goes.
        let first = transmit(&mut c, 700);
        c.handle_close(CloseReason::Heartbeat, at(0));
        assert!(!c.is_done() && c.read_done());
        assert_eq!(
            c.poll_timeout(),
            Some(at(0) + LINGER),
            "bounded by the linger"
        );
        // Nothing more is taken from the send queue.
        assert!(!c.handle_queued(&mut queue(&pool, 10..12, 10)));
        let mut got = feed(&mut s, &first);
        got.extend(close_to(&mut c, &mut s, at(1)));
        assert_eq!(got, (0..10).collect::<Vec<_>>(), "encrypted: {encrypted}");
        assert!(c.is_done(), "it does not wait for the peer's end");
        assert_eq!(s.reason(), Some(&peer(CloseCode::Heartbeat)));
        assert!(!s.reason().unwrap().is_clean());
    }
}

/// The driver stays awake while the connection wants the send queue and it holds frames: a
/// connection that takes nothing more (an abortive close that still tells the peer why) must
/// not want it, or the task spins until the linger expires (found by the `sim` fuzz target as
/// a run that never ended: docs/fuzzing.md, bug 7).
#[test]
fn a_connection_that_takes_nothing_more_does_not_want_the_queue() {
    for encrypted in [false, true] {
        let (mut c, _s, pool) = pair(encrypted);
        assert!(c.wants_queue());
        c.handle_close(CloseReason::Heartbeat, at(0));
        let mut left = queue(&pool, 0..2, 10);
        assert!(!c.handle_queued(&mut left), "nothing more is taken");
        assert!(!left.is_empty());
        assert!(!c.wants_queue(), "encrypted: {encrypted}");
    }
    // A clean close still flushes the queue.
    let (mut c, _s, pool) = pair(false);
    c.handle_close(CloseReason::Local, at(0));
    assert!(c.wants_queue());
    assert!(c.handle_queued(&mut queue(&pool, 0..2, 10)));
    assert!(!c.wants_queue(), "until what it took is written");
}

#[test]
fn the_application_code_and_text_reach_the_peer() {
    for encrypted in [false, true] {
        let (mut c, mut s, _pool) = pair(encrypted);
        c.set_app_close(42, "going away".into());
        c.handle_close(CloseReason::Local, at(0));
        close_to(&mut c, &mut s, at(1));
        let want = PeerClose {
            code: CloseCode::Normal,
            detail: 0,
            app_code: 42,
            text: "going away".into(),
        };
        assert_eq!(
            s.reason(),
            Some(&CloseReason::Peer(want)),
            "encrypted: {encrypted}"
        );
        assert_eq!(s.reason().unwrap().fault(), crate::Fault::Peer);
    }
}

#[test]
fn a_peer_that_gives_no_reason_is_peer_closed() {
    for encrypted in [false, true] {
        let (mut c, mut s, _pool) = pair(encrypted);
        // A side answering its peer's close sends no reason (on "bits-hpke": an empty Close
        // record), as every peer did before close reasons.
        c.handle_close(CloseReason::PeerClosed, at(0));
        close_to(&mut c, &mut s, at(1));
        assert_eq!(
            s.reason(),
            Some(&CloseReason::PeerClosed),
            "encrypted: {encrypted}"
        );
    }
}

#[test]
fn after_the_peers_close_message_a_reset_keeps_its_reason() {
    for encrypted in [false, true] {
        let (mut c, mut s, _pool) = pair(encrypted);
        c.handle_close(CloseReason::Shutdown, at(0));
        pipe(&mut c, &mut s);
        s.handle_read_error(std::io::ErrorKind::ConnectionReset);
        assert_eq!(
            s.reason(),
            Some(&peer(CloseCode::Shutdown)),
            "encrypted: {encrypted}"
        );
    }
}

#[test]
fn malformed_control_frames_and_frames_after_the_close_are_violations() {
    let bad = CloseReason::Protocol(ProtocolViolation::BadControl);
    // A control frame whose body does not parse.
    let (_c, mut s, _pool) = pair(false);
    feed(&mut s, &crate::control::frame(&[1, 0]));
    assert_eq!(s.reason(), Some(&bad));
    // An Open frame inside a session.
    let (_c, mut s, _pool) = pair(false);
    feed(&mut s, &crate::control::open_frame());
    assert_eq!(s.reason(), Some(&bad));
    // A frame after the peer's close frame.
    let (mut c, mut s, pool) = pair(false);
    c.handle_close(CloseReason::Local, at(0));
    let mut bytes = transmit(&mut c, usize::MAX);
    let mut q = queue(&pool, 0..1, 10);
    bytes.extend(q.chunks().flatten().copied().collect::<Vec<u8>>());
    q.clear();
    assert_eq!(feed(&mut s, &bytes), Vec::<u32>::new());
    assert_eq!(s.reason(), Some(&bad));
    // An unknown control kind (a newer peer) is ignored.
    let (mut c, mut s, pool) = pair(false);
    assert!(c.handle_queued(&mut queue(&pool, 0..1, 10)));
    let mut bytes = crate::control::frame(&[9, 9, 9]);
    bytes.extend(transmit(&mut c, usize::MAX));
    assert_eq!(feed(&mut s, &bytes), vec![0]);
    assert_eq!(s.reason(), None);
}

#[test]
fn a_clean_close_whose_linger_expires_with_bytes_unsent_is_not_clean() {
    for encrypted in [false, true] {
        let (mut c, mut s, pool) = pair(encrypted);
        let q = queue(&pool, 0..10, 300);
        let total = q.len();
        let mut q = q;
        assert!(c.handle_queued(&mut q));
        let mut more = queue(&pool, 10..12, 300);
        let more_len = more.len();
        assert!(!c.handle_queued(&mut more));
        c.handle_close(CloseReason::Local, at(0));
        // The peer reads only the first 1000 bytes, then nothing.
        let first = transmit(&mut c, 1000);
        feed(&mut s, &first);
        c.handle_timeout(at(500));
        assert!(c.is_done());
        let Some(CloseReason::LingerExpired { unsent }) = c.reason().cloned() else {
            panic!("{:?}", c.reason());
        };
        if encrypted {
            // Sealed records count in wire bytes, unsealed frames in frame bytes.
            assert!(unsent as usize > total + more_len - 1000, "{unsent}");
        } else {
            assert_eq!(unsent as usize, total + more_len - 1000);
        }
        assert!(!c.reason().unwrap().is_clean());
        assert_eq!(events(&mut c), [Event::LingerExpired]);
    }
}

#[test]
fn the_first_reason_wins() {
    let (mut c, mut s, pool) = pair(false);
    c.handle_close(CloseReason::Local, at(0));
    assert!(s.handle_queued(&mut queue(&pool, 0..1, 1)));
    finish_clean(&mut c, &mut s, at(1));
    c.handle_close(CloseReason::Shutdown, at(2));
    assert_eq!(c.reason(), Some(&CloseReason::Local));
    // A sender asked first: its reason is the one reported.
    s.adopt_reason(CloseReason::Shutdown);
    assert_eq!(s.reason(), Some(&CloseReason::Shutdown));
}

#[test]
fn nothing_after_a_failed_record_is_delivered() {
    let (mut c, mut s, pool) = pair(true);
    assert!(c.handle_queued(&mut queue(&pool, 0..3, 100)));
    let mut bytes = transmit(&mut c, usize::MAX);
    assert!(c.handle_queued(&mut queue(&pool, 3..6, 100)));
    let second = transmit(&mut c, usize::MAX);
    let len = bytes.len();
    bytes[len - 1] ^= 1; // the tag of the first record
    bytes.extend_from_slice(&second);
    assert_eq!(feed(&mut s, &bytes), Vec::<u32>::new());
    assert!(matches!(s.reason(), Some(CloseReason::Crypto(_))));
    assert!(s.is_done());
}

#[test]
fn a_read_error_and_a_write_error_end_the_session_abortively() {
    let (mut c, mut s, pool) = pair(false);
    c.handle_read_error(std::io::ErrorKind::ConnectionReset);
    assert_eq!(c.reason(), Some(&CloseReason::Reset));
    assert!(c.is_done());
    assert!(s.handle_queued(&mut queue(&pool, 0..1, 1)));
    s.handle_write_error(std::io::ErrorKind::BrokenPipe);
    assert_eq!(events(&mut s), [Event::Closing(CloseReason::Reset)]);
    assert_eq!(s.in_flight(|p| p), 0);
    assert!(s.is_done());
}

#[test]
fn the_peers_close_record_while_data_is_queued_still_flushes_it() {
    let (mut c, mut s, pool) = pair(true);
    assert!(s.handle_queued(&mut queue(&pool, 0..30, 400)));
    // The client closes first: its Close record and its end reach the server before the
    // server wrote anything.
    c.handle_close(CloseReason::Local, at(0));
    assert_eq!(pipe(&mut c, &mut s), Vec::<u32>::new());
    assert!(c.wants_shutdown());
    c.handle_shutdown();
    s.handle_eof(at(1));
    assert_eq!(s.reason(), Some(&peer(CloseCode::Normal)));
    assert!(!s.is_done(), "the server still has its queue to flush");
    // The server flushes all of it, then its own Close record, then shuts down.
    assert_eq!(pipe(&mut s, &mut c), (0..30).collect::<Vec<_>>());
    assert!(s.wants_shutdown());
    s.handle_shutdown();
    c.handle_eof(at(2));
    assert!(s.is_done() && c.is_done());
    assert_eq!(c.reason(), Some(&CloseReason::Local));
}

#[test]
fn a_server_whose_open_frame_is_not_written_yet_can_fail_and_close() {
    // The Open frame's unwritten bytes are not session traffic; dropping them with the
    // rest of `out` must leave the counts consistent (a write error or a close before the
    // Open frame left once underflowed `unsent`).
    for how in 0..3 {
        let (_c, mut s, _pool) = pair(false);
        s.queue_open();
        match how {
            0 => s.handle_write_error(std::io::ErrorKind::BrokenPipe),
            1 => s.handle_read_error(std::io::ErrorKind::ConnectionReset),
            _ => {
                s.handle_write_error(std::io::ErrorKind::BrokenPipe);
                s.handle_close(CloseReason::Local, at(1));
            }
        }
        assert_eq!(s.unsent(), 0);
        assert_eq!(s.in_flight(|p| p), 0);
        assert!(s.is_done());
        s.release();
        assert_eq!(s.unsent(), 0);
    }
}

#[test]
fn a_servers_refusal_after_the_handshake_is_its_reason_not_a_bad_record() {
    // A server that evicts a handshake after its ServerHello writes its plaintext refusal
    // where the client expects its first record; it arrives in pieces here.
    let refusal = crate::crypto::io::refusal(CloseCode::Busy.to_u8());
    for split in 1..refusal.len() {
        let (mut c, _s, _pool) = pair(true);
        assert!(feed(&mut c, &refusal[..split]).is_empty());
        assert_eq!(c.reason(), None, "split at {split}");
        assert!(feed(&mut c, &refusal[split..]).is_empty());
        c.handle_eof(at(1));
        assert_eq!(
            c.reason(),
            Some(&CloseReason::Peer(PeerClose::refused(CloseCode::Busy))),
            "split at {split}"
        );
    }
    // Only a client reads it, and only as its first bytes: a server (or a client after a
    // record) treats the same bytes as a record, which is too large.
    let (_c, mut s, _pool) = pair(true);
    assert!(feed(&mut s, &refusal).is_empty());
    assert_eq!(
        s.reason(),
        Some(&CloseReason::Crypto(CryptoError::RecordTooLarge))
    );
    let (mut c, mut s, pool) = pair(true);
    assert!(s.handle_queued(&mut queue(&pool, 0..1, 8)));
    assert_eq!(pipe(&mut s, &mut c), [0]);
    assert!(feed(&mut c, &refusal).is_empty());
    assert_eq!(
        c.reason(),
        Some(&CloseReason::Crypto(CryptoError::RecordTooLarge))
    );
}

/// At the record limit a session either ends cleanly with everything delivered (the data
/// records used at most all but the last record, which is the Close record's) or reports that
/// its keys ran out; never a clean close that lost frames.
#[test]
fn the_record_limit_keeps_the_last_record_for_the_close() {
    let (mut clean_at, mut records) = (None, 0);
    for limit in 1..8u64 {
        let (mut c, mut s, pool) =
            pair_with(true, |e| e.with_record_limit(limit).with_max_record(64));
        let mut q = queue(&pool, 0..3, 50);
        records = q.len().div_ceil(64) as u64;
        assert!(c.handle_queued(&mut q));
        c.handle_close(CloseReason::Local, at(0));
        let (_, to_server) = finish_clean(&mut c, &mut s, at(1));
        match c.reason() {
            Some(CloseReason::Local) => {
                assert_eq!(to_server, [0, 1, 2], "limit {limit}");
                assert_eq!(s.reason(), Some(&peer(CloseCode::Normal)), "limit {limit}");
                clean_at.get_or_insert(limit);
            }
            Some(CloseReason::Crypto(CryptoError::CounterExhausted)) => {
                assert!(
                    clean_at.is_none(),
                    "limit {limit}: ran out above a limit that sufficed"
                );
            }
            r => panic!("limit {limit}: {r:?}"),
        }
    }
    assert_eq!(
        clean_at,
        Some(records + 1),
        "the data records and the Close record"
    );
}
