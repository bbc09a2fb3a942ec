#!/usr/bin/env bash
# Overhead after `heapreplay attach`, side by side with LD_PRELOAD and with
# no recorder, in one run: tests/programs/attachee.c starts, waits on stdin,
# and is then told to run T threads of R malloc/calloc/realloc/free rounds
# each ("threads T R"); the time from the command to its answer is what
# is measured, in three modes, alternating, median of N runs:
#   plain     no recorder
#   preload   started with LD_PRELOAD=librecord.so
#   attached  started plain, then `heapreplay attach PID` before the command
# Prints a Markdown table with the ratios to plain, and attached / preload.
#
# Usage: benches/attach.sh [--runs N] [--threads T] [--rounds R]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
die() { printf 'benches/attach.sh: %s\n' "$*" >&2; exit 1; }

runs=3 threads=4 rounds=300000
while [ $# -gt 0 ]; do
    case $1 in
        --runs) runs=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
done
(cd "$root" && cargo build --release -q >&2) || die "cargo build --release failed"
bin=${CARGO_TARGET_DIR:-$root/target}/release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -O2 -g -pthread -o "$work/attachee" "$root/tests/programs/attachee.c" || die "gcc failed"

# One timed run in mode $1; prints its milliseconds.
one() {
    local mode=$1 env=() pid cli=
    [ "$mode" = preload ] && env=(env "LD_PRELOAD=$bin/librecord.so" "HEAPREPLAY_OUT=$work/p.zst")
    coproc APP { exec "${env[@]}" "$work/attachee" 10; }
    pid=$APP_PID
    local answer
    read -r answer <&"${APP[0]}"
    [ "$answer" = ready ] || die "attachee did not start"
    if [ "$mode" = attached ]; then
        "$bin/heapreplay" attach "$pid" -o "$work/a.zst" 2>"$work/cli" &
        cli=$!
        for _ in $(seq 200); do grep -q recording "$work/cli" && break; sleep 0.02; done
        grep -q recording "$work/cli" || die "attach failed: $(cat "$work/cli")"
    fi
    local t0 t1
    t0=$(date +%s%N)
    echo "threads $threads $rounds" >&"${APP[1]}"
    read -r answer <&"${APP[0]}"
    t1=$(date +%s%N)
    [ "$answer" = "joined $threads" ] || die "unexpected answer: $answer"
    if [ -n "$cli" ]; then kill -INT "$cli"; wait "$cli" || die "detach failed"; fi
    echo exit >&"${APP[1]}"
    wait "$pid" || true
    echo $(((t1 - t0) / 1000000))
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A times
for ((i = 0; i < runs; i++)); do
    for mode in plain preload attached; do
        ms=$(one "$mode")
        times[$mode]+="$ms "
        printf '== %s run %d: %s ms\n' "$mode" "$((i + 1))" "$ms" >&2
    done
done
p=$(echo "${times[plain]}" | tr ' ' '\n' | grep . | median)
l=$(echo "${times[preload]}" | tr ' ' '\n' | grep . | median)
a=$(echo "${times[attached]}" | tr ' ' '\n' | grep . | median)
echo "| $threads threads x $rounds rounds | median ms | against plain |"
echo "|---|---:|---:|"
echo "| plain | $p | 1.00x |"
awk -v p="$p" -v l="$l" -v a="$a" 'BEGIN {
    printf "| preload | %d | %.2fx |\n", l, l / p
    printf "| attached | %d | %.2fx |\n", a, a / p
    printf "\nattached / preload: %.2fx\n", a / l
}'
