//! A disk cap: `heapreplay record --max-size` and `heapreplay keep` fold a
//! trace's oldest part into the heap's state there while the program runs.
//! A deterministic program recorded for over 20 times the cap stays under
//! it on disk the whole time, and what the capped trace says at its end
//! equals what an uncapped recording of the same program says. A fold
//! killed at any point, or cut short mid-write, changes nothing a replay
//! says.

use heapreplay_e2e::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const CAP: u64 = 1 << 20;

/// Bytes the file takes on disk.
fn disk_use(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

/// `text` with the trace's name and the time of its first line left out
/// (two recordings of one deterministic program differ only there).
fn without_name_and_time(text: &str, trace: &str) -> String {
    let text = text.replace(trace, "TRACE");
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let first = match (first.find(" ("), first.find("): ")) {
        (Some(a), Some(b)) if a < b => format!("{}{}", &first[..a], &first[b + 1..]),
        _ => first.to_string(),
    };
    std::iter::once(first.as_str())
        .chain(lines)
        .map(|l| format!("{l}\n"))
        .collect()
}

/// What `top` at the last marker, `top` at the end, and `leaks` say.
fn reports(work: &Work, trace: &str) -> Vec<String> {
    [
        vec!["top", trace, "--at", "marker:round#800"],
        vec!["top", trace, "--at", "end"],
        vec!["leaks", trace],
    ]
    .into_iter()
    .map(|args| without_name_and_time(&work.heapreplay_ok(&args).stdout, trace))
    .collect()
}

#[test]
fn a_capped_run_stays_under_its_size_and_ends_as_an_uncapped_one() {
    let work = Work::new("keep_long_run");
    let program = work.compile("longrun.c", "longrun", &[]);
    let full = work.record(&program, &["800", "0"], "full.zst");
    assert_eq!(full.code, 0, "{}", full.stderr);

    // 800 rounds of about 26 KB of trace each, 80 rounds a second.
    let capped = work.path("capped.zst");
    let mut child = Command::new(heapreplay())
        .args(["record", "--max-size", "1MB", "-o"])
        .arg(&capped)
        .arg(&program)
        .args(["800", "12000"])
        .current_dir(work.path(""))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut most = 0;
    let status = loop {
        most = most.max(disk_use(&capped));
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "hung");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("no longer kept"), "{stderr}");

    let written = std::fs::metadata(&capped).unwrap().len();
    assert!(
        written >= 20 * CAP,
        "the run wrote {written} bytes: not 20 times the cap"
    );
    // The cap, plus what the program writes between two looks (0.1 s).
    assert!(
        most <= CAP + CAP / 4,
        "{most} bytes on disk at most, over the cap of {CAP}"
    );
    assert!(
        disk_use(&capped) <= CAP,
        "{} on disk at the end",
        disk_use(&capped)
    );

    let info = work.heapreplay_ok(&["info", "capped.zst"]).stdout;
    assert!(info.contains("kept:       the run from"), "{info}");
    assert!(info.contains("damage:     none"), "{info}");
    let full_info = work.heapreplay_ok(&["info", "full.zst"]).stdout;
    let line = |text: &str, key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .map(|l| l.split(" at ").next().unwrap().to_string())
    };
    for key in ["events:", "peak:", "markers:"] {
        assert_eq!(line(&info, key), line(&full_info, key), "{key}");
    }
    assert_eq!(reports(&work, "capped.zst"), reports(&work, "full.zst"));

    // Interval rules count from the fold; headers keep the totals since
    // the start of the run.
    let prefix = work.path("capped-out");
    let ran = work.heapreplay(&[
        "--interval",
        "64MB",
        "-o",
        prefix.to_str().unwrap(),
        "capped.zst",
    ]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let dumps = profiles(&prefix);
    assert!(!dumps.is_empty() && dumps.len() < 10, "{dumps:?}");
    let last = header(dumps.last().unwrap());
    work.heapreplay_ok(&["-o", "full-out", "full.zst"]);
    assert_eq!(last, header(&work.path("full-out.0001.heap")));

    // A point before the kept part is refused, saying why.
    let early = work.heapreplay(&["top", "capped.zst", "--at", "marker:round#1"]);
    assert_eq!(early.code, 1);
    assert!(
        early
            .stderr
            .contains("before the part of the run the trace keeps"),
        "{}",
        early.stderr
    );
}

/// What a replay of `trace` says: `top` at the end, `info`'s exit status.
fn replayed(work: &Work, trace: &str) -> (String, i32) {
    let top = work.heapreplay(&["top", trace, "--at", "end"]);
    assert_eq!(top.code, 0, "{trace}: {}", top.stderr);
    let info = work.heapreplay(&["info", trace]);
    (without_name_and_time(&top.stdout, trace), info.code)
}

#[test]
fn a_fold_killed_at_any_point_or_cut_short_changes_nothing() {
    let work = Work::new("keep_killed");
    let program = work.compile("longrun.c", "longrun", &[]);
    let ran = work.record(&program, &["200", "0"], "trace.zst");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let expected = replayed(&work, "trace.zst");
    assert_eq!(expected.1, 0);

    // Killed after 0 to 300 ms: a fold of this trace takes about 100 ms.
    for delay_ms in [0, 5, 15, 30, 50, 80, 120, 180, 300] {
        std::fs::copy(work.path("trace.zst"), work.path("kill.zst")).unwrap();
        let mut keeper = Command::new(heapreplay())
            .args(["keep", "kill.zst"])
            .env("HEAPREPLAY_MAX_SIZE", "1MB")
            .current_dir(work.path(""))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = keeper.kill();
        let _ = keeper.wait();
        assert_eq!(
            replayed(&work, "kill.zst"),
            expected,
            "killed after {delay_ms} ms"
        );
        // Folding again finishes the job.
        work.heapreplay_ok(&["keep", "--max-size", "1MB", "kill.zst"]);
        assert_eq!(
            replayed(&work, "kill.zst"),
            expected,
            "after {delay_ms} ms, folded again"
        );
        assert!(disk_use(&work.path("kill.zst")) <= CAP);
    }

    // A fold cut short in its one write (a full disk, a kill mid-write) is
    // ignored: the trace reads as before it, with nothing counted twice.
    std::fs::copy(work.path("trace.zst"), work.path("folded.zst")).unwrap();
    let before = std::fs::read(work.path("trace.zst")).unwrap();
    let mut folding = Command::new(heapreplay());
    folding
        .args(["keep", "--max-size", "1MB", "folded.zst"])
        .current_dir(work.path(""));
    run_ok(&mut folding);
    let group = std::fs::read(work.path("folded.zst")).unwrap()[before.len()..].to_vec();
    assert!(group.len() > 1000);
    for cut in [13, 20, 60, 200, group.len() / 2, group.len() - 1] {
        let mut torn = before.clone();
        torn.extend_from_slice(&group[..cut]);
        std::fs::write(work.path("torn.zst"), &torn).unwrap();
        let (top, code) = replayed(&work, "torn.zst");
        assert_eq!((top, code), expected, "cut after {cut} bytes");
        let info = work.heapreplay(&["info", "torn.zst"]).stdout;
        assert!(
            info.contains("folds:      1 ignored"),
            "cut after {cut}: {info}"
        );
    }
    // Whole, but stopped before its gaps were made: the fold is the
    // trace's start, and the next keeper makes the gaps.
    let mut whole = before.clone();
    whole.extend_from_slice(&group);
    std::fs::write(work.path("whole.zst"), &whole).unwrap();
    assert_eq!(replayed(&work, "whole.zst"), expected);
    let info = work.heapreplay_ok(&["info", "whole.zst"]).stdout;
    assert!(info.contains("kept:"), "{info}");
    assert!(disk_use(&work.path("whole.zst")) > CAP);
    work.heapreplay_ok(&["keep", "--max-size", "1MB", "whole.zst"]);
    assert_eq!(replayed(&work, "whole.zst"), expected);
    assert!(
        disk_use(&work.path("whole.zst")) <= CAP,
        "its gaps were not made"
    );
}

#[test]
fn a_damaged_folded_trace_is_said_damaged_never_misread() {
    let work = Work::new("keep_damaged");
    let program = work.compile("longrun.c", "longrun", &[]);
    assert_eq!(work.record(&program, &["120", "0"], "trace.zst").code, 0);
    work.heapreplay_ok(&["keep", "--max-size", "1MB", "trace.zst"]);
    let info = work.heapreplay_ok(&["info", "trace.zst"]).stdout;
    assert!(info.contains("kept:"), "not folded: {info}");
    let folded = std::fs::read(work.path("trace.zst")).unwrap();
    let intact = work
        .heapreplay_ok(&["top", "trace.zst", "--at", "end"])
        .stdout;
    // Bytes that hold something: the file's head, and what follows the
    // folded part (its gap is a hole that nothing reads).
    let mut places: Vec<usize> = (0..40).map(|i| i * 37 % 300).collect();
    let tail = folded.len() - (CAP as usize).min(folded.len() - 300);
    places.extend((0..100).map(|i| tail + (i * 7919) % (folded.len() - tail)));
    for at in places {
        let mut bad = folded.clone();
        bad[at] ^= 0x40;
        std::fs::write(work.path("bad.zst"), &bad).unwrap();
        let top = work.heapreplay(&["top", "bad.zst", "--at", "end"]);
        assert!(
            [0, 1, 3].contains(&top.code) && !top.stderr.contains("panicked"),
            "byte {at}: exit {}: {}",
            top.code,
            top.stderr
        );
        // Exit 0 only with the intact trace's numbers (a flip in bytes no
        // replay reads changes nothing).
        if top.code == 0 {
            assert_eq!(
                without_name_and_time(&top.stdout, "bad.zst"),
                without_name_and_time(&intact, "trace.zst"),
                "byte {at} flipped: exit 0 with other numbers"
            );
        }
    }
}

#[test]
fn a_fold_of_many_threads_cuts_where_every_event_before_is_written() {
    let work = Work::new("keep_threads");
    let program = work.compile("threads.c", "threads", &["-O2"]);
    // Four threads, and a marker every few milliseconds: each one makes the
    // recorder write a Progress record, where a fold may cut, while other
    // threads' records still hold events from before it.
    let mut child = Command::new(&program)
        .args(["4", "400000"])
        .current_dir(work.path(""))
        .env("LD_PRELOAD", librecord())
        .env("HEAPREPLAY_OUT", work.path("trace.zst"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    // Signals only once the recorder's handler is there (the trace file is
    // claimed before it is installed): SIGUSR2 would end the program.
    let pid = child.id();
    let catches_usr2 = || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
        status.ok().is_some_and(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("SigCgt:"))
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
                .is_some_and(|mask| mask & (1 << (libc::SIGUSR2 - 1)) != 0)
        })
    };
    while !catches_usr2() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "ended before catching SIGUSR2"
        );
        std::thread::sleep(Duration::from_millis(1));
        assert!(started.elapsed() < Duration::from_secs(60), "no handler");
    }
    while child.try_wait().unwrap().is_none() {
        let _ = Command::new("kill")
            .args(["-USR2", &child.id().to_string()])
            .status();
        std::thread::sleep(Duration::from_millis(3));
        assert!(started.elapsed() < Duration::from_secs(60), "hung");
    }
    let marks = work.heapreplay_ok(&["info", "trace.zst"]).stdout;
    let markers = marks.matches("SIGUSR2  (thread").count();
    assert!(markers >= 4, "only {markers} markers:\n{marks}");
    // What `top` at the end and `leaks` say of a trace.
    let said = |trace: &str| -> Vec<String> {
        [vec!["top", trace, "--at", "end"], vec!["leaks", trace]]
            .iter()
            .map(|args| without_name_and_time(&work.heapreplay_ok(args).stdout, trace))
            .collect()
    };
    let expected = said("trace.zst");
    std::fs::copy(work.path("trace.zst"), work.path("folded.zst")).unwrap();
    let len = std::fs::metadata(work.path("folded.zst")).unwrap().len();
    let size = format!("{}KB", (len / 3 / 1024).max(1024));
    work.heapreplay_ok(&["keep", "--max-size", &size, "folded.zst"]);
    let info = work.heapreplay_ok(&["info", "folded.zst"]).stdout;
    assert!(info.contains("kept:"), "not folded: {info}");
    assert_eq!(said("folded.zst"), expected);
    // The run's peak, before the kept part, keeps its time.
    let peak_line = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("peak:"))
            .map(str::to_string)
    };
    assert_eq!(peak_line(&info), peak_line(&marks));
}

#[test]
fn what_cannot_be_kept_is_refused_in_one_line() {
    let work = Work::new("keep_refusals");
    let program = work.compile("longrun.c", "longrun", &[]);
    assert_eq!(work.record(&program, &["100", "0"], "trace.zst").code, 0);
    let no_size = work.heapreplay(&["keep", "trace.zst"]);
    assert_eq!(no_size.code, 1);
    assert!(
        no_size.stderr.contains("no size given"),
        "{}",
        no_size.stderr
    );
    let tiny = work.heapreplay(&["keep", "--max-size", "10KB", "trace.zst"]);
    assert_eq!(tiny.code, 2);
    assert!(tiny.stderr.contains("too small"), "{}", tiny.stderr);
    work.heapreplay_ok(&["compact", "trace.zst", "-o", "cold.zst"]);
    let cold = work.heapreplay(&["keep", "--max-size", "1MB", "cold.zst"]);
    assert_eq!(cold.code, 1);
    assert!(cold.stderr.contains("is compacted"), "{}", cold.stderr);
    assert_eq!(cold.stderr.lines().count(), 1, "{}", cold.stderr);
    // With the cap set and nothing folding, the recorder stops at four
    // times it, says so once, and the program runs on unchanged.
    let unkept = run(Command::new(&program)
        .args(["800", "0"])
        .current_dir(work.path(""))
        .env("LD_PRELOAD", librecord())
        .env("HEAPREPLAY_OUT", work.path("unkept.zst"))
        .env("HEAPREPLAY_MAX_SIZE", "1MB"));
    assert_eq!(unkept.code, 0, "{}", unkept.stderr);
    assert_eq!(unkept.stdout, "rounds=800 kept=32000\n");
    assert_eq!(
        unkept.stderr.matches("HEAPREPLAY_MAX_SIZE").count(),
        1,
        "{}",
        unkept.stderr
    );
    assert!(
        unkept.stderr.contains("nothing is folding it"),
        "{}",
        unkept.stderr
    );
    let used = disk_use(&work.path("unkept.zst"));
    assert!(used <= 4 * CAP + CAP, "{used} bytes on disk");
    // Folded, it is not compacted either.
    work.heapreplay_ok(&["keep", "--max-size", "1MB", "trace.zst"]);
    let compact = work.heapreplay(&["compact", "trace.zst", "-o", "c2.zst"]);
    assert_eq!(compact.code, 1);
    assert!(compact.stderr.contains("is folded"), "{}", compact.stderr);
}

#[test]
fn a_folded_trace_gives_windows_and_a_report_from_its_fold() {
    let work = Work::new("keep_window");
    let program = work.compile("longrun.c", "longrun", &[]);
    assert_eq!(work.record(&program, &["120", "0"], "trace.zst").code, 0);
    work.heapreplay_ok(&["keep", "--max-size", "1MB", "trace.zst"]);
    let info = work.heapreplay_ok(&["info", "trace.zst"]).stdout;
    assert!(info.contains("kept:"), "not folded: {info}");
    // A window with no start begins at the fold: what it left live is
    // part of what the end holds.
    let window = work
        .heapreplay_ok(&["leaks", "--to", "end", "trace.zst"])
        .stdout;
    assert!(window.starts_with("trace.zst from "), "{window}");
    let live = |text: &str| -> u64 {
        let first = text.lines().next().unwrap();
        first
            .split(": ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .replace(',', "")
            .parse()
            .unwrap()
    };
    let at_end = work.heapreplay_ok(&["leaks", "trace.zst"]).stdout;
    assert!(live(&window) <= live(&at_end), "{window}\n{at_end}");
    // The start itself is before what the trace keeps: refused, in one line.
    let before = work.heapreplay(&["leaks", "--from", "start", "trace.zst"]);
    assert_ne!(before.code, 0);
    assert!(
        before
            .stderr
            .contains("before the part of the run the trace keeps"),
        "{}",
        before.stderr
    );
    // A report spreads its moments over the part kept.
    let made = work.heapreplay_ok(&["report", "--moments", "10", "-o", "r.html", "trace.zst"]);
    assert!(made.stderr.contains("wrote r.html (1"), "{}", made.stderr);
}
