//! The same deterministic program under gperftools' own heap profiler
//! (Debian's libtcmalloc, HEAPPROFILE) and under our recorder + replayer:
//! the same dumps, the same totals, the same bytes per function.

use heapreplay_e2e::*;
use std::process::Command;

const TCMALLOC: &str = "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4";

fn in_use_by_function(exe: &std::path::Path, profile: &std::path::Path) -> Vec<(String, i64)> {
    let mut rows: Vec<(String, i64)> = go_pprof("inuse_space", exe, profile)
        .into_iter()
        .filter(|(name, row)| name.ends_with("_site") && row.flat != 0.0)
        .map(|(name, row)| (name, row.flat as i64))
        .collect();
    rows.sort();
    rows
}

#[test]
fn allocation_interval_matches_gperftools() {
    assert!(
        std::path::Path::new(TCMALLOC).exists(),
        "{TCMALLOC} is missing: install Debian's libgoogle-perftools4 (scripts/test does)"
    );
    let work = Work::new("conformance");
    let mut flags = vec!["-O2"];
    flags.extend_from_slice(GO_PPROF_FLAGS);
    let exe = work.compile("conform.c", "conform", &flags);
    let rounds = "40000";
    let interval = (16u64 << 20).to_string();

    // gperftools itself.
    let gp = run(Command::new(&exe)
        .arg(rounds)
        .current_dir(&work.dir)
        .env("LD_PRELOAD", TCMALLOC)
        .env("HEAPPROFILE", work.path("gperf"))
        .env("HEAP_PROFILE_ALLOCATION_INTERVAL", &interval)
        .env("HEAP_PROFILE_INUSE_INTERVAL", "0")
        .env("HEAP_PROFILE_DEALLOCATION_INTERVAL", "0")
        .env("HEAP_PROFILE_TIME_INTERVAL", "0"));
    assert_eq!(gp.code, 0, "gperftools run failed: {}", gp.stderr);
    let theirs = profiles(&work.path("gperf"));

    // Our recorder, replayed with the same interval.
    let ran = work.record(&exe, &[rounds], "trace.zst");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let r = work.heapreplay(&["--interval", &interval, "-o", "ours", "trace.zst"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ours = profiles(&work.path("ours"));

    assert!(
        theirs.len() >= 10,
        "expected many dumps, gperftools wrote {}",
        theirs.len()
    );
    assert_eq!(ours.len(), theirs.len(), "number of dumps");
    // The same log lines, file names aside.
    let log = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("Dumping heap profile to "))
            .map(|l| l.split_once(" (").unwrap().1.to_string())
            .collect()
    };
    assert_eq!(log(&r.stderr), log(&gp.stderr), "dump reasons");
    for (n, (t, o)) in theirs.iter().zip(&ours).enumerate() {
        assert_eq!(header(o), header(t), "header totals of dump {}", n + 1);
        assert_eq!(
            in_use_by_function(&exe, o),
            in_use_by_function(&exe, t),
            "in-use bytes per function in dump {}",
            n + 1
        );
    }
    // And google-pprof agrees on objects per function in the last dump.
    let last = theirs.len() - 1;
    let g_theirs = google_pprof("--inuse_objects", &exe, &theirs[last]);
    let g_ours = google_pprof("--inuse_objects", &exe, &ours[last]);
    for f in ["small_site", "medium_site", "large_site", "zeroed_site"] {
        assert_eq!(g_ours.get(f), g_theirs.get(f), "objects in use by {f}");
        assert!(g_ours.get(f).is_some_and(|r| r.flat > 0.0), "{f} missing");
    }
}
