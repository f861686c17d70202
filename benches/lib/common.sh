# shellcheck shell=bash
# The shell library of the bench scripts (benches/*.sh). A script starts with
#
#   set -euo pipefail
#   . "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
#
# and is then in the repository root with ROOT, LIBDIR (benches/lib), LIB (bench.py), RESULTS
# (benches/results), SCRIPT (its path) and SCRIPT_NAME (run.sh, nat.sh, ...: prefixes die's
# messages, names the script's python helper LIBDIR/<name>.py and its results), START_SECS,
# and BIN: where cargo puts the release binaries ($CARGO_TARGET_DIR/release when that is set,
# else target/release; another cargo profile's with BENCH_PROFILE=NAME, as the test suite's
# smoke run uses its `suite` build), with VSWITCHD, VSCTL and TESTLAB in it. The script's usage (--help) is its
# comment lines that start with "#:".
#
# This file: messages, processes and the cleanup, dependencies, the build, small helpers.
# opts.sh: the option parser. lab.sh: namespaces, links, vswitchd, Open vSwitch. measure.sh:
# ping and iperf3 runs, the raw samples, the run's metadata and the report.
START_SECS="$(date +%s)"
SCRIPT="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT="$PWD"
LIBDIR="$ROOT/benches/lib"
LIB="$LIBDIR/bench.py"
RESULTS="$ROOT/benches/results"
SCRIPT_NAME="$(basename "$0")"
BIN="${CARGO_TARGET_DIR:-target}"
[[ "$BIN" == /* ]] || BIN="$ROOT/$BIN"
BIN="$BIN/${BENCH_PROFILE:-release}"
VSWITCHD="$BIN/vswitchd"
VSCTL="$BIN/vsctl"
TESTLAB="$BIN/testlab" # the lab CLI (lab.sh)
BINS=(vswitchd vsctl testlab) # what build_release must leave in BIN
BUILD_SECS=0

say() { printf '\n\033[1m==> %s\033[0m  [%ss]\n' "$*" "$(($(date +%s) - START_SECS))"; }
info() { printf '    %s\n' "$*"; }
die() {
    echo "$SCRIPT_NAME: $*" >&2
    exit 1
}
usage() { sed -n 's/^#: \{0,1\}//p' "$SCRIPT"; }
need_root() { # WHY
    [ "$(id -u)" -eq 0 ] || die "needs root ($1): sudo bash benches/$SCRIPT_NAME"
}
# The script's python helper: the report, the table of a saved result, its parsers.
report_py() { python3 "$LIBDIR/${SCRIPT_NAME%.sh}.py" "$@"; }

# ---- state, cleanup --------------------------------------------------------------------------
# bench_state NAME: a fresh temp dir TMP (/tmp/NAME.XXXXXX) with the raw samples file RAW, the
# lists the cleanup works on, and the EXIT/INT/TERM traps. PIDS: every background process the
# script started; NSES: every namespace it created (and not yet deleted); LOGS: daemon logs
# worth showing when something fails; POLICY_RC_D: set while a policy-rc.d of ours exists. A
# script with more to undo defines pre_cleanup, which the cleanup calls first.
bench_state() {
    PIDS=() NSES=() LOGS=() POLICY_RC_D=""
    TMP="$(mktemp -d "/tmp/$1.XXXXXX")"
    RAW="$TMP/raw.jsonl"
    : >"$RAW"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

cleanup() {
    local rc=$? pid ns log
    set +e
    trap - EXIT INT TERM
    if declare -F pre_cleanup >/dev/null; then pre_cleanup; fi
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [ "$rc" -ne 0 ]; then
        for log in "${LOGS[@]}"; do
            [ -s "$log" ] || continue
            echo "---- last lines of $log ----" >&2
            tail -n 25 "$log" >&2
        done
    fi
    for ns in "${NSES[@]}"; do del_ns "$ns"; done
    [ -z "$POLICY_RC_D" ] || rm -f "$POLICY_RC_D"
    rm -rf "$TMP"
    exit "$rc"
}

# True while PID runs (a child that exited but is not reaped yet, a zombie, does not count).
pid_alive() {
    local st
    st="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

stop_pid() { # PID [SIGNAL]: signal (default TERM), wait up to 3 s, then KILL; reap it
    local pid="$1"
    if pid_alive "$pid"; then
        kill "-${2:-TERM}" "$pid" 2>/dev/null || true
        for _ in $(seq 30); do
            pid_alive "$pid" || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    return 0
}

# Forget a reaped PID, so that cleanup never signals a later process that reuses the number.
forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

spawn() { # LOG CMD...: CMD in the background, its output in LOG; its PID in SPAWNED and PIDS
    local log="$1"
    shift
    "$@" >"$log" 2>&1 &
    SPAWNED=$!
    PIDS+=("$SPAWNED")
}

# Run a command in the background and wait for it: a TERM (or INT) then interrupts the wait at
# once and the cleanup kills the command, instead of bash deferring the trap until it ends.
run_wait() {
    local p rc=0
    "$@" &
    p=$!
    PIDS+=("$p")
    wait "$p" || rc=$?
    forget_pid "$p"
    return "$rc"
}

# ---- dependencies ----------------------------------------------------------------------------
# The Open vSwitch tools, as install_deps arguments.
OVS_PKGS=(ovs-vswitchd=openvswitch-switch ovsdb-server=openvswitch-switch
    ovsdb-tool=openvswitch-common ovs-vsctl=openvswitch-common ovs-appctl=openvswitch-common)

# install_deps [CMD=PACKAGE...]: install the Debian packages of the commands that are missing,
# of ip, ss, ping, iperf3, python3, timeout, awk and the given ones; then add /usr/sbin and
# /sbin to PATH.
install_deps() {
    local -A pkg=([ip]=iproute2 [ss]=iproute2 [ping]=iputils-ping [iperf3]=iperf3
        [python3]=python3 [timeout]=coreutils [awk]=gawk)
    local kv cmd missing=() pkgs
    say "dependencies"
    for kv in "$@"; do pkg[${kv%%=*}]="${kv#*=}"; done
    for cmd in "${!pkg[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${pkg[$cmd]}")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)
        info "installing ${pkgs[*]}"
        # Installing openvswitch-switch must not start (or enable the start of) the system
        # service: a policy-rc.d that says "no" for the duration of the install, unless the
        # host already has one (then it already decides).
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            POLICY_RC_D=/usr/sbin/policy-rc.d
            printf '#!/bin/sh\n# created by vswitch benches/%s for one apt-get install\nexit 101\n' "$SCRIPT_NAME" >"$POLICY_RC_D"
            chmod 755 "$POLICY_RC_D"
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
            "${pkgs[@]}" >/dev/null
        if [ -n "$POLICY_RC_D" ]; then
            rm -f "$POLICY_RC_D"
            POLICY_RC_D=""
        fi
    else
        info "all tools present"
    fi
    export PATH="$PATH:/usr/sbin:/sbin"
}

# ---- build -----------------------------------------------------------------------------------
# build_release CARGO_BUILD_ARGS...: with BUILD=1, or BUILD=auto and a binary of BINS missing,
# `cargo build CARGO_BUILD_ARGS` (BUILD_SECS: how long it took; with BENCH_PROFILE set,
# `--release` becomes `--profile BENCH_PROFILE`, so what is built is what BIN holds); then
# every binary of BINS must be in BIN.
build_release() {
    local cargo build_t0 b missing=0
    local -a args
    mapfile -t args < <(profiled "$@")
    for b in "${BINS[@]}"; do [ -x "$BIN/$b" ] || missing=1; done
    [ "$BUILD" != auto ] || BUILD="$missing"
    if [ "$BUILD" = 1 ]; then
        say "cargo build ${args[*]}"
        cargo="$(command -v cargo || true)"
        [ -n "$cargo" ] || cargo="${CARGO_HOME:-$HOME/.cargo}/bin/cargo"
        [ -x "$cargo" ] || die "cargo not found (install Rust, or pass --no-build with built binaries)"
        build_t0="$(date +%s)"
        "$cargo" build "${args[@]}"
        BUILD_SECS=$(($(date +%s) - build_t0))
    fi
    for b in "${BINS[@]}"; do
        [ -x "$BIN/$b" ] || die "missing $BIN/$b (build: cargo build ${args[*]})"
    done
}

# profiled CARGO_ARGS...: the arguments, one a line, with `--release` turned into
# `--profile BENCH_PROFILE` when that is set.
profiled() {
    local a
    for a in "$@"; do
        if [ "$a" = --release ] && [ -n "${BENCH_PROFILE:-}" ]; then
            printf '%s\n' --profile "$BENCH_PROFILE"
        else
            printf '%s\n' "$a"
        fi
    done
}

# ---- helpers ---------------------------------------------------------------------------------
dec() { awk -v x="$2" "BEGIN { printf \"%.$1f\", x }"; } # DIGITS VALUE
calc() { awk "BEGIN { printf \"%.4f\", $1 }"; }         # EXPRESSION
now() { date +%s.%N; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
wait_for() { # TRIES CMD... : retry every 0.1 s
    local n="$1"
    shift
    for _ in $(seq "$n"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# shellcheck source=benches/lib/opts.sh
. "$LIBDIR/opts.sh"
# shellcheck source=benches/lib/lab.sh
. "$LIBDIR/lab.sh"
# shellcheck source=benches/lib/measure.sh
. "$LIBDIR/measure.sh"
