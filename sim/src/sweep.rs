//! Sweeps split over machines: shards of a seed range, seed blocks (the unit of the JUnit
//! report and of the `sweep_blocks` test binary that `cargo nextest --partition` shards), the
//! `--json` summary of a shard and the merge of several into one result.
//!
//! A shard `K/N` (1 ≤ K ≤ N, as in `cargo nextest --partition count:K/N`) of a seed range
//! holds the seeds `s` of the range with `s mod N == K - 1`, for every scenario: the N shards
//! of a range are disjoint, cover it, and each gets every scenario and a fair share of slow and
//! fast seeds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::fingerprint::Fingerprint;
use crate::scenario::Scenario;
use crate::suite::{self, ScenarioSummary, SeedResult, SuiteResult};

/// One shard of N: the seeds `s` with `s mod n == k - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, 1-based.
    pub k: u64,
    /// The number of shards.
    pub n: u64,
}

impl Shard {
    /// The whole range as one shard.
    pub const ALL: Shard = Shard { k: 1, n: 1 };

    /// Parses `K/N` with 1 ≤ K ≤ N.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected K/N, e.g. 1/4"))?;
        let num = |x: &str| {
            x.trim()
                .parse::<u64>()
                .map_err(|_| format!("{s:?}: bad number {x:?}"))
        };
        let (k, n) = (num(k)?, num(n)?);
        if n == 0 || k == 0 || k > n {
            return Err(format!(
                "{s:?}: need 1 <= K <= N (shards are numbered from 1)"
            ));
        }
        Ok(Shard { k, n })
    }

    /// True if `seed` belongs to this shard.
    pub fn contains(&self, seed: u64) -> bool {
        seed % self.n == self.k - 1
    }

    /// True if this shard and `other` may share a seed (of ranges that intersect): the seeds
    /// `≡ k-1 (mod n)` and `≡ k'-1 (mod n')` meet iff `k-1 ≡ k'-1 (mod gcd(n, n'))`.
    pub fn meets(&self, other: &Shard) -> bool {
        let g = gcd(self.n, other.n);
        (self.k - 1) % g == (other.k - 1) % g
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The seed blocks of `seeds`: `[i*size, (i+1)*size)` clipped to the range, in order.
pub fn blocks(seeds: &Range<u64>, size: u64) -> Vec<Range<u64>> {
    let size = size.max(1);
    let mut out = Vec::new();
    let mut a = seeds.start;
    while a < seeds.end {
        let b = (a / size)
            .saturating_add(1)
            .saturating_mul(size)
            .min(seeds.end);
        out.push(a..b);
        a = b;
    }
    out
}

/// Digits in the block names of `seeds` (at least 4, so names sort as numbers).
pub fn name_width(seeds: &Range<u64>) -> usize {
    (seeds.end.saturating_sub(1)).to_string().len().max(4)
}

/// A block's test name: `churn::seeds_0000_0099` (the last seed included).
pub fn block_name(scenario: &str, block: &Range<u64>, width: usize) -> String {
    format!(
        "{scenario}::seeds_{:0width$}_{:0width$}",
        block.start,
        block.end.saturating_sub(1)
    )
}

/// One failing seed as the lines a report shows: the failures (at most three) and the replay
/// command with this build's fingerprint.
pub fn failure_text(f: &SeedResult, plant: Option<&str>) -> String {
    let mut s = format!(
        "{} seed {}: {} failure(s)\n",
        f.scenario, f.seed, f.failure_count
    );
    for v in f.failures.iter().take(3) {
        for (i, line) in v.lines().enumerate() {
            let _ = writeln!(s, "  {}{line}", if i == 0 { "- " } else { "  " });
        }
    }
    let _ = writeln!(
        s,
        "  replay: {}",
        suite::replay_command(&f.scenario, f.seed, plant)
    );
    s
}

/// What one `laxsim run` covered, for its `--json` summary and the JUnit report.
#[derive(Debug, Clone)]
pub struct Coverage {
    /// The seed range given.
    pub seeds: Range<u64>,
    /// The shard of it that ran.
    pub shard: Shard,
}

/// The `--json` summary of a run: `suite::json_summary` plus the fingerprint, the seed range
/// and shard, and each scenario's expected edges (so a merge can check coverage).
pub fn json_summary(
    r: &SuiteResult,
    plant: Option<&str>,
    cov: &Coverage,
    scs: &[Arc<Scenario>],
) -> Value {
    let mut v = suite::json_summary(r, plant);
    v["fingerprint"] = json!(Fingerprint::current().to_string());
    v["seeds"] = json!({"start": cov.seeds.start, "end": cov.seeds.end});
    v["shard"] = json!(cov.shard.to_string());
    if let Some(list) = v["scenarios"].as_array_mut() {
        for s in list {
            let name = s["scenario"].as_str().unwrap_or("").to_string();
            if let Some(sc) = scs.iter().find(|sc| sc.name == name) {
                s["expect_edges"] = json!(sc.expect_edges);
            }
        }
    }
    v
}

/// Escapes text for XML attribute values and character data. Characters XML 1.0 cannot
/// carry (controls other than tab, newline, carriage return) become U+FFFD.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A JUnit XML report of a run: one `<testsuite>` per scenario, one `<testcase>` per seed
/// block of `block` seeds (named as in the `sweep_blocks` test binary) that has seeds in this
/// shard, failing with each failing seed's violations and replay command, and a
/// `scenario::edges` testcase failing when an expected edge was never reached.
pub fn junit(r: &SuiteResult, plant: Option<&str>, cov: &Coverage, block: u64) -> String {
    let width = name_width(&cov.seeds);
    let fp = Fingerprint::current().to_string();
    let mut suites = String::new();
    let (mut all_tests, mut all_failures) = (0usize, 0usize);
    for s in &r.scenarios {
        let mut cases = String::new();
        let (mut tests, mut failures) = (0usize, 0usize);
        let mine: Vec<&SeedResult> = r.seeds.iter().filter(|x| x.scenario == s.name).collect();
        for b in blocks(&cov.seeds, block) {
            let in_block: Vec<&&SeedResult> = mine.iter().filter(|x| b.contains(&x.seed)).collect();
            let planned = b.clone().filter(|x| cov.shard.contains(*x)).count();
            if planned == 0 {
                continue;
            }
            tests += 1;
            let time: Duration = in_block.iter().map(|x| x.wall).sum();
            let name = block_name(&s.name, &b, width);
            let _ = write!(
                cases,
                "    <testcase classname=\"laxsim.{}\" name=\"{}\" time=\"{:.3}\"",
                xml_escape(&s.name),
                xml_escape(&name),
                time.as_secs_f64()
            );
            let failing: Vec<&&&SeedResult> = in_block.iter().filter(|x| !x.passed()).collect();
            if failing.is_empty() && in_block.len() == planned {
                cases.push_str("/>\n");
                continue;
            }
            let msg;
            let mut body = String::new();
            if failing.is_empty() {
                // --fail-fast stopped the run before this block's seeds.
                msg = format!("{} of {planned} seeds not run", planned - in_block.len());
                cases.push_str(">\n      <skipped message=\"");
                cases.push_str(&xml_escape(&msg));
                cases.push_str("\"/>\n    </testcase>\n");
                continue;
            }
            failures += 1;
            msg = format!("{} of {planned} seeds failed", failing.len());
            for f in &failing {
                body.push_str(&failure_text(f, plant));
            }
            let _ = writeln!(body, "build: {fp}");
            let _ = write!(
                cases,
                ">\n      <failure type=\"laxsim\" message=\"{}\">{}</failure>\n    </testcase>\n",
                xml_escape(&msg),
                xml_escape(&body)
            );
        }
        tests += 1;
        let _ = write!(
            cases,
            "    <testcase classname=\"laxsim.{0}\" name=\"{0}::edges\"",
            xml_escape(&s.name)
        );
        if s.missing_edges.is_empty() {
            cases.push_str("/>\n");
        } else {
            failures += 1;
            let msg = format!("never reached: {}", s.missing_edges.join(", "));
            let _ = write!(
                cases,
                ">\n      <failure type=\"laxsim\" message=\"{}\"/>\n    </testcase>\n",
                xml_escape(&msg)
            );
        }
        all_tests += tests;
        all_failures += failures;
        let _ = write!(
            suites,
            "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{:.3}\">\n    <properties>\n      <property name=\"fingerprint\" value=\"{}\"/>\n      <property name=\"seeds\" value=\"{}..{}\"/>\n      <property name=\"shard\" value=\"{}\"/>\n    </properties>\n{cases}  </testsuite>\n",
            xml_escape(&s.name),
            s.wall.as_secs_f64(),
            xml_escape(&fp),
            cov.seeds.start,
            cov.seeds.end,
            cov.shard
        );
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"laxsim\" tests=\"{all_tests}\" failures=\"{all_failures}\" errors=\"0\" time=\"{:.3}\">\n{suites}</testsuites>\n",
        r.elapsed.as_secs_f64()
    )
}

/// Several shards' `--json` summaries merged.
pub struct Merged {
    /// The result, for `suite::print_summary`: every scenario's totals and the failing seeds
    /// (passing seeds are not in a summary). `elapsed` is the longest shard's.
    pub result: SuiteResult,
    /// The merged summary, in the `--json` form.
    pub json: Value,
    /// The shards' common fingerprint.
    pub fingerprint: String,
    /// The shards of a common seed range that were not given (empty when complete or when the
    /// inputs are not shards of one range).
    pub missing_shards: Vec<String>,
    /// The planted bug of the runs.
    pub plant: Option<String>,
}

fn shard_of(v: &Value) -> Result<(Range<u64>, Shard), String> {
    let seeds = &v["seeds"];
    let (Some(a), Some(b)) = (seeds["start"].as_u64(), seeds["end"].as_u64()) else {
        return Err("no seed range (a summary of laxsim run --json from an older laxsim?)".into());
    };
    let shard = Shard::parse(v["shard"].as_str().unwrap_or("1/1"))?;
    Ok((a..b, shard))
}

/// Merges `--json` summaries (name, document). Errors when they cannot be merged: different
/// fingerprints or planted bugs, or two of them may have run the same seed.
pub fn merge(docs: &[(String, Value)]) -> Result<Merged, String> {
    let Some((first_name, first)) = docs.first() else {
        return Err("nothing to merge".into());
    };
    let fp = first["fingerprint"]
        .as_str()
        .ok_or_else(|| format!("{first_name}: no fingerprint (not a laxsim run --json summary?)"))?
        .to_string();
    let plant = first["plant"].as_str().map(str::to_string);
    let mut parts = Vec::new();
    for (name, d) in docs {
        let their = d["fingerprint"].as_str().unwrap_or("(none)");
        if their != fp {
            let diff = match (Fingerprint::parse(&fp), Fingerprint::parse(their)) {
                (Ok(a), Ok(b)) => a
                    .differences(&b)
                    .iter()
                    .map(|(k, x, y)| format!("{k}: {x} vs {y}"))
                    .collect::<Vec<_>>()
                    .join("; "),
                _ => their.to_string(),
            };
            return Err(format!(
                "{name} was built differently from {first_name} ({diff}): its seeds are not the same runs"
            ));
        }
        if d["plant"].as_str().map(str::to_string) != plant {
            return Err(format!("{name} and {first_name} plant different bugs"));
        }
        parts.push((name, shard_of(d).map_err(|e| format!("{name}: {e}"))?));
    }
    for (i, (na, (ra, sa))) in parts.iter().enumerate() {
        for (nb, (rb, sb)) in &parts[..i] {
            if ra.start < rb.end && rb.start < ra.end && sa.meets(sb) {
                return Err(format!(
                    "{na} (seeds {}..{} shard {sa}) and {nb} (seeds {}..{} shard {sb}) overlap",
                    ra.start, ra.end, rb.start, rb.end
                ));
            }
        }
    }
    let mut missing_shards = Vec::new();
    let (r0, s0) = &parts[0].1;
    if parts.iter().all(|(_, (r, s))| r == r0 && s.n == s0.n) {
        for k in 1..=s0.n {
            if !parts.iter().any(|(_, (_, s))| s.k == k) {
                missing_shards.push(format!("{k}/{}", s0.n));
            }
        }
    }

    let mut order: Vec<String> = Vec::new();
    let mut sums: BTreeMap<String, ScenarioSummary> = BTreeMap::new();
    let mut expect: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut failing = Vec::new();
    let mut seeds = Vec::new();
    let mut elapsed = 0f64;
    let mut stopped_early = false;
    for (_, d) in docs {
        elapsed = elapsed.max(d["elapsed_s"].as_f64().unwrap_or(0.0));
        stopped_early |= d["stopped_early"].as_bool().unwrap_or(false);
        for s in d["scenarios"].as_array().into_iter().flatten() {
            let name = s["scenario"].as_str().unwrap_or("").to_string();
            if !order.contains(&name) {
                order.push(name.clone());
            }
            let t = sums.entry(name.clone()).or_insert_with(|| ScenarioSummary {
                name: name.clone(),
                ..Default::default()
            });
            let n = |k: &str| s[k].as_u64().unwrap_or(0);
            let secs = |k: &str| Duration::from_secs_f64(s[k].as_f64().unwrap_or(0.0).max(0.0));
            t.seeds += n("seeds");
            t.passed += n("passed");
            t.failed += n("failed");
            t.sessions += n("sessions");
            t.messages += n("messages");
            t.faults += n("faults");
            t.sim_time += secs("sim_time_s");
            t.wall += secs("wall_s");
            if let Some(e) = s["edges"].as_object() {
                for (k, v) in e {
                    *t.edges.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
                }
            }
            if let Some(e) = s["expect_edges"].as_array() {
                let list = expect.entry(name).or_default();
                for x in e.iter().filter_map(Value::as_str) {
                    if !list.iter().any(|y| y == x) {
                        list.push(x.to_string());
                    }
                }
            }
        }
        for f in d["failing"].as_array().into_iter().flatten() {
            failing.push(f.clone());
            let first: Vec<String> = f["first"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect();
            seeds.push(SeedResult {
                scenario: f["scenario"].as_str().unwrap_or("").to_string(),
                seed: f["seed"].as_u64().unwrap_or(0),
                hash: 0,
                failures: first,
                failure_count: f["failures"].as_u64().unwrap_or(0),
                edges: BTreeMap::new(),
                sim_time: Duration::ZERO,
                sessions: 0,
                messages: 0,
                faults: 0,
                wall: Duration::ZERO,
            });
        }
    }
    seeds.sort_by(|a, b| (&a.scenario, a.seed).cmp(&(&b.scenario, b.seed)));
    let mut scenarios = Vec::new();
    for name in &order {
        let mut s = sums.remove(name).unwrap_or_default();
        s.missing_edges = expect
            .get(name)
            .into_iter()
            .flatten()
            .filter(|e| s.edges.get(*e).copied().unwrap_or(0) == 0)
            .cloned()
            .collect();
        scenarios.push(s);
    }
    let result = SuiteResult {
        seeds,
        scenarios,
        elapsed: Duration::from_secs_f64(elapsed),
        stopped_early,
    };
    let mut json = suite::json_summary(&result, plant.as_deref());
    // The shards' own replay commands (the same build, checked above).
    json["failing"] = Value::Array(failing);
    json["fingerprint"] = json!(fp);
    json["merged"] = json!(
        parts
            .iter()
            .map(|(n, (r, s))| json!({"file": n, "seeds": {"start": r.start, "end": r.end}, "shard": s.to_string()}))
            .collect::<Vec<_>>()
    );
    json["missing_shards"] = json!(missing_shards);
    json["passed"] = json!(result.passed() && missing_shards.is_empty());
    for s in json["scenarios"].as_array_mut().into_iter().flatten() {
        let name = s["scenario"].as_str().unwrap_or("").to_string();
        s["expect_edges"] = json!(expect.get(&name).cloned().unwrap_or_default());
    }
    Ok(Merged {
        result,
        json,
        fingerprint: fp,
        missing_shards,
        plant,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_a_range_disjointly_and_completely() {
        assert_eq!(Shard::parse("2/4"), Ok(Shard { k: 2, n: 4 }));
        for bad in ["0/4", "5/4", "1/0", "x/2", "3", "1/-2"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let n = 7;
        for seed in 0..100u64 {
            let owners: Vec<u64> = (1..=n).filter(|&k| Shard { k, n }.contains(seed)).collect();
            assert_eq!(owners, [seed % n + 1]);
        }
        assert!(Shard::ALL.contains(12345));
        // 1/2 holds the even seeds, 2/4 those ≡ 1 (mod 4): disjoint; 1/2 and 3/4 meet at 2, 6, ...
        let s = |k, n| Shard { k, n };
        assert!(!s(1, 2).meets(&s(2, 4)));
        assert!(s(1, 2).meets(&s(3, 4)));
        assert!(s(1, 3).meets(&s(2, 2)), "coprime shard counts always meet");
        assert!(!s(1, 4).meets(&s(2, 4)));
    }

    #[test]
    fn blocks_are_aligned_and_clipped() {
        assert_eq!(blocks(&(0..250), 100), [0..100, 100..200, 200..250]);
        assert_eq!(blocks(&(150..320), 100), [150..200, 200..300, 300..320]);
        assert_eq!(blocks(&(5..6), 0), vec![Range { start: 5, end: 6 }]);
        assert_eq!(
            block_name("churn", &(0..100), name_width(&(0..1000))),
            "churn::seeds_0000_0099"
        );
        assert_eq!(
            block_name("x", &(100_000..100_010), name_width(&(0..100_010))),
            "x::seeds_100000_100009"
        );
    }

    #[test]
    fn xml_escape_leaves_nothing_that_breaks_a_document() {
        assert_eq!(
            xml_escape("a<b>&\"c'\u{1}\td"),
            "a&lt;b&gt;&amp;&quot;c&apos;\u{FFFD}\td"
        );
    }

    fn summary(shard: &str, seeds: (u64, u64), failed: u64, edges: &[(&str, u64)]) -> Value {
        json!({
            "passed": failed == 0,
            "plant": null,
            "elapsed_s": 2.0,
            "stopped_early": false,
            "fingerprint": "laxnet-sim=0.1.0,git=abc,lock=01",
            "seeds": {"start": seeds.0, "end": seeds.1},
            "shard": shard,
            "failing": if failed > 0 { json!([{"scenario": "churn", "seed": 3, "failures": 1, "first": ["boom"], "replay": "laxsim replay --scenario churn --seed 3"}]) } else { json!([]) },
            "scenarios": [{
                "scenario": "churn", "seeds": 5, "passed": 5 - failed, "failed": failed,
                "sim_time_s": 1.5, "sessions": 10, "messages": 100, "faults": 7, "wall_s": 1.0,
                "seeds_per_s": 5.0, "edges": edges.iter().map(|(k, v)| ((*k).to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "missing_edges": [], "expect_edges": ["stale_ref", "crash"],
            }],
        })
    }

    #[test]
    fn merge_sums_shards_and_checks_them() {
        let a = summary("1/2", (0, 10), 0, &[("stale_ref", 2)]);
        let b = summary("2/2", (0, 10), 1, &[("crash", 1), ("stale_ref", 1)]);
        let m = merge(&[("a".into(), a.clone()), ("b".into(), b.clone())])
            .unwrap_or_else(|e| panic!("{e}"));
        let s = &m.result.scenarios[0];
        assert_eq!((s.seeds, s.passed, s.failed, s.messages), (10, 9, 1, 200));
        assert_eq!(s.edges["stale_ref"], 3);
        assert!(s.missing_edges.is_empty(), "the edges of all shards count");
        assert_eq!(m.result.seeds.len(), 1);
        assert!(m.missing_shards.is_empty());
        assert_eq!(m.json["passed"], json!(false));
        assert_eq!(m.json["failing"][0]["seed"], json!(3));

        // Only one shard: incomplete, and an edge only the other reached is missing.
        let m = merge(&[("a".into(), a.clone())]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.missing_shards, ["2/2"]);
        assert_eq!(m.result.scenarios[0].missing_edges, ["crash"]);
        assert_eq!(m.json["passed"], json!(false));

        // The same shard twice, overlapping shards, a different build: refused.
        assert!(merge(&[("a".into(), a.clone()), ("a2".into(), a.clone())]).is_err());
        let c = summary("1/1", (5, 20), 0, &[]);
        assert!(merge(&[("a".into(), a.clone()), ("c".into(), c)]).is_err());
        let d = summary("1/1", (10, 20), 0, &[]);
        assert!(
            merge(&[
                ("a".into(), a.clone()),
                ("b".into(), b.clone()),
                ("d".into(), d)
            ])
            .is_ok()
        );
        let mut e = b.clone();
        e["fingerprint"] = json!("laxnet-sim=0.1.0,git=abc,lock=02");
        let Err(err) = merge(&[("a".into(), a), ("e".into(), e)]) else {
            panic!("merged different builds")
        };
        assert!(err.contains("lock: 01 vs 02"), "{err}");
    }
}
