//! The live-trace rules of FORMAT.md on crafted traces, with no timing in
//! play: a trace without an End record whose file another process holds
//! locked is read up to its newest Progress record's seq and no further;
//! what follows that record (a record being written) is not damage, but
//! damage before it is; once the lock is gone the same file is a trace cut
//! short, whose torn tail is damage.

use heapreplay_e2e::{hostile, Work};
use heapreplay_engine::Trace;
use heapreplay_format::info::{encode_clock, to_bytes};
use heapreplay_format::reader::{blank_header, encode_record, record_compressor, scan};
use heapreplay_format::{ProgressInfo, RecordKind, RECORD_PREFIX_LEN};
use std::os::fd::AsRawFd;

/// The generator's valid trace without its End record, with a Progress
/// record after half of its events records, and half of another
/// events record after it (a record being written). Returns the bytes, the
/// Progress record's seq, and where in the bytes the events records before
/// it are.
fn live_bytes() -> (Vec<u8>, u64, Vec<std::ops::Range<usize>>) {
    let case = hostile::named_case("valid", 11).unwrap();
    let scanned = scan(&case.bytes);
    let bytes_of = |r: &heapreplay_format::RawRecord| {
        let start = r.offset as usize;
        start..start + RECORD_PREFIX_LEN + r.payload.len()
    };
    let records: Vec<_> = scanned
        .records
        .iter()
        .filter(|r| r.header.kind != RecordKind::End)
        .collect();
    let events: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].header.kind == RecordKind::Events)
        .collect();
    assert!(events.len() >= 4, "{} events records", events.len());
    // Cut after half the events records: the mark is the lowest seq of
    // every events record and marker after the cut.
    let cut = events[events.len() / 2];
    let mark = records[cut..]
        .iter()
        .filter(|r| matches!(r.header.kind, RecordKind::Events | RecordKind::Markers))
        .map(|r| r.header.first_seq)
        .min()
        .unwrap();
    let mut out = Vec::new();
    let mut before = Vec::new();
    for r in &records[..cut] {
        let range = bytes_of(r);
        if r.header.kind == RecordKind::Events {
            before.push(out.len()..out.len() + range.len());
        }
        out.extend_from_slice(&case.bytes[range]);
    }
    // As the recorder ends a flush: a clock sample, then the Progress record.
    let mut compressor = record_compressor(1).unwrap();
    let mut clock = blank_header(RecordKind::Clock);
    clock.first_seq = mark;
    clock.last_seq = mark;
    clock.count = 1;
    let sample = [heapreplay_format::ClockSample {
        seq: mark,
        ns: 5_000_000,
    }];
    out.extend(encode_record(&mut compressor, clock, &encode_clock(&sample)).unwrap());
    let mut header = blank_header(RecordKind::Progress);
    header.first_seq = mark;
    header.last_seq = mark;
    let payload = to_bytes(&ProgressInfo {
        complete_below: mark,
        ns: 5_000_000,
    })
    .unwrap();
    out.extend(encode_record(&mut compressor, header, &payload).unwrap());
    for r in &records[cut..] {
        out.extend_from_slice(&case.bytes[bytes_of(r)]);
    }
    // A record the recorder is still writing: only its first half is there.
    let torn = bytes_of(records[events[events.len() - 1]]);
    let half = torn.start + torn.len() / 2;
    out.extend_from_slice(&case.bytes[torn.start..half]);
    (out, mark, before)
}

/// Holds the file's exclusive lock, as a recorder writing it does, until
/// dropped.
struct Recorder {
    _file: std::fs::File,
}

impl Recorder {
    fn lock(path: &std::path::Path) -> Recorder {
        let file = std::fs::File::open(path).unwrap();
        // SAFETY: flock on a descriptor we own.
        assert_eq!(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) }, 0);
        Recorder { _file: file }
    }
}

/// Events the trace at `path`, read as a finished one, holds below `mark`.
fn events_below(path: &std::path::Path, mark: u64) -> u64 {
    let trace = Trace::open(path).unwrap();
    assert!(trace.live.is_none());
    let mut n = 0;
    trace
        .for_each_event(false, |e| {
            if e.seq < mark && e.kind != heapreplay_format::EventKind::Retire {
                n += 1;
            }
            Ok::<(), ()>(())
        })
        .unwrap();
    n
}

fn events_line(info: &str) -> &str {
    info.lines().find(|l| l.starts_with("events:")).unwrap()
}

#[test]
fn a_locked_trace_is_read_to_its_mark_and_its_torn_tail_is_no_damage() {
    let work = Work::new("live_crafted");
    let (bytes, mark, _) = live_bytes();
    let path = work.path("live.zst");
    std::fs::write(&path, &bytes).unwrap();
    let expected = events_below(&path, mark);
    assert!(expected > 10, "{expected} events below the mark");

    let recorder = Recorder::lock(&path);
    let info = work.heapreplay(&["info", "live.zst"]);
    assert_eq!(info.code, 0, "{}{}", info.stdout, info.stderr);
    assert!(
        info.stdout
            .contains("still being written by pid 4242; up to "),
        "{}",
        info.stdout
    );
    assert!(info.stdout.contains("damage:     none"), "{}", info.stdout);
    assert!(
        events_line(&info.stdout).starts_with(&format!("events:     {expected} ")),
        "{} (expected {expected} events below seq {mark})",
        events_line(&info.stdout)
    );
    let top = work.heapreplay(&["top", "live.zst"]);
    assert_eq!(top.code, 0, "{}", top.stderr);
    drop(recorder);

    // No longer locked: the same file is a trace cut short, torn tail and all.
    let info = work.heapreplay(&["info", "live.zst"]);
    assert_eq!(info.code, 3, "{}", info.stdout);
    assert!(info.stdout.contains("cut short"), "{}", info.stdout);
    assert!(
        !info.stdout.contains("still being written"),
        "{}",
        info.stdout
    );
}

/// `live.zst` in `work`: the live trace with a byte of its first events
/// record's compressed payload flipped, held locked. Returns that record's
/// offset and the lock.
fn damaged_and_locked(work: &Work) -> (usize, Recorder) {
    let (mut bytes, _, before) = live_bytes();
    let record = before[0].start;
    bytes[record + RECORD_PREFIX_LEN + 4] ^= 0x55;
    let path = work.path("live.zst");
    std::fs::write(&path, &bytes).unwrap();
    (record, Recorder::lock(&path))
}

#[test]
fn damage_before_the_mark_of_a_locked_trace_is_damage() {
    let work = Work::new("live_crafted_damage");
    let (damaged, _recorder) = damaged_and_locked(&work);
    let info = work.heapreplay(&["info", "live.zst"]);
    assert_eq!(info.code, 3, "{}", info.stdout);
    assert!(
        info.stdout.contains("still being written"),
        "{}",
        info.stdout
    );
    assert!(
        info.stdout.contains(&format!("at offset {damaged}:")),
        "{}",
        info.stdout
    );
}

/// A child process killed if the test fails before it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn follow_says_damage_before_the_mark_at_once_and_ends_with_status_3() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::Duration;
    let work = Work::new("live_crafted_follow");
    let (damaged, recorder) = damaged_and_locked(&work);
    let mut follow = Child(
        Command::new(heapreplay_e2e::heapreplay())
            .args(["--follow", "-o", "f", "live.zst"])
            .current_dir(&work.dir)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = BufReader::new(follow.0.stderr.take().unwrap());
    let (lines, said) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    // While the trace is still held, the damage is said.
    let damage = format!("damaged at offset {damaged}:");
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains(&damage)) {
        match said.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no damage said while the trace is held: {seen:?}"),
        }
    }
    assert!(
        follow.0.try_wait().unwrap().is_none(),
        "--follow ended early: {seen:?}"
    );
    drop(recorder);
    let status = follow.0.wait().unwrap();
    seen.extend(said.iter());
    assert_eq!(status.code(), Some(3), "{seen:?}");
    assert!(
        seen.iter().any(|l| l.contains("the output is partial")),
        "{seen:?}"
    );
}
