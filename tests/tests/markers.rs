//! Snapshots at markers, times and the peak, from one recording of a
//! process that never exits and owns its SIGUSR2 handler.

use heapreplay_e2e::*;
use std::io::{BufRead, BufReader};
use std::process::Command;

fn expect_line(lines: &mut impl Iterator<Item = std::io::Result<String>>, want: &str) {
    let got = lines.next().expect("program ended early").unwrap();
    assert_eq!(got, want);
}

#[test]
fn usr2_markers_on_a_server_that_is_killed() {
    let work = Work::new("server");
    let exe = work.compile("server.c", "server", &["-O2", "-fomit-frame-pointer"]);
    let mut child = work.spawn_recorded(&exe, "trace.zst");
    let pid = child.id().to_string();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for k in 1..=3 {
        expect_line(&mut lines, &format!("ready {k}"));
        std::thread::sleep(std::time::Duration::from_millis(300));
        run_ok(Command::new("kill").args(["-USR2", &pid]));
        // The application's own handler ran: it counts every signal.
        expect_line(&mut lines, &format!("got {k}"));
    }
    expect_line(&mut lines, "ready 4");
    std::thread::sleep(std::time::Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();

    // One snapshot per SIGUSR2, with the cache at 1, 2, 3 MiB.
    let r = work.heapreplay(&["--at-marker", "usr2", "-o", "m", "trace.zst"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let snaps = profiles(&work.path("m"));
    assert_eq!(snaps.len(), 3, "{}", r.stderr);
    for (k, p) in snaps.iter().enumerate() {
        assert!(p
            .to_string_lossy()
            .ends_with(&format!("m.{:04}.marker-SIGUSR2.heap", k + 1)));
        let space = google_pprof("--inuse_space", &exe, p);
        assert_flat(
            &space,
            "grow_cache",
            (k + 1) as f64,
            "cache MiB at the marker",
        );
        let objects = google_pprof("--inuse_objects", &exe, p);
        assert_flat(
            &objects,
            "grow_cache",
            (256 * (k + 1)) as f64,
            "cache blocks at the marker",
        );
        let allocs = google_pprof("--alloc_objects", &exe, p);
        assert_flat(
            &allocs,
            "handle_request",
            (1000 * (k + 1)) as f64,
            "requests before the marker",
        );
    }
    assert!(r.stderr.contains("no end record"), "{}", r.stderr);

    // The peak is the 8 MiB report of phase 2.
    let r = work.heapreplay(&["--at-peak", "-o", "p", "trace.zst"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let peak = profiles(&work.path("p"));
    assert_eq!(peak.len(), 1);
    assert!(peak[0].to_string_lossy().ends_with("p.0001.peak.heap"));
    let space = google_pprof("--inuse_space", &exe, &peak[0]);
    assert_flat(&space, "build_report", 8.0, "the report at the peak");
    assert_flat(&space, "grow_cache", 2.0, "the cache at the peak");

    // Time: the run lasted over a second; a profile every 250 ms of it.
    let r = work.heapreplay(&["--time-interval", "250ms", "-o", "t", "trace.zst"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let timed = profiles(&work.path("t"));
    assert!(
        timed.len() >= 3,
        "only {} time snapshots: {}",
        timed.len(),
        r.stderr
    );
    assert!(r.stderr.contains("sec since the last dump"), "{}", r.stderr);
    let first = google_pprof("--inuse_objects", &exe, &timed[0]);
    assert!(first.get("grow_cache").is_some_and(|r| r.flat >= 256.0));

    // And the description of the trace.
    let info = run(Command::new(heapreplay())
        .arg("info")
        .arg(work.path("trace.zst")));
    assert_eq!(info.code, 0, "{}", info.stderr);
    assert!(
        info.stdout.contains("markers:    SIGUSR2 x3"),
        "{}",
        info.stdout
    );
    assert!(info.stdout.contains("cut short"), "{}", info.stdout);
    assert!(
        info.stdout.contains("peak:       10.0 MiB"),
        "{}",
        info.stdout
    );
}

#[test]
fn named_markers_from_the_api() {
    let work = Work::new("api_markers");
    let src = work.path("phases.c");
    std::fs::write(
        &src,
        r#"#include "heapreplay.h"
#include <stdlib.h>
void *volatile sink;
__attribute__((noinline)) void warm_up(void) { for (int i = 0; i < 100; i++) sink = malloc(1024); }
__attribute__((noinline)) void steady(void) { for (int i = 0; i < 300; i++) sink = malloc(1024); }
int main(void) {
    warm_up();
    heapreplay_mark("after warm-up");
    steady();
    heapreplay_mark("done");
    return 0;
}
"#,
    )
    .unwrap();
    let exe = work.path("phases");
    run_ok(
        Command::new("gcc")
            .args(["-O2", "-g", "-I"])
            .arg(root().join("include"))
            .arg(&src)
            .arg("-o")
            .arg(&exe),
    );
    // Without the recorder the weak symbol is NULL and the program runs.
    run_ok(&mut Command::new(&exe));

    let ran = work.record(&exe, &[], "trace.zst");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let r = work.heapreplay(&[
        "--at-marker",
        "after warm-up",
        "--at-marker",
        "done",
        "-o",
        "n",
        "trace.zst",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let snaps = profiles(&work.path("n"));
    assert_eq!(snaps.len(), 2, "{}", r.stderr);
    assert!(snaps[0]
        .to_string_lossy()
        .ends_with(".marker-after_warm-up.heap"));
    let first = google_pprof("--inuse_objects", &exe, &snaps[0]);
    assert_flat(&first, "warm_up", 100.0, "at 'after warm-up'");
    assert!(!first.contains_key("steady"));
    let second = google_pprof("--inuse_objects", &exe, &snaps[1]);
    assert_flat(&second, "steady", 300.0, "at 'done'");

    // `all` takes every marker; a name the trace lacks is an error.
    let r = work.heapreplay(&["--at-marker", "all", "-o", "a", "trace.zst"]);
    assert_eq!(profiles(&work.path("a")).len(), 2, "{}", r.stderr);
    let r = work.heapreplay(&["--at-marker", "warmup", "trace.zst"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("no marker named 'warmup'") && r.stderr.contains("'after warm-up' x1"),
        "{}",
        r.stderr
    );
}
