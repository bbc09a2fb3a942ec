//! The same profiles whatever the number of replay threads.

use heapreplay_e2e::*;
use std::process::Command;

fn replay_all(work: &Work, trace: &str, threads: &str, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let r = work.heapreplay(&[
        "-q",
        "--threads",
        threads,
        "--interval",
        "4MB",
        "--inuse-interval",
        "1MB",
        "--dealloc-interval",
        "6MB",
        "--at-peak",
        "--at-exit",
        "-o",
        prefix,
        trace,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut files: Vec<(String, Vec<u8>)> = profiles(&work.path(prefix))
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .replacen(prefix, "", 1);
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn one_and_many_threads_write_identical_profiles() {
    let work = Work::new("replay_threads");
    // A synthetic trace: 4 threads, interleaved records, 2 million events.
    run_ok(
        Command::new(artifact("heapreplay-synth"))
            .arg(work.path("synth.zst"))
            .arg("2000000"),
    );
    // And a recorded one: 8 threads allocating at once.
    let exe = work.compile("threads.c", "threads", &["-O2"]);
    let ran = work.record(&exe, &["8", "50000"], "recorded.zst");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    for trace in ["synth.zst", "recorded.zst"] {
        let one = replay_all(&work, trace, "1", "one");
        assert!(one.len() >= 5, "{trace}: only {} profiles", one.len());
        for n in ["2", "4"] {
            let many = replay_all(&work, trace, n, &format!("many{n}"));
            assert_eq!(
                one.len(),
                many.len(),
                "{trace}: number of profiles with {n} threads"
            );
            for ((a, x), (b, y)) in one.iter().zip(&many) {
                assert_eq!(a, b);
                assert!(x == y, "{trace}: {a} differs between 1 and {n} threads");
            }
        }
    }
}
