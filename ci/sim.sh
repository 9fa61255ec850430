#!/usr/bin/env bash
# The simulation suite (release builds): every scenario over 100 seeds, a determinism check,
# proof that the oracle catches every planted library bug, the multi-thread stress run on real
# sockets (and the planted race only it can catch) and, with the library's null cipher, every
# ciphertext fault. Called by ci/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
unset RUSTFLAGS # would replace .cargo/config.toml's --cfg tokio_unstable

step() { printf '\n==> %s\n' "$*"; }

step "laxsim: every scenario, seeds 0..100"
cargo run --release -p laxnet-sim -- run --seeds 0..100 --jobs 2 --no-progress

step "laxsim: determinism (every seed twice, same trace hash)"
cargo run --release -p laxnet-sim -- run --check-determinism --seeds 0..10 --jobs 2 --no-progress

step "laxsim: the oracle catches every planted bug"
out="${CARGO_TARGET_DIR:-target}"
mkdir -p "$out"
cargo test --release -p laxnet-sim --features planted-bugs --test planted
# Every planted bug but buffers-after-release (a race between threads: the stress run below).
for bug in no-flush-on-close double-closed deliver-after-close no-generation-bump leak-slot \
  heartbeat-ignored lost-ready-wakeup refuse-below-limit ready-not-told-of-close \
  no-flush-after-peer-eof stale-heartbeat-on-records half-frame-on-too-large \
  generation-off-by-one no-close-record last-reason-wins bytes-out-offered \
  handshake-slot-leak refuse-instead-of-evict frame-limit-off-by-one; do
  set +e
  cargo run --release -p laxnet-sim --features planted-bugs -- \
    run --plant "$bug" --seeds 0..200 --jobs 2 --fail-fast --no-progress --json > "$out/laxsim-plant-$bug.json"
  code=$?
  set -e
  if [ "$code" -ne 1 ]; then
    echo "ci/sim.sh: planted bug $bug was NOT caught (laxsim exited $code, expected 1)" >&2
    exit 1
  fi
  echo "planted bug $bug: caught (exit 1)"
done

step "laxsim stress: the lifecycle oracle on real sockets and threads (races the simulator cannot show)"
LAXSIM_STRESS_ROUNDS=40 cargo test --release -p laxnet-sim --test stress
# The race the stress run exists for: the destroy must give the buffers back before the id.
LAXSIM_STRESS_PLANT=buffers-after-release \
  cargo test --release -p laxnet-sim --features planted-bugs --test stress stress_catches_planted_bugs

step "laxsim: the oracle catches ciphertext faults that nothing authenticates (null cipher)"
cargo test --release -p laxnet-sim --features null-cipher --test null_cipher
echo "ci/sim.sh: simulation suite passed"
