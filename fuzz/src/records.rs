//! The record layer: records opened with the null cipher (so the fuzzer reaches the frames
//! and message decoding behind the AEAD) and with a real cipher (which must refuse every
//! record it is given: nobody but the key holder can make one).
//!
//! Null cipher, input: a `u16` selecting the largest record payload, then the records.
//! Real cipher, input: a cipher byte, then the records. Checks: a record's length is
//! refused from its header alone when it is out of bounds; an opened record's payload lies
//! inside it; the null cipher accepts exactly the type bytes 0 and 1; nothing follows a
//! Close; the payloads' frames decode as in [`crate::decode`].

use laxnet::fuzz_api::{
    Cipher, CryptoError, Keys, RECORD_HEADER, RECORD_OVERHEAD, RecordOpener, RecordSealer,
};

use crate::decode;
use crate::frames::reference;

/// Largest frame the decoded payloads may carry.
const MAX_FRAME: usize = 1 << 16;

/// Opens the records in `wire` that the side `is_client` receives with `keys`, up to the
/// first failure or the Close, then decodes the frames their payloads carry. Returns how
/// many records opened.
pub(crate) fn open_all(keys: &Keys, is_client: bool, wire: &[u8]) -> usize {
    let (key, nonce) = if is_client { &keys.s2c } else { &keys.c2s };
    let mut opener = RecordOpener::new(keys.cipher, key, nonce, u64::MAX);
    let max_payload = laxnet::fuzz_api::Encryption::default().max_record;
    open_with(&mut opener, keys.cipher, max_payload, wire)
}

fn open_with(opener: &mut RecordOpener, cipher: Cipher, max_payload: usize, wire: &[u8]) -> usize {
    let mut rest = wire;
    let mut plain = Vec::new();
    let mut opened = 0;
    let mut closed = false;
    loop {
        let total = match RecordOpener::record_len(rest, max_payload) {
            Ok(Some(t)) => t,
            Ok(None) => break,
            Err(e) => {
                let len = u32::from_le_bytes(*rest.first_chunk::<4>().expect("a header"));
                let len = len as usize;
                match e {
                    CryptoError::RecordTooLarge => {
                        assert!(len > max_payload + RECORD_OVERHEAD - RECORD_HEADER)
                    }
                    CryptoError::BadRecord => assert!(len < RECORD_OVERHEAD - RECORD_HEADER),
                    other => panic!("record_len: {other:?}"),
                }
                break;
            }
        };
        assert!((RECORD_OVERHEAD..=max_payload + RECORD_OVERHEAD).contains(&total));
        if rest.len() < total {
            break;
        }
        if closed {
            // The session refuses anything after the peer's Close (`BadRecord`).
            break;
        }
        let mut record = rest[..total].to_vec();
        match opener.open(&mut record) {
            Ok((close, range)) => {
                assert!(range.start == RECORD_HEADER + 1 && range.end == total - 16);
                if cipher == Cipher::Null {
                    assert!(
                        rest[RECORD_HEADER] <= 1,
                        "opened a record of type {}",
                        rest[RECORD_HEADER]
                    );
                }
                opened += 1;
                closed = close;
                plain.extend_from_slice(&record[range]);
            }
            Err(e) => {
                assert_eq!(e, CryptoError::BadRecord);
                if cipher == Cipher::Null {
                    assert!(
                        rest[RECORD_HEADER] > 1,
                        "the null cipher refused a well-typed record"
                    );
                }
                break;
            }
        }
        rest = &rest[total..];
    }
    // The frames the payloads carry, decoded by id.
    let (frames, _) = reference(&plain, MAX_FRAME);
    let (mut d, seen) = decode::decoders();
    for (id, body) in frames {
        if decode::IDS.contains(&id) {
            decode::check(&mut d, &seen, id, &body);
        }
    }
    opened
}

/// Keys for the null cipher (it ignores them).
pub fn null_keys() -> Keys {
    Keys {
        cipher: Cipher::Null,
        peer_key: None,
        c2s: ([0; 32], [0; 12]),
        s2c: ([0; 32], [0; 12]),
    }
}

/// The real-cipher target's key and nonce.
pub const REAL_KEY: ([u8; 32], [u8; 12]) = ([0x42; 32], [0x24; 12]);

/// The null-cipher target.
pub fn null(data: &[u8]) {
    let Some((sel, wire)) = data.split_first_chunk::<2>() else {
        return;
    };
    let max_payload = usize::from(u16::from_le_bytes(*sel));
    let mut opener = RecordOpener::new(Cipher::Null, &[0; 32], &[0; 12], u64::MAX);
    open_with(&mut opener, Cipher::Null, max_payload, wire);
}

/// The real-cipher target: no record the fuzzer makes may open.
pub fn real(data: &[u8]) {
    let Some((&sel, wire)) = data.split_first() else {
        return;
    };
    let cipher = real_cipher(sel);
    let mut opener = RecordOpener::new(cipher, &REAL_KEY.0, &REAL_KEY.1, u64::MAX);
    let opened = open_with(&mut opener, cipher, 1 << 14, wire);
    assert_eq!(opened, 0, "a record opened without the key");
}

/// The real target's cipher for its first byte.
pub fn real_cipher(sel: u8) -> Cipher {
    if sel & 1 == 0 {
        Cipher::ChaCha20Poly1305
    } else {
        Cipher::Aes128Gcm
    }
}

/// Seals `payloads` (the last one as a Close if `close`) with `cipher` and a direction's key.
pub fn seal(
    cipher: Cipher,
    key: &([u8; 32], [u8; 12]),
    payloads: &[&[u8]],
    close: bool,
) -> Vec<u8> {
    let mut s = RecordSealer::new(cipher, &key.0, &key.1, u64::MAX);
    let mut out = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let last = i + 1 == payloads.len();
        out.extend(s.seal(close && last, p).expect("seal"));
    }
    out
}
