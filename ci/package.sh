#!/usr/bin/env bash
# What crates.io and docs.rs would get: every publishable package builds from its packaged
# files alone, laxnet's package holds what a user needs and nothing of this repository's CI,
# and its docs build the way docs.rs builds them. Called by ci/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
unset RUSTFLAGS # would replace .cargo/config.toml's --cfg tokio_unstable

step() { printf '\n==> %s\n' "$*"; }
fail() {
  echo "ci/package.sh: $*" >&2
  exit 1
}

step "package: cargo publish --dry-run (every publishable member, built from its packaged files)"
# --allow-dirty: check the working tree as it is (a clean clone in CI has nothing to allow).
cargo publish --dry-run --workspace --allow-dirty --locked

step "package: what laxnet ships"
list=$(cargo package --list -p laxnet --allow-dirty --locked 2>/dev/null)
for f in Cargo.toml Cargo.lock src/lib.rs README.md LICENSE-MIT LICENSE-APACHE CHANGELOG.md ARCHITECTURE.md; do
  grep -qx "$f" <<<"$list" || fail "the package lacks $f"
done
if leaked=$(grep -E '^(\.cargo|\.ci|ci|sim|scenarios|tests|benches|docs|fuzz|target)/' <<<"$list"); then
  fail "the package holds files a user does not need:"$'\n'"$leaked"
fi
echo "$(wc -l <<<"$list") files, none from ci/, sim/, scenarios/, tests/, benches/ or docs/"

step "docs as docs.rs builds them (nightly rustdoc, --cfg docsrs, no .cargo/config.toml flags)"
# The features come from [package.metadata.docs.rs]; RUSTFLAGS="" drops the workspace's
# --cfg flags, which docs.rs (and an application depending on laxnet) does not have.
features=$(cargo metadata --no-deps --format-version 1 --locked |
  grep -o '"docs":{"rs":{"features":\[[^]]*\]' | head -n 1 | sed 's/.*\[//; s/\]//; s/"//g')
[ -n "$features" ] || fail "[package.metadata.docs.rs] names no features"
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  echo "no nightly toolchain: documenting with the active one"
fi
RUSTFLAGS="" RUSTDOCFLAGS="--cfg docsrs -D warnings" CARGO_TARGET_DIR=target/docsrs \
  cargo "${toolchain[@]}" doc -p laxnet --lib --no-deps --features "$features" --locked
[ -f target/docsrs/doc/laxnet/runtime/struct.TurmoilRuntime.html ] ||
  fail "docs.rs would not document TurmoilRuntime (features: $features)"
echo "ci/package.sh: package checks passed (docs.rs features: $features)"
