#!/usr/bin/env bash
# The whole test suite: the one command the README names and .ci/run calls.
# Quality gates first (cheap, fail fast), then every test, then the docs.
set -euo pipefail
cd "$(dirname "$0")/.."

# CI must not set RUSTFLAGS: it would replace .cargo/config.toml's `--cfg tokio_unstable`.
unset RUSTFLAGS

step() { printf '\n==> %s\n' "$*"; }

step "rust-version (the toolchain it names builds the workspace)"
bash ci/msrv.sh

step "rustfmt"
cargo fmt --all --check

# Every feature that compiles code in: the library's, and the perf harness's `--sim` mode and
# pure-handshake figure.
features=laxnet/sim,laxnet/bench-internals,laxnet-perf/sim,laxnet-perf/bench-internals

step "clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --features "$features" -- -D warnings

step "ci/outside-user's own lock has every crate the workspace now needs (its tests run later)"
# Checked here, not only at its step near the end: a dependency added to laxnet or laxnet-sim
# without updating that lock should fail CI in seconds, not after the whole suite.
cargo metadata --quiet --locked --format-version 1 --manifest-path ci/outside-user/Cargo.toml > /dev/null

# The X25519 backend this CPU runs in the workspace's build (.cargo/config.toml compiles
# curve25519-dalek's avx512 backend, which multiplies with AVX-512 IFMA where the CPU has it,
# else with AVX2): crypto::x25519's backend test checks the build really runs it.
cpu_has() { grep -qw "$1" /proc/cpuinfo 2>/dev/null; }
if [ ! -r /proc/cpuinfo ]; then
  main_backend="" # unknown here: the test then only reports it
elif cpu_has avx512ifma && cpu_has avx512vl; then
  main_backend=avx512-ifma
elif cpu_has avx2; then
  main_backend=avx2
else
  main_backend=serial
fi

step "tests (library, integration suite on tokio and turmoil, doctests; X25519: ${main_backend:-?})"
LAXNET_X25519_BACKEND=$main_backend cargo test --workspace --features laxnet/sim

step "X25519 on the other curve25519-dalek backends this CPU runs (crypto unit tests)"
# The crypto unit tests (RFC 7748/9180 vectors, the ladder comparisons, hpke interop, the
# known-answer transcripts) once more per backend: the scalar one (serial) and, on an AVX2
# CPU, the AVX2 backend alone (curve25519-dalek's default build, without the avx512 cfg).
# Both builds share one extra target directory (cargo keeps each flag set's artifacts apart).
# RUSTFLAGS replaces .cargo/config.toml's flags, so it repeats --cfg tokio_unstable; it is set
# for these commands only.
backends_dir="${CARGO_TARGET_DIR:-target}/backends"
RUSTFLAGS='--cfg tokio_unstable --cfg curve25519_dalek_backend="serial"' \
  LAXNET_X25519_BACKEND=serial CARGO_TARGET_DIR="$backends_dir" \
  cargo test --quiet --lib -- crypto::
if cpu_has avx2; then
  RUSTFLAGS='--cfg tokio_unstable' LAXNET_X25519_BACKEND=avx2 CARGO_TARGET_DIR="$backends_dir" \
    cargo test --quiet --lib -- crypto::
fi

step "docs (warnings are errors)"
RUSTDOCFLAGS="-D warnings --cfg tokio_unstable" cargo doc --workspace --no-deps --features "$features"

step "package (cargo publish --dry-run, the package's files, docs as docs.rs builds them)"
bash ci/package.sh

if [ -x ci/sim.sh ]; then
  step "simulation suite"
  ci/sim.sh
fi

step "a user's simulation test catches the bug planted in the rooms example"
# examples/rooms tests itself with laxnet-sim's user API (its plain run passed with the
# workspace tests); with its realistic bug planted the same test must fail, naming a seed and
# the command that replays it.
set +e
rooms_out=$(cargo test --quiet -p laxnet-rooms --features planted-bug --test sim rooms_under_faults 2>&1)
rooms_code=$?
set -e
if [ "$rooms_code" -eq 0 ] || ! grep -q 'LAXSIM_SEED=' <<< "$rooms_out"; then
  printf '%s\n' "$rooms_out" | tail -n 30 >&2
  echo "ci/test.sh: the rooms simulation did not catch the planted bug (exit $rooms_code)" >&2
  exit 1
fi
rooms_seed=$(grep -m1 -o 'LAXSIM_SEED=[0-9]*' <<< "$rooms_out")
echo "caught: $rooms_seed"
# Its replay command also shrinks the seed's fault schedule and names the file to replay.
set +e
shrink_out=$(env "$rooms_seed" LAXSIM_SHRINK=1 cargo test --quiet -p laxnet-rooms \
  --features planted-bug --test sim -- rooms_under_faults --exact --nocapture 2>&1)
set -e
if ! grep -q '^replay it: LAXSIM_SCHEDULE=' <<< "$shrink_out"; then
  printf '%s\n' "$shrink_out" | tail -n 30 >&2
  echo "ci/test.sh: LAXSIM_SHRINK did not shrink the rooms seed" >&2
  exit 1
fi
grep -m1 '^shrunk ' <<< "$shrink_out"

step "a user's crate outside the workspace (ci/outside-user: public API only, its own lock)"
# Built by path from a workspace of its own, so its simulation test reaches only what laxnet
# and laxnet-sim make public. Its Cargo.lock started as a copy of the workspace's: when
# laxnet or laxnet-sim gain a dependency, --locked fails here until that lock is updated
# (one `cargo test --manifest-path ci/outside-user/Cargo.toml` without --locked adds only
# what is missing). It still reads this repo's .cargo/config.toml (`tokio_unstable`, which
# docs/simulation.md tells users to set in their own). A target directory of its own inside
# the workspace's keeps its artifacts between runs without touching the workspace's.
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/outside" \
  cargo test --quiet --locked --manifest-path ci/outside-user/Cargo.toml

step "fuzzing: every libFuzzer target briefly (where a nightly toolchain is installed)"
# The stable replay of every corpus and of generated inputs ran with the workspace tests; this
# is the coverage-guided part: FUZZ_SECONDS per target (11 targets), a crash fails CI. The
# nightly AddressSanitizer build has a target directory of its own (nothing of the stable
# builds is reused): cold it is the longest step here (docs/fuzzing.md has the figures), so
# CI should keep target/x86_64-unknown-linux-gnu/ between runs. LAXNET_CI_FUZZ=0 skips it.
if [ "${LAXNET_CI_FUZZ:-1}" != 0 ]; then
  FUZZ_SECONDS=${FUZZ_SECONDS:-15} bash ci/fuzz.sh
else
  echo "skipped (LAXNET_CI_FUZZ=0)"
fi

step "examples and the perf harness"
cargo run --quiet --example chat > /dev/null
cargo run --quiet --example encryption > /dev/null
# The performance harness (perf/) runs end to end (small and unoptimized: no figure is checked
# here, only that every mode completes and --json ends with the object the docs describe).
cargo run --quiet -p laxnet-perf -- --conns 1 --reps 1 --msgs 20000 --compare --json \
  | tail -n 1 | grep -q '"ratio_vs_framed":'
cargo run --quiet -p laxnet-perf -- --handshakes 20 --reps 1 --json \
  | tail -n 1 | grep -q '"handshake_ratio_vs_raw_tcp_hpke":'
cargo run --quiet -p laxnet-perf -- --idle-sessions 200 > /dev/null
echo "ci/test.sh: all checks passed"
