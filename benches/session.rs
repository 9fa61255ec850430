#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // benchmarks may use Tokio and real time directly
#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

//! The per-message CPU cost of a session through the public API, without the kernel: a
//! [`Runtime`] whose `connect` hands out an in-memory stream.
//!
//! * `session/receive`: the stream produces 28-byte borsh messages (36-byte frames) as fast as
//!   the session reads them; time per message until the subscription callback has seen it
//!   (driver read + frame parse + registry lookup + borsh decode + callback).
//! * `session/send`: `SessionRef::send` of the same message into a session whose stream
//!   swallows every byte; time per message until the stream has taken it (send + encode +
//!   queue swap + vectored flush).
//!
//! Run: `cargo bench --bench session` (single-threaded Tokio runtime; no sockets).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use borsh::{BorshDeserialize, BorshSerialize};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use laxnet::runtime::{BoxFuture, BoxStream, Listener};
use laxnet::{Config, Protocol, Received, Runtime, SendError, Service, TokioRuntime, Topic};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

#[derive(BorshSerialize, BorshDeserialize, Debug, Clone, Copy)]
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
/// 4-byte length + 4-byte id + 28 bytes of borsh.
const FRAME: usize = 36;
/// Messages per timed batch.
const BATCH: u64 = 100_000;

/// What the benchmark and the in-memory stream share.
#[derive(Default)]
struct Pipe {
    /// Messages the stream may still produce.
    to_produce: AtomicU64,
    /// Bytes the stream has swallowed.
    swallowed: AtomicU64,
    reader: Mutex<Option<Waker>>,
}

impl Pipe {
    fn produce(&self, n: u64) {
        self.to_produce.fetch_add(n, Relaxed);
        if let Some(w) = self.reader.lock().unwrap().take() {
            w.wake();
        }
    }
}

struct MemStream {
    pipe: Arc<Pipe>,
    /// 64 KiB of ready-made frames.
    frames: Arc<Vec<u8>>,
}

impl AsyncRead for MemStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let pipe = &self.pipe;
        let mut avail = pipe.to_produce.load(Relaxed);
        if avail == 0 {
            *pipe.reader.lock().unwrap() = Some(cx.waker().clone());
            // Re-check after registering (a `produce` may have raced).
            avail = pipe.to_produce.load(Relaxed);
            if avail == 0 {
                return Poll::Pending;
            }
        }
        let n = ((buf.remaining() / FRAME) as u64)
            .min(avail)
            .min((self.frames.len() / FRAME) as u64);
        buf.put_slice(&self.frames[..n as usize * FRAME]);
        pipe.to_produce.fetch_sub(n, Relaxed);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for MemStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.pipe.swallowed.fetch_add(buf.len() as u64, Relaxed);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let n: usize = bufs.iter().map(|b| b.len()).sum();
        self.pipe.swallowed.fetch_add(n as u64, Relaxed);
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Tokio's clock and spawner, with `connect` handing out a [`MemStream`] on `pipe`.
struct MemRuntime {
    inner: TokioRuntime,
    pipe: Arc<Pipe>,
    frames: Arc<Vec<u8>>,
}

impl Runtime for MemRuntime {
    fn name(&self) -> &'static str {
        "mem"
    }
    fn bind<'a>(&'a self, _: &'a str, _: u32) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        Box::pin(async { Err(io::ErrorKind::Unsupported.into()) })
    }
    fn connect<'a>(&'a self, _: &'a str) -> BoxFuture<'a, io::Result<(BoxStream, SocketAddr)>> {
        let s = MemStream {
            pipe: self.pipe.clone(),
            frames: self.frames.clone(),
        };
        Box::pin(async move { Ok((Box::new(s) as BoxStream, ([127, 0, 0, 1], 1).into())) })
    }
    fn now(&self) -> laxnet::Instant {
        self.inner.now()
    }
    fn sleep_until(&self, deadline: laxnet::Instant) -> BoxFuture<'static, ()> {
        self.inner.sleep_until(deadline)
    }
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self.inner.spawn(task)
    }
    fn entropy(&self) -> [u8; 32] {
        [7; 32]
    }
    fn fill_secret(&self, out: &mut [u8]) -> io::Result<()> {
        self.inner.fill_secret(out)
    }
}

fn frames() -> Arc<Vec<u8>> {
    let mut one = Vec::with_capacity(FRAME);
    one.extend_from_slice(&32u32.to_le_bytes());
    one.extend_from_slice(&7u32.to_le_bytes());
    MSG.serialize(&mut one).unwrap();
    assert_eq!(one.len(), FRAME);
    Arc::new(one.repeat((64 << 10) / FRAME))
}

fn config() -> Config {
    Config::default().with_logging(false).with_rng_seed(1)
}

fn bench_session(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pipe = Arc::new(Pipe::default());
    let (svc, session, received, notify) = rt.block_on(async {
        let svc = Service::with_runtime(
            config(),
            MemRuntime {
                inner: TokioRuntime::new(),
                pipe: pipe.clone(),
                frames: frames(),
            },
        );
        let received = Arc::new(AtomicU64::new(0));
        let notify = Arc::new(Notify::new());
        let (r, n) = (received.clone(), notify.clone());
        let target = Arc::new(AtomicU64::new(u64::MAX));
        svc.sub(
            Topic::message::<Msg>(Protocol::Bits),
            move |m: &Received<Msg>| {
                std::hint::black_box(&m.msg);
                // One writer (the session task): a plain load + store is enough.
                let v = r.load(Relaxed) + 1;
                r.store(v, Relaxed);
                if v % BATCH == 0 {
                    n.notify_one();
                }
                let _ = &target;
            },
        )
        .unwrap();
        let session = svc.connect("mem", Protocol::Bits).await.unwrap();
        (svc, session, received, notify)
    });

    let mut g = c.benchmark_group("session");
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("receive", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    pipe.produce(BATCH);
                    notify.notified().await;
                }
                t.elapsed()
            })
        })
    });
    assert_eq!(received.load(Relaxed) % BATCH, 0);

    g.bench_function("send", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    let target = pipe.swallowed.load(Relaxed) + BATCH * FRAME as u64;
                    for _ in 0..BATCH {
                        loop {
                            match session.send(&MSG) {
                                Ok(()) => break,
                                Err(SendError::QueueFull { .. }) => tokio::task::yield_now().await,
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                    while pipe.swallowed.load(Relaxed) < target {
                        tokio::task::yield_now().await;
                    }
                }
                t.elapsed()
            })
        })
    });
    g.finish();
    rt.block_on(async {
        session.close();
        tokio::time::sleep(Duration::from_millis(1)).await;
        svc.shutdown().await;
    });
}

criterion_group!(benches, bench_session);
criterion_main!(benches);
