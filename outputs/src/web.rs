//! The time-travel page of `heapreplay serve`: the page (`web/page.html`,
//! `web/app.js`), the front-end libraries it uses, vendored from the npm
//! registry with their licences (`web/vendor/`: d3, d3-flame-graph,
//! uPlot), and the JSON it asks for. Everything is in the binary, and
//! the page is served as one file, its scripts and style sheets inlined.

use crate::profile::{Frame, Snapshot, SymbolizedStacks};
use crate::report::{by_frames, named};
use crate::timeline::Timeline;
use heapreplay_engine::heap::Counters;
use serde_json::{json, Value};

/// A file of the page: its path (as the page names it) and its text.
pub struct Asset {
    /// Its path, as the page asks for it.
    pub path: &'static str,
    /// Its bytes.
    pub body: &'static str,
}

/// The page, then everything it loads, each inlined by [`page_with`].
pub const ASSETS: [Asset; 7] = [
    Asset {
        path: "",
        body: include_str!("../web/page.html"),
    },
    Asset {
        path: "app.js",
        body: include_str!("../web/app.js"),
    },
    Asset {
        path: "vendor/d3.min.js",
        body: include_str!("../web/vendor/d3.min.js"),
    },
    Asset {
        path: "vendor/d3-flamegraph.umd.min.js",
        body: include_str!("../web/vendor/d3-flamegraph.umd.min.js"),
    },
    Asset {
        path: "vendor/uPlot.iife.min.js",
        body: include_str!("../web/vendor/uPlot.iife.min.js"),
    },
    Asset {
        path: "vendor/uPlot.min.css",
        body: include_str!("../web/vendor/uPlot.min.css"),
    },
    Asset {
        path: "vendor/d3-flamegraph.css",
        body: include_str!("../web/vendor/d3-flamegraph.css"),
    },
];

/// The page as one file: every script and style sheet it loads inlined,
/// with its first screen's data (`initial`: the timeline and the first
/// moment, as JSON), so that it shows them with no request of its own.
pub fn page_with(initial: &Value) -> String {
    // `</` could end the script element early: JSON allows `<\/`.
    let data = initial.to_string().replace("</", "<\\/");
    let mut page = ASSETS[0].body.replace(
        "<script src=\"vendor/d3.min.js\">",
        &format!("<script id=\"initial\" type=\"application/json\">{data}</script>\n<script src=\"vendor/d3.min.js\">"),
    );
    for asset in &ASSETS[1..] {
        let (tag, inline) = if asset.path.ends_with(".css") {
            (
                format!("<link rel=\"stylesheet\" href=\"{}\">", asset.path),
                format!("<style>\n{}\n</style>", asset.body),
            )
        } else {
            (
                format!("<script src=\"{}\"></script>", asset.path),
                format!("<script>\n{}\n</script>", asset.body),
            )
        };
        page = page.replace(&tag, &inline);
    }
    page
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

/// A window of the run, for the page: its ends (`from` and `to`: label
/// and time), and per stack that allocated in it (merged by name, as
/// `heapreplay leaks --from --to` merges them) the bytes and objects still
/// live at its end and those allocated and freed within it.
pub fn window(
    from: (&str, u64),
    to: (&str, u64),
    allocated: &[(u32, Counters)],
    stacks: &mut SymbolizedStacks<'_>,
) -> Value {
    let rows: Vec<Value> = named(allocated, stacks)
        .iter()
        .map(|(frames, c)| {
            json!({
                "frames": frames.iter().map(frame).collect::<Vec<_>>(),
                "live_bytes": c.inuse_bytes(),
                "live_objects": c.inuse_objects(),
                "temporary_bytes": c.free_bytes,
                "temporary_objects": c.frees,
            })
        })
        .collect();
    json!({
        "from": {"label": from.0, "ns": from.1},
        "to": {"label": to.0, "ns": to.1},
        "stacks": rows,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_one_file_with_every_asset_inlined() {
        for asset in &ASSETS[1..] {
            // Inlined, none may end its element early.
            assert!(!asset.body.contains("</script"), "{}", asset.path);
            assert!(!asset.body.contains("</style"), "{}", asset.path);
        }
        let page = page_with(&json!({"text": "</script><b>"}));
        assert!(!page.contains(" src="), "a script is still loaded");
        assert!(
            !page.contains("stylesheet"),
            "a style sheet is still loaded"
        );
        assert!(page.contains("<\\/script><b>"));
        let total: usize = ASSETS[1..].iter().map(|a| a.body.len()).sum();
        assert!(page.len() > total, "{} of {total}", page.len());
    }
}
