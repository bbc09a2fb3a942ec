//! Traces still being written: a service that does not exit (two threads
//! churning, the main thread growing on command) is queried while it runs.
//! Every command exits 0 and says the trace is still being written; what it
//! reads is complete up to the recorder's progress mark, so a profile taken
//! at a marker while the process runs is byte-identical to the same profile
//! from the finished trace.

use heapreplay_e2e::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

/// The running service, its commands and answers.
struct Service {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Service {
    fn start(work: &Work, exe: &std::path::Path) -> Service {
        let mut child = Command::new(exe)
            .current_dir(&work.dir)
            .env("LD_PRELOAD", librecord())
            .env("HEAPREPLAY_OUT", work.path("trace.zst"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the service");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Service {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one command and waits for its "ok".
    fn ask(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ok", "answer to {command}");
    }

    /// Ends the input and waits for a normal exit.
    fn stop(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the service ended with {status}");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
