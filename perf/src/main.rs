#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // benchmarks may use Tokio and real time directly

//! `perf`: laxnet performance figures over loopback, with the baselines measured in the same
//! process.
//!
//! ```text
//! cargo run --release -p laxnet-perf -- [--compare] [--json] [--conns 1,64] [--layout mt2|2xct|1ct]
//!                                       [--msgs N] [--rts N] [--reps N] [--only oneway|pingpong]
//! cargo run --release -p laxnet-perf -- --idle-sessions 10000 [--json]
//! cargo run --release -p laxnet-perf -- --handshakes 500 [--reps 5] [--client-auth] [--json]
//! cargo run --release -p laxnet-perf -- --ciphers [--msgs N] [--reps N] [--json]
//! cargo run --release -p laxnet-perf --features sim -- --sim [--compare] [--json]
//! ```
//!
//! * **one-way** ([`oneway`]): a client sends `--msgs` 28-byte borsh messages through
//!   [`laxnet::SessionRef::send`] (on `QueueFull` it waits in `SessionRef::ready`, or yields
//!   or sleeps with `--backoff`); the server receives them in a subscription callback.
//!   Time runs from the first send until the callback has seen the last message.
//! * **ping-pong** ([`pingpong`]): one outstanding request per connection, callback-driven on
//!   both sides (the server's callback echoes, the client's callback sends the next request);
//!   p50/p99 of the round trip.
//! * `--compare` adds, in the same process and interleaved with the laxnet runs
//!   ([`baselines`]): tokio-util `Framed` + `LengthDelimitedCodec` + `borsh::to_vec` with a
//!   flush every 64 messages (the usual code), the hand-batched upper bound (frames into one
//!   64 KiB buffer, `write_all`; the reader parses in place from 256 KiB reads), and raw
//!   `read_exact`/`write_all` ping-pong. These are ports of
//!   `shared/baselines/src/bin/small_msg.rs` (the project's baseline programs, outside this
//!   repository).
//! * `--handshakes N` ([`handshakes`]): N sequential connects (each closed at once),
//!   plaintext and encrypted, interleaved per repetition with the raw HPKE setup pair loop of
//!   `shared/baselines` (`setup_sender_with_rng` + `setup_receiver`); reports connects/s (wall
//!   clock), process CPU time per connect, and one-core encrypted connects/s (1e9 / CPU ns) ÷
//!   raw HPKE pairs/s. Also interleaved: raw tokio connects, bare and with the raw HPKE pair as
//!   a one-round-trip handshake (the floor a hand-written encrypted connect sits on; see
//!   [`baselines::raw_connect_rate`]). With `--client-auth` the laxnet clients present a key
//!   the server allows (the raw baselines stay as they are).
//! * `--idle-sessions N` ([`idle`]): opens N connections to a laxnet server and reports the
//!   user-space memory (live heap bytes, from a counting global allocator, [`alloc`]) per idle
//!   server session.
//! * `--ciphers` ([`ciphers`]): one-way over one connection in plaintext and with both AEADs,
//!   interleaved, as ratios of plaintext.
//! * `--sim` (feature `sim`, module `sim`): the turmoil echo workload of `shared/baselines` (10
//!   clients x 1000 round trips, 1 ms latency), on laxnet and (with `--compare`) on raw
//!   turmoil streams.
//!
//! Layouts: `mt2` = one multi-thread runtime with 2 workers holding both ends; `2xct` = two
//! current-thread runtimes on separate OS threads (server on one, client on the other);
//! `1ct` = one current-thread runtime holding both ends (one core, literally).
//! Every figure is the median of `--reps` timed repetitions after one warm-up, with
//! `[min .. max]`; `--json` prints all figures as one JSON object on the last line.
//!
//! The command line is parsed by [`cli`] into an [`cli::Opts`] value that every mode takes;
//! [`services::Lax`] turns it into the laxnet services' configuration, [`pair::run_pair`] runs
//! a server and a client in the chosen layout, and [`report`] prints the lines and the JSON.

mod alloc;
mod baselines;
mod ciphers;
mod cli;
mod handshakes;
mod idle;
mod oneway;
mod pair;
mod pingpong;
mod report;
mod services;
#[cfg(feature = "sim")]
mod sim;

use cli::Opts;
use report::Json;
use services::Lax;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--idle-client") {
        return idle::idle_client(&args[2], args[3].parse().expect("count"));
    }
    let o = Opts::parse(args.into_iter().skip(1));
    let lax = Lax::new(&o);
    if let Some(n) = o.idle_sessions {
        return idle::idle_sessions(&o, &lax, n);
    }
    if o.sim {
        return sim_mode(&o, &lax);
    }
    if let Some(n) = o.handshakes {
        return handshakes::handshake_mode(&o, &lax, n);
    }
    if o.ciphers {
        return ciphers::cipher_mode(&o, &lax);
    }
    loopback(&o, &lax);
}

/// The default mode: one-way and ping-pong over loopback (`--only` picks one), with the
/// baselines under `--compare`.
fn loopback(o: &Opts, lax: &Lax) {
    let mut j = Json::default();
    j.str("mode", "loopback");
    j.str("protocol", lax.proto().name());
    j.str("layout", o.layout.name());
    j.num("msgs", o.msgs as f64);
    j.num("reps", o.reps as f64);
    println!(
        "protocol {}, layout {}, {} reps (median [min .. max]), Msg = 28 bytes borsh",
        lax.proto(),
        o.layout.name(),
        o.reps
    );
    let want = |what: &str| o.only.as_deref().is_none_or(|x| x == what);
    if want("oneway") {
        oneway::report(o, lax, &mut j);
    }
    if want("pingpong") {
        pingpong::report(o, lax, &mut j);
    }
    if o.json {
        println!("{}", j.render());
    }
}

#[cfg(feature = "sim")]
fn sim_mode(o: &Opts, lax: &Lax) {
    sim::sim_mode(o, lax)
}

#[cfg(not(feature = "sim"))]
fn sim_mode(_o: &Opts, _lax: &Lax) {
    eprintln!(
        "--sim needs the `sim` feature: cargo run --release -p laxnet-perf --features sim -- --sim"
    );
    std::process::exit(2);
}
