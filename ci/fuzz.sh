#!/usr/bin/env bash
# Runs every libFuzzer target (fuzz/fuzz_targets/) briefly, failing on a crash. Needs a nightly
# toolchain (`rustup toolchain list`); without one it says so and skips. Installs cargo-fuzz
# from crates.io if it is missing. The stable replay of the corpora is part of
# `cargo test --workspace` (fuzz/tests/replay.rs); this is the coverage-guided part.
#
#   FUZZ_SECONDS=20   seconds per target (default 20; ci/test.sh passes 15)
#   FUZZ_TARGETS="frames session"   which targets (default: all)
#   FUZZ_JOBS=1       libFuzzer -fork jobs per target (default 1: the machine is shared)
#
# New inputs go to fuzz/scratch/<target>/ (ignored by git), never into the committed corpus;
# a crash leaves its input in fuzz/artifacts/<target>/ and fails the script. An input that
# runs over 60 s is a hang (a `timeout-` artifact; the slowest `sim` input takes well under a
# second): it fails the script too, after a minute rather than libFuzzer's default 20. Commit
# a crashing input into fuzz/corpus/<target>/ with the fix, so the stable test replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-20}
jobs=${FUZZ_JOBS:-1}
fork=""
if [ "$jobs" -gt 1 ]; then fork="-fork=$jobs"; fi

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "ci/fuzz.sh: no nightly toolchain (rustup toolchain list): libFuzzer targets skipped"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

# cargo fuzz sets RUSTFLAGS, which replaces .cargo/config.toml's; keep tokio_unstable so the
# sim crate's dependencies build as they do everywhere else.
export RUSTFLAGS="${RUSTFLAGS:-} --cfg tokio_unstable"

targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}
cargo +nightly fuzz build --features libfuzzer -O --debug-assertions

for t in $targets; do
  mkdir -p "fuzz/scratch/$t"
  echo "==> fuzz $t (${seconds}s)"
  log="fuzz/scratch/$t.log"
  status=0
  cargo +nightly fuzz run --features libfuzzer -O --debug-assertions "$t" \
    "fuzz/scratch/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -timeout=60 -rss_limit_mb=2048 -malloc_limit_mb=512 $fork \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::|panicked|ERROR|SUMMARY|Test unit written' "$log" || true
  if [ "$status" -ne 0 ]; then
    echo "ci/fuzz.sh: $t crashed (log: $log, input: fuzz/artifacts/$t/)"
    exit 1
  fi
done
echo "ci/fuzz.sh: every target ran ${seconds}s without a crash"
