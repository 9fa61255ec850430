//! Authenticated records: what flows after the handshake.
//!
//! ```text
//! +--------------+---------------------------------------+----------+
//! | len: u32 LE  | AEAD(type: u8 ‖ payload)              | tag[16]  |
//! +--------------+---------------------------------------+----------+
//!                |<------------------ len ------------------------->|
//! ```
//!
//! The 4-byte header is the AAD. The nonce is the direction's base nonce XOR a 64-bit record
//! counter (inside the HPKE context), so a record that is reordered, duplicated, dropped,
//! truncated, flipped or spliced from another session (other keys) fails to open; a failed
//! open is fatal. `payload` of a `Data` record is a run of "bits" frames (one record carries
//! many frames); a `Close` record is the authenticated end of stream.

use hpke::aead::{AeadCtxR, AeadCtxS, AeadTag, AesGcm128, ChaCha20Poly1305};
use hpke::danger::streaming_enc::{
    AeadKey, AeadNonce, ExporterSecret, create_receiver_context, create_sender_context,
};
use hpke::inout::InOutBuf;
use hpke::kdf::HkdfSha256;
use hpke::{Deserializable, Serializable};

use super::keys::Kem;
use super::{Cipher, CryptoError};

/// Bytes of the record header.
pub(crate) const HEADER: usize = 4;
/// Bytes of the record type (the first byte inside the AEAD).
pub(crate) const TYPE: usize = 1;
/// Bytes of the authentication tag.
pub(crate) const TAG: usize = 16;
/// Bytes a record adds around its payload: header, type byte, tag.
pub(crate) const OVERHEAD: usize = HEADER + TYPE + TAG;

/// What a record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordType {
    /// Frames.
    Data = 0,
    /// The sender's authenticated end of stream.
    Close = 1,
}

enum SealCtx {
    ChaCha(Box<AeadCtxS<ChaCha20Poly1305, HkdfSha256, Kem>>),
    Aes(Box<AeadCtxS<AesGcm128, HkdfSha256, Kem>>),
    #[cfg(any(test, feature = "null-cipher"))]
    Null,
}

enum OpenCtx {
    ChaCha(Box<AeadCtxR<ChaCha20Poly1305, HkdfSha256, Kem>>),
    Aes(Box<AeadCtxR<AesGcm128, HkdfSha256, Kem>>),
    #[cfg(any(test, feature = "null-cipher"))]
    Null,
}

fn key<A: hpke::aead::Aead>(bytes: &[u8; 32], nonce: &[u8; 12]) -> (AeadKey<A>, AeadNonce<A>) {
    let mut k = AeadKey::<A>::default();
    let n = k.0.len();
    k.0.copy_from_slice(&bytes[..n]);
    let mut iv = AeadNonce::<A>::default();
    iv.0.copy_from_slice(nonce);
    (k, iv)
}

/// AES blocks one AES-128-GCM key may encrypt: RFC 8446 §5.5 keeps a key under 2^24.5
/// full-size (2^14-byte) records, ≈ 2^34.5 blocks, for an authenticated-encryption advantage
/// of about 2^-57; this takes 2^34 (256 GiB of plaintext per direction). ChaCha20-Poly1305 has
/// no such limit below the record counter's.
pub(crate) const AES_GCM_MAX_BLOCKS: u64 = 1 << 34;

/// The largest payload of a Close record this side seals (a close body with the longest text:
/// `control` checks that its bodies fit).
pub(crate) const CLOSE_PAYLOAD_MAX: usize = 80;

/// AES blocks of the largest Close record (type byte and payload, plus the tag's block):
/// kept back from the data records so that a session can always seal its Close record.
const CLOSE_BLOCKS: u64 = (TYPE + CLOSE_PAYLOAD_MAX).div_ceil(16) as u64 + 1;

/// Seals outgoing records for one direction. The last record of the limit (and with
/// AES-128-GCM the blocks of a Close record) is kept for the Close record: data records stop
/// one short, so a clean close never finds its Close record refused after its data was
/// sealed. (A session that needs one data record more still closes abortively, with
/// `CounterExhausted` and no Close record.)
pub(crate) struct Sealer {
    ctx: SealCtx,
    sent: u64,
    limit: u64,
    /// AES blocks this key may still encrypt (`u64::MAX` for ciphers without a data limit).
    blocks_left: u64,
}

impl Sealer {
    pub(crate) fn new(cipher: Cipher, k: &[u8; 32], nonce: &[u8; 12], limit: u64) -> Sealer {
        let xs = ExporterSecret::<HkdfSha256>::default();
        let ctx = match cipher {
            Cipher::ChaCha20Poly1305 => {
                let (k, n) = key::<ChaCha20Poly1305>(k, nonce);
                SealCtx::ChaCha(Box::new(create_sender_context(&k, n, xs)))
            }
            Cipher::Aes128Gcm => {
                let (k, n) = key::<AesGcm128>(k, nonce);
                SealCtx::Aes(Box::new(create_sender_context(&k, n, xs)))
            }
            #[cfg(any(test, feature = "null-cipher"))]
            Cipher::Null => SealCtx::Null,
        };
        let blocks_left = match cipher {
            Cipher::Aes128Gcm => AES_GCM_MAX_BLOCKS,
            _ => u64::MAX,
        };
        Sealer {
            ctx,
            sent: 0,
            limit,
            blocks_left,
        }
    }

    /// Lowers the data limit, to test it without sealing 256 GiB.
    #[cfg(test)]
    pub(crate) fn with_blocks_left(mut self, blocks: u64) -> Sealer {
        self.blocks_left = blocks;
        self
    }

    /// Seals a record in place. `record` holds, from offset `HEADER + 1`, `payload_len` bytes
    /// of payload, and has room for the tag after it; this writes the header and the type and
    /// returns the record's total length.
    pub(crate) fn seal(
        &mut self,
        ty: RecordType,
        record: &mut [u8],
        payload_len: usize,
    ) -> Result<usize, CryptoError> {
        let body = 1 + payload_len;
        // The body's blocks and the one that encrypts the tag.
        let blocks = (body as u64).div_ceil(16) + 1;
        let (records, reserve) = match ty {
            RecordType::Data => (1, CLOSE_BLOCKS),
            RecordType::Close => (0, 0),
        };
        if self.sent + records >= self.limit || blocks + reserve > self.blocks_left {
            return Err(CryptoError::CounterExhausted);
        }
        let total = HEADER + body + TAG;
        let len = u32::try_from(body + TAG).map_err(|_| CryptoError::RecordTooLarge)?;
        let (header, rest) = record[..total].split_at_mut(HEADER);
        header.copy_from_slice(&len.to_le_bytes());
        rest[0] = ty as u8;
        let (plain, tag_out) = rest.split_at_mut(body);
        let aad: &[u8] = header;
        match &mut self.ctx {
            SealCtx::ChaCha(c) => {
                let tag = c
                    .seal_inout_detached(InOutBuf::from(plain), aad)
                    .map_err(|_| CryptoError::CounterExhausted)?;
                tag.write_exact(tag_out);
            }
            SealCtx::Aes(c) => {
                let tag = c
                    .seal_inout_detached(InOutBuf::from(plain), aad)
                    .map_err(|_| CryptoError::CounterExhausted)?;
                tag.write_exact(tag_out);
            }
            #[cfg(any(test, feature = "null-cipher"))]
            SealCtx::Null => tag_out.copy_from_slice(&[0u8; TAG]),
        }
        self.sent += 1;
        if self.blocks_left != u64::MAX {
            self.blocks_left -= blocks;
        }
        Ok(total)
    }
}

/// Opens incoming records for one direction.
pub(crate) struct Opener {
    ctx: OpenCtx,
    opened: u64,
    limit: u64,
}

impl Opener {
    pub(crate) fn new(cipher: Cipher, k: &[u8; 32], nonce: &[u8; 12], limit: u64) -> Opener {
        let xs = ExporterSecret::<HkdfSha256>::default();
        let ctx = match cipher {
            Cipher::ChaCha20Poly1305 => {
                let (k, n) = key::<ChaCha20Poly1305>(k, nonce);
                OpenCtx::ChaCha(Box::new(create_receiver_context(&k, n, xs)))
            }
            Cipher::Aes128Gcm => {
                let (k, n) = key::<AesGcm128>(k, nonce);
                OpenCtx::Aes(Box::new(create_receiver_context(&k, n, xs)))
            }
            #[cfg(any(test, feature = "null-cipher"))]
            Cipher::Null => OpenCtx::Null,
        };
        Opener {
            ctx,
            opened: 0,
            limit,
        }
    }

    /// The total length of the record at the front of `data`, once its header has arrived.
    /// A length over `max_payload` is rejected from the header alone.
    pub(crate) fn record_len(
        data: &[u8],
        max_payload: usize,
    ) -> Result<Option<usize>, CryptoError> {
        let Some(h) = data.first_chunk::<HEADER>() else {
            return Ok(None);
        };
        let len = u32::from_le_bytes(*h) as usize;
        if len > max_payload + 1 + TAG {
            return Err(CryptoError::RecordTooLarge);
        }
        if len < 1 + TAG {
            return Err(CryptoError::BadRecord);
        }
        Ok(Some(HEADER + len))
    }

    /// Opens the complete record `record` in place; returns its type and the payload's range
    /// within `record`. Any failure is fatal for the session.
    pub(crate) fn open(
        &mut self,
        record: &mut [u8],
    ) -> Result<(RecordType, std::ops::Range<usize>), CryptoError> {
        if self.opened >= self.limit {
            return Err(CryptoError::CounterExhausted);
        }
        if record.len() < OVERHEAD {
            return Err(CryptoError::BadRecord);
        }
        let (header, rest) = record.split_at_mut(HEADER);
        let aad: &[u8] = header;
        let (body, tag) = rest.split_at_mut(rest.len() - TAG);
        match &mut self.ctx {
            OpenCtx::ChaCha(c) => {
                let tag = AeadTag::from_bytes(tag).map_err(|_| CryptoError::BadRecord)?;
                c.open_inout_detached(InOutBuf::from(&mut *body), aad, &tag)
                    .map_err(|_| CryptoError::BadRecord)?;
            }
            OpenCtx::Aes(c) => {
                let tag = AeadTag::from_bytes(tag).map_err(|_| CryptoError::BadRecord)?;
                c.open_inout_detached(InOutBuf::from(&mut *body), aad, &tag)
                    .map_err(|_| CryptoError::BadRecord)?;
            }
            #[cfg(any(test, feature = "null-cipher"))]
            OpenCtx::Null => {}
        }
        self.opened += 1;
        let ty = match body[0] {
            0 => RecordType::Data,
            1 => RecordType::Close,
            _ => return Err(CryptoError::BadRecord),
        };
        Ok((ty, HEADER + 1..HEADER + body.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(cipher: Cipher, limit: u64) -> (Sealer, Opener) {
        let k = [7u8; 32];
        let n = [9u8; 12];
        (
            Sealer::new(cipher, &k, &n, limit),
            Opener::new(cipher, &k, &n, limit),
        )
    }

    fn seal(s: &mut Sealer, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; payload.len() + OVERHEAD];
        buf[HEADER + 1..HEADER + 1 + payload.len()].copy_from_slice(payload);
        let n = s.seal(RecordType::Data, &mut buf, payload.len()).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn round_trip_both_ciphers_and_ciphertext_hides_plaintext() {
        for cipher in [Cipher::ChaCha20Poly1305, Cipher::Aes128Gcm] {
            let (mut s, mut o) = pair(cipher, u64::MAX);
            let msg = b"attack at dawn, attack at dawn";
            let mut r = seal(&mut s, msg);
            assert!(
                !r.windows(6).any(|w| w == b"attack"),
                "{cipher:?}: plaintext visible"
            );
            let (ty, range) = o.open(&mut r).unwrap();
            assert_eq!(ty, RecordType::Data);
            assert_eq!(&r[range], msg);
        }
    }

    #[test]
    fn every_flipped_bit_fails() {
        for cipher in [Cipher::ChaCha20Poly1305, Cipher::Aes128Gcm] {
            let (mut s, _) = pair(cipher, u64::MAX);
            let r = seal(&mut s, b"hello");
            for bit in 0..r.len() * 8 {
                let (_, mut o) = pair(cipher, u64::MAX);
                let mut bad = r.clone();
                bad[bit / 8] ^= 1 << (bit % 8);
                assert!(o.open(&mut bad).is_err(), "{cipher:?} bit {bit}");
            }
        }
    }

    #[test]
    fn reorder_duplicate_drop_fail() {
        let (mut s, _) = pair(Cipher::ChaCha20Poly1305, u64::MAX);
        let r0 = seal(&mut s, b"zero");
        let r1 = seal(&mut s, b"one");
        // reorder
        let (_, mut o) = pair(Cipher::ChaCha20Poly1305, u64::MAX);
        assert!(o.open(&mut r1.clone()).is_err());
        // duplicate
        let (_, mut o) = pair(Cipher::ChaCha20Poly1305, u64::MAX);
        o.open(&mut r0.clone()).unwrap();
        assert!(o.open(&mut r0.clone()).is_err());
        // drop: skipping r0 means r1 arrives first, which is the reorder case above.
    }

    #[test]
    fn splice_from_other_keys_fails() {
        let (mut s, _) = pair(Cipher::Aes128Gcm, u64::MAX);
        let mut other = Sealer::new(Cipher::Aes128Gcm, &[8u8; 32], &[9u8; 12], u64::MAX);
        let _ = seal(&mut s, b"a");
        let spliced = seal(&mut other, b"b");
        let (_, mut o) = pair(Cipher::Aes128Gcm, u64::MAX);
        assert!(o.open(&mut spliced.clone()).is_err());
    }

    #[test]
    fn counter_limit_fails_closed() {
        let (mut s, mut o) = pair(Cipher::ChaCha20Poly1305, 3);
        let mut a = seal(&mut s, b"1");
        let mut b = seal(&mut s, b"2");
        let mut buf = vec![0u8; 1 + OVERHEAD];
        assert_eq!(
            s.seal(RecordType::Data, &mut buf, 1),
            Err(CryptoError::CounterExhausted),
            "the last record is the Close record's"
        );
        let total = s.seal(RecordType::Close, &mut buf, 0).unwrap();
        let mut close = buf[..total].to_vec();
        assert_eq!(
            s.seal(RecordType::Close, &mut buf, 0),
            Err(CryptoError::CounterExhausted)
        );
        o.open(&mut a).unwrap();
        o.open(&mut b).unwrap();
        assert_eq!(o.open(&mut close).unwrap().0, RecordType::Close);
        let mut c = b.clone();
        assert_eq!(o.open(&mut c).unwrap_err(), CryptoError::CounterExhausted);
    }

    #[test]
    fn aes_gcm_data_limit_fails_closed_chacha_has_none() {
        // A 40-byte payload is a 41-byte body: 3 blocks + 1 for the tag = 4 per record.
        let payload = [5u8; 40];
        let mut buf = vec![0u8; payload.len() + OVERHEAD];
        let (s, mut o) = pair(Cipher::Aes128Gcm, u64::MAX);
        // Data records leave the blocks of the largest Close record.
        let mut s = s.with_blocks_left(10 + CLOSE_BLOCKS);
        let mut a = seal(&mut s, &payload);
        let mut b = seal(&mut s, &payload);
        assert_eq!(
            s.seal(RecordType::Data, &mut buf, payload.len()),
            Err(CryptoError::CounterExhausted),
            "8 of 10 blocks used: a third record needs 4"
        );
        // What fits still goes: a 1-byte payload is 2 blocks.
        let mut c = seal(&mut s, b"x");
        assert_eq!(
            s.seal(RecordType::Data, &mut buf, 1),
            Err(CryptoError::CounterExhausted)
        );
        // The Close record, with the longest reason, still fits.
        let body = CLOSE_PAYLOAD_MAX;
        let mut close = vec![0u8; body + OVERHEAD];
        let total = s.seal(RecordType::Close, &mut close, body).unwrap();
        assert_eq!(s.blocks_left, 0);
        for r in [&mut a, &mut b, &mut c, &mut close[..total].to_vec()] {
            o.open(r).unwrap();
        }
        // The real limit is 2^34 blocks for AES-128-GCM and none for ChaCha20-Poly1305.
        let (s, _) = pair(Cipher::Aes128Gcm, u64::MAX);
        assert_eq!(s.blocks_left, AES_GCM_MAX_BLOCKS);
        let (s, _) = pair(Cipher::ChaCha20Poly1305, u64::MAX);
        assert_eq!(s.blocks_left, u64::MAX);
    }

    #[test]
    fn header_checks() {
        assert_eq!(Opener::record_len(&[1, 2], 100), Ok(None));
        assert_eq!(
            Opener::record_len(&u32::MAX.to_le_bytes(), 100),
            Err(CryptoError::RecordTooLarge)
        );
        assert_eq!(
            Opener::record_len(&3u32.to_le_bytes(), 100),
            Err(CryptoError::BadRecord)
        );
        assert_eq!(Opener::record_len(&20u32.to_le_bytes(), 100), Ok(Some(24)));
    }

    /// With the null cipher, random bytes reach the record and frame parsers behind the AEAD:
    /// every outcome is a record, a frame, or a typed error — never a panic, never a buffer
    /// larger than the limits.
    #[test]
    fn null_cipher_property_random_records_and_frames() {
        use crate::buffer::{BufferPool, PoolConfig};
        use crate::session::inbound::Inbound;
        use rand_chacha::ChaCha20Rng;
        use rand_core::{Rng, SeedableRng};

        let pool = BufferPool::new(PoolConfig::default());
        let mut rng = ChaCha20Rng::seed_from_u64(77);
        for _ in 0..300 {
            let mut sealer = Sealer::new(Cipher::Null, &[0; 32], &[0; 12], u64::MAX);
            let mut opener = Opener::new(Cipher::Null, &[0; 32], &[0; 12], u64::MAX);
            let mut inbound = Inbound::new(pool.clone(), 512, 512, 4096);
            let mut wire = Vec::new();
            for _ in 0..(rng.next_u32() % 8) {
                // Half the time well-formed records with random payloads, else raw junk.
                let len = (rng.next_u32() % 300) as usize;
                let mut payload = vec![0u8; len];
                rng.fill_bytes(&mut payload);
                if rng.next_u32() % 2 == 0 {
                    let mut rec = vec![0u8; len + OVERHEAD];
                    rec[HEADER + 1..HEADER + 1 + len].copy_from_slice(&payload);
                    let n = sealer.seal(RecordType::Data, &mut rec, len).unwrap();
                    wire.extend_from_slice(&rec[..n]);
                } else {
                    wire.extend_from_slice(&payload);
                }
            }
            let mut at = 0;
            'records: while let Ok(Some(total)) = Opener::record_len(&wire[at..], 1024) {
                if wire.len() - at < total {
                    break;
                }
                let mut rec = wire[at..at + total].to_vec();
                at += total;
                let Ok((_, range)) = opener.open(&mut rec) else {
                    break;
                };
                let n = range.len();
                inbound.spare_for(n)[..n].copy_from_slice(&rec[range]);
                inbound.commit(n);
                loop {
                    match inbound.poll_frame() {
                        Ok(Some(f)) => inbound.consume(&f),
                        Ok(None) => break,
                        Err(_) => break 'records,
                    }
                }
            }
            assert!(
                pool.stats().in_use_bytes <= 8192 + 4096,
                "{:?}",
                pool.stats()
            );
        }
    }
}
