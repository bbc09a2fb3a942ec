//! `heapreplay timeline`: in-use bytes over time, drawn from real
//! recordings; the SVG is read back as XML, the PNG by its header.

use heapreplay_e2e::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;

/// Records tests/programs/server.c, sending SIGUSR2 after each of its first
/// three phases (cache at 1, 2, 3 MiB; the 8 MiB report of phase 2 makes a
/// 10 MiB peak), then kills it, as the markers test does.
fn record_server(work: &Work) {
    let exe = work.compile("server.c", "server", &["-O2"]);
    let mut child = work.spawn_recorded(&exe, "trace.zst");
    let pid = child.id().to_string();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut expect = |want: &str| {
        let got = lines.next().expect("server ended early").unwrap();
        assert_eq!(got, want);
    };
    for k in 1..=3 {
        expect(&format!("ready {k}"));
        std::thread::sleep(std::time::Duration::from_millis(150));
        run_ok(Command::new("kill").args(["-USR2", &pid]));
        expect(&format!("got {k}"));
    }
    expect("ready 4");
    // Time for the writer to flush the last marker.
    std::thread::sleep(std::time::Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
}

/// What a test needs of an SVG: the texts, and the number of points of
/// each polyline.
struct Svg {
    texts: Vec<String>,
    polylines: Vec<usize>,
}

fn read_svg(path: &Path) -> Svg {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let doc = roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("{} is not well-formed XML: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let mut svg = Svg {
        texts: Vec::new(),
        polylines: Vec::new(),
    };
    for node in doc.descendants().filter(|n| n.is_element()) {
        match node.tag_name().name() {
            "text" => svg
                .texts
                .push(node.text().unwrap_or_default().trim().to_string()),
            "polyline" => svg.polylines.push(
                node.attribute("points")
                    .unwrap_or_default()
                    .split_whitespace()
                    .count(),
            ),
            _ => {}
        }
    }
    svg
}

/// The in-use peak `heapreplay info` reports: `10.0 MiB`.
fn info_peak(work: &Work) -> String {
    let info = work.heapreplay(&["info", "trace.zst"]);
    assert_eq!(info.code, 0, "{}", info.stderr);
    let line = info
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("peak:"))
        .unwrap_or_else(|| panic!("no peak in {}", info.stdout));
    let line = line.trim();
    line[..line.find(" in use").unwrap()].to_string()
}

#[test]
fn svg_of_a_server_with_markers_and_snapshots() {
    let work = Work::new("timeline_server");
    record_server(&work);
    let peak = info_peak(&work);
    assert_eq!(peak, "10.0 MiB");

    let r = work.heapreplay(&[
        "timeline",
        "--at-marker",
        "usr2",
        "--at",
        "50ms",
        "trace.zst",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The default name, and the one line saying so.
    let wrote: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("heapreplay: wrote "))
        .collect();
    assert_eq!(wrote.len(), 1, "{}", r.stderr);
    assert!(
        wrote[0].starts_with("heapreplay: wrote trace.timeline.svg (peak 10.0 MiB at "),
        "{}",
        r.stderr
    );

    let svg = read_svg(&work.path("trace.timeline.svg"));
    // The series: one polyline with the phases' steps in it.
    let longest = svg.polylines.iter().max().copied().unwrap_or(0);
    assert!(longest >= 10, "series polyline has {longest} points");
    let count = |pred: &dyn Fn(&str) -> bool| svg.texts.iter().filter(|t| pred(t)).count();
    assert_eq!(
        count(&|t| t.starts_with(&format!("peak {peak} at "))),
        1,
        "{:?}",
        svg.texts
    );
    // The markers, and a snapshot at each and at 50 ms.
    assert_eq!(count(&|t| t == "SIGUSR2"), 3, "{:?}", svg.texts);
    assert_eq!(
        count(&|t| t.starts_with("marker SIGUSR2 at ")),
        3,
        "{:?}",
        svg.texts
    );
    assert_eq!(count(&|t| t == "at 0.050 s"), 1, "{:?}", svg.texts);
    // Axes in seconds and in MiB.
    assert_eq!(count(&|t| t == "0 s"), 1, "{:?}", svg.texts);
    assert_eq!(count(&|t| t == "10 MiB"), 1, "{:?}", svg.texts);

    // Without rules: no snapshot points, not even the end of the trace.
    let r = work.heapreplay(&["timeline", "-q", "-o", "plain.svg", "trace.zst"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stderr, "", "-q");
    let plain = read_svg(&work.path("plain.svg"));
    assert!(
        !plain
            .texts
            .iter()
            .any(|t| t.contains("marker SIGUSR2 at") || t.contains("snapshot")),
        "{:?}",
        plain.texts
    );
    assert_eq!(
        plain.texts.iter().filter(|t| *t == "SIGUSR2").count(),
        3,
        "{:?}",
        plain.texts
    );
}

#[test]
fn png_of_sites_and_a_bad_extension() {
    let work = Work::new("timeline_sites");
    let exe = work.compile("sites.c", "sites", &[]);
    let ran = work.record(&exe, &[], "trace.zst");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    // sites.c ends with 2 + 1 + 1 + 1 MiB in use, its highest.
    let peak = info_peak(&work);
    assert_eq!(peak, "5.0 MiB");

    let r = work.heapreplay(&["timeline", "-o", "sites.png", "trace.zst"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("heapreplay: wrote sites.png (peak {peak} at ")),
        "{}",
        r.stderr
    );
    let png = std::fs::read(work.path("sites.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    // The first chunk: IHDR, 13 bytes, width and height big-endian.
    assert_eq!(&png[8..16], b"\0\0\0\x0dIHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1200, 600));

    // An extension that is neither .svg nor .png: one line, nothing written.
    let r = work.heapreplay(&["timeline", "-o", "plot.jpg", "trace.zst"]);
    assert_ne!(r.code, 0);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("plot.jpg") && r.stderr.contains(".svg or .png"),
        "{}",
        r.stderr
    );
    assert!(!work.path("plot.jpg").exists());
}
