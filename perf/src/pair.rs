//! What every loopback measurement is built from: a server and a client run in the chosen
//! [`Layout`] ([`run_pair`]), TCP helpers for the baselines, the receiver's finish line
//! ([`Done`]) and the process's CPU time ([`cpu_time`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};

use crate::cli::Layout;

/// Runs `server` (which must send its bound address on the oneshot and return when its work is
/// done) and `client` (given that address) in `layout`; returns the client's result.
pub(crate) fn run_pair<S, SF, C, CF, R>(layout: Layout, server: S, client: C) -> R
where
    S: FnOnce(oneshot::Sender<SocketAddr>) -> SF + Send + 'static,
    SF: Future<Output = ()> + Send + 'static,
    C: FnOnce(SocketAddr) -> CF + Send + 'static,
    CF: Future<Output = R> + Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    match layout {
        Layout::Mt2 => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let s = tokio::spawn(server(tx));
                let addr = rx.await.expect("server address");
                let r = tokio::spawn(client(addr)).await.expect("client task");
                s.await.expect("server task");
                r
            })
        }
        Layout::TwoCt => {
            let s = std::thread::spawn(move || {
                current_thread().block_on(server(tx));
            });
            let c = std::thread::spawn(move || {
                current_thread().block_on(async move {
                    let addr = rx.await.expect("server address");
                    client(addr).await
                })
            });
            let r = c.join().expect("client thread");
            s.join().expect("server thread");
            r
        }
        Layout::OneCt => current_thread().block_on(async move {
            let s = tokio::spawn(server(tx));
            let addr = rx.await.expect("server address");
            let r = tokio::spawn(client(addr)).await.expect("client task");
            s.await.expect("server task");
            r
        }),
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

pub(crate) async fn tcp_connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

pub(crate) async fn tcp_accept(l: &TcpListener) -> TcpStream {
    let (s, _) = l.accept().await.expect("accept");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Where the receiver records that the last message arrived.
pub(crate) struct Done {
    count: AtomicU64,
    sum: AtomicU64,
    target: u64,
    at: Mutex<Option<Instant>>,
    /// Notified once `target` messages were counted.
    pub(crate) notify: Notify,
}

impl Done {
    pub(crate) fn new(target: u64) -> Arc<Done> {
        Arc::new(Done {
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            target,
            at: Mutex::new(None),
            notify: Notify::new(),
        })
    }

    /// Counts `n` received messages whose seqs add up to `sum`.
    pub(crate) fn add(&self, n: u64, sum: u64) {
        self.sum.fetch_add(sum, Relaxed);
        if self.count.fetch_add(n, Relaxed) + n == self.target {
            *self.at.lock().expect("lock") = Some(Instant::now());
            self.notify.notify_one();
        }
    }

    /// Waits for the last message; checks that seqs `0..target` arrived (by their sum) and
    /// returns when the last one did.
    pub(crate) async fn wait(&self) -> Instant {
        self.notify.notified().await;
        let total = self.target;
        assert_eq!(self.sum.load(Relaxed), total * (total - 1) / 2, "seq sum");
        self.at.lock().expect("lock").expect("finish time")
    }
}

/// User + system CPU time of the whole process so far.
pub(crate) fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
