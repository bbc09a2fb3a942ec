//! Many threads allocating at once: no event is lost.

use heapreplay_e2e::*;

fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
        .parse()
        .unwrap()
}

#[test]
fn eight_threads_lose_no_event() {
    let work = Work::new("threads");
    let exe = work.compile("threads.c", "threads", &["-O2", "-fomit-frame-pointer"]);
    // 8 threads x 250,000 allocations, each but the last 16 per thread freed:
    // four million events.
    let ran = work.record(&exe, &["8", "250000"], "trace.zst");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let own = ran.stdout.trim();
    let r = work.heapreplay(&["-o", "out", "trace.zst"]);
    assert_eq!(r.code, 0, "replay reported a problem: {}", r.stderr);
    let profile = work.path("out.0001.heap");

    let allocs = google_pprof("--alloc_objects", &exe, &profile);
    assert_flat(
        &allocs,
        "worker_alloc",
        field(own, "allocs") as f64,
        "allocations",
    );
    let inuse = google_pprof("--inuse_objects", &exe, &profile);
    assert_flat(
        &inuse,
        "worker_alloc",
        (field(own, "allocs") - field(own, "frees")) as f64,
        "objects in use",
    );
    assert_eq!(field(own, "allocs") - field(own, "frees"), 8 * 16);

    // Exact bytes from the profile itself: the worker_alloc buckets.
    let text = std::fs::read_to_string(&profile).unwrap();
    let symbols = run_ok(std::process::Command::new("nm").arg(&exe));
    let worker_alloc = symbols
        .lines()
        .find(|l| l.ends_with(" worker_alloc"))
        .map(|l| u64::from_str_radix(l.split_whitespace().next().unwrap(), 16).unwrap())
        .unwrap();
    let base = text
        .lines()
        .skip_while(|l| !l.starts_with("MAPPED_LIBRARIES:"))
        .find(|l| l.ends_with(exe.to_str().unwrap()))
        .map(|l| {
            let range = l.split_whitespace().next().unwrap();
            u64::from_str_radix(range.split('-').next().unwrap(), 16).unwrap()
        })
        .unwrap();
    let (mut inuse_bytes, mut alloc_bytes) = (0u64, 0u64);
    for line in text.lines().skip(1).take_while(|l| !l.is_empty()) {
        let (counts, frames) = line.split_once('@').unwrap();
        let pc = u64::from_str_radix(
            frames
                .split_whitespace()
                .next()
                .unwrap()
                .trim_start_matches("0x"),
            16,
        )
        .unwrap();
        // Frame 0 returns into worker_alloc (a small function: within 64 bytes).
        if pc >= base + worker_alloc && pc < base + worker_alloc + 64 {
            let n: Vec<u64> = counts
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap())
                .collect();
            inuse_bytes += n[1];
            alloc_bytes += n[3];
        }
    }
    assert_eq!(alloc_bytes, field(own, "alloc_bytes"), "allocated bytes");
    assert_eq!(inuse_bytes, field(own, "inuse_bytes"), "bytes in use");
}

fn maxrss(out: &str) -> u64 {
    field(out.trim(), "maxrss_kb")
}

#[test]
fn ten_thousand_short_lived_threads() {
    let work = Work::new("many_threads");
    let exe = work.compile("manythreads.c", "manythreads", &["-O2"]);
    let plain = run_ok(std::process::Command::new(&exe).args(["10000", "50"]));
    let ran = work.record(&exe, &["10000", "50"], "trace.zst");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    // Recorder memory does not grow with dead threads: a few MiB in all.
    let extra = maxrss(&ran.stdout).saturating_sub(maxrss(&plain));
    assert!(
        extra < 16 * 1024,
        "recording 10,000 threads cost {extra} KiB"
    );
    let r = work.heapreplay(&["-o", "out", "trace.zst"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Every thread's events were flushed when it exited.
    let allocs = google_pprof("--alloc_objects", &exe, &work.path("out.0001.heap"));
    assert_flat(
        &allocs,
        "thread_alloc",
        100_000.0,
        "allocations of 10,000 threads",
    );
    let inuse = google_pprof("--inuse_objects", &exe, &work.path("out.0001.heap"));
    assert_flat(
        &inuse,
        "thread_alloc",
        10_000.0,
        "one block kept per thread",
    );
    let info = run_ok(
        std::process::Command::new(heapreplay())
            .arg("info")
            .arg(work.path("trace.zst")),
    );
    assert!(info.contains("threads:    10001"), "{info}");
}
