//! `--ciphers`: one-way throughput of plaintext and both AEADs, interleaved in one run.

use laxnet::Cipher;

use crate::cli::Opts;
use crate::oneway::{OneWay, oneway_run};
use crate::report::{Json, Stats, line, stats};
use crate::services::Lax;

/// laxnet one-way msgs/s over one connection for "bits", "bits-hpke" with
/// ChaCha20-Poly1305 and with AES-128-GCM, runs interleaved so they share the machine's noise;
/// prints each as a ratio of plaintext from the same run.
pub(crate) fn cipher_mode(o: &Opts, lax: &Lax) {
    let modes = [
        ("plaintext", false, Cipher::ChaCha20Poly1305),
        ("chacha20poly1305", true, Cipher::ChaCha20Poly1305),
        ("aes128gcm", true, Cipher::Aes128Gcm),
    ]
    .map(|(name, encrypted, cipher)| {
        let lax = Lax {
            encrypted,
            cipher: Some(cipher),
            ..lax.clone()
        };
        (name, lax)
    });
    for (_, lax) in &modes {
        oneway_run(OneWay::Laxnet, o, lax, 1); // warm-up
    }
    let mut samples = vec![Vec::new(); modes.len()];
    for _ in 0..o.reps {
        for (i, (_, lax)) in modes.iter().enumerate() {
            samples[i].push(oneway_run(OneWay::Laxnet, o, lax, 1).0);
        }
    }
    let st: Vec<Stats> = samples.into_iter().map(stats).collect();
    println!(
        "one-way, {} msgs over 1 connection, {} reps:",
        o.msgs, o.reps
    );
    let mut j = Json::default();
    j.str("mode", "ciphers");
    for ((name, _), s) in modes.iter().zip(&st) {
        line(&format!("  {name}"), "msg/s", *s);
        j.stats(&format!("oneway_{name}_msgs_per_s"), *s);
    }
    for ((name, _), s) in modes.iter().zip(&st).skip(1) {
        let r = s.median / st[0].median;
        println!("  {name} / plaintext = {:.1} %", r * 100.0);
        j.num(format!("ratio_{name}_vs_plaintext"), r);
    }
    if o.json {
        println!("{}", j.render());
    }
}
