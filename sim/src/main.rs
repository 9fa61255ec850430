//! `laxsim`: the seeded simulation runner of laxnet.
//!
//! ```text
//! laxsim list     [--scenario NAME]...
//! laxsim run      [--scenario NAME]... [--seeds A..B] [--jobs N] [--check-determinism]
//!                 [--plant BUG] [--json] [--fail-fast] [--no-progress]
//! laxsim replay   --scenario NAME --seed N [--schedule FILE] [--trace] [--timeline FILE.html]
//!                 [--plant BUG]
//! laxsim shrink   --scenario NAME --seed N --out FILE [--plant BUG] [--max-runs N]
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
use laxnet_sim::runner::{RunOpts, run_seed};
use laxnet_sim::scenario::{self, Scenario};
use laxnet_sim::schedule::Schedule;
use laxnet_sim::state::lock;
use laxnet_sim::suite::{self, SuiteOpts};
use laxnet_sim::{shrink, timeline};

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
    #[command(flatten)]
    dir: Dir,
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
        Cmd::Completions { .. } => ExitCode::SUCCESS, // printed above
    }
}

fn cmd_run(a: &RunArgs, scs: &[Arc<Scenario>]) -> ExitCode {
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
    let r = suite::run_suite(scs, &opts);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&suite::json_summary(&r, a.plant.as_deref()))
                .unwrap_or_default()
        );
    } else {
        suite::print_summary(&r, a.plant.as_deref());
    }
    if r.passed() {
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
    println!("trace-hash: {:016x}", o.hash);
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
