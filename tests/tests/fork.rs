//! fork: the child goes on recording into a trace of its own, while other
//! threads of the parent allocate; the parent's trace is unaffected.

use heapreplay_e2e::*;
use std::path::PathBuf;
use std::process::Command;

fn traces(work: &Work) -> Vec<PathBuf> {
    let mut t: Vec<PathBuf> = std::fs::read_dir(&work.dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("trace.")
        })
        .filter(|p| !p.to_string_lossy().ends_with(".heap"))
        .collect();
    t.sort();
    t
}

fn check(out: &str, name: &str) {
    let work = Work::new(name);
    let exe = work.compile("forker.c", "forker", &["-O2"]);
    let ran = work.record_bounded(&exe, &["6".as_ref()], out);
    assert_eq!(ran.code, 0, "forker failed (124 = hung): {}", ran.stderr);
    let parent_pid = ran
        .stdout
        .trim()
        .strip_prefix("parent ")
        .unwrap()
        .to_string();
    let all = traces(&work);
    assert_eq!(
        all.len(),
        7,
        "one trace for the parent and one per child: {all:?}"
    );
    let (mut parents, mut children) = (0, 0);
    for (i, t) in all.iter().enumerate() {
        let prefix = format!("p{i}");
        let r = work.heapreplay(&["-o", &prefix, t.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}: {}", t.display(), r.stderr);
        let report = google_pprof(
            "--inuse_objects",
            &exe,
            &work.path(&format!("{prefix}.0001.heap")),
        );
        let info = run(Command::new(heapreplay()).arg("info").arg(t));
        if info.stdout.contains(&format!("pid {parent_pid} ")) {
            parents += 1;
            assert_flat(&report, "parent_alloc", 100.0, "parent before fork");
            assert_flat(&report, "parent_after", 50.0, "parent after its children");
            assert!(
                !report.contains_key("child_alloc"),
                "a child's allocations in the parent's trace"
            );
        } else {
            children += 1;
            assert!(
                info.stdout.contains(&format!("(parent {parent_pid})")),
                "{}",
                info.stdout
            );
            assert!(info.stdout.contains("end:        clean"), "{}", info.stdout);
            assert_flat(&report, "child_alloc", 200.0, "child");
            assert!(!report.contains_key("parent_after"));
        }
    }
    assert_eq!((parents, children), (1, 6));
}

#[test]
fn children_record_into_their_own_traces() {
    check("trace.%p.zst", "fork_pid");
}

#[test]
fn children_get_their_own_trace_without_pid_in_the_path() {
    check("trace.zst", "fork_nopid");
}

#[test]
fn exec_is_followed_unless_told_not_to() {
    let work = Work::new("exec_follow");
    let exe = work.compile("sites.c", "sites", &["-O2"]);
    let script = format!("{} ; true", exe.display());
    for (follow, expected) in [(None, 2), (Some("0"), 1)] {
        for t in traces(&work) {
            std::fs::remove_file(t).unwrap();
        }
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(&script)
            .env("LD_PRELOAD", librecord())
            .env("HEAPREPLAY_OUT", work.path("trace.%p.zst"));
        if let Some(v) = follow {
            cmd.env("HEAPREPLAY_FOLLOW_EXEC", v);
        }
        let ran = run(&mut cmd);
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        // The shell, and the program it started unless exec is not followed.
        assert_eq!(
            traces(&work).len(),
            expected,
            "HEAPREPLAY_FOLLOW_EXEC={follow:?}"
        );
    }
}

#[test]
fn under_heapprofile_children_are_named_as_gperftools_names_them() {
    let work = Work::new("fork_heapprofile");
    let exe = work.compile("forker.c", "forker", &["-O2"]);
    let ran = run(Command::new(&exe)
        .arg("3")
        .current_dir(&work.dir)
        .env("LD_PRELOAD", librecord())
        .env("HEAPPROFILE", work.path("app")));
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    // The parent's trace is PREFIX.trace.zst, each child's PREFIX_PID.trace.zst.
    let mut children = Vec::new();
    for entry in std::fs::read_dir(&work.dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(pid) = name
            .strip_prefix("app_")
            .and_then(|n| n.strip_suffix(".trace.zst"))
        {
            children.push(pid.to_string());
        }
    }
    assert_eq!(children.len(), 3, "{}", ran.stderr);
    // A plain replay writes each process's profiles under its own prefix.
    work.heapreplay_ok(&["app.trace.zst"]);
    assert!(work.path("app.0001.heap").exists());
    for pid in &children {
        work.heapreplay_ok(&[&format!("app_{pid}.trace.zst")]);
        assert!(
            work.path(&format!("app_{pid}.0001.heap")).exists(),
            "child {pid}"
        );
    }
}
