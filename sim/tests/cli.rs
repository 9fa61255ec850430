//! The command line: exit codes, the JSON summary, replay's trace hash.
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
