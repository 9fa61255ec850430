//! One-way throughput: laxnet's `SessionRef::send` → subscription callback, against the
//! `Framed` and hand-batched baselines ([`crate::baselines`]) under `--compare`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use laxnet::{Received, SendError, Service, SessionRef, Topic};
use tokio::sync::oneshot;

use crate::baselines;
use crate::baselines::Msg;
use crate::cli::{Backoff, Opts};
use crate::pair::{Done, cpu_time, run_pair};
use crate::report::{Json, Stats, line, stats};
use crate::services::{Lax, sessions_closed};

/// The systems a one-way run can measure.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum OneWay {
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

/// The loopback mode's one-way part: for each `--conns`, every system (laxnet, and the
/// baselines under `--compare`) warmed up once, then `--reps` interleaved timed runs; prints
/// the figures and ratios and adds them to `j`.
pub(crate) fn report(o: &Opts, lax: &Lax, j: &mut Json) {
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
            oneway_run(k, o, lax, conns); // warm-up
        }
        // Interleave the systems so that they share the machine's noise.
        for _ in 0..o.reps {
            for (i, &k) in kinds.iter().enumerate() {
                let (rate, ns) = oneway_run(k, o, lax, conns);
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

/// One timed one-way run: messages per second and CPU nanoseconds (both ends, user + kernel)
/// per message (the whole run, connection setup included).
pub(crate) fn oneway_run(kind: OneWay, o: &Opts, lax: &Lax, conns: usize) -> (f64, f64) {
    let cpu0 = cpu_time();
    let rate = oneway_rate(kind, o, lax, conns);
    let cpu = (cpu_time() - cpu0).as_secs_f64() * 1e9 / o.msgs as f64;
    (rate, cpu)
}

fn oneway_rate(kind: OneWay, o: &Opts, lax: &Lax, conns: usize) -> f64 {
    let total = o.msgs;
    let done = Done::new(total);
    let d2 = done.clone();
    let backoff = o.backoff;
    let elapsed = match kind {
        OneWay::Laxnet => {
            let (sl, cl) = (lax.clone(), lax.clone());
            run_pair(
                o.layout,
                move |tx| laxnet_oneway_server(tx, sl, d2, total, conns),
                move |addr| laxnet_oneway_client(addr, cl, done, total, conns, backoff),
            )
        }
        OneWay::Framed => run_pair(
            o.layout,
            move |tx| baselines::raw_oneway_server(tx, d2, conns, baselines::framed_receiver),
            move |addr| {
                baselines::raw_oneway_client(addr, done, total, conns, baselines::framed_sender)
            },
        ),
        OneWay::Batched => run_pair(
            o.layout,
            move |tx| baselines::raw_oneway_server(tx, d2, conns, baselines::batched_receiver),
            move |addr| {
                baselines::raw_oneway_client(addr, done, total, conns, baselines::batched_sender)
            },
        ),
        OneWay::BatchedMaterialized => run_pair(
            o.layout,
            move |tx| {
                baselines::raw_oneway_server(
                    tx,
                    d2,
                    conns,
                    baselines::batched_receiver_materialized,
                )
            },
            move |addr| {
                baselines::raw_oneway_client(addr, done, total, conns, baselines::batched_sender)
            },
        ),
    };
    total as f64 / elapsed.as_secs_f64()
}

/// Messages sent by connection `c` of `conns` out of `total`: seqs `start..end`.
pub(crate) fn share(total: u64, conns: usize, c: usize) -> (u64, u64) {
    let per = total / conns as u64;
    let start = per * c as u64;
    let end = if c + 1 == conns { total } else { start + per };
    (start, end)
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
    lax: Lax,
    done: Arc<Done>,
    total: u64,
    conns: usize,
) {
    assert!(conns <= TALLY_SLOTS, "at most {TALLY_SLOTS} connections");
    let server = Service::new(lax.server_config());
    let d = done.clone();
    let tallies: Arc<Vec<Tally>> = Arc::new((0..TALLY_SLOTS).map(|_| Tally::default()).collect());
    server
        .sub(
            Topic::message::<Msg>(lax.proto()),
            move |m: &Received<Msg>| {
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
            },
        )
        .expect("sub");
    let closed = sessions_closed(&server, lax.proto(), conns as u64);
    let acc = server
        .accept("127.0.0.1:0", lax.proto())
        .await
        .expect("accept");
    tx.send(acc.local_addr()).expect("send addr");
    // Wait until the client closed its sessions (they are flushed then).
    closed.await;
    server.shutdown().await;
}

async fn laxnet_oneway_client(
    addr: SocketAddr,
    lax: Lax,
    done: Arc<Done>,
    total: u64,
    conns: usize,
    backoff: Backoff,
) -> Duration {
    let client = Service::new(lax.client_config());
    let addr = addr.to_string();
    let mut refs = Vec::new();
    for _ in 0..conns {
        refs.push(client.connect(&addr, lax.proto()).await.expect("connect"));
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

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_cover_every_seq_once() {
        for (total, conns) in [(20_000, 1), (20_000, 64), (100, 3), (5, 8)] {
            let mut next = 0;
            for c in 0..conns {
                let (start, end) = share(total, conns, c);
                assert_eq!(start, next, "{total} over {conns}: connection {c}");
                next = end;
            }
            assert_eq!(next, total);
        }
    }
}
