#!/usr/bin/env bash
# Seeking index benchmark: on synthetic traces of growing length with the
# same live set (heapreplay-synth: 4 threads, 2000 stacks, 80,000 live
# blocks), what building the index costs against a plain full pass, how
# large it is, and what a point query costs with and without it, side by
# side in one run. Queries with the index should cost the same whatever the
# trace's length.
#
#   benches/index.sh [--size small|full] [--keep DIR]
#
# small: 20M and 200M events (about 0.7 GB of traces); full: 200M and 2B
# events (6.3 GB for the 2B trace, made in about 4 minutes; the whole run
# takes about 25 minutes on 2 cores). --keep DIR
# keeps the traces there between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
size=small
keep=""
while [ $# -gt 0 ]; do
    case "$1" in
        --size) size=$2; shift 2 ;;
        --keep) keep=$2; shift 2 ;;
        *) echo "usage: benches/index.sh [--size small|full] [--keep DIR]" >&2; exit 2 ;;
    esac
done
case "$size" in
    small) sizes="20000000 200000000"; runs=3 ;;
    full) sizes="200000000 2000000000"; runs=3 ;;
    *) echo "unknown size $size" >&2; exit 2 ;;
esac
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

# median wall seconds of "$runs" runs of a command (the first argument may
# be "once" to run it once); the last run's output is left in $work/out
measure() {
    local n=$runs
    if [ "$1" = once ]; then n=1; shift; fi
    local out=() i
    for ((i = 0; i < n; i++)); do
        local start end
        start=$(date +%s.%N)
        "$@" >"$work/out" 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
        end=$(date +%s.%N)
        out+=("$(echo "$end - $start" | bc -l)")
    done
    printf '%s\n' "${out[@]}" | sort -n | sed -n "$(( (n + 1) / 2 ))p"
}

# the trace's length in seconds, from info
length_s() {
    HEAPREPLAY_INDEX=off "$bin/heapreplay" info "$1" | sed -n 's/^recorded: .* for \([0-9.]*\) s.*/\1/p'
}

ratio() { echo "$1 / $2" | bc -l; }

echo "| events | trace MB | full pass s | indexing pass s | overhead | index MB | index/trace | checkpoints |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
queries=""
for n in $sizes; do
    trace="$work/synth-$n.zst"
    [ -s "$trace" ] || "$bin/heapreplay-synth" "$trace" "$n" 4 2000 20000 2>/dev/null
    rm -f "$trace.idx"
    mb=$(( $(stat -L -c %s "$trace") / 1048576 ))
    # A plain full pass against the same pass building the index, alternated.
    plain=() built=()
    for ((i = 0; i < runs; i++)); do
        plain+=("$(measure once env HEAPREPLAY_INDEX=off "$bin/heapreplay" info "$trace")")
        rm -f "$trace.idx"
        built+=("$(measure once "$bin/heapreplay" info "$trace")")
    done
    p=$(printf '%s\n' "${plain[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
    b=$(printf '%s\n' "${built[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
    isize=$(stat -L -c %s "$trace.idx")
    cps=$("$bin/heapreplay" info "$trace" | sed -n 's/^index: *\([0-9]*\) checkpoint.*/\1/p')
    printf '| %s | %s | %.2f | %.2f | %.3fx | %.1f | %.2f%% | %s |\n' "$n" "$mb" "$p" "$b" \
        "$(ratio "$b" "$p")" "$(echo "$isize / 1048576" | bc -l)" \
        "$(echo "100 * $isize / $(stat -L -c %s "$trace")" | bc -l)" "$cps"
    len=$(length_s "$trace")
    for at in 0.1 0.5 0.9 peak end; do
        case $at in
            peak|end) point=$at ;;
            *) point="$(echo "$len * $at * 1000 / 1" | bc)ms" ;;
        esac
        with=$(measure "$bin/heapreplay" top -q --at "$point" "$trace")
        mv "$work/out" "$work/with"
        without=$(measure once env HEAPREPLAY_INDEX=off "$bin/heapreplay" top -q --at "$point" "$trace")
        # The same answer either way.
        cmp -s "$work/with" "$work/out" || { echo "top --at $point differs with the index" >&2; exit 1; }
        queries+=$(printf '| %s | %s | %.2f | %.2f | %.0fx |' "$n" "$point" "$without" "$with" "$(ratio "$without" "$with")")$'\n'
    done
done
echo
echo "Point queries (\`top --at POINT\`), seconds: without the index (a pass from the start, stopping at the point) and with it."
echo
echo "| events | point | without | with | speed-up |"
echo "|---:|---:|---:|---:|---:|"
printf '%s' "$queries"
