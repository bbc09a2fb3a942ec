//! Outputs beyond profile.heap, read with real consumers and checked against
//! the profile.heap of the same trace: pprof protobuf (`go tool pprof`),
//! flame graphs (parsed as XML), `top`, `leaks` and `diff`, and
//! symbolization from separate debug files and of inlined calls.

use heapreplay_e2e::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn recorded_sites(name: &str, flags: &[&str]) -> (Work, PathBuf) {
    let work = Work::new(name);
    let exe = work.compile("sites.c", "sites", flags);
    let ran = work.record(&exe, &[], "trace.zst");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    // The reference: gperftools' format from the same trace.
    work.heapreplay_ok(&["-q", "-o", "ref", "trace.zst"]);
    assert_eq!(header(&work.path("ref.0001.heap")), SITES_TOTALS);
    (work, exe)
}

fn ok(work: &Work, args: &[&str]) -> String {
    work.heapreplay_ok(args).stdout
}

fn go_top(index: &str, profile: &Path) -> std::collections::HashMap<String, Row> {
    parse_report(&go_pprof_text(
        &["-top", "-unit=B", &format!("-sample_index={index}")],
        &[profile],
    ))
}

#[test]
fn pprof_protobuf_reads_in_go_tool_pprof_with_the_same_numbers() {
    let (work, exe) = recorded_sites("pprof_sites", &["-O2"]);
    ok(
        &work,
        &["-q", "--format", "pprof", "-o", "out", "trace.zst"],
    );
    let p = work.path("out.0001.pb.gz");
    // No binary given: the names come from the profile itself.
    let inuse = go_top("inuse_space", &p);
    assert_flat(&inuse, "leak_a", 2097152.0, "inuse_space");
    assert_flat(&inuse, "calloc_c", 1048576.0, "inuse_space");
    assert_flat(&inuse, "realloc_d", 1048576.0, "inuse_space");
    assert_flat(&inuse, "aligned_e", 1048576.0, "inuse_space");
    assert_cum(&inuse, "layer1", 2097152.0, "inuse_space");
    assert_cum(&inuse, "main", SITES_TOTALS[1] as f64, "inuse_space");
    let objects = go_top("inuse_objects", &p);
    assert_flat(&objects, "leak_a", 2048.0, "inuse_objects");
    assert_cum(&objects, "main", SITES_TOTALS[0] as f64, "inuse_objects");
    let alloc = go_top("alloc_space", &p);
    assert_flat(&alloc, "churn_b", 3145728.0, "alloc_space");
    assert_cum(&alloc, "main", SITES_TOTALS[3] as f64, "alloc_space");
    let allocs = go_top("alloc_objects", &p);
    assert_flat(&allocs, "churn_b", 3072.0, "alloc_objects");
    assert_cum(&allocs, "main", SITES_TOTALS[2] as f64, "alloc_objects");

    // Lines and the mapping's build id, as pprof reads them.
    let lines = go_pprof_text(&["-top", "-lines", "-sample_index=inuse_space"], &[&p]);
    assert!(
        lines.contains("leak_a") && lines.contains("sites.c:16"),
        "{lines}"
    );
    let raw = go_pprof_text(&["-raw"], &[&p]);
    let id = build_id(&exe);
    assert!(raw.contains(&id), "build id {id} not in:\n{raw}");
    assert!(raw.contains("sites"), "{raw}");
}

#[test]
fn flame_graph_is_svg_with_the_functions_and_bytes() {
    let (work, _) = recorded_sites("flame_sites", &["-O2"]);
    ok(
        &work,
        &["-q", "--format", "flamegraph", "-o", "out", "trace.zst"],
    );
    let titles = svg_titles(&work.path("out.0001.svg"));
    for (function, bytes) in [
        ("leak_a", "2,097,152"),
        ("layer1", "2,097,152"),
        ("calloc_c", "1,048,576"),
        ("main", "5,242,880"),
    ] {
        let want = format!("{function} ({bytes} bytes");
        assert!(
            titles.iter().any(|t| t.starts_with(&want)),
            "no frame {want}: {titles:?}"
        );
    }
    // churn_b frees all it allocates: absent from in-use, present in allocated.
    assert!(!titles.iter().any(|t| t.starts_with("churn_b")));
    ok(
        &work,
        &[
            "-q",
            "--format",
            "flamegraph",
            "--sample",
            "alloc_objects",
            "-o",
            "alloc",
            "trace.zst",
        ],
    );
    let titles = svg_titles(&work.path("alloc.0001.svg"));
    assert!(
        titles.iter().any(|t| t.starts_with("churn_b (3,072 count")),
        "{titles:?}"
    );
}

fn numbers(line: &str) -> Vec<u64> {
    line.split_whitespace()
        .filter_map(|f| {
            f.trim_matches(|c: char| "(+);".contains(c))
                .replace(',', "")
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn top_leaks_and_diff_agree_with_profile_heap() {
    let (work, _) = recorded_sites("reports_sites", &["-O0"]);
    let top = ok(&work, &["top", "trace.zst"]);
    let row = |text: &str, f: &str| -> Vec<u64> {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("  {f} (sites.c:")))
            .unwrap_or_else(|| panic!("no {f} row:\n{text}"));
        numbers(line)
    };
    // In use: bytes, objects (the share is not a plain number).
    assert_eq!(row(&top, "leak_a")[..2], [2097152, 2048], "{top}");
    let all: Vec<&str> = top.lines().filter(|l| l.ends_with("all stacks")).collect();
    assert_eq!(numbers(all[0]), [SITES_TOTALS[1], SITES_TOTALS[0]], "{top}");
    assert_eq!(numbers(all[1]), [SITES_TOTALS[3], SITES_TOTALS[2]], "{top}");
    assert!(
        top.contains("leak_a (sites.c:16) < layer2 (sites.c:53) < layer1 (sites.c:54)"),
        "{top}"
    );

    let leaks = ok(&work, &["leaks", "trace.zst"]);
    assert!(
        leaks.contains("5,242,880 bytes (5.0 MiB) in 2,129 objects never freed"),
        "{leaks}"
    );
    let block = leaks
        .split("\n\n")
        .find(|b| b.starts_with("2,097,152 bytes in 2,048 objects allocated at:"))
        .unwrap_or_else(|| panic!("{leaks}"));
    for f in [
        "#0 leak_a (sites.c:16)",
        "#1 layer2",
        "#2 layer1",
        "#3 main",
    ] {
        assert!(block.contains(f), "{f} missing in {block}");
    }
    assert!(!leaks.contains("churn_b"), "{leaks}");

    // From the start to the end: everything in use at the end grew.
    let diff = ok(
        &work,
        &["diff", "--from", "start", "--to", "end", "trace.zst"],
    );
    let first = diff.lines().next().unwrap();
    assert_eq!(
        numbers(first.split(": in use").nth(1).unwrap())[..2],
        [SITES_TOTALS[1], SITES_TOTALS[0]],
        "{diff}"
    );
    assert_eq!(
        row(&diff, "leak_a")[..3],
        [2097152, 2048, 2097152],
        "{diff}"
    );
    // The same program recorded again: stacks match by name, nothing grew.
    let exe = work.path("sites");
    assert_eq!(work.record(&exe, &[], "again.zst").code, 0);
    let same = ok(&work, &["diff", "trace.zst", "again.zst"]);
    assert!(same.contains("in use +0 bytes (+0 objects)"), "{same}");
    assert!(same.contains("Grew: 0 stacks"), "{same}");
    // As pprof, go tool pprof reads the differences.
    ok(
        &work,
        &[
            "diff",
            "-q",
            "--from",
            "start",
            "--format",
            "pprof",
            "-o",
            "d.pb.gz",
            "trace.zst",
        ],
    );
    let d = go_top("inuse_space", &work.path("d.pb.gz"));
    assert_flat(&d, "leak_a", 2097152.0, "diff");
    ok(
        &work,
        &[
            "diff",
            "-q",
            "--from",
            "start",
            "--format",
            "flamegraph",
            "-o",
            "d.svg",
            "trace.zst",
        ],
    );
    let titles = svg_titles(&work.path("d.svg"));
    assert!(
        titles
            .iter()
            .any(|t| t.starts_with("leak_a (2,097,152 bytes")),
        "{titles:?}"
    );
}

#[test]
fn points_outside_the_trace_are_one_line_errors() {
    let (work, _) = recorded_sites("points_sites", &["-O0"]);
    for (args, says) in [
        (
            vec!["top", "--at", "marker:usr2", "trace.zst"],
            "no SIGUSR2 marker #1",
        ),
        (
            vec!["top", "--at", "1h", "trace.zst"],
            "is after the end of the trace",
        ),
        (
            vec!["top", "--at", "tomorrow", "trace.zst"],
            "a point is end, peak",
        ),
        (
            vec!["diff", "--format", "pprof", "trace.zst"],
            "give it with -o FILE",
        ),
        (
            vec!["--sample", "bytes", "trace.zst"],
            "not one of inuse_space",
        ),
    ] {
        let r = work.heapreplay(&args);
        assert_ne!(r.code, 0, "{args:?} succeeded");
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        // One line said (clap adds its pointer to --help after a blank line).
        let said = r
            .stderr
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with("For more"));
        assert_eq!(said.count(), 1, "{args:?}: {}", r.stderr);
    }
}

fn objcopy(args: &[&str]) {
    run_ok(Command::new("objcopy").args(args));
}

#[test]
fn names_come_from_separate_debug_files() {
    let work = Work::new("debug_files");
    let exe = work.compile("sites.c", "sites", &["-O2"]);
    let exe_s = exe.to_str().unwrap();
    // Debug info moved out, found through .gnu_debuglink next to the binary.
    let debug = work.path("sites.debug");
    objcopy(&["--only-keep-debug", exe_s, debug.to_str().unwrap()]);
    objcopy(&["--strip-all", exe_s]);
    let linked = work.path("linked");
    std::fs::copy(&exe, &linked).unwrap();
    let linked_s = linked.to_str().unwrap();
    run_ok(
        Command::new("objcopy")
            .arg(format!("--add-gnu-debuglink={}", debug.display()))
            .arg(linked_s)
            .current_dir(&work.dir),
    );
    assert_eq!(work.record(&linked, &[], "linked.zst").code, 0);
    let top = work.heapreplay_ok(&["top", "linked.zst"]);
    assert!(
        top.stdout.contains("leak_a (sites.c:16) < layer2"),
        "{}",
        top.stdout
    );
    assert!(
        !top.stderr.contains("had no symbols"),
        "every frame was named: {}",
        top.stderr
    );

    // No link: found by build id under --debug-dir.
    assert_eq!(work.record(&exe, &[], "stripped.zst").code, 0);
    let bare = ok(&work, &["top", "stripped.zst"]);
    assert!(
        !bare.contains("leak_a"),
        "a stripped binary has no names: {bare}"
    );
    assert!(
        bare.contains("sites+0x"),
        "unknown frames name the file: {bare}"
    );
    // One line at the end says how many and where; a file no package owns
    // gets no package named. Quiet says nothing.
    let said = work.heapreplay_ok(&["leaks", "stripped.zst"]).stderr;
    let hint = said
        .lines()
        .find(|l| l.contains("had no symbols"))
        .unwrap_or_else(|| panic!("no word on missing symbols: {said}"));
    assert!(
        hint.contains(" frames had no symbols, in sites (") && !hint.contains("dbgsym"),
        "{hint}"
    );
    let quiet = work.heapreplay_ok(&["leaks", "-q", "stripped.zst"]).stderr;
    assert!(!quiet.contains("had no symbols"), "{quiet}");
    let id = build_id(&exe);
    let dir = work.path("debug/.build-id").join(&id[..2]);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&debug, dir.join(format!("{}.debug", &id[2..]))).unwrap();
    let found = ok(&work, &["top", "--debug-dir", "debug", "stripped.zst"]);
    assert!(found.contains("leak_a (sites.c:16) < layer2"), "{found}");
}

#[test]
fn inlined_calls_show_as_their_own_frames() {
    let work = Work::new("inlined");
    let exe = work.compile("inlined.c", "inlined", &["-O2"]);
    assert_eq!(work.record(&exe, &[], "trace.zst").code, 0);
    let top = ok(&work, &["top", "trace.zst"]);
    assert!(
        top.contains("make_node (inlined.c:8) < build_tree (inlined.c:13) < main"),
        "{top}"
    );
    ok(
        &work,
        &["-q", "--format", "pprof", "-o", "out", "trace.zst"],
    );
    let inuse = go_top("inuse_space", &work.path("out.0001.pb.gz"));
    assert_flat(&inuse, "make_node", 409600.0, "inlined");
    assert_cum(&inuse, "build_tree", 409600.0, "inlined");
}
