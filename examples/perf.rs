#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // benchmarks may use Tokio and real time directly

//! laxnet performance figures over loopback, with the baselines measured in the same process.
//!
//! ```text
//! cargo run --release --example perf -- [--compare] [--json] [--conns 1,64] [--layout mt2|2xct|1ct]
//!                                       [--msgs N] [--rts N] [--reps N] [--only oneway|pingpong]
//! cargo run --release --example perf -- --idle-sessions 10000 [--json]
//! cargo run --release --example perf -- --handshakes 500 [--reps 5] [--client-auth] [--json]
//! cargo run --release --features sim --example perf -- --sim [--compare] [--json]
//! ```
//!
//! * **one-way**: a client sends `--msgs` 28-byte borsh messages through [`SessionRef::send`]
//!   (on `QueueFull` it waits in `SessionRef::ready`, or yields or sleeps with `--backoff`);
//!   the server receives them in a subscription callback.
//!   Time runs from the first send until the callback has seen the last message.
//! * **ping-pong**: one outstanding request per connection, callback-driven on both sides (the
//!   server's callback echoes, the client's callback sends the next request); p50/p99 of the
//!   round trip.
//! * `--compare` adds, in the same process and interleaved with the laxnet runs: tokio-util
//!   `Framed` + `LengthDelimitedCodec` + `borsh::to_vec` with a flush every 64 messages (the
//!   usual code), the hand-batched upper bound (frames into one 64 KiB buffer, `write_all`; the
//!   reader parses in place from 256 KiB reads), and raw `read_exact`/`write_all` ping-pong.
//!   These are ports of `shared/baselines/src/bin/small_msg.rs`.
//! * `--handshakes N`: N sequential connects (each closed at once), plaintext and encrypted,
//!   interleaved per repetition with the raw HPKE setup pair loop of `shared/baselines`
//!   (`setup_sender_with_rng` + `setup_receiver`); reports connects/s (wall clock), process CPU
//!   time per connect, and one-core encrypted connects/s (1e9 / CPU ns) ÷ raw HPKE pairs/s.
//!   Also interleaved: raw tokio connects, bare and with the raw HPKE pair as a one-round-trip
//!   handshake (the floor a hand-written encrypted connect sits on; see `raw_connect_rate`).
//!   With `--client-auth` the laxnet clients present a key the server allows (the raw
//!   baselines stay as they are).
//! * `--idle-sessions N`: opens N connections to a laxnet server and reports the user-space
//!   memory (live heap bytes, from a counting global allocator) per idle server session.
//! * `--sim` (feature `sim`): the turmoil echo workload of `shared/baselines` (10 clients x 1000
//!   round trips, 1 ms latency), on laxnet and (with `--compare`) on raw turmoil streams.
//!
//! Layouts: `mt2` = one multi-thread runtime with 2 workers holding both ends; `2xct` = two
//! current-thread runtimes on separate OS threads (server on one, client on the other);
//! `1ct` = one current-thread runtime holding both ends (one core, literally).
//! Every figure is the median of `--reps` timed repetitions after one warm-up, with
//! `[min .. max]`; `--json` prints all figures as one JSON object on the last line.

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use borsh::{BorshDeserialize, BorshSerialize};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use laxnet::{
    BITS, BITS_HPKE, Config, Encryption, KeyPair, Received, SendError, Service, SessionEvent,
    SessionRef, Topic,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

// ------------------------------------------------------------------------------------------
// Counting allocator (only counts while `COUNTING` is on, so timed runs pay one relaxed load).
// ------------------------------------------------------------------------------------------

struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates every call to `System`; the counters have no effect on the allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: AllocLayout) -> *mut u8 {
        if COUNTING.load(Relaxed) {
            LIVE_BYTES.fetch_add(l.size(), Relaxed);
            ALLOCS.fetch_add(1, Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: AllocLayout) {
        if COUNTING.load(Relaxed) {
            LIVE_BYTES.fetch_sub(l.size(), Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: AllocLayout, new: usize) -> *mut u8 {
        if COUNTING.load(Relaxed) {
            LIVE_BYTES.fetch_add(new, Relaxed);
            LIVE_BYTES.fetch_sub(l.size(), Relaxed);
            ALLOCS.fetch_add(1, Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ------------------------------------------------------------------------------------------
// The message (identical to shared/baselines: 28 bytes of borsh).
// ------------------------------------------------------------------------------------------

#[derive(BorshSerialize, BorshDeserialize, Debug, Clone, Copy, PartialEq)]
struct Msg {
    id: u32,
    seq: u64,
    payload: [u8; 16],
}
laxnet::message!(Msg = 7);

const MSG_BORSH_LEN: usize = 28;
const FRAME_LEN: usize = MSG_BORSH_LEN + 4;

impl Msg {
    fn new(id: u32, seq: u64) -> Msg {
        Msg {
            id,
            seq,
            payload: [0xAB; 16],
        }
    }
}

// ------------------------------------------------------------------------------------------
// Options, statistics, output.
// ------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Debug)]
enum Layout {
    Mt2,
    TwoCt,
    OneCt,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::Mt2 => "mt2",
            Layout::TwoCt => "2xct",
            Layout::OneCt => "1ct",
        }
    }
}

#[derive(Clone, Debug)]
struct Opts {
    compare: bool,
    json: bool,
    conns: Vec<usize>,
    layout: Layout,
    msgs: u64,
    rts: Option<u64>,
    reps: usize,
    only: Option<String>,
    idle_sessions: Option<usize>,
    sim: bool,
    read_buffer: Option<usize>,
    /// What the bulk sender does on `QueueFull`.
    backoff: Backoff,
    encrypted: bool,
    handshakes: Option<u64>,
    ciphers: bool,
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        compare: false,
        json: false,
        conns: vec![1, 64],
        layout: Layout::Mt2,
        msgs: 5_000_000,
        rts: None,
        reps: 5,
        only: None,
        idle_sessions: None,
        sim: false,
        read_buffer: None,
        backoff: Backoff::Ready,
        encrypted: false,
        handshakes: None,
        ciphers: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--compare" => o.compare = true,
            "--json" => o.json = true,
            "--sim" => o.sim = true,
            "--encrypted" => o.encrypted = true,
            "--ciphers" => o.ciphers = true,
            "--client-auth" => CLIENT_AUTH.store(true, Relaxed),
            "--handshakes" => o.handshakes = Some(val().parse().expect("--handshakes N")),
            "--conns" => {
                o.conns = val()
                    .split(',')
                    .map(|s| s.parse().expect("--conns 1,64"))
                    .collect()
            }
            "--layout" => {
                o.layout = match val().as_str() {
                    "mt2" => Layout::Mt2,
                    "2xct" => Layout::TwoCt,
                    "1ct" => Layout::OneCt,
                    other => panic!("unknown layout {other} (mt2 | 2xct | 1ct)"),
                }
            }
            "--msgs" => o.msgs = val().parse().expect("--msgs N"),
            "--rts" => o.rts = Some(val().parse().expect("--rts N")),
            "--reps" => o.reps = val().parse().expect("--reps N"),
            "--only" => o.only = Some(val()),
            "--idle-sessions" => o.idle_sessions = Some(val().parse().expect("--idle-sessions N")),
            "--backoff" => {
                o.backoff = match val().as_str() {
                    "ready" => Backoff::Ready,
                    "yield" => Backoff::Yield,
                    "sleep" => Backoff::Sleep,
                    other => panic!("unknown backoff {other} (ready | yield | sleep)"),
                }
            }
            "--read-buffer" => o.read_buffer = Some(val().parse().expect("--read-buffer BYTES")),
            "--read-buffer-max" => {
                READ_BUFFER_MAX.store(val().parse().expect("--read-buffer-max BYTES"), Relaxed)
            }
            "--send-queue-limit" => {
                SEND_QUEUE_LIMIT.store(val().parse().expect("--send-queue-limit BYTES"), Relaxed)
            }
            "-h" | "--help" => {
                println!(
                    "perf [--compare] [--json] [--encrypted] [--conns 1,64] [--layout mt2|2xct|1ct] \
                     [--msgs N] [--rts N] [--reps N] [--only oneway|pingpong] [--read-buffer BYTES] [--read-buffer-max BYTES] \
                     [--send-queue-limit BYTES] [--backoff ready|yield|sleep] | --idle-sessions N | --handshakes N [--client-auth] | --sim"
                );
                std::process::exit(0);
            }
            other => panic!("unknown argument {other} (try --help)"),
        }
    }
    o.reps = o.reps.max(1);
    o
}

#[derive(Clone, Copy, Debug)]
struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Stats {
        median,
        min: v[0],
        max: v[n - 1],
    }
}

fn human(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.2}")
    }
}

fn line(name: &str, unit: &str, s: Stats) {
    println!(
        "{name:<52} {:>9} {unit:<6} [{} .. {}]",
        human(s.median),
        human(s.min),
        human(s.max)
    );
}

/// The JSON object printed on the last line (flat keys, numbers only).
#[derive(Default)]
struct Json(Vec<(String, String)>);

impl Json {
    fn num(&mut self, k: impl Into<String>, v: f64) {
        let v = if v.is_finite() {
            format!("{v:.4}")
        } else {
            "null".into()
        };
        self.0.push((k.into(), v));
    }
    fn str(&mut self, k: impl Into<String>, v: &str) {
        self.0.push((k.into(), format!("\"{v}\"")));
    }
    fn stats(&mut self, k: &str, s: Stats) {
        self.num(k, s.median);
        self.num(format!("{k}_min"), s.min);
        self.num(format!("{k}_max"), s.max);
    }
    fn render(&self) -> String {
        let mut out = String::from("{");
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{k}\":{v}");
        }
        out.push('}');
        out
    }
}

// ------------------------------------------------------------------------------------------
// Runtimes: run a server future and a client future in the chosen layout.
// ------------------------------------------------------------------------------------------

/// Runs `server` (which must send its bound address on the oneshot and return when its work is
/// done) and `client` (given that address) in `layout`; returns the client's result.
fn run_pair<S, SF, C, CF, R>(layout: Layout, server: S, client: C) -> R
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

/// `--encrypted`: every laxnet session uses the `bits-hpke` protocol with this server key.
static ENCRYPTED: AtomicBool = AtomicBool::new(false);
/// `--read-buffer-max BYTES` (0: the default), for every laxnet service of the run.
static READ_BUFFER_MAX: AtomicUsize = AtomicUsize::new(0);
/// `--send-queue-limit`: `Config::send_queue_limit` of both ends while set (0: the default).
static SEND_QUEUE_LIMIT: AtomicUsize = AtomicUsize::new(0);
static SERVER_KEY: OnceLock<KeyPair> = OnceLock::new();
static CLIENT_KEY: OnceLock<KeyPair> = OnceLock::new();
/// `--client-auth`: encrypted laxnet clients present `client_key()`, which the server allows.
static CLIENT_AUTH: AtomicBool = AtomicBool::new(false);
/// `--ciphers`: the cipher clients propose while set (0: the default, `Cipher::preferred()`;
/// 1: ChaCha20-Poly1305; 2: AES-128-GCM).
static CIPHER: AtomicU8 = AtomicU8::new(0);

fn encrypted() -> bool {
    ENCRYPTED.load(Relaxed)
}

/// The protocol laxnet sessions use ("bits", or "bits-hpke" with `--encrypted`).
fn proto() -> &'static str {
    if encrypted() { BITS_HPKE } else { BITS }
}

fn server_key() -> &'static KeyPair {
    SERVER_KEY.get_or_init(KeyPair::generate)
}

fn client_key() -> &'static KeyPair {
    CLIENT_KEY.get_or_init(KeyPair::generate)
}

/// The client identity of `--client-auth`.
fn client_identity() -> Option<&'static KeyPair> {
    CLIENT_AUTH.load(Relaxed).then(client_key)
}

fn config(read_buffer: Option<usize>) -> Config {
    let mut c = Config::default();
    c.logging = false;
    if let Some(rb) = read_buffer {
        c.read_buffer = rb;
    }
    match READ_BUFFER_MAX.load(Relaxed) {
        0 => {}
        max => c.read_buffer_max = max,
    }
    match SEND_QUEUE_LIMIT.load(Relaxed) {
        0 => {}
        limit => c.send_queue_limit = limit,
    }
    c
}

fn server_config(read_buffer: Option<usize>) -> Config {
    let mut c = config(read_buffer);
    if encrypted() {
        let mut e = Encryption::server(server_key().clone());
        e.allowed_clients = client_identity().map(|k| vec![k.public()]);
        c.encryption = Some(e);
    }
    c
}

fn client_config(read_buffer: Option<usize>) -> Config {
    let mut c = config(read_buffer);
    if encrypted() {
        let mut e = Encryption::client(server_key().public());
        e.identity = client_identity().cloned();
        match CIPHER.load(Relaxed) {
            1 => e.cipher = laxnet::Cipher::ChaCha20Poly1305,
            2 => e.cipher = laxnet::Cipher::Aes128Gcm,
            _ => {}
        }
        c.encryption = Some(e);
    }
    c
}

async fn tcp_connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

async fn tcp_accept(l: &TcpListener) -> TcpStream {
    let (s, _) = l.accept().await.expect("accept");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Messages sent by connection `c` of `conns` out of `total`: seqs `start..end`.
fn share(total: u64, conns: usize, c: usize) -> (u64, u64) {
    let per = total / conns as u64;
    let start = per * c as u64;
    let end = if c + 1 == conns { total } else { start + per };
    (start, end)
}

/// Where the receiver records that the last message arrived.
struct Done {
    count: AtomicU64,
    sum: AtomicU64,
    target: u64,
    at: Mutex<Option<Instant>>,
    notify: Notify,
}

impl Done {
    fn new(target: u64) -> Arc<Done> {
        Arc::new(Done {
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            target,
            at: Mutex::new(None),
            notify: Notify::new(),
        })
    }

    /// Counts `n` received messages whose seqs add up to `sum`.
    fn add(&self, n: u64, sum: u64) {
        self.sum.fetch_add(sum, Relaxed);
        if self.count.fetch_add(n, Relaxed) + n == self.target {
            *self.at.lock().expect("lock") = Some(Instant::now());
            self.notify.notify_one();
        }
    }

    async fn wait(&self) -> Instant {
        self.notify.notified().await;
        let total = self.target;
        assert_eq!(self.sum.load(Relaxed), total * (total - 1) / 2, "seq sum");
        self.at.lock().expect("lock").expect("finish time")
    }
}

// ------------------------------------------------------------------------------------------
// One-way throughput.
// ------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Debug)]
enum OneWay {
    Laxnet,
    Framed,
    Batched,
    BatchedMaterialized,
}

impl OneWay {
    fn name(self) -> &'static str {
        match self {
            OneWay::Laxnet => "laxnet send -> callback",
            OneWay::Framed => "Framed+LDC+borsh::to_vec, flush/64",
            OneWay::Batched => "hand-batched 64 KiB write_all (bound)",
            OneWay::BatchedMaterialized => "hand-batched, black_box(&msg) (bound, materialized)",
        }
    }
}

/// One timed one-way run: messages per second and CPU nanoseconds (both ends, user + kernel)
/// per message (the whole run, connection setup included).
fn oneway_run(kind: OneWay, o: &Opts, conns: usize) -> (f64, f64) {
    let cpu0 = cpu_time();
    let rate = oneway_rate(kind, o, conns);
    let cpu = (cpu_time() - cpu0).as_secs_f64() * 1e9 / o.msgs as f64;
    (rate, cpu)
}

fn oneway_rate(kind: OneWay, o: &Opts, conns: usize) -> f64 {
    let total = o.msgs;
    let done = Done::new(total);
    let d2 = done.clone();
    let rb = o.read_buffer;
    let backoff = o.backoff;
    let elapsed = match kind {
        OneWay::Laxnet => run_pair(
            o.layout,
            move |tx| laxnet_oneway_server(tx, d2, total, conns, rb),
            move |addr| laxnet_oneway_client(addr, done, total, conns, rb, backoff),
        ),
        OneWay::Framed => run_pair(
            o.layout,
            move |tx| raw_oneway_server(tx, d2, conns, framed_receiver),
            move |addr| raw_oneway_client(addr, done, total, conns, framed_sender),
        ),
        OneWay::Batched => run_pair(
            o.layout,
            move |tx| raw_oneway_server(tx, d2, conns, batched_receiver),
            move |addr| raw_oneway_client(addr, done, total, conns, batched_sender),
        ),
        OneWay::BatchedMaterialized => run_pair(
            o.layout,
            move |tx| raw_oneway_server(tx, d2, conns, batched_receiver_materialized),
            move |addr| raw_oneway_client(addr, done, total, conns, batched_sender),
        ),
    };
    total as f64 / elapsed.as_secs_f64()
}

/// One session's running count on the laxnet one-way receiver. Each slot has one writer
/// (its session's task runs the callback, one message at a time), so it is kept with plain
/// relaxed loads and stores and folded into [`Done`] every [`TALLY_FLUSH`] messages and at
/// the session's last message, as the `Framed` and hand-batched receivers fold their local
/// counters: the harness costs every receiver the same, not two locked instructions per
/// message for laxnet only.
#[repr(align(128))]
#[derive(Default)]
struct Tally {
    n: AtomicU64,
    sum: AtomicU64,
    /// One past the last seq this session carries (0 until its first message).
    end: AtomicU64,
}

/// Messages between two folds of a [`Tally`] into [`Done`] (the `Framed` receiver's 4096).
const TALLY_FLUSH: u64 = 4096;
/// Tally slots, indexed by the low bits of the session id (its slot in the id table: the
/// server's sessions of one run hold distinct slots below this).
const TALLY_SLOTS: usize = 256;

async fn laxnet_oneway_server(
    tx: oneshot::Sender<SocketAddr>,
    done: Arc<Done>,
    total: u64,
    conns: usize,
    rb: Option<usize>,
) {
    assert!(conns <= TALLY_SLOTS, "at most {TALLY_SLOTS} connections");
    let server = Service::new(server_config(rb));
    let d = done.clone();
    let tallies: Arc<Vec<Tally>> = Arc::new((0..TALLY_SLOTS).map(|_| Tally::default()).collect());
    server
        .sub(Topic::message::<Msg>(proto()), move |m: &Received<Msg>| {
            // Session ids keep their id-table slot + 1 in the low 17 bits.
            let slot = (m.session.id().get() & 0x1_ffff) as usize - 1;
            let t = &tallies[slot % TALLY_SLOTS];
            let seq = m.msg.seq;
            let mut end = t.end.load(Relaxed);
            if end == 0 {
                // The first message: which sender's range this session carries.
                let c = ((seq / (total / conns as u64)) as usize).min(conns - 1);
                end = share(total, conns, c).1;
                t.end.store(end, Relaxed);
            }
            let n = t.n.load(Relaxed) + 1;
            let sum = t.sum.load(Relaxed).wrapping_add(seq);
            if n == TALLY_FLUSH || seq + 1 == end {
                d.add(n, sum);
                t.n.store(0, Relaxed);
                t.sum.store(0, Relaxed);
            } else {
                t.n.store(n, Relaxed);
                t.sum.store(sum, Relaxed);
            }
        })
        .expect("sub");
    let closed = sessions_closed(&server, conns as u64);
    let acc = server.accept("127.0.0.1:0", proto()).await.expect("accept");
    tx.send(acc.local_addr()).expect("send addr");
    // Wait until the client closed its sessions (they are flushed then).
    closed.await;
    server.shutdown().await;
}

/// Resolves once `n` sessions of `server` have closed. Event-driven (a session subscription,
/// made before the caller accepts), so nothing ticks beside the measured sessions: a 1 ms
/// `status()` poll here, which the raw baselines never paid, doubled laxnet's mt2 ping-pong
/// p99 (≈ 30–36 → 16–19 µs without it) and cost 2–10 % of its round trips.
fn sessions_closed(server: &Service, n: u64) -> impl Future<Output = ()> + use<> {
    let state = Arc::new((AtomicU64::new(0), Notify::new()));
    let s = state.clone();
    server
        .sub(Topic::sessions(proto()), move |e: &SessionEvent| {
            if matches!(e, SessionEvent::Closed { .. }) && s.0.fetch_add(1, Relaxed) + 1 == n {
                // Stores a permit if nobody waits yet.
                s.1.notify_one();
            }
        })
        .expect("sub");
    async move {
        if state.0.load(Relaxed) < n {
            state.1.notified().await;
        }
    }
}

async fn laxnet_oneway_client(
    addr: SocketAddr,
    done: Arc<Done>,
    total: u64,
    conns: usize,
    rb: Option<usize>,
    backoff: Backoff,
) -> Duration {
    let client = Service::new(client_config(rb));
    let addr = addr.to_string();
    let mut refs = Vec::new();
    for _ in 0..conns {
        refs.push(client.connect(&addr, proto()).await.expect("connect"));
    }
    let start = Instant::now();
    let tasks: Vec<_> = refs
        .iter()
        .enumerate()
        .map(|(c, s)| tokio::spawn(laxnet_sender(s.clone(), share(total, conns, c), backoff)))
        .collect();
    for t in tasks {
        t.await.expect("sender");
    }
    let end = done.wait().await;
    for s in &refs {
        s.close();
    }
    client.shutdown().await;
    end - start
}

/// What a bulk sender does when the send queue is full.
#[derive(Clone, Copy, Debug)]
enum Backoff {
    /// `SessionRef::ready().await` (the library's back-pressure; the default).
    Ready,
    /// `tokio::task::yield_now()` and retry.
    Yield,
    /// Sleep 1 ms and retry.
    Sleep,
}

/// The user code of a bulk sender: send, and on `QueueFull` let the session task drain.
async fn laxnet_sender(s: SessionRef, (start, end): (u64, u64), backoff: Backoff) {
    for seq in start..end {
        let m = Msg::new(7, seq);
        loop {
            match s.send(&m) {
                Ok(()) => break,
                Err(SendError::QueueFull { .. }) => match backoff {
                    Backoff::Ready => s.ready().await.expect("ready"),
                    Backoff::Yield => tokio::task::yield_now().await,
                    Backoff::Sleep => tokio::time::sleep(Duration::from_millis(1)).await,
                },
                Err(e) => panic!("send: {e}"),
            }
        }
    }
}

type RawReceiver = fn(TcpStream, Arc<Done>) -> futures::future::BoxFuture<'static, ()>;
type RawSender = fn(TcpStream, (u64, u64)) -> futures::future::BoxFuture<'static, ()>;

async fn raw_oneway_server(
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

async fn raw_oneway_client(
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

fn framed_sender(
    s: TcpStream,
    (start, end): (u64, u64),
) -> futures::future::BoxFuture<'static, ()> {
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

fn framed_receiver(s: TcpStream, done: Arc<Done>) -> futures::future::BoxFuture<'static, ()> {
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

fn batched_sender(
    mut s: TcpStream,
    (start, end): (u64, u64),
) -> futures::future::BoxFuture<'static, ()> {
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

fn batched_receiver(s: TcpStream, done: Arc<Done>) -> futures::future::BoxFuture<'static, ()> {
    Box::pin(batched_receive::<false>(s, done))
}

/// The same, but every decoded message is materialized (`black_box(&msg)`), as it must be for
/// any receive API that hands it to user code: without that the compiler drops the unused
/// payload and most of the borsh decode.
fn batched_receiver_materialized(
    s: TcpStream,
    done: Arc<Done>,
) -> futures::future::BoxFuture<'static, ()> {
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

#[derive(Clone, Copy, PartialEq, Debug)]
enum PingPong {
    Laxnet,
    Raw,
}

impl PingPong {
    fn name(self) -> &'static str {
        match self {
            PingPong::Laxnet => "laxnet callback ping-pong",
            PingPong::Raw => "raw tokio read_exact/write_all",
        }
    }
}

struct PingResult {
    rts_per_s: f64,
    /// Round-trip times in nanoseconds (one sample per round trip).
    samples: Vec<u32>,
}

fn rts_per_conn(o: &Opts, conns: usize) -> u64 {
    o.rts.unwrap_or(if conns == 1 { 100_000 } else { 5_000 })
}

fn pingpong_run(kind: PingPong, o: &Opts, conns: usize) -> PingResult {
    let rts = rts_per_conn(o, conns);
    let rb = o.read_buffer;
    let (elapsed, samples) = match kind {
        PingPong::Laxnet => run_pair(
            o.layout,
            move |tx| laxnet_echo_server(tx, conns, rb),
            move |addr| laxnet_pinger(addr, conns, rts, rb),
        ),
        PingPong::Raw => run_pair(
            o.layout,
            move |tx| raw_echo_server(tx, conns),
            move |addr| raw_pinger_client(addr, conns, rts),
        ),
    };
    PingResult {
        rts_per_s: (conns as u64 * rts) as f64 / elapsed.as_secs_f64(),
        samples,
    }
}

async fn laxnet_echo_server(tx: oneshot::Sender<SocketAddr>, conns: usize, rb: Option<usize>) {
    let server = Service::new(server_config(rb));
    server
        .sub(Topic::message::<Msg>(proto()), |m: &Received<Msg>| {
            m.session.send(&m.msg).expect("echo");
        })
        .expect("sub");
    let closed = sessions_closed(&server, conns as u64);
    let acc = server.accept("127.0.0.1:0", proto()).await.expect("accept");
    tx.send(acc.local_addr()).expect("send addr");
    closed.await;
    server.shutdown().await;
}

/// Per-connection client state (indexed by `Msg::id`).
struct Conn {
    sent_at: Instant,
    samples: Vec<u32>,
}

async fn laxnet_pinger(
    addr: SocketAddr,
    conns: usize,
    rts: u64,
    rb: Option<usize>,
) -> (Duration, Vec<u32>) {
    let client = Service::new(client_config(rb));
    let state: Arc<Vec<Mutex<Conn>>> = Arc::new(
        (0..conns)
            .map(|_| {
                Mutex::new(Conn {
                    sent_at: Instant::now(),
                    samples: Vec::with_capacity(rts as usize),
                })
            })
            .collect(),
    );
    let finished = Done::new(conns as u64 * rts);
    let (st, fin) = (state.clone(), finished.clone());
    client
        .sub(Topic::message::<Msg>(proto()), move |m: &Received<Msg>| {
            let now = Instant::now();
            let mut c = st[m.msg.id as usize].lock().expect("lock");
            let rtt = now - c.sent_at;
            c.samples.push(rtt.as_nanos().min(u32::MAX as u128) as u32);
            let next = m.msg.seq + 1;
            if next < rts {
                c.sent_at = Instant::now();
                drop(c);
                m.session.send(&Msg::new(m.msg.id, next)).expect("send");
            }
            fin.add(1, 0);
        })
        .expect("sub");
    let addr = addr.to_string();
    let mut refs = Vec::new();
    for _ in 0..conns {
        refs.push(client.connect(&addr, proto()).await.expect("connect"));
    }
    let start = Instant::now();
    for (i, s) in refs.iter().enumerate() {
        state[i].lock().expect("lock").sent_at = Instant::now();
        s.send(&Msg::new(i as u32, 0)).expect("send");
    }
    finished.notify.notified().await;
    let elapsed = start.elapsed();
    for s in &refs {
        s.close();
    }
    client.shutdown().await;
    let samples = state
        .iter()
        .flat_map(|c| std::mem::take(&mut c.lock().expect("lock").samples))
        .collect();
    (elapsed, samples)
}

async fn raw_echo_server(tx: oneshot::Sender<SocketAddr>, conns: usize) {
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

async fn raw_pinger_client(addr: SocketAddr, conns: usize, rts: u64) -> (Duration, Vec<u32>) {
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

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64
}

// ------------------------------------------------------------------------------------------
// Idle sessions: user-space memory per idle session.
// ------------------------------------------------------------------------------------------

fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls with a valid pointer to a local.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        if lim.rlim_cur < want {
            let new = libc::rlimit {
                rlim_cur: want,
                rlim_max: lim.rlim_max.max(want),
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &new) != 0 {
                // Not allowed to raise the hard limit: take what we can.
                let soft = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                libc::setrlimit(libc::RLIMIT_NOFILE, &soft);
            }
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// User + system CPU time of the whole process so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn idle_sessions(o: &Opts, n: usize) {
    let limit = raise_nofile(n as u64 + 1024);
    assert!(
        limit >= n as u64 + 64,
        "RLIMIT_NOFILE is {limit}: {n} sessions need about {}",
        n + 64
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let rb = o.read_buffer;
    let (acceptor, server) = rt.block_on(async move {
        let mut c = config(rb);
        c.max_sessions = c.max_sessions.max(n + 16);
        let server = Service::new(c);
        server
            .sub(Topic::message::<Msg>("bits"), |_m: &Received<Msg>| {})
            .expect("sub");
        let acc = server.accept("127.0.0.1:0", "bits").await.expect("accept");
        (acc, server)
    });
    let addr = acceptor.local_addr();
    // Warm up the process (first connection, runtime internals), then start counting.
    {
        let warm = std::net::TcpStream::connect(addr).expect("connect");
        wait_live(&rt, &server, 1);
        drop(warm);
        wait_live(&rt, &server, 0);
    }
    COUNTING.store(true, Relaxed);
    let live0 = LIVE_BYTES.load(Relaxed);
    let allocs0 = ALLOCS.load(Relaxed);
    let rss0 = rss_bytes();
    let pool0 = server.status().pool;
    let t = Instant::now();
    // The client ends live in a child process (plain blocking sockets), so that this process
    // holds only the server's sessions and its descriptor limit need not cover both ends.
    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args(["--idle-client", &addr.to_string(), &n.to_string()])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the client process");
    wait_live(&rt, &server, n);
    let open_time = t.elapsed();
    // Let every session task run its first poll and go idle.
    std::thread::sleep(Duration::from_millis(300));
    let status = server.status();
    let live1 = LIVE_BYTES.load(Relaxed);
    let allocs1 = ALLOCS.load(Relaxed);
    let rss1 = rss_bytes();
    let per_session = (live1 as f64 - live0 as f64) / n as f64;
    let per_session_rss = (rss1 as f64 - rss0 as f64) / n as f64;
    let pool_in_use = (status.pool.in_use_bytes as f64 - pool0.in_use_bytes as f64) / n as f64;
    let allocs_per_session = (allocs1 - allocs0) as f64 / n as f64;
    println!("idle sessions: {n} (opened in {open_time:.2?}; RLIMIT_NOFILE {limit})");
    println!("  heap bytes live per idle session   {per_session:>10.0} B");
    println!("    of which pooled buffers in use   {pool_in_use:>10.0} B");
    println!("  allocations per session open       {allocs_per_session:>10.1}");
    println!("  RSS growth per idle session        {per_session_rss:>10.0} B");
    println!("  pool: {:?}", status.pool);
    drop(child.stdin.take()); // the child exits when its stdin closes
    child.wait().expect("client process");
    wait_live(&rt, &server, 0);
    COUNTING.store(false, Relaxed);
    rt.block_on(server.shutdown());
    if o.json {
        let mut j = Json::default();
        j.str("mode", "idle_sessions");
        j.num("sessions", n as f64);
        j.num("bytes_per_idle_session", per_session);
        j.num("pool_bytes_per_idle_session", pool_in_use);
        j.num("allocs_per_session_open", allocs_per_session);
        j.num("rss_bytes_per_idle_session", per_session_rss);
        println!("{}", j.render());
    }
}

/// The child process of `--idle-sessions`: opens `n` connections to `addr`, then holds them
/// until its standard input closes.
fn idle_client(addr: &str, n: usize) {
    raise_nofile(n as u64 + 64);
    let mut socks = Vec::with_capacity(n);
    for i in 0..n {
        if i % 128 == 127 {
            // Let the server drain its accept backlog (an overflowing backlog drops SYNs,
            // which are retried only after a second).
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut tries = 0;
        let s = loop {
            match std::net::TcpStream::connect(addr) {
                Ok(s) => break s,
                Err(e) if tries < 50 => {
                    tries += 1;
                    eprintln!("connect {i}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("connect {i}: {e}"),
            }
        };
        socks.push(s);
    }
    let mut sink = String::new();
    let _ = std::io::stdin().read_line(&mut sink);
    drop(socks);
}

fn wait_live(rt: &tokio::runtime::Runtime, server: &Service, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = server.status();
        if st.live() == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} live sessions ({} live)",
            st.live()
        );
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(1)).await });
    }
}

// ------------------------------------------------------------------------------------------
// Handshakes: sessions opened per second, plaintext and encrypted.
// ------------------------------------------------------------------------------------------

/// Opens `n` sessions one after the other (each closed right away); sessions per second
/// (wall clock) and process CPU time (user + system, both ends, everything the run does) per
/// session opened, in ns.
///
/// Connects that take over 100 ms are left out of the rate and counted: on this loopback a
/// sequential connect now and then loses its SYN and waits for the kernel's 1 s retransmit
/// (plain sockets show it too), which has nothing to do with the handshake being measured.
/// They are kept in the CPU figure (a stalled connect costs no CPU while it waits).
fn connect_rate(o: &Opts, n: u64) -> (f64, f64) {
    let cpu0 = cpu_time();
    let (elapsed, done) = run_pair(
        o.layout,
        move |tx| async move {
            let server = Service::new(server_config(None));
            let closed = sessions_closed(&server, n);
            let acc = server.accept("127.0.0.1:0", proto()).await.expect("accept");
            tx.send(acc.local_addr()).expect("send addr");
            closed.await;
            server.shutdown().await;
        },
        move |addr| async move {
            let client = Service::new(client_config(None));
            let addr = addr.to_string();
            let (mut total, mut done, mut stalls) = (Duration::ZERO, 0u64, 0u64);
            for _ in 0..n {
                let t = Instant::now();
                let s = client.connect(&addr, proto()).await.expect("connect");
                let d = t.elapsed();
                if d < Duration::from_millis(100) {
                    total += d;
                    done += 1;
                } else {
                    stalls += 1;
                }
                s.close();
            }
            if stalls > 0 {
                println!("  ({stalls} connect(s) stalled on a SYN retransmit; left out)");
            }
            client.shutdown().await;
            (total, done)
        },
    );
    let cpu_ns = (cpu_time() - cpu0).as_secs_f64() * 1e9 / n as f64;
    (done as f64 / elapsed.as_secs_f64(), cpu_ns)
}

/// HPKE setup pairs timed by [`raw_hpke_rate`] per repetition (as `shared/baselines`).
const RAW_HPKE_PAIRS: u64 = 2_000;

/// The raw HPKE bound of `shared/baselines/src/bin/aead.rs` ("handshake"): `pairs` ×
/// (`setup_sender_with_rng` + `setup_receiver`), hpke 0.15.1, X25519HkdfSha256 + HkdfSha256,
/// Base mode, on the calling thread (no runtime is alive meanwhile). Returns pairs per second
/// by wall clock (the baseline's figure) and by process CPU time (one core's rate).
fn raw_hpke_rate(pairs: u64) -> (f64, f64) {
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
fn raw_connect_rate(o: &Opts, n: u64, hpke: bool) -> (f64, f64) {
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

/// With `--features bench-internals`: CPU ns per `bits-hpke` handshake run as pure functions
/// (`laxnet::bench_api::HandshakeSetup::run`: both sides, no socket, no task, with what a
/// service computes once done once), `n` of them on the calling thread. `None` without the
/// feature.
#[cfg(feature = "bench-internals")]
fn pure_handshake_cpu_ns(n: u64) -> Option<f64> {
    use laxnet::bench_api::{Cipher, HandshakeSetup};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    let server = server_key();
    let setup = HandshakeSetup::new(server, &server.public(), client_identity());
    let mut crng = ChaCha20Rng::seed_from_u64(1);
    let mut srng = ChaCha20Rng::seed_from_u64(2);
    let cpu0 = cpu_time();
    for _ in 0..n {
        let (c, s) = setup
            .run(&mut crng, &mut srng, Cipher::ChaCha20Poly1305)
            .expect("handshake");
        assert_eq!(c, s);
    }
    Some((cpu_time() - cpu0).as_secs_f64() * 1e9 / n as f64)
}

#[cfg(not(feature = "bench-internals"))]
fn pure_handshake_cpu_ns(_n: u64) -> Option<f64> {
    None
}

/// `--handshakes N`: plaintext and encrypted sequential connects and the raw HPKE pair loop,
/// interleaved per repetition. The one-core encrypted rate is 1e9 / (CPU ns per encrypted
/// connect, both ends); `handshake_ratio_vs_raw_hpke` divides it by the raw HPKE pairs per
/// CPU second of the same repetition (median over repetitions).
fn handshake_mode(o: &Opts, n: u64) {
    let mut j = Json::default();
    j.str("mode", "handshakes");
    j.num("sessions", n as f64);
    let client_auth = CLIENT_AUTH.load(Relaxed);
    j.num("client_auth", f64::from(u8::from(client_auth)));
    let _ = server_key();
    println!(
        "sessions opened one after the other, {n} per run, {} reps, layout {}{}; raw HPKE: \
         {RAW_HPKE_PAIRS} setup pairs per rep on the main thread:",
        o.reps,
        o.layout.name(),
        if client_auth {
            ", encrypted clients authenticate with an allowed key"
        } else {
            ""
        }
    );
    // Warm-up.
    for enc in [false, true] {
        ENCRYPTED.store(enc, Relaxed);
        connect_rate(o, n.min(200));
    }
    raw_hpke_rate(RAW_HPKE_PAIRS / 10);
    pure_handshake_cpu_ns(50);
    for hpke in [false, true] {
        raw_connect_rate(o, n.min(200), hpke);
    }

    let names = ["plaintext", "encrypted"];
    let mut rate = [Vec::new(), Vec::new()];
    let mut cpu = [Vec::new(), Vec::new()];
    let (mut raw_wall, mut raw_cpu, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    let mut pure = Vec::new();
    // Raw tokio connects, without and with the raw HPKE pair (see `raw_connect_rate`).
    let mut raw_rate = [Vec::new(), Vec::new()];
    let mut raw_conn_cpu = [Vec::new(), Vec::new()];
    let mut vs_raw_tcp_hpke = Vec::new();
    for _ in 0..o.reps {
        for (i, enc) in [false, true].into_iter().enumerate() {
            ENCRYPTED.store(enc, Relaxed);
            let (r, c) = connect_rate(o, n);
            rate[i].push(r);
            cpu[i].push(c);
        }
        for (i, hpke) in [false, true].into_iter().enumerate() {
            let (r, c) = raw_connect_rate(o, n, hpke);
            raw_rate[i].push(r);
            raw_conn_cpu[i].push(c);
        }
        vs_raw_tcp_hpke
            .push(raw_conn_cpu[1].last().expect("this rep") / cpu[1].last().expect("this rep"));
        let (w, c) = raw_hpke_rate(RAW_HPKE_PAIRS);
        raw_wall.push(w);
        raw_cpu.push(c);
        ratio.push(1e9 / cpu[1].last().expect("this rep") / c);
        pure.extend(pure_handshake_cpu_ns(n.min(1000)));
    }
    ENCRYPTED.store(false, Relaxed);

    let rate: Vec<Stats> = rate.into_iter().map(stats).collect();
    let cpu: Vec<Stats> = cpu.into_iter().map(stats).collect();
    for (i, name) in names.iter().enumerate() {
        let p = if i == 0 { BITS } else { BITS_HPKE };
        line(
            &format!("  connect + {p} ({name}), wall clock"),
            "/s",
            rate[i],
        );
        j.stats(&format!("connects_per_s_{name}"), rate[i]);
    }
    for (i, name) in names.iter().enumerate() {
        let us = Stats {
            median: cpu[i].median / 1e3,
            min: cpu[i].min / 1e3,
            max: cpu[i].max / 1e3,
        };
        line(&format!("  CPU per connect ({name}, both ends)"), "µs", us);
        j.stats(&format!("cpu_ns_per_connect_{name}"), cpu[i]);
    }
    let one_core = 1e9 / cpu[1].median;
    println!(
        "  one-core encrypted connects/s = 1e9 / CPU ns     {:>9} /s",
        human(one_core)
    );
    j.num("one_core_connects_per_s_encrypted", one_core);
    let extra = cpu[1].median - cpu[0].median;
    println!(
        "  encrypted − plaintext CPU per connect            {:>9} µs",
        format!("{:.1}", extra / 1e3)
    );
    j.num("cpu_ns_per_connect_encryption_extra", extra);
    let raw_wall = stats(raw_wall);
    let raw_cpu = stats(raw_cpu);
    line(
        "  raw HPKE pair (sender + receiver), wall clock",
        "/s",
        raw_wall,
    );
    line("  raw HPKE pair, per CPU second", "/s", raw_cpu);
    j.stats("raw_hpke_pairs_per_s", raw_wall);
    j.stats("raw_hpke_pairs_per_s_cpu", raw_cpu);
    println!(
        "  raw HPKE pair CPU                                {:>9} µs",
        format!("{:.1}", 1e6 / raw_cpu.median)
    );
    if !pure.is_empty() {
        let pure = stats(pure);
        let us = Stats {
            median: pure.median / 1e3,
            min: pure.min / 1e3,
            max: pure.max / 1e3,
        };
        line("  CPU per pure handshake (both sides, no I/O)", "µs", us);
        j.stats("cpu_ns_per_pure_handshake", pure);
        println!(
            "  encrypted connect − plaintext connect − pure handshake {:>7} µs (handshake I/O, \
             task, close)",
            format!("{:.1}", (extra - pure.median) / 1e3)
        );
        j.num("cpu_ns_per_connect_handshake_io", extra - pure.median);
        // The protocol's own cost against the raw pair, without TCP and tasks: the ceiling
        // for the connect ratio below.
        let pure_ratio = (1e9 / raw_cpu.median) / pure.median;
        println!(
            "  pure handshakes / raw HPKE pairs, per CPU second = {:.1} %",
            pure_ratio * 100.0
        );
        j.num("pure_handshake_ratio_vs_raw_hpke", pure_ratio);
    }
    let raw_names = ["raw TCP", "raw TCP + raw HPKE pair"];
    let raw_keys = ["raw_tcp", "raw_tcp_hpke"];
    let raw_rate: Vec<Stats> = raw_rate.into_iter().map(stats).collect();
    let raw_conn_cpu: Vec<Stats> = raw_conn_cpu.into_iter().map(stats).collect();
    for i in 0..2 {
        line(
            &format!("  connect + close, {} (tokio), wall clock", raw_names[i]),
            "/s",
            raw_rate[i],
        );
        j.stats(&format!("connects_per_s_{}", raw_keys[i]), raw_rate[i]);
    }
    for i in 0..2 {
        let us = Stats {
            median: raw_conn_cpu[i].median / 1e3,
            min: raw_conn_cpu[i].min / 1e3,
            max: raw_conn_cpu[i].max / 1e3,
        };
        line(
            &format!("  CPU per connect, {} (both ends)", raw_names[i]),
            "µs",
            us,
        );
        j.stats(
            &format!("cpu_ns_per_connect_{}", raw_keys[i]),
            raw_conn_cpu[i],
        );
    }
    // The ceiling of the target's ratio for any handshake over a fresh TCP connection that
    // does at least the raw pair's crypto.
    let floor = (1e9 / raw_cpu.median) / raw_conn_cpu[1].median;
    println!(
        "  raw TCP + raw HPKE connects / raw HPKE pairs, per CPU second = {:.1} % (the ceiling \
         over TCP)",
        floor * 100.0
    );
    j.num("raw_tcp_hpke_ratio_vs_raw_hpke", floor);
    // Same-run ratios: median [min .. max] over repetitions.
    let percent = |label: &str, s: Stats, note: &str| {
        println!(
            "  {label} = {:.1} % [{:.1} .. {:.1}]{note}",
            s.median * 100.0,
            s.min * 100.0,
            s.max * 100.0
        );
    };
    let vs = stats(vs_raw_tcp_hpke);
    percent(
        "one-core encrypted connects / raw TCP + raw HPKE connects",
        vs,
        "",
    );
    j.stats("handshake_ratio_vs_raw_tcp_hpke", vs);
    let ratio = stats(ratio);
    percent(
        "one-core encrypted connects / raw HPKE pairs",
        ratio,
        " (target ≥ 75 %)",
    );
    j.stats("handshake_ratio_vs_raw_hpke", ratio);
    if o.json {
        println!("{}", j.render());
    }
}

// ------------------------------------------------------------------------------------------
// Simulation: the echo workload in turmoil.
// ------------------------------------------------------------------------------------------

#[cfg(feature = "sim")]
mod sim {
    use super::*;
    use laxnet::TurmoilRuntime;

    pub(super) const CLIENTS: usize = 10;
    pub(super) const MSGS: u64 = 1000;
    const PORT: u16 = 9000;

    fn builder(seed: u64) -> turmoil::Sim<'static> {
        turmoil::Builder::new()
            .simulation_duration(Duration::from_secs(600))
            .min_message_latency(Duration::from_millis(1))
            .max_message_latency(Duration::from_millis(1))
            .rng_seed(seed)
            .build()
    }

    /// The baseline: raw turmoil streams (port of shared/baselines/src/bin/turmoil_sim.rs).
    pub(super) fn raw(seed: u64) -> (Duration, Duration) {
        let mut sim = builder(seed);
        sim.host("server", || async {
            let l = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
            loop {
                let (mut s, _) = l.accept().await?;
                tokio::spawn(async move {
                    let mut b = [0u8; FRAME_LEN];
                    while s.read_exact(&mut b).await.is_ok() {
                        if s.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        for c in 0..CLIENTS {
            sim.client(format!("client{c}"), async move {
                let mut s = turmoil::net::TcpStream::connect(("server", PORT)).await?;
                let mut out = [0u8; FRAME_LEN];
                let mut inb = [0u8; FRAME_LEN];
                for i in 0..MSGS {
                    out[..4].copy_from_slice(&(MSG_BORSH_LEN as u32).to_le_bytes());
                    Msg::new(c as u32, i).serialize(&mut &mut out[4..])?;
                    s.write_all(&out).await?;
                    s.read_exact(&mut inb).await?;
                    let m: Msg = borsh::from_slice(&inb[4..])?;
                    assert_eq!(m.seq, i);
                }
                Ok(())
            });
        }
        let t = Instant::now();
        sim.run().expect("simulation");
        (t.elapsed(), sim.elapsed())
    }

    fn sim_config(seed: u64) -> Config {
        let mut c = config(None);
        c.rng_seed = Some(seed);
        c
    }

    /// The same workload through laxnet on `TurmoilRuntime`: an echo subscription on the
    /// server, callback-driven request/response on each client.
    pub(super) fn laxnet(seed: u64) -> (Duration, Duration) {
        let mut sim = builder(seed);
        sim.host("server", move || async move {
            let server = Service::with_runtime(sim_config(seed), TurmoilRuntime::new(seed));
            server
                .sub(Topic::message::<Msg>("bits"), |m: &Received<Msg>| {
                    let _ = m.session.send(&m.msg);
                })
                .map_err(|e| e.to_string())?;
            let _acc = server
                .accept(&format!("0.0.0.0:{PORT}"), "bits")
                .await
                .map_err(|e| e.to_string())?;
            std::future::pending::<()>().await;
            Ok(())
        });
        for c in 0..CLIENTS {
            sim.client(format!("client{c}"), async move {
                let seed = seed ^ ((c as u64 + 1) << 32);
                let client = Service::with_runtime(sim_config(seed), TurmoilRuntime::new(seed));
                let done = Arc::new(Notify::new());
                let next = Arc::new(AtomicU64::new(0));
                let (d, nx) = (done.clone(), next.clone());
                client
                    .sub(Topic::message::<Msg>("bits"), move |m: &Received<Msg>| {
                        let expect = nx.fetch_add(1, Relaxed);
                        assert_eq!(m.msg.seq, expect);
                        if expect + 1 < MSGS {
                            let _ = m.session.send(&Msg::new(c as u32, expect + 1));
                        } else {
                            d.notify_one();
                        }
                    })
                    .map_err(|e| e.to_string())?;
                let s = client
                    .connect(&format!("server:{PORT}"), "bits")
                    .await
                    .map_err(|e| e.to_string())?;
                s.send(&Msg::new(c as u32, 0)).map_err(|e| e.to_string())?;
                done.notified().await;
                assert_eq!(next.load(Relaxed), MSGS);
                Ok(())
            });
        }
        let t = Instant::now();
        sim.run().expect("simulation");
        (t.elapsed(), sim.elapsed())
    }
}

#[cfg(feature = "sim")]
fn sim_mode(o: &Opts) {
    let (_, simulated) = sim::laxnet(0);
    println!(
        "turmoil echo: {} clients x {} round trips, 1 ms latency; simulated {simulated:?} (laxnet)",
        sim::CLIENTS,
        sim::MSGS
    );
    let mut lax = Vec::new();
    let mut raw = Vec::new();
    sim::laxnet(1);
    if o.compare {
        sim::raw(1);
    }
    for rep in 0..o.reps as u64 {
        let seed = 100 + rep;
        lax.push(sim::laxnet(seed).0.as_secs_f64() * 1e3);
        if o.compare {
            raw.push(sim::raw(seed).0.as_secs_f64() * 1e3);
        }
    }
    let l = stats(lax);
    line("laxnet on TurmoilRuntime, wall ms per seed", "ms", l);
    let mut j = Json::default();
    j.str("mode", "sim");
    j.stats("sim_laxnet_ms", l);
    if o.compare {
        let r = stats(raw);
        line("raw turmoil streams, wall ms per seed", "ms", r);
        let ratio = l.median / r.median;
        println!("  laxnet / raw wall time: {ratio:.2}x (target <= 2x)");
        j.stats("sim_raw_ms", r);
        j.num("sim_ratio_vs_raw", ratio);
    }
    if o.json {
        println!("{}", j.render());
    }
}

#[cfg(not(feature = "sim"))]
fn sim_mode(_o: &Opts) {
    eprintln!(
        "--sim needs the `sim` feature: cargo run --release --features sim --example perf -- --sim"
    );
    std::process::exit(2);
}

// ------------------------------------------------------------------------------------------
// Ciphers: one-way throughput of plaintext and both AEADs, interleaved in one run.
// ------------------------------------------------------------------------------------------

fn set_mode(encrypted: bool, aes: bool) {
    ENCRYPTED.store(encrypted, Relaxed);
    CIPHER.store(if aes { 2 } else { 1 }, Relaxed);
}

/// `--ciphers`: laxnet one-way msgs/s over one connection for "bits", "bits-hpke" with
/// ChaCha20-Poly1305 and with AES-128-GCM, runs interleaved so they share the machine's noise;
/// prints each as a ratio of plaintext from the same run.
fn cipher_mode(o: &Opts) {
    let _ = server_key();
    let modes = [
        ("plaintext", false, false),
        ("chacha20poly1305", true, false),
        ("aes128gcm", true, true),
    ];
    for &(_, enc, aes) in &modes {
        set_mode(enc, aes);
        oneway_run(OneWay::Laxnet, o, 1); // warm-up
    }
    let mut samples = vec![Vec::new(); modes.len()];
    for _ in 0..o.reps {
        for (i, &(_, enc, aes)) in modes.iter().enumerate() {
            set_mode(enc, aes);
            samples[i].push(oneway_run(OneWay::Laxnet, o, 1).0);
        }
    }
    ENCRYPTED.store(false, Relaxed);
    CIPHER.store(0, Relaxed);
    let st: Vec<Stats> = samples.into_iter().map(stats).collect();
    println!(
        "one-way, {} msgs over 1 connection, {} reps:",
        o.msgs, o.reps
    );
    let mut j = Json::default();
    j.str("mode", "ciphers");
    for ((name, _, _), s) in modes.iter().zip(&st) {
        line(&format!("  {name}"), "msg/s", *s);
        j.stats(&format!("oneway_{name}_msgs_per_s"), *s);
    }
    for ((name, _, _), s) in modes.iter().zip(&st).skip(1) {
        let r = s.median / st[0].median;
        println!("  {name} / plaintext = {:.1} %", r * 100.0);
        j.num(format!("ratio_{name}_vs_plaintext"), r);
    }
    if o.json {
        println!("{}", j.render());
    }
}

// ------------------------------------------------------------------------------------------
// Main.
// ------------------------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--idle-client") {
        return idle_client(&args[2], args[3].parse().expect("count"));
    }
    let o = parse_opts();
    if let Some(n) = o.idle_sessions {
        return idle_sessions(&o, n);
    }
    if o.sim {
        return sim_mode(&o);
    }
    if let Some(n) = o.handshakes {
        return handshake_mode(&o, n);
    }
    if o.ciphers {
        return cipher_mode(&o);
    }
    if o.encrypted {
        ENCRYPTED.store(true, Relaxed);
        let _ = server_key();
    }
    let mut j = Json::default();
    j.str("mode", "loopback");
    j.str("protocol", proto());
    j.str("layout", o.layout.name());
    j.num("msgs", o.msgs as f64);
    j.num("reps", o.reps as f64);
    println!(
        "protocol {}, layout {}, {} reps (median [min .. max]), Msg = 28 bytes borsh",
        proto(),
        o.layout.name(),
        o.reps
    );
    let want = |what: &str| o.only.as_deref().is_none_or(|x| x == what);
    if want("oneway") {
        let kinds: &[OneWay] = if o.compare {
            &[
                OneWay::Laxnet,
                OneWay::Framed,
                OneWay::Batched,
                OneWay::BatchedMaterialized,
            ]
        } else {
            &[OneWay::Laxnet]
        };
        for &conns in &o.conns {
            println!("one-way, {} msgs over {conns} connection(s):", o.msgs);
            let mut samples = vec![Vec::new(); kinds.len()];
            let mut cpu = vec![Vec::new(); kinds.len()];
            for &k in kinds {
                oneway_run(k, &o, conns); // warm-up
            }
            // Interleave the systems so that they share the machine's noise.
            for _ in 0..o.reps {
                for (i, &k) in kinds.iter().enumerate() {
                    let (rate, ns) = oneway_run(k, &o, conns);
                    samples[i].push(rate);
                    cpu[i].push(ns);
                }
            }
            let st: Vec<Stats> = samples.into_iter().map(stats).collect();
            let cpu: Vec<Stats> = cpu.into_iter().map(stats).collect();
            for ((k, s), c) in kinds.iter().zip(&st).zip(&cpu) {
                line(&format!("  {}", k.name()), "msg/s", *s);
                println!(
                    "  {:<50} {:>9.1} CPU ns/msg (user+sys, both ends)",
                    "", c.median
                );
            }
            let key = if conns == 1 {
                String::new()
            } else {
                format!("_c{conns}")
            };
            j.stats(&format!("oneway_laxnet_msgs_per_s{key}"), st[0]);
            j.num(format!("oneway_laxnet_cpu_ns_per_msg{key}"), cpu[0].median);
            if o.compare {
                let vs_framed = st[0].median / st[1].median;
                let share = st[0].median / st[2].median;
                println!(
                    "  laxnet / Framed = {vs_framed:.2}x (target >= 3x); laxnet / hand-batched = {:.1} % (target >= 40 %)",
                    share * 100.0
                );
                j.stats(&format!("oneway_framed_msgs_per_s{key}"), st[1]);
                j.stats(&format!("oneway_batched_msgs_per_s{key}"), st[2]);
                j.num(format!("oneway_framed_cpu_ns_per_msg{key}"), cpu[1].median);
                j.num(format!("oneway_batched_cpu_ns_per_msg{key}"), cpu[2].median);
                let share_m = st[0].median / st[3].median;
                println!(
                    "  laxnet / hand-batched with the message materialized = {:.1} %",
                    share_m * 100.0
                );
                j.stats(
                    &format!("oneway_batched_materialized_msgs_per_s{key}"),
                    st[3],
                );
                j.num(
                    format!("oneway_batched_materialized_cpu_ns_per_msg{key}"),
                    cpu[3].median,
                );
                j.num(format!("share_of_batched_materialized{key}"), share_m);
                j.num(format!("ratio_vs_framed{key}"), vs_framed);
                j.num(format!("share_of_batched{key}"), share);
            }
        }
    }
    if want("pingpong") {
        let kinds: &[PingPong] = if o.compare {
            &[PingPong::Laxnet, PingPong::Raw]
        } else {
            &[PingPong::Laxnet]
        };
        for &conns in &o.conns {
            println!(
                "ping-pong, {conns} connection(s) x {} round trips:",
                rts_per_conn(&o, conns)
            );
            for &k in kinds {
                pingpong_run(k, &o, conns); // warm-up
            }
            let mut rates = vec![Vec::new(); kinds.len()];
            let mut lat: Vec<Vec<u32>> = vec![Vec::new(); kinds.len()];
            for _ in 0..o.reps {
                for (i, &k) in kinds.iter().enumerate() {
                    let r = pingpong_run(k, &o, conns);
                    rates[i].push(r.rts_per_s);
                    lat[i].extend(r.samples);
                }
            }
            let mut meds = Vec::new();
            for (i, &k) in kinds.iter().enumerate() {
                let s = stats(std::mem::take(&mut rates[i]));
                lat[i].sort_unstable();
                let p50 = percentile(&lat[i], 0.50) / 1e3;
                let p99 = percentile(&lat[i], 0.99) / 1e3;
                line(&format!("  {}", k.name()), "rt/s", s);
                println!("  {:<50} p50 {p50:.1} us, p99 {p99:.1} us", "");
                let name = match k {
                    PingPong::Laxnet => "laxnet",
                    PingPong::Raw => "raw",
                };
                j.stats(&format!("pingpong_{name}_rts_per_s_c{conns}"), s);
                j.num(format!("pingpong_{name}_p50_us_c{conns}"), p50);
                j.num(format!("pingpong_{name}_p99_us_c{conns}"), p99);
                meds.push(s.median);
            }
            if o.compare {
                let r = meds[0] / meds[1];
                println!("  laxnet / raw = {:.1} % (target >= 90 %)", r * 100.0);
                j.num(format!("pingpong_ratio_vs_raw_c{conns}"), r);
            }
        }
    }
    if o.json {
        println!("{}", j.render());
    }
}
