//! What people write by hand or copy around: key files, and laxsim's scenario files and fault
//! schedules. Any text gives a typed error or a value, never a panic.
//!
//! Key file: checks that a key loads exactly from 64 hex digits (surrounding whitespace
//! allowed) and that its public key round-trips. Scenario: parsed and validated, then what
//! laxsim derives from it without simulating (host names and roles, the durations, a fault
//! plan drawn from it). Schedule: parsed, then replayed into a scripted fault recorder for a
//! scenario, and every fault's kind and weaker variant computed.

use laxnet::fuzz_api::{PublicKey, key_file as load_key};
use laxnet_sim::scenario::Scenario;
use laxnet_sim::schedule::{Recorder, Schedule};

/// The key-file target.
pub fn key_file(data: &[u8]) {
    let text = data.trim_ascii();
    let hex = text.len() == 64 && text.iter().all(u8::is_ascii_hexdigit);
    match load_key(data) {
        Ok(k) => {
            assert!(hex, "a key from something other than 64 hex digits");
            // X25519 clamps the secret (RFC 7748), so the key's bytes may differ from the
            // file's in the bits clamping sets; what `save` writes loads back exactly.
            let secret: String = k
                .secret_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let again = load_key(format!("{secret}\n").as_bytes()).expect("a saved key loads");
            assert_eq!(again.secret_bytes(), k.secret_bytes());
            assert_eq!(again.public(), k.public());
            let public = k.public();
            assert_eq!(PublicKey::from_bytes(public.to_bytes()).ok(), Some(public));
            assert_eq!(public.to_string().parse::<PublicKey>().ok(), Some(public));
        }
        Err(_) => assert!(!hex, "64 hex digits refused"),
    }
    // The same text as a public key.
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(p) = s.parse::<PublicKey>()
    {
        assert_eq!(PublicKey::from_bytes(p.to_bytes()).ok(), Some(p));
    }
    if let Some(b) = data.first_chunk::<32>()
        && let Ok(p) = PublicKey::from_bytes(*b)
    {
        assert_eq!(p.to_bytes(), *b, "a public key that is not its own bytes");
    }
}

/// What laxsim derives from a scenario before simulating it.
fn derive(sc: &Scenario) {
    let n = sc.host_count();
    for i in 0..n.min(64) {
        let _ = (sc.host_name(i), sc.is_rogue(i), sc.is_server(i));
        let side = sc.side(i);
        let _ = (side.service.linger(), side.service.heartbeat());
    }
    let _ = Recorder::random(1).plan(sc, None);
}

/// The scenario target.
pub fn scenario(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(sc) = Scenario::parse(text) {
        derive(&sc);
    }
}

/// The scenario the schedule target replays its faults into.
const SCHEDULE_SCENARIO: &str = include_str!("../../scenarios/steady-echo.toml");

/// The schedule target.
pub fn schedule(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(s) = Schedule::parse(text) else {
        return;
    };
    let sc = Scenario::parse(SCHEDULE_SCENARIO).expect("the smoke scenario parses");
    let mut r = Recorder::scripted(&s.faults);
    let plan = r.plan(&sc, Some(&s.faults));
    assert!(plan.len() <= s.faults.len());
    for f in &s.faults {
        let _ = f.kind();
        let mut w = f.weaken();
        // Weakening ends (shrinking relies on it).
        let mut steps = 0;
        while let Some(g) = w {
            steps += 1;
            assert!(steps < 200, "{f:?} weakens without end");
            w = g.weaken();
        }
    }
}
