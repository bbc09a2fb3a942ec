//! `heapreplay record -- PROGRAM`: runs the program under the recorder.

use heapreplay_e2e::*;

#[test]
fn record_runs_the_program_and_keeps_its_exit_status() {
    let work = Work::new("record_cmd");
    let exe = work.compile("sites.c", "sites", &["-O2"]);
    let r = work.heapreplay(&["record", "-o", "rec.%p.zst", "--", exe.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("heapreplay: recording to rec."),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("trace written to rec."), "{}", r.stderr);
    let trace = std::fs::read_dir(&work.dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(".zst"))
        .expect("a trace was written");
    let out = work.heapreplay(&["-o", "rec", trace.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(header(&work.path("rec.0001.heap"))[1], 5 << 20);

    // The program's exit status comes through.
    // `--output` as in a replay, and `--` optional.
    let r = work.heapreplay(&["record", "--output", "sh.%p.zst", "sh", "-c", "exit 7"]);
    assert_eq!(r.code, 7, "{}", r.stderr);

    let r = work.heapreplay(&["record", "--", "/no/such/program"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("cannot run /no/such/program"),
        "{}",
        r.stderr
    );
}

#[test]
fn record_refuses_programs_it_cannot_see() {
    let work = Work::new("record_static");
    let exe = work.compile("sites.c", "sites_static", &["-O2", "-static"]);
    let r = work.heapreplay(&["record", "-o", "static.zst", "--", exe.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("is statically linked"), "{}", r.stderr);
    assert!(
        !work.path("static.zst").exists(),
        "an empty trace was left behind"
    );
}

/// Installed as `scripts/install` lays it out (PREFIX/bin/heapreplay,
/// PREFIX/lib/heapreplay/librecord.so), `heapreplay record` finds its
/// library; with the library missing, it says where it looked.
#[test]
fn an_installed_heapreplay_finds_its_recorder() {
    let work = Work::new("record_installed");
    let bin = work.path("prefix/bin");
    let lib = work.path("prefix/lib/heapreplay");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::copy(heapreplay(), bin.join("heapreplay")).unwrap();
    let installed = || {
        let mut cmd = std::process::Command::new(bin.join("heapreplay"));
        cmd.current_dir(&work.dir)
            .env_remove("HEAPREPLAY_LIB")
            .args(["record", "-o", "inst.zst", "true"]);
        run(&mut cmd)
    };
    let r = installed();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("prefix/lib/heapreplay/librecord.so")
            && r.stderr.contains("scripts/install"),
        "{}",
        r.stderr
    );
    std::fs::copy(librecord(), lib.join("librecord.so")).unwrap();
    let r = installed();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(work.path("inst.zst").exists(), "{}", r.stderr);
}

#[test]
fn record_under_heapprofile_writes_the_profiles_gperftools_would_as_it_runs() {
    let work = Work::new("record_heapprofile");
    let exe = work.compile("conform.c", "conform", &["-O2"]);
    let env = [
        ("HEAPPROFILE", "app"),
        ("HEAP_PROFILE_ALLOCATION_INTERVAL", "16777216"),
        ("HEAP_PROFILE_INUSE_INTERVAL", "0"),
    ];
    let ran = work.heapreplay_env(&env, &["record", exe.to_str().unwrap(), "40000"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(work.path("app.trace.zst").exists(), "{}", ran.stderr);
    let written = profiles(&work.path("app"));
    assert!(written.len() >= 10, "{}", ran.stderr);
    // The same files a replay of the finished trace writes, byte for byte.
    work.heapreplay_ok(&["app.trace.zst", "-o", "again"]);
    let again = profiles(&work.path("again"));
    assert_eq!(again.len(), written.len());
    for (a, b) in written.iter().zip(&again) {
        assert_eq!(
            std::fs::read(a).unwrap(),
            std::fs::read(b).unwrap(),
            "{a:?}"
        );
    }
    let last = ran
        .stderr
        .lines()
        .rfind(|l| l.starts_with("Dumping heap profile"));
    assert!(
        last.is_some_and(|l| l.contains("app.00") && l.contains("(Exiting, ")),
        "{}",
        ran.stderr
    );
    // Again, shorter, over the first run's trace: this run's profiles, not
    // the old trace's.
    let ran = work.heapreplay_env(&env, &["record", exe.to_str().unwrap(), "20000"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let said = |stderr: &str| stderr.lines().filter(|l| l.starts_with("Dumping")).count();
    let shorter = said(&ran.stderr);
    assert!(shorter > 0 && shorter < written.len(), "{}", ran.stderr);
    let replayed = work.heapreplay_ok(&["app.trace.zst", "-o", "third"]);
    assert_eq!(said(&replayed.stderr), shorter);
    assert_eq!(
        std::fs::read(work.path(&format!("app.{shorter:04}.heap"))).unwrap(),
        std::fs::read(work.path(&format!("third.{shorter:04}.heap"))).unwrap()
    );
}

#[test]
fn record_under_heapprofile_writes_a_profile_while_the_program_still_runs() {
    use std::io::{BufRead, BufReader, Write};
    let work = Work::new("record_heapprofile_live");
    let exe = work.compile("service.c", "service", &["-O2"]);
    let mut child = std::process::Command::new(heapreplay())
        .args(["record", exe.to_str().unwrap()])
        .current_dir(&work.dir)
        .env("HEAPPROFILE", "svc")
        .env("HEAPPROFILESIGNAL", "12")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    for command in ["grow 2000\n", "mark\n"] {
        input.write_all(command.as_bytes()).unwrap();
        line.clear();
        output.read_line(&mut line).unwrap();
        assert_eq!(line, "ok\n");
    }
    // The program waits for more input: the signal's profile must come
    // while it runs, from the trace followed beside it.
    let first = work.path("svc.0001.heap");
    let start = std::time::Instant::now();
    while !first.exists() && start.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let appeared = first.exists();
    drop(input);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(appeared, "no profile while the program ran: {stderr}");
    assert!(out.status.success(), "{stderr}");
    // grow() holds 2000 blocks of 1000 bytes at the signal.
    let [inuse_objects, inuse_bytes, ..] = header(&first);
    assert!(
        inuse_objects >= 2000 && inuse_bytes >= 2_000_000,
        "{stderr}"
    );
    assert!(stderr.contains("svc.0001.heap (signal)"), "{stderr}");
}

#[test]
fn record_follows_heapprofilerstop_met_in_a_later_round() {
    // Each stop comes 1.5 s after what precedes it: follow mode meets it
    // in a later round, and must count what came before as a replay of the
    // finished trace does.
    let work = Work::new("record_stopper");
    let exe = work.compile("stopper.c", "stopper", &["-O2"]);
    let env = [
        ("HEAPPROFILE", "app"),
        ("HEAP_PROFILE_ALLOCATION_INTERVAL", "0"),
        ("HEAP_PROFILE_INUSE_INTERVAL", "0"),
    ];
    let ran = work.heapreplay_env(&env, &["record", exe.to_str().unwrap(), "slow"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let written = profiles(&work.path("app"));
    assert_eq!(written.len(), 5, "{}", ran.stderr);
    // "one, five freed": 15 blocks of before_site in use.
    assert_eq!(header(&written[1])[..2], [15, 15000], "{}", ran.stderr);
    work.heapreplay_ok(&["app.trace.zst", "-o", "again"]);
    for (a, b) in written.iter().zip(&profiles(&work.path("again"))) {
        assert_eq!(
            std::fs::read(a).unwrap(),
            std::fs::read(b).unwrap(),
            "{a:?}"
        );
    }
}

#[test]
fn perftools_verbose_makes_the_recorder_say_what_it_does() {
    let work = Work::new("record_verbose");
    let exe = work.compile("conform.c", "conform", &["-O2"]);
    let ran = |verbose: bool| {
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("2000")
            .current_dir(&work.dir)
            .env("LD_PRELOAD", librecord())
            .env("HEAPPROFILE", work.path("app"));
        if verbose {
            cmd.env("PERFTOOLS_VERBOSE", "100");
        }
        run(&mut cmd)
    };
    let quiet = ran(false);
    assert_eq!(quiet.code, 0);
    assert_eq!(quiet.stderr.lines().count(), 1, "{}", quiet.stderr);
    let said = ran(true);
    assert_eq!(said.code, 0);
    for expected in [
        "the allocator underneath is ",
        "libc.so.6",
        "gperftools settings kept in the trace: HEAPPROFILE=",
        "recording to ",
        " events in ",
    ] {
        assert!(
            said.stderr.contains(expected),
            "{expected}: {}",
            said.stderr
        );
    }
    // The count it says is the trace's.
    let info = work.heapreplay_ok(&["info", "app.trace.zst"]).stdout;
    let events = said
        .stderr
        .split("wrote ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap_or_default()
        .to_string();
    assert!(
        info.contains(&format!("events:     {events} (")),
        "{events}: {info}"
    );
    // A program that runs for a while hears of each flush that wrote.
    use std::io::Write;
    let service = work.compile("service.c", "service", &["-O2"]);
    let mut child = std::process::Command::new(&service)
        .current_dir(&work.dir)
        .env("LD_PRELOAD", librecord())
        .env("HEAPREPLAY_OUT", work.path("service.zst"))
        .env("PERFTOOLS_VERBOSE", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(b"grow 100\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    drop(input);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("flushed: "), "{stderr}");
}
