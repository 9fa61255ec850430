//! The fuzz targets on stable, so they cannot rot: every committed corpus file (seeds, inputs
//! the fuzzer kept, and past crashes, which stay regression tests), then seeded random inputs
//! per target (a fixed seed: the same inputs every run). The whole-stack target `sim` (one
//! simulated run per input) gets its own, smaller count.

use std::path::{Path, PathBuf};

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_file_replays() {
    for (target, run) in laxnet_fuzz::TARGETS {
        let files = corpus(target);
        assert!(
            files.iter().any(|p| p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("seed-")),
            "{target} has no seeds"
        );
        for p in files {
            let data = std::fs::read(&p).unwrap();
            let r = std::panic::catch_unwind(|| run(&data));
            assert!(r.is_ok(), "{target}: {} fails", p.display());
        }
    }
}

#[test]
fn the_committed_seeds_are_the_generated_ones() {
    for s in laxnet_fuzz::seeds::all() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(s.target)
            .join(format!("seed-{}", s.name));
        let committed = std::fs::read(&p).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run `cargo run -p laxnet-fuzz --example gen_corpus`)",
                p.display()
            )
        });
        assert!(
            committed == s.bytes,
            "{} is stale: run `cargo run -p laxnet-fuzz --example gen_corpus`",
            p.display()
        );
    }
}

#[test]
fn session_seeds_decode_to_their_events() {
    use arbitrary::{Arbitrary, Unstructured};
    for (name, input) in laxnet_fuzz::seeds::session_inputs() {
        let bytes = laxnet_fuzz::seeds::session_bytes(&input);
        let back =
            laxnet_fuzz::session::Input::arbitrary_take_rest(Unstructured::new(&bytes)).unwrap();
        assert_eq!(back, input, "{name}");
    }
}

/// Random inputs: mostly mutations of the seeds (so they get past the first checks), some
/// plain random bytes. Fixed seed; `LAXNET_FUZZ_CASES` changes the count per target.
#[test]
fn seeded_random_inputs() {
    let cases: usize = std::env::var("LAXNET_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let seeds = laxnet_fuzz::seeds::all();
    let mut rng = ChaCha8Rng::seed_from_u64(0x001a_2b17);
    for (target, run) in laxnet_fuzz::TARGETS {
        let mine: Vec<&[u8]> = seeds
            .iter()
            .filter(|s| s.target == *target)
            .map(|s| &s.bytes[..])
            .collect();
        for i in 0..cases {
            let data = if i % 4 == 0 || mine.is_empty() {
                let mut d = vec![0u8; (rng.next_u32() % 512) as usize];
                rng.fill_bytes(&mut d);
                d
            } else {
                let mut d = mine[rng.next_u32() as usize % mine.len()].to_vec();
                for _ in 0..1 + rng.next_u32() % 4 {
                    mutate(&mut rng, &mut d);
                }
                d
            };
            let r = std::panic::catch_unwind(|| run(&data));
            assert!(r.is_ok(), "{target}: case {i} fails; input {data:02x?}");
        }
    }
}

fn mutate(rng: &mut ChaCha8Rng, d: &mut Vec<u8>) {
    let at = |rng: &mut ChaCha8Rng, len: usize| {
        if len == 0 {
            0
        } else {
            rng.next_u32() as usize % len
        }
    };
    match rng.next_u32() % 5 {
        0 if !d.is_empty() => {
            let i = at(rng, d.len());
            d[i] ^= 1 << (rng.next_u32() % 8);
        }
        1 if !d.is_empty() => {
            let i = at(rng, d.len());
            d[i] = rng.next_u32() as u8;
        }
        2 => {
            let i = at(rng, d.len() + 1);
            d.insert(i.min(d.len()), rng.next_u32() as u8);
        }
        3 if !d.is_empty() => {
            let i = at(rng, d.len());
            d.remove(i);
        }
        _ => {
            let n = at(rng, d.len() + 1);
            d.truncate(n.max(1).min(d.len()));
        }
    }
}

#[test]
fn sim_corpus_replays() {
    let files = corpus("sim");
    assert!(
        files.iter().any(|p| p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("seed-")),
        "sim has no seeds"
    );
    for p in files {
        let data = std::fs::read(&p).unwrap();
        if let Err(v) = laxnet_sim::fuzz::run(&data) {
            panic!("sim: {} fails: {v}", p.display());
        }
    }
}

/// Generated inputs for the `sim` target: random bytes (any bytes map to a valid case) of
/// 16 to 800 bytes, so that the fault schedules range from none to dozens of faults. Fixed
/// seed; `LAXNET_FUZZ_SIM_CASES` changes the count.
#[test]
fn sim_generated_inputs() {
    let cases: usize = std::env::var("LAXNET_FUZZ_SIM_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let mut rng = ChaCha8Rng::seed_from_u64(0x0051_0017);
    let mut faults = 0;
    for i in 0..cases {
        let mut d = vec![0u8; 16 + (rng.next_u32() % 785) as usize];
        rng.fill_bytes(&mut d);
        let case = laxnet_sim::fuzz::Case::new(&d, None);
        faults += case.schedule.faults.len();
        if let Err(v) = laxnet_sim::fuzz::run(&d) {
            panic!("sim: case {i} fails: {v}\ninput {d:02x?}");
        }
    }
    // Every case has its latency record; the rest are partitions, holds, spikes, crashes,
    // socket and record faults.
    assert!(
        faults > 3 * cases / 2,
        "the generated inputs hold few faults ({faults})"
    );
}
