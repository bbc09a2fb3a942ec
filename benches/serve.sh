#!/usr/bin/env bash
# The page's answers on long traces: how long `heapreplay serve` takes to
# answer for a moment (api/moment) and for a window of a hundredth of the
# run (api/window), at points across synthetic traces of growing length
# (heapreplay-synth: 4 threads, 2000 stacks, 80,000 live blocks), against
# `heapreplay top --at` on the same point in the same run. Both start from
# the trace's index (built first). Answers should cost the same whatever
# the trace's length.
#
#   benches/serve.sh [--size small|full] [--keep DIR]
#
# small: 20M and 200M events; full: 200M and 2B events (6.3 GB for the 2B
# trace). --keep DIR keeps the traces there between runs (benches/index.sh
# makes the same ones).
set -euo pipefail
cd "$(dirname "$0")/.."
size=small
keep=""
while [ $# -gt 0 ]; do
    case "$1" in
        --size) size=$2; shift 2 ;;
        --keep) keep=$2; shift 2 ;;
        *) echo "usage: benches/serve.sh [--size small|full] [--keep DIR]" >&2; exit 2 ;;
    esac
done
case "$size" in
    small) sizes="20000000 200000000" ;;
    full) sizes="200000000 2000000000" ;;
    *) echo "unknown size $size" >&2; exit 2 ;;
esac
runs=3
scripts/install-deps --bench >&2
cargo build --release --workspace -q
bin=$PWD/target/release
if [ -n "$keep" ]; then
    mkdir -p "$keep"
    work=$(cd "$keep" && pwd)
else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
fi
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; [ -z "$keep" ] && rm -rf "$work"' EXIT

median() { sort -n | sed -n "$(( (runs + 1) / 2 ))p"; }

# median seconds of $runs GETs of a URL (each answer must be 200)
get() {
    for ((i = 0; i < runs; i++)); do
        curl -s -o "$work/answer" -w '%{http_code} %{time_total}\n' "$1" |
            awk '$1 != 200 { print "HTTP " $1 > "/dev/stderr"; exit 1 } { print $2 }'
    done | median
}

# median seconds of $runs runs of a command
timed() {
    for ((i = 0; i < runs; i++)); do
        local start end
        start=$(date +%s.%N)
        "$@" >/dev/null 2>&1
        end=$(date +%s.%N)
        echo "$end - $start" | bc -l
    done | median
}

echo "| events | point | api/moment ms | api/window ms | top --at ms | moment / top |"
echo "|---:|---:|---:|---:|---:|---:|"
for n in $sizes; do
    trace="$work/synth-$n.zst"
    [ -s "$trace" ] || "$bin/heapreplay-synth" "$trace" "$n" 4 2000 20000 2>/dev/null
    # The index, built anew (a full pass) with this build's spacing.
    rm -f "$trace.idx"
    "$bin/heapreplay" info "$trace" >/dev/null 2>&1
    len_ns=$(HEAPREPLAY_INDEX=off "$bin/heapreplay" info "$trace" |
        sed -n 's/^recorded: .* for \([0-9.]*\) s.*/\1/p' | awk '{ printf "%d", $1 * 1e9 }')
    "$bin/heapreplay" serve --port 0 "$trace" 2>"$work/serve.err" &
    server=$!
    # Its address, once it has replayed the timeline (minutes for 2B events).
    url=""
    for ((i = 0; i < 1200; i++)); do
        sleep 1
        url=$(grep -o 'http://127.0.0.1:[0-9]*/' "$work/serve.err" || true)
        [ -z "$url" ] || break
    done
    [ -n "$url" ] || { cat "$work/serve.err" >&2; exit 1; }
    for at in 0.1 0.5 0.9 peak end; do
        case $at in
            peak|end) point=$at; cli=$at; from=0 ;;
            *) point=$(awk -v l="$len_ns" -v a="$at" 'BEGIN { printf "%d", l * a }')
               cli="${point}ns"
               from=$(awk -v p="$point" -v l="$len_ns" 'BEGIN { printf "%d", p - l / 100 }') ;;
        esac
        moment=$(get "${url}api/moment?at=$point")
        if [ "$from" = 0 ]; then
            window=""
        else
            window=$(get "${url}api/window?from=$from&to=$point")
        fi
        top=$(timed "$bin/heapreplay" top -q --at "$cli" "$trace")
        printf '| %s | %s | %.0f | %s | %.0f | %.2fx |\n' "$n" "$at" \
            "$(echo "$moment * 1000" | bc -l)" \
            "$([ -n "$window" ] && printf '%.0f' "$(echo "$window * 1000" | bc -l)" || echo -)" \
            "$(echo "$top * 1000" | bc -l)" "$(echo "$moment / $top" | bc -l)"
    done
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=""
done
