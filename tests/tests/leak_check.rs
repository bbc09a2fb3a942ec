//! `heapreplay leaks --check`: a leak gate for CI, beside gperftools'
//! `HEAPCHECK=normal` on the same program; and `leaks --from --to`, what
//! a window of the run left live and what it freed.

use heapreplay_e2e::*;
use std::process::Command;

const TCMALLOC: &str = "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4";

/// Records `leaker n` into `name.zst`.
fn recorded(work: &Work, exe: &std::path::Path, n: &str, name: &str) -> String {
    let trace = format!("{name}.zst");
    let ran = work.record(exe, &[n], &trace);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    trace
}

#[test]
fn a_leak_fails_the_check_and_what_is_ignored_or_allowed_does_not() {
    let work = Work::new("leak_check");
    let exe = work.compile("leaker.c", "leaker", &["-O2"]);
    let clean = recorded(&work, &exe, "0", "clean");
    let leaky = recorded(&work, &exe, "5", "leaky");

    // The cache is never freed: without --ignore, that fails the check.
    let cached = work.heapreplay(&["leaks", "--check", &clean]);
    assert_eq!(cached.code, 1, "{}", cached.stderr);
    assert!(cached.stdout.contains("cache_site"), "{}", cached.stdout);
    assert!(
        cached
            .stderr
            .contains("leak check failed: 4096 bytes in 1 objects from 1 stacks"),
        "{}",
        cached.stderr
    );
    let passed = work.heapreplay(&["leaks", "--check", "--ignore", "cache_site", &clean]);
    assert_eq!(passed.code, 0, "{}", passed.stderr);
    assert!(
        passed.stderr.contains("leak check passed"),
        "{}",
        passed.stderr
    );
    assert!(
        passed.stdout.contains("(1 stack ignored)"),
        "{}",
        passed.stdout
    );

    // Five blocks of 100 bytes from leak_site: a failure, named in the report.
    let leaked = work.heapreplay(&["leaks", "--check", "--ignore", "cache_site", &leaky]);
    assert_eq!(leaked.code, 1, "{}", leaked.stderr);
    assert!(leaked.stdout.contains("leak_site"), "{}", leaked.stdout);
    assert!(!leaked.stdout.contains("cache_site"), "{}", leaked.stdout);
    assert!(
        leaked
            .stderr
            .contains("500 bytes in 5 objects from 1 stacks never freed (at most 0 allowed)"),
        "{}",
        leaked.stderr
    );
    // Up to --max is allowed.
    let at = |max: &str| {
        work.heapreplay(&[
            "leaks",
            "--check",
            "--ignore",
            "cache_site",
            "--max",
            max,
            &leaky,
        ])
        .code
    };
    assert_eq!(at("500"), 0);
    assert_eq!(at("499"), 1);
    // --max means nothing without --check: refused.
    assert_eq!(work.heapreplay(&["leaks", "--max", "1", &leaky]).code, 2);
}

#[test]
fn the_check_agrees_with_gperftools_heapcheck_on_the_same_program() {
    // gperftools' heap checker finds what is unreachable at exit; the cache
    // is reachable from a global, so it is no leak there: the replay is
    // told so with --ignore.
    let work = Work::new("leak_heapcheck");
    let exe = work.compile("leaker.c", "leaker", &["-O0", "-fno-omit-frame-pointer"]);
    for n in ["0", "5"] {
        let checked = run(Command::new(&exe)
            .arg(n)
            .current_dir(&work.dir)
            .env("LD_PRELOAD", TCMALLOC)
            .env("HEAPCHECK", "normal"));
        let trace = recorded(&work, &exe, n, &format!("run{n}"));
        let ours = work.heapreplay(&["leaks", "--check", "--ignore", "cache_site", &trace]);
        assert_eq!(
            ours.code != 0,
            checked.code != 0,
            "leaker {n}: ours exit {} ({}); HEAPCHECK exit {} ({})",
            ours.code,
            ours.stderr,
            checked.code,
            checked.stderr
        );
    }
}

/// (bytes, objects, allocating function).
type Row = (String, String, String);

/// (bytes, objects, allocating function) of each row of a report's table
/// under `heading`.
fn table(text: &str, heading: &str) -> Vec<Row> {
    report_rows(text, heading)
        .into_iter()
        .map(|[bytes, _, objects, stack]| {
            let function = stack.split(' ').next().unwrap_or("").to_string();
            (bytes, objects, function)
        })
        .collect()
}

/// The rows of each stack a leak report lists, and of its temporary table.
fn window_rows(text: &str) -> (Vec<Row>, Vec<Row>) {
    (leaked_stacks(text), table(text, "Temporary"))
}

fn row(bytes: &str, objects: &str, function: &str) -> Row {
    (bytes.into(), objects.into(), function.into())
}

#[test]
fn a_window_lists_what_it_allocated_and_left_live_and_what_it_freed() {
    let work = Work::new("leaks_window");
    let exe = work.compile("phases.c", "phases", &["-O1"]);
    let ran = work.record(&exe, &[], "trace.zst");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    // Between the two markers: the middle phase, as phases.c says.
    let between = work
        .heapreplay_ok(&[
            "leaks",
            "--from",
            "marker:usr2",
            "--to",
            "marker:usr2#2",
            "trace.zst",
        ])
        .stdout;
    assert!(
        between.starts_with("trace.zst from SIGUSR2 marker #1 ("),
        "{between}"
    );
    assert!(between.contains("90,000 bytes (87.9 KiB) in 30 objects allocated in the window and still live at its end, from 1 stack"), "{between}");
    let (live, temporary) = window_rows(&between);
    assert_eq!(live, vec![row("90,000", "30", "keep_mid")], "{between}");
    assert_eq!(
        temporary,
        vec![row("20,000", "40", "temp_mid")],
        "{between}"
    );
    // From the first marker to the end: the late phase freed a third of
    // the middle's blocks.
    let after = work
        .heapreplay_ok(&["leaks", "--from", "marker:usr2", "trace.zst"])
        .stdout;
    let (live, temporary) = window_rows(&after);
    assert_eq!(
        live,
        vec![
            row("60,000", "20", "keep_mid"),
            row("49,000", "7", "keep_late")
        ],
        "{after}"
    );
    assert_eq!(
        temporary,
        vec![
            row("30,000", "10", "keep_mid"),
            row("20,000", "40", "temp_mid")
        ],
        "{after}"
    );
    // From the start, a window's live blocks are all the heap holds at
    // its end: top's in-use table, row for row.
    let to = work
        .heapreplay_ok(&["leaks", "--to", "marker:usr2#2", "trace.zst"])
        .stdout;
    let top = work
        .heapreplay_ok(&["top", "--at", "marker:usr2#2", "trace.zst"])
        .stdout;
    let (live, _) = window_rows(&to);
    assert_eq!(
        live,
        vec![
            row("90,000", "30", "keep_mid"),
            row("80,000", "80", "keep_early")
        ],
        "{to}"
    );
    let in_use = table(&top, "In use:");
    assert_eq!(live, in_use, "{top}");
    // A time and a marker with no event between them: the marker is
    // placed first, yet the window is there, and empty.
    let quiet = work
        .heapreplay_ok(&[
            "leaks",
            "--from",
            "0.45s",
            "--to",
            "marker:usr2",
            "trace.zst",
        ])
        .stdout;
    assert!(
        quiet.contains(": 0 bytes (0 B) in 0 objects allocated in the window"),
        "{quiet}"
    );
    // A window that ends before it starts is refused, in one line.
    let backwards = work.heapreplay(&[
        "leaks",
        "--from",
        "marker:usr2#2",
        "--to",
        "marker:usr2",
        "trace.zst",
    ]);
    assert_ne!(backwards.code, 0);
    assert!(backwards.stdout.is_empty(), "{}", backwards.stdout);
    assert_eq!(backwards.stderr.lines().count(), 1, "{}", backwards.stderr);
    assert!(
        backwards.stderr.contains("is after its end"),
        "{}",
        backwards.stderr
    );
    // A window is no gate: --check refuses it.
    let gate = work.heapreplay(&["leaks", "--check", "--from", "1s", "trace.zst"]);
    assert_eq!(gate.code, 2, "{}", gate.stderr);
}
