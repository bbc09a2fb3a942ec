#!/usr/bin/env bash
# Replay benchmark: how fast heapreplay turns traces of growing size into
# snapshots, with 1 and 2 threads, in how much memory, and what many
# snapshots cost over one. Traces are synthetic (heapreplay-synth: threads,
# hot and cold stacks, short and long lifetimes, allocator-like address
# reuse), so no recording is needed. Figures are ratios side by side in one
# run; absolute times on a shared machine mean little.
#
#   benches/replay.sh [--size tiny|small|full]
set -euo pipefail
cd "$(dirname "$0")/.."
size=small
while [ $# -gt 0 ]; do
    case "$1" in
        --size) size=$2; shift 2 ;;
        *) echo "usage: benches/replay.sh [--size tiny|small|full]" >&2; exit 2 ;;
    esac
done
case "$size" in
    tiny) sizes="1000000"; runs=1 ;;
    small) sizes="10000000 50000000"; runs=3 ;;
    full) sizes="50000000 500000000"; runs=3 ;;
    *) echo "unknown size $size" >&2; exit 2 ;;
esac
scripts/install-deps --bench >&2
cargo build --release --workspace -q
bin=target/release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# median of "$runs" runs of a command: prints "seconds peak_kb"
measure() {
    local out=() i
    for ((i = 0; i < runs; i++)); do
        local start end
        start=$(date +%s.%N)
        /usr/bin/time -f '%M' -o "$work/rss" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
        end=$(date +%s.%N)
        out+=("$(echo "$end - $start" | bc -l) $(cat "$work/rss")")
    done
    printf '%s\n' "${out[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p"
}

# total allocated bytes of a trace, from its end-of-trace profile
allocated() {
    "$bin/heapreplay" -q -o "$work/total" "$1" >/dev/null 2>&1
    head -n 1 "$work/total.0001.heap" | sed 's/.*\[ *[0-9]*: *\([0-9]*\)\].*/\1/'
}

echo "| events | trace MB | threads | seconds | events/s | speed-up | peak RSS |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for n in $sizes; do
    trace="$work/t$n.zst"
    "$bin/heapreplay-synth" "$trace" "$n" 4 2000 20000 2>/dev/null
    mb=$(( $(stat -c %s "$trace") / 1048576 ))
    interval=$(( $(allocated "$trace") / 100 ))
    read -r t1 r1 < <(measure "$bin/heapreplay" -q --threads 1 --interval "$interval" -o "$work/a" "$trace")
    read -r t2 r2 < <(measure "$bin/heapreplay" -q --threads 2 --interval "$interval" -o "$work/b" "$trace")
    # Same profiles whatever the thread count.
    for f in "$work"/a.*.heap; do cmp -s "$f" "$work/b.${f##*/a.}" || { echo "profiles differ: $f" >&2; exit 1; }; done
    rm -f "$work"/a.*.heap "$work"/b.*.heap
    for t in 1 2; do
        s=$([ $t = 1 ] && echo "$t1" || echo "$t2")
        r=$([ $t = 1 ] && echo "$r1" || echo "$r2")
        printf '| %s | %s | %s | %.2f | %.1fM | %.2fx | %d MiB |\n' "$n" "$mb" "$t" "$s" \
            "$(echo "$n / $s / 1000000" | bc -l)" "$(echo "$t1 / $s" | bc -l)" $((r / 1024))
    done
done

echo
echo "Snapshots: one pass serves any number (largest trace above, 2 threads)."
echo
echo "| snapshots | seconds | vs 1 |"
echo "|---:|---:|---:|"
total=$(allocated "$trace")
base=""
for count in 1 100 1000; do
    read -r s _ < <(measure "$bin/heapreplay" -q --threads 2 --interval $(( total / count + 1 )) -o "$work/s$count" "$trace")
    base=${base:-$s}
    printf '| %s | %.2f | %.2fx |\n' "$count" "$s" "$(echo "$s / $base" | bc -l)"
    rm -f "$work"/s"$count".*.heap
done
