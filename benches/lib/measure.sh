# shellcheck shell=bash
# Measurements and the report of the bench scripts (sourced by common.sh): the raw samples,
# ping and iperf3 runs, the run's metadata (BENCH_* for the python report) and the closing
# lines.

# ---- raw samples -----------------------------------------------------------------------------
# One JSON line per value in RAW, aggregated by the python report.
record() { # SETUP METRIC VALUE
    printf '{"setup":"%s","metric":"%s","value":%s}\n' "$1" "$2" "$3" >>"$RAW"
}
record_detail() { # SETUP JSON
    printf '{"setup":"%s","detail":%s}\n' "$1" "$2" >>"$RAW"
}

# ---- the switch's CPU ------------------------------------------------------------------------
# CPU_PIDS: the switch processes of the setup being measured (vswitchd, ovs-vswitchd; none for
# the kernel). iperf_run reads their utime + stime from /proc/PID/stat (all threads, and the
# kernel work that runs in them: softirqs on their system calls) around each run and reports
# the CPU they used per Gbit/s moved: percent of one core per Gbit/s, lower is better.
CPU_PIDS=()
CLK_TCK="$(getconf CLK_TCK 2>/dev/null || echo 100)"
cpu_ticks() { # PID...: utime + stime of the processes, in clock ticks (empty if one is gone)
    local pid f t=0
    for pid in "$@"; do
        # The fields after the command name, which may hold spaces: utime and stime are the
        # 12th and 13th from there (14 and 15 of the whole line).
        f="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null)" || return 0
        read -r -a f <<<"$f"
        [ "${#f[@]}" -ge 13 ] || return 0
        t=$((t + f[11] + f[12]))
    done
    echo "$t"
}
# BENCH_PERF=DIR in the environment: each CPU measurement also runs `perf record -e cpu-clock
# -g` on CPU_PIDS into DIR/<n>.data (numbered in order; the list in DIR/index.txt), for
# README's "What limits it" (no hardware counters on a VM: cpu-clock sampling).
PERF_N=0
# PLACEMENT=1 (run.sh sets it): each CPU measurement also samples, every 40 ms, the CPU the
# switch's threads and the traffic's senders last ran on (lib/placement.py). A worker that
# shares the sender's CPU halves TCP on two cores (README, "What limits it") and the
# scheduler picks that run by run; cpu_end -> PLACE_BESIDE, the share of the time the
# busiest switch thread was on a sender's CPU (e.g. 0.63), empty if unknown.
PLACEMENT=0
PLACE_N=0
PLACE_PID=""
cpu_begin() { # [WHAT] -> CPU_T0, CPU_C0: the start of a CPU measurement of CPU_PIDS
    CPU_T0="$(now)"
    CPU_C0=""
    PERF_PID=""
    [ "${#CPU_PIDS[@]}" -gt 0 ] || return 0
    CPU_C0="$(cpu_ticks "${CPU_PIDS[@]}")"
    if [ -n "${BENCH_PERF:-}" ]; then
        PERF_N=$((PERF_N + 1))
        mkdir -p "$BENCH_PERF"
        echo "$PERF_N ${1:-} pids ${CPU_PIDS[*]}" >>"$BENCH_PERF/index.txt"
        spawn "$BENCH_PERF/$PERF_N.log" perf record -q -e cpu-clock -g -o "$BENCH_PERF/$PERF_N.data" \
            -p "$(
                IFS=,
                echo "${CPU_PIDS[*]}"
            )"
        PERF_PID="$SPAWNED"
    fi
    if [ "$PLACEMENT" = 1 ]; then
        PLACE_N=$((PLACE_N + 1))
        PLACE_OUT="$TMP/placement-$PLACE_N.jsonl"
        spawn "$TMP/placement.log" python3 "$LIBDIR/placement.py" sample "$PLACE_OUT" "${CPU_PIDS[@]}"
        PLACE_PID="$SPAWNED"
    fi
}
# cpu_end -> CPU_CORES (cores used since cpu_begin, e.g. 0.85) or empty when nothing is measured
cpu_end() {
    local c1
    CPU_CORES=""
    PLACE_BESIDE=""
    if [ -n "${PERF_PID:-}" ]; then
        stop_pid "$PERF_PID" INT
        forget_pid "$PERF_PID"
        PERF_PID=""
    fi
    if [ -n "${PLACE_PID:-}" ]; then
        stop_pid "$PLACE_PID"
        forget_pid "$PLACE_PID"
        PLACE_PID=""
        PLACE_BESIDE="$(python3 "$LIBDIR/placement.py" summary "$PLACE_OUT" 2>/dev/null)" || PLACE_BESIDE=""
    fi
    [ -n "$CPU_C0" ] || return 0
    c1="$(cpu_ticks "${CPU_PIDS[@]}")"
    [ -n "$c1" ] || return 0
    CPU_CORES="$(calc "($c1 - $CPU_C0) / $CLK_TCK / ($(now) - $CPU_T0)")"
}
# cpu_record SETUP KEY GBPS: after cpu_end, KEY (percent of a core per Gbit/s) and KEY's
# _cores; -> CPU_TEXT (", switch 85% of a core, 6.1% per Gbit/s" or empty).
cpu_record() {
    CPU_TEXT=""
    [ -n "$CPU_CORES" ] || return 0
    local per
    per="$(calc "$CPU_CORES * 100 / $3")"
    record "$1" "$2" "$per"
    record "$1" "${2%_pct_per_gbps}_cores" "$CPU_CORES"
    CPU_TEXT=", switch $(dec 0 "$(calc "$CPU_CORES * 100")")% of a core, $(dec 1 "$per")% per Gbit/s"
    place_record "$1" "${2%_cpu_pct_per_gbps}"
}
# place_record SETUP PREFIX: after cpu_end, PREFIX_beside_sender from PLACE_BESIDE, and its
# text added to CPU_TEXT.
place_record() {
    [ -n "${PLACE_BESIDE:-}" ] || return 0
    record "$1" "${2}_beside_sender" "$PLACE_BESIDE"
    CPU_TEXT="$CPU_TEXT, on a sender's CPU $(dec 0 "$(calc "$PLACE_BESIDE * 100")")% of the time"
}

# ---- ping and iperf3 -------------------------------------------------------------------------
warm_up() { # FROM DST: three pings, so that ARP and the switches' tables are warm
    nsx "$1"
    timeout 10 "${NSX[@]}" ping -n -q -c 3 -i 0.05 "$2" >/dev/null
}

# ping_run SETUP WHAT FROM DST OUT: PINGS pings at PING_INTERVAL from FROM (a namespace or a
# /proc/PID/ns/net) to DST, the output in OUT; fatal if ping fails or fewer than 95 % come
# back. Records ping_p50_ms and ping_p99_ms of SETUP; -> P50, P99, GOT, SENT and PING_TEXT
# ("p50 X ms, p99 Y ms (GOT/SENT replies)"). WHAT names the path in errors.
ping_run() {
    local s="$1" what="$2" out="$5"
    nsx "$3"
    run_wait timeout 120 "${NSX[@]}" ping -n -c "$PINGS" -i "$PING_INTERVAL" -W 1 "$4" >"$out" 2>&1 ||
        die "$s: ping${what:+ $what} failed: $(tail -n 3 "$out")"
    read -r P50 P99 GOT SENT < <(python3 "$LIB" ping "$out")
    [ "$GOT" -ge $((PINGS * 95 / 100)) ] || die "$s: only $GOT of $SENT pings answered"
    record "$s" ping_p50_ms "$P50"
    record "$s" ping_p99_ms "$P99"
    PING_TEXT="p50 $(dec 3 "$P50") ms, p99 $(dec 3 "$P99") ms ($GOT/$SENT replies)"
}

# iperf_run SETUP KEY WHAT SERVER CLIENT DST PORT JSON [CLIENT_ARGS...]: one iperf3 TCP run of
# TCP_SECS: a one-off server on PORT in SERVER (bound to DST when IPERF_BIND=1), the client in
# CLIENT to DST:PORT with CLIENT_ARGS (-P N, -R), its JSON in JSON; fatal if it fails or moves
# nothing. Records KEY (Gbit/s), KEY's _retransmits and, with CPU_PIDS, KEY's
# _cpu_pct_per_gbps and _cpu_cores of SETUP unless KEY is "-"; -> GBPS, RETR, CPU_CORES and
# TCP_TEXT ("X Gbit/s (N retransmits), switch ..% of a core, ..% per Gbit/s"). WHAT names the
# direction in errors.
IPERF_BIND=0
iperf_run() {
    local s="$1" key="$2" what="$3" server="$4" client="$5" dst="$6" port="$7" json="$8" srv bind=()
    shift 8
    [ "$IPERF_BIND" = 0 ] || bind=(-B "$dst")
    nsx "$server"
    spawn "$TMP/iperf3-server.log" timeout $((TCP_SECS + 40)) "${NSX[@]}" iperf3 -s -1 "${bind[@]}" -p "$port"
    srv="$SPAWNED"
    wait_listen "$server" "$port" || die "$s: iperf3 server did not start: $(cat "$TMP/iperf3-server.log")"
    nsx "$client"
    cpu_begin "$s $key $what"
    run_wait timeout $((TCP_SECS + 30)) "${NSX[@]}" iperf3 -c "$dst" -p "$port" -t "$TCP_SECS" "$@" -J >"$json" 2>&1 ||
        die "$s: iperf3 $what failed: $(head -c 600 "$json")"
    cpu_end
    wait "$srv" 2>/dev/null || true
    forget_pid "$srv"
    read -r GBPS RETR < <(python3 "$LIB" iperf "$json") || die "$s: cannot read iperf3 result $json"
    awk -v g="$GBPS" 'BEGIN { exit !(g > 0) }' || die "$s: iperf3 $what moved nothing"
    CPU_TEXT=""
    if [ "$key" != - ]; then
        record "$s" "$key" "$GBPS"
        record "$s" "${key%_gbps}_retransmits" "$RETR"
        cpu_record "$s" "${key%_gbps}_cpu_pct_per_gbps" "$GBPS"
    fi
    TCP_TEXT="$(dec 2 "$GBPS") Gbit/s ($RETR retransmits)$CPU_TEXT"
}

# ---- the run and its report ------------------------------------------------------------------
# bench_begin PLAN [KIND NOTE]: PLAN as a headline; UPTIME_START and LOADAVG_START, the uptime
# printed; when the machine is busy (1-min load >= 0.5) "KIND: the machine is busy (load ..):
# NOTE".
bench_begin() {
    UPTIME_START="$(uptime)"
    LOADAVG_START="$(loadavg)"
    say "$1"
    info "uptime at start: $UPTIME_START"
    if [ $# -ge 3 ] && awk -v l="${LOADAVG_START%% *}" 'BEGIN { exit !(l >= 0.5) }'; then
        info "$2: the machine is busy (load $LOADAVG_START): $3"
    fi
}

# bench_run PLAN [KIND NOTE]: bench_begin, then each of SETUPS under the headline "SETUP:
# TITLE[SETUP]", run by the script's run_setup SETUP.
bench_run() {
    local s
    bench_begin "$@"
    for s in "${SETUPS[@]}"; do
        say "$s: ${TITLE[$s]}"
        run_setup "$s"
    done
}

# bench_commit GIT_STATUS_ARGS...: BENCH_COMMIT (HEAD) and BENCH_DIRTY (true when `git status
# --porcelain GIT_STATUS_ARGS` lists a change: name the paths the measured binaries come from).
bench_commit() {
    BENCH_COMMIT="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
    BENCH_DIRTY=false
    [ -z "$(git -C "$ROOT" status --porcelain "$@" 2>/dev/null)" ] || BENCH_DIRTY=true
}

# bench_meta GIT_STATUS_ARGS...: export what every report says about the run: machine, uptime
# and load average at start (bench_begin) and end (UPTIME_END if set, else now), the vswitch
# commit (bench_commit, unless called already), the options, iperf3's version, run and build
# time.
bench_meta() {
    export BENCH_DATE BENCH_CPUS BENCH_CPU_MODEL BENCH_KERNEL BENCH_MEM_MIB BENCH_UPTIME_START \
        BENCH_UPTIME_END BENCH_LOADAVG_START BENCH_LOADAVG_END BENCH_COMMIT BENCH_DIRTY \
        BENCH_VSWITCHD_ARGS BENCH_QUICK BENCH_SETUPS BENCH_TCP_SECS BENCH_RUNS BENCH_PINGS \
        BENCH_PING_INTERVAL BENCH_IPERF3 BENCH_ELAPSED BENCH_BUILD_S
    BENCH_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    BENCH_CPUS="$(nproc)"
    BENCH_CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    BENCH_KERNEL="$(uname -r)"
    BENCH_MEM_MIB="$(awk '/^MemTotal/ { print int($2 / 1024) }' /proc/meminfo)"
    BENCH_UPTIME_START="$UPTIME_START"
    BENCH_UPTIME_END="${UPTIME_END:-$(uptime)}"
    BENCH_LOADAVG_START="$LOADAVG_START"
    BENCH_LOADAVG_END="$(loadavg)"
    [ -n "${BENCH_COMMIT:-}" ] || bench_commit "$@"
    BENCH_VSWITCHD_ARGS="$VSW_EXTRA"
    BENCH_QUICK="$QUICK"
    BENCH_SETUPS="${SETUPS[*]}"
    BENCH_TCP_SECS="$TCP_SECS"
    BENCH_RUNS="$RUNS"
    BENCH_PINGS="$PINGS"
    BENCH_PING_INTERVAL="$PING_INTERVAL"
    BENCH_IPERF3="$( (iperf3 --version 2>/dev/null || true) | awk 'NR == 1 { print $2 }')"
    BENCH_ELAPSED=$(($(date +%s) - START_SECS))
    BENCH_BUILD_S="$BUILD_SECS"
}

# bench_report HEADLINE GIT_STATUS_ARGS...: bench_meta GIT_STATUS_ARGS; then under HEADLINE,
# report_py report RAW OUT writes the result and prints its table (OUT: benches/results/
# <script>-<date>-<time>.json when SAVE=1, else in TMP), and the closing lines.
bench_report() {
    local out="$TMP/results.json"
    bench_meta "${@:2}"
    say "$1"
    if [ "$SAVE" = 1 ]; then
        mkdir -p "$RESULTS"
        out="$RESULTS/${SCRIPT_NAME%.sh}-$(date +%Y%m%d-%H%M%S).json"
    fi
    report_py report "$RAW" "$out"
    [ "$SAVE" != 1 ] || printf '\nraw results: %s (markdown: bash benches/%s --table %s)\n' "${out#"$ROOT"/}" "$SCRIPT_NAME" "${out#"$ROOT"/}"
    bench_footer
}

bench_footer() { # after bench_meta: run time, uptime at start and end
    echo "run time: ${BENCH_ELAPSED}s (of which cargo build ${BUILD_SECS}s) on $BENCH_CPUS cores ($BENCH_CPU_MODEL)"
    echo "uptime at start: $UPTIME_START"
    echo "uptime at end:   $BENCH_UPTIME_END"
}
