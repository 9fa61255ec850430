//! Control messages: what a session says about itself rather than for the application (see
//! `docs/wire.md`).
//!
//! On "bits" a control message is a frame with the reserved message id [`CONTROL_ID`]
//! (`u32::MAX`; registering a message type with it fails with `SubscribeError::ReservedId`).
//! Its body starts with a kind byte:
//!
//! ```text
//! Open  (server → client, the first frame of every accepted "bits" connection):
//!   [kind = 0][version: u8]
//! Close (either side, the last frame before its end of stream; a server's refusal instead
//!        of Open):
//!   [kind = 1][code: u8][detail: u16 LE][app_code: u32 LE][text_len: u8][text: UTF-8]
//! ```
//!
//! On "bits-hpke" the Close body is the payload of the authenticated Close record (an empty
//! payload: a peer that gives no reason, as every peer before this format did).
//!
//! Rules for peers of different versions: bytes after the known fields are ignored, an
//! unknown kind is ignored, an unknown code arrives as `CloseCode::Unknown`. A body longer
//! than [`MAX_BODY`], a text longer than [`MAX_TEXT`] or not UTF-8, or a field cut short is a
//! violation (`ProtocolViolation::BadControl`).

use crate::error::{CloseCode, PeerClose, ProtocolViolation};
use crate::message::{HEADER_BYTES, LEN_BYTES};

/// The message id of control frames.
pub(crate) const CONTROL_ID: u32 = u32::MAX;
/// The "bits" control version this side speaks (the Open frame's `version`).
pub(crate) const VERSION: u8 = 1;
/// Kind byte of the Open message.
pub(crate) const KIND_OPEN: u8 = 0;
/// Kind byte of the Close message.
pub(crate) const KIND_CLOSE: u8 = 1;
/// Longest application text in a Close, in bytes.
pub(crate) const MAX_TEXT: usize = PeerClose::MAX_TEXT;
/// Bytes of the Open body.
pub(crate) const OPEN_BODY: usize = 2;
/// Bytes of a Close body without text.
pub(crate) const CLOSE_FIXED: usize = 1 + 1 + 2 + 4 + 1;
// The Close record keeps room for the longest close body (`record::CLOSE_PAYLOAD_MAX`).
const _: () = assert!(CLOSE_FIXED + MAX_TEXT <= crate::crypto::record::CLOSE_PAYLOAD_MAX);
/// Largest control body accepted (room for fields a newer peer may add).
pub(crate) const MAX_BODY: usize = 128;
/// Bytes of the Open frame on the wire.
pub(crate) const OPEN_FRAME: usize = HEADER_BYTES + OPEN_BODY;

/// A parsed control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Control {
    /// The server accepted the connection.
    Open {
        /// Its version.
        version: u8,
    },
    /// The sender closes, for this reason.
    Close(PeerClose),
    /// A kind this version does not know (ignored).
    Unknown,
}

/// Parses a control body (the bytes after the message id).
pub(crate) fn decode(body: &[u8]) -> Result<Control, ProtocolViolation> {
    let bad = ProtocolViolation::BadControl;
    if body.len() > MAX_BODY {
        return Err(bad);
    }
    match *body.first().ok_or(bad.clone())? {
        KIND_OPEN => match body.get(1) {
            Some(&version) if version >= 1 => Ok(Control::Open { version }),
            _ => Err(bad),
        },
        KIND_CLOSE => {
            let fixed: &[u8; CLOSE_FIXED] = body.first_chunk().ok_or(bad.clone())?;
            let code = CloseCode::from_u8(fixed[1]);
            let detail = u16::from_le_bytes([fixed[2], fixed[3]]);
            let app_code = u32::from_le_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
            let text_len = usize::from(fixed[8]);
            if text_len > MAX_TEXT {
                return Err(bad);
            }
            let text = body
                .get(CLOSE_FIXED..CLOSE_FIXED + text_len)
                .ok_or(bad.clone())?;
            let text = std::str::from_utf8(text).map_err(|_| bad)?.to_owned();
            Ok(Control::Close(PeerClose {
                code,
                detail,
                app_code,
                text,
            }))
        }
        _ => Ok(Control::Unknown),
    }
}

/// The longest prefix of `text` that fits a Close, cut at a character boundary.
pub(crate) fn clip(text: &str) -> &str {
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A Close body for `close` (its text clipped to [`MAX_TEXT`] bytes).
pub(crate) fn close_body(close: &PeerClose) -> Vec<u8> {
    let text = clip(&close.text).as_bytes();
    let mut b = Vec::with_capacity(CLOSE_FIXED + text.len());
    b.push(KIND_CLOSE);
    b.push(close.code.to_u8());
    b.extend_from_slice(&close.detail.to_le_bytes());
    b.extend_from_slice(&close.app_code.to_le_bytes());
    b.push(text.len() as u8);
    b.extend_from_slice(text);
    b
}

/// `body` as a "bits" control frame.
pub(crate) fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(HEADER_BYTES + body.len());
    let len = (HEADER_BYTES - LEN_BYTES + body.len()) as u32;
    f.extend_from_slice(&len.to_le_bytes());
    f.extend_from_slice(&CONTROL_ID.to_le_bytes());
    f.extend_from_slice(body);
    f
}

/// The Open frame a "bits" server writes first on every connection it accepts.
pub(crate) fn open_frame() -> [u8; OPEN_FRAME] {
    let mut f = [0u8; OPEN_FRAME];
    f.copy_from_slice(&frame(&[KIND_OPEN, VERSION]));
    f
}

/// Checks a control frame's header (the first [`HEADER_BYTES`] of a stream): the body length
/// if it is one and fits [`MAX_BODY`].
pub(crate) fn header_body_len(header: &[u8; HEADER_BYTES]) -> Result<usize, ProtocolViolation> {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let id = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let body = len.checked_sub(HEADER_BYTES - LEN_BYTES);
    match body {
        Some(b) if id == CONTROL_ID && b <= MAX_BODY => Ok(b),
        _ => Err(ProtocolViolation::BadControl),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(code: CloseCode, app_code: u32, text: &str) -> PeerClose {
        PeerClose {
            code,
            detail: 3,
            app_code,
            text: text.into(),
        }
    }

    #[test]
    fn close_bodies_round_trip_and_clip_their_text() {
        let c = close(CloseCode::Protocol, 9, "bye");
        assert_eq!(decode(&close_body(&c)), Ok(Control::Close(c)));
        let long = "é".repeat(40); // 80 bytes: clipped to 64 at a boundary
        let body = close_body(&close(CloseCode::Normal, 0, &long));
        match decode(&body) {
            Ok(Control::Close(p)) => assert_eq!(p.text, "é".repeat(32)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn newer_peers_are_understood_and_malformed_bodies_refused() {
        // Unknown code, extra trailing bytes, unknown kind: all accepted.
        let mut body = close_body(&close(CloseCode::Unknown(200), 0, ""));
        body.extend_from_slice(&[1, 2, 3]);
        match decode(&body) {
            Ok(Control::Close(p)) => assert_eq!(p.code, CloseCode::Unknown(200)),
            other => panic!("{other:?}"),
        }
        assert_eq!(decode(&[7, 1, 2]), Ok(Control::Unknown));
        assert_eq!(decode(&[KIND_OPEN, 9]), Ok(Control::Open { version: 9 }));
        let bad = Err(ProtocolViolation::BadControl);
        assert_eq!(decode(&[]), bad);
        assert_eq!(decode(&[KIND_OPEN, 0]), bad, "version 0 does not exist");
        assert_eq!(decode(&body[..CLOSE_FIXED - 1]), bad, "cut short");
        let mut lying = close_body(&close(CloseCode::Normal, 0, "abc"));
        lying[8] = 10; // announces more text than there is
        assert_eq!(decode(&lying), bad);
        lying[8] = 65; // more than MAX_TEXT
        assert_eq!(decode(&lying), bad);
        let mut not_utf8 = close_body(&close(CloseCode::Normal, 0, "ab"));
        not_utf8[CLOSE_FIXED] = 0xff;
        assert_eq!(decode(&not_utf8), bad);
        assert_eq!(decode(&[KIND_OPEN; MAX_BODY + 1]), bad, "too long");
    }

    #[test]
    fn frames_carry_the_reserved_id() {
        let f = open_frame();
        let header: &[u8; HEADER_BYTES] = f.first_chunk().unwrap();
        assert_eq!(header_body_len(header), Ok(OPEN_BODY));
        assert_eq!(
            decode(&f[HEADER_BYTES..]),
            Ok(Control::Open { version: VERSION })
        );
        let mut other = *header;
        other[4] = 0; // another id
        assert!(header_body_len(&other).is_err());
    }
}
