//! The command line: exit codes, help, completions, the JSON summary, replay's trace hash.
use std::process::Command;

fn laxsim(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_laxsim"))
        .args(args)
        .output()
        .expect("laxsim runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn list_names_every_scenario() {
    let (code, out, _) = laxsim(&["list"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("churn") && out.contains("steady-echo"),
        "{out}"
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(laxsim(&[]).0, 2);
    assert_eq!(laxsim(&["frobnicate"]).0, 2);
    assert_eq!(laxsim(&["run", "--seeds", "5..2"]).0, 2);
    assert_eq!(laxsim(&["run", "--scenario", "no-such"]).0, 2);
    assert_eq!(
        laxsim(&["replay", "--scenario", "churn"]).0,
        2,
        "replay needs --seed"
    );
    assert_eq!(
        laxsim(&["run", "--trace"]).0,
        2,
        "--trace is a replay option"
    );
    #[cfg(not(feature = "planted-bugs"))]
    assert_eq!(
        laxsim(&["run", "--plant", "leak-slot"]).0,
        2,
        "--plant needs the feature"
    );
}

#[test]
fn run_json_and_replay_agree() {
    let (code, out, err) = laxsim(&[
        "run",
        "--scenario",
        "steady-echo",
        "--seeds",
        "0..2",
        "--jobs",
        "2",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(v["passed"], true);
    assert_eq!(v["scenarios"][0]["seeds"], 2);
    assert!(v["failing"].as_array().is_some_and(|a| a.is_empty()));

    let (code, a, _) = laxsim(&["replay", "--scenario", "steady-echo", "--seed", "1"]);
    assert_eq!(code, 0);
    let (_, b, _) = laxsim(&["replay", "--scenario", "steady-echo", "--seed", "1"]);
    let hash = |s: &str| {
        s.lines()
            .last()
            .and_then(|l| l.strip_prefix("trace-hash: "))
            .map(str::to_string)
            .expect("last line is the trace hash")
    };
    assert_eq!(hash(&a), hash(&b), "same seed across processes: same hash");
    assert!(a.contains("per-session timeline"), "{a}");
}

#[test]
fn help_for_every_command_exits_0_and_names_its_flags() {
    let commands: &[(&[&str], &[&str])] = &[
        (
            &["--help"],
            &[
                "list",
                "run",
                "replay",
                "shrink",
                "completions",
                "Exit codes",
            ],
        ),
        (&["list", "--help"], &["--scenario", "--scenarios"]),
        (
            &["run", "--help"],
            &[
                "--scenario",
                "--seeds",
                "--jobs",
                "--check-determinism",
                "--plant",
                "--json",
                "--fail-fast",
                "--no-progress",
                "--scenarios",
                "--shard",
                "--junit",
                "[default: 0..100]",
            ],
        ),
        (
            &["replay", "--help"],
            &[
                "--scenario",
                "--seed",
                "--schedule",
                "--trace",
                "--timeline",
                "--plant",
                "--fingerprint",
                "--scenarios",
            ],
        ),
        (&["merge", "--help"], &["SUMMARY.json", "--json"]),
        (
            &["shrink", "--help"],
            &[
                "--scenario",
                "--seed",
                "--out",
                "--plant",
                "--max-runs",
                "--scenarios",
                "[default: 300]",
            ],
        ),
        (
            &["completions", "--help"],
            &["bash", "zsh", "fish", "elvish", "powershell"],
        ),
        (&["help", "run"], &["--seeds"]),
        (&["run", "-h"], &["--seeds"]),
    ];
    for (args, words) in commands {
        let (code, out, err) = laxsim(args);
        assert_eq!(code, 0, "laxsim {args:?}: {err}");
        for w in *words {
            assert!(
                out.contains(w),
                "laxsim {args:?} does not mention {w}:\n{out}"
            );
        }
    }
}

#[test]
fn usage_errors_name_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--frobnicate"], "--frobnicate"),
        (&["list", "--jobs", "2"], "--jobs"), // an option of another command
        (&["run", "--seeds", "5..2"], "--seeds"),
        (&["run", "--jobs", "0"], "--jobs"),
        (&["replay", "--scenario", "churn", "--seed", "x"], "--seed"),
        (&["replay", "--scenario", "churn"], "--seed"),
        (&["shrink", "--scenario", "churn", "--seed", "1"], "--out"),
        (
            &[
                "replay",
                "--scenario",
                "churn",
                "--scenario",
                "churn",
                "--seed",
                "1",
            ],
            "--scenario",
        ),
        (&["run", "--scenario", "no-such"], "--scenario no-such"),
        (&["completions", "tcsh"], "tcsh"),
        (&["run", "--shard", "0/2"], "--shard"),
        (&["run", "--shard", "3/2"], "--shard"),
        (&["run", "--junit-block", "5"], "--junit"),
        (
            &[
                "replay",
                "--scenario",
                "churn",
                "--seed",
                "1",
                "--fingerprint",
                "x",
            ],
            "--fingerprint",
        ),
        (&["merge"], "SUMMARY.json"),
    ];
    for (args, flag) in cases {
        let (code, out, err) = laxsim(args);
        assert_eq!(code, 2, "laxsim {args:?}: {out}\n{err}");
        assert!(
            err.contains(flag),
            "laxsim {args:?} does not name {flag}:\n{err}"
        );
    }
}

#[test]
fn completions_print_a_script_for_every_shell() {
    let (code, out, err) = laxsim(&["completions", "bash"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("_laxsim()") && out.contains("complete -F _laxsim"),
        "{out}"
    );
    assert!(
        out.contains("--check-determinism"),
        "completes run's flags:\n{out}"
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let (code, out, err) = laxsim(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        // fish spells long flags `-l check-determinism`, the others `--check-determinism`.
        assert!(
            out.contains("laxsim") && out.contains("check-determinism"),
            "{shell}:\n{out}"
        );
    }
}

/// `run --shard K/N` splits a range into disjoint shards that `merge` puts back together, each
/// with a JUnit report; `merge` refuses a shard twice and says when one is missing.
#[test]
fn shards_merge_back_into_the_whole_run() {
    let dir = std::env::temp_dir().join(format!("laxsim-cli-shards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |n: &str| dir.join(n).display().to_string();
    let (code, whole, err) = laxsim(&[
        "run",
        "--scenario",
        "steady-echo",
        "--seeds",
        "0..5",
        "--jobs",
        "2",
        "--json",
        "--no-progress",
    ]);
    assert_eq!(code, 0, "{err}");
    let whole: serde_json::Value = serde_json::from_str(&whole).unwrap();
    for k in 1..=2 {
        let shard = format!("{k}/2");
        let junit = path(&format!("j{k}.xml"));
        let (code, out, err) = laxsim(&[
            "run",
            "--scenario",
            "steady-echo",
            "--seeds",
            "0..5",
            "--jobs",
            "2",
            "--json",
            "--no-progress",
            "--shard",
            &shard,
            "--junit",
            &junit,
            "--junit-block",
            "2",
        ]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["shard"], shard.as_str());
        assert_eq!(
            v["scenarios"][0]["seeds"],
            if k == 1 { 3 } else { 2 },
            "seeds 0, 2, 4 | 1, 3"
        );
        assert!(
            v["fingerprint"]
                .as_str()
                .is_some_and(|f| f.contains("git="))
        );
        std::fs::write(path(&format!("s{k}.json")), out).unwrap();
        let xml = std::fs::read_to_string(&junit).unwrap();
        // Blocks of 2 over 0..5: 0-1, 2-3, 4; shard 2 (seeds 1, 3) has none in 4..5.
        let cases = xml.matches("<testcase ").count();
        assert_eq!(cases, if k == 1 { 4 } else { 3 }, "{xml}");
        assert!(
            xml.contains("name=\"steady-echo::seeds_0002_0003\""),
            "{xml}"
        );
        assert!(
            xml.starts_with("<?xml") && xml.contains("failures=\"0\""),
            "{xml}"
        );
    }
    let (code, out, err) = laxsim(&["merge", &path("s1.json"), &path("s2.json"), "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    for k in ["seeds", "passed", "sessions", "messages", "faults", "edges"] {
        assert_eq!(
            m["scenarios"][0][k], whole["scenarios"][0][k],
            "{k}: shards add up to the whole run"
        );
    }
    let (code, out, _) = laxsim(&["merge", &path("s1.json")]);
    assert_eq!(code, 1, "a missing shard fails the merge");
    assert!(out.contains("INCOMPLETE: shard(s) 2/2"), "{out}");
    let (code, _, err) = laxsim(&["merge", &path("s1.json"), &path("s1.json")]);
    assert_eq!(code, 2, "the same shard twice is refused");
    assert!(err.contains("overlap"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Replay warns when the fingerprint printed with a failure is not this build's.
#[test]
fn replay_warns_of_another_build() {
    let (code, out, err) = laxsim(&["replay", "--scenario", "steady-echo", "--seed", "0"]);
    assert_eq!(code, 0, "{err}");
    let fp = out
        .lines()
        .find_map(|l| l.strip_prefix("build: "))
        .expect("replay prints its build")
        .to_string();
    let (_, _, err) = laxsim(&[
        "replay",
        "--scenario",
        "steady-echo",
        "--seed",
        "0",
        "--fingerprint",
        &fp,
    ]);
    assert!(!err.contains("WARNING"), "{err}");
    let other = fp.replace("lock=", "lock=f");
    let (_, _, err) = laxsim(&[
        "replay",
        "--scenario",
        "steady-echo",
        "--seed",
        "0",
        "--fingerprint",
        &other,
    ]);
    assert!(
        err.contains("WARNING") && err.contains("lock: here"),
        "{err}"
    );
}
