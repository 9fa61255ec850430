//! `laxsim`: the seeded simulation runner of laxnet.
//!
//! ```text
//! laxsim list     [--scenario NAME]...
//! laxsim run      [--scenario NAME]... [--seeds A..B] [--shard K/N] [--jobs N]
//!                 [--check-determinism] [--plant BUG] [--json] [--junit FILE [--junit-block N]]
//!                 [--fail-fast] [--no-progress]
//! laxsim merge    SUMMARY.json... [--json]
//! laxsim replay   --scenario NAME --seed N [--schedule FILE] [--trace] [--timeline FILE.html]
//!                 [--plant BUG] [--fingerprint FP]
//! laxsim shrink   --scenario NAME --seed N --out FILE [--plant BUG] [--max-runs N]
//! laxsim soak     [--sessions N] [--duration 30s|30m] [--rate R] [--churn F] [--protocol P]
//!                 [--destroyers N] [--hostile-every D] [--server auto|in-process|child]
//!                 [--plant BUG] [--json]
//! laxsim fuzz-input FILE [--out DIR] [--plant BUG]
//! laxsim completions SHELL
//! ```
//! `laxsim help COMMAND` (or `COMMAND --help`) says what each option does. `--jobs` defaults
//! to the number of CPUs. `list`, `run`, `replay` and `shrink` also take `--scenarios DIR`
//! (default: `$LAXSIM_SCENARIOS`, else the workspace's `scenarios/`). Exit codes: 0 passed,
//! 1 a seed failed (for `shrink`: the seed did not fail), 2 usage or other error.

use std::num::NonZeroUsize;
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, CommandFactory, Parser, Subcommand};
use laxnet_sim::chaos::FaultCounts;
use laxnet_sim::fingerprint::Fingerprint;
use laxnet_sim::real;
use laxnet_sim::runner::{RunOpts, run_seed};
use laxnet_sim::scenario::{self, Scenario};
use laxnet_sim::schedule::Schedule;
use laxnet_sim::state::lock;
use laxnet_sim::suite::{self, SuiteOpts};
use laxnet_sim::sweep::{self, Coverage, Shard};
use laxnet_sim::{shrink, soak, timeline};

/// Seeded simulation suites for laxnet: the real library on turmoil's simulated network, under
/// seeded faults, every run checked by an oracle.
#[derive(Parser)]
#[command(
    name = "laxsim",
    version,
    subcommand_required = true,
    arg_required_else_help = true,
    after_help = "Exit codes: 0 passed, 1 a seed failed (shrink: the seed did not fail), \
                  2 usage or other error."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the scenarios and the lifecycle edges each must reach.
    List(ListArgs),
    /// Run scenarios over a range of seeds; print a summary and each failing seed's replay
    /// command.
    ///
    /// Exits 0 when every seed passed and every scenario reached its expected edges, 1
    /// otherwise.
    Run(RunArgs),
    /// Merge the `run --json` summaries of shards into one summary.
    ///
    /// Refuses (exit 2) summaries of different builds (fingerprints) or planted bugs, and
    /// summaries that may share a seed. Exits 0 when every seed passed, every expected edge was
    /// reached and, for shards K/N of one seed range, all N shards were given; 1 otherwise.
    Merge(MergeArgs),
    /// Re-run one seed exactly: its per-session timeline, edges, violations and trace hash.
    ///
    /// The same build (Cargo.lock, toolchain, --cfg tokio_unstable) gives the same trace-hash
    /// line in any process. Exits 1 when the seed fails.
    Replay(ReplayArgs),
    /// Shrink a failing seed's fault schedule (fewer, weaker faults) while it still fails, and
    /// write the minimal schedule for `replay --schedule`.
    ///
    /// Exits 1 when the seed does not fail.
    Shrink(ShrinkArgs),
    /// Hold thousands of sessions on real loopback sockets for a long time: steady echoed
    /// traffic, churn (client closes, server closes, resets) and hostile raw peers, with
    /// progress lines and a final report (messages lost, close reasons, memory and p99
    /// latency over time).
    ///
    /// Exits 1 when a check fails: a message lost on a clean close, a sequence gap or
    /// corruption, a session closed with a reason its ending does not imply, a hostile peer
    /// not closed with its typed reason, memory still growing in the last third of the run
    /// (over the middle third's maximum by more than 10 % + 16 MiB for RSS, 10 % + 2 MiB for
    /// pool bytes), anything live or pooled after shutdown. With more sessions than fit in
    /// one process's file-descriptor limit, the server runs in a child process.
    Soak(SoakArgs),
    /// The server side of `soak` in a child process (reports JSON lines on stdout; stops when
    /// stdin ends).
    #[command(hide = true)]
    SoakServer(SoakServerArgs),
    /// Turn an input of the `sim` fuzz target (a crash libFuzzer wrote, a corpus file) into a
    /// scenario file and a fault schedule, run it, and print the `laxsim replay` command that
    /// reruns it (with --trace, --timeline, ...).
    ///
    /// Exits 0 when the run passes, 1 when it fails, 2 on errors.
    FuzzInput(FuzzInputArgs),
    /// Print a shell completion script to stdout.
    ///
    /// For example `laxsim completions bash > ~/.local/share/bash-completion/completions/laxsim`
    /// or `laxsim completions zsh > ~/.zfunc/_laxsim`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Where the scenarios come from; every command that loads them takes it.
#[derive(Args)]
struct Dir {
    /// Directory of scenario files (*.toml) [default: $LAXSIM_SCENARIOS, else the workspace's
    /// scenarios/].
    #[arg(long = "scenarios", value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Args)]
struct ListArgs {
    /// Only this scenario (repeatable) [default: all].
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    #[command(flatten)]
    dir: Dir,
}

#[derive(Args)]
struct RunArgs {
    /// Only this scenario (repeatable) [default: all].
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// Seeds to run: A..B (B excluded), A..=B, or one seed N.
    #[arg(long, value_name = "A..B", default_value = "0..100", value_parser = parse_seeds)]
    seeds: Range<u64>,
    /// Run only shard K of N (1 <= K <= N): the seeds s of the range with s mod N = K - 1, of
    /// every scenario. The N shards of a range are disjoint and cover it.
    #[arg(long, value_name = "K/N", value_parser = Shard::parse)]
    shard: Option<Shard>,
    /// Also write a JUnit XML report: a test case per scenario and block of seeds (failing with
    /// each failing seed's replay command) and one per scenario for its expected edges.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Seeds per JUnit test case (blocks aligned to multiples of N, as in the sweep_blocks
    /// test binary).
    #[arg(long, value_name = "N", default_value_t = 100, requires = "junit")]
    junit_block: u64,
    /// Worker threads [default: the number of CPUs].
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<NonZeroUsize>,
    /// Run every seed twice and fail when the two trace hashes differ.
    #[arg(long)]
    check_determinism: bool,
    /// Plant a deliberate library bug (a build with feature planted-bugs); the run must fail.
    #[arg(long, value_name = "BUG", value_parser = parse_plant)]
    plant: Option<String>,
    /// Print the summary as one JSON document instead of a table.
    #[arg(long)]
    json: bool,
    /// Stop at the first failing seed.
    #[arg(long)]
    fail_fast: bool,
    /// Run on real loopback sockets instead: each scenario's protocol and socket faults
    /// (short reads/writes, stalls, resets mid-frame, corrupted records) under the stress
    /// workload and its lifecycle oracle, on a multi-thread Tokio runtime. Lists what each
    /// scenario does that loopback cannot (latency, partitions, crashes, ...). Not
    /// reproducible: thread timing is not seeded.
    #[arg(long, conflicts_with_all = ["check_determinism", "junit", "json"])]
    real: bool,
    /// No progress line on stderr.
    #[arg(long)]
    no_progress: bool,
    #[command(flatten)]
    dir: Dir,
}

#[derive(Args)]
struct ReplayArgs {
    /// The scenario.
    #[arg(long = "scenario", value_name = "NAME")]
    scenario: String,
    /// The seed.
    #[arg(long, value_name = "N")]
    seed: u64,
    /// Replay this recorded fault schedule (from `laxsim shrink`) instead of the seed's own
    /// fault decisions.
    #[arg(long, value_name = "FILE")]
    schedule: Option<PathBuf>,
    /// Print the library's tracing output (filtered by RUST_LOG, default laxnet=trace) and the
    /// oracle's events as they happen, stamped with simulated time.
    #[arg(long)]
    trace: bool,
    /// Write the run as an HTML page with an SVG timeline: one lane per host and per session.
    #[arg(long, value_name = "FILE.html")]
    timeline: Option<PathBuf>,
    /// Plant a deliberate library bug (a build with feature planted-bugs).
    #[arg(long, value_name = "BUG", value_parser = parse_plant)]
    plant: Option<String>,
    /// The build fingerprint printed with the failure; replay warns when this build's differs
    /// (the seed may then replay a different run).
    #[arg(long, value_name = "FP", value_parser = Fingerprint::parse)]
    fingerprint: Option<Fingerprint>,
    #[command(flatten)]
    dir: Dir,
}

#[derive(Args)]
struct MergeArgs {
    /// The summaries (`laxsim run --json > FILE`).
    #[arg(value_name = "SUMMARY.json", required = true)]
    files: Vec<PathBuf>,
    /// Print the merged summary as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ShrinkArgs {
    /// The scenario.
    #[arg(long = "scenario", value_name = "NAME")]
    scenario: String,
    /// The failing seed.
    #[arg(long, value_name = "N")]
    seed: u64,
    /// Where to write the minimal schedule (JSON).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Plant a deliberate library bug (a build with feature planted-bugs).
    #[arg(long, value_name = "BUG", value_parser = parse_plant)]
    plant: Option<String>,
    /// Give up shrinking after this many replays.
    #[arg(long, value_name = "N", default_value_t = 300)]
    max_runs: usize,
    #[command(flatten)]
    dir: Dir,
}

#[derive(Args)]
struct SoakArgs {
    /// Concurrent client sessions.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u16).range(1..60_000))]
    sessions: u16,
    /// How long the traffic runs (30s, 30m, 2h, 500ms).
    #[arg(long, value_name = "D", default_value = "30s", value_parser = soak::parse_duration)]
    duration: std::time::Duration,
    /// Messages per second each session sends (each is echoed back).
    #[arg(long, value_name = "R", default_value_t = 1.0)]
    rate: f64,
    /// Fraction of the sessions that end and reconnect per second (half close themselves, half
    /// ask the server to close).
    #[arg(long, value_name = "F", default_value_t = 0.02)]
    churn: f64,
    /// Raw TCP peers that send valid plaintext frames and end each connection with a reset
    /// [default: 1 % of --sessions].
    #[arg(long, value_name = "N")]
    destroyers: Option<usize>,
    /// One hostile raw connection (garbage, oversized or truncated frames, half handshakes,
    /// silence) this often; 0 for none.
    #[arg(long, value_name = "D", default_value = "1s", value_parser = parse_opt_duration)]
    hostile_every: std::time::Duration,
    /// The clients' protocol: bits or bits-hpke (destroyers and most hostile peers use the
    /// server's plaintext acceptor either way).
    #[arg(long, value_name = "P", default_value = "bits", value_parser = ["bits", "bits-hpke"])]
    protocol: String,
    /// Progress and memory samples this often [default: a fifteenth of --duration, 1s to 5s].
    #[arg(long, value_name = "D", value_parser = soak::parse_duration)]
    interval: Option<std::time::Duration>,
    /// Spread the first connects over this long [default: a sixth of --duration, at most 10s].
    #[arg(long, value_name = "D", value_parser = soak::parse_duration)]
    ramp: Option<std::time::Duration>,
    /// Where the server runs: auto (a child process when both ends' sockets do not fit in the
    /// file-descriptor limit), in-process, child.
    #[arg(long, value_name = "WHERE", default_value = "auto", value_parser = ["auto", "in-process", "child"])]
    server: String,
    /// The server's handshake admission limits (`Encryption::max_handshakes` and
    /// `max_handshakes_per_source`) [default: the library's, 256 and 16]. Every client connects
    /// from 127.0.0.1, one source.
    #[arg(long, value_name = "N")]
    server_handshakes: Option<usize>,
    /// Seed of the workload's choices (thread timing is not seeded).
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Plant a deliberate library bug in both services (a build with feature planted-bugs).
    #[arg(long, value_name = "BUG", value_parser = parse_plant)]
    plant: Option<String>,
    /// Print the report as one JSON document instead of text.
    #[arg(long)]
    json: bool,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json_file: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args)]
struct SoakServerArgs {
    #[arg(long, default_value_t = 11_000)]
    max_sessions: usize,
    #[arg(long, default_value_t = 5000)]
    interval_ms: u64,
    #[arg(long, value_parser = parse_plant)]
    plant: Option<String>,
    #[arg(long)]
    handshakes: Option<usize>,
}

/// A duration, or 0 (zero: none).
fn parse_opt_duration(s: &str) -> Result<std::time::Duration, String> {
    if s.trim() == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    soak::parse_duration(s)
}

#[derive(Args)]
struct FuzzInputArgs {
    /// The fuzz input (raw bytes).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Where to write the scenario (NAME.toml, alone there) and schedule (NAME.schedule.json)
    /// [default: FILE.laxsim/].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Plant a deliberate library bug (a build with feature planted-bugs).
    #[arg(long, value_name = "BUG", value_parser = parse_plant)]
    plant: Option<String>,
}

/// `A..B` (B excluded, not empty), `A..=B` or `N`.
fn parse_seeds(s: &str) -> Result<Range<u64>, String> {
    let num = |x: &str| {
        x.trim()
            .parse::<u64>()
            .map_err(|_| format!("bad seed number {x:?}"))
    };
    let past_max = || "the range ends past u64::MAX".to_string();
    let (a, b) = if let Some((a, b)) = s.split_once("..=") {
        (num(a)?, num(b)?.checked_add(1).ok_or_else(past_max)?)
    } else if let Some((a, b)) = s.split_once("..") {
        (num(a)?, num(b)?)
    } else {
        let a = num(s)?;
        (a, a.checked_add(1).ok_or_else(past_max)?)
    };
    if b <= a {
        return Err("empty range".into());
    }
    Ok(a..b)
}

/// A bug this build can plant.
fn parse_plant(s: &str) -> Result<String, String> {
    let known = laxnet_sim::plantable();
    if known.is_empty() {
        return Err("needs a build with the planted-bugs feature \
                    (cargo run -p laxnet-sim --features planted-bugs -- ...)"
            .into());
    }
    if !known.contains(&s) {
        return Err(format!("unknown planted bug (known: {})", known.join(", ")));
    }
    Ok(s.to_string())
}

/// The scenarios in `dir` (all of them, or those named), or the message of a usage error.
fn load(dir: &Dir, names: &[String]) -> Result<Vec<Arc<Scenario>>, String> {
    let dir = dir.dir.clone().unwrap_or_else(scenario::default_dir);
    let all = scenario::load_dir(&dir)?;
    if all.is_empty() {
        return Err(format!("no scenarios in {}", dir.display()));
    }
    if names.is_empty() {
        return Ok(all.into_iter().map(Arc::new).collect());
    }
    let mut out = Vec::new();
    for name in names {
        match all.iter().find(|s| &s.name == name) {
            Some(s) => out.push(Arc::new(s.clone())),
            None => {
                return Err(format!(
                    "--scenario {name}: unknown scenario (known: {})",
                    all.iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    Ok(out)
}

fn main() -> ExitCode {
    // Usage errors exit 2 (clap's code), --help and --version 0.
    let cli = Cli::parse();
    let (dir, names) = match &cli.cmd {
        Cmd::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "laxsim",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Cmd::Merge(a) => return cmd_merge(a),
        Cmd::Soak(a) => return cmd_soak(a),
        Cmd::SoakServer(a) => {
            let ok = soak::serve_child(
                a.max_sessions,
                a.plant.as_deref(),
                a.handshakes,
                std::time::Duration::from_millis(a.interval_ms.max(10)),
            );
            return if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
        Cmd::FuzzInput(a) => return cmd_fuzz_input(a),
        Cmd::List(a) => (&a.dir, a.scenarios.clone()),
        Cmd::Run(a) => (&a.dir, a.scenarios.clone()),
        Cmd::Replay(a) => (&a.dir, vec![a.scenario.clone()]),
        Cmd::Shrink(a) => (&a.dir, vec![a.scenario.clone()]),
    };
    let scs = match load(dir, &names) {
        Ok(s) => s,
        Err(msg) => {
            eprintln!("laxsim: {msg}");
            return ExitCode::from(2);
        }
    };
    match &cli.cmd {
        Cmd::List(_) => {
            for s in &scs {
                println!("{:<20} {}", s.name, s.description);
                if !s.expect_edges.is_empty() {
                    println!("{:<20}   expects: {}", "", s.expect_edges.join(", "));
                }
            }
            ExitCode::SUCCESS
        }
        Cmd::Run(a) => cmd_run(a, &scs),
        Cmd::Replay(a) => cmd_replay(a, &scs[0]),
        Cmd::Shrink(a) => cmd_shrink(a, &scs[0]),
        Cmd::Completions { .. }
        | Cmd::Merge(_)
        | Cmd::Soak(_)
        | Cmd::SoakServer(_)
        | Cmd::FuzzInput(_) => ExitCode::SUCCESS, // done above
    }
}

fn cmd_run(a: &RunArgs, scs: &[Arc<Scenario>]) -> ExitCode {
    if a.real {
        return cmd_run_real(a, scs);
    }
    let opts = SuiteOpts {
        seeds: a.seeds.clone(),
        jobs: a.jobs.map_or_else(
            || std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            NonZeroUsize::get,
        ),
        check_determinism: a.check_determinism,
        plant: a.plant.clone(),
        fail_fast: a.fail_fast,
        progress: !a.no_progress,
    };
    let cov = Coverage {
        seeds: a.seeds.clone(),
        shard: a.shard.unwrap_or(Shard::ALL),
    };
    let r = suite::run_suite_where(scs, &opts, |s| cov.shard.contains(s));
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&sweep::json_summary(&r, a.plant.as_deref(), &cov, scs))
                .unwrap_or_default()
        );
    } else {
        if let Some(sh) = a.shard {
            println!(
                "shard {sh} of seeds {}..{}: the seeds s with s mod {} = {}",
                a.seeds.start,
                a.seeds.end,
                sh.n,
                sh.k - 1
            );
        }
        suite::print_summary(&r, a.plant.as_deref());
    }
    if let Some(path) = &a.junit {
        let xml = sweep::junit(&r, a.plant.as_deref(), &cov, a.junit_block);
        if let Err(e) = std::fs::write(path, xml) {
            eprintln!("laxsim: {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if r.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn cmd_run_real(a: &RunArgs, scs: &[Arc<Scenario>]) -> ExitCode {
    let shard = a.shard.unwrap_or(Shard::ALL);
    let threads = a.jobs.map_or(3, NonZeroUsize::get).max(2);
    println!(
        "{:<24} {:>5} {:>6} {:>8} {:>9} {:>6} {:>6} {:>6} {:>7} {:>7} {:>7}  skipped (loopback cannot)",
        "scenario",
        "seeds",
        "passed",
        "sessions",
        "messages",
        "short",
        "stalls",
        "resets",
        "corrupt",
        "refused",
        "wall"
    );
    let mut failing = Vec::new();
    'all: for sc in scs {
        let (mut n, mut passed, mut sessions, mut messages, mut refused) = (0, 0, 0, 0, 0);
        let mut faults = FaultCounts::default();
        let mut wall = std::time::Duration::ZERO;
        for seed in a.seeds.clone().filter(|s| shard.contains(*s)) {
            if !a.no_progress {
                eprint!("\r{} seed {seed}   ", sc.name);
            }
            let r = real::run_real(sc, seed, threads, a.plant.clone());
            n += 1;
            sessions += r.sessions;
            messages += r.messages;
            faults.add(&r.faults);
            refused += r.failed_connects;
            wall += r.wall;
            if r.violations.is_empty() {
                passed += 1;
            } else {
                failing.push(r);
                if a.fail_fast {
                    break 'all;
                }
            }
        }
        if !a.no_progress {
            eprint!("\r{:60}\r", "");
        }
        let skipped = real::skipped(sc);
        println!(
            "{:<24} {:>5} {:>6} {:>8} {:>9} {:>6} {:>6} {:>6} {:>7} {:>7} {:>6.2}s  {}",
            sc.name,
            n,
            passed,
            sessions,
            messages,
            faults.short,
            faults.stalls,
            faults.resets,
            faults.corrupted,
            refused,
            wall.as_secs_f64(),
            if skipped.is_empty() {
                "-".to_string()
            } else {
                skipped.join(", ")
            }
        );
    }
    println!(
        "(short/stalls/resets/corrupt: faults made in the real streams; refused: connects that \
         failed under one)"
    );
    for f in &failing {
        println!(
            "\n{} seed {} on real sockets: {} violation(s)",
            f.scenario,
            f.seed,
            f.violations.len()
        );
        for v in f.violations.iter().take(5) {
            println!("  - {v}");
        }
        println!(
            "  again: laxsim run --real --scenario {} --seeds {}{} (thread timing is not seeded: it may pass)",
            f.scenario,
            f.seed,
            a.plant
                .as_deref()
                .map_or(String::new(), |p| format!(" --plant {p}"))
        );
    }
    if !failing.is_empty() {
        println!("\nbuild: {}", Fingerprint::current());
        println!("\nlaxsim --real: FAILED");
        return ExitCode::from(1);
    }
    println!("\nlaxsim --real: all seeds passed");
    ExitCode::SUCCESS
}

fn cmd_soak(a: &SoakArgs) -> ExitCode {
    let sessions = usize::from(a.sessions);
    let opts = soak::SoakOpts {
        sessions,
        duration: a.duration,
        rate: a.rate,
        churn: a.churn,
        destroyers: a.destroyers.unwrap_or(sessions / 100),
        hostile_every: (!a.hostile_every.is_zero()).then_some(a.hostile_every),
        protocol: if a.protocol == "bits-hpke" {
            laxnet::Protocol::BitsHpke
        } else {
            laxnet::Protocol::Bits
        },
        interval: a.interval.unwrap_or_else(|| {
            (a.duration / 15).clamp(
                std::time::Duration::from_secs(1),
                std::time::Duration::from_secs(5),
            )
        }),
        ramp: a
            .ramp
            .unwrap_or_else(|| (a.duration / 6).min(std::time::Duration::from_secs(10))),
        server: match a.server.as_str() {
            "in-process" => soak::ServerPlace::InProcess,
            "child" => match std::env::current_exe() {
                Ok(p) => soak::ServerPlace::Child(p),
                Err(e) => {
                    eprintln!("laxsim soak: cannot find this program to re-run it: {e}");
                    return ExitCode::from(2);
                }
            },
            _ => soak::ServerPlace::Auto,
        },
        plant: a.plant.clone(),
        server_handshakes: a.server_handshakes,
        seed: a.seed,
        progress: !a.no_progress,
        leak_per_session: 0,
    };
    let r = soak::soak(&opts);
    if let Some(p) = &a.json_file
        && let Err(e) = std::fs::write(p, serde_json::to_string_pretty(&r).unwrap_or_default())
    {
        eprintln!("laxsim soak: {}: {e}", p.display());
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else {
        soak::print_report(&r);
    }
    if r.passed() {
        ExitCode::SUCCESS
    } else {
        for f in &r.failures {
            eprintln!("laxsim soak: FAILED: {f}");
        }
        ExitCode::from(1)
    }
}

fn cmd_merge(a: &MergeArgs) -> ExitCode {
    let mut docs = Vec::new();
    for p in &a.files {
        let doc = std::fs::read_to_string(p)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).map_err(|e| e.to_string()));
        match doc {
            Ok(d) => docs.push((p.display().to_string(), d)),
            Err(e) => {
                eprintln!("laxsim: {}: {e}", p.display());
                return ExitCode::from(2);
            }
        }
    }
    let m = match sweep::merge(&docs) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("laxsim merge: {e}");
            return ExitCode::from(2);
        }
    };
    if let Ok(theirs) = Fingerprint::parse(&m.fingerprint) {
        let diff = Fingerprint::current().differences(&theirs);
        if !diff.is_empty() {
            eprintln!(
                "laxsim merge: note: the shards were built differently from this laxsim ({}); \
                 their replay commands need their build",
                diff.iter()
                    .map(|(k, _, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&m.json).unwrap_or_default()
        );
    } else {
        println!("merged {} summaries; build: {}", docs.len(), m.fingerprint);
        suite::print_summary(&m.result, m.plant.as_deref());
        if !m.missing_shards.is_empty() {
            println!(
                "\nlaxsim merge: INCOMPLETE: shard(s) {} not given",
                m.missing_shards.join(", ")
            );
        }
    }
    if m.result.passed() && m.missing_shards.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        match turmoil::sim_elapsed() {
            Some(d) => write!(w, "sim+{:>10.3}ms", d.as_secs_f64() * 1000.0),
            None => write!(w, "sim+{:>12}", "-"),
        }
    }
}

fn cmd_replay(a: &ReplayArgs, sc: &Arc<Scenario>) -> ExitCode {
    let seed = a.seed;
    if let Some(theirs) = &a.fingerprint {
        let ours = Fingerprint::current();
        let diff = ours.differences(theirs);
        if !diff.is_empty() {
            eprintln!(
                "laxsim replay: WARNING: this build differs from the one that ran the seed; \
                 the replay may be a different run:"
            );
            for (k, mine, them) in &diff {
                eprintln!("  {k}: here {mine}, there {them}");
            }
            eprintln!("  (docs/simulation-ci.md says what must match)");
        }
    }
    let mut plant = a.plant.clone();
    let schedule = match &a.schedule {
        None => None,
        Some(p) => {
            let text = match std::fs::read_to_string(p) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("laxsim: {}: {e}", p.display());
                    return ExitCode::from(2);
                }
            };
            let s = match Schedule::parse(&text) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("laxsim: {}: not a schedule: {e}", p.display());
                    return ExitCode::from(2);
                }
            };
            if s.scenario != sc.name || s.seed != seed {
                eprintln!(
                    "laxsim: {} is a schedule for {} seed {}, not {} seed {seed}",
                    p.display(),
                    s.scenario,
                    s.seed,
                    sc.name
                );
                return ExitCode::from(2);
            }
            if plant.is_none() && s.plant.is_some() {
                plant = s.plant.clone();
                if laxnet_sim::plantable().is_empty() {
                    eprintln!(
                        "laxsim: this schedule plants {plant:?}: rebuild with --features planted-bugs"
                    );
                    return ExitCode::from(2);
                }
            }
            Some(s.faults)
        }
    };
    if a.trace {
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "laxnet=trace".into());
        let _ = tracing_subscriber::fmt()
            .with_timer(SimTime)
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stdout)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .try_init();
    }
    let o = run_seed(
        sc,
        &RunOpts {
            seed,
            plant: plant.clone(),
            schedule,
            logging: a.trace,
            echo: a.trace,
        },
    );
    {
        let st = lock(&o.state);
        print!("{}", timeline::text(&st));
        println!(
            "edges: {}",
            o.edges
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        println!(
            "{} sessions, {} messages, {} faults, {:.3}s simulated",
            o.sessions,
            o.messages,
            o.faults,
            o.sim_time.as_secs_f64()
        );
        if let Some(path) = &a.timeline {
            let title = format!(
                "laxsim {} seed {seed}{}",
                sc.name,
                plant
                    .as_deref()
                    .map_or(String::new(), |p| format!(" (planted {p})"))
            );
            match std::fs::write(path, timeline::html(&st, &title)) {
                Ok(()) => println!("timeline written to {}", path.display()),
                Err(e) => eprintln!("laxsim: {}: {e}", path.display()),
            }
        }
    }
    if !o.violations.is_empty() {
        println!("\n{} violation(s):", o.violation_count);
        for v in &o.violations {
            println!("- {v}");
        }
    }
    println!("build: {}", Fingerprint::current());
    println!("trace-hash: {:016x}", o.hash);
    if o.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn cmd_fuzz_input(a: &FuzzInputArgs) -> ExitCode {
    let data = match std::fs::read(&a.file) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("laxsim: {}: {e}", a.file.display());
            return ExitCode::from(2);
        }
    };
    let case = laxnet_sim::fuzz::Case::new(&data, a.plant.as_deref());
    let dir = a.out.clone().unwrap_or_else(|| {
        let mut d = a.file.clone().into_os_string();
        d.push(".laxsim");
        PathBuf::from(d)
    });
    let sched = match case.write(&dir) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("laxsim: {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    };
    let o = case.run();
    println!(
        "scenario {} written to {}, its fault schedule ({} faults) to {}",
        case.schedule.scenario,
        dir.join(format!("{}.toml", case.schedule.scenario))
            .display(),
        case.schedule.faults.len(),
        sched.display()
    );
    println!(
        "{} sessions, {} messages, {} faults, {:.3}s simulated",
        o.sessions,
        o.messages,
        o.faults,
        o.sim_time.as_secs_f64()
    );
    if !o.violations.is_empty() {
        println!("\n{} violation(s):", o.violation_count);
        for v in &o.violations {
            println!("- {v}");
        }
    }
    println!("build: {}", Fingerprint::current());
    println!("trace-hash: {:016x}", o.hash);
    println!("replay: {}", case.replay_command(&dir));
    if o.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn cmd_shrink(a: &ShrinkArgs, sc: &Arc<Scenario>) -> ExitCode {
    let seed = a.seed;
    let out = a.out.clone();
    let res = shrink::shrink(sc, seed, a.plant.clone(), a.max_runs, |m| {
        eprintln!("shrink: {m}")
    });
    match res {
        Err(e) => {
            eprintln!("laxsim: {e}");
            ExitCode::from(1)
        }
        Ok(s) => {
            let text = serde_json::to_string_pretty(&s.schedule).unwrap_or_default();
            if let Err(e) = std::fs::write(&out, text + "\n") {
                eprintln!("laxsim: {}: {e}", out.display());
                return ExitCode::from(2);
            }
            println!(
                "shrunk {} fault decisions to {} in {} runs; still fails with: {}",
                s.original,
                s.schedule.faults.len(),
                s.runs,
                s.first_violation.lines().next().unwrap_or("")
            );
            for f in &s.schedule.faults {
                println!("  {f:?}");
            }
            println!(
                "schedule written to {}\nreplay: laxsim replay --scenario {} --seed {seed} --schedule {}{}",
                out.display(),
                sc.name,
                out.display(),
                a.plant
                    .as_deref()
                    .map_or(String::new(), |p| format!(" --plant {p}"))
            );
            ExitCode::SUCCESS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seeds_parse_as_before() {
        assert_eq!(parse_seeds("0..100"), Ok(0..100));
        assert_eq!(parse_seeds(" 1 .. 4 "), Ok(1..4));
        assert_eq!(parse_seeds("3..=5"), Ok(3..6));
        assert_eq!(parse_seeds("7"), Ok(7..8));
        assert!(parse_seeds("5..2").is_err());
        assert!(parse_seeds("5..5").is_err());
        assert!(parse_seeds("5..=4").is_err());
        assert!(parse_seeds("x..3").is_err());
        assert!(parse_seeds("-1").is_err());
        assert!(parse_seeds(&u64::MAX.to_string()).is_err());
        assert_eq!(
            parse_seeds(&format!("0..={}", u64::MAX - 1)),
            Ok(0..u64::MAX)
        );
    }
}
