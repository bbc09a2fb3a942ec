//! Traces still being written: a service that does not exit (two threads
//! churning, the main thread growing on command) is queried while it runs.
//! Every command exits 0 and says the trace is still being written; what it
//! reads is complete up to the recorder's progress mark, so a profile taken
//! at a marker while the process runs is byte-identical to the same profile
//! from the finished trace.

use heapreplay_e2e::service::Service;
use heapreplay_e2e::*;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Asserts two files are equal, naming the first line that differs.
fn assert_same_text(a: &std::path::Path, b: &std::path::Path) {
    let (ta, tb) = (
        std::fs::read_to_string(a).unwrap(),
        std::fs::read_to_string(b).unwrap(),
    );
    if ta != tb {
        let line = ta
            .lines()
            .zip(tb.lines())
            .position(|(x, y)| x != y)
            .unwrap_or(ta.lines().count().min(tb.lines().count()));
        panic!(
            "{} and {} differ from line {}: {:?} against {:?}",
            a.display(),
            b.display(),
            line + 1,
            ta.lines().nth(line),
            tb.lines().nth(line)
        );
    }
}

/// More than the recorder's flush interval (1 s): a progress mark comes
/// after everything done before the wait.
fn wait_for_a_flush() {
    std::thread::sleep(Duration::from_millis(1600));
}

#[test]
fn a_running_service_is_queried_and_matches_its_finished_trace() {
    let work = Work::new("live_service");
    let exe = work.compile("service.c", "service", &[]);
    let mut service = Service::start(&work, &exe);
    let pid = service.child.id();
    service.ask("grow 500");
    service.ask("mark");
    wait_for_a_flush();

    let still = format!("still being written by pid {pid}; up to ");
    let info = work.heapreplay(&["info", "trace.zst"]);
    assert_eq!(info.code, 0, "info on a live trace: {}", info.stderr);
    assert!(info.stdout.contains(&still), "{}", info.stdout);
    assert!(info.stdout.contains("damage:     none"), "{}", info.stdout);
    assert!(
        info.stdout.contains("markers:    SIGUSR2 x1"),
        "{}",
        info.stdout
    );

    // A replay at the marker and at the end of what is complete.
    let live = work.heapreplay(&[
        "--at-marker",
        "usr2",
        "--at-exit",
        "-o",
        "live",
        "trace.zst",
    ]);
    assert_eq!(live.code, 0, "replay of a live trace: {}", live.stderr);
    assert!(live.stderr.contains(&still), "{}", live.stderr);
    assert!(!live.stderr.contains("damaged"), "{}", live.stderr);
    let live_profiles = profiles(&work.path("live"));
    assert_eq!(
        live_profiles.len(),
        2,
        "{live_profiles:?}: the marker and the end so far"
    );
    let at_end = google_pprof("--inuse_objects", &exe, &live_profiles[1]);
    assert_flat(&at_end, "grow", 500.0, "live, end so far");

    for command in ["top", "leaks"] {
        let r = work.heapreplay(&[command, "trace.zst"]);
        assert_eq!(r.code, 0, "{command} on a live trace: {}", r.stderr);
        assert!(r.stdout.contains("grow"), "{command}: {}", r.stdout);
        assert!(r.stderr.contains(&still), "{command}: {}", r.stderr);
    }
    for args in [
        &["diff", "--from", "marker:usr2", "trace.zst"][..],
        &["timeline", "-o", "live.svg", "trace.zst"],
        &["export", "--parquet", "-o", "live.parquet", "trace.zst"],
    ] {
        let r = work.heapreplay(args);
        assert_eq!(r.code, 0, "{args:?} on a live trace: {}", r.stderr);
        assert!(r.stderr.contains(&still), "{args:?}: {}", r.stderr);
    }

    // The trace grows; the next query sees more.
    service.ask("grow 300");
    service.ask("mark");
    wait_for_a_flush();
    let later = work.heapreplay(&[
        "--at-marker",
        "usr2",
        "--at-exit",
        "-o",
        "later",
        "trace.zst",
    ]);
    assert_eq!(later.code, 0, "{}", later.stderr);
    let later_profiles = profiles(&work.path("later"));
    assert_eq!(
        later_profiles.len(),
        3,
        "{later_profiles:?}: two markers and the end so far"
    );
    let now = google_pprof("--inuse_objects", &exe, &later_profiles[2]);
    assert_flat(&now, "grow", 800.0, "live, after growing again");

    service.stop();
    let done = work.heapreplay(&[
        "--at-marker",
        "usr2",
        "--at-exit",
        "-o",
        "done",
        "trace.zst",
    ]);
    assert_eq!(done.code, 0, "{}", done.stderr);
    assert!(
        !done.stderr.contains("still being written"),
        "{}",
        done.stderr
    );
    let done_profiles = profiles(&work.path("done"));
    assert_eq!(done_profiles.len(), 3, "{done_profiles:?}");
    // The profiles at both markers, taken while the service ran, equal the
    // finished trace's: nothing below the progress mark was missing.
    assert_same_text(&live_profiles[0], &done_profiles[0]);
    assert_same_text(&later_profiles[0], &done_profiles[0]);
    assert_same_text(&later_profiles[1], &done_profiles[1]);
    let at_exit = google_pprof("--inuse_objects", &exe, &done_profiles[2]);
    assert_flat(&at_exit, "grow", 800.0, "at exit");
    let info = work.heapreplay_ok(&["info", "trace.zst"]);
    assert!(info.stdout.contains("end:        clean"), "{}", info.stdout);
}

/// Files `PREFIX.*` in `dir`, by name.
fn outputs(dir: &std::path::Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&format!("{prefix}.")))
        .collect();
    names.sort();
    names
}

/// Waits (at most `limit`) until `dir` holds a file named `PREFIX.*TAG*`.
fn wait_for_file(dir: &std::path::Path, prefix: &str, tag: &str, limit: Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if outputs(dir, prefix).iter().any(|n| n.contains(tag)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn follow_writes_while_the_service_runs_what_the_finished_replay_writes() {
    let work = Work::new("live_follow");
    let exe = work.compile("service.c", "service", &[]);
    let mut service = Service::start(&work, &exe);
    service.ask("grow 100");
    let rules = ["--at-marker", "usr2", "--interval", "4MB"];
    let mut follow = Command::new(heapreplay())
        .arg("--follow")
        .args(rules)
        .args(["-o", "f", "trace.zst"])
        .current_dir(&work.dir)
        // Checkpoints close together: the rounds build the index.
        .env("HEAPREPLAY_CHECKPOINT_EVERY", "20000")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Each marker's profile is written while the service still runs, within
    // about a second and a half of the marker (a flush, then a poll).
    service.ask("grow 500");
    service.ask("mark");
    assert!(
        wait_for_file(&work.dir, "f", "marker-SIGUSR2", Duration::from_secs(5)),
        "no profile at the first marker while the service runs: {:?}",
        outputs(&work.dir, "f")
    );
    service.ask("grow 300");
    std::thread::sleep(Duration::from_millis(300));
    service.ask("mark");
    let second = || {
        outputs(&work.dir, "f")
            .iter()
            .filter(|n| n.contains("marker-SIGUSR2"))
            .count()
            == 2
    };
    let start = std::time::Instant::now();
    while !second() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        second(),
        "no profile at the second marker: {:?}",
        outputs(&work.dir, "f")
    );

    // The service exits: the follow ends by itself.
    service.stop();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = follow.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "--follow did not end after the process exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut follow.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "--follow: {status}: {stderr}");
    assert!(stderr.contains("following trace.zst"), "{stderr}");
    assert!(stderr.contains("the trace is finished"), "{stderr}");

    // The same files, byte for byte, as a replay of the finished trace.
    let done = work.heapreplay(&[&rules[..], &["-o", "d", "trace.zst"]].concat());
    assert_eq!(done.code, 0, "{}", done.stderr);
    let (followed, replayed) = (outputs(&work.dir, "f"), outputs(&work.dir, "d"));
    assert!(
        replayed.len() >= 3,
        "two markers and interval dumps: {replayed:?}"
    );
    assert_eq!(
        followed.iter().map(|n| &n[2..]).collect::<Vec<_>>(),
        replayed.iter().map(|n| &n[2..]).collect::<Vec<_>>(),
        "followed and replayed file names"
    );
    for (f, d) in followed.iter().zip(&replayed) {
        assert_same_text(&work.path(f), &work.path(d));
    }

    // The rounds built the trace's index as it grew; a point read from it
    // is the point read from the start.
    assert!(
        work.path("trace.zst.idx").exists(),
        "no index from the follow"
    );
    let point = ["top", "-q", "--at", "marker:usr2#2", "trace.zst"];
    let seeking = work.heapreplay_env(&[("HEAPREPLAY_INDEX", "explain")], &point);
    assert!(
        seeking.stderr.contains("from checkpoint"),
        "{}",
        seeking.stderr
    );
    let whole = work.heapreplay_env(&[("HEAPREPLAY_INDEX", "off")], &point);
    assert_eq!(seeking.stdout, whole.stdout);

    // Followed again once finished: nothing is written twice.
    let before: Vec<_> = followed
        .iter()
        .map(|n| std::fs::metadata(work.path(n)).unwrap().modified().unwrap())
        .collect();
    let again = work.heapreplay(&[&["--follow"][..], &rules, &["-o", "f", "trace.zst"]].concat());
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(!again.stderr.contains("Dumping"), "{}", again.stderr);
    let after: Vec<_> = followed
        .iter()
        .map(|n| std::fs::metadata(work.path(n)).unwrap().modified().unwrap())
        .collect();
    assert_eq!(before, after, "a second follow rewrote files");
}
