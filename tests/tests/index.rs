//! The seeking index: a recorded service (two threads churning, the main
//! thread growing and placing markers) is replayed at many points, with
//! several rules and thread counts, once from the start (the index off) and
//! once from the checkpoints. Every output must be byte-identical, and the
//! checkpoints must really be used. A foreign, cut or damaged index is never
//! used; a live trace's index is extended as the trace grows.

use heapreplay_e2e::service::Service;
use heapreplay_e2e::*;
use std::time::Duration;

/// Checkpoints this many events apart: many in a trace of a few seconds.
const SPACING: &str = "20000";

fn indexed() -> Vec<(&'static str, &'static str)> {
    vec![
        ("HEAPREPLAY_INDEX", "explain"),
        ("HEAPREPLAY_CHECKPOINT_EVERY", SPACING),
    ]
}

const OFF: &[(&str, &str)] = &[("HEAPREPLAY_INDEX", "off")];

/// Records the service through `rounds` of growth, each followed by a
/// marker, with churn between them.
fn record_service(work: &Work, rounds: usize) {
    let exe = work.compile("service.c", "service", &[]);
    let mut service = Service::start(work, &exe);
    for _ in 0..rounds {
        service.ask("grow 200");
        std::thread::sleep(Duration::from_millis(120));
        service.ask("mark");
        std::thread::sleep(Duration::from_millis(120));
    }
    service.stop();
}

/// The recording's length in ms, from `info`.
fn duration_ms(work: &Work, trace: &str) -> u64 {
    let info = work.heapreplay_env(OFF, &["info", trace]).stdout;
    let line = info.lines().find(|l| l.starts_with("recorded:")).unwrap();
    let secs = line
        .split(" for ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    (secs.parse::<f64>().unwrap() * 1000.0) as u64
}

/// The files a replay wrote under `dir`, with their contents, by name.
fn written(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// Runs `args` (a command whose output is on stdout, or in `-o DIR/...`)
/// from the start and from the checkpoints; the outputs must be equal.
/// Returns the indexed run's stderr.
fn same_either_way(work: &Work, args: &[&str]) -> String {
    let mut outs = Vec::new();
    let mut stderr = String::new();
    for (side, env) in [("off", OFF.to_vec()), ("on", indexed())] {
        let dir = work.path(side);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let args: Vec<String> = args.iter().map(|a| a.replace("{out}", side)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = work.heapreplay_env(&env, &args);
        assert_eq!(r.code, 0, "heapreplay {args:?} ({side}): {}", r.stderr);
        outs.push((r.stdout, written(&dir)));
        stderr = r.stderr;
    }
    assert!(
        !outs[0].0.is_empty() || !outs[0].1.is_empty(),
        "{args:?}: no output"
    );
    assert!(
        outs[0] == outs[1],
        "{args:?}: the output from the checkpoints differs from the output from the start"
    );
    stderr
}

#[test]
fn any_point_replayed_from_a_checkpoint_equals_the_replay_from_the_start() {
    let work = Work::new("index_points");
    record_service(&work, 4);
    let ms = duration_ms(&work, "trace.zst");
    assert!(ms > 500, "the service ran only {ms} ms");

    // A full pass builds the index.
    let built = work.heapreplay_env(&indexed(), &["info", "trace.zst"]);
    assert!(built.stderr.contains("written to"), "{}", built.stderr);
    let line = built
        .stdout
        .lines()
        .find(|l| l.starts_with("index:"))
        .unwrap();
    let count: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(count >= 10, "only {count} checkpoints: {line}");
    assert!(work.path("trace.zst.idx").exists());

    let points: Vec<String> = [15, 40, 65, 90]
        .iter()
        .map(|p| format!("{}ms", ms * p / 100))
        .collect();
    for threads in ["1", "2"] {
        let t = ["--threads", threads];
        for at in &points {
            let said = same_either_way(
                &work,
                &[&["top", "-q", "--at", at], &t[..], &["trace.zst"]].concat(),
            );
            if at != &points[0] {
                assert!(
                    said.contains("replaying from checkpoint"),
                    "top --at {at}: {said}"
                );
            }
        }
        for at in ["marker:usr2#2", "marker:usr2#4", "peak", "end"] {
            let said = same_either_way(
                &work,
                &[&["top", "-q", "--at", at], &t[..], &["trace.zst"]].concat(),
            );
            assert!(
                said.contains("replaying from checkpoint"),
                "top --at {at}: {said}"
            );
        }
        same_either_way(&work, &[&["leaks", "-q"], &t[..], &["trace.zst"]].concat());
        // A window: from a checkpoint before its start; one from the start
        // of the run, from the start whatever the index holds.
        let to_end = &["leaks", "-q", "--from", "marker:usr2#2", "--to", "end"];
        let said = same_either_way(&work, &[&to_end[..], &t[..], &["trace.zst"]].concat());
        assert!(said.contains("replaying from checkpoint"), "{said}");
        let from_start = &["leaks", "-q", "--to", "end"];
        let said = same_either_way(&work, &[&from_start[..], &t[..], &["trace.zst"]].concat());
        assert!(said.contains("replaying from the start"), "{said}");
        // ...which holds what leaks holds at the end, stack for stack.
        let whole = work
            .heapreplay_env(OFF, &["leaks", "-q", "trace.zst"])
            .stdout;
        let window = work
            .heapreplay_env(&indexed(), &[&from_start[..], &["trace.zst"]].concat())
            .stdout;
        let stacks = |text: &str| -> Vec<String> {
            text.lines()
                .skip(1)
                .take_while(|l| !l.starts_with("Temporary"))
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        };
        assert!(!stacks(&whole).is_empty(), "{whole}");
        assert_eq!(stacks(&whole), stacks(&window), "{window}");
        same_either_way(
            &work,
            &[
                &[
                    "diff",
                    "-q",
                    "--from",
                    "marker:usr2#1",
                    "--to",
                    "marker:usr2#3",
                ],
                &t[..],
                &["trace.zst"],
            ]
            .concat(),
        );
        // A timeline over a window starts at the checkpoint before it.
        let said = same_either_way(
            &work,
            &[
                &["timeline", "-q", "--from", &points[1], "--to", &points[2]],
                &t[..],
                &["-o", "{out}/window.svg", "trace.zst"],
            ]
            .concat(),
        );
        assert!(
            said.contains("replaying from checkpoint"),
            "timeline: {said}"
        );
        // Replays: every snapshot of the rule, numbered as from the start.
        let times = points[1..].join(",");
        for rule in [
            &["--at-marker", "usr2"][..],
            &["--at", &times],
            &["--at-peak"],
            &["--at-marker", "usr2", "--at-peak", "--at-exit"],
            // An interval rule's state depends on every event: from the start.
            &["--interval", "2MB"],
        ] {
            let said = same_either_way(
                &work,
                &[&["-q", "-o", "{out}/p"], rule, &t[..], &["trace.zst"]].concat(),
            );
            if rule[0] == "--interval" {
                assert!(said.contains("from the start"), "{rule:?}: {said}");
            }
        }
    }
    // The profiles are real: google-pprof reads one written from a checkpoint.
    let r = work.heapreplay_env(
        &indexed(),
        &["-q", "--at", &points[2], "-o", "on/m", "trace.zst"],
    );
    assert!(
        r.stderr.contains("replaying from checkpoint"),
        "{}",
        r.stderr
    );
    let profile = profiles(&work.path("on/m"))
        .pop()
        .expect("no profile written");
    let report = google_pprof("--inuse_space", &work.path("service"), &profile);
    assert!(report.contains_key("grow"), "google-pprof: {report:?}");
}

#[test]
fn a_foreign_cut_or_damaged_index_is_not_used() {
    let work = Work::new("index_stale");
    record_service(&work, 2);
    let ms = duration_ms(&work, "trace.zst");
    let at = format!("{}ms", ms * 3 / 4);
    work.heapreplay_env(&indexed(), &["info", "trace.zst"]);
    let index = std::fs::read(work.path("trace.zst.idx")).unwrap();
    let top = |trace: &str, env: &[(&str, &str)]| {
        work.heapreplay_env(env, &["top", "-q", "--at", &at, trace])
    };
    assert!(top("trace.zst", &indexed())
        .stderr
        .contains("from checkpoint"));

    // Another recording of the same program: its own trace, another's index.
    std::fs::rename(work.path("trace.zst"), work.path("first.zst")).unwrap();
    record_service(&work, 2);
    std::fs::write(work.path("trace.zst.idx"), &index).unwrap();
    let r = top("trace.zst", &indexed());
    assert!(
        r.stderr.contains("from the start (no index)"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stdout, top("trace.zst", OFF).stdout);

    // The first trace cut in half, with its own index: not used.
    let first = std::fs::read(work.path("first.zst")).unwrap();
    std::fs::write(work.path("cut.zst"), &first[..first.len() / 2]).unwrap();
    std::fs::write(work.path("cut.zst.idx"), &index).unwrap();
    let r = work.heapreplay_env(&indexed(), &["leaks", "-q", "cut.zst"]);
    assert!(
        r.stderr.contains("from the start (no index)"),
        "{}",
        r.stderr
    );

    // A damaged index (a byte flipped anywhere) is refused or still exact.
    std::fs::write(work.path("first.zst.idx"), &index).unwrap();
    let expected = top("first.zst", OFF).stdout;
    for at_byte in [9, index.len() / 3, index.len() - 30, index.len() - 3] {
        let mut bad = index.clone();
        bad[at_byte] ^= 0x41;
        std::fs::write(work.path("first.zst.idx"), &bad).unwrap();
        let r = top("first.zst", &[("HEAPREPLAY_INDEX", "explain")]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(
            r.stdout, expected,
            "a flipped byte at {at_byte} changed the answer"
        );
    }
}

#[test]
fn a_live_trace_index_grows_with_the_trace() {
    let work = Work::new("index_live");
    let exe = work.compile("service.c", "service", &[]);
    let mut service = Service::start(&work, &exe);
    service.ask("grow 100");
    service.ask("mark");
    // More than the recorder's progress interval: the churn so far is complete.
    std::thread::sleep(Duration::from_millis(1600));
    let first = work.heapreplay_env(&indexed(), &["leaks", "-q", "trace.zst"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(first.stderr.contains("written to"), "{}", first.stderr);
    service.ask("grow 100");
    service.ask("mark");
    std::thread::sleep(Duration::from_millis(1600));
    let second = work.heapreplay_env(&indexed(), &["leaks", "-q", "trace.zst"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second.stderr.contains("replaying from checkpoint"),
        "{}",
        second.stderr
    );
    assert!(second.stderr.contains("written to"), "{}", second.stderr);
    service.stop();
    // Built while the trace grew, the index gives what the finished trace gives.
    for at in ["marker:usr2#1", "marker:usr2#2", "end"] {
        same_either_way(&work, &["top", "-q", "--at", at, "trace.zst"]);
    }
}
