#!/usr/bin/env bash
# The whole test suite: tools, formatting, lints, release build, unit and integration tests.
# Run as root on a clean checkout: sudo bash scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: the integration tests need root (network namespaces): sudo bash scripts/test.sh" >&2
    exit 1
fi

step() { printf '\n==> %s\n' "$*"; }

step "dependencies"
bash scripts/deps.sh

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build --workspace --release"
cargo build --workspace --release

step "cargo test --workspace --release -- --test-threads=2"
cargo test --workspace --release -- --test-threads=2
