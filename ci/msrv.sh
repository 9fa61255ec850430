#!/usr/bin/env bash
# The workspace's rust-version is a tested claim. The active toolchain must not be older than
# it; when the active toolchain is that version, the rest of ci/test.sh builds and tests
# everything with it; when it is newer, the rust-version toolchain (installed with rustup)
# checks every target of the workspace. Called by ci/test.sh, first.
set -euo pipefail
cd "$(dirname "$0")/.."
unset RUSTFLAGS # would replace .cargo/config.toml's --cfg tokio_unstable

fail() {
  echo "ci/msrv.sh: $*" >&2
  exit 1
}

msrv=$(sed -n 's/^rust-version = "\([0-9][0-9.]*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$msrv" ] || fail "Cargo.toml declares no rust-version"
active=$(rustc --version | awk '{print $2}') # 1.95.0, or 1.97.0-nightly
active=${active%%-*}

# "1.95" is satisfied by every 1.95.x: compare with the rust-version padded by zeros.
padded=$msrv
while [ "$(tr -cd . <<<"$padded" | wc -c)" -lt 2 ]; do padded=$padded.0; done
if [ "$active" != "$padded" ] &&
  [ "$(printf '%s\n%s\n' "$active" "$padded" | sort -V | head -n 1)" = "$active" ]; then
  fail "rustc $active is older than the workspace's rust-version $msrv: install $msrv or newer"
fi

case "$active." in
"$msrv".*)
  echo "rustc $active is the rust-version ($msrv): every following step builds with it"
  exit 0
  ;;
esac

# A newer toolchain is active: check the workspace with the rust-version's own.
tc=$(rustup toolchain list 2>/dev/null | awk '{print $1}' |
  grep -E "^${msrv//./\\.}(\.[0-9]+)?-" | sort -V | tail -n 1 || true)
[ -n "$tc" ] || fail "rustc $active is active and no $msrv toolchain is installed to prove rust-version = $msrv (rustup toolchain install $msrv --profile minimal)"
echo "rustc $active is active; checking the workspace with $tc (rust-version $msrv)"
cargo "+$tc" check --workspace --all-targets --locked \
  --features laxnet/sim,laxnet/bench-internals,laxnet-perf/sim,laxnet-perf/bench-internals
