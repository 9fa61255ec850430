//! Ping-pong: one outstanding request per connection, callback-driven on both laxnet ends,
//! against raw `read_exact`/`write_all` ([`crate::baselines`]) under `--compare`; round trips
//! per second and the round trip's p50/p99.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use laxnet::{Received, Service, Topic};
use tokio::sync::oneshot;

use crate::baselines;
use crate::baselines::Msg;
use crate::cli::Opts;
use crate::pair::{Done, run_pair};
use crate::report::{Json, line, percentile, stats};
use crate::services::{Lax, sessions_closed};

/// The systems a ping-pong run can measure.
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

/// `--rts`, or 100,000 round trips on one connection and 5,000 per connection on more.
fn rts_per_conn(o: &Opts, conns: usize) -> u64 {
    o.rts.unwrap_or(if conns == 1 { 100_000 } else { 5_000 })
}

/// The loopback mode's ping-pong part: for each `--conns`, laxnet (and raw under
/// `--compare`) warmed up once, then `--reps` interleaved timed runs; prints rates and
/// latencies (over every round trip of every repetition) and adds them to `j`.
pub(crate) fn report(o: &Opts, lax: &Lax, j: &mut Json) {
    let kinds: &[PingPong] = if o.compare {
        &[PingPong::Laxnet, PingPong::Raw]
    } else {
        &[PingPong::Laxnet]
    };
    for &conns in &o.conns {
        println!(
            "ping-pong, {conns} connection(s) x {} round trips:",
            rts_per_conn(o, conns)
        );
        for &k in kinds {
            pingpong_run(k, o, lax, conns); // warm-up
        }
        let mut rates = vec![Vec::new(); kinds.len()];
        let mut lat: Vec<Vec<u32>> = vec![Vec::new(); kinds.len()];
        for _ in 0..o.reps {
            for (i, &k) in kinds.iter().enumerate() {
                let r = pingpong_run(k, o, lax, conns);
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

fn pingpong_run(kind: PingPong, o: &Opts, lax: &Lax, conns: usize) -> PingResult {
    let rts = rts_per_conn(o, conns);
    let (elapsed, samples) = match kind {
        PingPong::Laxnet => {
            let (sl, cl) = (lax.clone(), lax.clone());
            run_pair(
                o.layout,
                move |tx| laxnet_echo_server(tx, sl, conns),
                move |addr| laxnet_pinger(addr, cl, conns, rts),
            )
        }
        PingPong::Raw => run_pair(
            o.layout,
            move |tx| baselines::raw_echo_server(tx, conns),
            move |addr| baselines::raw_pinger_client(addr, conns, rts),
        ),
    };
    PingResult {
        rts_per_s: (conns as u64 * rts) as f64 / elapsed.as_secs_f64(),
        samples,
    }
}

async fn laxnet_echo_server(tx: oneshot::Sender<SocketAddr>, lax: Lax, conns: usize) {
    let server = Service::new(lax.server_config());
    server
        .sub(Topic::message::<Msg>(lax.proto()), |m: &Received<Msg>| {
            m.session.send(&m.msg).expect("echo");
        })
        .expect("sub");
    let closed = sessions_closed(&server, lax.proto(), conns as u64);
    let acc = server
        .accept("127.0.0.1:0", lax.proto())
        .await
        .expect("accept");
    tx.send(acc.local_addr()).expect("send addr");
    closed.await;
    server.shutdown().await;
}

/// Per-connection client state (indexed by `Msg::id`).
struct Conn {
    sent_at: Instant,
    samples: Vec<u32>,
}

async fn laxnet_pinger(addr: SocketAddr, lax: Lax, conns: usize, rts: u64) -> (Duration, Vec<u32>) {
    let client = Service::new(lax.client_config());
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
        .sub(
            Topic::message::<Msg>(lax.proto()),
            move |m: &Received<Msg>| {
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
            },
        )
        .expect("sub");
    let addr = addr.to_string();
    let mut refs = Vec::new();
    for _ in 0..conns {
        refs.push(client.connect(&addr, lax.proto()).await.expect("connect"));
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
