//! The messages the workload sends. Each carries its sender's identity and a per-session
//! sequence number, so the receiver can check it arrived on the right session, in order and
//! without gaps; the payload is a pattern derived from the sequence number, so corruption is
//! caught too.

use borsh::{BorshDeserialize, BorshSerialize};

/// Flag: the sender closes right after this message and asks the peer to close too.
pub const CLOSE_REQ: u8 = 1;

/// Flag: the message was sent as [`Bulk`] (the receiver checks it arrived as one).
pub const BULK: u8 = 2;

/// The common message shape; sent as [`Data`] or [`Bulk`] (two ids: a message mix).
#[derive(BorshSerialize, BorshDeserialize, Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// Sender host index.
    pub host: u16,
    /// Sender host incarnation (bumped by each restart).
    pub inc: u16,
    /// Sender's session id (raw).
    pub sid: u32,
    /// Sender's sequence number on that session, from 0, +1 per successful send.
    pub seq: u64,
    /// [`CLOSE_REQ`] and friends.
    pub flags: u8,
    /// [`pattern`] bytes.
    pub payload: Vec<u8>,
}

/// Message id 1.
#[derive(BorshSerialize, BorshDeserialize, Debug, Clone, PartialEq, Eq)]
pub struct Data(pub Body);

/// Message id 2.
#[derive(BorshSerialize, BorshDeserialize, Debug, Clone, PartialEq, Eq)]
pub struct Bulk(pub Body);

laxnet::message!(Data = 1, Bulk = 2);

/// The frame length field of a message without payload: its id (4) and the body's fixed
/// fields (21: host, inc, sid, seq, flags, payload length). `max_frame` limits this field.
pub const FRAME_FIXED: usize = laxnet::wire::FRAME_ID + 21;

/// Bytes one message takes on the wire: the length field (4) + [`FRAME_FIXED`] + payload.
pub fn frame_len(payload: usize) -> u64 {
    (laxnet::wire::FRAME_LEN_PREFIX + FRAME_FIXED + payload) as u64
}

/// The payload of message `seq` with `len` bytes.
pub fn pattern(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq as u8).wrapping_mul(31).wrapping_add(i as u8))
        .collect()
}

/// True if `payload` is the pattern of `seq`.
pub fn pattern_ok(seq: u64, payload: &[u8]) -> bool {
    payload
        .iter()
        .enumerate()
        .all(|(i, b)| *b == (seq as u8).wrapping_mul(31).wrapping_add(i as u8))
}
