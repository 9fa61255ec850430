//! Scenario files parse, say what they are for, and reject typos.
use laxnet_sim::scenario::{Scenario, default_dir, load_dir};

#[test]
fn every_scenario_file_parses_and_documents_itself() {
    let dir = default_dir();
    let all = load_dir(&dir).expect("scenarios parse");
    let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
    for required in [
        "steady-echo",
        "churn",
        "close-races",
        "partition-heartbeat",
        "crash-restart",
        "slow-consumer",
        "latency-spikes",
        "admission",
        "steady-echo-hpke",
        "close-races-hpke",
        "crash-restart-hpke",
        "churn-hpke",
        "crypto-faults",
    ] {
        assert!(
            names.contains(&required),
            "missing scenario {required}: {names:?}"
        );
    }
    for s in &all {
        let text = std::fs::read_to_string(dir.join(format!("{}.toml", s.name)))
            .expect("file named after its scenario");
        assert!(
            text.lines().next().is_some_and(|l| l.starts_with('#')),
            "{} must open with a comment saying what it is for",
            s.name
        );
        assert!(
            !s.expect_edges.is_empty(),
            "{} lists no expected edges",
            s.name
        );
        assert!(!s.description.is_empty(), "{} has no description", s.name);
    }
}

#[test]
fn parses_a_minimal_scenario_with_defaults() {
    let s = Scenario::parse(
        r#"
        # a comment
        name = "tiny"
        duration_ms = 100
        expect_edges = ["id-recurred"]
        [hosts]
        servers = 1
        clients = 2
        [server.service]
        max_sessions = 3
        heartbeat_ms = 50
        [client.io]
        short_read = 0.5
        [faults.partitions]
        count = [1, 2]
        dur_ms = [10, 20]
        "#,
    )
    .expect("parses");
    assert_eq!(s.name, "tiny");
    assert_eq!(s.server.service.max_sessions, 3);
    assert_eq!(s.server.service.heartbeat_ms, Some(50));
    assert_eq!(s.client.service.heartbeat_ms, None);
    assert_eq!(s.client.io.short_read, 0.5);
    assert_eq!(s.faults.partitions.count, [1, 2]);
    assert_eq!(s.workload.tick_ms, 2, "defaults fill the rest");
    assert_eq!(s.host_name(0), "server0");
    assert_eq!(s.host_name(2), "client1");
}

#[test]
fn rejects_typos_and_unknown_edges() {
    let base = "name = \"x\"\nduration_ms = 10\n[hosts]\nservers = 1\nclients = 1\n";
    assert!(Scenario::parse(base).is_ok());
    let typo = format!("{base}[workload]\nburts = [1, 2]\n");
    assert!(Scenario::parse(&typo).is_err(), "unknown keys are errors");
    let ct = format!("{base}[client.io]\nct_corrupt = 0.1\n");
    let err = Scenario::parse(&ct).expect_err("ciphertext faults on plain bits");
    assert!(err.contains("bits-hpke"), "{err}");
    let cipher = format!("cipher = \"aes128gcm\"\n{base}");
    assert!(
        Scenario::parse(&cipher).is_err(),
        "a cipher needs bits-hpke"
    );
    let hpke = format!(
        "protocol = \"bits-hpke\"\ncipher = \"aes128gcm\"\n{base}[client.io]\nct_drop = 0.1\n"
    );
    let s = Scenario::parse(&hpke).expect("encrypted scenario parses");
    assert!(s.protocol.encrypted() && s.client.io.ciphertext());
    let edge = format!("expect_edges = [\"no-such-edge\"]\n{base}");
    let err = Scenario::parse(&edge).expect_err("unknown edge");
    assert!(err.contains("no-such-edge"), "{err}");
}

/// Found by the `scenario` fuzz target (docs/fuzzing.md): extreme numbers in a hand-written
/// scenario overflowed (host count, a fault's duration, a full-range span) or never finished
/// drawing (a fault count in the billions). Each is now refused with an error or drawn.
#[test]
fn extreme_numbers_are_refused_or_drawn_without_panic() {
    use laxnet_sim::schedule::Recorder;
    let tiny = |extra: &str, servers: u32, clients: u32| {
        Scenario::parse(&format!(
            "name = \"x\"\nduration_ms = 1000\n[hosts]\nservers = {servers}\nclients = {clients}\n{extra}"
        ))
    };
    let err = tiny("", 40000, 40000).unwrap_err();
    assert!(err.contains("hosts in all"), "{err}");
    let err = tiny(
        "[faults.crashes]\ncount = [100000000000, 100000000000]\n",
        1,
        1,
    )
    .unwrap_err();
    assert!(err.contains("count over"), "{err}");
    let err = tiny("drain_ms = 18446744073709551615\n", 1, 1);
    assert!(err.is_err(), "duration_ms + drain_ms overflows");
    for extra in [
        "[faults.crashes]\ncount = [1, 3]\ndur_ms = [18446744073709551615, 18446744073709551615]\n",
        "[faults.crashes]\ncount = [0, 10000]\ndur_ms = [0, 18446744073709551615]\n",
        "[net]\nlatency_ms = [0, 18446744073709551615]\n",
    ] {
        let sc = tiny(extra, 1, 1).unwrap_or_else(|e| panic!("{extra}: {e}"));
        let plan = Recorder::random(1).plan(&sc, None);
        assert!(!plan.is_empty());
    }
}
