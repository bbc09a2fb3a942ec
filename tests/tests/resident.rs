//! Memory outside malloc: the recorder samples the process's resident
//! memory, and `info` says when most of it did not come from malloc, as with
//! CPython's own small-object allocator (pymalloc), which maps its arenas
//! itself.

use heapreplay_e2e::*;

/// A json workload: 200k small dicts, each of them from pymalloc's arenas
/// unless PYTHONMALLOC=malloc sends them through malloc. It holds them for
/// over a second, so that the recorder's once-a-second sample of resident
/// memory sees them however fast the machine is.
const JSON: &str = "import json, time
d = [{'id': i, 'name': 'n%d' % i, 'tags': [i, i + 1]} for i in range(200000)]
x = json.loads(json.dumps(d))
time.sleep(1.2)";

fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

fn resident_line(work: &Work, trace: &str) -> String {
    let info = work.heapreplay_ok(&["info", trace]).stdout;
    info.lines()
        .find(|l| l.starts_with("resident:"))
        .unwrap_or_else(|| panic!("no resident line: {info}"))
        .to_string()
}

#[test]
fn python_memory_outside_malloc_is_pointed_out() {
    let work = Work::new("resident_python");
    let r = work.heapreplay(&["record", "-o", "pools.zst", python(), "-c", JSON]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pools = resident_line(&work, "pools.zst");
    assert!(
        pools.contains("did not come from malloc") && pools.contains("PYTHONMALLOC=malloc"),
        "{pools}"
    );

    let r = work.heapreplay_env(
        &[("PYTHONMALLOC", "malloc")],
        &["record", "-o", "malloc.zst", python(), "-c", JSON],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let malloc = resident_line(&work, "malloc.zst");
    assert!(!malloc.contains("did not come from malloc"), "{malloc}");
    // Through malloc, the heap's peak holds the 200k dicts the pools hid.
    let peak = |trace: &str| -> f64 {
        let info = work.heapreplay_ok(&["info", trace]).stdout;
        let line = info
            .lines()
            .find(|l| l.starts_with("peak:"))
            .unwrap()
            .to_string();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    assert!(
        peak("malloc.zst") > 3.0 * peak("pools.zst"),
        "{} vs {} MiB",
        peak("malloc.zst"),
        peak("pools.zst")
    );
}
