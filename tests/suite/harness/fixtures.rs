//! What every scenario is made of: the two protocols, the server's key and the default
//! encryption settings, the [`Seq`] message, and raw frames for hostile peers.

use std::sync::LazyLock;
use std::time::Duration;

use borsh::{BorshDeserialize, BorshSerialize};
use laxnet::{Encryption, KeyPair, Protocol, wire};

/// The plaintext protocol.
pub(crate) const BITS: Protocol = Protocol::Bits;

/// The encrypted protocol.
pub(crate) const HPKE: Protocol = Protocol::BitsHpke;

/// The server's static key pair, the same on every run and backend (derived once: an X25519
/// operation costs about 10 ms in a debug build).
pub(crate) fn server_key() -> &'static KeyPair {
    static KEY: LazyLock<KeyPair> = LazyLock::new(|| KeyPair::from_seed(&[7; 32]));
    &KEY
}

/// Time allowed for a handshake in the suite: generous, because a debug build spends tens of
/// milliseconds of CPU on each, and a loaded machine must not turn that into failures.
/// Scenarios that test the timeout set their own.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The encryption settings a server gets by default under [`HPKE`]: its key pair.
pub(crate) fn server_encryption() -> Encryption {
    Encryption::server(server_key().clone()).with_handshake_timeout(HANDSHAKE_TIMEOUT)
}

/// The encryption settings a client gets by default under [`HPKE`]: the server's public key,
/// pinned.
pub(crate) fn client_encryption() -> Encryption {
    Encryption::client(server_key().public()).with_handshake_timeout(HANDSHAKE_TIMEOUT)
}

/// The workhorse message: a sequence number and a payload derived from it.
#[derive(BorshSerialize, BorshDeserialize, Debug, Clone, PartialEq)]
pub(crate) struct Seq {
    pub(crate) seq: u64,
    pub(crate) data: Vec<u8>,
}
laxnet::message!(Seq = 1);

impl Seq {
    /// Message `seq` with a `len`-byte payload whose content depends on `seq`.
    pub(crate) fn new(seq: u64, len: usize) -> Seq {
        Seq {
            seq,
            data: pattern(seq, len),
        }
    }

    /// True if the payload is the one [`Seq::new`] makes.
    pub(crate) fn intact(&self) -> bool {
        self.data
            .iter()
            .enumerate()
            .all(|(i, b)| *b == pattern_byte(self.seq, i))
    }

    /// Bytes of this message on the wire (frame header included).
    pub(crate) fn wire_len(&self) -> u64 {
        (wire::FRAME_HEADER + 8 + 4 + self.data.len()) as u64
    }

    /// The frame exactly as the "bits" format puts it on the wire.
    pub(crate) fn frame(&self) -> Vec<u8> {
        let body = borsh::to_vec(self).unwrap();
        let mut f = ((wire::FRAME_ID + body.len()) as u32)
            .to_le_bytes()
            .to_vec();
        f.extend_from_slice(&<Seq as laxnet::Message>::ID.to_le_bytes());
        f.extend_from_slice(&body);
        f
    }
}

fn pattern_byte(seq: u64, i: usize) -> u8 {
    (seq as u8).wrapping_mul(31).wrapping_add(i as u8)
}

fn pattern(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| pattern_byte(seq, i)).collect()
}

/// A raw frame: `len` prefix, message id, body.
pub(crate) fn raw_frame(id: u32, body: &[u8]) -> Vec<u8> {
    let mut f = ((wire::FRAME_ID + body.len()) as u32)
        .to_le_bytes()
        .to_vec();
    f.extend_from_slice(&id.to_le_bytes());
    f.extend_from_slice(body);
    f
}
