//! Sizes of the wire formats, defined once by the code that writes and reads them, for this
//! crate's simulator and tests (`laxnet::wire`, hidden from the docs: not a stable API).
//!
//! - `bits` frames: `len: u32 LE | id: u32 LE | borsh body`, `len` counting the id and the
//!   body.
//! - `bits-hpke`: a handshake of fixed-size messages (ClientHello, ServerHello,
//!   ClientFinished; the layout is in `src/crypto/handshake.rs`), then records
//!   `len: u32 LE | AEAD(type: u8 ‖ payload) | tag[16]`, `len` counting everything after
//!   itself (`src/crypto/record.rs`).
//! - control messages (`src/control.rs`, `docs/wire.md`): on "bits" frames with the message
//!   id [`CONTROL_ID`] — the Open frame a server writes first, the close frame a side writes
//!   last —, on "bits-hpke" the close body as the Close record's payload; a server's refusal
//!   before the handshake is [`REFUSAL`] bytes in place of the ServerHello.

use crate::crypto::{handshake, record};
use crate::{control, message};

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

/// The message id of "bits" control frames (reserved: no message type may use it).
pub const CONTROL_ID: u32 = control::CONTROL_ID;
/// Bytes of the Open frame a "bits" server writes first on every connection it accepts (the
/// connecting side reads it before its session exists; no byte counter counts it).
pub const OPEN_FRAME: usize = control::OPEN_FRAME;
/// Bytes of a close body without application text (the payload of a Close record that
/// carries a reason).
pub const CLOSE_BODY: usize = control::CLOSE_FIXED;
/// Longest application text a close body carries.
pub const CLOSE_TEXT_MAX: usize = control::MAX_TEXT;
/// Bytes of a "bits" close frame with `text` bytes of application text.
pub const fn close_frame(text: usize) -> usize {
    FRAME_HEADER + CLOSE_BODY + text
}
/// Bytes of a "bits-hpke" Close record with a reason and `text` bytes of application text (a
/// Close record without a reason is [`RECORD_OVERHEAD`] bytes).
pub const fn close_record(text: usize) -> usize {
    RECORD_OVERHEAD + CLOSE_BODY + text
}
/// Bytes of a "bits-hpke" server's refusal before the handshake: [`REFUSAL_MAGIC`] and a
/// close code.
pub const REFUSAL: usize = handshake::REFUSAL_LEN;
/// The first four bytes of a refusal (in place of [`HANDSHAKE_MAGIC`]).
pub const REFUSAL_MAGIC: [u8; 4] = handshake::REFUSAL_MAGIC;

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
        assert_eq!(CONTROL_ID, u32::MAX);
        assert_eq!((OPEN_FRAME, CLOSE_BODY, CLOSE_TEXT_MAX), (10, 9, 64));
        assert_eq!((close_frame(0), close_record(0)), (17, 30));
        assert_eq!((&REFUSAL_MAGIC, REFUSAL), (b"LXNR", 5));
    }
}
