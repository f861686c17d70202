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
log="$(mktemp /tmp/vswitch-test.XXXXXX)"
rekey_log="$(mktemp /tmp/vswitch-rekey.XXXXXX)"
rekey_pid=""
# A test still running in the background is waited for, not killed: it tears down its
# own namespaces when it ends.
trap 'if [ -n "$rekey_pid" ]; then wait "$rekey_pid" || true; fi; rm -f "$log" "$rekey_log"' EXIT
cargo test --workspace --profile suite --no-run 2>&1 | tee "$log"

# ---- benchmark harness smoke run (owned by benches/run.sh; keep it under 30 s) ----------
step "benches/run.sh --quick --only vswitchd (smoke run of the macro benchmark harness)"
BENCH_PROFILE=suite bash benches/run.sh --quick --only vswitchd --no-build --no-save
# ---- end of the benchmark harness smoke run ---------------------------------------------

# tests/rekey.rs pings for three minutes across a WireGuard rekey (boringtun rekeys a
# session after two): it is nearly all waiting, so it runs beside the fuzzing instead of
# alone among the tests, where it was a quarter of their time. It is run as cargo would run
# it (its own binary, from its package's directory), and its result is printed and counted
# with the others below.
rekey_bin="$(sed -n 's|^ *Executable tests/rekey.rs (\(.*\))$|\1|p' "$log")"
[ -x "$rekey_bin" ] || { echo "test.sh: cargo did not say where tests/rekey.rs was built" >&2; exit 1; }
# cargo names it relative to the workspace root when the target directory is the default
# one (CI's case), and the test is run from vswitch/ below.
rekey_bin="$(realpath "$rekey_bin")"
# The main run below skips exactly the tests this binary holds, whatever they are named.
rekey_skips=()
while IFS= read -r name; do rekey_skips+=(--skip "$name"); done \
    < <("$rekey_bin" --list --format terse | sed -n 's/: test$//p')
[ "${#rekey_skips[@]}" -gt 0 ] || { echo "test.sh: tests/rekey.rs lists no tests" >&2; exit 1; }
step "tests/rekey.rs in the background, beside the fuzzing"
(cd vswitch && exec "$rekey_bin" --test-threads=2) >"$rekey_log" 2>&1 &
rekey_pid=$!

# ---- fuzzing (issue 10): replay every crash ever found, then 30 s per target ------------
step "scripts/fuzz.sh --seconds 30 --jobs 2 (every fuzz target, regressions first)"
bash scripts/fuzz.sh --seconds 30 --jobs 2

step "cargo test --workspace --profile suite --no-fail-fast -- --test-threads=2 (all but tests/rekey.rs's)"
set +e
cargo test --workspace --profile suite --no-fail-fast -- --test-threads=2 --exact "${rekey_skips[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
step "tests/rekey.rs (run beside the fuzzing)"
wait "$rekey_pid"
rekey_status=$?
rekey_pid=""
tee -a "$log" <"$rekey_log"
set -e
[ "$rekey_status" = 0 ] || status=$rekey_status
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
