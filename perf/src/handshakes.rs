//! `--handshakes N`: sessions opened per second, plaintext and encrypted, against the raw HPKE
//! pair and raw tokio connects ([`crate::baselines`]), interleaved per repetition.

use std::time::{Duration, Instant};

use laxnet::{Protocol, Service};

use crate::baselines::{raw_connect_rate, raw_hpke_rate};
use crate::cli::Opts;
use crate::pair::{cpu_time, run_pair};
use crate::report::{Json, Stats, human, line, percent, stats};
use crate::services::{Lax, sessions_closed};

/// HPKE setup pairs timed by [`raw_hpke_rate`] per repetition (as `shared/baselines`).
const RAW_HPKE_PAIRS: u64 = 2_000;

/// Opens `n` sessions one after the other (each closed right away); sessions per second
/// (wall clock) and process CPU time (user + system, both ends, everything the run does) per
/// session opened, in ns. The services use `lax` except for `--read-buffer` (connects keep
/// the default read buffer).
///
/// Connects that take over 100 ms are left out of the rate and counted: on this loopback a
/// sequential connect now and then loses its SYN and waits for the kernel's 1 s retransmit
/// (plain sockets show it too), which has nothing to do with the handshake being measured.
/// They are kept in the CPU figure (a stalled connect costs no CPU while it waits).
fn connect_rate(o: &Opts, lax: &Lax, n: u64) -> (f64, f64) {
    let lax = Lax {
        read_buffer: None,
        ..lax.clone()
    };
    let (sl, cl) = (lax.clone(), lax);
    let cpu0 = cpu_time();
    let (elapsed, done) = run_pair(
        o.layout,
        move |tx| async move {
            let server = Service::new(sl.server_config());
            let closed = sessions_closed(&server, sl.proto(), n);
            let acc = server
                .accept("127.0.0.1:0", sl.proto())
                .await
                .expect("accept");
            tx.send(acc.local_addr()).expect("send addr");
            closed.await;
            server.shutdown().await;
        },
        move |addr| async move {
            let client = Service::new(cl.client_config());
            let addr = addr.to_string();
            let (mut total, mut done, mut stalls) = (Duration::ZERO, 0u64, 0u64);
            for _ in 0..n {
                let t = Instant::now();
                let s = client.connect(&addr, cl.proto()).await.expect("connect");
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

/// With `--features bench-internals`: CPU ns per `bits-hpke` handshake run as pure functions
/// (`laxnet::bench_api::HandshakeSetup::run`: both sides, no socket, no task, with what a
/// service computes once done once), `n` of them on the calling thread. `None` without the
/// feature.
#[cfg(feature = "bench-internals")]
fn pure_handshake_cpu_ns(lax: &Lax, n: u64) -> Option<f64> {
    use laxnet::bench_api::{Cipher, HandshakeSetup};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    let server = &lax.key;
    let setup = HandshakeSetup::new(server, &server.public(), lax.client_key.as_ref());
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
fn pure_handshake_cpu_ns(_lax: &Lax, _n: u64) -> Option<f64> {
    None
}

/// `--handshakes N`: plaintext and encrypted sequential connects and the raw HPKE pair loop,
/// interleaved per repetition. The one-core encrypted rate is 1e9 / (CPU ns per encrypted
/// connect, both ends); `handshake_ratio_vs_raw_hpke` divides it by the raw HPKE pairs per
/// CPU second of the same repetition (median over repetitions).
pub(crate) fn handshake_mode(o: &Opts, lax: &Lax, n: u64) {
    let mut j = Json::default();
    j.str("mode", "handshakes");
    j.num("sessions", n as f64);
    j.num("client_auth", f64::from(u8::from(lax.client_key.is_some())));
    // Plaintext and encrypted, with the default cipher.
    let modes = [false, true].map(|encrypted| Lax {
        encrypted,
        cipher: None,
        ..lax.clone()
    });
    println!(
        "sessions opened one after the other, {n} per run, {} reps, layout {}{}; raw HPKE: \
         {RAW_HPKE_PAIRS} setup pairs per rep on the main thread:",
        o.reps,
        o.layout.name(),
        if lax.client_key.is_some() {
            ", encrypted clients authenticate with an allowed key"
        } else {
            ""
        }
    );
    // Warm-up.
    for m in &modes {
        connect_rate(o, m, n.min(200));
    }
    raw_hpke_rate(RAW_HPKE_PAIRS / 10);
    pure_handshake_cpu_ns(lax, 50);
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
        for (i, m) in modes.iter().enumerate() {
            let (r, c) = connect_rate(o, m, n);
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
        pure.extend(pure_handshake_cpu_ns(lax, n.min(1000)));
    }

    let rate: Vec<Stats> = rate.into_iter().map(stats).collect();
    let cpu: Vec<Stats> = cpu.into_iter().map(stats).collect();
    for (i, name) in names.iter().enumerate() {
        let p = if i == 0 {
            Protocol::Bits
        } else {
            Protocol::BitsHpke
        };
        line(
            &format!("  connect + {p} ({name}), wall clock"),
            "/s",
            rate[i],
        );
        j.stats(&format!("connects_per_s_{name}"), rate[i]);
    }
    for (i, name) in names.iter().enumerate() {
        line(
            &format!("  CPU per connect ({name}, both ends)"),
            "µs",
            cpu[i].thousandths(),
        );
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
        line(
            "  CPU per pure handshake (both sides, no I/O)",
            "µs",
            pure.thousandths(),
        );
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
        line(
            &format!("  CPU per connect, {} (both ends)", raw_names[i]),
            "µs",
            raw_conn_cpu[i].thousandths(),
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
