//! The baselines every laxnet figure is compared with, measured in the same process: what a
//! user would write instead of laxnet (ports of `shared/baselines`, the project's baseline
//! programs).
//!
//! * one-way: tokio-util `Framed` + `LengthDelimitedCodec` + `borsh::to_vec`, flushing every
//!   64 messages ([`framed_sender`], [`framed_receiver`]), and the hand-batched bound: frames
//!   into one 64 KiB buffer and `write_all`, the reader parsing in place from 256 KiB reads
//!   ([`batched_sender`], [`batched_receiver`], [`batched_receiver_materialized`]);
//! * ping-pong: raw `read_exact`/`write_all` ([`raw_echo_server`], [`raw_pinger_client`]);
//! * handshakes: the raw HPKE setup pair ([`raw_hpke_rate`]) and raw tokio connects, bare and
//!   with that pair as a one-round-trip handshake ([`raw_connect_rate`]).
//!
//! The message every figure sends, [`Msg`], is defined here rather than in a module of its
//! own: rustc gives each module its own codegen unit, and its derived borsh code is inlined
//! into the baselines' loops only when it shares theirs. In another module the hand-batched
//! sender calls it out of line and the bound it sets drops by about a third, which would move
//! every ratio against it (the hot loops of `examples/perf.rs`, one module, had it inline).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use borsh::{BorshDeserialize, BorshSerialize};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::cli::Opts;
use crate::oneway::share;
use crate::pair::{Done, cpu_time, run_pair, tcp_accept, tcp_connect};

// ------------------------------------------------------------------------------------------
// The message (identical to shared/baselines: 28 bytes of borsh).
// ------------------------------------------------------------------------------------------

#[derive(BorshSerialize, BorshDeserialize, Debug, Clone, Copy, PartialEq)]
pub(crate) struct Msg {
    pub(crate) id: u32,
    pub(crate) seq: u64,
    pub(crate) payload: [u8; 16],
}
laxnet::message!(Msg = 7);

/// Bytes of one [`Msg`] in borsh.
pub(crate) const MSG_BORSH_LEN: usize = 28;
/// A baseline frame: 4-byte length prefix + the message.
pub(crate) const FRAME_LEN: usize = MSG_BORSH_LEN + 4;

impl Msg {
    pub(crate) fn new(id: u32, seq: u64) -> Msg {
        Msg {
            id,
            seq,
            payload: [0xAB; 16],
        }
    }
}

// ------------------------------------------------------------------------------------------
// One-way.
// ------------------------------------------------------------------------------------------

/// A one-way receiver: reads one connection to its end, counting into [`Done`].
pub(crate) type RawReceiver = fn(TcpStream, Arc<Done>) -> BoxFuture<'static, ()>;
/// A one-way sender: sends seqs `start..end` on one connection, then closes it.
pub(crate) type RawSender = fn(TcpStream, (u64, u64)) -> BoxFuture<'static, ()>;

pub(crate) async fn raw_oneway_server(
    tx: oneshot::Sender<SocketAddr>,
    done: Arc<Done>,
    conns: usize,
    receiver: RawReceiver,
) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    tx.send(l.local_addr().expect("addr")).expect("send addr");
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let s = tcp_accept(&l).await;
        tasks.push(tokio::spawn(receiver(s, done.clone())));
    }
    for t in tasks {
        t.await.expect("receiver");
    }
}

pub(crate) async fn raw_oneway_client(
    addr: SocketAddr,
    done: Arc<Done>,
    total: u64,
    conns: usize,
    sender: RawSender,
) -> Duration {
    let mut socks = Vec::new();
    for _ in 0..conns {
        socks.push(tcp_connect(addr).await);
    }
    let start = Instant::now();
    let tasks: Vec<_> = socks
        .into_iter()
        .enumerate()
        .map(|(c, s)| tokio::spawn(sender(s, share(total, conns, c))))
        .collect();
    for t in tasks {
        t.await.expect("sender");
    }
    done.wait().await - start
}

pub(crate) fn framed_sender(s: TcpStream, (start, end): (u64, u64)) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let mut f = Framed::new(s, LengthDelimitedCodec::new());
        for seq in start..end {
            let bytes = borsh::to_vec(&Msg::new(7, seq)).expect("encode");
            f.feed(Bytes::from(bytes)).await.expect("feed");
            if seq % 64 == 63 {
                SinkExt::<Bytes>::flush(&mut f).await.expect("flush");
            }
        }
        SinkExt::<Bytes>::close(&mut f).await.expect("close");
    })
}

pub(crate) fn framed_receiver(s: TcpStream, done: Arc<Done>) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let mut f = Framed::new(s, LengthDelimitedCodec::new());
        let (mut n, mut sum) = (0u64, 0u64);
        while let Some(frame) = f.next().await {
            let m: Msg = borsh::from_slice(&frame.expect("frame")).expect("decode");
            sum = sum.wrapping_add(m.seq);
            n += 1;
            if n % 4096 == 0 {
                done.add(n, sum);
                (n, sum) = (0, 0);
            }
        }
        done.add(n, sum);
    })
}

const BATCH_BYTES: usize = 64 << 10;

pub(crate) fn batched_sender(mut s: TcpStream, (start, end): (u64, u64)) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let mut buf = BytesMut::with_capacity(BATCH_BYTES + 64);
        for seq in start..end {
            buf.put_u32_le(MSG_BORSH_LEN as u32);
            Msg::new(7, seq)
                .serialize(&mut (&mut buf).writer())
                .expect("encode");
            if buf.len() >= BATCH_BYTES {
                s.write_all(&buf).await.expect("write");
                buf.clear();
            }
        }
        if !buf.is_empty() {
            s.write_all(&buf).await.expect("write");
        }
        s.shutdown().await.expect("shutdown");
    })
}

pub(crate) fn batched_receiver(s: TcpStream, done: Arc<Done>) -> BoxFuture<'static, ()> {
    Box::pin(batched_receive::<false>(s, done))
}

/// The same, but every decoded message is materialized (`black_box(&msg)`), as it must be for
/// any receive API that hands it to user code: without that the compiler drops the unused
/// payload and most of the borsh decode.
pub(crate) fn batched_receiver_materialized(
    s: TcpStream,
    done: Arc<Done>,
) -> BoxFuture<'static, ()> {
    Box::pin(batched_receive::<true>(s, done))
}

async fn batched_receive<const MATERIALIZE: bool>(mut s: TcpStream, done: Arc<Done>) {
    {
        let mut buf = BytesMut::with_capacity(256 << 10);
        loop {
            if buf.capacity() - buf.len() < (64 << 10) {
                buf.reserve(256 << 10);
            }
            if s.read_buf(&mut buf).await.expect("read") == 0 {
                break;
            }
            let (mut n, mut sum) = (0u64, 0u64);
            while buf.len() >= 4 {
                let len = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
                if buf.len() < 4 + len {
                    break;
                }
                let m: Msg = borsh::from_slice(&buf[4..4 + len]).expect("decode");
                if MATERIALIZE {
                    std::hint::black_box(&m);
                }
                sum = sum.wrapping_add(m.seq);
                n += 1;
                buf.advance(4 + len);
            }
            done.add(n, sum);
        }
    }
}

// ------------------------------------------------------------------------------------------
// Ping-pong.
// ------------------------------------------------------------------------------------------

pub(crate) async fn raw_echo_server(tx: oneshot::Sender<SocketAddr>, conns: usize) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    tx.send(l.local_addr().expect("addr")).expect("send addr");
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let mut s = tcp_accept(&l).await;
        tasks.push(tokio::spawn(async move {
            let mut b = [0u8; FRAME_LEN];
            while s.read_exact(&mut b).await.is_ok() {
                s.write_all(&b).await.expect("write");
            }
        }));
    }
    for t in tasks {
        t.await.expect("echo");
    }
}

pub(crate) async fn raw_pinger_client(
    addr: SocketAddr,
    conns: usize,
    rts: u64,
) -> (Duration, Vec<u32>) {
    let mut socks = Vec::new();
    for _ in 0..conns {
        socks.push(tcp_connect(addr).await);
    }
    let start = Instant::now();
    let tasks: Vec<_> = socks
        .into_iter()
        .enumerate()
        .map(|(c, mut s)| {
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(rts as usize);
                let mut out = [0u8; FRAME_LEN];
                let mut inb = [0u8; FRAME_LEN];
                for seq in 0..rts {
                    let t = Instant::now();
                    out[..4].copy_from_slice(&(MSG_BORSH_LEN as u32).to_le_bytes());
                    Msg::new(c as u32, seq)
                        .serialize(&mut &mut out[4..])
                        .expect("encode");
                    s.write_all(&out).await.expect("write");
                    s.read_exact(&mut inb).await.expect("read");
                    let m: Msg = borsh::from_slice(&inb[4..]).expect("decode");
                    assert_eq!(m.seq, seq);
                    samples.push(t.elapsed().as_nanos().min(u32::MAX as u128) as u32);
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await.expect("pinger"));
    }
    (start.elapsed(), samples)
}

// ------------------------------------------------------------------------------------------
// Handshakes.
// ------------------------------------------------------------------------------------------

/// The raw HPKE bound of `shared/baselines/src/bin/aead.rs` ("handshake"): `pairs` ×
/// (`setup_sender_with_rng` + `setup_receiver`), hpke 0.15.1, X25519HkdfSha256 + HkdfSha256,
/// Base mode, on the calling thread (no runtime is alive meanwhile). Returns pairs per second
/// by wall clock (the baseline's figure) and by process CPU time (one core's rate).
pub(crate) fn raw_hpke_rate(pairs: u64) -> (f64, f64) {
    use hpke::aead::ChaCha20Poly1305;
    use hpke::kdf::HkdfSha256;
    use hpke::kem::X25519HkdfSha256 as K;
    use hpke::{Kem as _, OpModeR, OpModeS};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let (sk, pk) = K::gen_keypair_with_rng(&mut rng);
    let info = b"baseline";
    let cpu0 = cpu_time();
    let t = Instant::now();
    for _ in 0..pairs {
        let (enc, s) = hpke::setup_sender_with_rng::<ChaCha20Poly1305, HkdfSha256, K>(
            &OpModeS::Base,
            &pk,
            info,
            &mut rng,
        )
        .expect("setup_sender");
        let r = hpke::setup_receiver::<ChaCha20Poly1305, HkdfSha256, K>(
            &OpModeR::Base,
            &sk,
            &enc,
            info,
        )
        .expect("setup_receiver");
        std::hint::black_box((s, r));
    }
    let wall = t.elapsed().as_secs_f64();
    let cpu = (cpu_time() - cpu0).as_secs_f64();
    (pairs as f64 / wall, pairs as f64 / cpu)
}

/// The same-run floor for `--handshakes`: what a user would write instead of a laxnet connect.
/// Tokio `TcpStream` connect/accept (TCP_NODELAY, a task per accepted connection), then both
/// ends close; with `hpke`, the raw HPKE pair runs over it as a one-round-trip handshake: the
/// client sends `enc` (`setup_sender_with_rng`), the server runs `setup_receiver` and answers
/// with 16 bytes exported from its context, which the client checks (it proves the server
/// derived the key). No forward secrecy, no replay protection, no session: the least a
/// handshake over a fresh TCP connection can do. Returns (connects/s by wall clock, process
/// CPU ns per connect, both ends).
pub(crate) fn raw_connect_rate(o: &Opts, n: u64, hpke: bool) -> (f64, f64) {
    use hpke::aead::ChaCha20Poly1305;
    use hpke::kdf::HkdfSha256;
    use hpke::kem::X25519HkdfSha256 as K;
    use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    type Enc = <K as hpke::Kem>::EncappedKey;
    const INFO: &[u8] = b"baseline";

    let (sk, pk) = K::gen_keypair_with_rng(&mut ChaCha20Rng::seed_from_u64(42));
    let cpu0 = cpu_time();
    let t = Instant::now();
    run_pair(
        o.layout,
        move |tx| async move {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(l.local_addr().expect("address"))
                .expect("send addr");
            let sk = Arc::new(sk);
            let mut conns = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let mut s = tcp_accept(&l).await;
                let sk = sk.clone();
                conns.push(tokio::spawn(async move {
                    if hpke {
                        let mut enc = [0u8; 32];
                        s.read_exact(&mut enc).await.expect("enc");
                        let enc = Enc::from_bytes(&enc).expect("enc");
                        let ctx = hpke::setup_receiver::<ChaCha20Poly1305, HkdfSha256, K>(
                            &OpModeR::Base,
                            &sk,
                            &enc,
                            INFO,
                        )
                        .expect("setup_receiver");
                        let mut confirm = [0u8; 16];
                        ctx.export(b"confirm", &mut confirm).expect("export");
                        s.write_all(&confirm).await.expect("confirm");
                    }
                    // Until the client closes.
                    let _ = s.read(&mut [0u8; 1]).await;
                }));
            }
            for c in conns {
                c.await.expect("connection task");
            }
        },
        move |addr| async move {
            let mut rng = ChaCha20Rng::seed_from_u64(43);
            for _ in 0..n {
                let mut s = tcp_connect(addr).await;
                if hpke {
                    let (enc, ctx) =
                        hpke::setup_sender_with_rng::<ChaCha20Poly1305, HkdfSha256, K>(
                            &OpModeS::Base,
                            &pk,
                            INFO,
                            &mut rng,
                        )
                        .expect("setup_sender");
                    s.write_all(&enc.to_bytes()).await.expect("enc");
                    let (mut got, mut want) = ([0u8; 16], [0u8; 16]);
                    s.read_exact(&mut got).await.expect("confirm");
                    ctx.export(b"confirm", &mut want).expect("export");
                    assert_eq!(got, want, "the server derived the same key");
                }
            }
        },
    );
    let wall = t.elapsed().as_secs_f64();
    let cpu_ns = (cpu_time() - cpu0).as_secs_f64() * 1e9 / n as f64;
    (n as f64 / wall, cpu_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_28_bytes_of_borsh() {
        let bytes = borsh::to_vec(&Msg::new(7, u64::MAX)).unwrap();
        assert_eq!(bytes.len(), MSG_BORSH_LEN);
        assert_eq!(
            borsh::from_slice::<Msg>(&bytes).unwrap(),
            Msg::new(7, u64::MAX)
        );
    }
}
