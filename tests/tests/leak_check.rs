//! `heapreplay leaks --check`: a leak gate for CI, beside gperftools'
//! `HEAPCHECK=normal` on the same program.

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
