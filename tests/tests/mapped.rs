//! mmap profiling (`HEAP_PROFILE_MMAP`): the memory a program maps itself
//! is recorded with its stacks, and every output shows it apart from the
//! heap, with the same numbers as real readers find in our profiles.

use heapreplay_e2e::*;
use std::path::PathBuf;
use std::process::Command;

/// Records tests/programs/mapper.c (40 rounds) into `trace.zst`, with
/// `HEAP_PROFILE_MMAP` set to `mmap` if given; returns the program.
fn record_mapper(work: &Work, mmap: Option<&str>) -> PathBuf {
    let mut flags = vec!["-O2"];
    flags.extend_from_slice(GO_PPROF_FLAGS);
    let exe = work.compile("mapper.c", "mapper", &flags);
    let mut cmd = Command::new(&exe);
    cmd.arg("40")
        .current_dir(&work.dir)
        .env("LD_PRELOAD", librecord())
        .env("HEAPREPLAY_OUT", work.path("trace.zst"));
    if let Some(v) = mmap {
        cmd.env("HEAP_PROFILE_MMAP", v);
    }
    let ran = run(&mut cmd);
    // The program checks that failing calls keep their errno (exit 3, 4).
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    exe
}

/// The bytes `top` shows held by `function` in its mapped section.
fn top_mapped(top: &str, function: &str) -> Option<u64> {
    let section = top.split("Mapped by the program itself").nth(1)?;
    section.lines().find_map(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        (fields.get(3) == Some(&function)).then(|| fields[0].replace(',', "").parse().unwrap())
    })
}

/// What mapper.c holds mapped at exit, per site: eight kept mappings of
/// 64 to 256 KiB (less the page cut out of some), the one grown by mremap,
/// and the break grown by 32 KiB five times.
const AT_EXIT: [(&str, u64); 3] = [
    ("map_site", 2_138_112),
    ("remap_site", 393_216),
    ("grow_site", 131_072),
];

#[test]
fn mapped_memory_is_shown_apart_from_the_heap_with_the_numbers_readers_find() {
    let work = Work::new("mapped_outputs");
    let exe = record_mapper(&work, Some("true"));
    let top = work.heapreplay_ok(&["top", "trace.zst"]).stdout;
    let heap = work.heapreplay_ok(&["-o", "p", "trace.zst"]);
    let exit = profiles(&work.path("p")).pop().unwrap();
    let from_heap = go_pprof("inuse_space", &exe, &exit);
    work.heapreplay_ok(&["--format", "pprof", "-o", "pb", "trace.zst"]);
    let pb = work.path("pb.0001.pb.gz");
    let mapped_only = parse_report(&go_pprof_text(
        &["-top", "-unit=B", "-tagfocus=memory=mapped"],
        &[&pb],
    ));
    for (site, bytes) in AT_EXIT {
        assert_eq!(top_mapped(&top, site), Some(bytes), "top, {site}:\n{top}");
        assert_eq!(from_heap[site].flat as u64, bytes, "profile.heap, {site}");
        assert_eq!(mapped_only[site].flat as u64, bytes, "pprof, {site}");
    }
    // The heap's part: one 1 MiB block per round, all freed at exit; the
    // mapped samples are left out by their label.
    let heap_only = parse_report(&go_pprof_text(
        &[
            "-top",
            "-unit=B",
            "-sample_index=alloc_space",
            "-tagignore=memory=mapped",
        ],
        &[&pb],
    ));
    assert_eq!(heap_only["heap_site"].flat as u64, 40 << 20);
    assert!(!heap_only.contains_key("map_site"), "{heap_only:?}");
    assert!(header(&exit)[1] == 0, "the header counts the heap alone");
    assert!(
        heap.stderr.contains("Exiting, 0 bytes in use"),
        "{}",
        heap.stderr
    );
    let info = work.heapreplay_ok(&["info", "trace.zst"]).stdout;
    assert!(
        info.contains("mapped:     2.8 MiB at most, 2.5 MiB at the end, in 90 calls"),
        "{info}"
    );
    assert!(info.contains("other:      "), "{info}");
    let timeline = work.heapreplay_ok(&["timeline", "-o", "t.svg", "trace.zst"]);
    let svg = std::fs::read_to_string(work.path("t.svg")).unwrap();
    assert!(
        svg.contains("mapped by the program itself"),
        "{}",
        timeline.stderr
    );
}

#[test]
fn without_heap_profile_mmap_no_mapping_is_recorded() {
    let work = Work::new("mapped_off");
    let exe = record_mapper(&work, None);
    let top = work.heapreplay_ok(&["top", "trace.zst"]).stdout;
    assert!(!top.contains("Mapped by the program"), "{top}");
    let info = work.heapreplay_ok(&["info", "trace.zst"]).stdout;
    assert!(!info.contains("mapped:"), "{info}");
    work.heapreplay_ok(&["-o", "p", "trace.zst"]);
    let exit = profiles(&work.path("p")).pop().unwrap();
    assert!(!go_pprof("alloc_space", &exe, &exit).contains_key("map_site"));
    // gperftools' reading of a false value: "false" is off as well.
    let work = Work::new("mapped_false");
    record_mapper(&work, Some("false"));
    let top = work.heapreplay_ok(&["top", "trace.zst"]).stdout;
    assert!(!top.contains("Mapped by the program"), "{top}");
}

#[test]
fn four_threads_mapping_and_a_fork_lose_nothing_and_hang_nowhere() {
    let work = Work::new("mapped_threads");
    let exe = work.compile("mapper.c", "mapper", &["-O2"]);
    let ran = run(Command::new("timeout")
        .args(["60", "env", "HEAP_PROFILE_MMAP=1"])
        .arg(format!("LD_PRELOAD={}", librecord().display()))
        .arg(format!(
            "HEAPREPLAY_OUT={}",
            work.path("trace.zst").display()
        ))
        .arg(&exe)
        .args(["threads", "2000"])
        .current_dir(&work.dir));
    assert_eq!(ran.code, 0, "hung (124) or failed: {}", ran.stderr);
    // 4 threads x 2000 maps and unmaps, all recorded, nothing left mapped.
    let info = work.heapreplay_ok(&["info", "trace.zst"]).stdout;
    assert!(
        info.contains("0.0 MiB at the end, in 16,000 calls"),
        "{info}"
    );
    let top = work
        .heapreplay_ok(&["top", "--at", "peak", "trace.zst"])
        .stdout;
    let held = top_mapped(&top, "map_site").unwrap_or(0);
    assert!(held > 0 && held <= 4 * 65536, "{top}");
}

#[test]
fn python_s_own_pools_show_as_mapped_memory() {
    // CPython serves small objects from arenas it maps itself: the heap
    // shows a fraction of them, HEAP_PROFILE_MMAP the arenas.
    let work = Work::new("mapped_python");
    let ran = run(Command::new("/usr/bin/python3")
        .args([
            "-c",
            "x = [str(i) * 3 for i in range(300000)]; print(len(x))",
        ])
        .current_dir(&work.dir)
        .env("LD_PRELOAD", librecord())
        .env("HEAPREPLAY_OUT", work.path("trace.zst"))
        .env("HEAP_PROFILE_MMAP", "true"));
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let top = work
        .heapreplay_ok(&["top", "--at", "peak", "trace.zst"])
        .stdout;
    let heap: u64 = top
        .lines()
        .find(|l| l.ends_with("  all stacks"))
        .and_then(|l| l.split_whitespace().next())
        .map(|b| b.replace(',', "").parse().unwrap())
        .unwrap();
    let mapped: u64 = top
        .split("Mapped by the program itself")
        .nth(1)
        .and_then(|s| s.lines().find(|l| l.ends_with("  all stacks")))
        .and_then(|l| l.split_whitespace().next())
        .map(|b| b.replace(',', "").parse().unwrap())
        .unwrap_or_else(|| panic!("no mapped section:\n{top}"));
    // 300,000 strings of about 50 bytes: 15 MiB and more in arenas.
    assert!(mapped >= 15 << 20, "{top}");
    assert!(heap < mapped / 2, "{top}");
}
