//! Bad input to heapreplay: a clear one-line error naming the file, a
//! non-zero exit, whatever can be salvaged, and never a panic.

use heapreplay_e2e::*;
use heapreplay_format::reader::{blank_header, encode_record, record_compressor};
use heapreplay_format::{RecordKind, FORMAT_VERSION};

fn assert_clean_error(r: &Ran, code: i32, needles: &[&str]) {
    assert_eq!(r.code, code, "exit status; stderr: {}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "panic: {}", r.stderr);
    assert!(
        !r.stderr.contains("RUST_BACKTRACE"),
        "backtrace: {}",
        r.stderr
    );
    for n in needles {
        assert!(r.stderr.contains(n), "{n:?} not in stderr: {}", r.stderr);
    }
}

fn one_line(r: &Ran) {
    assert_eq!(
        r.stderr.trim_end().lines().count(),
        1,
        "not one line: {}",
        r.stderr
    );
}

#[test]
fn unreadable_files_are_refused_in_one_line() {
    let work = Work::new("bad_files");
    let r = work.heapreplay(&["missing.zst"]);
    assert_clean_error(&r, 1, &["missing.zst", "No such file"]);
    one_line(&r);

    std::fs::create_dir(work.path("adir")).unwrap();
    let r = work.heapreplay(&["adir"]);
    assert_clean_error(&r, 1, &["adir", "directory"]);
    one_line(&r);

    std::fs::write(work.path("empty.zst"), b"").unwrap();
    let r = work.heapreplay(&["empty.zst"]);
    assert_clean_error(&r, 1, &["empty.zst", "empty"]);
    one_line(&r);

    let noise: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(work.path("noise.zst"), noise).unwrap();
    let r = work.heapreplay(&["noise.zst"]);
    assert_clean_error(&r, 1, &["noise.zst", "not a heapreplay trace"]);
    one_line(&r);

    // A plain zstd file is not a trace either.
    std::fs::write(
        work.path("plain.zst"),
        zstd::encode_all(&b"hello"[..], 3).unwrap(),
    )
    .unwrap();
    let r = work.heapreplay(&["plain.zst"]);
    assert_clean_error(&r, 1, &["plain.zst", "not a heapreplay trace"]);
    one_line(&r);
}

#[test]
fn newer_format_version_is_refused() {
    let work = Work::new("bad_version");
    let mut header = blank_header(RecordKind::FileInfo);
    header.version = FORMAT_VERSION + 1;
    let bytes = encode_record(&mut record_compressor(1).unwrap(), header, b"future").unwrap();
    std::fs::write(work.path("future.zst"), bytes).unwrap();
    let r = work.heapreplay(&["future.zst"]);
    let newer = format!("version {}", FORMAT_VERSION + 1);
    assert_clean_error(&r, 1, &["future.zst", &newer, "upgrade heapreplay"]);
    one_line(&r);

    // Version 1 stored events as rows; it is refused with its own message.
    let mut header = blank_header(RecordKind::FileInfo);
    header.version = 1;
    let bytes = encode_record(&mut record_compressor(1).unwrap(), header, b"past").unwrap();
    std::fs::write(work.path("past.zst"), bytes).unwrap();
    let r = work.heapreplay(&["past.zst"]);
    assert_clean_error(
        &r,
        1,
        &[
            "past.zst",
            "version 1",
            "older heapreplay",
            "record the program again",
        ],
    );
    one_line(&r);
}

#[test]
fn bad_flag_values_are_refused() {
    let work = Work::new("bad_flags");
    for (value, needle) in [
        ("0", "greater than zero"),
        ("10XB", "unknown unit"),
        ("lots", "not a size"),
    ] {
        let r = work.heapreplay(&["--interval", value, "trace.zst"]);
        assert_clean_error(&r, 2, &[needle, "--interval"]);
    }
    for (flag, value, needle) in [
        ("--dealloc-interval", "-5MB", "negative"),
        ("--inuse-interval", "0", "greater than zero"),
        ("--time-interval", "0s", "greater than zero"),
        ("--time-interval", "3 fortnights", "unknown unit"),
        ("--at-marker", "SIGFOO", "not a signal"),
        ("--at-marker", "rtmin+99", "not a signal"),
        ("--at", "soon", "not a duration"),
        ("--at", "2026-13-45T99:00:00Z", "not a time"),
    ] {
        let r = work.heapreplay(&[&format!("{flag}={value}"), "trace.zst"]);
        assert_clean_error(&r, 2, &[needle, flag]);
    }
    let r = work.heapreplay(&["--no-such-flag", "trace.zst"]);
    assert_clean_error(&r, 2, &["--no-such-flag"]);
}

/// A trace with several events records, from two threads.
fn recorded_trace(work: &Work) -> Vec<u8> {
    let exe = work.compile("threads.c", "threads", &["-O2"]);
    let ran = work.record(&exe, &["2", "50000"], "good.zst");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    std::fs::read(work.path("good.zst")).unwrap()
}

#[test]
fn truncated_trace_is_salvaged() {
    let work = Work::new("truncated");
    let good = recorded_trace(&work);
    std::fs::write(work.path("cut.zst"), &good[..good.len() * 3 / 5]).unwrap();
    let r = work.heapreplay(&["-o", "cut", "cut.zst"]);
    assert_clean_error(&r, 3, &["cut.zst", "truncated", "replayed"]);
    let profile = work.path("cut.0001.heap");
    assert!(profile.exists(), "nothing salvaged");
    // Part of the events survived.
    let [_, _, allocs, _] = header(&profile);
    assert!(
        allocs > 0 && allocs < 100_000,
        "salvaged {allocs} allocations"
    );
}

#[test]
fn corrupt_middle_record_is_skipped_and_reported() {
    let work = Work::new("corrupt");
    let mut bytes = recorded_trace(&work);
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0xa5;
    }
    std::fs::write(work.path("bad.zst"), &bytes).unwrap();
    let r = work.heapreplay(&["-o", "bad", "bad.zst"]);
    assert_clean_error(&r, 3, &["bad.zst", "damaged at offset", "replayed"]);
    let [_, _, allocs, _] = header(&work.path("bad.0001.heap"));
    assert!(
        allocs > 50_000 && allocs < 100_000,
        "salvaged {allocs} allocations"
    );
}

#[test]
fn unwritable_output_is_reported() {
    let work = Work::new("unwritable");
    let _ = recorded_trace(&work);
    let r = work.heapreplay(&["-o", "/nonexistent/dir/p", "good.zst"]);
    assert_clean_error(&r, 1, &["/nonexistent/dir/p.0001.heap", "cannot write"]);
    // Refused before the pass: no "Dumping heap profile to" a file that
    // is then not written.
    one_line(&r);
}

#[test]
fn the_command_line_as_people_type_it() {
    let work = Work::new("typed");
    let _ = recorded_trace(&work);
    // Options before the subcommand mean what they mean after it.
    let after = work.heapreplay(&["top", "-q", "--threads", "1", "-n", "2", "good.zst"]);
    assert_eq!(after.code, 0, "{}", after.stderr);
    assert!(after.stdout.contains("top 2 of"), "{}", after.stdout);
    let before = work.heapreplay(&["-q", "--threads", "1", "-n", "2", "top", "good.zst"]);
    assert_eq!(before.code, 0, "{}", before.stderr);
    assert_eq!(before.stdout, after.stdout);
    // A replay option is not top's.
    let r = work.heapreplay(&["--interval", "1MB", "top", "good.zst"]);
    assert_clean_error(&r, 2, &["'--interval'"]);
    // A mistyped subcommand is named, with the one meant.
    let r = work.heapreplay(&["leak", "good.zst"]);
    assert_clean_error(&r, 2, &["no subcommand 'leak'", "did you mean 'leaks'?"]);
    one_line(&r);
    // A negative value is refused for what it is, not as an unknown option.
    for (option, value) in [("--interval", "-5"), ("--time-interval", "-5s")] {
        let r = work.heapreplay(&[option, value, "good.zst"]);
        assert_clean_error(&r, 2, &[option, "negative"]);
        assert!(!r.stderr.contains("-- -5"), "{}", r.stderr);
    }
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    let work = Work::new("closed_pipe");
    let _ = recorded_trace(&work);
    let r = run(std::process::Command::new("sh").arg("-c").arg(format!(
        "{} info {} | head -c 10",
        heapreplay().display(),
        work.path("good.zst").display()
    )));
    assert_eq!(r.code, 0);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert_eq!(r.stdout, "trace:    ");
}

/// A trace cut shorter by another program while it is replayed (its pages
/// vanish from under the memory map) ends in a one-line error, not SIGBUS.
#[test]
fn a_trace_truncated_while_read_is_a_one_line_error() {
    let work = Work::new("shrinking");
    let trace = work.path("big.zst");
    // 30M events: a one-thread replay takes seconds, the cut comes early.
    let made = run(std::process::Command::new(artifact("heapreplay-synth"))
        .arg(&trace)
        .args(["30000000", "4", "2000", "20000"]));
    assert_eq!(made.code, 0, "{}", made.stderr);
    let child = std::process::Command::new(heapreplay())
        .args(["-q", "--threads", "1", "--at-exit", "-o"])
        .arg(work.path("out"))
        .arg(&trace)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&trace)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let r = Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_clean_error(
        &r,
        1,
        &["big.zst", "became shorter while it was being read"],
    );
    one_line(&r);
}

#[test]
fn a_time_past_the_end_and_a_missing_export_folder_are_refused() {
    let work = Work::new("past_the_end");
    let _ = recorded_trace(&work);
    // A replay at a time the trace never reached writes nothing: status 1.
    let r = work.heapreplay(&["--at", "99h", "-o", "p", "good.zst"]);
    assert_clean_error(
        &r,
        1,
        &["good.zst", "--at 356400 s is after the end of the trace"],
    );
    assert!(profiles(&work.path("p")).is_empty());
    // With a point inside the trace too, that one is written; still status 1.
    let r = work.heapreplay(&["-q", "--at", "1ms,99h", "-o", "q", "good.zst"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(profiles(&work.path("q")).len(), 1);
    // An export into a folder whose parent does not exist makes nothing.
    let missing = work.path("no/such/folder");
    let shown = missing.display().to_string();
    let r = work.heapreplay(&["export", "--parquet", "-o", &shown, "good.zst"]);
    assert_clean_error(&r, 1, &[&shown, "cannot create"]);
    one_line(&r);
    assert!(!work.path("no").exists(), "export made the missing folders");
}
