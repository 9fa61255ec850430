#!/usr/bin/env bash
# The simulation suite (optimized builds with overflow checks, the `sim-checked` profile: an
# arithmetic slip in the library panics and fails its seed instead of wrapping into a wrong
# count that looks plausible): every scenario over 100 seeds (two shards, merged), the
# suite as a test binary (sim/tests/sweep_blocks.rs), a determinism check,
# proof that the oracle catches every planted library bug, the multi-thread stress run on real
# sockets (and the planted race only it can catch), a 30 s soak of 10,000 sessions and, with the
# library's null cipher, every ciphertext fault. Called by ci/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
unset RUSTFLAGS # would replace .cargo/config.toml's --cfg tokio_unstable

step() { printf '\n==> %s\n' "$*"; }

out="${CARGO_TARGET_DIR:-target}"
mkdir -p "$out"

step "laxsim: every scenario, seeds 0..100, as two shards merged (docs/simulation-ci.md)"
for k in 1 2; do
  cargo run --profile sim-checked -p laxnet-sim -- run --seeds 0..100 --shard "$k/2" --jobs 2 --no-progress \
    --json --junit "$out/laxsim-shard-$k.xml" > "$out/laxsim-shard-$k.json"
done
cargo run --profile sim-checked -p laxnet-sim -- merge "$out/laxsim-shard-1.json" "$out/laxsim-shard-2.json"

step "laxsim as a test binary (the nextest route): blocks of seeds; a planted bug's block fails with its replay command"
LAXSIM_BLOCK_SEEDS=0..4 LAXSIM_BLOCK_SIZE=2 cargo test --profile sim-checked -p laxnet-sim --test sweep_blocks
set +e
LAXSIM_BLOCK_PLANT=leak-slot cargo test --profile sim-checked -p laxnet-sim --features planted-bugs \
  --test sweep_blocks -- admission:: > "$out/sweep-blocks-plant.txt" 2>&1
code=$?
set -e
if [ "$code" -eq 0 ] || ! grep -q -- "replay: laxsim replay --scenario admission --seed [0-9]* --plant leak-slot --fingerprint laxnet-sim=" "$out/sweep-blocks-plant.txt"; then
  cat "$out/sweep-blocks-plant.txt" >&2
  echo "ci/sim.sh: sweep_blocks did not fail with a replay command under a planted bug (exit $code)" >&2
  exit 1
fi
echo "sweep_blocks: the planted bug's block failed with its replay command"

step "laxsim: determinism (every seed twice, same trace hash)"
cargo run --profile sim-checked -p laxnet-sim -- run --check-determinism --seeds 0..10 --jobs 2 --no-progress

step "laxsim: the oracle catches every planted bug"
cargo test --profile sim-checked -p laxnet-sim --features planted-bugs --test planted --test app_planted
# The whole-stack fuzz target finds planted bugs from generated inputs, and (optimized, so many
# more than the workspace tests' 50) 1000 generated inputs pass without a plant.
cargo test --profile sim-checked -p laxnet-fuzz --features planted-bugs --test planted
LAXNET_FUZZ_SIM_CASES=1000 cargo test --profile sim-checked -p laxnet-fuzz --test replay sim_
# Every planted bug but buffers-after-release (a race between threads: the stress run below),
# each with the scenario meant to catch it (the same pairs as sim/tests/planted.rs): it must
# fail within 200 seeds.
while read -r bug scenario; do
  set +e
  cargo run --profile sim-checked -p laxnet-sim --features planted-bugs -- \
    run --plant "$bug" --scenario "$scenario" --seeds 0..200 --jobs 2 --fail-fast --no-progress --json \
    > "$out/laxsim-plant-$bug.json" < /dev/null
  code=$?
  set -e
  if [ "$code" -ne 1 ]; then
    echo "ci/sim.sh: planted bug $bug was NOT caught by $scenario (laxsim exited $code, expected 1)" >&2
    exit 1
  fi
  echo "planted bug $bug: caught by $scenario"
done <<'BUGS'
no-flush-on-close steady-echo
double-closed steady-echo
deliver-after-close close-races
id-counter-stuck admission
leak-slot admission
heartbeat-ignored partition-heartbeat
lost-ready-wakeup slow-consumer
refuse-below-limit slow-consumer
ready-not-told-of-close slow-consumer
no-flush-after-peer-eof churn
stale-heartbeat-on-records partition-heartbeat-hpke
half-frame-on-too-large hostile-peers
id-wrap-off-by-one churn
no-close-record churn-hpke
last-reason-wins admission
bytes-out-offered churn-hpke
handshake-slot-leak close-races-hpke
refuse-instead-of-evict handshake-flood
frame-limit-off-by-one hostile-peers
record-limit-off-by-one small-records-hpke
reason-not-sent steady-echo
refusal-looks-like-reset admission
linger-expiry-clean slow-consumer
BUGS

step "laxsim stress: the lifecycle oracle on real sockets and threads (races the simulator cannot show)"
LAXSIM_STRESS_ROUNDS=40 cargo test --profile sim-checked -p laxnet-sim --test stress
# The race the stress run exists for: the destroy must give the buffers back before the id.
LAXSIM_STRESS_PLANT=buffers-after-release \
  cargo test --profile sim-checked -p laxnet-sim --features planted-bugs --test stress stress_catches_planted_bugs

step "laxsim --real: every scenario's socket and record faults on real loopback sockets (a few seeds)"
cargo run --profile sim-checked -p laxnet-sim -- run --real --seeds 0..3 --no-progress
cargo test --profile sim-checked -p laxnet-sim --features planted-bugs --test real

step "laxsim soak: 10,000 sessions on loopback for 30 s (churn, resets, hostile peers; docs/simulation-ci.md, Soak)"
# The server side runs in a child process (both ends' sockets do not fit in one process's
# file-descriptor limit). The small soaks, and proof that the loss and plateau checks fire:
cargo test --profile sim-checked -p laxnet-sim --features planted-bugs --test soak
cargo run --profile sim-checked -p laxnet-sim -- soak --sessions 10000 --duration 30s --no-progress \
  --json-file "$out/laxsim-soak.json"

step "laxsim: the oracle catches ciphertext faults that nothing authenticates (null cipher)"
cargo test --profile sim-checked -p laxnet-sim --features null-cipher --test null_cipher
echo "ci/sim.sh: simulation suite passed"
