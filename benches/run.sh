#!/usr/bin/env bash
# Whole-process benchmark: the cost of recording a program with librecord.so,
# next to the same program run plain and under heaptrack, and the speed of
# reading the traces back (heapreplay, heaptrack_print), and the traces at
# rest: their size once compacted (heapreplay compact) against heaptrack's.
#
# Usage: benches/run.sh [--size tiny|small|full] [--keep]
#
#   tiny   one run of each, a few seconds: proves the benchmark works (CI)
#   small  median of 3 runs, about a minute (the default)
#   full   median of 3 runs, tens of millions of events: the real measurement
#   --keep keep the temporary directory (binaries, traces, logs) and print it
#
# Workloads: churn, threads and repeat (benches/workloads/*.c, which count
# their own mallocs and frees; repeat is a deterministic loop), Debian's sqlite3 running workloads/db.sql, python3
# running workloads/interp.py without pymalloc, and redis-server loaded by
# redis-benchmark on 127.0.0.1 (throughput instead of time).
#
# Installs what it needs (gcc, heaptrack, GNU time, sqlite3, python3,
# redis-server, redis-tools) with scripts/install-deps --bench, builds the project in
# release mode and the C workloads, then prints Markdown tables on stdout;
# progress goes to stderr. Exits non-zero as soon as a step fails, or when a
# recorded run prints different malloc/free counts or output from the plain
# run, or its trace does not replay them (or, for the Debian programs, what
# heaptrack counted in its run).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

log() { printf '== %s\n' "$*" >&2; }

die() {
    printf 'benches/run.sh: %s\n' "$*" >&2
    exit 1
}

# ---- arguments -------------------------------------------------------------

size=small
keep=0
while [ $# -gt 0 ]; do
    case $1 in
        --size) [ $# -ge 2 ] || die "--size needs a value"; size=$2; shift 2 ;;
        --size=*) size=${1#*=}; shift ;;
        --keep) keep=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

# runs: runs of each kind per workload (the median is reported).
# churn_n: malloc/free pairs of churn; threads_n: pairs of threads, in total
# over its threads, so that 1 and 8 threads do the same work.
# db_n: rows the sqlite3 script inserts; interp_n: rounds of interp.py;
# server_n: requests of each kind (SET, GET) that redis-benchmark sends;
# cap_rounds: rounds of tests/programs/longrun.c recorded under a disk cap.
case $size in
    tiny) runs=1; churn_n=100000; threads_n=100000; db_n=10000; interp_n=5; server_n=20000; cap_rounds=200 ;;
    small) runs=3; churn_n=1000000; threads_n=1000000; db_n=80000; interp_n=50; server_n=200000; cap_rounds=800 ;;
    full) runs=3; churn_n=20000000; threads_n=10000000; db_n=300000; interp_n=300; server_n=2000000; cap_rounds=3000 ;;
    *) die "unknown size '$size' (tiny, small or full)" ;;
esac

# ---- tools -----------------------------------------------------------------

"$here/../scripts/install-deps" --bench >&2 || die "cannot install what the benchmarks need"
have_print=0
command -v heaptrack_print >/dev/null 2>&1 && have_print=1

if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] || die "cargo not found: install a Rust toolchain first"
    PATH=$HOME/.cargo/bin:$PATH
fi

# ---- build -----------------------------------------------------------------

log "cargo build --release"
(cd "$root" && cargo build --release >&2) || die "cargo build --release failed"
target=${CARGO_TARGET_DIR:-$root/target}
case $target in /*) ;; *) target=$root/$target ;; esac
lib=$target/release/librecord.so
replayer=$target/release/heapreplay
[ -f "$lib" ] || die "no $lib after the build"
[ -x "$replayer" ] || die "no $replayer after the build"

work=$(mktemp -d "${TMPDIR:-/tmp}/heapreplay-bench.XXXXXX")

# The server of the server workload while it runs: its port, and its pid
# once it answered, so that a failing run does not leave it behind.
server_port=
server_pid=

# stop_server: asks the running server to exit without saving; kills it if
# it does not answer.
stop_server() {
    [ -n "$server_port" ] || return 0
    if ! timeout 10 redis-cli -h 127.0.0.1 -p "$server_port" shutdown nosave \
        </dev/null >/dev/null 2>&1; then
        [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
    fi
    server_port=
    server_pid=
}

cleanup() {
    stop_server
    if [ "$keep" = 1 ]; then
        printf 'benches/run.sh: kept %s\n' "$work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

# Like the distributions build their packages: optimised, no frame pointers
# (so stacks can only be unwound through .eh_frame), with debug info.
cflags=(-O2 -g -fomit-frame-pointer -Wall -Wextra)
log "building workloads with gcc ${cflags[*]}"
mkdir -p "$work/bin"
gcc "${cflags[@]}" -o "$work/bin/churn" "$here/workloads/churn.c" ||
    die "cannot build churn.c"
gcc "${cflags[@]}" -pthread -o "$work/bin/threads" "$here/workloads/threads.c" ||
    die "cannot build threads.c"
gcc "${cflags[@]}" -o "$work/bin/repeat" "$here/workloads/repeat.c" ||
    die "cannot build repeat.c"
gcc "${cflags[@]}" -o "$work/bin/longrun" "$root/tests/programs/longrun.c" -ldl ||
    die "cannot build longrun.c"
sed "s/@N@/$db_n/g" "$here/workloads/db.sql" >"$work/db.sql" ||
    die "cannot write $work/db.sql"

# ---- measuring -------------------------------------------------------------

# now: seconds since the epoch, to the microsecond.
now() {
    if [ -n "${EPOCHREALTIME:-}" ]; then
        printf '%s\n' "${EPOCHREALTIME/,/.}"
    else
        date +%s.%N
    fi
}

# median: the middle of the numbers on stdin (the lower middle of an even count).
median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'
}

# show_log FILE: the end of a log, for a failure message.
show_log() {
    [ -s "$1" ] || return 0
    printf -- '--- %s (last lines)\n' "${1#"$work"/}" >&2
    tail -n 20 "$1" >&2
}

# measure [--null] NAME CMD...: runs CMD with its stdout in $run_dir/NAME.out
# (or /dev/null) and its stderr in $run_dir/NAME.err, under /usr/bin/time for
# the peak RSS. Sets $wall (seconds, measured here to the microsecond: time's
# %e has only hundredths) and $rss (KiB). A non-zero exit fails the benchmark.
measure() {
    local null=0
    if [ "$1" = --null ]; then
        null=1
        shift
    fi
    local name=$1
    shift
    local out=$run_dir/$name.out err=$run_dir/$name.err tf=$run_dir/$name.time
    [ "$null" = 0 ] || out=/dev/null
    local t0 t1 status=0
    t0=$(now)
    /usr/bin/time -f '%e %M' -o "$tf" "$@" </dev/null >"$out" 2>"$err" || status=$?
    t1=$(now)
    if [ "$status" != 0 ]; then
        show_log "$out"
        show_log "$err"
        die "$name run failed (exit $status): $*"
    fi
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
    rss=$(tail -n 1 "$tf" | awk '{ print $2 }')
}

# counts NAME: the "mallocs=N frees=M" line that the workload printed.
counts() {
    local line
    line=$(grep -E '^mallocs=[0-9]+ frees=[0-9]+$' "$run_dir/$1.out" | tail -n 1) || true
    [ -n "$line" ] || {
        show_log "$run_dir/$1.out"
        die "$1 run printed no mallocs=N frees=M line"
    }
    printf '%s\n' "$line"
}

# program_output NAME: what the program printed on stdout in run NAME; for
# the heaptrack run, without the lines heaptrack prints before and after it.
program_output() {
    if [ "$1" = heaptrack ]; then
        awk 'NR <= 3 && (/^heaptrack output will be written to / ||
                         /\/libheaptrack_preload\.so$/ ||
                         /^starting application, this might take some time\.\.\.$/) { next }
             /^Heaptrack finished! / { exit }
             { print }' "$run_dir/$1.out"
    else
        cat "$run_dir/$1.out"
    fi
}

# same_output NAME: the stdout of run NAME must be that of the first plain
# run (kept as $run_dir/expected.out).
same_output() {
    local got=$run_dir/$1.got
    program_output "$1" >"$got"
    if [ ! -e "$run_dir/expected.out" ]; then
        [ "$1" = plain ] || die "same_output: no plain run yet"
        [ -s "$got" ] || die "$bench_name: the plain run printed nothing"
        mv "$got" "$run_dir/expected.out"
        return 0
    fi
    if ! cmp -s "$got" "$run_dir/expected.out"; then
        diff "$run_dir/expected.out" "$got" | head -n 20 >&2 || true
        die "$bench_name: the $1 run printed something else than the first plain run" \
            "(above: diff of first plain run and $1 run; $reproduce)"
    fi
    rm -f "$got"
}

# profile_counts FILE: "ALLOCS FREES" from a profile.heap header line
# "heap profile: INUSE_OBJ: INUSE_BYTES [ ALLOCS: ALLOC_BYTES] @ heapprofile".
profile_counts() {
    head -n 1 "$1" | tr -d '[]:' | awk '{ print $5, $5 - $3 }'
}

# heaptrack_counts NAME: "ALLOCS FREES" from the statistics that heaptrack
# printed on the stderr of run NAME ("allocations:", "leaked allocations:").
heaptrack_counts() {
    awk '$1 == "allocations:" { a = $2 } $1 == "leaked" && $2 == "allocations:" { l = $3 }
         END { if (a != "" && l != "") print a, a - l }' "$run_dir/$1.err"
}

# Events that libc may add to a workload's own in a trace (stdio buffers,
# thread set-up); more means the recorder recorded what it should not have.
# Also how far the trace's counts may be from heaptrack's for the programs
# that do not count their own (a few allocations differ between two runs).
max_extra=1000

# read_back NAME: times heapreplay on $trace and heaptrack_print on $ht_file
# ($runs times each); sets $rp and $pp (median seconds; $pp empty without
# heaptrack_print) and $rec_allocs, $rec_frees (what the trace replays to).
read_back() {
    local name=$1 replay_t=() print_t=() profiles last i
    for ((i = 1; i <= runs; i++)); do
        log "$name: replay $i of $runs"
        rm -rf "$run_dir/profiles"
        mkdir "$run_dir/profiles"
        measure replay "$replayer" --interval 10MB -o "$run_dir/profiles/p" "$trace"
        replay_t+=("$wall")
        if [ "$have_print" = 1 ]; then
            measure --null heaptrack_print heaptrack_print "$ht_file"
            print_t+=("$wall")
        fi
    done
    # The last profile (at exit) counts every allocation and free the trace
    # holds, as `heapreplay -o PREFIX TRACE` writes it alone.
    profiles=("$run_dir"/profiles/p.*.heap)
    last=$(printf '%s\n' "${profiles[@]}" | sort -V | tail -n 1)
    [ -f "$last" ] || die "$name: heapreplay wrote no profile"
    read -r rec_allocs rec_frees < <(profile_counts "$last")
    # The trace at rest: compacted, then replayed to the same profiles.
    local compact_t=() cold_t=()
    compacted=$run_dir/compacted.zst
    for ((i = 1; i <= runs; i++)); do
        log "$name: compaction $i of $runs"
        measure compact "$replayer" compact -q -o "$compacted" "$trace"
        compact_t+=("$wall")
        rm -rf "$run_dir/cold"
        mkdir "$run_dir/cold"
        measure replay_cold "$replayer" --interval 10MB -o "$run_dir/cold/p" "$compacted"
        cold_t+=("$wall")
    done
    (cd "$run_dir/profiles" && ls) >"$run_dir/hot.list"
    (cd "$run_dir/cold" && ls) >"$run_dir/cold.list"
    cmp -s "$run_dir/hot.list" "$run_dir/cold.list" ||
        die "$name: the compacted trace replays to other files than the trace ($run_dir)"
    while read -r f; do
        cmp -s "$run_dir/profiles/$f" "$run_dir/cold/$f" ||
            die "$name: the compacted trace's $f differs from the trace's ($run_dir)"
    done <"$run_dir/hot.list"
    compacted_size=$(stat -c %s "$compacted")
    rm -rf "$run_dir/profiles" "$run_dir/cold" "$compacted"
    cp=$(printf '%s\n' "${compact_t[@]}" | median)
    rc=$(printf '%s\n' "${cold_t[@]}" | median)
    rp=$(printf '%s\n' "${replay_t[@]}" | median)
    pp=
    [ "$have_print" = 1 ] && pp=$(printf '%s\n' "${print_t[@]}" | median)
    return 0
}

# check_heaptrack NAME [PERCENT]: for a program that does not count its own
# events, what our trace replays must match what heaptrack counted in its
# last run: allocations, and frees, each to within $max_extra, or PERCENT of
# heaptrack's count when that is more.
check_heaptrack() {
    local pct=${2:-0} ht_allocs ht_frees
    read -r ht_allocs ht_frees < <(heaptrack_counts heaptrack) ||
        die "$1: no allocation statistics in heaptrack's output ($run_dir/heaptrack.err)"
    log "$1: trace: $rec_allocs allocations, $rec_frees frees;" \
        "heaptrack (its own run): $ht_allocs, $ht_frees"
    local da=$((rec_allocs - ht_allocs)) df=$((rec_frees - ht_frees))
    local ta=$((ht_allocs * pct / 100)) tf=$((ht_frees * pct / 100))
    [ "$ta" -ge "$max_extra" ] || ta=$max_extra
    [ "$tf" -ge "$max_extra" ] || tf=$max_extra
    if [ "${da#-}" -gt "$ta" ] || [ "${df#-}" -gt "$tf" ]; then
        die "$1: the trace replays $rec_allocs allocations and $rec_frees frees;" \
            "heaptrack counted $ht_allocs and $ht_frees in its run ($reproduce)"
    fi
}

# ht_data NAME: sets $ht_file to the data file heaptrack wrote for this run.
ht_data() {
    # heaptrack adds .zst, or .gz when built without zstd.
    ht_file=$run_dir/ht-data.zst
    [ -s "$ht_file" ] || ht_file=$run_dir/ht-data.gz
    [ -s "$ht_file" ] || die "$1: heaptrack wrote no data file"
}

# bench [--own-counts] [--env NAME=VALUE]... NAME PROGRAM ARGS...: measures
# one workload; appends a row to each table. With --own-counts the program
# prints "mallocs=N frees=M" and those are its events; otherwise its events
# are what our trace replays to, checked against heaptrack's count, and every
# run must print what the first plain run printed. --env sets a variable for
# the program (and for heaptrack, which runs it).
bench() {
    local own=0 envs=()
    while [ $# -gt 0 ]; do
        case $1 in
            --own-counts) own=1; shift ;;
            --env) envs+=("$2"); shift 2 ;;
            *) break ;;
        esac
    done
    local name=$1
    shift
    bench_name=$name
    run_dir=$work/runs/${name// /_}
    mkdir -p "$run_dir"
    trace=$run_dir/trace.zst
    reproduce="reproduce: ${envs[*]:+${envs[*]} }HEAPREPLAY_OUT=/tmp/trace.zst LD_PRELOAD=$lib $*"
    local plain_t=() plain_r=() rec_t=() rec_r=() ht_t=() ht_r=()
    local expect='' rec_counts ht_counts
    local i

    for ((i = 1; i <= runs; i++)); do
        log "$name: run $i of $runs: plain, recorded, heaptrack"

        measure plain env "${envs[@]}" "$@"
        plain_t+=("$wall") plain_r+=("$rss")
        if [ "$own" = 1 ]; then
            expect=$(counts plain)
        else
            same_output plain
        fi

        rm -f "$trace"
        measure recorded env "${envs[@]}" HEAPREPLAY_OUT="$trace" LD_PRELOAD="$lib" "$@"
        rec_t+=("$wall") rec_r+=("$rss")
        if [ "$own" = 1 ]; then
            rec_counts=$(counts recorded)
            if [ "$rec_counts" != "$expect" ]; then
                die "$name: the recorded run printed '$rec_counts', the plain run '$expect'" \
                    "($reproduce)"
            fi
        else
            same_output recorded
        fi
        [ -s "$trace" ] || {
            show_log "$run_dir/recorded.err"
            die "$name: the recorded run wrote no trace at $trace"
        }

        rm -f "$run_dir"/ht-data.*
        measure heaptrack env "${envs[@]}" heaptrack -o "$run_dir/ht-data" "$@"
        ht_t+=("$wall") ht_r+=("$rss")
        if [ "$own" = 1 ]; then
            ht_counts=$(counts heaptrack)
            [ "$ht_counts" = "$expect" ] ||
                die "$name: the run under heaptrack printed '$ht_counts', the plain run '$expect'"
        else
            same_output heaptrack
        fi
        ht_data "$name"
    done

    # Reading back: heapreplay on the last trace, heaptrack_print on the
    # last heaptrack file.
    read_back "$name"

    local mallocs frees events
    if [ "$own" = 1 ]; then
        # The program's own counts are the events: one per malloc, one per free.
        mallocs=$(sed -E 's/^mallocs=([0-9]+) .*/\1/' <<<"$expect")
        frees=$(sed -E 's/.* frees=([0-9]+)$/\1/' <<<"$expect")
        events=$((mallocs + frees))
        # The trace must hold at least the program's own events, plus a
        # few made by libc for it.
        if [ "$rec_allocs" -lt "$mallocs" ] || [ "$rec_frees" -lt "$frees" ] ||
            [ $((rec_allocs + rec_frees - events)) -gt "$max_extra" ]; then
            die "$name: the trace replays $rec_allocs allocations and $rec_frees frees;" \
                "the program made $mallocs and $frees (and libc at most $max_extra more events)" \
                "($reproduce && $replayer --interval 10MB /tmp/trace.zst)"
        fi
    else
        check_heaptrack "$name"
        events=$((rec_allocs + rec_frees))
    fi

    # Medians, then the rows.
    local p r h pr rr our_size ht_size
    p=$(printf '%s\n' "${plain_t[@]}" | median)
    r=$(printf '%s\n' "${rec_t[@]}" | median)
    h=$(printf '%s\n' "${ht_t[@]}" | median)
    pr=$(printf '%s\n' "${plain_r[@]}" | median)
    rr=$(printf '%s\n' "${rec_r[@]}" | median)
    our_size=$(stat -c %s "$trace")
    ht_size=$(stat -c %s "$ht_file")

    rows+=("$(awk -v n="$name" -v e="$events" -v p="$p" -v r="$r" -v h="$h" \
        -v os="$our_size" -v hs="$ht_size" -v pr="$pr" -v rr="$rr" '
        function ratio(a, b) { return b > 0 ? sprintf("%.1fx", a / b) : "-" }
        BEGIN {
            printf "| %s | %d | %.3f | %.3f | %s | %.3f | %s | %.2f | %.2f | %.1f MiB | %.1f MiB |",
                n, e, p, r, ratio(r, p), h, ratio(h, p), os / e, hs / e, pr / 1024, rr / 1024
        }')")
    replay_row "$name" "$events"
    rm -f "$trace" "$ht_file"
}

# rest_row NAME EVENTS: appends the row of the traces-at-rest table.
rest_row() {
    rest_rows+=("$(awk -v n="$1" -v e="$2" -v t="$((rec_allocs + rec_frees))" \
        -v os="$(stat -c %s "$trace")" -v cs="$compacted_size" -v hs="$(stat -c %s "$ht_file")" \
        -v cp="$cp" -v rp="$rp" -v rc="$rc" '
        function rate(s) { return s > 0 ? sprintf("%.2fM", t / s / 1e6) : "-" }
        BEGIN {
            printf "| %s | %d | %.3f | %.3f | %.3f | %.2fx | %.3f | %s | %.2fx |",
                n, t, os / t, cs / t, hs / t, cs / hs, cp, rate(cp), rc / rp
        }')")
}

# replay_row NAME EVENTS: appends the row of the reading-back table.
replay_row() {
    rest_row "$@"
    replay_rows+=("$(awk -v n="$1" -v e="$2" -v t="$((rec_allocs + rec_frees))" \
        -v rp="$rp" -v pp="$pp" '
        function rate(s) { return s > 0 ? sprintf("%.2fM", e / s / 1e6) : "-" }
        BEGIN {
            printf "| %s | %d | %d | %.3f | %s | ", n, e, t, rp, rate(rp)
            if (pp == "") printf "- | - |"
            else printf "%.3f | %s |", pp, rate(pp)
        }')")
}

# ---- the server --------------------------------------------------------------

# free_port: a TCP port on 127.0.0.1 that nothing was bound to just now.
free_port() {
    /usr/bin/python3 -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# serve NAME CMD...: starts redis-server as CMD... (redis-server, possibly
# behind env or heaptrack) in the background under /usr/bin/time, on
# 127.0.0.1 at a free port, with no persistence; loads it with
# redis-benchmark ($server_n SETs then $server_n GETs, 16 pipelined per
# request, only to that port); shuts it down and waits for it to exit. Its
# stdout and stderr go to $run_dir/NAME.out and .err, redis-benchmark's
# output to NAME.bench. Sets $rps (requests per second over the SETs and
# GETs together) and $rss (the server's peak RSS, KiB).
serve() {
    local name=$1
    shift
    local out=$run_dir/$name.out err=$run_dir/$name.err tf=$run_dir/$name.time
    local load=$run_dir/$name.bench pid port status=0 i
    port=$(free_port) || die "$name: cannot find a free port"
    /usr/bin/time -f '%e %M' -o "$tf" "$@" --bind 127.0.0.1 --port "$port" \
        --save '' --appendonly no --dir "$run_dir" </dev/null >"$out" 2>"$err" &
    pid=$!
    server_port=$port

    # It has 30 s to answer (heaptrack starts slowly on a busy machine).
    for ((i = 0; i < 300; i++)); do
        if redis-cli -h 127.0.0.1 -p "$port" ping </dev/null 2>/dev/null | grep -q PONG; then
            break
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" || status=$?
            server_port=
            show_log "$out"
            show_log "$err"
            die "$bench_name: the $name server exited (status $status) before answering: $*"
        fi
        sleep 0.1
    done
    [ "$i" -lt 300 ] || die "$bench_name: the $name server did not answer within 30 s: $*"
    server_pid=$(redis-cli -h 127.0.0.1 -p "$port" info server </dev/null 2>/dev/null |
        tr -d '\r' | sed -n 's/^process_id://p')

    timeout 600 redis-benchmark -h 127.0.0.1 -p "$port" -n "$server_n" -P 16 -t set,get -q \
        </dev/null >"$load" 2>&1 || {
        show_log "$load"
        die "$bench_name: redis-benchmark failed against the $name server"
    }
    stop_server

    # Then it has 120 s to exit: heaptrack interprets its data first.
    for ((i = 0; i < 1200; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        die "$bench_name: the $name server did not exit within 120 s of 'shutdown nosave'"
    fi
    wait "$pid" || status=$?
    if [ "$status" != 0 ]; then
        show_log "$out"
        show_log "$err"
        die "$bench_name: the $name server exited with status $status: $*"
    fi

    # "SET: 523560.22 requests per second, p50=1.263 msec" (progress lines
    # before it end in carriage returns).
    rps=$(tr '\r' '\n' <"$load" | awk '
        $1 == "SET:" && $3 == "requests" { s = $2 }
        $1 == "GET:" && $3 == "requests" { g = $2 }
        END { if (s > 0 && g > 0) printf "%.0f", 2 / (1 / s + 1 / g) }')
    [ -n "$rps" ] || {
        show_log "$load"
        die "$bench_name: no SET and GET throughput in redis-benchmark's output ($load)"
    }
    rss=$(tail -n 1 "$tf" | awk '{ print $2 }')
}

# bench_server NAME: the server workload; appends a row to the server table
# and to the reading-back table. Its events are what our trace replays to.
bench_server() {
    local name=$1
    bench_name=$name
    run_dir=$work/runs/${name// /_}
    mkdir -p "$run_dir"
    trace=$run_dir/trace.zst
    reproduce="reproduce: HEAPREPLAY_OUT=/tmp/trace.zst LD_PRELOAD=$lib redis-server --port PORT --save '' --appendonly no"
    local plain_q=() plain_r=() rec_q=() rec_r=() ht_q=() i

    for ((i = 1; i <= runs; i++)); do
        log "$name: run $i of $runs: plain, recorded, heaptrack"
        serve plain redis-server
        plain_q+=("$rps") plain_r+=("$rss")

        rm -f "$trace"
        serve recorded env HEAPREPLAY_OUT="$trace" LD_PRELOAD="$lib" redis-server
        rec_q+=("$rps") rec_r+=("$rss")
        [ -s "$trace" ] || {
            show_log "$run_dir/recorded.err"
            die "$name: the recorded server wrote no trace at $trace"
        }

        rm -f "$run_dir"/ht-data.*
        serve heaptrack heaptrack -o "$run_dir/ht-data" redis-server
        ht_q+=("$rps")
        ht_data "$name"
    done

    read_back "$name"
    # Two runs of a server need not allocate exactly alike (how requests
    # arrive could decide how many reads there are): 5% may differ.
    check_heaptrack "$name" 5
    local events=$((rec_allocs + rec_frees))

    local p r h pr rr our_size ht_size
    p=$(printf '%s\n' "${plain_q[@]}" | median)
    r=$(printf '%s\n' "${rec_q[@]}" | median)
    h=$(printf '%s\n' "${ht_q[@]}" | median)
    pr=$(printf '%s\n' "${plain_r[@]}" | median)
    rr=$(printf '%s\n' "${rec_r[@]}" | median)
    our_size=$(stat -c %s "$trace")
    ht_size=$(stat -c %s "$ht_file")

    server_rows+=("$(awk -v n="$name" -v e="$events" -v q="$((2 * server_n))" \
        -v p="$p" -v r="$r" -v h="$h" \
        -v os="$our_size" -v hs="$ht_size" -v pr="$pr" -v rr="$rr" '
        function pct(a, b) { return b > 0 ? sprintf("%.0f%%", 100 * a / b) : "-" }
        BEGIN {
            printf "| %s | %d | %d | %.0f | %.0f | %s | %.0f | %s | %.2f | %.2f | %.1f MiB | %.1f MiB |",
                n, q, e, p, r, pct(r, p), h, pct(h, p), os / e, hs / e, pr / 1024, rr / 1024
        }')")
    replay_row "$name" "$events"
    rm -f "$trace" "$ht_file"
}

# bench_cap: a paced service (tests/programs/longrun.c: $cap_rounds rounds
# of 4000 blocks, 12 ms apart) recorded plainly and with `heapreplay keep
# --max-size 1MB` beside it, $runs times each, alternating. Sets $cap_row:
# the program's own CPU time (the recorder's included, the keeper's not) and
# wall time under the cap over without, the most disk the trace took (sampled
# every 20 ms) over the cap, what the run wrote over the cap, and the
# keeper's CPU time over the program's; dies if `top --at end` differs.
bench_cap() {
    local cap=$((1 << 20)) i t most written keeper sampler
    local free_cpu=() kept_cpu=() free_wall=() kept_wall=() keeper_cpu=()
    run_dir=$work/cap
    mkdir -p "$run_dir"
    for ((i = 1; i <= runs; i++)); do
        log "disk cap: run $i of $runs"
        rm -f "$run_dir"/*.zst*
        cap_run free "$run_dir/free.zst"
        free_cpu+=("$cpu_s")
        free_wall+=("$wall_s")
        /usr/bin/time -f '%U %S' -o "$run_dir/keeper.time" \
            "$replayer" keep --max-size 1MB "$run_dir/kept.zst" 2>"$run_dir/keeper.err" &
        keeper=$!
        (while kill -0 "$keeper" 2>/dev/null; do
            stat -c %b "$run_dir/kept.zst" 2>/dev/null || true
            sleep 0.02
        done) >>"$run_dir/disk.log" &
        sampler=$!
        cap_run kept "$run_dir/kept.zst"
        wait "$keeper" || die "cap: heapreplay keep failed: $(cat "$run_dir/keeper.err")"
        wait "$sampler" || true
        kept_cpu+=("$cpu_s")
        kept_wall+=("$wall_s")
        keeper_cpu+=("$(tail -n 1 "$run_dir/keeper.time" | awk '{ print $1 + $2 }')")
        for t in free kept; do
            "$replayer" top "$run_dir/$t.zst" --at end | tail -n +2 >"$run_dir/$t.top" ||
                die "cap: top of the $t trace failed"
        done
        cmp -s "$run_dir/free.top" "$run_dir/kept.top" ||
            die "cap: the capped trace's top at the end differs from the uncapped one's ($run_dir)"
    done
    most=$(sort -n "$run_dir/disk.log" | tail -n 1)
    written=$(stat -c %s "$run_dir/kept.zst")
    cap_row=$(awk -v fc="$(printf '%s\n' "${free_cpu[@]}" | median)" -v kc="$(printf '%s\n' "${kept_cpu[@]}" | median)" \
        -v fw="$(printf '%s\n' "${free_wall[@]}" | median)" -v kw="$(printf '%s\n' "${kept_wall[@]}" | median)" \
        -v kp="$(printf '%s\n' "${keeper_cpu[@]}" | median)" -v most="$most" -v w="$written" -v cap="$cap" \
        -v r="$cap_rounds" 'BEGIN {
        printf "| longrun %d rounds | %.2f | %.2f | %.2fx | %.2fx | %.2f | %.1fx | %.2f |", \
            r, fc, kc, kc / fc, kw / fw, most * 512 / cap, w / cap, kp / kc
    }')
}

# cap_run NAME TRACE: longrun recorded into TRACE; sets $wall_s and $cpu_s
# (user + system seconds of the program).
cap_run() {
    /usr/bin/time -f '%e %U %S' -o "$run_dir/$1.time" \
        env LD_PRELOAD="$lib" HEAPREPLAY_OUT="$2" "$work/bin/longrun" "$cap_rounds" 12000 \
        >"$run_dir/$1.out" 2>"$run_dir/$1.err" || die "cap: the $1 run failed"
    read -r wall_s cpu_s < <(tail -n 1 "$run_dir/$1.time" | awk '{ print $1, $2 + $3 }')
}

# ---- the workloads -----------------------------------------------------------

rows=()
replay_rows=()
rest_rows=()
server_rows=()
bench --own-counts "churn" "$work/bin/churn" "$churn_n"
bench --own-counts "threads T=1" "$work/bin/threads" "$threads_n" 1
bench --own-counts "threads T=8" "$work/bin/threads" "$threads_n" 8
bench --own-counts "repeat" "$work/bin/repeat" "$churn_n"
bench "sqlite3 N=$db_n" /usr/bin/sqlite3 -batch :memory: ".read $work/db.sql"
bench --env PYTHONMALLOC=malloc --env PYTHONHASHSEED=0 --env PYTHONDONTWRITEBYTECODE=1 \
    "python3 interp.py $interp_n" /usr/bin/python3 -s "$here/workloads/interp.py" "$interp_n"
bench_server "redis-server"
bench_cap

# ---- report ----------------------------------------------------------------

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
ht_version=$(heaptrack --version 2>/dev/null | head -n 1 || true)
sqlite_version=$(sqlite3 --version 2>/dev/null | awk '{ print $1 }' || true)
python_version=$(/usr/bin/python3 --version 2>/dev/null | awk '{ print $2 }' || true)
redis_version=$(redis-server --version 2>/dev/null | sed -n 's/.* v=\([^ ]*\).*/\1/p' || true)

cat <<EOF

## heapreplay whole-process benchmark (size $size)

$(nproc) CPUs${cpu:+ ($cpu)}, ${ht_version:-heaptrack}; median of $runs run(s) each.
Debian's sqlite3 ${sqlite_version:-?}, python3 ${python_version:-?}, redis-server ${redis_version:-?}.
Times are wall seconds. Events are allocations + frees: for churn and
threads the program's own count, for the others what our trace replays to
(checked against heaptrack's count in its own run).

| workload | events | plain s | recorded s | recorded/plain | heaptrack s | heaptrack/plain | our bytes/event | heaptrack bytes/event | plain peak RSS | recorded peak RSS |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
printf '%s\n' "${rows[@]}"
cat <<EOF

A server under load: redis-server on 127.0.0.1, loaded by
\`redis-benchmark -n $server_n -P 16 -t set,get\` ($server_n SETs, then as many
GETs). Throughput is requests per second over both; events are what our
trace of the recorded server replays to.

| workload | requests | events | plain req/s | recorded req/s | recorded % of plain | heaptrack req/s | heaptrack % of plain | our bytes/event | heaptrack bytes/event | plain peak RSS | recorded peak RSS |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
printf '%s\n' "${server_rows[@]}"
cat <<EOF

Reading the traces back: \`heapreplay --interval 10MB\` on our trace,
\`heaptrack_print FILE > /dev/null\` on heaptrack's file; events/s counts the
workload's events. "trace events" is what the last replayed profile counts
(allocations + frees): for churn and threads, the program's own plus libc's.

| workload | events | trace events | heapreplay s | heapreplay events/s | heaptrack_print s | heaptrack_print events/s |
|---|---:|---:|---:|---:|---:|---:|
EOF
printf '%s\n' "${replay_rows[@]}"
cat <<EOF

Traces at rest: \`heapreplay compact\` rewrites each trace; its replay
(\`--interval 10MB\`) wrote the same files, byte for byte, as the trace's
(checked). Bytes per event here count the trace's own events (the
workload's plus libc's). "compacted/heaptrack" is the compacted trace's
size over heaptrack's file; "compaction events/s" is over the whole
command; "replay compacted/hot" is the replay's time on the compacted
trace over its time on the trace.

| workload | trace events | trace bytes/event | compacted bytes/event | heaptrack bytes/event | compacted/heaptrack | compaction s | compaction events/s | replay compacted/hot |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
printf '%s\n' "${rest_rows[@]}"
cat <<EOF

A disk cap: a paced service (tests/programs/longrun.c, 12 ms between
rounds) recorded under LD_PRELOAD, then again with \`heapreplay keep
--max-size 1MB\` beside it (median of $runs each, alternating). CPU is the
program's own (the recorder's writer thread included, the keeper's not);
"most on disk/cap" is the largest size on disk, sampled every 20 ms;
"written/cap" is the trace's length (all it wrote) over the cap; "keeper
CPU/program CPU" is what folding costs beside the program. \`top --at end\`
of both traces is the same (checked).

| workload | program CPU s | capped CPU s | capped/uncapped CPU | capped/uncapped wall | most on disk/cap | written/cap | keeper CPU/program CPU |
|---|---:|---:|---:|---:|---:|---:|---:|
$cap_row
EOF
