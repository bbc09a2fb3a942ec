#!/usr/bin/env bash
# Soak test, outside the default test run: for MINUTES (default 5), hammer
# recorded multi-threaded programs with forks, marker signals and SIGKILL at
# random moments, and check that nothing hangs, every program behaves as
# without the recorder, and every trace replays (a trace killed mid-write may
# only lose its last record).
#
#   tests/soak.sh [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-5}
cargo build --release --workspace -q
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -O2 -g -pthread tests/programs/forker.c -o "$work/forker"
gcc -O2 -g -pthread tests/programs/threads.c -o "$work/threads"
lib=$PWD/target/release/librecord.so
replay=$PWD/target/release/heapreplay
deadline=$(( $(date +%s) + minutes * 60 ))
rounds=0
check_traces() {
    for t in "$work"/t.*.zst; do
        [ -e "$t" ] || continue
        rc=0
        "$replay" -q -o "$work/p" "$t" 2>"$work/replay.err" || rc=$?
        if [ "$rc" != 0 ] && ! { [ "$rc" = 3 ] && grep -q "truncated" "$work/replay.err" && ! grep -v "truncated\|replayed" "$work/replay.err" | grep -q .; }; then
            echo "soak: $t does not replay (exit $rc):" >&2
            cat "$work/replay.err" >&2
            exit 1
        fi
        rm -f "$t" "$work"/p.*.heap
    done
}
while [ "$(date +%s)" -lt "$deadline" ]; do
    rounds=$((rounds + 1))
    # Forks while threads allocate: must finish, and exactly as without us.
    out=$(cd "$work" && timeout 60 env LD_PRELOAD="$lib" HEAPREPLAY_OUT="$work/t.%p.zst" ./forker 10 2>/dev/null) \
        || { echo "soak: forker failed or hung in round $rounds" >&2; exit 1; }
    case "$out" in parent*) ;; *) echo "soak: forker printed '$out'" >&2; exit 1 ;; esac
    check_traces
    # Eight threads, marker signals, then SIGKILL at a random moment.
    env LD_PRELOAD="$lib" HEAPREPLAY_OUT="$work/t.%p.zst" "$work/threads" 8 2000000 >/dev/null 2>&1 &
    pid=$!
    for _ in 1 2 3; do
        sleep "0.$((RANDOM % 3))$((RANDOM % 10))"
        kill -USR2 "$pid" 2>/dev/null || true
    done
    sleep "0.$((RANDOM % 10))"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    check_traces
done
echo "soak: $rounds rounds in $minutes minutes: no hang, every trace replayed"
