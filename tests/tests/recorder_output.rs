//! Where the trace goes: killed processes, unwritable paths.

use heapreplay_e2e::*;
use std::io::{BufRead, BufReader};
use std::process::Command;

#[test]
fn killed_process_replays_up_to_its_last_flush() {
    let work = Work::new("killed");
    let exe = work.compile("sleeper.c", "sleeper", &["-O2"]);
    let mut child = work.spawn_recorded(&exe, "trace.zst");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    // The writer flushes at least once a second.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();

    let r = work.heapreplay(&["-o", "out", "trace.zst"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("no end record"), "{}", r.stderr);
    let objects = google_pprof("--inuse_objects", &exe, &work.path("out.0001.heap"));
    assert_flat(
        &objects,
        "before_sleep",
        1000.0,
        "allocations before the kill",
    );
}

#[test]
fn unwritable_trace_path_leaves_the_program_unharmed() {
    let work = Work::new("unwritable_trace");
    let exe = work.compile("sleeper.c", "sleeper", &["-O2"]);
    let plain = run(Command::new(&exe).arg("once"));
    let ran = run(Command::new(&exe)
        .arg("once")
        .env("LD_PRELOAD", librecord())
        .env("HEAPREPLAY_OUT", "/nonexistent/dir/trace.zst"));
    assert_eq!(ran.code, plain.code);
    assert_eq!(ran.stdout, plain.stdout);
    assert_eq!(
        ran.stderr,
        "heapreplay: cannot write trace to /nonexistent/dir/trace.zst: No such file or directory; the program runs unrecorded\n"
    );
}

#[test]
fn full_disk_leaves_the_program_unharmed() {
    // /dev/full takes the open but fails every write with ENOSPC.
    let work = Work::new("full_disk");
    let exe = work.compile("sleeper.c", "sleeper", &["-O2"]);
    let plain = run(Command::new(&exe).arg("once"));
    let ran = run(Command::new(&exe)
        .arg("once")
        .env("LD_PRELOAD", librecord())
        .env("HEAPREPLAY_OUT", "/dev/full"));
    assert_eq!(ran.code, plain.code);
    assert_eq!(ran.stdout, plain.stdout);
    assert_eq!(
        ran.stderr,
        "heapreplay: cannot write trace to /dev/full: No space left on device; recording stopped, the program runs on unrecorded\n"
    );
    assert!(!std::path::Path::new(&format!("/dev/full.{}", std::process::id())).exists());
}

#[test]
fn crashes_flush_then_proceed_unchanged() {
    let work = Work::new("crashes");
    let exe = work.compile("crasher.c", "crasher", &["-O2"]);
    for (mode, code) in [("segv", 128 + 11), ("abort", 128 + 6)] {
        let plain = run(Command::new(&exe).arg(mode));
        assert_eq!(plain.code, code, "{mode} without the recorder");
        let trace = format!("{mode}.zst");
        let ran = work.record(&exe, &[mode], &trace);
        assert_eq!(
            ran.code, code,
            "{mode}: the crash must proceed with the same signal"
        );
        let r = work.heapreplay(&["-o", mode, &trace]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let allocs = google_pprof(
            "--alloc_objects",
            &exe,
            &work.path(&format!("{mode}.0001.heap")),
        );
        assert_flat(
            &allocs,
            "before_crash",
            300.0,
            "allocations flushed before the crash",
        );
    }
    // A program that handles its own faults keeps doing so, and sees the
    // default disposition it expects before installing its handler.
    let plain = run(Command::new(&exe).arg("recover"));
    let ran = work.record(&exe, &["recover"], "recover.zst");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.stdout, plain.stdout);
    assert_eq!(ran.stdout, "default\nrecovered\n");
}

#[test]
fn a_program_closing_all_descriptors_is_unharmed() {
    // Daemons close every descriptor they did not open; the next file the
    // program opens gets the trace's old number. Nothing of ours may land in it.
    let work = Work::new("closer");
    let exe = work.compile("closer.c", "closer", &["-O2"]);
    let own = work.path("own.txt");
    let plain = run(Command::new(&exe).arg(&own));
    let ran = run(Command::new(&exe)
        .arg(&own)
        .env("LD_PRELOAD", librecord())
        .env("HEAPREPLAY_OUT", work.path("trace.zst")));
    assert_eq!(ran.code, plain.code, "{}", ran.stderr);
    assert_eq!(ran.stdout, "the program's own data\n");
    assert_eq!(
        std::fs::read_to_string(&own).unwrap(),
        "the program's own data\n"
    );
    assert!(
        ran.stderr
            .contains("the program closed its descriptor; recording stopped"),
        "{}",
        ran.stderr
    );
}

/// A filesystem mounted for one test, unmounted when dropped.
struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(dir: std::path::PathBuf, options: &str) -> Mount {
        std::fs::create_dir_all(&dir).unwrap();
        let r = run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&dir));
        assert_eq!(
            r.code, 0,
            "mounting a test filesystem needs root: {}",
            r.stderr
        );
        Mount(dir)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn tiny_or_read_only_filesystems_leave_the_program_unharmed() {
    let work = Work::new("tiny_fs");
    let exe = work.compile("threads.c", "threads", &["-O2"]);
    let plain = run(Command::new(&exe).args(["2", "200000"]));
    // 64 KiB fill up after the first flushes: the disk is full mid-run.
    let tiny = Mount::tmpfs(work.path("tiny"), "size=64k");
    let ran = run(Command::new(&exe)
        .args(["2", "200000"])
        .env("LD_PRELOAD", librecord())
        .env("HEAPREPLAY_OUT", tiny.0.join("trace.zst")));
    assert_eq!(ran.code, plain.code);
    assert_eq!(ran.stdout, plain.stdout);
    assert_eq!(
        ran.stderr
            .matches("No space left on device; recording stopped")
            .count(),
        1,
        "{}",
        ran.stderr
    );
    // What was written before the disk filled replays.
    let r = work.heapreplay(&["-o", "partial", tiny.0.join("trace.zst").to_str().unwrap()]);
    assert!(r.code == 0 || r.code == 3, "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"));
    drop(tiny);
    let ro = Mount::tmpfs(work.path("ro"), "ro");
    let ran = run(Command::new(&exe)
        .args(["2", "1000"])
        .env("LD_PRELOAD", librecord())
        .env("HEAPREPLAY_OUT", ro.0.join("trace.zst")));
    assert_eq!(ran.code, 0);
    assert_eq!(
        ran.stderr,
        format!(
            "heapreplay: cannot write trace to {}: Read-only file system; the program runs unrecorded\n",
            ro.0.join("trace.zst").display()
        )
    );
}

/// Recording again to a path replaces the file instead of emptying it in
/// place: a replayer still reading the old trace (through a memory map, or
/// here a second link to it) keeps it whole.
#[test]
fn recording_again_replaces_the_trace_instead_of_emptying_it() {
    let work = Work::new("record_again");
    let exe = work.compile("sleeper.c", "sleeper", &["-O2"]);
    let first = work.record(&exe, &["once"], "trace.zst");
    assert_eq!(first.code, 0, "{}", first.stderr);
    std::fs::hard_link(work.path("trace.zst"), work.path("old.zst")).unwrap();
    let old_len = std::fs::metadata(work.path("old.zst")).unwrap().len();
    let second = work.record(&exe, &["once"], "trace.zst");
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(
        std::fs::metadata(work.path("old.zst")).unwrap().len(),
        old_len,
        "the first trace was emptied"
    );
    for trace in ["old.zst", "trace.zst"] {
        let r = work.heapreplay(&["info", trace]);
        assert_eq!(r.code, 0, "{trace}: {}", r.stderr);
        assert!(
            r.stdout.contains("damage:     none"),
            "{trace}: {}",
            r.stdout
        );
    }
}

#[test]
fn loaded_with_dlopen_it_stays_inert_and_says_so() {
    // Not preloaded: its functions stand in for nothing the program calls,
    // so it must not start (no trace, no signal handler, no thread).
    let work = Work::new("dlopened_recorder");
    let exe = work.compile("dlopener.c", "dlopener", &["-O2"]);
    let ran = run(Command::new(&exe)
        .arg(librecord())
        .current_dir(&work.dir)
        .env_remove("LD_PRELOAD"));
    assert_eq!(
        ran.code, 0,
        "exit 3: a signal disposition changed; {}",
        ran.stderr
    );
    assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("loaded into a running program (dlopen)"),
        "{}",
        ran.stderr
    );
    let traces = std::fs::read_dir(&work.dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".zst")
        })
        .count();
    assert_eq!(traces, 0, "no trace is written");
    // Preloaded, the same library records the same program (its own
    // dlopen of it then adds nothing).
    let recorded = work.record(&exe, &[librecord().to_str().unwrap()], "trace.zst");
    assert_eq!(recorded.code, 0, "{}", recorded.stderr);
    let info = work.heapreplay_ok(&["info", "trace.zst"]).stdout;
    let allocations: u64 = info
        .lines()
        .find(|l| l.starts_with("events:"))
        .and_then(|l| l.split('(').nth(1))
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(allocations >= 1000, "{info}");
}
