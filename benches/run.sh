#!/usr/bin/env bash
# Whole-process benchmark: the cost of recording a program with librecord.so,
# next to the same program run plain and under heaptrack, and the speed of
# reading the traces back (heapreplay, heaptrack_print).
#
# Usage: benches/run.sh [--size tiny|small|full] [--keep]
#
#   tiny   one run of each, a few seconds: proves the benchmark works (CI)
#   small  median of 3 runs, about a minute (the default)
#   full   median of 3 runs, tens of millions of events: the real measurement
#   --keep keep the temporary directory (binaries, traces, logs) and print it
#
# Installs what it needs (gcc, heaptrack, GNU time) with apt-get when missing,
# builds the project in release mode and the workloads in benches/workloads/,
# then prints Markdown tables on stdout; progress goes to stderr. Exits
# non-zero as soon as a step fails, or when a recorded run prints different
# malloc/free counts from the plain run or its trace does not replay them.
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
case $size in
    tiny) runs=1; churn_n=100000; threads_n=100000 ;;
    small) runs=3; churn_n=1000000; threads_n=1000000 ;;
    full) runs=3; churn_n=20000000; threads_n=10000000 ;;
    *) die "unknown size '$size' (tiny, small or full)" ;;
esac

# ---- tools -----------------------------------------------------------------

sudo=
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "not root and no sudo: cannot install packages"
    sudo=sudo
fi

apt_updated=0
# need COMMAND PACKAGE: installs PACKAGE unless COMMAND is there already.
need() {
    local cmd=$1 pkg=$2
    if [ -x "$cmd" ] || command -v "$cmd" >/dev/null 2>&1; then
        return 0
    fi
    command -v apt-get >/dev/null || die "$cmd is missing and there is no apt-get to install $pkg"
    log "installing $pkg"
    if [ "$apt_updated" = 0 ]; then
        $sudo apt-get update -qq >&2 || die "apt-get update failed"
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$pkg" >&2 ||
        die "cannot install $pkg"
    [ -x "$cmd" ] || command -v "$cmd" >/dev/null 2>&1 || die "$pkg installed, but still no $cmd"
}

need gcc gcc
need heaptrack heaptrack
need /usr/bin/time time
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
cleanup() {
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
    /usr/bin/time -f '%e %M' -o "$tf" "$@" >"$out" 2>"$err" || status=$?
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

# profile_counts FILE: "ALLOCS FREES" from a profile.heap header line
# "heap profile: INUSE_OBJ: INUSE_BYTES [ ALLOCS: ALLOC_BYTES] @ heapprofile".
profile_counts() {
    head -n 1 "$1" | tr -d '[]:' | awk '{ print $5, $5 - $3 }'
}

# Events that libc may add to a workload's own in a trace (stdio buffers,
# thread set-up); more means the recorder recorded what it should not have.
max_extra=1000

# bench NAME PROGRAM ARGS...: measures one workload; appends a row to each table.
bench() {
    local name=$1
    shift
    run_dir=$work/runs/${name// /_}
    mkdir -p "$run_dir"
    local trace=$run_dir/trace.zst
    local plain_t=() plain_r=() rec_t=() rec_r=() ht_t=() ht_r=()
    local expect rec_counts ht_counts ht_file=
    local i

    for ((i = 1; i <= runs; i++)); do
        log "$name: run $i of $runs: plain, recorded, heaptrack"

        measure plain env "$@"
        plain_t+=("$wall") plain_r+=("$rss")
        expect=$(counts plain)

        rm -f "$trace"
        measure recorded env HEAPREPLAY_OUT="$trace" LD_PRELOAD="$lib" "$@"
        rec_t+=("$wall") rec_r+=("$rss")
        rec_counts=$(counts recorded)
        if [ "$rec_counts" != "$expect" ]; then
            die "$name: the recorded run printed '$rec_counts', the plain run '$expect'" \
                "(reproduce: HEAPREPLAY_OUT=/tmp/trace.zst LD_PRELOAD=$lib $*)"
        fi
        [ -s "$trace" ] || {
            show_log "$run_dir/recorded.err"
            die "$name: the recorded run wrote no trace at $trace"
        }

        rm -f "$run_dir"/ht-data.*
        measure heaptrack heaptrack -o "$run_dir/ht-data" "$@"
        ht_t+=("$wall") ht_r+=("$rss")
        ht_counts=$(counts heaptrack)
        [ "$ht_counts" = "$expect" ] ||
            die "$name: the run under heaptrack printed '$ht_counts', the plain run '$expect'"
        # heaptrack adds .zst, or .gz when built without zstd.
        ht_file=$run_dir/ht-data.zst
        [ -s "$ht_file" ] || ht_file=$run_dir/ht-data.gz
        [ -s "$ht_file" ] || die "$name: heaptrack wrote no data file"
    done

    # The program's own counts are the events: one per malloc, one per free.
    local mallocs frees events
    mallocs=$(sed -E 's/^mallocs=([0-9]+) .*/\1/' <<<"$expect")
    frees=$(sed -E 's/.* frees=([0-9]+)$/\1/' <<<"$expect")
    events=$((mallocs + frees))

    # Reading back: heapreplay on the last trace, heaptrack_print on the
    # last heaptrack file.
    local replay_t=() print_t=() profiles last rec_allocs rec_frees
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
    # holds: at least the program's own, plus a few made by libc for it.
    profiles=("$run_dir"/profiles/p.*.heap)
    last=$(printf '%s\n' "${profiles[@]}" | sort -V | tail -n 1)
    [ -f "$last" ] || die "$name: heapreplay wrote no profile"
    read -r rec_allocs rec_frees < <(profile_counts "$last")
    if [ "$rec_allocs" -lt "$mallocs" ] || [ "$rec_frees" -lt "$frees" ] ||
        [ $((rec_allocs + rec_frees - events)) -gt "$max_extra" ]; then
        die "$name: the trace replays $rec_allocs allocations and $rec_frees frees;" \
            "the program made $mallocs and $frees (and libc at most $max_extra more events)" \
            "(reproduce: HEAPREPLAY_OUT=/tmp/trace.zst LD_PRELOAD=$lib $* &&" \
            "$replayer --interval 10MB /tmp/trace.zst)"
    fi
    rm -rf "$run_dir/profiles"

    # Medians, then the rows.
    local p r h pr rr rp pp our_size ht_size
    p=$(printf '%s\n' "${plain_t[@]}" | median)
    r=$(printf '%s\n' "${rec_t[@]}" | median)
    h=$(printf '%s\n' "${ht_t[@]}" | median)
    pr=$(printf '%s\n' "${plain_r[@]}" | median)
    rr=$(printf '%s\n' "${rec_r[@]}" | median)
    rp=$(printf '%s\n' "${replay_t[@]}" | median)
    pp=
    [ "$have_print" = 1 ] && pp=$(printf '%s\n' "${print_t[@]}" | median)
    our_size=$(stat -c %s "$trace")
    ht_size=$(stat -c %s "$ht_file")

    rows+=("$(awk -v n="$name" -v e="$events" -v p="$p" -v r="$r" -v h="$h" \
        -v os="$our_size" -v hs="$ht_size" -v pr="$pr" -v rr="$rr" '
        function ratio(a, b) { return b > 0 ? sprintf("%.1fx", a / b) : "-" }
        BEGIN {
            printf "| %s | %d | %.3f | %.3f | %s | %.3f | %s | %.2f | %.2f | %.1f MiB | %.1f MiB |",
                n, e, p, r, ratio(r, p), h, ratio(h, p), os / e, hs / e, pr / 1024, rr / 1024
        }')")
    replay_rows+=("$(awk -v n="$name" -v e="$events" -v t="$((rec_allocs + rec_frees))" \
        -v rp="$rp" -v pp="$pp" '
        function rate(s) { return s > 0 ? sprintf("%.2fM", e / s / 1e6) : "-" }
        BEGIN {
            printf "| %s | %d | %d | %.3f | %s | ", n, e, t, rp, rate(rp)
            if (pp == "") printf "- | - |"
            else printf "%.3f | %s |", pp, rate(pp)
        }')")
    rm -f "$trace" "$ht_file"
}

# ---- the workloads -----------------------------------------------------------

rows=()
replay_rows=()
bench "churn" "$work/bin/churn" "$churn_n"
bench "threads T=1" "$work/bin/threads" "$threads_n" 1
bench "threads T=8" "$work/bin/threads" "$threads_n" 8

# ---- report ----------------------------------------------------------------

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
ht_version=$(heaptrack --version 2>/dev/null | head -n 1 || true)

cat <<EOF

## heapreplay whole-process benchmark (size $size)

$(nproc) CPUs${cpu:+ ($cpu)}, ${ht_version:-heaptrack}; median of $runs run(s) each.
Times are wall seconds; events are the program's own mallocs + frees.

| workload | events | plain s | recorded s | recorded/plain | heaptrack s | heaptrack/plain | our bytes/event | heaptrack bytes/event | plain peak RSS | recorded peak RSS |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
printf '%s\n' "${rows[@]}"
cat <<EOF

Reading the traces back: \`heapreplay --interval 10MB\` on our trace,
\`heaptrack_print FILE > /dev/null\` on heaptrack's file; events/s counts the
program's events. "trace events" is what the last replayed profile counts
(allocations + frees), the program's own plus libc's.

| workload | events | trace events | heapreplay s | heapreplay events/s | heaptrack_print s | heaptrack_print events/s |
|---|---:|---:|---:|---:|---:|---:|
EOF
printf '%s\n' "${replay_rows[@]}"
