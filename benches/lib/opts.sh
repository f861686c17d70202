# shellcheck shell=bash
# The option parser of the bench scripts (sourced by common.sh).
#
# A script lists its flags in the array OPTS, then calls parse_opts "$@". A word of OPTS is
# the name of a common flag (COMMON_OPTS below) or one of the script's own:
#   --name=VAR           takes a value: --name V and --name=V set VAR to V
#   --name=VAR?DEFAULT   takes an optional number: --name N sets VAR to N, a bare --name to
#                        DEFAULT, --name=V to V
#   --name:VAR=VALUE     a switch: --name sets VAR to VALUE
# -h and --help print the script's usage (its function usage) and exit. A variable keeps the
# value the script gave it before parse_opts unless a flag sets it; this file starts QUICK=0,
# BUILD=1, SAVE="" (unset: the script decides, see save_default), VSW_EXTRA="", TABLE="" and
# TCP_SECS, RUNS, PINGS empty. After the parse, VSW_ARGS holds the words of --vswitchd-args,
# and a TABLE (--table FILE) is printed with report_py table FILE, then the script exits.
declare -A COMMON_OPTS=(
    [quick]="--quick:QUICK=1"
    [only]="--only=ONLY"
    [build]="--build:BUILD=1"
    [no-build]="--no-build:BUILD=0"
    [save]="--save:SAVE=1 --no-save:SAVE=0"
    [vswitchd-args]="--vswitchd-args=VSW_EXTRA"
    [time]="--time=TCP_SECS"
    [runs]="--runs=RUNS"
    [pings]="--pings=PINGS"
    [table]="--table=TABLE"
)
declare -A OPT_GIVEN=() # the flags given, by name (opt_given)
QUICK=0 BUILD=1 SAVE="" VSW_EXTRA="" TABLE="" TCP_SECS="" RUNS="" PINGS="" PING_INTERVAL=""
SETUPS=()
VSW_ARGS=()

parse_opts() {
    local specs=() words w arg spec flag var val found
    for w in "${OPTS[@]}"; do
        case "$w" in
            --*) specs+=("$w") ;;
            *)
                [ -n "${COMMON_OPTS[$w]:-}" ] || die "parse_opts: no common flag '$w'"
                read -r -a words <<<"${COMMON_OPTS[$w]}"
                specs+=("${words[@]}")
                ;;
        esac
    done
    while [ $# -gt 0 ]; do
        arg="$1"
        case "$arg" in
            -h | --help)
                usage
                exit 0
                ;;
        esac
        found=""
        for spec in "${specs[@]}"; do
            flag="${spec%%[=:]*}"
            var="${spec#"$flag"?}"
            if [[ "$spec" == "$flag:"* ]]; then # a switch: var is VAR=VALUE
                [ "$arg" = "$flag" ] || continue
                printf -v "${var%%=*}" '%s' "${var#*=}"
            else # a value: var is VAR, or VAR?DEFAULT for an optional number
                if [[ "$arg" == "$flag="* ]]; then
                    val="${arg#*=}"
                elif [ "$arg" != "$flag" ]; then
                    continue
                elif [[ "$var" == *\?* ]]; then
                    val="${var#*\?}"
                    if [ $# -ge 2 ] && [[ "$2" =~ ^[0-9]+$ ]]; then
                        val="$2"
                        shift
                    fi
                else
                    [ $# -ge 2 ] || die "$flag needs a value"
                    val="$2"
                    shift
                fi
                printf -v "${var%%\?*}" '%s' "$val"
            fi
            found="$flag"
            break
        done
        if [ -z "$found" ]; then
            usage >&2
            die "unknown argument: $arg"
        fi
        OPT_GIVEN[$found]=1
        shift
    done
    read -r -a VSW_ARGS <<<"$VSW_EXTRA"
    if [ -n "$TABLE" ]; then
        report_py table "$TABLE"
        exit 0
    fi
}

opt_given() { [ -n "${OPT_GIVEN[$1]:-}" ]; } # FLAG

need_num() { # FLAG VALUE: a whole number >= 1
    [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a whole number >= 1, not '$2'"
}

# set_defaults "VAR=VALUE ..." "VAR=VALUE ...": the first list with --quick, else the second;
# each VAR still empty (no flag set it) gets its VALUE.
set_defaults() {
    local list="$2" kv var
    [ "$QUICK" = 0 ] || list="$1"
    for kv in $list; do
        var="${kv%%=*}"
        [ -n "${!var:-}" ] || printf -v "$var" '%s' "${kv#*=}"
    done
}

# The --time, --runs and --pings of nat.sh and docker.sh: 1 s, 1 run, 20 pings with --quick,
# else 5 s, 3 runs, 200 pings; whole numbers >= 1, --time at most 600.
time_runs_pings() {
    set_defaults "TCP_SECS=1 RUNS=1 PINGS=20" "TCP_SECS=5 RUNS=3 PINGS=200"
    need_num --time "$TCP_SECS"
    need_num --runs "$RUNS"
    need_num --pings "$PINGS"
    [ "$TCP_SECS" -le 600 ] || die "--time $TCP_SECS: at most 600 s"
}

# save_default [N]: unless --save or --no-save, save the results of full runs (not --quick)
# (with N: only when all N setups ran).
save_default() {
    [ -z "$SAVE" ] || return 0
    SAVE=$((1 - QUICK))
    [ -z "${1:-}" ] || [ "${#SETUPS[@]}" -eq "$1" ] || SAVE=0
}

# pick_setups WHAT ORDER [ALIAS=SETUP,...]...: SETUPS = the setups that --only (ONLY, a
# comma-separated list of setups and aliases) names, in ORDER (a space-separated list), each
# once. A name that is neither is fatal ("--only: unknown WHAT").
pick_setups() {
    local what="$1" order="$2" names want=" " t a s
    shift 2
    local -A alias=()
    for a in "$@"; do alias[${a%%=*}]="${a#*=}"; done
    IFS=',' read -r -a names <<<"$ONLY"
    for t in "${names[@]}"; do
        if [ -n "${alias[$t]:-}" ]; then
            want+="${alias[$t]//,/ } "
        elif [[ " $order " == *" $t "* ]]; then
            want+="$t "
        else
            # shellcheck disable=SC2086 # the words of ORDER
            die "--only: unknown $what '$t' ($(printf '%s\n' $order "${!alias[@]}" | paste -sd, | sed 's/,/, /g'))"
        fi
    done
    SETUPS=()
    for s in $order; do
        [[ "$want" != *" $s "* ]] || SETUPS+=("$s")
    done
    [ "${#SETUPS[@]}" -gt 0 ] || die "--only selected nothing"
}

has_setup() { # SETUP
    local s
    for s in "${SETUPS[@]}"; do [ "$s" = "$1" ] && return 0; done
    return 1
}

drop_setup() { # SETUP
    local keep=() s
    for s in "${SETUPS[@]}"; do [ "$s" = "$1" ] || keep+=("$s"); done
    SETUPS=("${keep[@]}")
}
