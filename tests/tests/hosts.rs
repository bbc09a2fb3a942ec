//! Programs whose start-up touches what the recorder relies on: they must
//! run to the end, unharmed and recorded.

use heapreplay_e2e::*;
use std::process::Command;

#[test]
fn first_allocation_inside_pthread_getattr_np() {
    let work = Work::new("getattr");
    let exe = work.compile("getattr.c", "getattr", &["-O2"]);
    let ran = work.record_bounded(&exe, &[], "trace.zst");
    assert_eq!(ran.code, 0, "did not finish (124 = hung): {}", ran.stderr);
    let r = work.heapreplay(&["-o", "out", "trace.zst"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let objects = google_pprof("--inuse_objects", &exe, &work.path("out.0001.heap"));
    assert_flat(&objects, "kept_alloc", 200.0, "blocks kept by both threads");
}

#[test]
fn a_rust_program_is_recorded() {
    // heapreplay itself: Rust's runtime asks pthread_getattr_np at start-up,
    // and it spawns decoding threads.
    let work = Work::new("rust_host");
    let synth = artifact("heapreplay-synth");
    run_ok(
        Command::new(&synth)
            .arg(work.path("input.zst"))
            .arg("200000"),
    );
    let inner = work.path("inner");
    let input = work.path("input.zst");
    let args: Vec<&std::ffi::OsStr> = vec![
        "-q".as_ref(),
        "--threads".as_ref(),
        "2".as_ref(),
        "-o".as_ref(),
        inner.as_os_str(),
        input.as_os_str(),
    ];
    let ran = work.record_bounded(&heapreplay(), &args, "trace.zst");
    assert_eq!(ran.code, 0, "did not finish (124 = hung): {}", ran.stderr);
    assert!(work.path("inner.0001.heap").exists());
    let r = work.heapreplay(&["-o", "out", "trace.zst"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let [_, _, allocs, _] = header(&work.path("out.0001.heap"));
    assert!(allocs > 100, "only {allocs} allocations recorded");
}

#[test]
fn two_processes_never_share_a_trace() {
    // A parent and its child both preloaded, one trace path without %p.
    let work = Work::new("shared_path");
    let exe = work.compile("sites.c", "sites", &["-O2"]);
    let ran = run(Command::new("sh")
        .arg("-c")
        .arg(format!("{} ; {}", exe.display(), exe.display()))
        .env("LD_PRELOAD", librecord())
        .env("HEAPREPLAY_OUT", work.path("trace.zst")));
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("is being written by another process"),
        "{}",
        ran.stderr
    );
    let mut traces: Vec<_> = std::fs::read_dir(&work.dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().contains("trace.zst"))
        .collect();
    traces.sort();
    assert_eq!(
        traces.len(),
        3,
        "the shell's trace and one per child: {traces:?}"
    );
    for (i, t) in traces.iter().enumerate() {
        let r = work.heapreplay(&["-o", &format!("p{i}"), t.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}: {}", t.display(), r.stderr);
    }
}
