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

step "tests (library, integration suite on tokio and turmoil, doctests)"
cargo test --workspace --features laxnet/sim

step "docs (warnings are errors)"
RUSTDOCFLAGS="-D warnings --cfg tokio_unstable" cargo doc --workspace --no-deps --features "$features"

step "package (cargo publish --dry-run, the package's files, docs as docs.rs builds them)"
bash ci/package.sh

if [ -x ci/sim.sh ]; then
  step "simulation suite"
  ci/sim.sh
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
