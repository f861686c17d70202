#!/usr/bin/env bash
# The whole test suite: tools, formatting, lints, build, fuzzing, unit and integration tests.
# Run as root on a clean checkout: sudo bash scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: the integration tests need root (network namespaces): sudo bash scripts/test.sh" >&2
    exit 1
fi

# Each step says how far into the run it starts, so a slow suite shows where its time went.
step() { printf '\n==> [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

step "dependencies"
bash scripts/deps.sh

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# Everything is built once, with the `suite` profile (Cargo.toml: release optimisation, no
# LTO): `cargo test --no-run` builds the test binaries and every binary they start, which
# the bench smoke run then uses too. A separate `cargo build --bins` first would compile
# serde, tonic and everything above them twice, since the dev-dependencies turn on features
# a plain build leaves off (four of the suite's minutes). The LTO release build (what
# quickstart.sh and the benchmarks use) would add six more and compile the same code.
step "cargo test --workspace --profile suite --no-run (builds every binary the tests start)"
cargo test --workspace --profile suite --no-run

# ---- benchmark harness smoke run (owned by benches/run.sh; keep it under 30 s) ----------
step "benches/run.sh --quick --only vswitchd (smoke run of the macro benchmark harness)"
BENCH_PROFILE=suite bash benches/run.sh --quick --only vswitchd --no-build --no-save
# ---- end of the benchmark harness smoke run ---------------------------------------------

# ---- fuzzing (issue 10): replay every crash ever found, then 30 s per target ------------
step "scripts/fuzz.sh --seconds 30 --jobs 2 (every fuzz target, regressions first)"
bash scripts/fuzz.sh --seconds 30 --jobs 2

step "cargo test --workspace --profile suite --no-fail-fast -- --test-threads=2"
log="$(mktemp /tmp/vswitch-test.XXXXXX)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --profile suite --no-fail-fast -- --test-threads=2 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
step "tests done"
# One closing line over every test binary (cargo's own last line is that of the doc-tests).
awk '/^test result:/ {
        for (i = 1; i < NF; i++) {
            if ($(i + 1) ~ /^passed/) p += $i
            if ($(i + 1) ~ /^failed/) f += $i
        }
    }
    END { printf "\n%d passed, %d failed\n", p, f }' "$log"
exit "$status"
