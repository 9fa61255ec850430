#!/usr/bin/env bash
# The whole test suite: the one command the README names and .ci/run calls.
# Quality gates first (cheap, fail fast), then every test, then the docs.
set -euo pipefail
cd "$(dirname "$0")/.."

# CI must not set RUSTFLAGS: it would replace .cargo/config.toml's `--cfg tokio_unstable`.
unset RUSTFLAGS

step() { printf '\n==> %s\n' "$*"; }

step "rustfmt"
cargo fmt --all --check

step "clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --features laxnet/sim,laxnet/bench-internals -- -D warnings

step "tests (library, integration suite on tokio and turmoil, doctests)"
cargo test --workspace --features laxnet/sim

step "docs (warnings are errors)"
RUSTDOCFLAGS="-D warnings --cfg tokio_unstable" cargo doc --workspace --no-deps --features laxnet/sim,laxnet/bench-internals

if [ -x ci/sim.sh ]; then
  step "simulation suite"
  ci/sim.sh
fi

step "examples"
cargo run --quiet --example chat > /dev/null
cargo run --quiet --example encryption > /dev/null
echo "ci/test.sh: all checks passed"
