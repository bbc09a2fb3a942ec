//! `heapreplay attach` and `detach` on processes that were started without
//! the recorder: what they record, that the process is left as it was,
//! and each refusal.

use heapreplay_e2e::attachee::{attach, proc_field, Attachee};
use heapreplay_e2e::*;
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The signals a program catches, from a `SigCgt` mask, but glibc's own
/// SIGCANCEL and SIGSETXID (32 and 33): glibc installs them at a process's
/// first `pthread_create` (the recorder's writer thread, here) and the
/// program cannot see or change them (its `sigaction` refuses them).
fn app_signals_of(mask: &str) -> u64 {
    u64::from_str_radix(mask, 16).unwrap() & !(0b11 << 31)
}

fn app_signals(a: &Attachee) -> u64 {
    app_signals_of(&a.caught_signals())
}

/// What the attachee prints for `go 50` then `exit`, attached or not.
fn plain_run(exe: &Path) -> (i32, Vec<String>) {
    let mut a = Attachee::start(exe, 100, &[]);
    assert_eq!(a.ask("go 50"), "done 50");
    a.exit()
}

#[test]
fn records_what_follows_the_attach_and_counts_older_frees_apart() {
    let work = Work::new("attach_basic");
    let exe = work.compile("attachee.c", "attachee", &["-O1"]);
    let expected = plain_run(&exe);

    let mut a = Attachee::start(&exe, 100, &[]);
    let caught_before = a.caught_signals();
    let trace = work.path("trace.zst");
    let cli = attach(a.pid(), &trace).expect("attach");
    // 50 blocks from after_attach; 50 of the 100 early blocks freed; a
    // marker signal, which the program does not catch itself.
    assert_eq!(a.ask("go 50"), "done 50");
    run_ok(Command::new("kill").args(["-USR2", &a.pid().to_string()]));
    assert_eq!(a.ask("go 0"), "done 0");
    assert_eq!(cli.interrupt(), 0, "Ctrl-C on attach");
    // Nothing of the recorder runs any more; the dispositions are back.
    assert!(
        !a.thread_names().iter().any(|n| n == "heapreplay-wr"),
        "the writer thread is still there: {:?}",
        a.thread_names()
    );
    assert_eq!(
        app_signals(&a),
        app_signals_of(&caught_before),
        "signal dispositions"
    );
    // It goes on, allocating unrecorded, and ends as it would have.
    assert_eq!(a.ask("go 0"), "done 0");
    let (code, printed) = a.exit();
    let plain: Vec<&String> = expected.1.iter().filter(|l| *l != "done 0").collect();
    let attached: Vec<&String> = printed.iter().filter(|l| *l != "done 0").collect();
    assert_eq!((code, attached), (expected.0, plain), "output and status");

    let info = run_ok(Command::new(heapreplay()).arg("info").arg(&trace));
    assert!(info.contains("attached:   at "), "{info}");
    assert!(
        info.contains("50 frees of such blocks counted apart"),
        "{info}"
    );
    assert!(info.contains("end:        clean, at a detach"), "{info}");
    assert!(info.contains("markers:    SIGUSR2 x1"), "{info}");
    // Read by gperftools' own reader: exactly the 50 blocks, by stack, and
    // the realloc of the pointer array (line 65) beside them.
    let r = work.heapreplay(&["-o", "att", "trace.zst"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("since the attach at"), "{}", r.stderr);
    let profile = work.path("att.0001.heap");
    let objects = google_pprof("--inuse_objects", &exe, &profile);
    assert_flat(
        &objects,
        "after_attach",
        50.0,
        "blocks allocated after the attach",
    );
    assert!(
        !objects.contains_key("before_attach") && !objects.contains_key("early_free"),
        "blocks from before the attach: {objects:?}"
    );
    // The frees of early blocks were not subtracted: in use = allocated.
    // (The pointer array, 50 pointers, was reallocated once more by
    // `go 0`: in use once, allocated twice.)
    let [inuse_objects, inuse, allocs, alloc_bytes] = header(&profile);
    assert_eq!((inuse_objects, inuse), (51, 50_000 + 50 * 8));
    assert_eq!((allocs, alloc_bytes), (52, 50_000 + 2 * 50 * 8));
    let top = work.heapreplay_ok(&["top", "trace.zst"]).stdout;
    assert!(
        top.starts_with("Since the attach at ") && top.contains("; 50 frees of such blocks"),
        "{top}"
    );
    let leaks = work.heapreplay_ok(&["leaks", "trace.zst"]).stdout;
    assert!(
        leaks.contains("at the detach (the process went on running"),
        "{leaks}"
    );
    // Compacted, it says the same: the attach, the frees apart, the stacks.
    work.heapreplay_ok(&["compact", "trace.zst", "-o", "dense.zst"]);
    let dense = work.heapreplay_ok(&["top", "dense.zst"]).stdout;
    assert_eq!(dense.replace("dense.zst", "trace.zst"), top);
}

#[test]
fn detach_from_elsewhere_then_a_second_attach_gets_its_own_trace() {
    let work = Work::new("attach_twice");
    let exe = work.compile("attachee.c", "attachee", &["-O1"]);
    let mut a = Attachee::start(&exe, 10, &[]);
    let first = attach(a.pid(), &work.path("one.zst")).expect("first attach");
    assert_eq!(a.ask("go 7"), "done 7");
    let detach = run(Command::new(heapreplay()).args(["detach", &a.pid().to_string()]));
    assert_eq!(detach.code, 0, "{}", detach.stderr);
    assert_eq!(first.wait(), 0);
    // Detached: a second detach is refused, the process runs on.
    let again = run(Command::new(heapreplay()).args(["detach", &a.pid().to_string()]));
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("is not recorded"), "{}", again.stderr);
    assert_eq!(a.ask("go 5"), "done 5");
    let second = attach(a.pid(), &work.path("two.zst")).expect("second attach");
    assert_eq!(a.ask("go 3"), "done 3");
    assert_eq!(second.interrupt(), 0);
    let (code, _) = a.exit();
    assert_eq!(code, 3);
    for (trace, blocks) in [("one.zst", 7), ("two.zst", 3)] {
        let r = work.heapreplay(&["-o", trace, trace]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let profile = work.path(&format!("{trace}.0001.heap"));
        let objects = google_pprof("--inuse_objects", &exe, &profile);
        assert_flat(&objects, "after_attach", blocks as f64, trace);
    }
}

#[test]
fn fifty_attaches_and_detaches_under_eight_allocating_threads() {
    let work = Work::new("attach_cycles");
    let exe = work.compile("attachee.c", "attachee", &["-O1"]);
    let mut a = Attachee::start(&exe, 10, &[]);
    let caught_before = a.caught_signals();
    assert_eq!(a.ask("spin 8"), "spinning 8");
    for i in 0..50 {
        let trace = work.path(&format!("cycle{i}.zst"));
        let cli = attach(a.pid(), &trace).unwrap_or_else(|e| panic!("attach {i}: {e:?}"));
        std::thread::sleep(Duration::from_millis(20));
        // Half the time Ctrl-C, half the time heapreplay detach.
        if i % 2 == 0 {
            assert_eq!(cli.interrupt(), 0, "cycle {i}");
        } else {
            let d = run(Command::new(heapreplay()).args(["detach", &a.pid().to_string()]));
            assert_eq!(d.code, 0, "cycle {i}: {}", d.stderr);
            assert_eq!(cli.wait(), 0, "cycle {i}");
        }
        let info = run_ok(Command::new(heapreplay()).arg("info").arg(&trace));
        assert!(
            info.contains("end:        clean, at a detach"),
            "cycle {i}: {info}"
        );
        let threads: u32 = info
            .lines()
            .find_map(|l| l.strip_prefix("threads:"))
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        // The eight threads that existed before the attach are recorded.
        assert!(threads >= 8, "cycle {i}: {info}");
    }
    assert_eq!(a.ask("stop"), "stopped 1");
    assert!(!a.thread_names().iter().any(|n| n == "heapreplay-wr"));
    assert_eq!(app_signals(&a), app_signals_of(&caught_before));
    let (code, printed) = a.exit();
    assert_eq!(code, 3, "{printed:?}");
}

/// Runs `heapreplay attach PID`: (exit status, stderr), for a refusal.
fn refused(pid: i32, work: &Work) -> (i32, String) {
    match attach(pid, &work.path("refused.zst")) {
        Ok(cli) => {
            cli.interrupt();
            panic!("attached to {pid}")
        }
        Err(e) => e,
    }
}

#[test]
fn each_refusal_says_why_in_one_line_and_changes_nothing() {
    let work = Work::new("attach_refusals");
    let exe = work.compile("attachee.c", "attachee", &["-O1"]);
    let one_line = |(code, said): (i32, String), wanted: &str| {
        assert_eq!(code, 1, "{said}");
        assert_eq!(said.lines().count(), 1, "{said}");
        assert!(said.contains(wanted), "wanted {wanted:?} in {said}");
    };

    // No such process.
    one_line(refused(i32::MAX - 1, &work), "no process");

    // A process that has exited (a zombie its parent has not reaped).
    let mut zombie = Command::new("true").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    one_line(refused(zombie.id() as i32, &work), "has exited");
    zombie.wait().unwrap();

    // A stopped process.
    let mut a = Attachee::start(&exe, 10, &[]);
    let caught = a.caught_signals();
    run_ok(Command::new("kill").args(["-STOP", &a.pid().to_string()]));
    std::thread::sleep(Duration::from_millis(100));
    one_line(refused(a.pid(), &work), "is stopped");
    run_ok(Command::new("kill").args(["-CONT", &a.pid().to_string()]));
    assert_eq!(a.ask("go 1"), "done 1");
    assert_eq!(app_signals(&a), app_signals_of(&caught));

    // Not permitted: another user's process.
    let nobody = run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(heapreplay())
        .args(["attach", &a.pid().to_string(), "-o", "/tmp/x.zst"]));
    assert_eq!(nobody.code, 1, "{}", nobody.stderr);
    assert_eq!(nobody.stderr.lines().count(), 1, "{}", nobody.stderr);
    assert!(
        nobody.stderr.contains("belongs to uid 0, not to you"),
        "{}",
        nobody.stderr
    );

    // Already recorded: by an attach, then by LD_PRELOAD.
    let cli = attach(a.pid(), &work.path("first.zst")).expect("attach");
    one_line(
        refused(a.pid(), &work),
        "already recorded by an earlier heapreplay attach",
    );
    assert_eq!(cli.interrupt(), 0);
    assert_eq!(a.ask("go 1"), "done 1");
    assert_eq!(a.exit().0, 3);
    let lib = librecord();
    let trace = work.path("preloaded.zst");
    let env: [(&str, &OsStr); 2] = [
        ("LD_PRELOAD", lib.as_os_str()),
        ("HEAPREPLAY_OUT", trace.as_os_str()),
    ];
    let preloaded = Attachee::start(&exe, 10, &env);
    one_line(
        refused(preloaded.pid(), &work),
        "librecord.so was preloaded",
    );
    drop(preloaded);

    // A statically linked program.
    let static_exe = work.compile("attachee.c", "attachee-static", &["-O1", "-static"]);
    let mut s = Attachee::start(&static_exe, 10, &[]);
    one_line(refused(s.pid(), &work), "is statically linked");
    assert_eq!(s.ask("go 1"), "done 1");
    assert_eq!(s.exit().0, 3);
}

#[test]
fn a_process_that_exits_during_the_attach_is_reported_and_nothing_hangs() {
    let work = Work::new("attach_exits");
    let exe = work.compile("attachee.c", "attachee", &["-O1"]);
    let mut outcomes = Vec::new();
    for delay_ms in [0u64, 1, 2, 4, 8, 16] {
        let a = Attachee::start(&exe, 10, &[]);
        let pid = a.pid();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(delay_ms));
            // SAFETY: killing the test's own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        });
        let started = Instant::now();
        let outcome = match attach(pid, &work.path("exits.zst")) {
            Ok(cli) => {
                let code = cli.wait();
                assert_eq!(code, 0, "after the process died");
                "attached, then it exited".to_string()
            }
            Err((code, said)) => {
                assert_eq!(code, 1, "{said}");
                assert!(
                    ["exited during attach", "no process", "has exited"]
                        .iter()
                        .any(|w| said.contains(w)),
                    "{said}"
                );
                said
            }
        };
        assert!(started.elapsed() < Duration::from_secs(20), "attach hung");
        killer.join().unwrap();
        drop(a);
        outcomes.push(outcome);
    }
    // Killed before, during or after the attach: each said which, above.
    eprintln!("{outcomes:?}");
}

/// The copies of the library placed in /tmp (its directories).
fn copies_in_tmp() -> Vec<std::ffi::OsString> {
    let mut found: Vec<_> = std::fs::read_dir("/tmp")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("heapreplay-"))
        .collect();
    found.sort();
    found
}

#[test]
fn a_process_in_another_mount_namespace_gets_a_copy_of_the_library() {
    // Like a container: the recorder's directory does not exist for it.
    let work = Work::new("attach_namespace");
    let exe = work.compile("attachee.c", "attachee", &["-O1"]);
    let hidden = root().join("target/release");
    let script = format!(
        "mount -t tmpfs tmpfs {} && exec {} 10",
        hidden.display(),
        exe.display()
    );
    let mut child = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let pid = child.id() as i32;
    assert!(
        !Path::new(&format!("/proc/{pid}/root{}", librecord().display())).exists(),
        "the library is visible to it"
    );
    let trace = work.path("ns.zst");
    let copies_before = copies_in_tmp();
    let cli = attach(pid, &trace).expect("attach into another mount namespace");
    assert!(cli.said.contains("recording process"), "{}", cli.said);
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"go 4\n").unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line.trim(), "done 4");
    // The copy placed for it is gone (its mapping stays).
    assert_eq!(copies_in_tmp(), copies_before);
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(
        maps.contains("/tmp/heapreplay-") && maps.contains("librecord.so (deleted)"),
        "{maps}"
    );
    assert_eq!(cli.interrupt(), 0);
    std::io::Write::write_all(&mut stdin, b"exit\n").unwrap();
    drop(stdin);
    assert_eq!(child.wait().unwrap().code(), Some(3));
    let maps_note = proc_field(pid, "Name");
    assert!(maps_note.is_empty(), "the process is gone");
    let r = work.heapreplay(&["-o", "ns", "ns.zst"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let objects = google_pprof("--inuse_objects", &exe, &work.path("ns.0001.heap"));
    assert_flat(&objects, "after_attach", 4.0, "blocks after the attach");
}

#[test]
fn redis_server_attached_under_load_answers_every_request() {
    let work = Work::new("attach_redis");
    let port = free_port().to_string();
    let mut server = Command::new("redis-server")
        .args([
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .current_dir(&work.dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (install Debian's redis-server: scripts/install-deps)");
    let started = Instant::now();
    while run(Command::new("redis-cli").args(["-p", &port, "ping"]))
        .stdout
        .trim()
        != "PONG"
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = server.id() as i32;
    // A bounded load, attached to and detached from while it runs.
    let bench_port = port.clone();
    let load = std::thread::spawn(move || {
        run(Command::new("redis-benchmark").args([
            "-h",
            "127.0.0.1",
            "-p",
            &bench_port,
            "-n",
            "200000",
            "-P",
            "16",
            "-t",
            "set,get",
            "-q",
        ]))
    });
    std::thread::sleep(Duration::from_millis(100));
    let cli = attach(pid, &work.path("redis.zst")).expect("attach to redis-server");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(cli.interrupt(), 0);
    let load = load.join().unwrap();
    assert_eq!(load.code, 0, "{}", load.stderr);
    assert!(
        load.stdout.contains("SET: ") && load.stdout.contains("GET: "),
        "{}",
        load.stdout
    );
    // Every request was answered: 400,000 commands, plus the pings.
    let stats = run_ok(Command::new("redis-cli").args(["-p", &port, "info", "stats"]));
    let processed: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(processed >= 400_000, "{processed} commands processed");
    assert_eq!(
        run_ok(Command::new("redis-cli").args(["-p", &port, "set", "after", "detach"])).trim(),
        "OK"
    );
    run(Command::new("redis-cli").args(["-p", &port, "shutdown", "nosave"]));
    let status = server.wait().unwrap();
    assert!(status.success(), "redis-server exited with {status}");
    // The trace holds redis's allocations, by its own functions.
    let r = work.heapreplay(&["-o", "redis", "redis.zst"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let [_, _, allocs, _] = header(&work.path("redis.0001.heap"));
    assert!(allocs > 1000, "only {allocs} allocations while attached");
    let report = google_pprof(
        "--alloc_objects",
        Path::new("/usr/bin/redis-server"),
        &work.path("redis.0001.heap"),
    );
    assert!(
        report
            .keys()
            .any(|f| f.starts_with("zmalloc") || f.starts_with("ztrymalloc")),
        "no zmalloc in {:?}",
        report.keys().take(20).collect::<Vec<_>>()
    );
}

#[test]
fn python3_attached_prints_what_it_prints_alone() {
    // CPython from Debian: built without PIE, so its loader binds malloc
    // to the program's own PLT entry.
    let work = Work::new("attach_python");
    let script = work.path("loop.py");
    // It waits for a line on stdin before its loop: attached by then.
    std::fs::write(
        &script,
        "import sys, time\nprint('ready', flush=True)\nsys.stdin.readline()\nkept = []\ntotal = 0\nfor i in range(30):\n    kept.append([str(j) * 3 for j in range(2000)] + [bytearray(20000)])\n    kept = kept[-10:]\n    total += sum(len(x) for x in kept[-1])\n    print(i, total, flush=True)\n    time.sleep(0.01)\nprint('done', total, flush=True)\nsys.stdin.readline()\n",
    )
    .unwrap();
    let alone = run_ok(Command::new("sh").arg("-c").arg(format!(
        "printf '\\n\\n' | /usr/bin/python3 {}",
        script.display()
    )));
    let mut child = Command::new("/usr/bin/python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    printed += &line;
    let cli = attach(child.id() as i32, &work.path("py.zst")).expect("attach to python3");
    std::io::Write::write_all(&mut stdin, b"\n").unwrap();
    // Its whole loop runs attached; detached before it ends.
    while !line.starts_with("done") {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0);
        printed += &line;
    }
    assert_eq!(cli.interrupt(), 0);
    std::io::Write::write_all(&mut stdin, b"\n").unwrap();
    drop(stdin);
    std::io::Read::read_to_string(&mut stdout, &mut printed).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(printed, alone);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = run_ok(
        Command::new(heapreplay())
            .arg("info")
            .arg(work.path("py.zst")),
    );
    assert!(info.contains("end:        clean, at a detach"), "{info}");
    // The 30 bytearrays of 20 kB, allocated while attached.
    let r = work.heapreplay(&["-o", "py", "py.zst"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let [_, _, allocs, bytes] = header(&work.path("py.0001.heap"));
    assert!(
        allocs >= 30 && bytes >= 30 * 20_000,
        "{allocs} allocations, {bytes} bytes"
    );
}

#[test]
fn the_hooked_names_are_every_function_the_recorder_exports() {
    // recorder/src/got.rs patches the entries of these names: a hook added
    // to the library must be added there too, or attach would miss it.
    let got = std::fs::read_to_string(root().join("recorder/src/got.rs")).unwrap();
    let list = &got[got.find("pub const HOOKED").unwrap()..];
    let list = &list[..list.find("];").unwrap()];
    let mut hooked: Vec<&str> = list
        .lines()
        .filter_map(|l| l.trim().strip_prefix("c\"")?.strip_suffix("\","))
        .collect();
    hooked.sort_unstable();
    let nm = run_ok(
        Command::new("nm")
            .args(["-D", "--defined-only"])
            .arg(librecord()),
    );
    let mut exported: Vec<&str> = nm
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && (f[1] == "T" || f[1] == "W")).then_some(f[2])
        })
        .filter(|name| *name != "heapreplay_attach")
        .collect();
    exported.sort_unstable();
    assert_eq!(hooked, exported);
}
