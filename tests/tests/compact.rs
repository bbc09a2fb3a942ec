//! `heapreplay compact`: real programs recorded, their traces compacted, and
//! every replay, report and export of the compacted trace compared byte for
//! byte with the same of the trace itself (which the other tests check
//! against gperftools, google-pprof, go tool pprof and DuckDB). Then what
//! compaction must not do: lose more than one record to one bad byte, leave
//! a half-written trace behind when killed, or overwrite its own input.

use heapreplay_e2e::*;
use heapreplay_format::synth::{generate, Spec};
use std::path::Path;
use std::process::Command;

/// The files under `dir` and its folders, by path, with their bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            out.extend(
                files(&path)
                    .into_iter()
                    .map(|(n, b)| (format!("{name}/{n}"), b)),
            );
        } else {
            out.push((name, std::fs::read(&path).unwrap()));
        }
    }
    out.sort();
    out
}

/// Runs `args` (where `{trace}` is the trace and `{out}` an output folder)
/// on `hot/trace.zst` and on `cold/trace.zst`: the exit status, stdout,
/// stderr and every file written must be the same.
fn same_on_both(work: &Work, args: &[&str]) {
    same_on_both_env(work, &[], args);
}

/// [`same_on_both`], with environment variables set.
fn same_on_both_env(work: &Work, env: &[(&str, &str)], args: &[&str]) {
    let mut seen = Vec::new();
    for side in ["hot", "cold"] {
        let out = work.path(&format!("{side}-out"));
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir(&out).unwrap();
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                a.replace("{trace}", &format!("{side}/trace.zst"))
                    .replace("{out}", &format!("{side}-out"))
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ran = work.heapreplay_env(env, &args);
        let text = |s: &str| {
            s.replace(&format!("{side}/"), "SIDE/")
                .replace(&format!("{side}-out"), "OUT")
        };
        // `info` says that a compacted trace is one: the only line it adds.
        let said = |s: &str| {
            let lines = s.lines().filter(|l| !l.starts_with("compacted:"));
            text(&lines.map(|l| format!("{l}\n")).collect::<String>())
        };
        // A flame graph's title names its own file.
        let written = files(&out)
            .into_iter()
            .map(|(name, bytes)| match String::from_utf8(bytes) {
                Ok(s) => (name, text(&s).into_bytes()),
                Err(e) => (name, e.into_bytes()),
            })
            .collect::<Vec<_>>();
        seen.push((ran.code, said(&ran.stdout), text(&ran.stderr), written));
    }
    let (hot, cold) = (&seen[0], &seen[1]);
    assert_eq!(
        hot.0, cold.0,
        "{args:?}: exit status\n{}\n{}",
        hot.2, cold.2
    );
    assert_eq!(hot.1, cold.1, "{args:?}: stdout");
    assert_eq!(hot.2, cold.2, "{args:?}: stderr");
    let names = |f: &[(String, Vec<u8>)]| f.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&hot.3), names(&cold.3), "{args:?}: files written");
    for ((name, a), (_, b)) in hot.3.iter().zip(&cold.3) {
        assert!(a == b, "{args:?}: {name} differs");
    }
}

/// Compacts `hot/trace.zst` into `cold/trace.zst`; returns compact's stderr.
fn compact(work: &Work) -> String {
    std::fs::create_dir_all(work.path("cold")).unwrap();
    let ran = work.heapreplay(&["compact", "-o", "cold/trace.zst", "hot/trace.zst"]);
    assert_eq!(ran.code, 0, "compact failed: {}", ran.stderr);
    assert!(ran.stderr.contains("bytes per event"), "{}", ran.stderr);
    ran.stderr
}

/// Records threads.c (4 threads of `iterations` each) into `hot/trace.zst`
/// and compacts it into `cold/trace.zst`.
fn threads_compacted(name: &str, iterations: &str) -> Work {
    let work = Work::new(name);
    let exe = work.compile("threads.c", "threads", &["-O1"]);
    std::fs::create_dir(work.path("hot")).unwrap();
    let ran = work.record(&exe, &["4", iterations], "hot/trace.zst");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    compact(&work);
    work
}

/// The Compacted records of the trace `bytes`: offset and events of each.
fn compacted_records(bytes: &[u8]) -> Vec<(usize, u64)> {
    heapreplay_format::reader::scan(bytes)
        .records
        .iter()
        .filter(|r| r.header.kind == heapreplay_format::RecordKind::Compacted)
        .map(|r| (r.offset as usize, u64::from(r.header.count)))
        .collect()
}

/// Every output the replay side has, on both traces.
fn every_output_the_same(work: &Work) {
    for args in [
        &["info", "{trace}"][..],
        &["--interval", "256KB", "-o", "{out}/p", "{trace}"],
        &[
            "--at-peak",
            "--at",
            "end",
            "--format",
            "pprof",
            "-o",
            "{out}/p",
            "{trace}",
        ],
        &["--at-marker", "usr2", "-o", "{out}/m", "{trace}"],
        &[
            "--format",
            "flamegraph",
            "--sample",
            "alloc_space",
            "-o",
            "{out}/f",
            "{trace}",
        ],
        &["top", "--at", "peak", "{trace}"],
        &["leaks", "{trace}"],
        &["diff", "--from", "peak", "{trace}"],
        &["timeline", "-o", "{out}/t.svg", "{trace}"],
        &["export", "--parquet", "-o", "{out}/x", "{trace}"],
    ] {
        same_on_both(work, args);
    }
    // Without an index to build, a compacted trace's frees are taken as
    // resolved, with no map of live blocks, and parts of its records with no
    // snapshot inside are applied whole: the same bytes still, whatever
    // makes the snapshots.
    let no_index = [("HEAPREPLAY_INDEX", "off")];
    for args in [
        &["--interval", "256KB", "-o", "{out}/p", "{trace}"][..],
        &[
            "--dealloc-interval",
            "128KB",
            "--inuse-interval",
            "64KB",
            "-o",
            "{out}/d",
            "{trace}",
        ],
        &[
            "--time-interval",
            "10ms",
            "--at",
            "20ms",
            "--at-marker",
            "usr2",
            "--at-peak",
            "-o",
            "{out}/t",
            "{trace}",
        ],
        &["top", "--at", "peak", "{trace}"],
        &["leaks", "{trace}"],
    ] {
        same_on_both_env(work, &no_index, args);
    }
}

#[test]
fn a_compacted_c_program_replays_to_the_same_bytes() {
    let work = threads_compacted("compact_threads", "20000");
    // Four threads' events, now in one order: `info` still counts them,
    // and says where they are.
    let info = work.heapreplay_ok(&["info", "cold/trace.zst"]).stdout;
    assert!(!info.contains("threads:    1\n"), "{info}");
    assert!(info.contains("compacted:  "), "{info}");
    let hot = work.heapreplay_ok(&["info", "hot/trace.zst"]).stdout;
    assert!(!hot.contains("compacted:"), "{hot}");
    every_output_the_same(&work);
}

#[test]
fn a_compacted_trace_keeps_the_mapping_calls() {
    // HEAP_PROFILE_MMAP: the mapped memory is in every output, and the
    // compacted trace gives the same (its stacks numbered anew).
    let work = Work::new("compact_mapped");
    let exe = work.compile("mapper.c", "mapper", &["-O1"]);
    std::fs::create_dir(work.path("hot")).unwrap();
    let ran = run(std::process::Command::new(&exe)
        .arg("40")
        .current_dir(&work.dir)
        .env("LD_PRELOAD", librecord())
        .env("HEAPREPLAY_OUT", work.path("hot/trace.zst"))
        .env("HEAP_PROFILE_MMAP", "1"));
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    compact(&work);
    let top = work.heapreplay_ok(&["top", "cold/trace.zst"]).stdout;
    assert!(top.contains("Mapped by the program itself"), "{top}");
    every_output_the_same(&work);
}

/// A Python program that allocates in phases, marking each with SIGUSR2.
const PHASES: &str = "
import os, signal
signal.signal(signal.SIGUSR2, lambda *a: None)
kept = []
for phase in range(4):
    kept.append([{'n': i, 's': str(i) * 3} for i in range(20000)])
    os.kill(os.getpid(), signal.SIGUSR2)
    if phase % 2:
        kept.pop(0)
print(len(kept))
";

#[test]
fn a_compacted_python_run_replays_to_the_same_bytes() {
    let work = Work::new("compact_python");
    std::fs::create_dir(work.path("hot")).unwrap();
    let ran = run(Command::new("/usr/bin/python3")
        .args(["-c", PHASES])
        .current_dir(&work.dir)
        .env("PYTHONMALLOC", "malloc")
        .env("LD_PRELOAD", librecord())
        .env("HEAPREPLAY_OUT", work.path("hot/trace.zst")));
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.stdout.trim(), "2");
    compact(&work);
    let info = work.heapreplay_ok(&["info", "cold/trace.zst"]).stdout;
    assert!(info.contains("SIGUSR2 x4"), "{info}");
    every_output_the_same(&work);
    let size = |p: &str| std::fs::metadata(work.path(p)).unwrap().len();
    let (hot, cold) = (size("hot/trace.zst"), size("cold/trace.zst"));
    assert!(cold < hot, "compacted {cold} bytes, the trace {hot}");
}

/// A synthetic trace of `events` events at `path`.
fn synthetic(path: &Path, events: u64) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let spec = Spec {
        events,
        ..Spec::default()
    };
    generate(&spec, &mut file).unwrap();
}

/// `events: N (...)` of `heapreplay info`.
fn events_of(info: &str) -> u64 {
    let line = info.lines().find(|l| l.starts_with("events:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn one_bad_byte_loses_one_compacted_record() {
    let work = Work::new("compact_damage");
    synthetic(&work.path("trace.zst"), 1_500_000);
    work.heapreplay_ok(&["compact", "-o", "cold.zst", "trace.zst"]);
    let total = events_of(&work.heapreplay_ok(&["info", "trace.zst"]).stdout);
    // The second Compacted record: its offset and its events.
    let mut bytes = std::fs::read(work.path("cold.zst")).unwrap();
    let compacted = compacted_records(&bytes);
    assert!(
        compacted.len() >= 4,
        "{} compacted records",
        compacted.len()
    );
    let (offset, lost) = compacted[1];
    bytes[offset + heapreplay_format::RECORD_PREFIX_LEN + 100] ^= 0x40;
    std::fs::write(work.path("cold.zst"), &bytes).unwrap();
    let info = work.heapreplay(&["info", "cold.zst"]);
    assert_eq!(info.code, 3, "{}", info.stdout);
    assert!(
        info.stdout.contains(&format!("at offset {offset}:")),
        "{}",
        info.stdout
    );
    assert_eq!(events_of(&info.stdout), total - lost, "{}", info.stdout);
}

#[test]
fn a_killed_compaction_leaves_no_trace_behind_and_the_original_intact() {
    let work = Work::new("compact_killed");
    synthetic(&work.path("trace.zst"), 6_000_000);
    let before = work.heapreplay_ok(&["info", "trace.zst"]).stdout;
    let mut child = Command::new(heapreplay())
        .args(["compact", "-q", "-o", "cold.zst", "trace.zst"])
        .current_dir(&work.dir)
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = child.kill();
    let status = child.wait().unwrap();
    if status.success() {
        eprintln!("compaction finished before it could be killed; nothing to check");
        return;
    }
    assert!(!work.path("cold.zst").exists(), "a half-written cold.zst");
    let partial = work.path(&format!("cold.zst.partial-{}", child.id()));
    assert!(
        partial.exists(),
        "the partial file is named after its process"
    );
    let after = work.heapreplay_ok(&["info", "trace.zst"]).stdout;
    assert_eq!(before, after);
    // Compacting again gives a whole trace, counted once, and clears what
    // the killed one left.
    work.heapreplay_ok(&["compact", "-q", "-o", "cold.zst", "trace.zst"]);
    assert!(!partial.exists(), "{} left behind", partial.display());
    let cold = work.heapreplay_ok(&["info", "cold.zst"]).stdout;
    assert_eq!(events_of(&cold), events_of(&before));
}

#[test]
fn compact_refuses_to_write_over_its_trace() {
    let work = Work::new("compact_refusals");
    synthetic(&work.path("trace.zst"), 1000);
    let ran = work.heapreplay(&["compact", "-o", "./trace.zst", "trace.zst"]);
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(ran.stderr.contains("is the trace itself"), "{}", ran.stderr);
    let ran = work.heapreplay(&["compact", "-o", "/nonexistent/c.zst", "trace.zst"]);
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
    assert!(ran.stderr.contains("cannot write"), "{}", ran.stderr);
    // The default name is beside the trace.
    work.heapreplay_ok(&["compact", "trace.zst"]);
    assert!(work.path("trace.compact.zst").exists());
}

#[test]
fn checkpoints_and_seeks_inside_compacted_records_give_the_same_bytes() {
    let work = threads_compacted("compact_seek", "150000");
    let records = compacted_records(&std::fs::read(work.path("cold/trace.zst")).unwrap()).len();
    assert!(records >= 3, "{records} compacted records");
    // Checkpoints every 20,000 events: most fall inside a compacted
    // record, where some of its blocks are live but not yet in the map.
    // (`info` builds the index; its line on the index names the index's
    // share of each file, which differs.)
    let env = [("HEAPREPLAY_CHECKPOINT_EVERY", "20000")];
    for side in ["hot", "cold"] {
        let info = work.heapreplay_env(&env, &["info", &format!("{side}/trace.zst")]);
        assert!(
            info.stdout.contains("checkpoints"),
            "{side}: {}",
            info.stdout
        );
    }
    // Then every point is replayed from the checkpoint before it.
    for args in [
        &["top", "--at", "peak", "{trace}"][..],
        &["leaks", "{trace}"],
        &["diff", "--from", "peak", "--to", "end", "{trace}"],
        &["--at-peak", "-o", "{out}/p", "{trace}"],
        &["--interval", "1MB", "-o", "{out}/i", "{trace}"],
    ] {
        same_on_both_env(&work, &env, args);
    }
}
