//! The same deterministic program under gperftools' own heap profiler
//! (Debian's libtcmalloc, HEAPPROFILE) and under our recorder + replayer:
//! the same dumps, the same reasons, the same totals, the same bytes per
//! function, for each of gperftools' dump rules and their combinations.

use heapreplay_e2e::*;
use std::process::Command;

const TCMALLOC: &str = "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4";
const MB: u64 = 1 << 20;

fn in_use_by_function(exe: &std::path::Path, profile: &std::path::Path) -> Vec<(String, i64)> {
    let mut rows: Vec<(String, i64)> = go_pprof("inuse_space", exe, profile)
        .into_iter()
        .filter(|(name, row)| name.ends_with("_site") && row.flat != 0.0)
        .map(|(name, row)| (name, row.flat as i64))
        .collect();
    rows.sort();
    rows
}

/// Asserts that each of our dumps has the header and the in-use bytes per
/// function of gperftools' dump of the same number.
fn same_dumps(
    name: &str,
    exe: &std::path::Path,
    theirs: &[std::path::PathBuf],
    mine: &[std::path::PathBuf],
) {
    for (n, (t, o)) in theirs.iter().zip(mine).enumerate() {
        assert_eq!(header(o), header(t), "{name}: header of dump {}", n + 1);
        assert_eq!(
            in_use_by_function(exe, o),
            in_use_by_function(exe, t),
            "{name}: in-use bytes per function in dump {}",
            n + 1
        );
    }
}

/// The reasons logged, file names aside.
fn reasons(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.strip_prefix("Dumping heap profile to "))
        .map(|l| {
            l.split_once(" (")
                .unwrap()
                .1
                .trim_end_matches(')')
                .to_string()
        })
        .collect()
}

/// Runs `conform args` under gperftools with `env` (every rule not named
/// there is set to 0) and under our recorder, replayed with `ours`; compares.
/// Returns (our log, gperftools' log) for rule-specific checks.
fn compare(name: &str, args: &[&str], env: &[(&str, String)], ours: &[&str]) -> (String, String) {
    assert!(
        std::path::Path::new(TCMALLOC).exists(),
        "{TCMALLOC} is missing: install Debian's libgoogle-perftools4 (scripts/test does)"
    );
    let work = Work::new(name);
    let mut flags = vec!["-O2"];
    flags.extend_from_slice(GO_PPROF_FLAGS);
    let exe = work.compile("conform.c", "conform", &flags);

    let mut gp = Command::new(&exe);
    gp.args(args)
        .current_dir(&work.dir)
        .env("LD_PRELOAD", TCMALLOC)
        .env("HEAPPROFILE", work.path("gperf"));
    for rule in [
        "HEAP_PROFILE_ALLOCATION_INTERVAL",
        "HEAP_PROFILE_DEALLOCATION_INTERVAL",
        "HEAP_PROFILE_INUSE_INTERVAL",
        "HEAP_PROFILE_TIME_INTERVAL",
    ] {
        gp.env(rule, "0");
    }
    for (k, v) in env {
        gp.env(k, v);
    }
    let gp = run(&mut gp);
    assert_eq!(gp.code, 0, "gperftools run failed: {}", gp.stderr);
    let theirs = profiles(&work.path("gperf"));

    let ran = work.record(&exe, args, "trace.zst");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let mut replay = ours.to_vec();
    replay.extend_from_slice(&["-o", "ours", "trace.zst"]);
    let r = work.heapreplay(&replay);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mine = profiles(&work.path("ours"));

    assert!(
        theirs.len() >= 5,
        "{name}: expected several dumps, gperftools wrote {}",
        theirs.len()
    );
    assert_eq!(
        mine.len(),
        theirs.len(),
        "{name}: number of dumps\nours:\n{}\ntheirs:\n{}",
        r.stderr,
        gp.stderr
    );
    same_dumps(name, &exe, &theirs, &mine);
    let last = theirs.len() - 1;
    let g_theirs = google_pprof("--inuse_objects", &exe, &theirs[last]);
    let g_ours = google_pprof("--inuse_objects", &exe, &mine[last]);
    for f in ["small_site", "medium_site", "large_site", "zeroed_site"] {
        assert_eq!(
            g_ours.get(f),
            g_theirs.get(f),
            "{name}: objects in use by {f}"
        );
        assert!(
            g_ours.get(f).is_some_and(|r| r.flat > 0.0),
            "{name}: {f} missing"
        );
    }
    (r.stderr, gp.stderr)
}

#[test]
fn allocation_interval_matches_gperftools() {
    let n = (16 * MB).to_string();
    let (ours, theirs) = compare(
        "conform_alloc",
        &["40000"],
        &[("HEAP_PROFILE_ALLOCATION_INTERVAL", n.clone())],
        &["--interval", &n],
    );
    assert_eq!(reasons(&ours), reasons(&theirs));
}

#[test]
fn deallocation_interval_matches_gperftools() {
    let n = (8 * MB).to_string();
    let (ours, theirs) = compare(
        "conform_dealloc",
        &["40000"],
        &[("HEAP_PROFILE_DEALLOCATION_INTERVAL", n.clone())],
        &["--dealloc-interval", &n],
    );
    assert_eq!(reasons(&ours), reasons(&theirs));
}

#[test]
fn inuse_interval_matches_gperftools() {
    let n = MB.to_string();
    let (ours, theirs) = compare(
        "conform_inuse",
        &["40000"],
        &[("HEAP_PROFILE_INUSE_INTERVAL", n.clone())],
        &["--inuse-interval", &n],
    );
    assert_eq!(reasons(&ours), reasons(&theirs));
}

#[test]
fn combined_intervals_match_gperftools() {
    // Chosen so that every rule fires: the allocation rule in steady state,
    // the in-use rule while the heap grows, the free rule in the final burst.
    let (a, d, i) = (
        (16 * MB).to_string(),
        (20 * MB).to_string(),
        (12 * MB).to_string(),
    );
    let (ours, theirs) = compare(
        "conform_combined",
        &["40000"],
        &[
            ("HEAP_PROFILE_ALLOCATION_INTERVAL", a.clone()),
            ("HEAP_PROFILE_DEALLOCATION_INTERVAL", d.clone()),
            ("HEAP_PROFILE_INUSE_INTERVAL", i.clone()),
        ],
        &[
            "--interval",
            &a,
            "--dealloc-interval",
            &d,
            "--inuse-interval",
            &i,
        ],
    );
    let r = reasons(&ours);
    assert_eq!(r, reasons(&theirs));
    // All three rules fired at some point.
    assert!(r.iter().any(|l| l.contains("allocated cumulatively")));
    assert!(r.iter().any(|l| l.contains("freed cumulatively")));
    assert!(r
        .iter()
        .any(|l| l.ends_with("MB currently in use") && !l.contains("cumulatively")));
}

#[test]
fn signal_dumps_match_heapprofilesignal() {
    // gperftools dumps in its SIGUSR2 handler; we replay at the SIGUSR2 markers,
    // plus the end, which gperftools writes at exit.
    let (ours, theirs) = compare(
        "conform_signal",
        &["40000", "5000"],
        &[("HEAPPROFILESIGNAL", "12".to_string())],
        &["--at-marker", "usr2", "--at-exit"],
    );
    let ours = reasons(&ours);
    let theirs = reasons(&theirs);
    assert_eq!(ours.len(), 9);
    assert_eq!(theirs.iter().filter(|r| *r == "signal").count(), 8);
    assert_eq!(
        ours.iter()
            .filter(|r| r.starts_with("marker SIGUSR2"))
            .count(),
        8
    );
    assert_eq!(ours.last(), theirs.last(), "exit dump reason");
}

#[test]
fn signal_and_interval_together_match_gperftools() {
    let n = (32 * MB).to_string();
    compare(
        "conform_signal_interval",
        &["40000", "7000"],
        &[
            ("HEAPPROFILESIGNAL", "12".to_string()),
            ("HEAP_PROFILE_ALLOCATION_INTERVAL", n.clone()),
        ],
        &["--interval", &n, "--at-marker", "usr2", "--at-exit"],
    );
}

/// How a recipe run's program gets its SIGUSR2s.
#[derive(Clone, Copy, PartialEq)]
enum Signals {
    /// It raises them itself, or there are none.
    Own,
    /// It waits for each from outside, and the test sends it with `kill`
    /// (after `pause` each).
    Killed(std::time::Duration),
}

/// Runs `exe args` with `LD_PRELOAD=preload`, `HEAPPROFILE=prefix` and
/// `env`, sending SIGUSR2s as `signals` says; returns its stderr.
fn run_recipe(
    work: &Work,
    exe: &std::path::Path,
    args: &[&str],
    preload: &std::path::Path,
    prefix: &str,
    env: &[(&str, &str)],
    signals: Signals,
) -> String {
    use std::io::BufRead;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .current_dir(&work.dir)
        .env("LD_PRELOAD", preload)
        .env("HEAPPROFILE", work.path(prefix))
        .envs(env.iter().copied());
    let Signals::Killed(pause) = signals else {
        let ran = run(&mut cmd);
        assert_eq!(ran.code, 0, "{prefix}: {}", ran.stderr);
        return ran.stderr;
    };
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        assert_eq!(line.unwrap(), "ready");
        std::thread::sleep(pause);
        // SAFETY: kill with a valid pid and signal.
        unsafe { libc::kill(child.id() as i32, libc::SIGUSR2) };
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{prefix}: {stderr}");
    stderr
}

/// gperftools' recipe as it is: `conform args` with `HEAPPROFILE` and `env`
/// under libtcmalloc, and under our recorder alone (`LD_PRELOAD`, the same
/// variables), whose trace is replayed with no flag at all. The same file
/// names, as many, with the same headers and in-use bytes per function,
/// for the same reasons. Returns our reasons.
fn recipe(name: &str, args: &[&str], env: &[(&str, &str)], signals: Signals) -> Vec<String> {
    recipe_of("conform.c", &[], name, args, env, signals).0
}

/// [`recipe`] with the program built from `source` (in tests/programs, as
/// `program` in the returned directory) with `link` flags; with
/// `-ltcmalloc` among them, gperftools' side preloads nothing.
fn recipe_of(
    source: &str,
    link: &[&str],
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
    signals: Signals,
) -> (Vec<String>, Work) {
    let work = Work::new(name);
    let mut flags = vec!["-O2"];
    flags.extend_from_slice(GO_PPROF_FLAGS);
    flags.extend_from_slice(link);
    let exe = work.compile(source, "program", &flags);
    let linked = link.contains(&"-ltcmalloc");
    let tcmalloc = std::path::Path::new(if linked { "" } else { TCMALLOC });
    let theirs_log = run_recipe(&work, &exe, args, tcmalloc, "gperf", env, signals);
    let recorded = run_recipe(&work, &exe, args, &librecord(), "ours", env, signals);
    assert!(
        recorded.contains("ours.trace.zst"),
        "the trace goes beside the profiles: {recorded}"
    );
    // No rule, no -o: the rules and the prefix are the recorded ones.
    let replay = work.heapreplay(&["ours.trace.zst"]);
    assert_eq!(replay.code, 0, "{}", replay.stderr);
    let (theirs, mine) = (profiles(&work.path("gperf")), profiles(&work.path("ours")));
    let names = |files: &[std::path::PathBuf], prefix: &str| -> Vec<String> {
        let names = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned());
        names.map(|n| n.replacen(prefix, "PREFIX", 1)).collect()
    };
    assert_eq!(
        names(&mine, "ours"),
        names(&theirs, "gperf"),
        "{name}: files\nours:\n{}\ntheirs:\n{theirs_log}",
        replay.stderr
    );
    same_dumps(name, &exe, &theirs, &mine);
    let ours = reasons(&replay.stderr);
    assert_eq!(ours, reasons(&theirs_log), "{name}: reasons");
    (ours, work)
}

#[test]
fn the_recipe_with_three_intervals_writes_what_gperftools_writes() {
    let (a, d, i) = (
        (16 * MB).to_string(),
        (20 * MB).to_string(),
        (12 * MB).to_string(),
    );
    let env = [
        ("HEAP_PROFILE_ALLOCATION_INTERVAL", a.as_str()),
        ("HEAP_PROFILE_DEALLOCATION_INTERVAL", d.as_str()),
        ("HEAP_PROFILE_INUSE_INTERVAL", i.as_str()),
    ];
    let r = recipe("recipe_intervals", &["40000"], &env, Signals::Own);
    assert!(r.iter().any(|l| l.contains("allocated cumulatively")));
    assert!(r.iter().any(|l| l.contains("freed cumulatively")));
    assert!(r.len() >= 10, "{r:?}");
}

#[test]
fn the_recipe_with_heapprofilesignal_and_kill_writes_what_gperftools_writes() {
    // gperftools' defaults for the intervals (1 GiB allocated, 100 MiB in
    // use): only the signals and the exit dump.
    let env = [("HEAPPROFILESIGNAL", "12")];
    let pause = std::time::Duration::from_millis(20);
    let args = ["40000", "5000", "wait"];
    let r = recipe("recipe_kill", &args, &env, Signals::Killed(pause));
    assert_eq!(r.iter().filter(|r| *r == "signal").count(), 8, "{r:?}");
    assert_eq!(r.len(), 9, "{r:?}");
}

#[test]
fn the_recipe_with_mmap_profiling_writes_what_gperftools_writes() {
    // mmap, whole and partial munmap, mremap and sbrk from the program's
    // own sites, between heap allocations: gperftools lists the mapped
    // memory per stack too (and its own arenas, which no *_site holds).
    let env = [
        ("HEAP_PROFILE_MMAP", "true"),
        ("HEAP_PROFILE_ALLOCATION_INTERVAL", "4000000"),
        ("HEAP_PROFILE_INUSE_INTERVAL", "0"),
    ];
    let (r, work) = recipe_of("mapper.c", &[], "recipe_mmap", &["40"], &env, Signals::Own);
    assert_eq!(r.len(), 11, "{r:?}");
    let exe = work.path("program");
    let last = profiles(&work.path("ours")).pop().unwrap();
    let rows = in_use_by_function(&exe, &last);
    for site in ["map_site", "remap_site", "grow_site"] {
        assert!(
            rows.iter().any(|(f, b)| f == site && *b > 0),
            "{site} holds mapped memory at exit: {rows:?}"
        );
    }
}

#[test]
fn the_recipe_linked_with_tcmalloc_writes_what_gperftools_writes() {
    // tcmalloc in the program: its profiler binds to the recorder's API and
    // stays off, its signal handler stays idle, and its exit-time dump
    // ("Exiting", with no profile of its own) adds nothing.
    let env = [
        ("HEAPPROFILESIGNAL", "12"),
        ("HEAP_PROFILE_ALLOCATION_INTERVAL", "30000000"),
    ];
    let link = ["-ltcmalloc"];
    let (r, _) = recipe_of(
        "conform.c",
        &link,
        "recipe_linked_signal",
        &["40000", "5000"],
        &env,
        Signals::Own,
    );
    assert_eq!(r.iter().filter(|r| *r == "signal").count(), 8, "{r:?}");
    assert!(r.last().unwrap().starts_with("Exiting, "), "{r:?}");
}

#[test]
fn heapprofilerstop_and_start_bound_what_the_recipe_counts() {
    // A program that stops and restarts the profiler, freeing across the
    // stops: no dump while stopped, and each restart an empty profile.
    let env = [
        ("HEAP_PROFILE_ALLOCATION_INTERVAL", "0"),
        ("HEAP_PROFILE_INUSE_INTERVAL", "0"),
    ];
    let (r, work) = recipe_of("stopper.c", &[], "recipe_stop", &[], &env, Signals::Own);
    let expected = [
        "one",
        "one, five freed",
        "two",
        "three",
        "Exiting, 14 kB in use",
    ];
    assert_eq!(r, expected);
    // After the restart: after_site's 7 blocks, none of the frees of blocks
    // from before it.
    let two = &profiles(&work.path("ours"))[2];
    assert_eq!(header(two), [7, 21000, 10, 30000]);
}

#[test]
fn the_time_interval_of_the_recipe_dumps_under_gperftools_names() {
    // gperftools 2.10 counts its first time interval from the Unix epoch
    // (a dump at the first allocation); ours counts from the start, so the
    // dumps are compared with the rule, not with gperftools' files.
    let work = Work::new("recipe_time");
    let exe = work.compile("conform.c", "conform", &["-O2"]);
    let env = [
        ("HEAP_PROFILE_TIME_INTERVAL", "1"),
        ("HEAPPROFILESIGNAL", "12"),
    ];
    let pause = std::time::Duration::from_millis(1100);
    let args = ["4000", "1000", "wait"];
    let (preload, killed) = (librecord(), Signals::Killed(pause));
    run_recipe(&work, &exe, &args, &preload, "ours", &env, killed);
    let replay = work.heapreplay_ok(&["ours.trace.zst"]);
    let r = reasons(&replay.stderr);
    // Each pause of 1.1 s ends with a signal, then the next allocation
    // finds a second gone since the last dump.
    let timed = r.iter().filter(|r| r.ends_with("sec since the last dump"));
    assert_eq!(timed.count(), 4, "{r:?}");
    assert_eq!(r.iter().filter(|r| *r == "signal").count(), 4, "{r:?}");
    let files = profiles(&work.path("ours"));
    assert_eq!(files.len(), r.len());
    for (n, f) in files.iter().enumerate() {
        let expected = format!("ours.{:04}.heap", n + 1);
        assert_eq!(f.file_name().unwrap().to_string_lossy(), expected);
    }
}

#[test]
fn heapprofilerdump_from_cpp_writes_what_gperftools_writes() {
    // A C++ program that dumps from its own code (HeapProfilerDump), with
    // libtcmalloc preloaded, then with the recorder preloaded instead.
    dumper_recipe("recipe_dump", false);
}

#[test]
fn a_program_linked_with_tcmalloc_writes_what_gperftools_writes() {
    // The same program linked with -ltcmalloc: tcmalloc's operator new
    // never calls malloc, and its own profiler reads HEAPPROFILE too. Under
    // the recorder its start binds to the recorder's no-op, and the hooked
    // operator new sees every allocation.
    dumper_recipe("recipe_linked", true);
}

/// dumper.cpp under gperftools (libtcmalloc preloaded, or `linked` with
/// -ltcmalloc), then under the recorder: the same reasons, headers and
/// objects held by its site.
fn dumper_recipe(name: &str, linked: bool) {
    let work = Work::new(name);
    let mut flags = vec!["-O2"];
    flags.extend_from_slice(GO_PPROF_FLAGS);
    if linked {
        flags.push("-ltcmalloc");
    }
    let exe = work.compile("dumper.cpp", "dumper", &flags);
    let env = [
        ("HEAP_PROFILE_ALLOCATION_INTERVAL", "0"),
        ("HEAP_PROFILE_INUSE_INTERVAL", "0"),
    ];
    let tcmalloc = std::path::Path::new(if linked { "" } else { TCMALLOC });
    let theirs_log = run_recipe(&work, &exe, &["4"], tcmalloc, "gperf", &env, Signals::Own);
    let recorded = run_recipe(
        &work,
        &exe,
        &["4"],
        &librecord(),
        "ours",
        &env,
        Signals::Own,
    );
    // Nothing of gperftools' own profiler ran beside the recorder.
    assert!(
        !recorded.contains("Starting tracking the heap"),
        "{recorded}"
    );
    assert!(profiles(&work.path("ours")).is_empty(), "{recorded}");
    let replay = work.heapreplay_ok(&["ours.trace.zst"]);
    let ours = reasons(&replay.stderr);
    assert_eq!(ours, reasons(&theirs_log));
    assert_eq!(&ours[..2], ["after phase 1", "after phase 2"]);
    assert_eq!(ours.len(), 5, "{ours:?}");
    let (theirs, mine) = (profiles(&work.path("gperf")), profiles(&work.path("ours")));
    assert_eq!(mine.len(), theirs.len());
    for (n, (t, o)) in theirs.iter().zip(&mine).enumerate() {
        // Objects the program's own site holds (with what it calls):
        // google-pprof names C++ functions here, go tool pprof does not.
        let site = |p: &std::path::Path| -> Option<i64> {
            let rows = google_pprof("--inuse_objects", &exe, p);
            rows.get("phase_site").map(|r| r.cum as i64)
        };
        assert_eq!(site(o), site(t), "dump {}", n + 1);
        assert!(
            site(o).is_some_and(|b| b > 0),
            "dump {}: no phase_site",
            n + 1
        );
        // The same headers, but at exit: gperftools' GetHeapProfile text
        // is a larger allocation than ours.
        if n + 1 < mine.len() {
            assert_eq!(header(o), header(t), "dump {}", n + 1);
        }
    }
}
