#!/usr/bin/env bash
# A/B: two builds of heapreplay side by side, for changes that must not change
# what a user sees (a restructuring, a refactor). Each workload is recorded
# alternately with the two builds' librecord.so; every trace is then replayed
# by both builds' heapreplay, in every output, and the outputs must be
# byte-identical. Prints the median time ratios (B / A) of recording and of
# replay, and peak RSS of the replays.
#
# Usage: benches/ab.sh A_DIR [B_DIR] [--runs N]
#
#   A_DIR, B_DIR  folders holding heapreplay, librecord.so and
#                 heapreplay-synth (B_DIR defaults to target/release after
#                 `cargo build --release`)
#   --runs N      runs of each timing (default 5; the median is reported)
#
# Make A_DIR from an older commit, for example:
#   git worktree add /tmp/a REV && (cd /tmp/a && cargo build --release) &&
#   mkdir /tmp/A && cp /tmp/a/target/release/{heapreplay,librecord.so,heapreplay-synth} /tmp/A
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
die() { printf 'benches/ab.sh: %s\n' "$*" >&2; exit 1; }
log() { printf '== %s\n' "$*" >&2; }

a= b= runs=5
while [ $# -gt 0 ]; do
    case $1 in
        --runs) runs=$2; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) if [ -z "$a" ]; then a=$1; elif [ -z "$b" ]; then b=$1; else die "too many arguments"; fi; shift ;;
    esac
done
[ -n "$a" ] || die "usage: benches/ab.sh A_DIR [B_DIR] [--runs N]"
if [ -z "$b" ]; then
    (cd "$root" && cargo build --release -q >&2) || die "cargo build --release failed"
    b=${CARGO_TARGET_DIR:-$root/target}/release
fi
a=$(cd "$a" && pwd); b=$(cd "$b" && pwd)
for d in "$a" "$b"; do
    for f in heapreplay librecord.so heapreplay-synth; do [ -f "$d/$f" ] || die "no $d/$f"; done
done
"$root/scripts/install-deps" --bench >&2 || die "cannot install what the benchmarks need"

work=$(mktemp -d "${TMPDIR:-/tmp}/heapreplay-ab.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"
cflags=(-O2 -g -fomit-frame-pointer)
gcc "${cflags[@]}" -o "$work/bin/churn" "$here/workloads/churn.c"
gcc "${cflags[@]}" -pthread -o "$work/bin/threads" "$here/workloads/threads.c"
sed "s/@N@/40000/g" "$here/workloads/db.sql" >"$work/db.sql"

now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }
ratio() { echo "scale=3; $1 / $2" | bc -l | sed 's/^\./0./'; }

# A workload: its name and command (env assignments first, through env).
workloads=(
    "churn|$work/bin/churn 2000000"
    "threads|$work/bin/threads 2000000 4"
    "sqlite3|/usr/bin/sqlite3 -batch :memory: '.read $work/db.sql'"
    "python3|env PYTHONMALLOC=malloc PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 -s $here/workloads/interp.py 30"
)

# ---- recording --------------------------------------------------------------
echo "| workload | record B/A (median of $runs) | replay B/A (median of $runs) | replay RSS B/A | outputs |"
echo "|---|---:|---:|---:|---|"
for w in "${workloads[@]}"; do
    name=${w%%|*}; cmd=${w#*|}
    log "$name: recording with A and B, alternately"
    ta=() tb=()
    for ((i = 0; i < runs; i++)); do
        for side in a b; do
            dir=$a; [ "$side" = b ] && dir=$b
            s=$(now)
            eval "env HEAPREPLAY_OUT='$work/$name.$side.zst' LD_PRELOAD='$dir/librecord.so' $cmd" >/dev/null 2>"$work/err" ||
                { cat "$work/err" >&2; die "$name failed under $side"; }
            e=$(now)
            t=$(echo "$e - $s" | bc -l)
            if [ "$side" = a ]; then ta+=("$t"); else tb+=("$t"); fi
        done
    done
    rec=$(ratio "$(printf '%s\n' "${tb[@]}" | median)" "$(printf '%s\n' "${ta[@]}" | median)")

    # ---- the same trace through both replayers, every output ----------------
    diffs=0
    for side in a b; do
        dir=$a; [ "$side" = b ] && dir=$b
        hr=$dir/heapreplay
        out=$work/out.$side; rm -rf "$out"; mkdir -p "$out"
        for tr in a b; do
            t=$work/$name.$tr.zst
            "$hr" -q --interval 4MB --at-peak -o "$out/$tr.h" "$t"
            "$hr" -q --interval 16MB --format pprof -o "$out/$tr.p" "$t"
            "$hr" -q --at-peak --format flamegraph -o "$out/$tr.f" "$t"
            "$hr" info "$t" >"$out/$tr.info" 2>&1
            "$hr" top "$t" >"$out/$tr.top" 2>&1
            "$hr" leaks "$t" >"$out/$tr.leaks" 2>&1
            "$hr" top --at peak "$t" >"$out/$tr.top-peak" 2>&1
            "$hr" diff --from peak --to end "$t" >"$out/$tr.diff" 2>&1
            "$hr" diff --from peak --format flamegraph -o "$out/$tr.diff.svg" "$t" >/dev/null 2>&1
            "$hr" timeline -o "$out/$tr.timeline.svg" "$t" >/dev/null 2>&1
            "$hr" timeline -o "$out/$tr.timeline.png" "$t" >/dev/null 2>&1
            "$hr" export --parquet -o "$out/$tr.parquet" "$t" >/dev/null 2>&1
        done
        # Paths inside the outputs name the side's folder (flame graph
        # titles, messages): take them out.
        find "$out" -type f \( -name '*.info' -o -name '*.top' -o -name '*.leaks' -o -name '*.diff' -o -name '*.top-peak' -o -name '*.svg' \) \
            -exec sed -i "s#$out#OUT#g; s#$dir#BIN#g" {} +
    done
    if ! diff -r "$work/out.a" "$work/out.b" >"$work/outputs.diff"; then
        diffs=$(grep -c '^\(Files\|Only\|diff\)' "$work/outputs.diff" || true)
        head -20 "$work/outputs.diff" >&2
    fi
    files=$(find "$work/out.a" -type f | wc -l)

    log "$name: replaying with A and B, alternately"
    ra=() rb=() ma=() mb=()
    for ((i = 0; i < runs; i++)); do
        for side in a b; do
            dir=$a; [ "$side" = b ] && dir=$b
            s=$(now)
            /usr/bin/time -f '%M' -o "$work/rss" "$dir/heapreplay" -q --interval 1MB -o "$work/r.$side" "$work/$name.a.zst"
            e=$(now)
            t=$(echo "$e - $s" | bc -l)
            if [ "$side" = a ]; then ra+=("$t"); ma+=("$(cat "$work/rss")"); else rb+=("$t"); mb+=("$(cat "$work/rss")"); fi
        done
    done
    rep=$(ratio "$(printf '%s\n' "${rb[@]}" | median)" "$(printf '%s\n' "${ra[@]}" | median)")
    rss=$(ratio "$(printf '%s\n' "${mb[@]}" | median)" "$(printf '%s\n' "${ma[@]}" | median)")
    if [ "$diffs" = 0 ]; then verdict="$files files identical"; else verdict="**$diffs differ**"; fi
    echo "| $name | $rec | $rep | $rss | $verdict |"
    [ "$diffs" = 0 ] || status=1
done
exit "${status:-0}"
