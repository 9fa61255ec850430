//! laxnet's fuzz targets as plain functions of one input (`&[u8]`), so that the libFuzzer
//! binaries (`fuzz_targets/`, nightly, `cargo fuzz`) and the stable test (`tests/replay.rs`:
//! every committed corpus file plus seeded random inputs) run the same code.
//!
//! A target returns normally for every input it is given; a panic is a bug: either one of
//! the library's own panics (network bytes must never panic the stack) or one of the
//! target's checks of what the library promised (frames the same however the bytes are cut,
//! exactly one close, nothing delivered after a violation, no buffer leaked...).
//!
//! - [`frames`]: the frame parser and the receive buffer, fed in arbitrary chunkings.
//! - [`decode`]: message bodies decoded by id through the subscription registry.
//! - [`handshake`]: the handshake's server side (every client message) and client side (every
//!   server message), with fixed keys and fixed randoms so valid transcripts exist.
//! - [`records`]: the record layer, opened with the null cipher (reaching the frames behind
//!   it) and with a real cipher (which must refuse every forgery).
//! - [`session`]: the sans-IO session state machine driven by a sequence of socket, clock
//!   and application events decoded with `arbitrary`, its invariants checked after each step.
//! - [`files`]: key files and laxsim's hand-written inputs (scenarios, fault schedules).
//! - [`sim`](fn@sim): the whole stack in the simulator, a workload and fault schedule decoded
//!   with `arbitrary`, every run checked by laxsim's full oracle (`laxnet_sim::fuzz`).
//! - [`seeds`]: the seed corpus, generated (`cargo run -p laxnet-fuzz --example gen_corpus`).

pub mod decode;
pub mod files;
pub mod frames;
pub mod handshake;
pub mod records;
pub mod seeds;
pub mod session;
mod tape;

/// The whole-stack target: runs the input's simulation (`laxnet_sim::fuzz::run`) and panics
/// with the oracle's violations if it fails. Not in [`TARGETS`]: one input is a whole
/// simulated run, so `tests/replay.rs` gives it its own, smaller budget of random inputs.
pub fn sim(data: &[u8]) {
    if let Err(v) = laxnet_sim::fuzz::run(data) {
        panic!("{v}");
    }
}

/// A target's function.
pub type Target = fn(&[u8]);

/// Every target: its name (the libFuzzer binary and `corpus/<name>/`) and its function.
pub const TARGETS: &[(&str, Target)] = &[
    ("frames", frames::run),
    ("decode", decode::run),
    ("handshake_server", handshake::server),
    ("handshake_client", handshake::client),
    ("records_null", records::null),
    ("records_real", records::real),
    ("session", session::run),
    ("key_file", files::key_file),
    ("scenario", files::scenario),
    ("schedule", files::schedule),
];
