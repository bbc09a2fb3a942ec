//! The time-travel page of `heapreplay serve`: the page (`web/page.html`,
//! `web/app.js`), the front-end libraries it uses, vendored from the npm
//! registry with their licences (`web/vendor/`: d3, d3-flame-graph,
//! uPlot), and the JSON it asks for. Everything is in the binary.

use crate::profile::{Frame, Snapshot, SymbolizedStacks};
use crate::report::by_frames;
use crate::timeline::Timeline;
use serde_json::{json, Value};

/// A file the page loads: its path (relative to the page), content type and
/// bytes.
pub struct Asset {
    /// Its path, as the page asks for it.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static str,
}

/// The page and everything it loads.
pub const ASSETS: [Asset; 7] = [
    Asset {
        path: "",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../web/page.html"),
    },
    Asset {
        path: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/app.js"),
    },
    Asset {
        path: "vendor/d3.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/vendor/d3.min.js"),
    },
    Asset {
        path: "vendor/d3-flamegraph.umd.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/vendor/d3-flamegraph.umd.min.js"),
    },
    Asset {
        path: "vendor/uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/vendor/uPlot.iife.min.js"),
    },
    Asset {
        path: "vendor/uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../web/vendor/uPlot.min.css"),
    },
    Asset {
        path: "vendor/d3-flamegraph.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../web/vendor/d3-flamegraph.css"),
    },
];

/// The page with its first screen's data in it (`initial`: the timeline
/// and the first moment, as JSON), so that it shows them with no request
/// of its own.
pub fn page_with(initial: &Value) -> String {
    // `</` could end the script element early: JSON allows `<\/`.
    let data = initial.to_string().replace("</", "<\\/");
    ASSETS[0].body.replace(
        "<script src=\"vendor/d3.min.js\">",
        &format!("<script id=\"initial\" type=\"application/json\">{data}</script>\n<script src=\"vendor/d3.min.js\">"),
    )
}

/// The asset at `path` (without its leading `/`), if there is one.
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

fn frame(f: &Frame) -> Value {
    json!({ "function": f.function, "place": f.place })
}

/// The heap at one moment, for the page: `label` (what the moment is),
/// its time, the totals, the frees counted apart, and every stack that
/// allocated (merged by name, as `heapreplay top` merges them) with its
/// four values and its frames, allocating function first.
pub fn moment(snapshot: &Snapshot, label: &str, stacks: &mut SymbolizedStacks<'_>) -> Value {
    let t = &snapshot.totals;
    let named: Vec<Value> = by_frames(snapshot, stacks)
        .iter()
        .map(|(frames, c)| {
            json!({
                "frames": frames.iter().map(frame).collect::<Vec<_>>(),
                "inuse_bytes": c.inuse_bytes(),
                "inuse_objects": c.inuse_objects(),
                "alloc_bytes": c.alloc_bytes,
                "allocs": c.allocs,
            })
        })
        .collect();
    json!({
        "label": label,
        "ns": snapshot.ns,
        "totals": {
            "inuse_bytes": t.inuse_bytes(),
            "inuse_objects": t.inuse_objects(),
            "alloc_bytes": t.alloc_bytes,
            "allocs": t.allocs,
        },
        "unseen_frees": snapshot.unseen_frees,
        "stacks": named,
    })
}

/// The whole run, for the page's chart: `title`, what the trace covers if
/// not the whole run (`covers`), in-use bytes over time, the memory mapped
/// at the same times if any, the markers and the peak.
pub fn timeline(timeline: &Timeline, title: &str, covers: Option<&str>) -> Value {
    let points = timeline.points();
    let mapped = timeline.mapped().map(|m| {
        let curve = m.points();
        // The mapped level at each of the heap's times (the last before).
        let mut at = 0;
        points
            .iter()
            .map(|&(ns, _)| {
                while at + 1 < curve.len() && curve[at + 1].0 <= ns {
                    at += 1;
                }
                curve.get(at).filter(|p| p.0 <= ns).map_or(0, |p| p.1)
            })
            .collect::<Vec<_>>()
    });
    json!({
        "title": title,
        "covers": covers,
        "points": points.iter().map(|&(ns, bytes)| [ns, bytes]).collect::<Vec<_>>(),
        "mapped": mapped,
        "markers": timeline.markers().iter().map(|m| json!({"ns": m.ns, "label": m.label})).collect::<Vec<_>>(),
        "peak": timeline.peak().map(|(ns, bytes)| json!({"ns": ns, "bytes": bytes})),
        "end_ns": timeline.end_ns(),
    })
}
