//! Message bodies decoded by id through the subscription registry, as a session dispatches
//! them: unknown ids, truncated and trailing bytes, hostile length prefixes inside borsh
//! bodies.
//!
//! Input: the message id (`u32`, little-endian), then the body. Checks: an unknown id is
//! `UnknownMessage`; a body is accepted exactly when it is the canonical borsh encoding of
//! a value (so re-encoding the delivered value gives the body back: no trailing bytes, no
//! second encoding of the same value); nothing allocates in proportion to a length prefix
//! (libFuzzer's `-malloc_limit_mb` catches that).

use std::sync::{Arc, Mutex};

use borsh::{BorshDeserialize, BorshSerialize};
use laxnet::fuzz_api::{Decoders, Message, ProtocolViolation};

/// A chat line.
#[derive(BorshSerialize, BorshDeserialize, Debug, Clone, PartialEq)]
pub struct Chat {
    /// Sender.
    pub from: String,
    /// Text.
    pub text: String,
    /// Sequence number.
    pub seq: u64,
}

/// Nested collections: length prefixes inside length prefixes.
#[derive(BorshSerialize, BorshDeserialize, Debug, Clone, PartialEq)]
pub struct Blob {
    /// Raw bytes.
    pub bytes: Vec<u8>,
    /// Strings.
    pub tags: Vec<String>,
    /// Vectors of vectors.
    pub nested: Vec<Vec<u16>>,
}

/// An enum with data.
#[derive(BorshSerialize, BorshDeserialize, Debug, Clone, PartialEq)]
pub enum Command {
    /// Join a room.
    Join {
        /// The room.
        room: String,
    },
    /// Leave.
    Leave,
    /// Move.
    Move {
        /// x.
        x: i32,
        /// y.
        y: i32,
        /// A note.
        note: Option<String>,
    },
}

/// Fixed-size fields, options and tuples.
#[derive(BorshSerialize, BorshDeserialize, Debug, Clone, PartialEq)]
pub struct Flags {
    /// A flag.
    pub a: bool,
    /// Maybe a flag.
    pub b: Option<bool>,
    /// Three bytes.
    pub c: [u8; 3],
    /// A tuple.
    pub d: (u8, u128),
}

/// No fields at all.
#[derive(BorshSerialize, BorshDeserialize, Debug, Clone, PartialEq)]
pub struct Empty;

/// Registered, but nobody subscribes to it (decoded, then unhandled).
#[derive(BorshSerialize, BorshDeserialize, Debug, Clone, PartialEq)]
pub struct Unwanted {
    /// Words.
    pub words: Vec<u32>,
}

laxnet::message!(
    Chat = 1,
    Blob = 2,
    Command = 3,
    Flags = 4,
    Empty = 5,
    Unwanted = 6
);

/// The registered ids.
pub const IDS: std::ops::RangeInclusive<u32> = 1..=6;

type Seen = Arc<Mutex<Option<Vec<u8>>>>;

fn subscribe<T: Message>(d: Decoders, seen: &Seen) -> Decoders {
    let seen = seen.clone();
    d.subscribe::<T>(move |m: &T| {
        *seen.lock().unwrap() = Some(borsh::to_vec(m).expect("re-encode"));
    })
    .expect("distinct ids")
}

/// Decoders for the message types above, and where each delivered message is re-encoded.
pub fn decoders() -> (Decoders, Seen) {
    let seen: Seen = Arc::default();
    let mut d = Decoders::new();
    d = subscribe::<Chat>(d, &seen);
    d = subscribe::<Blob>(d, &seen);
    d = subscribe::<Command>(d, &seen);
    d = subscribe::<Flags>(d, &seen);
    d = subscribe::<Empty>(d, &seen);
    d = d.register::<Unwanted>().expect("distinct ids");
    (d, seen)
}

/// Decodes one body through `d` and checks the outcome.
pub(crate) fn check(d: &mut Decoders, seen: &Seen, id: u32, body: &[u8]) {
    *seen.lock().unwrap() = None;
    match d.decode(id, body) {
        Ok(true) => {
            let again = seen
                .lock()
                .unwrap()
                .take()
                .expect("a delivered message was seen");
            assert_eq!(again, body, "accepted a non-canonical body for id {id}");
        }
        Ok(false) => {
            assert_eq!(id, 6, "only `Unwanted` has no subscriber");
            let v: Unwanted = borsh::from_slice(body).expect("it decoded");
            assert_eq!(borsh::to_vec(&v).unwrap(), body);
        }
        Err(ProtocolViolation::UnknownMessage { id: got }) => {
            assert_eq!(got, id);
            assert!(!IDS.contains(&id), "id {id} is registered");
        }
        Err(ProtocolViolation::Undecodable { id: got, .. }) => {
            assert_eq!(got, id);
            assert!(IDS.contains(&id));
        }
        Err(other) => panic!("unexpected violation {other:?}"),
    }
}

/// The target.
pub fn run(data: &[u8]) {
    let Some((id, body)) = data.split_first_chunk::<4>() else {
        return;
    };
    let (mut d, seen) = decoders();
    check(&mut d, &seen, u32::from_le_bytes(*id), body);
}
