//! The key derivation both sides of the handshake run alike: RFC 9180 DHKEM shared secrets
//! from Diffie-Hellman outputs, and the key schedule from the transcript and those secrets.

use hkdf::HkdfExtract;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use super::{Secret32, SessionKeys, ct_eq};
use crate::crypto::keys::PublicKey;
use crate::crypto::{Cipher, PeerMisbehaved};

/// What the key schedule derives: the session keys and the two finished tags.
pub(super) struct Schedule {
    pub(super) keys: SessionKeys,
    pub(super) server_finished: Secret32,
    pub(super) client_finished: Secret32,
}

/// The shared secret of RFC 9180 `Encap`/`Decap` (§4.1; `AuthEncap`/`AuthDecap` with
/// `sender`) from its Diffie-Hellman outputs, which both ends compute alike: `dh` is
/// `[DH(skE, pkR)]`, or `[DH(skE, pkR), DH(skS, pkR)]` with a sender key; the KEM context is
/// `enc ‖ pkR (‖ pkS)`. Refuses an all-zero DH output (a low-order point from the peer), as
/// RFC 9180 requires.
pub(super) fn kem_secret(
    dh: &[&[u8; 32]],
    enc: &[u8; 32],
    recipient: &[u8; 32],
    sender: Option<&[u8; 32]>,
) -> Result<Secret32, PeerMisbehaved> {
    if dh.iter().any(|d| ct_eq(*d, &[0; 32])) {
        return Err(PeerMisbehaved::Malformed);
    }
    Ok(match sender {
        Some(pk_s) => dhkem_secret(dh, &[enc, recipient, pk_s]),
        None => dhkem_secret(dh, &[enc, recipient]),
    })
}

/// RFC 9180 §4.1 `ExtractAndExpand(dh, kem_context)` for DHKEM(X25519, HKDF-SHA256), with
/// `dh` and `kem_context` given as the parts they concatenate.
fn dhkem_secret(dh: &[&[u8; 32]], kem_context: &[&[u8]]) -> Secret32 {
    const SUITE_ID: &[u8] = b"KEM\x00\x20";
    let mut extract = HkdfExtract::<Sha256>::new(Some(&[][..]));
    for part in [b"HPKE-v1".as_slice(), SUITE_ID, b"eae_prk"] {
        extract.input_ikm(part);
    }
    for part in dh {
        extract.input_ikm(*part);
    }
    let (mut prk_bytes, prk) = extract.finalize();
    prk_bytes[..].zeroize();
    // I2OSP(32, 2) ‖ "HPKE-v1" ‖ suite_id ‖ "shared_secret" ‖ kem_context (at most 3 keys).
    let mut info: [&[u8]; 7] = [
        &[0, 32],
        b"HPKE-v1",
        SUITE_ID,
        b"shared_secret",
        &[],
        &[],
        &[],
    ];
    assert!(
        kem_context.len() <= 3,
        "a kem_context has at most three keys"
    );
    for (slot, part) in info[4..].iter_mut().zip(kem_context) {
        *slot = part;
    }
    let mut out = Zeroizing::new([0u8; 32]);
    prk.expand_multi_info(&info, &mut *out)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    out
}

/// The key schedule: HKDF-SHA256 with the transcript hash (`prefix`, then the hellos) as the
/// salt and `ks` (`K1 ‖ K2 (‖ K3)`) as the input keying material.
pub(super) fn schedule(
    prefix: &Sha256,
    cipher: Cipher,
    peer_key: Option<PublicKey>,
    hello: &[u8],
    sh_core: &[u8],
    ks: &[&[u8; 32]],
) -> Schedule {
    let th = prefix
        .clone()
        .chain_update(hello)
        .chain_update(sh_core)
        .finalize();
    let mut extract = HkdfExtract::<Sha256>::new(Some(&th));
    for k in ks {
        extract.input_ikm(*k);
    }
    let (mut prk_bytes, hk) = extract.finalize();
    prk_bytes[..].zeroize();
    let expand32 = |label: &[u8]| {
        let mut out = Zeroizing::new([0u8; 32]);
        hk.expand(label, &mut *out)
            .expect("32 bytes is a valid HKDF-SHA256 length");
        out
    };
    let expand12 = |label: &[u8]| {
        let mut out = Zeroizing::new([0u8; 12]);
        hk.expand(label, &mut *out)
            .expect("12 bytes is a valid HKDF-SHA256 length");
        out
    };
    Schedule {
        keys: SessionKeys {
            cipher,
            peer_key,
            c2s_key: expand32(b"laxnet/v3 c2s key"),
            c2s_nonce: expand12(b"laxnet/v3 c2s nonce"),
            s2c_key: expand32(b"laxnet/v3 s2c key"),
            s2c_nonce: expand12(b"laxnet/v3 s2c nonce"),
        },
        server_finished: expand32(b"laxnet/v3 server finished"),
        client_finished: expand32(b"laxnet/v3 client finished"),
    }
}
