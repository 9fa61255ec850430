//! The handshake's key exchanges against RFC 9180: the DHKEM(X25519, HKDF-SHA256) known answer
//! (Appendix A.1.1), and each side's `K1`, `K2` and `K3` against the `hpke` crate's
//! `Encap`/`Decap` (`AuthEncap`/`AuthDecap` with a client key).

use super::*;
use crate::crypto::handshake::client::client_kem;
use crate::crypto::handshake::schedule::kem_secret;
use crate::crypto::handshake::server::{ClientStatic, server_kem};

fn hpke_secret(k: &KeyPair) -> crate::crypto::keys::SecretKey {
    crate::crypto::keys::SecretKey::from_bytes(&k.secret_bytes()).unwrap()
}

fn hpke_public(k: &PublicKey) -> crate::crypto::keys::KemPublicKey {
    crate::crypto::keys::KemPublicKey::from_bytes(&k.0).unwrap()
}

#[test]
fn dhkem_matches_rfc_9180_appendix_a_1_1() {
    // DHKEM(X25519, HKDF-SHA256), Base mode: skEm, pkRm, skRm, enc, shared_secret.
    let sk_e = hex32("52c4a758a802cd8b936eceea314432798d5baf2d7e9235dc084ab1b9cfa2f736");
    let pk_r = hex32("3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d");
    let sk_r = hex32("4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8");
    let enc = hex32("37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431");
    let shared = hex32("fe0e18c9f024ce43799ae393c7e8fe8fce9d218875e8227b0187c04e7d2ea1fc");
    assert_eq!(
        *x25519::batch([Op::Base(&sk_e), Op::Base(&sk_r)]),
        [enc, pk_r]
    );
    let dh = x25519::batch([
        Op::Dh(&sk_e, &Point::new(&pk_r)),
        Op::Dh(&sk_r, &Point::new(&enc)),
    ]);
    assert_eq!(*kem_secret(&[&dh[0]], &enc, &pk_r, None).unwrap(), shared);
    assert_eq!(*kem_secret(&[&dh[1]], &enc, &pk_r, None).unwrap(), shared);
}

#[test]
fn dhkem_interoperates_with_the_hpke_crate_in_both_modes() {
    // Each side's K1, K2 and K3, as the handshake computes them, against the hpke crate's
    // Encap/Decap (AuthEncap/AuthDecap with a client key for K1) on the other end.
    type Kem = crate::crypto::keys::Kem;
    type Enc = <Kem as hpke::Kem>::EncappedKey;
    let server = KeyPair::from_seed(&[1; 32]);
    let client = KeyPair::from_seed(&[3; 32]);
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let mut random32 = || {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        k
    };
    let mut hpke_rng = ChaCha20Rng::seed_from_u64(12);
    for auth in [false, true] {
        let identity = auth.then_some(&client);
        let client_key = auth.then(|| client.public());
        let client_hpke = auth.then(|| (hpke_secret(&client), hpke_public(&client.public)));
        for _ in 0..4 {
            // Our client: K1 is what hpke's Decap computes at the server; K2 and K3 what
            // hpke's Encap to the client's ephemeral key and to its static key produced
            // with one ephemeral key (the same RNG state gives the same `enc_s`).
            let eph_c = random32();
            let enc_c = x25519::batch([Op::Base(&eph_c)])[0];
            let rng_state = hpke_rng.clone();
            let (k2_hpke, enc_s) = <Kem as hpke::Kem>::encap_with_rng(
                &hpke_public(&PublicKey(enc_c)),
                None,
                &mut hpke_rng,
            )
            .unwrap();
            let (k3_hpke, enc_s3) = <Kem as hpke::Kem>::encap_with_rng(
                &hpke_public(&client.public),
                None,
                &mut rng_state.clone(),
            )
            .unwrap();
            assert_eq!(enc_s.to_bytes(), enc_s3.to_bytes());
            let enc_s: [u8; 32] = enc_s.to_bytes().into();
            let client_keys = ClientKeys::new(&server.public, identity, b"");
            let (k1, k2, k3) = client_kem(&eph_c, &enc_c, &client_keys, &enc_s).unwrap();
            let k1_hpke = <Kem as hpke::Kem>::decap(
                &hpke_secret(&server),
                client_hpke.as_ref().map(|(_, pk)| pk),
                &Enc::from_bytes(&enc_c).unwrap(),
            )
            .unwrap();
            assert_eq!(
                k1.as_slice(),
                k1_hpke.0.as_slice(),
                "client K1, auth {auth}"
            );
            assert_eq!(
                k2.as_slice(),
                k2_hpke.0.as_slice(),
                "client K2, auth {auth}"
            );
            assert_eq!(
                k3.as_ref().map(|k| k.to_vec()),
                auth.then(|| k3_hpke.0.to_vec()),
                "client K3, auth {auth}"
            );

            // Our server: K1 is what hpke's Encap to the server key produced; K2 and K3
            // what hpke's Decap with the client's ephemeral and static secrets compute.
            let (k1_hpke, enc_c) = <Kem as hpke::Kem>::encap_with_rng(
                &hpke_public(&server.public),
                client_hpke.as_ref().map(|(sk, pk)| (sk, pk)),
                &mut hpke_rng,
            )
            .unwrap();
            let enc_c: [u8; 32] = enc_c.to_bytes().into();
            // With a client key, both ways the server gets the static-static DH: from
            // its allow-list (computed once) and computed in the handshake's batch.
            let allowed =
                ServerKeys::new(&server, client_key.as_ref().map(std::slice::from_ref), b"");
            let mut clients = vec![None];
            if let Some(c) = client_key.as_ref() {
                clients = vec![Some((c, false)), Some((c, true))];
            }
            let e = Point::from_peer(&enc_c).unwrap();
            let mut enc_s = [0u8; 32];
            for client in clients.iter().copied() {
                let point = client.map(|(c, _)| Point::new(&c.0));
                let cs = match (client, &point, &allowed.allowed) {
                    (Some((_, true)), _, Some(list)) => Some(ClientStatic {
                        key: &list[0].key.0,
                        point: &list[0].point,
                        ss: Some(&list[0].ss),
                    }),
                    (Some((c, _)), Some(p), _) => Some(ClientStatic {
                        key: &c.0,
                        point: p,
                        ss: None,
                    }),
                    _ => None,
                };
                let (e_s, k1, _, _) = server_kem(&server, &enc_c, &e, cs, &random32()).unwrap();
                assert_eq!(
                    k1.as_slice(),
                    k1_hpke.0.as_slice(),
                    "server K1, auth {auth}, precomputed {:?}",
                    client.map(|c| c.1)
                );
                enc_s = e_s;
            }
            let eph_c = random32();
            let enc_c = x25519::batch([Op::Base(&eph_c)])[0];
            let e = Point::from_peer(&enc_c).unwrap();
            let point = client_key.map(|c| Point::new(&c.0));
            let cs = client_key
                .as_ref()
                .zip(point.as_ref())
                .map(|(c, p)| ClientStatic {
                    key: &c.0,
                    point: p,
                    ss: None,
                });
            let (enc_s2, _, k2, k3) = server_kem(&server, &enc_c, &e, cs, &random32()).unwrap();
            assert_ne!(enc_s, enc_s2);
            let k2_hpke = <Kem as hpke::Kem>::decap(
                &hpke_secret(&KeyPair::from_secret_bytes(eph_c).unwrap()),
                None,
                &Enc::from_bytes(&enc_s2).unwrap(),
            )
            .unwrap();
            assert_eq!(
                k2.as_slice(),
                k2_hpke.0.as_slice(),
                "server K2, auth {auth}"
            );
            let k3_hpke = auth.then(|| {
                <Kem as hpke::Kem>::decap(
                    &hpke_secret(&client),
                    None,
                    &Enc::from_bytes(&enc_s2).unwrap(),
                )
                .unwrap()
                .0
                .to_vec()
            });
            assert_eq!(k3.map(|k| k.to_vec()), k3_hpke, "server K3, auth {auth}");
        }
    }
}
