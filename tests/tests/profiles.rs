//! Record real C and C++ programs, replay them, and read the profiles back
//! with google-pprof and go tool pprof, checking names and exact numbers.

use heapreplay_e2e::*;

const MIB: f64 = 1048576.0;

fn record_and_replay(work: &Work, exe: &std::path::Path, args: &[&str]) -> std::path::PathBuf {
    let ran = work.record(exe, args, "trace.zst");
    assert_eq!(ran.code, 0, "recorded program failed: {}", ran.stderr);
    assert!(
        ran.stderr.contains("heapreplay: recording to"),
        "no start line on stderr: {}",
        ran.stderr
    );
    let r = work.heapreplay(&["-o", "out", "trace.zst"]);
    assert_eq!(r.code, 0, "replay failed: {}", r.stderr);
    assert!(
        r.stderr
            .starts_with("Dumping heap profile to out.0001.heap (Exiting, "),
        "replay log: {}",
        r.stderr
    );
    let p = work.path("out.0001.heap");
    assert!(p.exists(), "no profile written: {}", r.stderr);
    assert_no_recorder_frames(&p);
    p
}

fn check_sites(name: &str, flags: &[&str], google: bool, go: bool) {
    let work = Work::new(name);
    let exe = work.compile("sites.c", "sites", flags);
    let profile = record_and_replay(&work, &exe, &[]);
    let what = format!("sites built with {flags:?}");
    // Exactly the program's allocations, nothing of the recorder's.
    assert_eq!(header(&profile), SITES_TOTALS, "{what}: header totals");
    if google {
        let inuse = google_pprof("--inuse_space", &exe, &profile);
        assert_flat(&inuse, "leak_a", 2.0, &what);
        assert_flat(&inuse, "calloc_c", 1.0, &what);
        assert_flat(&inuse, "realloc_d", 1.0, &what);
        assert_flat(&inuse, "aligned_e", 1.0, &what);
        // The callers were unwound correctly, frame pointers or not.
        assert_cum(&inuse, "layer2", 2.0, &what);
        assert_cum(&inuse, "layer1", 2.0, &what);
        assert_cum(&inuse, "main", 5.0, &what);
        let objects = google_pprof("--inuse_objects", &exe, &profile);
        assert_flat(&objects, "leak_a", 2048.0, &what);
        assert_flat(&objects, "calloc_c", 64.0, &what);
        assert_flat(&objects, "realloc_d", 1.0, &what);
        assert_flat(&objects, "aligned_e", 16.0, &what);
        let alloc = google_pprof("--alloc_space", &exe, &profile);
        assert_flat(&alloc, "churn_b", 3.0, &what);
        assert_flat(&alloc, "realloc_d", 1.5, &what);
        let allocs = google_pprof("--alloc_objects", &exe, &profile);
        assert_flat(&allocs, "churn_b", 3072.0, &what);
        assert_flat(&allocs, "realloc_d", 2.0, &what);
    }
    if go {
        let inuse = go_pprof("inuse_space", &exe, &profile);
        assert_flat(&inuse, "leak_a", 2.0 * MIB, &what);
        assert_flat(&inuse, "calloc_c", MIB, &what);
        assert_flat(&inuse, "realloc_d", MIB, &what);
        assert_flat(&inuse, "aligned_e", MIB, &what);
        assert_cum(&inuse, "layer1", 2.0 * MIB, &what);
        let objects = go_pprof("inuse_objects", &exe, &profile);
        assert_flat(&objects, "leak_a", 2048.0, &what);
        let alloc = go_pprof("alloc_space", &exe, &profile);
        assert_flat(&alloc, "churn_b", 3.0 * MIB, &what);
        assert_flat(&alloc, "realloc_d", 1.5 * MIB, &what);
        let allocs = go_pprof("alloc_objects", &exe, &profile);
        assert_flat(&allocs, "churn_b", 3072.0, &what);
    }
}

#[test]
fn c_without_frame_pointers_reads_in_google_pprof() {
    check_sites("sites_nofp", &["-O2", "-fomit-frame-pointer"], true, false);
}

#[test]
fn c_with_frame_pointers_reads_in_both_pprofs() {
    let mut flags = vec!["-O2", "-fno-omit-frame-pointer"];
    flags.extend_from_slice(GO_PPROF_FLAGS);
    check_sites("sites_fp", &flags, true, true);
}

#[test]
fn c_without_frame_pointers_reads_in_go_pprof() {
    let mut flags = vec!["-O2", "-fomit-frame-pointer"];
    flags.extend_from_slice(GO_PPROF_FLAGS);
    check_sites("sites_nofp_go", &flags, false, true);
}

#[test]
fn cxx_new_is_attributed_to_its_caller() {
    let work = Work::new("widgets");
    let mut flags = vec!["-O2", "-fomit-frame-pointer"];
    flags.extend_from_slice(GO_PPROF_FLAGS);
    let exe = work.compile("widgets.cpp", "widgets", &flags);
    let profile = record_and_replay(&work, &exe, &[]);
    let objects = google_pprof("--inuse_objects", &exe, &profile);
    assert_flat(&objects, "make_widgets", 1000.0, "C++ new");
    assert_flat(&objects, "make_arrays", 100.0, "C++ new[]");
    let allocs = google_pprof("--alloc_objects", &exe, &profile);
    assert_flat(&allocs, "churn_arrays", 500.0, "C++ new[]/delete[]");
    let inuse = go_pprof("inuse_space", &exe, &profile);
    assert_flat(&inuse, "make_widgets", 48000.0, "C++ new");
    assert_flat(&inuse, "make_arrays", 409600.0, "C++ new[]");
    let alloc = go_pprof("alloc_space", &exe, &profile);
    assert_flat(&alloc, "churn_arrays", 500000.0, "C++ new[]/delete[]");
    assert_no_recorder_frames(&profile);
}

/// No frame of any stack lies in the recorder library's mappings.
fn assert_no_recorder_frames(profile: &std::path::Path) {
    let text = std::fs::read_to_string(profile).unwrap();
    let (buckets, maps) = text.split_once("MAPPED_LIBRARIES:").unwrap();
    let ranges: Vec<(u64, u64)> = maps
        .lines()
        .filter(|l| l.contains("librecord"))
        .map(|l| {
            let (a, b) = l
                .split_whitespace()
                .next()
                .unwrap()
                .split_once('-')
                .unwrap();
            (
                u64::from_str_radix(a, 16).unwrap(),
                u64::from_str_radix(b, 16).unwrap(),
            )
        })
        .collect();
    assert!(!ranges.is_empty(), "the recorder should be among the maps");
    for frame in buckets
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("0x"))
    {
        let pc = u64::from_str_radix(frame, 16).unwrap();
        assert!(
            !ranges.iter().any(|&(lo, hi)| pc >= lo && pc < hi),
            "recorder frame {pc:#x} in {}",
            profile.display()
        );
    }
}

#[test]
fn cxx_code_loaded_apart_by_a_c_program_is_recorded() {
    // operator new is the recorder's: from a plugin whose C++ runtime only
    // it loaded (RTLD_LOCAL), the recorder's hooks must still reach that
    // runtime, aligned new included.
    let work = Work::new("dlopen_cxx");
    let mut flags = vec!["-O2"];
    flags.extend_from_slice(GO_PPROF_FLAGS);
    let mut lib_flags = flags.clone();
    lib_flags.extend_from_slice(&["-shared", "-fPIC"]);
    let lib = work.compile("cxxplugin.cpp", "libcxxplugin.so", &lib_flags);
    let exe = work.compile("loader.c", "loader", &flags);
    let libs = run_ok(std::process::Command::new("ldd").arg(&exe));
    assert!(!libs.contains("libstdc++"), "{libs}");
    let profile = record_and_replay(&work, &exe, &[lib.to_str().unwrap()]);
    let objects = go_pprof("inuse_objects", &exe, &profile);
    assert_flat(
        &objects,
        "plugin_alloc",
        17.0,
        "16 lines and the new[] block",
    );
    let space = go_pprof("inuse_space", &exe, &profile);
    assert_flat(&space, "plugin_alloc", MIB + 16.0 * 64.0, "C++ plugin");
}

#[test]
fn dlopened_library_is_symbolized() {
    let work = Work::new("dlopen");
    let mut flags = vec!["-O2", "-fomit-frame-pointer"];
    flags.extend_from_slice(GO_PPROF_FLAGS);
    let mut lib_flags = flags.clone();
    lib_flags.extend_from_slice(&["-shared", "-fPIC"]);
    let lib = work.compile("plugin.c", "libplugin.so", &lib_flags);
    let exe = work.compile("loader.c", "loader", &flags);
    let profile = record_and_replay(&work, &exe, &[lib.to_str().unwrap()]);
    let inuse = google_pprof("--inuse_space", &exe, &profile);
    assert_flat(&inuse, "plugin_alloc", 1.0, "dlopen'ed library");
    assert_flat(&inuse, "host_alloc", 0.5, "main program");
    let go = go_pprof("inuse_space", &exe, &profile);
    assert_flat(&go, "plugin_alloc", MIB, "dlopen'ed library");
    assert_flat(&go, "host_alloc", MIB / 2.0, "main program");
    let objects = google_pprof("--inuse_objects", &exe, &profile);
    assert_flat(&objects, "plugin_alloc", 128.0, "dlopen'ed library");
}

#[test]
fn programs_linked_with_jemalloc_or_tcmalloc() {
    // The recorder sits on top of whatever allocator the program brings.
    for lib in ["jemalloc", "tcmalloc"] {
        let work = Work::new(&format!("foreign_{lib}"));
        let link = format!("-l{lib}");
        let exe = work.compile("sites.c", "sites", &["-O2", &link]);
        let libs = run_ok(std::process::Command::new("ldd").arg(&exe));
        assert!(
            libs.contains(&format!("lib{lib}")),
            "{exe:?} is not linked with {lib}: {libs}"
        );
        let profile = record_and_replay(&work, &exe, &[]);
        assert_eq!(header(&profile), SITES_TOTALS, "{lib}: header totals");
        let objects = google_pprof("--inuse_objects", &exe, &profile);
        assert_flat(&objects, "leak_a", 2048.0, lib);
        assert_flat(&objects, "aligned_e", 16.0, lib);
        let allocs = google_pprof("--alloc_objects", &exe, &profile);
        assert_flat(&allocs, "churn_b", 3072.0, lib);
    }
}
