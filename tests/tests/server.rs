//! A real server from Debian's packages, recorded under a bounded load on
//! loopback: redis-server, driven by redis-benchmark.

use heapreplay_e2e::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn redis_server_under_load() {
    assert!(
        std::path::Path::new("/usr/bin/redis-server").exists(),
        "redis-server is missing: install Debian's redis-server (scripts/test does)"
    );
    let work = Work::new("redis");
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
        .env("LD_PRELOAD", librecord())
        .env("HEAPREPLAY_OUT", work.path("trace.zst"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
    // A bounded load: 20,000 SETs then 20,000 GETs, pipelined.
    let load = run(Command::new("redis-benchmark").args([
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-n",
        "20000",
        "-P",
        "16",
        "-t",
        "set,get",
        "-q",
    ]));
    assert_eq!(load.code, 0, "{}", load.stderr);
    // A marker while it runs, then a clean shutdown.
    run_ok(Command::new("kill").args(["-USR2", &server.id().to_string()]));
    std::thread::sleep(Duration::from_millis(100));
    run(Command::new("redis-cli").args(["-p", &port, "shutdown", "nosave"]));
    let status = server.wait().unwrap();
    assert!(status.success(), "redis-server exited with {status}");

    let info = run_ok(
        Command::new(heapreplay())
            .arg("info")
            .arg(work.path("trace.zst")),
    );
    assert!(info.contains("end:        clean"), "{info}");
    assert!(info.contains("markers:    SIGUSR2 x1"), "{info}");
    let r = work.heapreplay(&[
        "--at-marker",
        "usr2",
        "--at-exit",
        "-o",
        "redis",
        "trace.zst",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let profiles = profiles(&work.path("redis"));
    assert_eq!(profiles.len(), 2, "{}", r.stderr);
    // 40,000 requests allocate at least that many blocks by the marker.
    let [_, _, allocs, _] = header(&profiles[0]);
    assert!(allocs > 40_000, "only {allocs} allocations by the marker");
    // Its functions are named: redis allocates through zmalloc.
    let report = google_pprof(
        "--alloc_objects",
        std::path::Path::new("/usr/bin/redis-server"),
        &profiles[0],
    );
    assert!(
        report
            .keys()
            .any(|f| f.starts_with("zmalloc") || f.starts_with("ztrymalloc")),
        "no zmalloc in {:?}",
        report.keys().take(20).collect::<Vec<_>>()
    );
}
