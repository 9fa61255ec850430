//! Sizes of the wire formats, defined once by the code that writes and reads them, for this
//! crate's simulator and tests (`laxnet::wire`, hidden from the docs: not a stable API).
//!
//! - `bits` frames: `len: u32 LE | id: u32 LE | borsh body`, `len` counting the id and the
//!   body.
//! - `bits-hpke`: a handshake of fixed-size messages (ClientHello, ServerHello,
//!   ClientFinished; the layout is in `src/crypto/handshake.rs`), then records
//!   `len: u32 LE | AEAD(type: u8 ‖ payload) | tag[16]`, `len` counting everything after
//!   itself (`src/crypto/record.rs`).

use crate::crypto::{handshake, record};
use crate::message;

/// Bytes of a frame's length prefix.
pub const FRAME_LEN_PREFIX: usize = message::LEN_BYTES;
/// Bytes of a frame's message id (counted by the length prefix).
pub const FRAME_ID: usize = message::HEADER_BYTES - message::LEN_BYTES;
/// Bytes of a frame header: length prefix and message id.
pub const FRAME_HEADER: usize = message::HEADER_BYTES;

/// The handshake version: the first four bytes of a ClientHello and of a ServerHello.
pub const HANDSHAKE_MAGIC: [u8; 4] = handshake::MAGIC;
/// Bytes of the ClientHello header: magic, cipher, flags and two reserved bytes.
pub const CLIENT_HELLO_HEADER: usize = handshake::CH_HEADER;
/// Bytes of a ClientHello without a client key: header, client random, ephemeral key.
pub const CLIENT_HELLO: usize = handshake::CH_BASE;
/// Bytes the client's static key adds to a ClientHello under client authentication.
pub const CLIENT_HELLO_KEY: usize = handshake::CH_MAX - handshake::CH_BASE;
/// Bytes of the ServerHello: header, server random, ephemeral key, finished tag.
pub const SERVER_HELLO: usize = handshake::SH_LEN;
/// Bytes of the ClientFinished (the client writes it with its first records).
pub const CLIENT_FINISHED: usize = handshake::CF_LEN;

/// Bytes the connecting side writes (and the accepting side reads) before its first record:
/// the ClientHello, with the client's key under client authentication, and the
/// ClientFinished.
pub const fn client_handshake(client_auth: bool) -> usize {
    CLIENT_HELLO + if client_auth { CLIENT_HELLO_KEY } else { 0 } + CLIENT_FINISHED
}

/// Bytes the accepting side writes (and the connecting side reads) before its first record:
/// the ServerHello.
pub const SERVER_HANDSHAKE: usize = SERVER_HELLO;

/// Bytes of a record's length header (the AEAD's associated data).
pub const RECORD_HEADER: usize = record::HEADER;
/// Bytes of a record's type (the first byte inside the AEAD).
pub const RECORD_TYPE: usize = record::TYPE;
/// Bytes of a record's authentication tag.
pub const RECORD_TAG: usize = record::TAG;
/// Wire bytes a record adds around its payload: length header, type and tag. A record with
/// `n` bytes of payload takes `n + RECORD_OVERHEAD` bytes on the wire.
pub const RECORD_OVERHEAD: usize = record::OVERHEAD;
/// The length header's value in a record without payload (type and tag, no header): the
/// `Close` record. A `Data` record carries at least one byte, so its value is larger.
pub const EMPTY_RECORD_LEN: usize = RECORD_TYPE + RECORD_TAG;

const _: () = assert!(RECORD_OVERHEAD == RECORD_HEADER + EMPTY_RECORD_LEN);

#[cfg(test)]
mod tests {
    use super::*;

    /// The sizes of the released formats (`bits`, `bits-hpke` `LXN3`): a change here is a wire
    /// break (CHANGELOG.md).
    #[test]
    fn sizes_are_the_released_ones() {
        assert_eq!((FRAME_LEN_PREFIX, FRAME_ID, FRAME_HEADER), (4, 4, 8));
        assert_eq!(&HANDSHAKE_MAGIC, b"LXN3");
        assert_eq!(
            (CLIENT_HELLO_HEADER, CLIENT_HELLO, CLIENT_HELLO_KEY),
            (8, 72, 32)
        );
        assert_eq!((SERVER_HELLO, CLIENT_FINISHED), (104, 32));
        assert_eq!(
            (client_handshake(false), client_handshake(true)),
            (104, 136)
        );
        assert_eq!((RECORD_HEADER, RECORD_TYPE, RECORD_TAG), (4, 1, 16));
        assert_eq!((RECORD_OVERHEAD, EMPTY_RECORD_LEN), (21, 17));
    }
}
