#!/usr/bin/env bash
# Mutation testing of the lifecycle code (cargo-mutants; what is mutated: .cargo/mutants.toml).
# Not part of ci/test.sh: a full run takes hours on 2 cores. Results: docs/testing.md.
#
#   ci/mutants.sh laxsim [ARGS...]  the simulator alone is the test: every scenario over the
#                                   seeds in $LAXSIM_SWEEP (default 0..20), sim/tests/sweep.rs
#   ci/mutants.sh suite [ARGS...]   the whole test suite (unit, integration on both backends,
#                                   laxsim's own tests; no doctests)
#
# ARGS go to cargo-mutants, e.g. `--shard 0/4 --sharding round-robin`, `-o DIR`, `--iterate`
# (after a laxsim run into the same `-o DIR`: test only what laxsim missed, which gives
# "laxsim + tests").
set -euo pipefail
cd "$(dirname "$0")/.."
unset RUSTFLAGS # would replace .cargo/config.toml's --cfg tokio_unstable
command -v cargo-mutants > /dev/null || cargo install --locked cargo-mutants@27.1.0
mode=${1:-laxsim}
shift || true
case "$mode" in
  laxsim)
    export LAXSIM_SWEEP=${LAXSIM_SWEEP:-0..20}
    # cargo-mutants 27.1 runs the unmutated baseline in the mutated package (laxnet), ignoring
    # --test-package, where there is no sweep test: check the baseline here instead, and give
    # the timeout that the baseline would have set (a sweep takes 10-30 s on 2 cores).
    cargo test --profile mutants -p laxnet-sim --test sweep
    exec cargo mutants --profile mutants --test-package laxnet-sim --baseline skip \
      --timeout "${MUTANTS_TIMEOUT:-300}" "$@" -- --test sweep
    ;;
  suite)
    exec cargo mutants --profile mutants --test-workspace true --features laxnet/sim "$@" -- --lib --tests
    ;;
  *)
    echo "usage: ci/mutants.sh laxsim|suite [cargo-mutants args...]" >&2
    exit 2
    ;;
esac
