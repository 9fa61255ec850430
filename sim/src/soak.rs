//! `laxsim soak`: many concurrent sessions on real loopback sockets for a long time, with
//! steady traffic, churn and hostile peers, checked while it runs and summed up at the end.
//!
//! The client side ([`soak`]) holds `sessions` session slots on one [`laxnet::TokioRuntime`]
//! service. Each slot connects, sends sequenced [`msg::Data`] messages at `rate` per second
//! (the server echoes each one), and after a random lifetime (mean `1 / churn` seconds) ends
//! the session and connects again. Half the endings are a graceful `close()` by the client,
//! half ask the server to close (the peer closing): the last message carries [`FIN`] (and
//! [`CLOSE_REQ`] for the peer's close), so both ends know what the other sent last. Beside
//! them, raw TCP "destroyers" speak the plaintext frame format and end their connections with
//! a reset (the abortive end), and every `hostile_every` a hostile raw connection sends one of
//! [`crate::attack`]'s attacks (garbage, oversized and truncated frames, half handshakes,
//! silence) and must be closed by the server.
//!
//! The server side ([`serve`]) echoes, and runs in a child process (the same binary,
//! re-executed as `laxsim soak-server`) when both ends' sockets would not fit in one process's
//! file-descriptor limit; it reports its counters as JSON lines on stdout ([`ServerMsg`]). Who
//! a connection is, the server tells by its source address: honest clients come from
//! 127.0.0.1, destroyers from 127.0.0.3, each attack from 127.0.1.N (N its index in
//! [`Attack::ALL`] plus one), so it knows the reason each must close with.
//!
//! Checked while it runs: every message (both directions) arrives in order, without gaps,
//! uncorrupted, on its own session, never after `Closed`; a session that ended cleanly on the
//! receiving side got everything up to the sender's last message; honest sessions end only
//! with the reasons their ending implies (or `LingerExpired`, which is not clean),
//! destroyers' with a reset, hostile ones with the violation their attack implies (and are
//! closed at all, within a timeout). At the end: both services shut down with nothing live
//! and no pooled byte in use, no panics, and memory plateaued ([`plateau`]). Thread timing is not seeded: a run is not reproducible.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // real time and sockets: the point

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use laxnet::{
    CloseCode, CloseReason, Config, Encryption, KeyPair, Protocol, ProtocolViolation, Received,
    SendError, Service, SessionEvent, SessionRef, Status, Topic,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::attack::{self, Attack};
use crate::msg::{self, Body, CLOSE_REQ, Data};
use crate::rng::Rng;

/// Flag: the sender's last message on this session (see [`msg::Body::flags`]).
pub const FIN: u8 = 2;

/// Source address of honest raw peers that end with a reset.
const DESTROYER_IP: [u8; 4] = [127, 0, 0, 3];

/// The attacks sent to the plaintext acceptor: those whose reason the server can be held to.
/// (`Boundary` needs a 1 MiB frame first; `HelloGarbage`/`HelloTruncated` go to the encrypted
/// acceptor, where no session opens.)
const PLAIN_ATTACKS: [Attack; 8] = [
    Attack::Oversized,
    Attack::Short,
    Attack::UnknownId,
    Attack::Undecodable,
    Attack::Trailing,
    Attack::Truncated,
    Attack::Silent,
    Attack::Trickle,
];

/// How the server must close a hostile session of `attack`.
fn hostile_reason_ok(attack: Attack, r: &CloseReason) -> bool {
    use ProtocolViolation as V;
    let CloseReason::Protocol(v) = r else {
        return match attack {
            Attack::Silent | Attack::Trickle => *r == CloseReason::Idle,
            _ => false,
        };
    };
    match attack {
        Attack::Oversized => matches!(v, V::FrameTooLarge { .. }),
        Attack::Short => matches!(v, V::FrameTooShort { .. }),
        Attack::UnknownId => matches!(v, V::UnknownMessage { .. }),
        Attack::Undecodable | Attack::Trailing => matches!(v, V::Undecodable { .. }),
        Attack::Truncated => matches!(v, V::TruncatedFrame),
        Attack::Trickle => true,
        _ => false,
    }
}

/// How the soak runs.
#[derive(Debug, Clone)]
pub struct SoakOpts {
    /// Concurrent client sessions.
    pub sessions: usize,
    /// How long the traffic runs (then every session closes and both services shut down).
    pub duration: Duration,
    /// Messages per second each session sends.
    pub rate: f64,
    /// Fraction of the sessions that end and reconnect per second (mean lifetime `1 / churn`).
    pub churn: f64,
    /// Raw peers that end their connections with a reset (0: none).
    pub destroyers: usize,
    /// One hostile connection this often (`None`: none).
    pub hostile_every: Option<Duration>,
    /// The clients' protocol ("bits" or "bits-hpke").
    pub protocol: Protocol,
    /// Progress and samples this often.
    pub interval: Duration,
    /// Connects are spread over this time at the start.
    pub ramp: Duration,
    /// Where the server runs.
    pub server: ServerPlace,
    /// A planted library bug for both services (`laxnet::planted` names; needs the feature).
    pub plant: Option<String>,
    /// The server's `Encryption::max_handshakes` and `max_handshakes_per_source` (`None`:
    /// the library's defaults). Every honest client connects from 127.0.0.1: one source.
    pub server_handshakes: Option<usize>,
    /// Seed of the workload's choices.
    pub seed: u64,
    /// Print progress lines on stderr.
    pub progress: bool,
    /// A test hook: leak this many bytes (written, so resident) every time a client session
    /// ends, to prove the plateau check fires (`tests/soak.rs`). 0 in every real run.
    #[doc(hidden)]
    pub leak_per_session: usize,
}

impl Default for SoakOpts {
    fn default() -> Self {
        SoakOpts {
            sessions: 10_000,
            duration: Duration::from_secs(30),
            rate: 1.0,
            churn: 0.02,
            destroyers: 100,
            hostile_every: Some(Duration::from_secs(1)),
            protocol: Protocol::Bits,
            interval: Duration::from_secs(5),
            ramp: Duration::from_secs(10),
            server: ServerPlace::Auto,
            plant: None,
            server_handshakes: None,
            seed: 1,
            progress: true,
            leak_per_session: 0,
        }
    }
}

/// Where the server service runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerPlace {
    /// A child process when both ends' sockets would not fit under the fd limit.
    Auto,
    /// This process, on a runtime of its own.
    InProcess,
    /// This executable, run as `laxsim soak-server` in a child process.
    Child(std::path::PathBuf),
}

/// Raises the soft file-descriptor limit to the hard one; returns the soft limit now.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return 1024;
        }
        if l.rlim_cur < l.rlim_max {
            let want = libc::rlimit {
                rlim_cur: l.rlim_max,
                rlim_max: l.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                l.rlim_cur = l.rlim_max;
            }
        }
        l.rlim_cur
    }
}

/// This process's resident set in bytes (`/proc/self/statm`), 0 where unknown.
pub fn rss_bytes() -> u64 {
    let page = {
        // SAFETY: sysconf has no preconditions.
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if p > 0 { p as u64 } else { 4096 }
    };
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page)
}

/// A latency histogram: 4 buckets per power of two of microseconds (quantiles within 19 %).
pub struct Histogram {
    buckets: Vec<AtomicU64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..160).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Histogram {
    fn index(us: u64) -> usize {
        if us < 2 {
            return 0;
        }
        let l = 63 - u64::from(us.leading_zeros()); // floor(log2)
        let frac = if l >= 2 {
            (us >> (l - 2)) & 3
        } else {
            (us << (2 - l)) & 3
        };
        ((l * 4 + frac) as usize).min(159)
    }

    fn upper_us(i: usize) -> u64 {
        let (l, frac) = ((i / 4) as u32, (i % 4) as u64);
        if l < 2 {
            return (1 << l) + 1;
        }
        ((4 + frac + 1) << (l - 2)).max(1)
    }

    /// Records one latency.
    pub fn record(&self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        self.buckets[Self::index(us)].fetch_add(1, Relaxed);
    }

    /// Takes the counts recorded since the last take: (count, p50, p99) in microseconds.
    pub fn take(&self) -> (u64, u64, u64) {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.swap(0, Relaxed)).collect();
        let n: u64 = counts.iter().sum();
        let q = |p: f64| {
            let want = ((n as f64) * p).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= want {
                    return Self::upper_us(i);
                }
            }
            0
        };
        if n == 0 {
            (0, 0, 0)
        } else {
            (n, q(0.5), q(0.99))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server.

/// What the server reports (JSON lines on a child's stdout).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ServerMsg {
    /// Its acceptors' addresses.
    Listening {
        /// Plaintext.
        bits: String,
        /// Encrypted.
        hpke: String,
    },
    /// Its counters now.
    Stats(ServerStats),
    /// Its counters after its shutdown (the last message).
    Final(ServerStats),
}

/// The server's counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerStats {
    /// Resident set of the server's process (0 when it is this process).
    pub rss: u64,
    /// Live sessions.
    pub live: usize,
    /// Sessions accepted.
    pub accepted: u64,
    /// Messages received.
    pub msgs_in: u64,
    /// Messages sent (echoes).
    pub msgs_out: u64,
    /// Pooled bytes in use.
    pub pool_in_use: usize,
    /// Pooled bytes retained for reuse.
    pub pool_retained: usize,
    /// Closes by kind (name, count), nonzero only.
    pub closes: Vec<(String, u64)>,
    /// Hostile sessions closed with the reason their attack implies, by attack.
    pub hostile_ok: BTreeMap<String, u64>,
    /// Destroyers' sessions closed.
    pub destroyed: u64,
    /// Encrypted handshakes that failed (the encrypted acceptor's hostile peers).
    pub handshake_failures: u64,
    /// Connections dropped at once because too many handshakes were in progress.
    pub handshakes_refused: u64,
    /// Stalled handshakes dropped to make room.
    pub handshakes_evicted: u64,
    /// Sessions that ended cleanly on the server without the client's last message.
    pub lost_sessions: u64,
    /// Panics caught by the service.
    pub panics: u64,
    /// Violations seen so far (count).
    pub violations: u64,
    /// The first violations.
    pub first_violations: Vec<String>,
}

/// Who is on the other end of a server session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Honest,
    Destroyer,
    Hostile(Attack),
}

fn classify(addr: SocketAddr) -> Peer {
    match addr.ip() {
        std::net::IpAddr::V4(ip) => {
            let o = ip.octets();
            if o == DESTROYER_IP {
                Peer::Destroyer
            } else if o[..3] == [127, 0, 1] && o[3] >= 1 {
                Attack::ALL
                    .get(usize::from(o[3]) - 1)
                    .map_or(Peer::Honest, |(a, _)| Peer::Hostile(*a))
            } else {
                Peer::Honest
            }
        }
        std::net::IpAddr::V6(_) => Peer::Honest,
    }
}

struct SSess {
    peer: Peer,
    recv_next: u64,
    fin: bool,
    token: Option<(u16, u16)>,
}

#[derive(Default)]
struct ServerBook {
    sessions: BTreeMap<u32, SSess>,
    hostile_ok: BTreeMap<String, u64>,
    destroyed: u64,
    lost_sessions: u64,
    violations: u64,
    first: Vec<String>,
}

impl ServerBook {
    fn bad(&mut self, what: String) {
        self.violations += 1;
        if self.first.len() < 20 {
            self.first.push(what);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn key() -> KeyPair {
    KeyPair::from_seed(&[0x50; 32])
}

fn plant(_c: &mut Config, _plant: Option<&str>) {
    #[cfg(feature = "planted-bugs")]
    {
        _c.planted = _plant.and_then(|p| p.parse().ok());
    }
}

/// The server's idle timeout (closes silent hostile peers).
pub const SERVER_IDLE: Duration = Duration::from_secs(10);

fn server_config(max_sessions: usize, plant_name: Option<&str>, hs: Option<usize>) -> Config {
    let mut enc = Encryption::server(key());
    if let Some(n) = hs {
        enc = enc.with_max_handshakes(n).with_max_handshakes_per_source(n);
    }
    let mut c = Config::default()
        .with_max_sessions(max_sessions)
        .with_idle_timeout(SERVER_IDLE)
        .with_listen_backlog(4096)
        .with_encryption(enc)
        .with_logging(false);
    plant(&mut c, plant_name);
    c
}

fn server_stats(svc: &Service, book: &Mutex<ServerBook>, rss: u64) -> ServerStats {
    let s = svc.status();
    let b = lock(book);
    ServerStats {
        rss,
        live: s.live(),
        accepted: s.accepted,
        msgs_in: s.msgs_in,
        msgs_out: s.msgs_out,
        pool_in_use: s.pool.in_use_bytes,
        pool_retained: s.pool.retained_bytes,
        closes: closes(&s),
        hostile_ok: b.hostile_ok.clone(),
        destroyed: b.destroyed,
        handshake_failures: s.handshake_failures,
        handshakes_refused: s.handshakes_refused,
        handshakes_evicted: s.handshakes_evicted,
        lost_sessions: b.lost_sessions,
        panics: s.panics,
        violations: b.violations,
        first_violations: b.first.clone(),
    }
}

fn closes(s: &Status) -> Vec<(String, u64)> {
    s.closes
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (k.name().to_string(), *n))
        .collect()
}

fn server_subscribe(svc: &Service, book: &Arc<Mutex<ServerBook>>, proto: Protocol) {
    let b = book.clone();
    let _ = svc.sub(Topic::sessions(proto), move |ev: &SessionEvent| match ev {
        SessionEvent::Opened { session, .. } => {
            let peer = classify(session.peer_addr());
            let mut b = lock(&b);
            let id = session.id().get();
            if b.sessions.contains_key(&id) {
                b.bad(format!("server: id {id:#x} opened twice"));
            }
            b.sessions.insert(
                id,
                SSess {
                    peer,
                    recv_next: 0,
                    fin: false,
                    token: None,
                },
            );
        }
        SessionEvent::Closed { id, reason } => {
            let mut b = lock(&b);
            let Some(s) = b.sessions.remove(&id.get()) else {
                return b.bad(format!("server: Closed for unknown id {:#x}", id.get()));
            };
            match s.peer {
                Peer::Honest => {
                    let ok = matches!(
                        reason,
                        CloseReason::Local
                            | CloseReason::PeerClosed
                            | CloseReason::Shutdown
                            | CloseReason::LingerExpired { .. }
                    ) || matches!(reason, CloseReason::Peer(p) if p.code == CloseCode::Normal);
                    if !ok {
                        b.bad(format!(
                            "server: honest session {:#x} closed with \"{reason}\"",
                            id.get()
                        ));
                    }
                    if reason.is_clean() && !s.fin {
                        b.lost_sessions += 1;
                        b.bad(format!(
                            "server: session {:#x} (client {:?}) closed cleanly (\"{reason}\") after {} messages without the client's last one",
                            id.get(),
                            s.token,
                            s.recv_next
                        ));
                    }
                }
                Peer::Destroyer => {
                    if matches!(reason, CloseReason::Reset | CloseReason::Shutdown) {
                        b.destroyed += 1;
                    } else {
                        b.bad(format!(
                            "server: a reset connection {:#x} closed with \"{reason}\"",
                            id.get()
                        ));
                    }
                }
                Peer::Hostile(a) => {
                    if hostile_reason_ok(a, reason) || *reason == CloseReason::Shutdown {
                        *b.hostile_ok.entry(a.name().to_string()).or_default() += 1;
                    } else {
                        b.bad(format!(
                            "server: hostile peer ({}) closed with \"{reason}\"",
                            a.name()
                        ));
                    }
                }
            }
        }
        _ => {}
    });
    let b = book.clone();
    let _ = svc.sub(Topic::message::<Data>(proto), move |m: &Received<Data>| {
        let id = m.session.id().get();
        let body = &m.msg.0;
        let mut g = lock(&b);
        let Some(s) = g.sessions.get_mut(&id) else {
            return g.bad(format!(
                "server: message seq {} for unknown or closed id {id:#x}",
                body.seq
            ));
        };
        let mut bad = None;
        if *s.token.get_or_insert((body.host, body.inc)) != (body.host, body.inc) {
            bad = Some(format!("server: {id:#x}: message of another connection"));
        } else if body.seq != s.recv_next || !msg::pattern_ok(body.seq, &body.payload) {
            bad = Some(format!(
                "server: {id:#x}: expected seq {} got {} (gap, reorder or corruption)",
                s.recv_next, body.seq
            ));
        } else if s.fin {
            bad = Some(format!("server: {id:#x}: message after the last one"));
        }
        s.recv_next = body.seq + 1;
        s.fin |= body.flags & FIN != 0;
        let echo = s.peer == Peer::Honest;
        if let Some(w) = bad {
            g.bad(w);
        }
        drop(g);
        if echo {
            let reply = Data(Body {
                sid: id,
                ..body.clone()
            });
            match m.session.send(&reply) {
                Ok(()) | Err(SendError::Closed(_)) => {}
                Err(e) => {
                    // The client would see a gap in the echoes; say why here.
                    lock(&b).bad(format!("server: {id:#x}: echo failed: {e}"));
                    m.session.close();
                }
            }
            if body.flags & CLOSE_REQ != 0 {
                m.session.close();
            }
        }
    });
}

/// Runs the server until `stop` says so (or its sender goes): reports through `emit`.
pub fn serve(
    max_sessions: usize,
    plant_name: Option<&str>,
    handshakes: Option<usize>,
    interval: Duration,
    stop: mpsc::Receiver<()>,
    mut emit: impl FnMut(ServerMsg),
    rss_of_own_process: bool,
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let svc =
        rt.block_on(async { Service::new(server_config(max_sessions, plant_name, handshakes)) });
    let book = Arc::new(Mutex::new(ServerBook::default()));
    for p in [Protocol::Bits, Protocol::BitsHpke] {
        server_subscribe(&svc, &book, p);
    }
    let (bits, hpke) = rt.block_on(async {
        let a = svc.accept("127.0.0.1:0", Protocol::Bits).await;
        let b = svc.accept("127.0.0.1:0", Protocol::BitsHpke).await;
        (a, b)
    });
    let (bits, hpke) = (
        bits.map_err(|e| format!("accept: {e}"))?,
        hpke.map_err(|e| format!("accept: {e}"))?,
    );
    emit(ServerMsg::Listening {
        bits: bits.local_addr().to_string(),
        hpke: hpke.local_addr().to_string(),
    });
    let rss = || if rss_of_own_process { rss_bytes() } else { 0 };
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(interval) {
        emit(ServerMsg::Stats(server_stats(&svc, &book, rss())));
    }
    let done = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), svc.shutdown())
            .await
            .is_ok()
    });
    let mut st = server_stats(&svc, &book, rss());
    if !done {
        st.violations += 1;
        st.first_violations
            .push("server: shutdown did not finish within 30 s".into());
    }
    emit(ServerMsg::Final(st));
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// `laxsim soak-server`: [`serve`] with JSON lines on stdout; stops when stdin ends.
pub fn serve_child(
    max_sessions: usize,
    plant_name: Option<&str>,
    handshakes: Option<usize>,
    interval: Duration,
) -> bool {
    raise_fd_limit();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        let _ = tx.send(());
    });
    let out = std::io::stdout();
    let res = serve(
        max_sessions,
        plant_name,
        handshakes,
        interval,
        rx,
        |m| {
            let mut o = out.lock();
            let _ = writeln!(o, "{}", serde_json::to_string(&m).unwrap_or_default());
            let _ = o.flush();
        },
        true,
    );
    if let Err(e) = res {
        eprintln!("laxsim soak-server: {e}");
        return false;
    }
    true
}

// ---------------------------------------------------------------------------------------------
// The clients.

struct CSess {
    slot: u16,
    gen_: u16,
    sent: u64,
    recv_next: u64,
    sent_at: VecDeque<Instant>,
    fin_echo: bool,
    closed: bool,
}

#[derive(Default)]
struct Counters {
    opened: AtomicU64,
    closed: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    lost: AtomicU64,
    lost_sessions: AtomicU64,
    connect_failures: AtomicU64,
    destroyer_conns: AtomicU64,
    destroyer_msgs: AtomicU64,
    hostile_started: AtomicU64,
    hostile_closed: AtomicU64,
    hostile_plain: AtomicU64,
}

struct Client {
    svc: Service,
    sessions: Mutex<BTreeMap<u32, Arc<Mutex<CSess>>>>,
    reasons: Mutex<BTreeMap<String, u64>>,
    hist: Histogram,
    c: Counters,
    violations: Mutex<(u64, Vec<String>)>,
    stop: AtomicBool,
}

impl Client {
    fn bad(&self, what: String) {
        let mut v = lock(&self.violations);
        v.0 += 1;
        if v.1.len() < 20 {
            v.1.push(what);
        }
    }
}

fn client_subscribe(cl: &Arc<Client>, proto: Protocol) {
    let c = cl.clone();
    let _ = cl
        .svc
        .sub(Topic::sessions(proto), move |ev: &SessionEvent| {
            if let SessionEvent::Closed { id, .. } = ev
                && let Some(s) = lock(&c.sessions).get(&id.get())
            {
                lock(s).closed = true;
            }
        });
    let c = cl.clone();
    let _ = cl
        .svc
        .sub(Topic::message::<Data>(proto), move |m: &Received<Data>| {
            let id = m.session.id().get();
            let body = &m.msg.0;
            let Some(s) = lock(&c.sessions).get(&id).cloned() else {
                return c.bad(format!(
                    "client: echo seq {} for unknown id {id:#x}",
                    body.seq
                ));
            };
            let mut s = lock(&s);
            let problem = if s.closed {
                Some("after Closed")
            } else if (body.host, body.inc) != (s.slot, s.gen_) {
                Some("of another connection")
            } else if body.seq != s.recv_next || !msg::pattern_ok(body.seq, &body.payload) {
                Some("out of sequence or corrupted")
            } else {
                None
            };
            if let Some(p) = problem {
                let w = format!(
                    "client: {id:#x}: echo seq {} {p} (expected {})",
                    body.seq, s.recv_next
                );
                drop(s);
                return c.bad(w);
            }
            s.recv_next += 1;
            s.fin_echo |= body.flags & FIN != 0;
            if let Some(t) = s.sent_at.pop_front() {
                c.hist.record(t.elapsed());
            }
            c.c.received.fetch_add(1, Relaxed);
        });
}

fn payload_len(rng: &mut Rng) -> usize {
    (if rng.chance(0.05) {
        rng.range(500, 3000)
    } else {
        rng.range(0, 120)
    }) as usize
}

/// Sends the next message of session `s` on `sref`, waiting for room; false once it is closed.
async fn send_next(sref: &SessionRef, s: &Arc<Mutex<CSess>>, len: usize, flags: u8) -> bool {
    loop {
        let res = {
            let mut st = lock(s);
            let body = Body {
                host: st.slot,
                inc: st.gen_,
                sid: sref.id().get(),
                seq: st.sent,
                flags,
                payload: msg::pattern(st.sent, len),
            };
            let r = sref.send(&Data(body));
            if r.is_ok() {
                st.sent += 1;
                st.sent_at.push_back(Instant::now());
            }
            r
        };
        match res {
            Ok(()) => return true,
            Err(SendError::QueueFull { .. }) => {
                if sref.ready().await.is_err() {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
}

async fn slot_task(cl: Arc<Client>, addr: String, proto: Protocol, opts: SoakOpts, slot: u16) {
    let mut rng = Rng::new(opts.seed, 0x50a4 + u64::from(slot));
    let mut gen_: u16 = 0;
    let ramp_ms = opts.ramp.as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(rng.range(0, ramp_ms.max(1)))).await;
    let mean_life = 1.0 / opts.churn.max(1e-6);
    let period = Duration::from_secs_f64(1.0 / opts.rate.max(1e-3));
    let mut backoff = Duration::from_millis(50);
    while !cl.stop.load(Relaxed) {
        let sref = match cl.svc.connect(&addr, proto).await {
            Ok(s) => s,
            Err(e) => {
                let n = cl.c.connect_failures.fetch_add(1, Relaxed);
                if n < 5 {
                    eprintln!("laxsim soak: connect failed (retrying): {e}");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        cl.c.opened.fetch_add(1, Relaxed);
        let id = sref.id().get();
        let st = Arc::new(Mutex::new(CSess {
            slot,
            gen_,
            sent: 0,
            recv_next: 0,
            sent_at: VecDeque::new(),
            fin_echo: false,
            closed: false,
        }));
        gen_ = gen_.wrapping_add(1);
        lock(&cl.sessions).insert(id, st.clone());
        // Lifetime: uniform in [0, 2 * mean), so `churn` of the sessions end per second.
        let life = Duration::from_secs_f64(rng.range(0, 2_000_000) as f64 / 1e6 * mean_life);
        let end = Instant::now() + life;
        let peer_closes = rng.chance(0.5);
        let mut next = Instant::now() + period.mul_f64(rng.range(0, 1000) as f64 / 1000.0);
        let mut open = true;
        loop {
            tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
            if Instant::now() >= end || cl.stop.load(Relaxed) {
                break;
            }
            if !send_next(&sref, &st, payload_len(&mut rng), 0).await {
                open = false;
                break;
            }
            cl.c.sent.fetch_add(1, Relaxed);
            // Jittered period: +-20 %.
            next += period.mul_f64(0.8 + rng.range(0, 400) as f64 / 1000.0);
        }
        let flags = if peer_closes && !cl.stop.load(Relaxed) {
            FIN | CLOSE_REQ
        } else {
            FIN
        };
        if open && send_next(&sref, &st, payload_len(&mut rng), flags).await {
            cl.c.sent.fetch_add(1, Relaxed);
        }
        if flags & CLOSE_REQ == 0 {
            sref.close();
        }
        let reason = match tokio::time::timeout(Duration::from_secs(60), sref.closed()).await {
            Ok(r) => r,
            Err(_) => {
                cl.bad(format!(
                    "client: session {id:#x} not closed 60 s after its end"
                ));
                sref.close();
                sref.closed().await
            }
        };
        cl.c.closed.fetch_add(1, Relaxed);
        if opts.leak_per_session > 0 {
            // black_box: an allocation nothing reads may be optimised away.
            std::hint::black_box(Box::leak(
                vec![0x5au8; opts.leak_per_session].into_boxed_slice(),
            ));
        }
        let st = lock(&cl.sessions).remove(&id);
        let expected = if flags & CLOSE_REQ != 0 {
            matches!(reason, CloseReason::PeerClosed)
                || matches!(&reason, CloseReason::Peer(p) if p.code == CloseCode::Normal)
        } else {
            reason == CloseReason::Local
        };
        let kind = reason.kind().name().to_string();
        *lock(&cl.reasons).entry(kind).or_default() += 1;
        if !expected && !matches!(reason, CloseReason::LingerExpired { .. }) {
            cl.bad(format!(
                "client: session {id:#x} ({}) closed with \"{reason}\"",
                if flags & CLOSE_REQ != 0 {
                    "the server was asked to close"
                } else {
                    "closed by the client"
                }
            ));
        }
        if let Some(st) = st {
            let s = lock(&st);
            if reason.is_clean() && (s.recv_next != s.sent || !s.fin_echo) {
                cl.c.lost
                    .fetch_add(s.sent - s.recv_next.min(s.sent), Relaxed);
                cl.c.lost_sessions.fetch_add(1, Relaxed);
                cl.bad(format!(
                    "client: session {id:#x} closed cleanly (\"{reason}\") but {} of its {} messages were not echoed back",
                    s.sent - s.recv_next.min(s.sent),
                    s.sent
                ));
            }
        }
    }
}

async fn raw_connect(from: [u8; 4], to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(SocketAddr::from((from, 0)))?;
    sock.connect(to).await
}

fn frame(body: &Body) -> Vec<u8> {
    attack::frame(1, &borsh::to_vec(body).unwrap_or_default())
}

async fn destroyer_task(cl: Arc<Client>, to: SocketAddr, opts: SoakOpts, n: u16) {
    let mut rng = Rng::new(opts.seed, 0xde57 + u64::from(n));
    let ramp_ms = opts.ramp.as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(rng.range(0, ramp_ms.max(1)))).await;
    let mean_life = 1.0 / opts.churn.max(1e-6);
    let period = Duration::from_secs_f64(1.0 / opts.rate.max(1e-3));
    let mut inc = 0u16;
    while !cl.stop.load(Relaxed) {
        let Ok(mut s) = raw_connect(DESTROYER_IP, to).await else {
            cl.c.connect_failures.fetch_add(1, Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        cl.c.destroyer_conns.fetch_add(1, Relaxed);
        let life = Duration::from_secs_f64(rng.range(0, 2_000_000) as f64 / 1e6 * mean_life);
        let end = Instant::now() + life;
        let mut seq = 0;
        while Instant::now() < end && !cl.stop.load(Relaxed) {
            let len = payload_len(&mut rng);
            let body = Body {
                host: u16::MAX - n,
                inc,
                sid: 0,
                seq,
                flags: 0,
                payload: msg::pattern(seq, len),
            };
            if s.write_all(&frame(&body)).await.is_err() {
                break;
            }
            seq += 1;
            cl.c.destroyer_msgs.fetch_add(1, Relaxed);
            tokio::time::sleep(period).await;
        }
        inc = inc.wrapping_add(1);
        // The abortive end: RST, no FIN.
        let _ = s.set_zero_linger();
        drop(s);
    }
}

async fn hostile_one(cl: Arc<Client>, to: SocketAddr, attack: Attack, idx: u8, seed: u64) {
    let mut rng = Rng::new(seed, 0x4057);
    let plan = attack::plan(attack, 9, laxnet::Config::default().max_frame, &mut rng);
    cl.c.hostile_started.fetch_add(1, Relaxed);
    let Ok(mut s) = raw_connect([127, 0, 1, idx + 1], to).await else {
        return cl.bad(format!("hostile ({}): connect failed", attack.name()));
    };
    if let Some(gap) = plan.trickle {
        for b in &plan.bytes {
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(gap).await;
        }
    } else {
        let _ = s.write_all(&plan.bytes).await;
    }
    if plan.fin {
        let _ = s.shutdown().await;
    }
    // The server must close it: read until the end of the stream or an error.
    let limit = SERVER_IDLE + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok();
    if closed {
        cl.c.hostile_closed.fetch_add(1, Relaxed);
    } else {
        cl.bad(format!(
            "hostile ({}): not closed by the server within {} s",
            attack.name(),
            limit.as_secs()
        ));
    }
}

async fn hostile_task(cl: Arc<Client>, bits: SocketAddr, hpke: SocketAddr, opts: SoakOpts) {
    let Some(every) = opts.hostile_every else {
        return;
    };
    let mut rng = Rng::new(opts.seed, 0x4051);
    let mut running = Vec::new();
    let encrypted = opts.protocol == Protocol::BitsHpke;
    while !cl.stop.load(Relaxed) {
        tokio::time::sleep(every).await;
        // With encryption, every third attack is on the handshake.
        let (attack, to) = if encrypted && rng.chance(0.33) {
            let a = if rng.chance(0.5) {
                Attack::HelloGarbage
            } else {
                Attack::HelloTruncated
            };
            (a, hpke)
        } else {
            cl.c.hostile_plain.fetch_add(1, Relaxed);
            (PLAIN_ATTACKS[rng.below(PLAIN_ATTACKS.len())], bits)
        };
        let idx = Attack::ALL
            .iter()
            .position(|(a, _)| *a == attack)
            .unwrap_or(0) as u8;
        running.retain(|h: &tokio::task::JoinHandle<()>| !h.is_finished());
        running.push(tokio::spawn(hostile_one(
            cl.clone(),
            to,
            attack,
            idx,
            rng.next_u64(),
        )));
    }
    for h in running {
        let _ = h.await;
    }
}

// ---------------------------------------------------------------------------------------------
// The run and its report.

/// One progress sample.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sample {
    /// Seconds since the start.
    pub t: f64,
    /// Client sessions live.
    pub live: usize,
    /// Client sessions opened so far.
    pub opened: u64,
    /// Client sessions closed so far.
    pub closed: u64,
    /// Echoes received per second over the interval.
    pub msgs_per_s: f64,
    /// Latency (send to echo) over the interval, microseconds.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// The clients' process RSS (the whole process when the server runs in it).
    pub rss_client: u64,
    /// The server's process RSS (0 when in-process).
    pub rss_server: u64,
    /// Client pool bytes (in use + retained).
    pub pool_client: usize,
    /// Server pool bytes (in use + retained).
    pub pool_server: usize,
}

/// A plateau check's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Plateau {
    /// What was checked.
    pub what: String,
    /// Max over the middle third.
    pub middle_max: u64,
    /// Max over the last third.
    pub last_max: u64,
    /// The bound the last third must stay under.
    pub bound: u64,
    /// `None`: too few samples to judge; else whether it held.
    pub ok: Option<bool>,
}

/// The plateau rule: over the samples `(t, value)` of a run of length `total`, the maximum in
/// the last third may exceed the maximum in the middle third by at most `pct` % plus `slack`.
/// The first third (ramp-up, pools and allocator arenas filling) is not judged. Needs at least
/// three samples in each judged third.
pub fn plateau(what: &str, samples: &[(f64, u64)], total: f64, pct: f64, slack: u64) -> Plateau {
    let third = |lo: f64, hi: f64| -> Vec<u64> {
        samples
            .iter()
            .filter(|(t, _)| *t >= lo && *t < hi)
            .map(|(_, v)| *v)
            .collect()
    };
    let mid = third(total / 3.0, 2.0 * total / 3.0);
    let last = third(2.0 * total / 3.0, f64::INFINITY);
    let middle_max = mid.iter().copied().max().unwrap_or(0);
    let last_max = last.iter().copied().max().unwrap_or(0);
    let bound = (middle_max as f64 * (1.0 + pct / 100.0)) as u64 + slack;
    Plateau {
        what: what.to_string(),
        middle_max,
        last_max,
        bound,
        ok: (mid.len() >= 3 && last.len() >= 3).then_some(last_max <= bound),
    }
}

/// RSS may grow by this much (%) from the middle to the last third ...
pub const RSS_PCT: f64 = 10.0;
/// ... plus this.
pub const RSS_SLACK: u64 = 16 << 20;
/// Pool bytes may grow by this much (%) ...
pub const POOL_PCT: f64 = 10.0;
/// ... plus this.
pub const POOL_SLACK: u64 = 2 << 20;

/// What a soak found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SoakReport {
    /// Sessions held.
    pub sessions: usize,
    /// Protocol.
    pub protocol: String,
    /// Whether the server ran in a child process.
    pub server_child: bool,
    /// The soft fd limit after raising it.
    pub fd_limit: u64,
    /// Wall seconds, traffic only.
    pub seconds: f64,
    /// Client messages sent (destroyers' not included).
    pub sent: u64,
    /// Echoes received.
    pub received: u64,
    /// Messages lost on sessions the client saw end cleanly.
    pub lost: u64,
    /// Sessions that ended cleanly on the client and lost messages.
    pub lost_sessions_client: u64,
    /// Sessions that ended cleanly on the server without the client's last message.
    pub lost_sessions_server: u64,
    /// Client sessions opened.
    pub opened: u64,
    /// Client sessions closed.
    pub closed: u64,
    /// Connects that failed (retried).
    pub connect_failures: u64,
    /// Client close reasons by kind.
    pub client_closes: BTreeMap<String, u64>,
    /// Server close reasons by kind.
    pub server_closes: Vec<(String, u64)>,
    /// Destroyers' connections / messages; server sessions that closed with a reset.
    pub destroyer_conns: u64,
    /// Destroyers' messages.
    pub destroyer_msgs: u64,
    /// Server sessions of destroyers closed as expected.
    pub destroyed: u64,
    /// Hostile connections started / closed by the server.
    pub hostile_started: u64,
    /// Closed.
    pub hostile_closed: u64,
    /// Hostile sessions closed with the reason their attack implies, by attack.
    pub hostile_ok: BTreeMap<String, u64>,
    /// Server handshake failures (encrypted hostile peers).
    pub handshake_failures: u64,
    /// Server: connections refused / stalled handshakes evicted by handshake admission.
    pub handshakes_refused: u64,
    /// Evicted.
    pub handshakes_evicted: u64,
    /// Samples over time.
    pub samples: Vec<Sample>,
    /// Plateau verdicts.
    pub plateaus: Vec<Plateau>,
    /// Violations (count) and the first ones.
    pub violations: u64,
    /// The first violations.
    pub first_violations: Vec<String>,
    /// Failed checks, one line each; empty: passed.
    pub failures: Vec<String>,
}

impl SoakReport {
    /// Passed every check.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

enum ServerHandle {
    Thread(mpsc::Sender<()>, std::thread::JoinHandle<()>),
    Child(std::process::Child),
}

fn start_server(
    opts: &SoakOpts,
    child: Option<&std::path::Path>,
    max_sessions: usize,
) -> Result<(ServerHandle, mpsc::Receiver<ServerMsg>), String> {
    let (tx, rx) = mpsc::channel();
    if let Some(exe) = child {
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("soak-server")
            .arg("--max-sessions")
            .arg(max_sessions.to_string())
            .arg("--interval-ms")
            .arg(opts.interval.as_millis().to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        if let Some(p) = &opts.plant {
            cmd.arg("--plant").arg(p);
        }
        if let Some(n) = opts.server_handshakes {
            cmd.arg("--handshakes").arg(n.to_string());
        }
        let mut ch = cmd.spawn().map_err(|e| format!("{}: {e}", exe.display()))?;
        let out = ch.stdout.take().ok_or("no stdout")?;
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<ServerMsg>(&line) {
                    Ok(m) => {
                        if tx.send(m).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("soak-server: {line}"),
                }
            }
        });
        Ok((ServerHandle::Child(ch), rx))
    } else {
        let (stop_tx, stop_rx) = mpsc::channel();
        let (plant, interval, hs) = (opts.plant.clone(), opts.interval, opts.server_handshakes);
        let h = std::thread::spawn(move || {
            if let Err(e) = serve(
                max_sessions,
                plant.as_deref(),
                hs,
                interval,
                stop_rx,
                |m| {
                    let _ = tx.send(m);
                },
                false,
            ) {
                eprintln!("laxsim soak: server: {e}");
            }
        });
        Ok((ServerHandle::Thread(stop_tx, h), rx))
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// Runs the soak.
pub fn soak(opts: &SoakOpts) -> SoakReport {
    let fd_limit = raise_fd_limit();
    let mut rep = SoakReport {
        sessions: opts.sessions,
        protocol: opts.protocol.to_string(),
        fd_limit,
        ..SoakReport::default()
    };
    // Both ends' sockets, the raw peers' and a margin for the runtime, listeners and files.
    let extra = opts.destroyers + 256;
    let need_both = 2 * (opts.sessions + opts.destroyers) + extra;
    let child = match &opts.server {
        ServerPlace::InProcess => None,
        ServerPlace::Child(p) => Some(p.clone()),
        ServerPlace::Auto if (need_both as u64) <= fd_limit => None,
        ServerPlace::Auto => match std::env::current_exe() {
            Ok(p) => Some(p),
            Err(e) => {
                rep.failures
                    .push(format!("cannot re-execute this program: {e}"));
                return rep;
            }
        },
    };
    let per_process = if child.is_some() {
        opts.sessions + opts.destroyers + extra
    } else {
        need_both
    };
    if per_process as u64 > fd_limit {
        rep.failures.push(format!(
            "{} sessions need about {per_process} file descriptors per process; the limit is {fd_limit}",
            opts.sessions
        ));
        return rep;
    }
    rep.server_child = child.is_some();
    let max_sessions = opts.sessions + opts.destroyers + 1000;
    let (server, srx) = match start_server(opts, child.as_deref(), max_sessions) {
        Ok(s) => s,
        Err(e) => {
            rep.failures.push(format!("server: {e}"));
            return rep;
        }
    };
    let (bits, hpke) = match srx.recv_timeout(Duration::from_secs(30)) {
        Ok(ServerMsg::Listening { bits, hpke }) => (bits, hpke),
        _ => {
            rep.failures.push("the server did not start".into());
            return rep;
        }
    };
    let (Ok(bits_addr), Ok(hpke_addr)) = (bits.parse::<SocketAddr>(), hpke.parse::<SocketAddr>())
    else {
        rep.failures.push("bad server addresses".into());
        return rep;
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            rep.failures.push(format!("runtime: {e}"));
            return rep;
        }
    };
    let mut cfg = Config::default()
        .with_max_sessions(opts.sessions + 100)
        .with_encryption(Encryption::client(key().public()))
        .with_logging(false);
    plant(&mut cfg, opts.plant.as_deref());
    let cl = Arc::new(Client {
        svc: rt.block_on(async { Service::new(cfg) }),
        sessions: Mutex::default(),
        reasons: Mutex::default(),
        hist: Histogram::default(),
        c: Counters::default(),
        violations: Mutex::default(),
        stop: AtomicBool::new(false),
    });
    client_subscribe(&cl, opts.protocol);
    let addr = if opts.protocol == Protocol::BitsHpke {
        hpke.clone()
    } else {
        bits.clone()
    };
    let start = Instant::now();
    let mut tasks = Vec::new();
    {
        let _g = rt.enter();
        for slot in 0..opts.sessions {
            tasks.push(tokio::spawn(slot_task(
                cl.clone(),
                addr.clone(),
                opts.protocol,
                opts.clone(),
                slot as u16,
            )));
        }
        for n in 0..opts.destroyers {
            tasks.push(tokio::spawn(destroyer_task(
                cl.clone(),
                bits_addr,
                opts.clone(),
                n as u16,
            )));
        }
        tasks.push(tokio::spawn(hostile_task(
            cl.clone(),
            bits_addr,
            hpke_addr,
            opts.clone(),
        )));
    }
    // Progress, until the duration is over.
    let mut last_server = ServerStats::default();
    let mut server_final = None;
    let mut last_recv = 0;
    let mut last_t = 0.0;
    let drain = |last_server: &mut ServerStats, server_final: &mut Option<ServerStats>| {
        while let Ok(m) = srx.try_recv() {
            match m {
                ServerMsg::Stats(s) => *last_server = s,
                ServerMsg::Final(s) => *server_final = Some(s),
                ServerMsg::Listening { .. } => {}
            }
        }
    };
    if opts.progress {
        eprintln!(
            "laxsim soak: {} sessions ({}), {} msg/s each, churn {}/s, {} destroyers, hostile every {:?}, {:?}; server {}",
            opts.sessions,
            opts.protocol,
            opts.rate,
            opts.churn,
            opts.destroyers,
            opts.hostile_every,
            opts.duration,
            if child.is_some() {
                "in a child process"
            } else {
                "in this process"
            }
        );
    }
    while start.elapsed() < opts.duration {
        let left = opts.duration.saturating_sub(start.elapsed());
        std::thread::sleep(opts.interval.min(left));
        drain(&mut last_server, &mut server_final);
        let t = start.elapsed().as_secs_f64();
        let st = cl.svc.status();
        let recv = cl.c.received.load(Relaxed);
        let (_, p50, p99) = cl.hist.take();
        let s = Sample {
            t,
            live: st.live(),
            opened: cl.c.opened.load(Relaxed),
            closed: cl.c.closed.load(Relaxed),
            msgs_per_s: (recv - last_recv) as f64 / (t - last_t).max(1e-3),
            p50_us: p50,
            p99_us: p99,
            rss_client: rss_bytes(),
            rss_server: last_server.rss,
            pool_client: st.pool.in_use_bytes + st.pool.retained_bytes,
            pool_server: last_server.pool_in_use + last_server.pool_retained,
        };
        (last_recv, last_t) = (recv, t);
        if opts.progress {
            let v = lock(&cl.violations).0 + last_server.violations;
            eprintln!(
                "[{:>7.1}s] live {:>6} opened {:>8} closed {:>8} | {:>8.0} echoes/s p50 {:>6.2} ms p99 {:>7.2} ms | rss client {:>6.1} MiB server {:>6.1} MiB | pool client {:>5.1} MiB server {:>5.1} MiB | hostile {}/{} | lost {} | violations {v}",
                t,
                s.live,
                s.opened,
                s.closed,
                s.msgs_per_s,
                p50 as f64 / 1000.0,
                p99 as f64 / 1000.0,
                mib(s.rss_client),
                mib(s.rss_server),
                mib(s.pool_client as u64),
                mib(s.pool_server as u64),
                cl.c.hostile_closed.load(Relaxed),
                cl.c.hostile_started.load(Relaxed),
                cl.c.lost.load(Relaxed),
            );
        }
        rep.samples.push(s);
    }
    rep.seconds = start.elapsed().as_secs_f64();
    // The end: every session closes (gracefully), the raw peers stop, both services shut down.
    cl.stop.store(true, Relaxed);
    let ended = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), async {
            for t in tasks {
                let _ = t.await;
            }
        })
        .await
        .is_ok()
    });
    if !ended {
        rep.failures
            .push("the client tasks did not finish within 120 s of the end".into());
    }
    let down = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), cl.svc.shutdown())
            .await
            .is_ok()
    });
    let cst = cl.svc.status();
    if !down {
        rep.failures
            .push("the client service did not shut down within 30 s".into());
    }
    if cst.live() != 0 || cst.pool.in_use_bytes != 0 || cst.panics != 0 {
        rep.failures.push(format!(
            "client after shutdown: {} live, {} pooled bytes in use, {} panics",
            cst.live(),
            cst.pool.in_use_bytes,
            cst.panics
        ));
    }
    match server {
        ServerHandle::Thread(stop, h) => {
            let _ = stop.send(());
            let _ = h.join();
        }
        ServerHandle::Child(mut ch) => {
            drop(ch.stdin.take()); // ends its stdin: it shuts down
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                match ch.try_wait() {
                    Ok(Some(code)) => {
                        if !code.success() {
                            rep.failures
                                .push(format!("the server process exited with {code}"));
                        }
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    _ => {
                        let _ = ch.kill();
                        let _ = ch.wait();
                        rep.failures
                            .push("the server process did not exit within 60 s".into());
                        break;
                    }
                }
            }
        }
    }
    // The reader thread may still be forwarding the last lines.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server_final.is_none() && Instant::now() < deadline {
        drain(&mut last_server, &mut server_final);
        std::thread::sleep(Duration::from_millis(20));
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    let Some(sf) = server_final else {
        rep.failures.push("no final report from the server".into());
        return rep;
    };
    if sf.live != 0 || sf.pool_in_use != 0 || sf.panics != 0 {
        rep.failures.push(format!(
            "server after shutdown: {} live, {} pooled bytes in use, {} panics",
            sf.live, sf.pool_in_use, sf.panics
        ));
    }
    // Sums.
    let c = &cl.c;
    rep.sent = c.sent.load(Relaxed);
    rep.received = c.received.load(Relaxed);
    rep.lost = c.lost.load(Relaxed);
    rep.lost_sessions_client = c.lost_sessions.load(Relaxed);
    rep.lost_sessions_server = sf.lost_sessions;
    rep.opened = c.opened.load(Relaxed);
    rep.closed = c.closed.load(Relaxed);
    rep.connect_failures = c.connect_failures.load(Relaxed);
    rep.client_closes = lock(&cl.reasons).clone();
    rep.server_closes = sf.closes.clone();
    rep.destroyer_conns = c.destroyer_conns.load(Relaxed);
    rep.destroyer_msgs = c.destroyer_msgs.load(Relaxed);
    rep.destroyed = sf.destroyed;
    rep.hostile_started = c.hostile_started.load(Relaxed);
    rep.hostile_closed = c.hostile_closed.load(Relaxed);
    rep.hostile_ok = sf.hostile_ok.clone();
    rep.handshake_failures = sf.handshake_failures;
    rep.handshakes_refused = sf.handshakes_refused;
    rep.handshakes_evicted = sf.handshakes_evicted;
    let (cv, cfirst) = lock(&cl.violations).clone();
    rep.violations = cv + sf.violations;
    rep.first_violations = cfirst.into_iter().chain(sf.first_violations).collect();
    // Checks.
    if rep.lost > 0 || rep.lost_sessions_client > 0 || rep.lost_sessions_server > 0 {
        rep.failures.push(format!(
            "lost messages on clean closes: {} messages on {} sessions (client side), {} sessions without the client's last message (server side)",
            rep.lost, rep.lost_sessions_client, rep.lost_sessions_server
        ));
    }
    if rep.violations > 0 {
        rep.failures.push(format!(
            "{} violation(s), first: {}",
            rep.violations,
            rep.first_violations.first().map_or("?", |s| s.as_str())
        ));
    }
    if rep.received == 0 || rep.opened == 0 {
        rep.failures.push("no traffic".into());
    }
    let hostile_ok: u64 = rep.hostile_ok.values().sum();
    if rep.hostile_closed != rep.hostile_started {
        rep.failures.push(format!(
            "{} of {} hostile connections were not closed by the server",
            rep.hostile_started - rep.hostile_closed,
            rep.hostile_started
        ));
    }
    if hostile_ok < c.hostile_plain.load(Relaxed) {
        rep.failures.push(format!(
            "{} hostile plaintext sessions, {} closed with the reason their attack implies",
            c.hostile_plain.load(Relaxed),
            hostile_ok
        ));
    }
    let total = rep.seconds;
    let series = |f: &dyn Fn(&Sample) -> u64| -> Vec<(f64, u64)> {
        rep.samples.iter().map(|s| (s.t, f(s))).collect()
    };
    let mut plateaus = vec![
        plateau(
            "RSS (client process)",
            &series(&|s| s.rss_client),
            total,
            RSS_PCT,
            RSS_SLACK,
        ),
        plateau(
            "pool bytes (client)",
            &series(&|s| s.pool_client as u64),
            total,
            POOL_PCT,
            POOL_SLACK,
        ),
        plateau(
            "pool bytes (server)",
            &series(&|s| s.pool_server as u64),
            total,
            POOL_PCT,
            POOL_SLACK,
        ),
    ];
    if rep.server_child {
        plateaus.push(plateau(
            "RSS (server process)",
            &series(&|s| s.rss_server),
            total,
            RSS_PCT,
            RSS_SLACK,
        ));
    }
    for p in &plateaus {
        if p.ok == Some(false) {
            rep.failures.push(format!(
                "{} did not plateau: {:.1} MiB in the last third, over the bound {:.1} MiB (middle third max {:.1} MiB + {RSS_PCT}% / {POOL_PCT}% + slack)",
                p.what,
                mib(p.last_max),
                mib(p.bound),
                mib(p.middle_max)
            ));
        }
    }
    rep.plateaus = plateaus;
    rep
}

/// The report as text.
pub fn print_report(r: &SoakReport) {
    println!(
        "laxsim soak: {} sessions ({}), {:.0} s, server {}, fd limit {}",
        r.sessions,
        r.protocol,
        r.seconds,
        if r.server_child {
            "in a child process"
        } else {
            "in-process"
        },
        r.fd_limit
    );
    println!(
        "messages: {} sent, {} echoed back, {} lost on clean closes (client: {} sessions, server: {} sessions)",
        r.sent, r.received, r.lost, r.lost_sessions_client, r.lost_sessions_server
    );
    println!(
        "sessions: {} opened, {} closed, {} connect failures (retried)",
        r.opened, r.closed, r.connect_failures
    );
    let join = |v: &mut dyn Iterator<Item = (String, u64)>| {
        v.map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "close reasons (client): {}",
        join(&mut r.client_closes.clone().into_iter())
    );
    println!(
        "close reasons (server): {}",
        join(&mut r.server_closes.clone().into_iter())
    );
    println!(
        "destroyers: {} connections, {} messages, {} reset sessions closed as expected",
        r.destroyer_conns, r.destroyer_msgs, r.destroyed
    );
    println!(
        "hostile: {} started, {} closed by the server; with the reason their attack implies: {}",
        r.hostile_started,
        r.hostile_closed,
        join(&mut r.hostile_ok.clone().into_iter()),
    );
    println!(
        "server handshakes: {} failed, {} refused, {} evicted",
        r.handshake_failures, r.handshakes_refused, r.handshakes_evicted
    );
    println!(
        "\n{:>8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10}",
        "t (s)",
        "live",
        "opened",
        "echoes/s",
        "p50 ms",
        "p99 ms",
        "rss cl MiB",
        "rss sv MiB",
        "pool cl",
        "pool sv"
    );
    let step = (r.samples.len() / 40).max(1);
    for (i, s) in r.samples.iter().enumerate() {
        if i % step != 0 && i + 1 != r.samples.len() {
            continue;
        }
        println!(
            "{:>8.0} {:>7} {:>9} {:>9.0} {:>9.2} {:>9.2} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            s.t,
            s.live,
            s.opened,
            s.msgs_per_s,
            s.p50_us as f64 / 1000.0,
            s.p99_us as f64 / 1000.0,
            mib(s.rss_client),
            mib(s.rss_server),
            mib(s.pool_client as u64),
            mib(s.pool_server as u64)
        );
    }
    println!();
    for p in &r.plateaus {
        println!(
            "plateau {:<22} middle third max {:>7.1} MiB, last third max {:>7.1} MiB, bound {:>7.1} MiB: {}",
            p.what,
            mib(p.middle_max),
            mib(p.last_max),
            mib(p.bound),
            match p.ok {
                Some(true) => "ok",
                Some(false) => "GREW",
                None => "too few samples to judge",
            }
        );
    }
    for v in r.first_violations.iter().take(10) {
        println!("  - {v}");
    }
    if r.passed() {
        println!("\nlaxsim soak: passed");
    } else {
        for f in &r.failures {
            println!("FAILED: {f}");
        }
        println!("\nlaxsim soak: FAILED");
    }
}

/// `30s`, `30m`, `2h`, `500ms`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?} (try 30s, 30m, 2h, 500ms)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m, h)")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("duration {s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plateau_rule() {
        let flat: Vec<(f64, u64)> = (0..30).map(|i| (i as f64, 100 << 20)).collect();
        assert_eq!(plateau("x", &flat, 30.0, 10.0, 0).ok, Some(true));
        // Growing 1 MiB a second: the last third ends 10 MiB above the middle's max.
        let grow: Vec<(f64, u64)> = (0..30).map(|i| (i as f64, (100 + i) << 20)).collect();
        assert_eq!(plateau("x", &grow, 30.0, 5.0, 1 << 20).ok, Some(false));
        assert_eq!(plateau("x", &grow[..4], 30.0, 5.0, 0).ok, None);
    }

    #[test]
    fn histogram_quantiles() {
        let h = Histogram::default();
        for us in 1..=1000 {
            h.record(Duration::from_micros(us));
        }
        let (n, p50, p99) = h.take();
        assert_eq!(n, 1000);
        assert!((500..=620).contains(&p50), "{p50}");
        assert!((990..=1200).contains(&p99), "{p99}");
        assert_eq!(h.take().0, 0);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("x").is_err() && parse_duration("3d").is_err());
    }

    #[test]
    fn sources_name_the_peers() {
        let a = |ip: [u8; 4]| classify(SocketAddr::from((ip, 5)));
        assert_eq!(a([127, 0, 0, 1]), Peer::Honest);
        assert_eq!(a(DESTROYER_IP), Peer::Destroyer);
        assert_eq!(a([127, 0, 1, 1]), Peer::Hostile(Attack::ALL[0].0));
    }
}
