//! `laxsim`: the seeded simulation runner of laxnet.
//!
//! ```text
//! laxsim list
//! laxsim run [--scenario NAME]... [--seeds A..B] [--jobs N] [--check-determinism]
//!            [--plant BUG] [--json] [--fail-fast]
//! laxsim replay --scenario NAME --seed N [--schedule FILE] [--trace] [--timeline FILE.html]
//!               [--plant BUG]
//! laxsim shrink --scenario NAME --seed N --out FILE [--plant BUG] [--max-runs N]
//! ```
//! `--jobs` defaults to the number of CPUs. Every command also takes `--scenarios DIR` (default: `$LAXSIM_SCENARIOS`, else the
//! workspace's `scenarios/`). Exit codes: 0 passed, 1 a seed failed, 2 usage error.

use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use laxnet_sim::runner::{RunOpts, run_seed};
use laxnet_sim::scenario::{self, Scenario};
use laxnet_sim::schedule::Schedule;
use laxnet_sim::state::lock;
use laxnet_sim::suite::{self, SuiteOpts};
use laxnet_sim::{shrink, timeline};

const USAGE: &str = "\
usage:
  laxsim list
  laxsim run [--scenario NAME]... [--seeds A..B] [--jobs N] [--check-determinism]
             [--plant BUG] [--json] [--fail-fast] [--no-progress]
  laxsim replay --scenario NAME --seed N [--schedule FILE] [--trace] [--timeline FILE.html]
                [--plant BUG]
  laxsim shrink --scenario NAME --seed N --out FILE [--plant BUG] [--max-runs N]
options for every command: --scenarios DIR (default: the workspace's scenarios/)
exit codes: 0 all passed, 1 a seed failed, 2 usage error";

struct Usage(String);

fn usage<T>(msg: impl Into<String>) -> Result<T, Usage> {
    Err(Usage(msg.into()))
}

#[derive(Default)]
struct Args {
    cmd: String,
    scenarios: Vec<String>,
    seeds: Option<Range<u64>>,
    seed: Option<u64>,
    jobs: usize,
    check_determinism: bool,
    plant: Option<String>,
    json: bool,
    fail_fast: bool,
    no_progress: bool,
    schedule: Option<PathBuf>,
    trace: bool,
    timeline: Option<PathBuf>,
    out: Option<PathBuf>,
    max_runs: usize,
    dir: Option<PathBuf>,
}

fn parse_seeds(s: &str) -> Result<Range<u64>, Usage> {
    let num = |x: &str| {
        x.trim()
            .parse::<u64>()
            .map_err(|_| Usage(format!("bad seed number {x:?} in --seeds {s}")))
    };
    if let Some((a, b)) = s.split_once("..=") {
        let (a, b) = (num(a)?, num(b)?);
        return Ok(a..b + 1);
    }
    if let Some((a, b)) = s.split_once("..") {
        let (a, b) = (num(a)?, num(b)?);
        if b <= a {
            return usage(format!("--seeds {s}: empty range"));
        }
        return Ok(a..b);
    }
    let a = num(s)?;
    Ok(a..a + 1)
}

fn parse(argv: Vec<String>) -> Result<Args, Usage> {
    let mut it = argv.into_iter();
    let mut a = Args {
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        max_runs: 300,
        ..Default::default()
    };
    a.cmd = match it.next() {
        Some(c) => c,
        None => return usage("no command"),
    };
    if !matches!(a.cmd.as_str(), "list" | "run" | "replay" | "shrink") {
        if matches!(a.cmd.as_str(), "help" | "--help" | "-h") {
            return usage("");
        }
        return usage(format!("unknown command {:?}", a.cmd));
    }
    while let Some(flag) = it.next() {
        let mut val = |name: &str| -> Result<String, Usage> {
            it.next()
                .ok_or_else(|| Usage(format!("{name} needs a value")))
        };
        match flag.as_str() {
            "--scenario" => a.scenarios.push(val("--scenario")?),
            "--seeds" => a.seeds = Some(parse_seeds(&val("--seeds")?)?),
            "--seed" => {
                let v = val("--seed")?;
                a.seed = Some(v.parse().map_err(|_| Usage(format!("bad --seed {v:?}")))?);
            }
            "--jobs" | "-j" => {
                let v = val("--jobs")?;
                a.jobs = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| Usage(format!("bad --jobs {v:?}")))?;
            }
            "--max-runs" => {
                let v = val("--max-runs")?;
                a.max_runs = v
                    .parse()
                    .map_err(|_| Usage(format!("bad --max-runs {v:?}")))?;
            }
            "--check-determinism" => a.check_determinism = true,
            "--plant" => a.plant = Some(val("--plant")?),
            "--json" => a.json = true,
            "--fail-fast" => a.fail_fast = true,
            "--no-progress" => a.no_progress = true,
            "--schedule" => a.schedule = Some(val("--schedule")?.into()),
            "--trace" => a.trace = true,
            "--timeline" => a.timeline = Some(val("--timeline")?.into()),
            "--out" => a.out = Some(val("--out")?.into()),
            "--scenarios" => a.dir = Some(val("--scenarios")?.into()),
            "-h" | "--help" => return usage(""),
            other => return usage(format!("unknown option {other:?} for {}", a.cmd)),
        }
    }
    // Options that do not belong to the command are usage errors, not silently ignored.
    let wrong = |ok: bool, name: &str| -> Result<(), Usage> {
        if ok {
            Ok(())
        } else {
            usage(format!("{name} does not apply to `laxsim {}`", a.cmd))
        }
    };
    let is = |c: &str| a.cmd == c;
    wrong(a.seeds.is_none() || is("run"), "--seeds")?;
    wrong(a.seed.is_none() || is("replay") || is("shrink"), "--seed")?;
    wrong(!a.check_determinism || is("run"), "--check-determinism")?;
    wrong(!a.json || is("run"), "--json")?;
    wrong(!a.fail_fast || is("run"), "--fail-fast")?;
    wrong(a.schedule.is_none() || is("replay"), "--schedule")?;
    wrong(!a.trace || is("replay"), "--trace")?;
    wrong(a.timeline.is_none() || is("replay"), "--timeline")?;
    wrong(a.out.is_none() || is("shrink"), "--out")?;
    wrong(a.plant.is_none() || !is("list"), "--plant")?;
    if let Some(p) = &a.plant {
        let known = laxnet_sim::plantable();
        if known.is_empty() {
            return usage(
                "--plant needs a build with the planted-bugs feature \
                 (cargo run -p laxnet-sim --features planted-bugs -- ...)",
            );
        }
        if !known.contains(&p.as_str()) {
            return usage(format!(
                "unknown planted bug {p:?} (known: {})",
                known.join(", ")
            ));
        }
    }
    if is("replay") || is("shrink") {
        if a.scenarios.len() != 1 {
            return usage(format!("`laxsim {}` needs exactly one --scenario", a.cmd));
        }
        if a.seed.is_none() {
            return usage(format!("`laxsim {}` needs --seed N", a.cmd));
        }
    }
    if is("shrink") && a.out.is_none() {
        return usage("`laxsim shrink` needs --out FILE");
    }
    Ok(a)
}

fn load(a: &Args) -> Result<Vec<Arc<Scenario>>, Usage> {
    let dir = a.dir.clone().unwrap_or_else(scenario::default_dir);
    let all = scenario::load_dir(&dir).map_err(Usage)?;
    if all.is_empty() {
        return usage(format!("no scenarios in {}", dir.display()));
    }
    let mut out = Vec::new();
    if a.scenarios.is_empty() {
        out = all.into_iter().map(Arc::new).collect();
    } else {
        for name in &a.scenarios {
            match all.iter().find(|s| &s.name == name) {
                Some(s) => out.push(Arc::new(s.clone())),
                None => {
                    return usage(format!(
                        "unknown scenario {name:?} (known: {})",
                        all.iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
    }
    Ok(out)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(argv) {
        Ok(a) => a,
        Err(Usage(msg)) => {
            if !msg.is_empty() {
                eprintln!("laxsim: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let scs = match load(&args) {
        Ok(s) => s,
        Err(Usage(msg)) => {
            eprintln!("laxsim: {msg}");
            return ExitCode::from(2);
        }
    };
    match args.cmd.as_str() {
        "list" => {
            for s in &scs {
                println!("{:<20} {}", s.name, s.description);
                if !s.expect_edges.is_empty() {
                    println!("{:<20}   expects: {}", "", s.expect_edges.join(", "));
                }
            }
            ExitCode::SUCCESS
        }
        "run" => cmd_run(&args, &scs),
        "replay" => cmd_replay(&args, &scs[0]),
        "shrink" => cmd_shrink(&args, &scs[0]),
        _ => ExitCode::from(2),
    }
}

fn cmd_run(a: &Args, scs: &[Arc<Scenario>]) -> ExitCode {
    let opts = SuiteOpts {
        seeds: a.seeds.clone().unwrap_or(0..100),
        jobs: a.jobs,
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

fn cmd_replay(a: &Args, sc: &Arc<Scenario>) -> ExitCode {
    let seed = a.seed.unwrap_or(0);
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
            let s: Schedule = match serde_json::from_str(&text) {
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

fn cmd_shrink(a: &Args, sc: &Arc<Scenario>) -> ExitCode {
    let seed = a.seed.unwrap_or(0);
    let out = a.out.clone().unwrap_or_default();
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
