//! The lifecycle oracle on real sockets and real threads: what the single-threaded simulator
//! cannot show.
//!
//! turmoil runs every host on one thread, so the library's races between threads never
//! happen there: a sender on one thread against the session task parking on another, a close
//! request racing a write error, the destroy that must give the buffers back *before* it
//! releases the id (someone waiting for the last session to go may look at the pool the
//! moment it goes). [`stress`] runs rounds of a workload on a multi-thread Tokio runtime over
//! loopback, with the library on [`laxnet::TokioRuntime`]: clients connect, send sequenced
//! messages in bursts against a small send-queue limit (waiting in `ready()` after
//! `QueueFull`), the server answers, and sessions end every way at once — closed by their own
//! task, by another task at the same moment, by the server at the client's request, by both.
//! Ids come from an 8-bit id space (255 ids), so the id counter wraps many times a round.
//!
//! Checked, per session: one `Opened`, one `Closed`, nothing delivered after `Closed`, FIFO
//! without gaps or corruption, no record or frame refused as malformed on a connection no
//! fault harmed, every `Closed(reason)` told to senders agrees with the event,
//! a clean end on both sides loses nothing in either direction, ids stay inside the id
//! space, a closed session's ref never sends again and its id resolves only to a newer
//! session; per round: while the services shut down, an observer thread sees the pool
//! empty whenever no session is live, and after the shutdown nothing is live, no pooled byte
//! is in use and no handshake is in progress.
//!
//! With [`StressOpts::faults`] the services run on [`ChaosRuntime`]s that make a scenario's
//! socket faults in the real streams (`laxsim run --real`, [`crate::real`]); a clean end is
//! then required to lose nothing only on connections no reset or corruption harmed, and a
//! connect may fail.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // real time and sockets: the point

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use laxnet::{
    CloseReason, Config, CryptoError, Encryption, KeyPair, Protocol, Received, SendError, Service,
    SessionEvent, SessionRef, Topic,
};

use crate::chaos::{ChaosCounts, ChaosRuntime, FaultCounts};
use crate::msg::{self, Body, CLOSE_REQ, Data};
use crate::rng::Rng;
use crate::scenario::IoFaults;

/// How to run the stress.
#[derive(Debug, Clone)]
pub struct StressOpts {
    /// Rounds (each a fresh pair of services and runtime).
    pub rounds: u32,
    /// Seed of the workload's choices (thread timing is not seeded: that is the point).
    pub seed: u64,
    /// Worker threads of the runtime.
    pub threads: usize,
    /// Concurrent client tasks per round.
    pub clients: usize,
    /// Sessions each client task opens, one after another.
    pub sessions: usize,
    /// Messages per session, at most.
    pub msgs: u64,
    /// Sessions one client opens one after another after the concurrent phase, each closed
    /// before the next: the moments no session is live, which the pool watcher checks.
    pub churn: usize,
    /// Use "bits-hpke".
    pub encrypted: bool,
    /// A planted bug for both services (`laxnet::planted` names; needs the feature).
    pub plant: Option<String>,
    /// Socket faults in the server's and the clients' streams ([`ChaosRuntime`]; `laxsim run
    /// --real`). A connect may then fail (a reset during the handshake) without a violation.
    pub faults: Option<(IoFaults, IoFaults)>,
    /// Encrypted: `Encryption::max_record` of both services (`None`: the library's).
    pub max_record: Option<usize>,
}

impl Default for StressOpts {
    fn default() -> Self {
        StressOpts {
            rounds: 10,
            seed: 1,
            threads: 3,
            clients: 8,
            sessions: 12,
            msgs: 40,
            churn: 60,
            encrypted: false,
            plant: None,
            faults: None,
            max_record: None,
        }
    }
}

/// What a stress run found.
#[derive(Debug, Default)]
pub struct StressReport {
    /// Rounds run.
    pub rounds: u32,
    /// Sessions opened (both sides).
    pub sessions: u64,
    /// Messages delivered.
    pub messages: u64,
    /// Socket faults injected (with [`StressOpts::faults`]).
    pub faults: FaultCounts,
    /// Connects that failed under injected faults.
    pub failed_connects: u64,
    /// Failed invariants (the first 50), each with its round.
    pub violations: Vec<String>,
}

/// Client or server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    Client,
    Server,
}

/// One session as the oracle saw it.
#[derive(Debug, Default)]
struct Rec {
    id: u32,
    closed: u32,
    reason: Option<CloseReason>,
    told: Option<CloseReason>,
    sent: u64,
    recv_next: u64,
    /// The peer's session id, from its first message.
    peer: Option<u32>,
    /// Names the connection (client task, session number): both ends put it in every message.
    token: Option<(u16, u16)>,
    /// A server session's peer port (the client end's), which names its connection to the
    /// fault injection.
    port: u16,
}

#[derive(Default)]
struct Book {
    recs: Vec<(Side, Rec)>,
    by_id: BTreeMap<(Side, u32), usize>,
    violations: Vec<String>,
    delivered: u64,
    failed_connects: u64,
}

type Shared = Arc<Mutex<Book>>;

fn lock(b: &Shared) -> MutexGuard<'_, Book> {
    b.lock().unwrap_or_else(|p| p.into_inner())
}

/// Id bits of the stress services: the id counter wraps after 255 ids (64 sessions fit).
const ID_BITS: u32 = 8;

impl Book {
    fn bad(&mut self, what: String) {
        if self.violations.len() < 50 {
            self.violations.push(what);
        }
    }

    fn opened(&mut self, side: Side, id: u32) -> usize {
        if id >> ID_BITS != 0 {
            self.bad(format!(
                "{side:?} id {id:#x} is outside the {ID_BITS}-bit id space"
            ));
        }
        if let Some(&old) = self.by_id.get(&(side, id))
            && self.recs[old].1.closed == 0
        {
            self.bad(format!(
                "{side:?} id {id:#x} issued while its holder is open"
            ));
        }
        let idx = self.recs.len();
        self.recs.push((
            side,
            Rec {
                id,
                ..Rec::default()
            },
        ));
        self.by_id.insert((side, id), idx);
        idx
    }

    fn closed(&mut self, side: Side, id: u32, reason: &CloseReason) {
        let Some(&idx) = self.by_id.get(&(side, id)) else {
            return self.bad(format!("{side:?} Closed for unknown id {id:#x}"));
        };
        let r = &mut self.recs[idx].1;
        r.closed += 1;
        if r.closed > 1 {
            let n = r.closed;
            return self.bad(format!("{side:?} {id:#x}: Closed published {n} times"));
        }
        r.reason = Some(reason.clone());
        // A clean close that lost bytes (its stream failed during the flush, or its linger ran
        // out) is not clean in the end, whatever its senders were told while it flushed: the
        // same rule as the simulator's oracle (`State::check_reason`).
        let lost_after_clean = |t: &CloseReason| t.is_clean() && !reason.is_clean();
        if let Some(t) = r.told.clone()
            && t != *reason
            && !lost_after_clean(&t)
        {
            self.bad(format!(
                "{side:?} {id:#x}: Closed says \"{reason}\" but senders were told \"{t}\""
            ));
        }
    }

    fn told(&mut self, idx: usize, reason: &CloseReason) {
        let r = &mut self.recs[idx].1;
        match &r.told {
            None => r.told = Some(reason.clone()),
            Some(t) if t == reason => {}
            Some(t) => {
                let what = format!("{:#x}: senders told \"{t}\" and then \"{reason}\"", r.id);
                self.bad(what);
            }
        }
    }

    fn recv(&mut self, side: Side, id: u32, b: &Body) {
        self.delivered += 1;
        let Some(&idx) = self.by_id.get(&(side, id)) else {
            return self.bad(format!("{side:?} message for unknown id {id:#x}"));
        };
        let r = &mut self.recs[idx].1;
        let mut bad = Vec::new();
        if r.closed > 0 {
            bad.push(format!(
                "{side:?} {id:#x}: message seq {} after Closed",
                b.seq
            ));
        }
        if *r.token.get_or_insert((b.host, b.inc)) != (b.host, b.inc) {
            bad.push(format!("{side:?} {id:#x}: message of another connection"));
        }
        if *r.peer.get_or_insert(b.sid) != b.sid {
            bad.push(format!(
                "{side:?} {id:#x}: message from {:#x}, its peer is {:#x}",
                b.sid,
                r.peer.unwrap_or(0)
            ));
        }
        if b.seq != r.recv_next || !msg::pattern_ok(b.seq, &b.payload) {
            bad.push(format!(
                "{side:?} {id:#x}: expected seq {} got {} (gap, reorder or corruption)",
                r.recv_next, b.seq
            ));
        }
        r.recv_next = b.seq + 1;
        for w in bad {
            self.bad(w);
        }
    }

    /// Sends one message on `sref` (session `idx` of `side`) under the book's lock, so its
    /// sequence number is taken in send order. `Ok(true)`: sent; `Ok(false)`: `QueueFull`.
    fn send(
        &mut self,
        idx: usize,
        sref: &SessionRef,
        len: usize,
        flags: u8,
    ) -> Result<bool, Option<SendError>> {
        let seq = self.recs[idx].1.sent;
        let (host, inc) = self.recs[idx].1.token.unwrap_or_default();
        let body = Body {
            host,
            inc,
            sid: sref.id().get(),
            seq,
            flags,
            payload: msg::pattern(seq, len),
        };
        match sref.send(&Data(body)) {
            Ok(()) => {
                self.recs[idx].1.sent += 1;
                Ok(true)
            }
            Err(SendError::QueueFull { .. }) => Ok(false),
            Err(SendError::Closed(r)) => {
                self.told(idx, &r);
                Err(None)
            }
            Err(e) => Err(Some(e)),
        }
    }

    /// After the round: one `Closed` each, and both directions of every clean end delivered
    /// (unless an injected fault harmed the connection: `harmed` holds their client ports).
    fn finish(&mut self, harmed: &BTreeSet<u16>) {
        let mut bad = Vec::new();
        let servers: BTreeMap<(u16, u16), usize> = self
            .recs
            .iter()
            .enumerate()
            .filter(|(_, (s, r))| *s == Side::Server && r.token.is_some())
            .map(|(i, (_, r))| (r.token.unwrap_or_default(), i))
            .collect();
        for i in 0..self.recs.len() {
            let (side, r) = &self.recs[i];
            if r.closed != 1 {
                bad.push(format!("{side:?} {:#x}: {} Closed events", r.id, r.closed));
                continue;
            }
            if *side != Side::Client {
                continue;
            }
            let Some(&p) = r.token.and_then(|t| servers.get(&t)) else {
                continue;
            };
            let s = &self.recs[p].1;
            if harmed.contains(&s.port) {
                continue;
            }
            // Between honest peers on an unharmed connection no side finds the other's bytes
            // malformed: a record or frame refused is the library's own bug.
            for (who, x) in [("client", r), ("server", s)] {
                if let Some(
                    why @ (CloseReason::Protocol(_)
                    | CloseReason::Crypto(
                        CryptoError::BadRecord | CryptoError::RecordTooLarge,
                    )),
                ) = &x.reason
                {
                    bad.push(format!(
                        "{who} {:#x} closed with \"{why}\", but no fault harmed its connection",
                        x.id
                    ));
                }
            }
            let clean = |x: &Rec| x.reason.as_ref().is_some_and(|r| r.is_clean());
            if clean(r) && clean(s) && (s.recv_next != r.sent || r.recv_next != s.sent) {
                bad.push(format!(
                    "clean end lost messages: client {:#x} sent {} ({}), server got {}; server {:#x} sent {} ({}), client got {}",
                    r.id,
                    r.sent,
                    r.reason.as_ref().map_or(String::new(), |x| x.to_string()),
                    s.recv_next,
                    s.id,
                    s.sent,
                    s.reason.as_ref().map_or(String::new(), |x| x.to_string()),
                    r.recv_next
                ));
            }
        }
        for w in bad {
            self.bad(w);
        }
    }
}

fn config(opts: &StressOpts, key: &KeyPair, server: bool) -> Config {
    let mut c = Config::default()
        .with_max_sessions(64)
        .with_send_queue_limit(2048)
        .with_linger(Duration::from_secs(3))
        .with_id_bits(ID_BITS)
        .with_logging(false);
    if opts.encrypted {
        let e = if server {
            Encryption::server(key.clone())
        } else {
            Encryption::client(key.public())
        };
        c = c.with_encryption(match opts.max_record {
            Some(n) => e.with_max_record(n),
            None => e,
        });
    }
    #[cfg(feature = "planted-bugs")]
    {
        c.planted = opts.plant.as_deref().and_then(|p| p.parse().ok());
    }
    c
}

fn subscribe(svc: &Service, book: &Shared, side: Side, proto: Protocol) {
    let b = book.clone();
    let _ = svc.sub(Topic::sessions(proto), move |ev: &SessionEvent| match ev {
        SessionEvent::Opened { session, .. } => {
            let mut b = lock(&b);
            let idx = b.opened(side, session.id().get());
            b.recs[idx].1.port = session.peer_addr().port();
        }
        SessionEvent::Closed { id, reason } => lock(&b).closed(side, id.get(), reason),
        _ => {}
    });
    let b = book.clone();
    let _ = svc.sub(Topic::message::<Data>(proto), move |m: &Received<Data>| {
        let id = m.session.id().get();
        let mut book = lock(&b);
        book.recv(side, id, &m.msg.0);
        if side == Side::Server {
            // Answer every third message, and honour a close request.
            if let Some(&idx) = book.by_id.get(&(side, id))
                && m.msg.0.seq.is_multiple_of(3)
            {
                let _ = book.send(idx, &m.session, (m.msg.0.seq % 200) as usize, 0);
            }
            if m.msg.0.flags & CLOSE_REQ != 0 {
                m.session.close();
            }
        }
    });
}

/// How a client session ends.
#[derive(Clone, Copy)]
enum Ending {
    /// This task closes.
    Own,
    /// Another task closes while this one is still sending.
    Racing,
    /// The server closes, at the client's request.
    ServerCloses,
    /// The client asks the server to close and closes itself.
    Both,
}

async fn client_task(
    svc: Service,
    book: Shared,
    addr: String,
    opts: StressOpts,
    task: u16,
    seed: u64,
) {
    let proto = protocol(&opts);
    let mut rng = Rng::new(seed, 0x5354);
    for j in 0..opts.sessions {
        let sref = match svc.connect(&addr, proto).await {
            Ok(s) => s,
            Err(e) => {
                let mut b = lock(&book);
                if opts.faults.is_some() {
                    b.failed_connects += 1;
                } else {
                    b.bad(format!("connect failed: {e}"));
                }
                continue;
            }
        };
        let id = sref.id().get();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let watching = svc
            .on_close(sref.id(), move |r: &CloseReason| {
                let _ = tx.send(r.clone());
            })
            .is_ok();
        let Some(idx) = lock(&book).by_id.get(&(Side::Client, id)).copied() else {
            lock(&book).bad(format!("connect returned {id:#x} before its Opened"));
            continue;
        };
        lock(&book).recs[idx].1.token = Some((task, j as u16));
        let ending = match rng.below(4) {
            0 => Ending::Own,
            1 => Ending::Racing,
            2 => Ending::ServerCloses,
            _ => Ending::Both,
        };
        let n = rng.range(1, opts.msgs);
        let racer = matches!(ending, Ending::Racing).then(|| {
            let (s, delay) = (sref.clone(), rng.range(0, 300));
            tokio::spawn(async move {
                for _ in 0..delay {
                    tokio::task::yield_now().await;
                }
                s.close();
            })
        });
        let mut sent = 0;
        while sent < n {
            let last = sent + 1 == n;
            let flags = if last && matches!(ending, Ending::ServerCloses | Ending::Both) {
                CLOSE_REQ
            } else {
                0
            };
            let len = if rng.chance(0.1) {
                rng.range(500, 3000)
            } else {
                rng.range(0, 120)
            } as usize;
            let res = lock(&book).send(idx, &sref, len, flags);
            match res {
                Ok(true) => sent += 1,
                Ok(false) => match sref.ready().await {
                    Ok(()) => {}
                    Err(SendError::Closed(r)) => {
                        lock(&book).told(idx, &r);
                        break;
                    }
                    Err(_) => break,
                },
                Err(_) => break,
            }
            if rng.chance(0.2) {
                tokio::task::yield_now().await;
            }
        }
        if matches!(ending, Ending::Own | Ending::Both) {
            sref.close();
        }
        if let Some(r) = racer {
            let _ = r.await;
        }
        if watching {
            match tokio::time::timeout(Duration::from_secs(10), rx).await {
                Ok(_) => {}
                Err(_) => lock(&book).bad(format!("client {id:#x} never closed")),
            }
        }
        // `Closed` comes first, then the destroy (on the session's own thread): once the ref
        // turns stale, its id resolves only to a newer session.
        let mut stale = false;
        for _ in 0..1000 {
            let res = lock(&book).send(idx, &sref, 0, 0);
            match res {
                Ok(_) => {
                    lock(&book).bad(format!("a send on closed client session {id:#x} succeeded"));
                    break;
                }
                Err(Some(SendError::Stale)) => {
                    stale = true;
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
        if !stale {
            lock(&book).bad(format!(
                "client session {id:#x} closed but was never destroyed"
            ));
            continue;
        }
        if let Some(r) = svc.acquire(sref.id()) {
            // A newer session with the same id (the 8-bit id counter wraps often) may be in
            // the table a moment before its `Opened` reaches the book on another thread.
            let mut newer = false;
            for _ in 0..20 {
                newer = lock(&book)
                    .by_id
                    .get(&(Side::Client, id))
                    .is_some_and(|&i| i != idx);
                if newer {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            if !newer || r.id() != sref.id() {
                let probe = lock(&book).send(idx, &r, 0, 0);
                lock(&book).bad(format!(
                    "acquire({id:#x}) resolves after the session closed (to {:#x}, open {}, a send on it: {probe:?})",
                    r.id().get(),
                    r.is_open()
                ));
            }
        }
    }
}

fn protocol(opts: &StressOpts) -> Protocol {
    if opts.encrypted {
        Protocol::BitsHpke
    } else {
        Protocol::Bits
    }
}

/// One round: fresh services on a fresh multi-thread runtime.
fn round(opts: &StressOpts, n: u32) -> (u64, u64, FaultCounts, u64, Vec<String>) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads.max(2))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return (
                0,
                0,
                FaultCounts::default(),
                0,
                vec![format!("runtime: {e}")],
            );
        }
    };
    let book: Shared = Arc::default();
    let key = KeyPair::from_seed(&[7; 32]);
    let proto = protocol(opts);
    let seed = opts.seed ^ (u64::from(n) << 32);
    let counts = Arc::new(ChaosCounts::default());
    let result = rt.block_on(async {
        let (server, client) = match &opts.faults {
            None => (
                Service::new(config(opts, &key, true)),
                Service::new(config(opts, &key, false)),
            ),
            Some((s, c)) => (
                Service::with_runtime(
                    config(opts, &key, true),
                    ChaosRuntime::new(s.clone(), seed, counts.clone()),
                ),
                Service::with_runtime(
                    config(opts, &key, false),
                    ChaosRuntime::new(c.clone(), !seed, counts.clone()),
                ),
            ),
        };
        subscribe(&server, &book, Side::Server, proto);
        subscribe(&client, &book, Side::Client, proto);
        let acceptor = match server.accept("127.0.0.1:0", proto).await {
            Ok(a) => a,
            Err(e) => return Err(format!("accept: {e}")),
        };
        let addr = acceptor.local_addr().to_string();
        // Watched from a thread of its own for the whole round: whenever no session is live,
        // no pooled byte may be in use (the destroy gives the buffers back before the id).
        // An encrypted client takes its pooled record buffers before its session exists, so
        // encrypted rounds watch the server only.
        let stop = Arc::new(AtomicBool::new(false));
        let mut watched = vec![(server.clone(), "server")];
        if !opts.encrypted {
            watched.push((client.clone(), "client"));
        }
        let watcher = {
            let (stop, book) = (stop.clone(), book.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for (svc, name) in &watched {
                        let s = svc.status();
                        if s.live() == 0 && s.pool.in_use_bytes != 0 {
                            lock(&book).bad(format!(
                                "{name}: no session live but {} pooled bytes in use (buffers returned after the id was released)",
                                s.pool.in_use_bytes
                            ));
                            return;
                        }
                    }
                }
            })
        };
        let mut tasks: Vec<_> = (0..opts.clients)
            .map(|c| {
                tokio::spawn(client_task(
                    client.clone(),
                    book.clone(),
                    addr.clone(),
                    opts.clone(),
                    c as u16,
                    seed + c as u64,
                ))
            })
            .collect();
        let phases = async {
            for t in tasks.drain(..) {
                if t.await.is_err() {
                    lock(&book).bad("a client task panicked".into());
                }
            }
            // One client, one session at a time.
            let churn = StressOpts {
                sessions: opts.churn,
                msgs: 4,
                ..opts.clone()
            };
            client_task(client.clone(), book.clone(), addr.clone(), churn, u16::MAX, seed).await;
        };
        if tokio::time::timeout(Duration::from_secs(30), phases).await.is_err() {
            stop.store(true, Ordering::Relaxed);
            let _ = watcher.join();
            return Err("the clients did not finish within 30 s".into());
        }
        let done = tokio::time::timeout(Duration::from_secs(20), async {
            tokio::join!(server.shutdown(), client.shutdown())
        })
        .await;
        stop.store(true, Ordering::Relaxed);
        let _ = watcher.join();
        if done.is_err() {
            return Err("shutdown did not finish within 20 s".into());
        }
        for (svc, name) in [(&server, "server"), (&client, "client")] {
            let s = svc.status();
            if s.live() != 0 || s.pool.in_use_bytes != 0 || s.handshaking != 0 || s.panics != 0 {
                lock(&book).bad(format!(
                    "{name} after shutdown: {} live, {} pooled bytes in use, {} handshaking, {} panics",
                    s.live(),
                    s.pool.in_use_bytes,
                    s.handshaking,
                    s.panics
                ));
            }
        }
        Ok(())
    });
    let mut b = lock(&book);
    if let Err(e) = result {
        b.bad(e);
    }
    let harmed = counts
        .harmed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    b.finish(&harmed);
    let sessions = b.recs.len() as u64;
    let delivered = b.delivered;
    let failed_connects = b.failed_connects;
    let v = b
        .violations
        .iter()
        .map(|v| format!("round {n}: {v}"))
        .collect();
    drop(b);
    rt.shutdown_timeout(Duration::from_secs(1));
    (sessions, delivered, counts.snapshot(), failed_connects, v)
}

/// Runs `opts.rounds` rounds; stops after the first round with a violation.
pub fn stress(opts: &StressOpts) -> StressReport {
    let mut report = StressReport::default();
    for n in 0..opts.rounds {
        let (sessions, delivered, faults, failed_connects, violations) = round(opts, n);
        report.rounds += 1;
        report.sessions += sessions;
        report.messages += delivered;
        report.faults.add(&faults);
        report.failed_connects += failed_connects;
        if !violations.is_empty() {
            report.violations = violations;
            break;
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use laxnet::CloseReason;

    use super::{Book, Side};

    /// What senders were told against what `Closed` says, for one session.
    fn violations(told: CloseReason, closed: CloseReason) -> Vec<String> {
        let mut b = Book::default();
        let idx = b.opened(Side::Client, 7);
        b.told(idx, &told);
        b.closed(Side::Client, 7, &closed);
        b.violations
    }

    #[test]
    fn a_clean_close_that_lost_bytes_may_end_abortively() {
        let reset = CloseReason::Reset;
        assert!(violations(CloseReason::Local, reset.clone()).is_empty());
        assert!(violations(CloseReason::Local, CloseReason::Local).is_empty());
        // Never the other way, nor one clean reason for another.
        assert_eq!(violations(reset, CloseReason::Local).len(), 1);
        assert_eq!(
            violations(CloseReason::Local, CloseReason::PeerClosed).len(),
            1
        );
    }
}
