//! `heapreplay export --parquet`: record sites.c, export its trace, and read
//! the Parquet files back with DuckDB (its Python package), checking them
//! against the gperftools profiles a replay writes of the same trace.

use heapreplay_e2e::*;
use std::path::Path;
use std::process::Command;

const MIB: u64 = 1 << 20;

/// What each function of sites.c holds at the end: bytes and objects.
const LEAKS: [(&str, u64, u64); 4] = [
    ("leak_a", 2 * MIB, 2048),
    ("calloc_c", MIB, 64),
    ("realloc_d", MIB, 1),
    ("aligned_e", MIB, 16),
];

/// In use at each trace's end, by allocating function, across every trace
/// exported under the current folder: the example of docs/replay.md.
const LEAKS_BY_FUNCTION: &str = "\
WITH last AS (
    SELECT * FROM read_parquet('*/snapshots.parquet')
    QUALIFY snapshot = max(snapshot) OVER (PARTITION BY trace)
)
SELECT f.function,
       count(DISTINCT last.trace) AS traces,
       sum(last.inuse_bytes) AS inuse_bytes,
       sum(last.inuse_objects) AS inuse_objects
FROM last
JOIN read_parquet('*/stacks.parquet') f
  ON f.trace = last.trace AND f.stack = last.stack AND f.depth = 0
GROUP BY f.function
HAVING sum(last.inuse_bytes) > 0
ORDER BY inuse_bytes DESC, f.function";

/// Records sites.c (built without optimization) into `trace.zst`.
fn recorded(name: &str) -> Work {
    let work = Work::new(name);
    let exe = work.compile("sites.c", "sites", &[]);
    let ran = work.record(&exe, &[], "trace.zst");
    assert_eq!(ran.code, 0, "recorded program failed: {}", ran.stderr);
    work
}

/// Runs `heapreplay ARGS`, which must succeed; returns its stderr.
fn heapreplay_ok(work: &Work, args: &[&str]) -> String {
    work.heapreplay_ok(args).stderr
}

/// Rows of a DuckDB query run in `dir`, each row's values as text (NULL as
/// an empty string).
fn duckdb(dir: &Path, sql: &str) -> Vec<Vec<String>> {
    let script = "import sys, duckdb\n\
        for row in duckdb.sql(sys.argv[1]).fetchall():\n\
        \x20   print('\\t'.join('' if v is None else str(v) for v in row))";
    let r = run(Command::new("python3")
        .args(["-c", script, sql])
        .current_dir(dir));
    assert_eq!(
        r.code, 0,
        "DuckDB query failed (is DuckDB's Python package installed? scripts/install-deps installs it)\n{sql}\n{}",
        r.stderr
    );
    r.stdout
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

/// One row of numbers.
fn numbers(dir: &Path, sql: &str) -> Vec<u64> {
    let rows = duckdb(dir, sql);
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0]
        .iter()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{sql}: {v:?} is no number"))
        })
        .collect()
}

#[test]
fn export_agrees_with_the_heap_profile() {
    let work = recorded("export_profile");
    let log = heapreplay_ok(&work, &["export", "--parquet", "-o", "out", "trace.zst"]);
    assert!(
        log.contains("heapreplay: wrote out/events.parquet (")
            && log.contains("out/stacks.parquet (")
            && log.contains("out/snapshots.parquet ("),
        "export log: {log}"
    );
    heapreplay_ok(&work, &["-o", "prof", "trace.zst"]);
    let totals = header(&work.path("prof.0001.heap"));
    assert_eq!(totals, SITES_TOTALS, "the replay's header");
    let [inuse_objects, inuse_bytes, alloc_objects, alloc_bytes] = totals;

    // One snapshot by default: the end, as the profile.
    let end = numbers(
        &work.dir,
        "SELECT sum(inuse_objects), sum(inuse_bytes), sum(alloc_objects), sum(alloc_bytes),
                count(DISTINCT snapshot), min(snapshot)
         FROM 'out/snapshots.parquet'",
    );
    assert_eq!(end[..4], totals, "snapshot sums against the profile header");
    assert_eq!(end[4..], [1, 1], "one snapshot, numbered 1");
    let reason = duckdb(
        &work.dir,
        "SELECT DISTINCT reason FROM 'out/snapshots.parquet'",
    );
    assert_eq!(
        reason,
        [["Exiting, 5 MB in use"]],
        "the end snapshot's reason"
    );

    // Events: allocations add up to the header; frees carry the size and
    // stack of the block they free.
    let allocs = numbers(
        &work.dir,
        "SELECT count(*), sum(size), count(stack) FROM 'out/events.parquet' WHERE kind = 'alloc'",
    );
    assert_eq!(
        allocs,
        [alloc_objects, alloc_bytes, alloc_objects],
        "alloc events"
    );
    let frees = numbers(
        &work.dir,
        "SELECT count(*), sum(size), count(stack) FROM 'out/events.parquet' WHERE kind = 'free'",
    );
    let freed_objects = alloc_objects - inuse_objects;
    assert_eq!(
        frees,
        [freed_objects, alloc_bytes - inuse_bytes, freed_objects],
        "free events"
    );
    // Time never goes backwards along seq; one process, one trace name.
    let order = numbers(
        &work.dir,
        "SELECT count(*) FILTER (WHERE ns < prev_ns OR seq <= prev_seq),
                count(DISTINCT pid), count(DISTINCT trace) FILTER (WHERE trace = 'trace.zst')
         FROM (SELECT ns, seq, pid, trace,
                      lag(ns) OVER (ORDER BY seq) AS prev_ns,
                      lag(seq) OVER (ORDER BY seq) AS prev_seq
               FROM 'out/events.parquet')",
    );
    assert_eq!(
        order,
        [0, 1, 1],
        "events in time order, one pid, trace name"
    );

    // Every stack of an event or a snapshot is in stacks.parquet, its
    // frames numbered from 0 without gaps.
    let missing = numbers(
        &work.dir,
        "SELECT count(*) FROM (
             SELECT stack FROM 'out/events.parquet' WHERE stack IS NOT NULL
             UNION SELECT stack FROM 'out/snapshots.parquet')
         WHERE stack NOT IN (SELECT stack FROM 'out/stacks.parquet')",
    );
    assert_eq!(missing, [0], "stacks missing from stacks.parquet");
    let gaps = numbers(
        &work.dir,
        "SELECT count(*) FROM (
             SELECT stack FROM 'out/stacks.parquet'
             GROUP BY stack HAVING min(depth) <> 0 OR max(depth) + 1 <> count(*))",
    );
    assert_eq!(gaps, [0], "stacks whose depths have gaps");
}

#[test]
fn snapshots_join_stacks_by_function() {
    let work = recorded("export_functions");
    heapreplay_ok(&work, &["export", "--parquet", "-o", "out", "trace.zst"]);
    let rows = duckdb(
        &work.dir,
        "SELECT f.function, sum(s.inuse_bytes), sum(s.inuse_objects)
         FROM 'out/snapshots.parquet' s
         JOIN 'out/stacks.parquet' f ON f.trace = s.trace AND f.stack = s.stack AND f.depth = 0
         GROUP BY f.function HAVING sum(s.inuse_bytes) > 0
         ORDER BY 2 DESC, 1",
    );
    let expected: Vec<Vec<String>> = LEAKS
        .iter()
        .map(|(f, bytes, objects)| vec![f.to_string(), bytes.to_string(), objects.to_string()])
        .collect();
    let mut sorted = expected.clone();
    sorted.sort_by(|a, b| {
        let n = |r: &Vec<String>| r[1].parse::<u64>().unwrap();
        n(b).cmp(&n(a)).then(a[0].cmp(&b[0]))
    });
    assert_eq!(rows, sorted, "in use at the end by allocating function");
    // The callers are there too: leak_a was called by layer2, from layer1.
    let callers = duckdb(
        &work.dir,
        "SELECT list(function ORDER BY depth) FROM 'out/stacks.parquet'
         WHERE stack IN (SELECT stack FROM 'out/stacks.parquet' WHERE depth = 0 AND function = 'leak_a')
           AND depth <= 3",
    );
    assert_eq!(
        callers,
        [["['leak_a', 'layer2', 'layer1', 'main']"]],
        "leak_a's stack, leaf first"
    );
    let lines = numbers(
        &work.dir,
        "SELECT count(*) FROM 'out/stacks.parquet'
         WHERE function = 'leak_a' AND file LIKE '%sites.c' AND line > 0 AND NOT inlined",
    );
    assert_eq!(lines, [1], "leak_a's frame has its file and line");
}

#[test]
fn traces_of_a_fleet_query_together() {
    let work = recorded("export_fleet");
    // Two traces (the same one under two names), each exported to the
    // default folder next to it: fleet/trace.parquet, fleet/trace2.parquet.
    std::fs::create_dir_all(work.path("fleet")).unwrap();
    std::fs::copy(work.path("trace.zst"), work.path("fleet/trace.zst")).unwrap();
    std::fs::copy(work.path("trace.zst"), work.path("fleet/trace2.zst")).unwrap();
    for t in ["fleet/trace.zst", "fleet/trace2.zst"] {
        let log = heapreplay_ok(&work, &["export", "--parquet", t]);
        let dir = t.replace(".zst", ".parquet");
        assert!(
            log.contains(&format!("wrote {dir}/events.parquet (")),
            "export of {t}: {log}"
        );
    }
    let fleet = work.path("fleet");
    let per_trace = duckdb(
        &fleet,
        "SELECT trace, sum(inuse_bytes), sum(inuse_objects), sum(alloc_bytes), sum(alloc_objects)
         FROM read_parquet('*/snapshots.parquet') GROUP BY trace ORDER BY trace",
    );
    let totals = |t: &str| {
        let [io, ib, ao, ab] = SITES_TOTALS;
        vec![
            t.to_string(),
            ib.to_string(),
            io.to_string(),
            ab.to_string(),
            ao.to_string(),
        ]
    };
    assert_eq!(
        per_trace,
        [totals("trace.zst"), totals("trace2.zst")],
        "per trace"
    );
    // The documented query: what each function holds at the end, fleet-wide.
    let leaks = duckdb(&fleet, LEAKS_BY_FUNCTION);
    let got: Vec<(String, u64, u64, u64)> = leaks
        .iter()
        .map(|r| {
            (
                r[0].clone(),
                r[1].parse().unwrap(),
                r[2].parse().unwrap(),
                r[3].parse().unwrap(),
            )
        })
        .collect();
    let mut expected: Vec<(String, u64, u64, u64)> = LEAKS
        .iter()
        .map(|&(f, bytes, objects)| (f.to_string(), 2, 2 * bytes, 2 * objects))
        .collect();
    expected.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    assert_eq!(got, expected, "leaks by function across both traces");
}

#[test]
fn interval_snapshots_are_numbered_in_time_order() {
    let work = recorded("export_interval");
    heapreplay_ok(
        &work,
        &[
            "export",
            "--parquet",
            "--interval",
            "1MB",
            "-o",
            "out",
            "trace.zst",
        ],
    );
    let log = heapreplay_ok(&work, &["--interval", "1MB", "-o", "prof", "trace.zst"]);
    let profiles = profiles(&work.path("prof"));
    assert!(profiles.len() > 3, "a snapshot every 1 MB of 8.5 MB: {log}");
    let rows = duckdb(
        &work.dir,
        "SELECT snapshot, any_value(reason), min(ns), max(ns),
                sum(inuse_objects), sum(inuse_bytes), sum(alloc_objects), sum(alloc_bytes)
         FROM 'out/snapshots.parquet' GROUP BY snapshot ORDER BY snapshot",
    );
    assert_eq!(rows.len(), profiles.len(), "one snapshot per profile");
    // The reasons as the replay logged them, in order.
    let reasons: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("Dumping heap profile to "))
        .map(|l| &l[l.find(" (").unwrap() + 2..l.len() - 1])
        .collect();
    assert_eq!(reasons.len(), profiles.len(), "replay log: {log}");
    let mut last_ns = 0;
    for (i, (row, profile)) in rows.iter().zip(&profiles).enumerate() {
        let n: Vec<u64> = row.iter().skip(2).map(|v| v.parse().unwrap()).collect();
        assert_eq!(row[0], (i + 1).to_string(), "snapshots numbered from 1");
        assert_eq!(row[1], reasons[i], "reason of snapshot {}", i + 1);
        assert_eq!(n[0], n[1], "one time per snapshot {}", i + 1);
        assert!(n[0] >= last_ns, "snapshot {} goes back in time", i + 1);
        last_ns = n[0];
        assert_eq!(
            n[2..],
            header(profile),
            "snapshot {} against {}",
            i + 1,
            profile.display()
        );
    }
    assert!(
        rows.last().unwrap()[1].starts_with("Exiting"),
        "the end comes last"
    );
}

#[test]
fn export_says_which_file_it_cannot_write() {
    let work = recorded("export_unwritable");
    std::fs::write(work.path("taken"), "a file, not a folder").unwrap();
    let r = work.heapreplay(&["export", "--parquet", "-o", "taken", "trace.zst"]);
    assert_eq!(r.code, 1, "export into a file: {}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "one line: {}", r.stderr);
    assert!(
        r.stderr == "heapreplay: taken: not a folder\n",
        "{}",
        r.stderr
    );
}
