#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // benchmarks may use real time directly
#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

//! Micro-benchmarks of laxnet's building blocks, through `laxnet::bench_api` (feature
//! `bench-internals`, which re-exposes crate-internal types for benchmarks only):
//!
//! * `message/*`: borsh encode and decode of the 28-byte perf message (no framing).
//! * `frame/*`: `encode_frame` (header + borsh body into the send queue) and `parse_frame`.
//! * `pool/*`: `BufferPool::take` + drop (return) for the 512 B and 16 KiB classes.
//! * `read_buffer/*`: steady small reads (spare/commit/consume) and growth of an empty buffer
//!   to hold one 1 MiB frame arriving in 64 KiB reads (compaction + size-class moves).
//! * `segment/*`: filling the send queue with frames and the vectored flush (`io_slices` +
//!   `write_vectored` into memory + `advance`).
//! * `record/*`: sealing and opening one `bits-hpke` record in place (AES-128-GCM and
//!   ChaCha20-Poly1305), carrying one 36-byte frame or a full 4 KiB / 16 KiB of frames.
//! * `handshake/*`: the whole `bits-hpke` handshake as pure functions (no socket) against the
//!   raw HPKE setup pair that `shared/baselines` measures, in the same run.
//!
//! Run: `cargo bench --features bench-internals --bench internals`
//! (only these two: `... --bench internals -- 'record|handshake'`)

use std::hint::black_box;
use std::io::{IoSlice, Write};
use std::time::{Duration, Instant};

use borsh::{BorshDeserialize, BorshSerialize};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hpke::Kem as _;
use laxnet::bench_api::{
    BufferPool, Cipher, HEADER_BYTES, HandshakeSetup, KeyPair, Opener, Parsed, PoolConfig,
    RECORD_OVERHEAD, RECORD_PAYLOAD_AT, ReadBuffer, Sealer, SegmentQueue, encode_frame,
    parse_frame, pure_handshake,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

#[derive(BorshSerialize, BorshDeserialize, Debug, Clone, Copy, PartialEq)]
struct Msg {
    id: u32,
    seq: u64,
    payload: [u8; 16],
}
laxnet::message!(Msg = 7);

const MSG: Msg = Msg {
    id: 7,
    seq: 1,
    payload: [0xAB; 16],
};
const BODY: usize = 28;
const FRAME: usize = HEADER_BYTES + BODY;
const MAX_FRAME: usize = 1 << 20;
const SEGMENT: usize = 16 << 10;

fn pool() -> BufferPool {
    BufferPool::new(PoolConfig::default())
}

/// `n` frames of `MSG`, back to back.
fn frames(n: usize) -> Vec<u8> {
    let mut one = Vec::with_capacity(FRAME);
    one.extend_from_slice(&((BODY + 4) as u32).to_le_bytes());
    one.extend_from_slice(&7u32.to_le_bytes());
    MSG.serialize(&mut one).unwrap();
    assert_eq!(one.len(), FRAME);
    one.repeat(n)
}

fn message(c: &mut Criterion) {
    let mut g = c.benchmark_group("message");
    g.throughput(Throughput::Elements(1));
    let mut buf = [0u8; 64];
    g.bench_function("encode_borsh", |b| {
        b.iter(|| {
            let mut w: &mut [u8] = &mut buf;
            black_box(&MSG).serialize(&mut w).unwrap();
            black_box(&buf);
        })
    });
    let mut body = Vec::new();
    MSG.serialize(&mut body).unwrap();
    g.bench_function("decode_borsh", |b| {
        b.iter(|| black_box(borsh::from_slice::<Msg>(black_box(&body)).unwrap()))
    });
    g.finish();
}

fn frame(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame");
    const N: usize = 1000;
    g.throughput(Throughput::Elements(N as u64));
    let p = pool();
    let mut q = SegmentQueue::new(p.clone(), SEGMENT);
    g.bench_function("write", |b| {
        b.iter(|| {
            for _ in 0..N {
                encode_frame(&mut q, black_box(&MSG), MAX_FRAME).unwrap();
            }
            q.clear();
        })
    });
    let data = frames(N);
    g.bench_function("parse", |b| {
        b.iter(|| {
            let mut rest = black_box(&data[..]);
            let mut ids = 0u32;
            while let Ok(Parsed::Frame { id, body, total }) = parse_frame(rest, MAX_FRAME) {
                ids = ids.wrapping_add(id);
                black_box(body);
                rest = &rest[total..];
            }
            ids
        })
    });
    g.bench_function("parse_decode", |b| {
        b.iter(|| {
            let mut rest = black_box(&data[..]);
            while let Ok(Parsed::Frame { body, total, .. }) = parse_frame(rest, MAX_FRAME) {
                black_box(borsh::from_slice::<Msg>(body).unwrap());
                rest = &rest[total..];
            }
        })
    });
    g.finish();
}

fn pool_take_return(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool");
    g.throughput(Throughput::Elements(1));
    let p = pool();
    drop(p.take(512));
    drop(p.take(SEGMENT));
    g.bench_function("take_return_512", |b| {
        b.iter(|| drop(black_box(p.take(512))))
    });
    g.bench_function("take_return_16k", |b| {
        b.iter(|| drop(black_box(p.take(SEGMENT))))
    });
    // The fallback when a class has nothing retained: a zeroed allocation and a free.
    let none = BufferPool::new(PoolConfig {
        keep_per_class: 0,
        ..PoolConfig::default()
    });
    g.bench_function("allocate_free_16k_unpooled", |b| {
        b.iter(|| drop(black_box(none.take(SEGMENT))))
    });
    g.finish();
}

fn read_buffer(c: &mut Criterion) {
    let mut g = c.benchmark_group("read_buffer");
    // Steady state: 4 KiB reads of whole frames, all consumed (the block is kept).
    let chunk = frames(4096 / FRAME);
    g.throughput(Throughput::Bytes(chunk.len() as u64));
    let mut rb = ReadBuffer::new(pool(), 4096, 4096);
    g.bench_function("read_consume_4k", |b| {
        b.iter(|| {
            let spare = rb.spare(512);
            let n = chunk.len().min(spare.len());
            spare[..n].copy_from_slice(&chunk[..n]);
            rb.commit(n);
            let len = rb.len();
            black_box(rb.data());
            rb.consume(len);
        })
    });
    // Growth: one 1 MiB frame arriving in 64 KiB reads into an empty 4 KiB-class buffer.
    const BIG: usize = 1 << 20;
    let mut big = vec![0u8; BIG];
    big[..4].copy_from_slice(&((BIG - 4) as u32).to_le_bytes());
    g.throughput(Throughput::Bytes(BIG as u64));
    let p = pool();
    g.bench_function("grow_to_1mib_frame", |b| {
        b.iter_batched(
            || ReadBuffer::new(p.clone(), 4096, 4096),
            |mut rb| {
                let mut off = 0;
                while off < BIG {
                    let spare = rb.spare(512);
                    let n = spare.len().min(64 << 10).min(BIG - off);
                    spare[..n].copy_from_slice(&big[off..off + n]);
                    rb.commit(n);
                    off += n;
                    if rb.len() >= 4 {
                        rb.reserve_total(BIG);
                    }
                }
                assert_eq!(rb.len(), BIG);
                rb.consume(BIG);
                rb.shrink_if_idle();
                rb
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn segment(c: &mut Criterion) {
    let mut g = c.benchmark_group("segment");
    const N: usize = 1 << 15; // 32768 frames = 1.1 MiB, 72 segments
    g.throughput(Throughput::Elements(N as u64));
    let p = pool();
    let mut q = SegmentQueue::new(p.clone(), SEGMENT);
    // Fill: frames into segments (segments come back from the pool after the first round).
    g.bench_function("fill_frames", |b| {
        b.iter(|| {
            for _ in 0..N {
                encode_frame(&mut q, black_box(&MSG), MAX_FRAME).unwrap();
            }
            q.clear();
        })
    });
    // Vectored flush: 64 slices per write into memory (a stand-in for the kernel's copy),
    // advancing by what was written, until the queue is drained.
    let mut sink: Vec<u8> = Vec::with_capacity(2 << 20);
    g.bench_function("fill_and_flush_vectored", |b| {
        b.iter(|| {
            for _ in 0..N {
                encode_frame(&mut q, black_box(&MSG), MAX_FRAME).unwrap();
            }
            while !q.is_empty() {
                let mut slices = [IoSlice::new(&[]); 64];
                let n = q.io_slices(&mut slices);
                sink.clear();
                let written = sink.write_vectored(&slices[..n]).unwrap();
                q.advance(written);
            }
            black_box(&sink);
        })
    });
    g.finish();
}

const CIPHERS: [(Cipher, &str); 2] = [
    (Cipher::Aes128Gcm, "aes128gcm"),
    (Cipher::ChaCha20Poly1305, "chacha20poly1305"),
];
/// Record payloads: one 36-byte frame, and full records of 4 KiB and 16 KiB of frames (the
/// session driver packs queued frames into records of exactly `max_record` bytes, default
/// 16 KiB, splitting a frame at the boundary).
const PAYLOADS: [usize; 3] = [FRAME, 4 << 10, 16 << 10];
const RECORD_KEY: [u8; 32] = [0x42; 32];
const RECORD_NONCE: [u8; 12] = [0x24; 12];

/// `n` bytes of back-to-back frames (the last one cut at `n`, as in a full record).
fn record_payload(n: usize) -> Vec<u8> {
    let mut p = frames(n.div_ceil(FRAME));
    p.truncate(n);
    p
}

/// A record buffer holding `payload` where `Sealer::seal` expects it, with room for the tag.
fn record_buf(payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; payload.len() + RECORD_OVERHEAD];
    b[RECORD_PAYLOAD_AT..RECORD_PAYLOAD_AT + payload.len()].copy_from_slice(payload);
    b
}

fn record(c: &mut Criterion) {
    let mut g = c.benchmark_group("record");
    for (cipher, cname) in CIPHERS {
        for n in PAYLOADS {
            let payload = record_payload(n);
            g.throughput(Throughput::Bytes(n as u64));

            // Seal: in place, one record per iteration (the counter advances as in a session).
            let mut sealer = Sealer::new(cipher, &RECORD_KEY, &RECORD_NONCE);
            let mut buf = record_buf(&payload);
            g.bench_with_input(BenchmarkId::new(format!("seal_{cname}"), n), &n, |b, &n| {
                b.iter(|| black_box(sealer.seal(black_box(&mut buf), n).expect("seal")))
            });

            // Open: every timed open is of a genuine record, in counter order. A batch of
            // records sealed once (counters 0..batch) is copied into working buffers (open is
            // in place) and opened by a fresh Opener (counter 0); copies and the Opener's setup
            // are outside the timing. Batches stay within ≈ 256 KiB, so the records are in
            // cache as after a socket read.
            let batch = ((256 << 10) / (n + RECORD_OVERHEAD)).clamp(8, 1024);
            let mut s = Sealer::new(cipher, &RECORD_KEY, &RECORD_NONCE);
            let sealed: Vec<Vec<u8>> = (0..batch)
                .map(|_| {
                    let mut r = record_buf(&payload);
                    assert_eq!(s.seal(&mut r, n).expect("seal"), r.len());
                    r
                })
                .collect();
            let mut work = sealed.clone();
            let mut check = Opener::new(cipher, &RECORD_KEY, &RECORD_NONCE);
            for w in &mut work {
                let range = check.open(w).expect("a sealed record opens");
                assert_eq!(&w[range], &payload[..], "{cname}: payload round trip");
            }
            g.bench_with_input(BenchmarkId::new(format!("open_{cname}"), n), &n, |b, &n| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let k = left.min(batch as u64) as usize;
                        for (w, s) in work[..k].iter_mut().zip(&sealed) {
                            w.copy_from_slice(s);
                        }
                        let mut opener = Opener::new(cipher, &RECORD_KEY, &RECORD_NONCE);
                        let t = Instant::now();
                        for w in &mut work[..k] {
                            let range = opener
                                .open(black_box(w))
                                .expect("a genuinely sealed record must open");
                            assert_eq!(range.len(), n);
                            black_box(range);
                        }
                        total += t.elapsed();
                        left -= k as u64;
                    }
                    total
                })
            });
        }
    }
    g.finish();
}

/// X25519 operations per iteration (read from hpke 0.15.1, `src/kem/dhkem.rs`, and
/// x25519-dalek 3.0.0). hpke's `encap` draws the ephemeral key with `gen_keypair_with_rng`
/// (→ `derive_keypair` → `sk_to_pk`: a base-point multiplication), does one DH, then calls
/// `sk_to_pk(sk_eph)` *again* to serialize `enc`; `decap` does one DH and recomputes the
/// recipient's public key with `sk_to_pk(sk_recip)` for the KEM context (`Auth` mode adds one
/// DH on each side). So, in Base mode:
///
/// * `raw_hpke_pair` = setup_sender (1 DH + 2 base mults) + setup_receiver (1 DH + 1 base
///   mult) = **5 X25519 operations** (2 DH + 3 base-point multiplications; only one of the
///   three base mults is essential, the ephemeral key generation).
/// * `laxnet_pure` (laxnet's own DHKEM, RFC 9180 §4.1, no recomputed public keys):
///   `client_hello`: ephemeral key (1 base mult); `server_respond`: ephemeral key (1 base
///   mult), decapsulation of the client's key (1 DH) and encapsulation to the client's
///   ephemeral key (1 DH); `client_finish`: encapsulation to the server's static key (1 DH)
///   and decapsulation of the server's ephemeral key (1 DH); `server_finish`: 0. **6 X25519
///   operations** (4 DH + 2 base-point multiplications, 3 per side): the minimum for server
///   authentication (one DH with the static key on each side) plus forward secrecy (one
///   ephemeral-ephemeral DH on each side). Until 2026-11-26 (hpke's
///   `setup_sender`/`setup_receiver` twice, a separate client ephemeral) it was 11 (4 DH + 7
///   base mults).
/// * `laxnet_pure_client_auth`: 6 per connect as well: `AuthEncap`/`AuthDecap` add one DH on
///   each side, but it is the static-static DH, the same for every connect of that client and
///   server, so a service computes it once (`HandshakeSetup`; a server for each key of its
///   allow-list). `laxnet_pure_client_auth_unprepared` does it in every iteration: 8.
/// * The pure handshakes run with the setup done once (what a service pays per connect); for
///   an anonymous client the setup is only mapping the pinned key's point.
///
/// Both use x25519-dalek's/curve25519-dalek's `precomputed-tables` (hpke depends on it without
/// default features), so a base-point multiplication is a table lookup (`x25519_sk_to_pk`;
/// much slower without the tables). hpke's DH is the Montgomery ladder (`x25519_dh`);
/// laxnet's (`laxnet_x25519_dh`) maps the peer's point to the Edwards form and multiplies on
/// curve25519-dalek's vector backend (AVX2, or AVX-512 IFMA in builds that compile it) where
/// there is one: faster alone, and faster still in the handshake, which maps each peer point
/// once and converts each side's results with one batched inversion (`src/crypto/x25519.rs`).
/// The figures are in docs/performance.md ("Records and handshake").
fn handshake(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Elements(1));

    let server = KeyPair::from_seed(&[1; 32]);
    let pinned = server.public();
    let client = KeyPair::from_seed(&[3; 32]);
    let mut crng = ChaCha20Rng::seed_from_u64(1);
    let mut srng = ChaCha20Rng::seed_from_u64(2);
    // Per connect, with what a service computes once (`HandshakeSetup`) done once.
    for (name, identity) in [
        ("laxnet_pure", None),
        ("laxnet_pure_client_auth", Some(&client)),
    ] {
        let setup = HandshakeSetup::new(&server, &pinned, identity);
        g.bench_function(name, |b| {
            b.iter(|| {
                let (ck, sk) = setup
                    .run(&mut crng, &mut srng, Cipher::ChaCha20Poly1305)
                    .expect("handshake");
                assert_eq!(ck, sk, "both sides derive the same keys");
                black_box(ck)
            })
        });
    }
    // The same with the setup in every iteration (as before the setup existed): the
    // static-static DH on each side.
    g.bench_function("laxnet_pure_client_auth_unprepared", |b| {
        b.iter(|| {
            let (ck, sk) = pure_handshake(
                &mut crng,
                &mut srng,
                Cipher::ChaCha20Poly1305,
                &server,
                &pinned,
                Some(&client),
            )
            .expect("handshake");
            assert_eq!(ck, sk, "both sides derive the same keys");
            black_box(ck)
        })
    });

    // Exactly what shared/baselines/src/bin/aead.rs times as "handshake": hpke 0.15.1,
    // X25519HkdfSha256 + HkdfSha256, Base mode, a fixed recipient key, a long-lived RNG.
    use hpke::aead::ChaCha20Poly1305;
    use hpke::kdf::HkdfSha256;
    use hpke::kem::X25519HkdfSha256 as K;
    use hpke::{OpModeR, OpModeS};
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let (sk_r, pk_r) = K::gen_keypair_with_rng(&mut rng);
    let info = b"baseline";
    g.bench_function("raw_hpke_pair", |b| {
        b.iter(|| {
            let (enc, s) = hpke::setup_sender_with_rng::<ChaCha20Poly1305, HkdfSha256, K>(
                &OpModeS::Base,
                &pk_r,
                info,
                &mut rng,
            )
            .expect("setup_sender");
            let r = hpke::setup_receiver::<ChaCha20Poly1305, HkdfSha256, K>(
                &OpModeR::Base,
                &sk_r,
                &enc,
                info,
            )
            .expect("setup_receiver");
            black_box((s, r))
        })
    });
    // The halves and one base-point multiplication, to price the operations counted above.
    g.bench_function("raw_hpke_sender", |b| {
        b.iter(|| {
            black_box(
                hpke::setup_sender_with_rng::<ChaCha20Poly1305, HkdfSha256, K>(
                    &OpModeS::Base,
                    &pk_r,
                    info,
                    &mut rng,
                )
                .expect("setup_sender"),
            )
        })
    });
    let (enc, _) = hpke::setup_sender_with_rng::<ChaCha20Poly1305, HkdfSha256, K>(
        &OpModeS::Base,
        &pk_r,
        info,
        &mut rng,
    )
    .expect("setup_sender");
    g.bench_function("raw_hpke_receiver", |b| {
        b.iter(|| {
            black_box(
                hpke::setup_receiver::<ChaCha20Poly1305, HkdfSha256, K>(
                    &OpModeR::Base,
                    &sk_r,
                    black_box(&enc),
                    info,
                )
                .expect("setup_receiver"),
            )
        })
    });
    g.bench_function("x25519_sk_to_pk", |b| {
        b.iter(|| black_box(K::sk_to_pk(black_box(&sk_r))))
    });
    let secret = x25519_dalek::StaticSecret::random_from_rng(&mut rng);
    let peer =
        x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::random_from_rng(&mut rng));
    g.bench_function("x25519_dh", |b| {
        b.iter(|| black_box(black_box(&secret).diffie_hellman(black_box(&peer))))
    });
    let (secret, peer) = (secret.to_bytes(), peer.to_bytes());
    assert_eq!(
        laxnet::bench_api::x25519_dh(&secret, &peer),
        x25519_dalek::x25519(secret, peer),
        "the same function"
    );
    g.bench_function("laxnet_x25519_dh", |b| {
        b.iter(|| {
            black_box(laxnet::bench_api::x25519_dh(
                black_box(&secret),
                black_box(&peer),
            ))
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    message,
    frame,
    pool_take_return,
    read_buffer,
    segment,
    record,
    handshake
);
criterion_main!(benches);
