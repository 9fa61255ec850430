//! `--sim` (feature `sim`): the turmoil echo workload of `shared/baselines` (10 clients x 1000
//! round trips, 1 ms latency), on laxnet's `TurmoilRuntime` and (with `--compare`) on raw
//! turmoil streams; wall time per seed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use borsh::BorshSerialize;
use laxnet::{Config, Protocol, Received, Service, Topic, TurmoilRuntime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::baselines::{FRAME_LEN, MSG_BORSH_LEN, Msg};
use crate::cli::Opts;
use crate::report::{Json, line, stats};
use crate::services::Lax;

const CLIENTS: usize = 10;
const MSGS: u64 = 1000;
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
fn raw(seed: u64) -> (Duration, Duration) {
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

/// `base` (the command line's settings, without `--read-buffer`) seeded with `seed`.
fn sim_config(base: &Config, seed: u64) -> Config {
    base.clone().with_rng_seed(seed)
}

/// The same workload through laxnet on `TurmoilRuntime`: an echo subscription on the
/// server, callback-driven request/response on each client.
fn laxnet(base: &Config, seed: u64) -> (Duration, Duration) {
    let mut sim = builder(seed);
    let server_base = base.clone();
    sim.host("server", move || {
        let cfg = sim_config(&server_base, seed);
        async move {
            let server = Service::with_runtime(cfg, TurmoilRuntime::new(seed));
            server
                .sub(
                    Topic::message::<Msg>(Protocol::Bits),
                    |m: &Received<Msg>| {
                        let _ = m.session.send(&m.msg);
                    },
                )
                .map_err(|e| e.to_string())?;
            let _acc = server
                .accept(&format!("0.0.0.0:{PORT}"), Protocol::Bits)
                .await
                .map_err(|e| e.to_string())?;
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    for c in 0..CLIENTS {
        let seed = seed ^ ((c as u64 + 1) << 32);
        let cfg = sim_config(base, seed);
        sim.client(format!("client{c}"), async move {
            let client = Service::with_runtime(cfg, TurmoilRuntime::new(seed));
            let done = Arc::new(Notify::new());
            let next = Arc::new(AtomicU64::new(0));
            let (d, nx) = (done.clone(), next.clone());
            client
                .sub(
                    Topic::message::<Msg>(Protocol::Bits),
                    move |m: &Received<Msg>| {
                        let expect = nx.fetch_add(1, Relaxed);
                        assert_eq!(m.msg.seq, expect);
                        if expect + 1 < MSGS {
                            let _ = m.session.send(&Msg::new(c as u32, expect + 1));
                        } else {
                            d.notify_one();
                        }
                    },
                )
                .map_err(|e| e.to_string())?;
            let s = client
                .connect(&format!("server:{PORT}"), Protocol::Bits)
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

/// `--sim`: one untimed run to report the simulated time, a warm-up, then `--reps` seeds,
/// laxnet and raw interleaved.
pub(crate) fn sim_mode(o: &Opts, lax: &Lax) {
    let base = Lax {
        read_buffer: None,
        ..lax.clone()
    }
    .config();
    let (_, simulated) = laxnet(&base, 0);
    println!(
        "turmoil echo: {CLIENTS} clients x {MSGS} round trips, 1 ms latency; simulated {simulated:?} (laxnet)"
    );
    let mut lax_ms = Vec::new();
    let mut raw_ms = Vec::new();
    laxnet(&base, 1);
    if o.compare {
        raw(1);
    }
    for rep in 0..o.reps as u64 {
        let seed = 100 + rep;
        lax_ms.push(laxnet(&base, seed).0.as_secs_f64() * 1e3);
        if o.compare {
            raw_ms.push(raw(seed).0.as_secs_f64() * 1e3);
        }
    }
    let l = stats(lax_ms);
    line("laxnet on TurmoilRuntime, wall ms per seed", "ms", l);
    let mut j = Json::default();
    j.str("mode", "sim");
    j.stats("sim_laxnet_ms", l);
    if o.compare {
        let r = stats(raw_ms);
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
