//! The handshake's unit tests: both sides agree, each refusal (wrong server, unknown or forged
//! client key, wrong context, replay, garbage, off-curve and low-order points, the null
//! cipher) happens where it should, and known-answer transcripts pin the wire format and key
//! schedule. `dhkem` checks the key exchanges against RFC 9180 and the `hpke` crate.

use super::*;
use hpke::{Deserializable, Serializable};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use crate::crypto::keys::{KeyPair, PublicKey};
use crate::crypto::x25519::{self, Op, Point};

mod dhkem;

fn fresh(seed: u64) -> Fresh {
    Fresh::from_rng(&mut ChaCha20Rng::seed_from_u64(seed))
}

fn run(
    client_id: Option<&KeyPair>,
    allowed: Option<&[PublicKey]>,
    server: &KeyPair,
    pinned: &PublicKey,
) -> Result<(SessionKeys, SessionKeys), PeerMisbehaved> {
    run_in(client_id, allowed, server, pinned, b"", b"")
}

/// One handshake with fixed randomness; the client in `client_context`, the server in
/// `server_context`.
fn run_in(
    client_id: Option<&KeyPair>,
    allowed: Option<&[PublicKey]>,
    server: &KeyPair,
    pinned: &PublicKey,
    client_context: &[u8],
    server_context: &[u8],
) -> Result<(SessionKeys, SessionKeys), PeerMisbehaved> {
    let client_keys = ClientKeys::new(pinned, client_id, client_context);
    let (cp, ch) = client_hello(fresh(1), Cipher::ChaCha20Poly1305, &client_keys)?;
    let server_keys = ServerKeys::new(server, allowed, server_context);
    let (sp, sh) = server_respond(fresh(2), &server_keys, &ch)?;
    let (ck, cf) = client_finish(cp, &client_keys, &sh)?;
    let sk = server_finish(sp, &cf)?;
    Ok((ck, sk))
}

#[test]
fn both_sides_derive_the_same_independent_keys() {
    let server = KeyPair::from_seed(&[1; 32]);
    let (c, s) = run(None, None, &server, &server.public()).unwrap();
    assert_eq!(c.c2s_key, s.c2s_key);
    assert_eq!(c.s2c_key, s.s2c_key);
    assert_eq!(c.c2s_nonce, s.c2s_nonce);
    assert_ne!(c.c2s_key, c.s2c_key, "each direction has its own key");
    assert_eq!(
        c.peer_key,
        Some(server.public()),
        "the client knows the server's key"
    );
    assert_eq!(s.peer_key, None, "an anonymous client has no key");
}

#[test]
fn wrong_server_key_is_detected_by_the_client() {
    let real = KeyPair::from_seed(&[1; 32]);
    let impostor = KeyPair::from_seed(&[2; 32]);
    // The client pins `real`; `impostor` answers. HPKE setup fails or the finished tag does.
    let err = run(None, None, &impostor, &real.public()).err().unwrap();
    assert!(
        matches!(
            err,
            PeerMisbehaved::ServerNotAuthenticated | PeerMisbehaved::Malformed
        ),
        "{err:?}"
    );
}

#[test]
fn client_auth_allow_list() {
    let server = KeyPair::from_seed(&[1; 32]);
    let alice = KeyPair::from_seed(&[3; 32]);
    let mallory = KeyPair::from_seed(&[4; 32]);
    let allowed = [alice.public()];
    let (c, s) = run(Some(&alice), Some(&allowed), &server, &server.public()).unwrap();
    assert_eq!(
        s.peer_key,
        Some(alice.public()),
        "the server knows the client's key"
    );
    assert_eq!(c.peer_key, Some(server.public()));
    assert_eq!(c.c2s_key, s.c2s_key);
    // Without an allow-list the key is still proven, and reported.
    let (c, s) = run(Some(&mallory), None, &server, &server.public()).unwrap();
    assert_eq!(s.peer_key, Some(mallory.public()));
    assert_eq!(c.c2s_key, s.c2s_key);
    assert!(matches!(
        run(Some(&mallory), Some(&allowed), &server, &server.public()),
        Err(PeerMisbehaved::UnknownClientKey)
    ));
    assert!(matches!(
        run(None, Some(&allowed), &server, &server.public()),
        Err(PeerMisbehaved::UnknownClientKey)
    ));
}

#[test]
fn claiming_an_allowed_key_without_its_secret_fails() {
    // Mallory sends Alice's public key but must use her own secret in Auth mode: the
    // derived keys differ, so the server rejects the ClientFinished.
    let server = KeyPair::from_seed(&[1; 32]);
    let alice = KeyPair::from_seed(&[3; 32]);
    let mallory = KeyPair::from_seed(&[4; 32]);
    let forged = KeyPair {
        secret: mallory.secret.clone(),
        public: alice.public(),
    };
    let allowed = [alice.public()];
    let err = run(Some(&forged), Some(&allowed), &server, &server.public())
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            PeerMisbehaved::ClientNotAuthenticated | PeerMisbehaved::ServerNotAuthenticated
        ),
        "{err:?}"
    );
}

/// Key-compromise impersonation: whoever holds the server's secret key computes the
/// static-static DH of any client (`DH(server secret, client key)` = `DH(client secret,
/// server key)`), so `K1` alone cannot authenticate a client to that server. `K3` (the
/// server's fresh ephemeral with the client's key) needs the client's secret. Fails on
/// v2 (without `K3`), where this handshake succeeds and reports Alice's key.
#[test]
fn the_servers_secret_key_alone_does_not_log_in_as_a_client() {
    let server = KeyPair::from_seed(&[1; 32]);
    let alice = KeyPair::from_seed(&[3; 32]);
    let mallory = KeyPair::from_seed(&[4; 32]);
    let ss = x25519::batch([Op::Dh(
        server.secret.as_bytes(),
        &Point::new(&alice.public.0),
    )])[0];
    for allowed in [Some(vec![alice.public()]), None] {
        let attacker =
            ClientKeys::impersonating(&server.public(), alice.public(), &mallory, ss, b"");
        let server_keys = ServerKeys::new(&server, allowed.as_deref(), b"");
        let (cp, ch) = client_hello(fresh(7), Cipher::Aes128Gcm, &attacker).unwrap();
        let (sp, sh) = server_respond(fresh(8), &server_keys, &ch).unwrap();
        // The attacker cannot even check the server's tag (it lacks K3), and whatever
        // finished tag it sends is refused.
        let err = client_finish(cp, &attacker, &sh).err();
        assert_eq!(err, Some(PeerMisbehaved::ServerNotAuthenticated));
        let mut guess = [0u8; CF_LEN];
        ChaCha20Rng::seed_from_u64(9).fill_bytes(&mut guess);
        assert_eq!(
            server_finish(sp, &guess).err(),
            Some(PeerMisbehaved::ClientNotAuthenticated),
            "allow-list {}",
            allowed.is_some()
        );
    }
}

#[test]
fn the_context_is_bound_into_the_transcript() {
    let server = KeyPair::from_seed(&[1; 32]);
    let alice = KeyPair::from_seed(&[3; 32]);
    let allowed = [alice.public()];
    for id in [None, Some(&alice)] {
        let list = id.map(|_| &allowed[..]);
        let (c, s) = run_in(id, list, &server, &server.public(), b"eu", b"eu").unwrap();
        assert_eq!(c.c2s_key, s.c2s_key);
        let (c0, _) = run_in(id, list, &server, &server.public(), b"", b"").unwrap();
        assert_ne!(c.c2s_key, c0.c2s_key, "the context changes the keys");
        for (cc, sc) in [(&b"eu"[..], &b"us"[..]), (b"", b"eu"), (b"e", b"u")] {
            assert_eq!(
                run_in(id, list, &server, &server.public(), cc, sc).err(),
                Some(PeerMisbehaved::ServerNotAuthenticated),
                "client context {cc:?}, server context {sc:?}"
            );
        }
    }
    // Length-prefixed: a context is not another one's prefix plus hello bytes.
    assert_ne!(
        transcript_prefix(b"ab").finalize(),
        transcript_prefix(b"a").chain_update(b"b").finalize()
    );
}

#[test]
fn replayed_hello_yields_different_keys() {
    let server = KeyPair::from_seed(&[1; 32]);
    let client_keys = ClientKeys::new(&server.public(), None, b"");
    let server_keys = ServerKeys::new(&server, None, b"");
    let (_, ch) = client_hello(fresh(1), Cipher::Aes128Gcm, &client_keys).unwrap();
    let (a, _) = server_respond(fresh(5), &server_keys, &ch).unwrap();
    let (b, _) = server_respond(fresh(6), &server_keys, &ch).unwrap();
    assert_ne!(a.schedule.keys.c2s_key, b.schedule.keys.c2s_key);
}

#[test]
fn garbage_hellos_are_rejected_cheaply() {
    let server = KeyPair::from_seed(&[1; 32]);
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let before = x25519::tests::multiplications();
    for len in [0, 7, 8, 71, 72, 73, 103, 104, 105, 136, 200] {
        let mut junk = vec![0u8; len];
        rng.fill_bytes(&mut junk);
        assert!(
            server_respond(
                fresh(len as u64),
                &ServerKeys::new(&server, None, b""),
                &junk
            )
            .is_err()
        );
    }
    assert_eq!(
        x25519::tests::multiplications(),
        before,
        "refused before any X25519"
    );
    let mut bad = [0u8; CH_HEADER];
    bad[..4].copy_from_slice(&MAGIC);
    bad[4] = 0x77;
    assert!(client_hello_len(&bad).is_err());
    // The previous version is refused from its header.
    bad = *b"LXN2\x01\x00\x00\x00";
    assert_eq!(client_hello_len(&bad), Err(PeerMisbehaved::Malformed));
}

/// A 32-byte string that is not on the curve (on its twist): about half of all strings.
fn twist_point(seed: u64) -> [u8; 32] {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    loop {
        let mut u = [0u8; 32];
        rng.fill_bytes(&mut u);
        u[31] &= 0x7f;
        if curve25519_dalek::montgomery::MontgomeryPoint(u)
            .to_edwards(0)
            .is_none()
        {
            return u;
        }
    }
}

/// Off-curve ephemeral keys take the slower ladder and no honest peer sends one: each
/// side refuses them as `Malformed` before any scalar multiplication. (Fails on v2,
/// which answers such a hello, and finishes a handshake whose `enc_s` is one.)
#[test]
fn ephemeral_keys_off_the_curve_are_refused_before_any_multiplication() {
    let server = KeyPair::from_seed(&[1; 32]);
    let alice = KeyPair::from_seed(&[3; 32]);
    for id in [None, Some(&alice)] {
        let client_keys = ClientKeys::new(&server.public(), id, b"");
        let server_keys = ServerKeys::new(&server, None, b"");
        for seed in 0..8 {
            let bad = twist_point(seed);
            let (_, mut ch) = client_hello(fresh(seed), Cipher::Aes128Gcm, &client_keys).unwrap();
            ch[40..72].copy_from_slice(&bad);
            let before = x25519::tests::multiplications();
            assert_eq!(
                server_respond(fresh(100 + seed), &server_keys, &ch).err(),
                Some(PeerMisbehaved::Malformed)
            );
            assert_eq!(
                x25519::tests::multiplications(),
                before,
                "server: no X25519"
            );
            let (cp, ch) = client_hello(fresh(seed), Cipher::Aes128Gcm, &client_keys).unwrap();
            let (_, mut sh) = server_respond(fresh(200 + seed), &server_keys, &ch).unwrap();
            sh[40..72].copy_from_slice(&bad);
            let before = x25519::tests::multiplications();
            assert_eq!(
                client_finish(cp, &client_keys, &sh).err(),
                Some(PeerMisbehaved::Malformed)
            );
            assert_eq!(
                x25519::tests::multiplications(),
                before,
                "client: no X25519"
            );
        }
    }
}

/// One secret, one identity: without an allow-list the server reports whatever key the
/// client proved, so Alice's secret must not also prove her key's other encodings (top
/// bit set, `u + p`) or her key plus a small-order point (clamping makes both give the
/// same DH outputs). All are refused as `Malformed`; so are off-curve and low-order
/// client keys, before any multiplication. (Fails on v2, which accepts them and reports
/// a different `peer_key` for each.)
#[test]
fn a_client_key_must_be_canonical_on_the_curve_and_in_the_subgroup() {
    let server = KeyPair::from_seed(&[1; 32]);
    let alice = KeyPair::from_seed(&[3; 32]);
    let pk = alice.public.0;
    let mut high = pk;
    high[31] |= 0x80;
    let p8 = hex32("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800");
    let torsion = (curve25519_dalek::montgomery::MontgomeryPoint(pk)
        .to_edwards(0)
        .unwrap()
        + curve25519_dalek::montgomery::MontgomeryPoint(p8)
            .to_edwards(0)
            .unwrap())
    .to_montgomery()
    .to_bytes();
    // p + 5, the non-canonical encoding of u = 5 (only u < 19 have one below 2^255).
    let mut plus_p = [0xffu8; 32];
    plus_p[0] = 0xed + 5;
    plus_p[31] = 0x7f;
    let server_keys = ServerKeys::new(&server, None, b"");
    for (what, key) in [
        ("top bit set", high),
        ("a small-order point added", torsion),
        ("u + p", plus_p),
        ("off the curve", twist_point(3)),
        ("low order", p8),
        ("zero", [0u8; 32]),
    ] {
        // The real handshake, with Alice's secret behind the mangled key.
        let forged = KeyPair {
            secret: alice.secret.clone(),
            public: PublicKey(key),
        };
        let client_keys = ClientKeys::new(&server.public(), Some(&forged), b"");
        let (_, ch) = client_hello(fresh(1), Cipher::Aes128Gcm, &client_keys).unwrap();
        assert_eq!(
            server_respond(fresh(2), &server_keys, &ch).err(),
            Some(PeerMisbehaved::Malformed),
            "{what}"
        );
        assert!(PublicKey::from_bytes(key).is_err(), "{what}");
    }
    // Refused before any DH (the subgroup check, the last of them, is not a batch op).
    let forged = KeyPair {
        secret: alice.secret.clone(),
        public: PublicKey(twist_point(4)),
    };
    let client_keys = ClientKeys::new(&server.public(), Some(&forged), b"");
    let (_, ch) = client_hello(fresh(1), Cipher::Aes128Gcm, &client_keys).unwrap();
    let before = x25519::tests::multiplications();
    assert!(server_respond(fresh(2), &server_keys, &ch).is_err());
    assert_eq!(x25519::tests::multiplications(), before);
    // Alice's real key still works.
    let (_, s) = run(Some(&alice), None, &server, &server.public()).unwrap();
    assert_eq!(s.peer_key, Some(alice.public()));
}

/// A server never accepts the null cipher unless its own configuration names it, even in
/// a build that has it (tests, feature `null-cipher`). (Fails on v2, where any such
/// build accepts it from any client.)
#[test]
fn the_null_cipher_needs_the_servers_own_opt_in() {
    let server = KeyPair::from_seed(&[1; 32]);
    let client_keys = ClientKeys::new(&server.public(), None, b"");
    let (_, ch) = client_hello(fresh(1), Cipher::Null, &client_keys).unwrap();
    let header: &[u8; CH_HEADER] = ch.first_chunk().unwrap();
    let default = ServerKeys::new(&server, None, b"");
    assert_eq!(default.hello_len(header), Err(PeerMisbehaved::Malformed));
    assert_eq!(
        server_respond(fresh(2), &default, &ch).err(),
        Some(PeerMisbehaved::Malformed)
    );
    let opted_in = ServerKeys::new(&server, None, b"").with_null_cipher(true);
    assert!(server_respond(fresh(2), &opted_in, &ch).is_ok());
    // Through the service's configuration: only `cipher: Null` on the server opts in.
    let enc = super::super::Encryption::server(server.clone()).with_cipher(Cipher::Aes128Gcm);
    let keys = super::super::io::HandshakeKeys::new(&enc);
    assert!(!keys.server_accepts_null());
    let enc = enc.with_cipher(Cipher::Null);
    let keys = super::super::io::HandshakeKeys::new(&enc);
    assert!(keys.server_accepts_null());
}

fn hex32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

#[test]
fn low_order_points_are_refused() {
    let server = KeyPair::from_seed(&[1; 32]);
    let (client_keys, server_keys) = (
        ClientKeys::new(&server.public(), None, b""),
        ServerKeys::new(&server, None, b""),
    );
    // The identity point (all zeros) and a point of order 8 make every DH output zero.
    let order8 = hex32("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800");
    for bad in [[0u8; 32], order8] {
        let (_, mut ch) = client_hello(fresh(1), Cipher::Aes128Gcm, &client_keys).unwrap();
        ch[40..72].copy_from_slice(&bad);
        assert!(matches!(
            server_respond(fresh(2), &server_keys, &ch),
            Err(PeerMisbehaved::Malformed)
        ));
        let (cp, ch) = client_hello(fresh(3), Cipher::Aes128Gcm, &client_keys).unwrap();
        let (_, mut sh) = server_respond(fresh(4), &server_keys, &ch).unwrap();
        sh[40..72].copy_from_slice(&bad);
        assert!(matches!(
            client_finish(cp, &client_keys, &sh),
            Err(PeerMisbehaved::Malformed)
        ));
        // A pinned (or allowed) low-order key: the static-static DH is zero.
        let low = PublicKey(bad);
        let (cp, ch) = client_hello(
            fresh(5),
            Cipher::Aes128Gcm,
            &ClientKeys::new(&low, None, b""),
        )
        .unwrap();
        let (_, sh) = server_respond(fresh(6), &server_keys, &ch).unwrap();
        assert!(matches!(
            client_finish(cp, &ClientKeys::new(&low, None, b""), &sh),
            Err(PeerMisbehaved::Malformed)
        ));
    }
}

#[test]
fn known_answer_transcript() {
    // Pins the handshake wire format and key schedule: fixed seeds give fixed bytes.
    assert_eq!(
        transcript_digest(None),
        KAT_HANDSHAKE,
        "the handshake wire format or key schedule changed"
    );
}

#[test]
fn known_answer_transcript_with_client_auth() {
    let client = KeyPair::from_seed(&[3; 32]);
    assert_eq!(
        transcript_digest(Some(&client)),
        KAT_HANDSHAKE_CLIENT_AUTH,
        "the handshake wire format or key schedule changed (AuthEncap)"
    );
}

/// SHA-256 of a whole handshake's bytes, keys and a first record per cipher, from fixed
/// seeds, in the context "laxnet KAT".
fn transcript_digest(client: Option<&KeyPair>) -> String {
    let server = KeyPair::from_seed(&[1; 32]);
    let mut crng = ChaCha20Rng::seed_from_u64(1);
    let mut srng = ChaCha20Rng::seed_from_u64(2);
    let context = b"laxnet KAT";
    let client_keys = ClientKeys::new(&server.public(), client, context);
    let (cp, ch) = client_hello(
        Fresh::from_rng(&mut crng),
        Cipher::ChaCha20Poly1305,
        &client_keys,
    )
    .unwrap();
    let allowed = client.map(|c| [c.public()]);
    let server_keys = ServerKeys::new(&server, allowed.as_ref().map(|a| a.as_slice()), context);
    let (sp, sh) = server_respond(Fresh::from_rng(&mut srng), &server_keys, &ch).unwrap();
    let (keys, cf) = client_finish(cp, &client_keys, &sh).unwrap();
    let server_keys = server_finish(sp, &cf).unwrap();
    assert_eq!(server_keys.c2s_key, keys.c2s_key);
    // ...and the first record of each cipher under these keys.
    let mut records = Vec::new();
    for cipher in [Cipher::ChaCha20Poly1305, Cipher::Aes128Gcm] {
        let mut sealer =
            super::super::record::Sealer::new(cipher, &keys.c2s_key, &keys.c2s_nonce, 10);
        let mut rec = [0u8; 5 + super::super::record::OVERHEAD];
        rec[5..10].copy_from_slice(b"hello");
        let n = sealer
            .seal(super::super::record::RecordType::Data, &mut rec, 5)
            .unwrap();
        records.extend_from_slice(&rec[..n]);
    }
    let digest = Sha256::new()
        .chain_update(&records)
        .chain_update(&ch)
        .chain_update(sh)
        .chain_update(cf)
        .chain_update(*keys.c2s_key)
        .chain_update(*keys.s2c_nonce)
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

const KAT_HANDSHAKE: &str = "c712a97fd67898ca2dd8819d6b2abe6c742b56f8fef3a294a2a363d86f1a72ff";
const KAT_HANDSHAKE_CLIENT_AUTH: &str =
    "5a2854d842d1efd0e7bfa661470151102f2e878bbdc6598cdcb49ae1824082aa";
