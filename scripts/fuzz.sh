#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/, replays the regression inputs in
# fuzz/regressions/<target>/, then fuzzes every target for a bounded time starting from
# the committed seeds in fuzz/corpus/<target>/ (the corpus libFuzzer grows goes to a
# temporary directory and is thrown away). Prints, per target, the executions and exec/s
# of libFuzzer's final stats; exits non-zero if a regression input or a target crashes.
# A crashing input is kept in fuzz/artifacts/<target>/.
#
# Usage: scripts/fuzz.sh [--seconds N] [--only T1,T2] [--jobs N] [--asan] [--no-build]
#                        [--corpus-out DIR] [--list]
#   --seconds N      fuzz each target for N seconds (default 30)
#   --only T1,T2     these targets only
#   --jobs N         fuzz N targets at a time (default 1; each still gets N seconds)
#   --asan           build with AddressSanitizer (cargo-fuzz's default; slower to build
#                    and run, and the fuzzed code has no unsafe of its own)
#   --no-build       use the binaries already built
#   --corpus-out DIR keep the grown corpus in DIR/<target>/ (never in fuzz/corpus)
#   --list           list the targets and what each drives, and exit
#
# Needs cargo; installs cargo-fuzz (pinned) if it is missing. cargo-fuzz passes nightly
# flags to rustc: on a stable toolchain RUSTC_BOOTSTRAP=1 lets it do so.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
SECONDS_PER_TARGET=30
ONLY=""
JOBS=1
SANITIZER=none
BUILD=1
CORPUS_OUT=""
LIST=0

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) SECONDS_PER_TARGET="${2:?--seconds needs a number}"; shift 2 ;;
        --only) ONLY="${2:?--only needs target names}"; shift 2 ;;
        --jobs) JOBS="${2:?--jobs needs a number}"; shift 2 ;;
        --asan) SANITIZER=address; shift ;;
        --no-build) BUILD=0; shift ;;
        --corpus-out) CORPUS_OUT="${2:?--corpus-out needs a directory}"; shift 2 ;;
        --list) LIST=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$SECONDS_PER_TARGET$JOBS" in
    *[!0-9]*) echo "fuzz.sh: --seconds and --jobs take whole numbers" >&2; exit 2 ;;
esac
[ "$JOBS" -ge 1 ] || JOBS=1

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ="$ROOT/fuzz"
cd "$FUZZ"

# Targets in the order of fuzz/Cargo.toml.
ALL_TARGETS=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^vswitch-fuzz$')

if [ "$LIST" = 1 ]; then
    for t in $ALL_TARGETS; do
        # The target's module doc, first paragraph, on one line.
        what=$(sed -n '/^\/\/!/!q; s/^\/\/! \{0,1\}//p' "fuzz_targets/$t.rs" | sed '/^$/q' | tr '\n' ' ')
        printf '%-12s %s\n' "$t" "$what"
    done
    exit 0
fi

TARGETS="$ALL_TARGETS"
if [ -n "$ONLY" ]; then
    TARGETS=""
    for t in ${ONLY//,/ }; do
        if ! grep -qx "$t" <<<"$ALL_TARGETS"; then
            echo "fuzz.sh: no target $t (try --list)" >&2
            exit 2
        fi
        TARGETS="$TARGETS $t"
    done
fi

export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
# cargo fuzz builds into CARGO_TARGET_DIR when it is set (relative to fuzz/), else fuzz/target.
TARGET_DIR="${CARGO_TARGET_DIR:-$FUZZ/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$FUZZ/$TARGET_DIR" ;; esac
BIN="$TARGET_DIR/$TRIPLE/release"

T0=$(date +%s)
if [ "$BUILD" = 1 ]; then
    if [ "$(cargo fuzz --version 2>/dev/null | awk '{print $2}')" != "$CARGO_FUZZ_VERSION" ]; then
        echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
        cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
    fi
    echo "== building the fuzz targets (release, debug assertions, sanitizer: $SANITIZER)"
    # cargo-fuzz's release build, as it is (333-421 s across the suite runs of 2026-12-07):
    # 16 codegen units built in 411 s, no faster, and opt-level 1 in 295-350 s but ran the
    # compute-bound targets a third as many times (vxlan_gro 2.5 M executions in 30 s
    # against 8.0 M, vxlan_decap 0.9 M against 2.4 M).
    FLAGS=(-O --debug-assertions -s "$SANITIZER")
    if [ -z "$ONLY" ]; then
        cargo fuzz build "${FLAGS[@]}"
    else
        for t in $TARGETS; do
            cargo fuzz build "${FLAGS[@]}" "$t"
        done
    fi
fi
T1=$(date +%s)
for t in $TARGETS; do
    [ -x "$BIN/$t" ] || { echo "fuzz.sh: $BIN/$t is not built (drop --no-build)" >&2; exit 2; }
done

FAILED=""
# On tmpfs when there is one: the control and config harnesses write (and fsync) a
# config file per input there.
WORK="$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export VSWITCH_FUZZ_SCRATCH="$WORK/scratch"

# What a libFuzzer log says went wrong: the input that was running, the panic and its
# message, or libFuzzer's own error (timeout, out of memory), indented.
why() {
    # (head closing early makes grep fail with SIGPIPE: not an error here.)
    {
        grep -E "^Running: " "$1" | tail -n 1 || true
        grep -E -A 1 "panicked at" "$1" | head -n 2 || true
        grep -E "ERROR: libFuzzer: (timeout|out-of-memory|fuzz target exited)" "$1" | head -n 1 || true
    } | sed 's/^/    /' || true
}

echo "== replaying regression inputs (fuzz/regressions/<target>/)"
for t in $TARGETS; do
    dir="$FUZZ/regressions/$t"
    files=$(find "$dir" -type f 2>/dev/null | sort || true)
    [ -n "$files" ] || continue
    n=$(wc -l <<<"$files")
    # Given files (not directories), libFuzzer runs each input once and stops at the
    # first crash.
    if "$BIN/$t" $files >"$WORK/$t.regress.log" 2>&1; then
        echo "$t: $n regression input(s) pass"
    else
        echo "$t: a regression input FAILS:"
        why "$WORK/$t.regress.log"
        FAILED="$FAILED $t(regression)"
    fi
done

fuzz_one() {
    local t="$1" corpus="$WORK/corpus/$t" art="$FUZZ/artifacts/$t/" dict=()
    [ -z "$CORPUS_OUT" ] || corpus="$CORPUS_OUT/$t"
    mkdir -p "$corpus" "$art"
    [ -f "$FUZZ/dicts/$t.dict" ] && dict=(-dict="$FUZZ/dicts/$t.dict")
    # libFuzzer refuses to start on a corpus directory that does not exist.
    local seeds=()
    [ -d "$FUZZ/corpus/$t" ] && seeds=("$FUZZ/corpus/$t")
    # New inputs go to the first directory only: the committed seeds stay as they are.
    # An input that takes 25 s, or 2 GB, is a bug too.
    "$BIN/$t" -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 \
        -timeout=25 -rss_limit_mb=2048 -artifact_prefix="$art" "${dict[@]}" \
        "$corpus" "${seeds[@]}" >"$WORK/$t.log" 2>&1
}

echo "== fuzzing each target for ${SECONDS_PER_TARGET}s ($JOBS at a time)"
running=0
for t in $TARGETS; do
    fuzz_one "$t" &
    echo "$!" >"$WORK/$t.pid"
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait || true

printf '%-12s %12s %10s %8s  %s\n' target executions exec/s corpus result
for t in $TARGETS; do
    log="$WORK/$t.log"
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    units=$(find "${CORPUS_OUT:-$WORK/corpus}/$t" -type f | wc -l)
    if grep -qE "^==[0-9]+== ERROR: libFuzzer|^SUMMARY: libFuzzer|Test unit written to" "$log"; then
        result="CRASH: $(grep -oE 'Test unit written to .*' "$log" | head -n 1 | sed 's/Test unit written to //')"
        FAILED="$FAILED $t"
    elif grep -q "^Done [0-9]* runs" "$log"; then
        result=ok
    else
        result="FAILED to run (see below)"
        FAILED="$FAILED $t"
    fi
    printf '%-12s %12s %10s %8s  %s\n' "$t" "${runs:-?}" "${rate:-?}" "$units" "$result"
done
for t in $TARGETS; do
    log="$WORK/$t.log"
    if [ -f "$log" ] && ! grep -q "^Done [0-9]* runs" "$log"; then
        echo "--- $t:"
        why "$log"
    fi
done
T2=$(date +%s)
echo "build $((T1 - T0))s, replay and fuzzing $((T2 - T1))s"
if [ -n "$FAILED" ]; then
    echo "FAILED:$FAILED (crashing inputs in fuzz/artifacts/<target>/; keep one in fuzz/regressions/<target>/ with the fix)"
    exit 1
fi
echo "all targets ran clean"
