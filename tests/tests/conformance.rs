//! The same deterministic program under gperftools' own heap profiler
//! (Debian's libtcmalloc, HEAPPROFILE) and under our recorder + replayer:
//! the same dumps, the same reasons, the same totals, the same bytes per
//! function, for each of gperftools' dump rules and their combinations.

use heapreplay_e2e::*;
use std::process::Command;

const TCMALLOC: &str = "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4";
const MB: u64 = 1 << 20;

fn in_use_by_function(exe: &std::path::Path, profile: &std::path::Path) -> Vec<(String, i64)> {
    let mut rows: Vec<(String, i64)> = go_pprof("inuse_space", exe, profile)
        .into_iter()
        .filter(|(name, row)| name.ends_with("_site") && row.flat != 0.0)
        .map(|(name, row)| (name, row.flat as i64))
        .collect();
    rows.sort();
    rows
}

/// The reasons logged, file names aside.
fn reasons(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.strip_prefix("Dumping heap profile to "))
        .map(|l| {
            l.split_once(" (")
                .unwrap()
                .1
                .trim_end_matches(')')
                .to_string()
        })
        .collect()
}

/// Runs `conform args` under gperftools with `env` (every rule not named
/// there is set to 0) and under our recorder, replayed with `ours`; compares.
/// Returns (our log, gperftools' log) for rule-specific checks.
fn compare(name: &str, args: &[&str], env: &[(&str, String)], ours: &[&str]) -> (String, String) {
    assert!(
        std::path::Path::new(TCMALLOC).exists(),
        "{TCMALLOC} is missing: install Debian's libgoogle-perftools4 (scripts/test does)"
    );
    let work = Work::new(name);
    let mut flags = vec!["-O2"];
    flags.extend_from_slice(GO_PPROF_FLAGS);
    let exe = work.compile("conform.c", "conform", &flags);

    let mut gp = Command::new(&exe);
    gp.args(args)
        .current_dir(&work.dir)
        .env("LD_PRELOAD", TCMALLOC)
        .env("HEAPPROFILE", work.path("gperf"));
    for rule in [
        "HEAP_PROFILE_ALLOCATION_INTERVAL",
        "HEAP_PROFILE_DEALLOCATION_INTERVAL",
        "HEAP_PROFILE_INUSE_INTERVAL",
        "HEAP_PROFILE_TIME_INTERVAL",
    ] {
        gp.env(rule, "0");
    }
    for (k, v) in env {
        gp.env(k, v);
    }
    let gp = run(&mut gp);
    assert_eq!(gp.code, 0, "gperftools run failed: {}", gp.stderr);
    let theirs = profiles(&work.path("gperf"));

    let ran = work.record(&exe, args, "trace.zst");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let mut replay = ours.to_vec();
    replay.extend_from_slice(&["-o", "ours", "trace.zst"]);
    let r = work.heapreplay(&replay);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mine = profiles(&work.path("ours"));

    assert!(
        theirs.len() >= 5,
        "{name}: expected several dumps, gperftools wrote {}",
        theirs.len()
    );
    assert_eq!(
        mine.len(),
        theirs.len(),
        "{name}: number of dumps\nours:\n{}\ntheirs:\n{}",
        r.stderr,
        gp.stderr
    );
    for (n, (t, o)) in theirs.iter().zip(&mine).enumerate() {
        assert_eq!(
            header(o),
            header(t),
            "{name}: header totals of dump {}",
            n + 1
        );
        assert_eq!(
            in_use_by_function(&exe, o),
            in_use_by_function(&exe, t),
            "{name}: in-use bytes per function in dump {}",
            n + 1
        );
    }
    let last = theirs.len() - 1;
    let g_theirs = google_pprof("--inuse_objects", &exe, &theirs[last]);
    let g_ours = google_pprof("--inuse_objects", &exe, &mine[last]);
    for f in ["small_site", "medium_site", "large_site", "zeroed_site"] {
        assert_eq!(
            g_ours.get(f),
            g_theirs.get(f),
            "{name}: objects in use by {f}"
        );
        assert!(
            g_ours.get(f).is_some_and(|r| r.flat > 0.0),
            "{name}: {f} missing"
        );
    }
    (r.stderr, gp.stderr)
}

#[test]
fn allocation_interval_matches_gperftools() {
    let n = (16 * MB).to_string();
    let (ours, theirs) = compare(
        "conform_alloc",
        &["40000"],
        &[("HEAP_PROFILE_ALLOCATION_INTERVAL", n.clone())],
        &["--interval", &n],
    );
    assert_eq!(reasons(&ours), reasons(&theirs));
}

#[test]
fn deallocation_interval_matches_gperftools() {
    let n = (8 * MB).to_string();
    let (ours, theirs) = compare(
        "conform_dealloc",
        &["40000"],
        &[("HEAP_PROFILE_DEALLOCATION_INTERVAL", n.clone())],
        &["--dealloc-interval", &n],
    );
    assert_eq!(reasons(&ours), reasons(&theirs));
}

#[test]
fn inuse_interval_matches_gperftools() {
    let n = MB.to_string();
    let (ours, theirs) = compare(
        "conform_inuse",
        &["40000"],
        &[("HEAP_PROFILE_INUSE_INTERVAL", n.clone())],
        &["--inuse-interval", &n],
    );
    assert_eq!(reasons(&ours), reasons(&theirs));
}

#[test]
fn combined_intervals_match_gperftools() {
    // Chosen so that every rule fires: the allocation rule in steady state,
    // the in-use rule while the heap grows, the free rule in the final burst.
    let (a, d, i) = (
        (16 * MB).to_string(),
        (20 * MB).to_string(),
        (12 * MB).to_string(),
    );
    let (ours, theirs) = compare(
        "conform_combined",
        &["40000"],
        &[
            ("HEAP_PROFILE_ALLOCATION_INTERVAL", a.clone()),
            ("HEAP_PROFILE_DEALLOCATION_INTERVAL", d.clone()),
            ("HEAP_PROFILE_INUSE_INTERVAL", i.clone()),
        ],
        &[
            "--interval",
            &a,
            "--dealloc-interval",
            &d,
            "--inuse-interval",
            &i,
        ],
    );
    let r = reasons(&ours);
    assert_eq!(r, reasons(&theirs));
    // All three rules fired at some point.
    assert!(r.iter().any(|l| l.contains("allocated cumulatively")));
    assert!(r.iter().any(|l| l.contains("freed cumulatively")));
    assert!(r
        .iter()
        .any(|l| l.ends_with("MB currently in use") && !l.contains("cumulatively")));
}

#[test]
fn signal_dumps_match_heapprofilesignal() {
    // gperftools dumps in its SIGUSR2 handler; we replay at the SIGUSR2 markers,
    // plus the end, which gperftools writes at exit.
    let (ours, theirs) = compare(
        "conform_signal",
        &["40000", "5000"],
        &[("HEAPPROFILESIGNAL", "12".to_string())],
        &["--at-marker", "usr2", "--at-exit"],
    );
    let ours = reasons(&ours);
    let theirs = reasons(&theirs);
    assert_eq!(ours.len(), 9);
    assert_eq!(theirs.iter().filter(|r| *r == "signal").count(), 8);
    assert_eq!(
        ours.iter()
            .filter(|r| r.starts_with("marker SIGUSR2"))
            .count(),
        8
    );
    assert_eq!(ours.last(), theirs.last(), "exit dump reason");
}

#[test]
fn signal_and_interval_together_match_gperftools() {
    let n = (32 * MB).to_string();
    compare(
        "conform_signal_interval",
        &["40000", "7000"],
        &[
            ("HEAPPROFILESIGNAL", "12".to_string()),
            ("HEAP_PROFILE_ALLOCATION_INTERVAL", n.clone()),
        ],
        &["--interval", &n, "--at-marker", "usr2", "--at-exit"],
    );
}
