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
    // No `<` at all, so that nothing in it (`</script>`, `<!--`) can end
    // the script element or change how it is read: JSON spells it `\u003c`.
    let data = initial.to_string().replace('<', "\\u003c");
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

/// The four pprof values of `c`, named as the page names them.
fn values(c: &Counters) -> Value {
    json!({
        "inuse_bytes": c.inuse_bytes(),
        "inuse_objects": c.inuse_objects(),
        "alloc_bytes": c.alloc_bytes,
        "allocs": c.allocs,
    })
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
            let mut row = values(c);
            row["frames"] = frames.iter().map(frame).collect();
            row
        })
        .collect();
    json!({
        "label": label,
        "ns": snapshot.ns,
        "totals": values(t),
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

/// One moment of a report: its snapshot, what it is, and the blocks live
/// then by the period they were allocated in (per stack id; see
/// [`heapreplay_engine::allocated_since`]).
pub struct Moment<'a> {
    /// The heap then.
    pub snapshot: &'a Snapshot,
    /// What the moment is (`the peak (3.2 s)`, `1.500 s`).
    pub label: String,
    /// (stack id, period, counters) of the blocks live then, by the
    /// period they were allocated in: period k is what was allocated after
    /// moment k-1, up to moment k.
    pub live_by_period: &'a [(u32, u32, Counters)],
}

/// The data of a self-contained report: every stack it names, once
/// (`stacks`: frames), and per moment its totals, its stacks counted per
/// value (`count`), its
/// stacks as rows `[stack, inuse_bytes, inuse_objects, alloc_bytes,
/// allocs]` and its live blocks by period as rows `[stack, period, bytes,
/// objects]`. The file names the `keep` stacks that held the most bytes at
/// any moment and the `keep` that allocated the most, the same in every
/// moment, so that moments compare stack for stack; the rest are summed in
/// one row named `[other stacks]` (`other`: its index), so that totals
/// stay whole whatever the run's length.
pub fn report(moments: &[Moment<'_>], stacks: &mut SymbolizedStacks<'_>, keep: usize) -> Value {
    use std::collections::{BTreeMap, HashMap, HashSet};
    let mut names = Names::default();
    // Each moment's counters by name.
    let per_moment: Vec<HashMap<usize, Counters>> = moments
        .iter()
        .map(|m| {
            let mut per_name: HashMap<usize, Counters> = HashMap::new();
            for &(id, c) in &m.snapshot.stacks {
                per_name.entry(names.of(id, stacks)).or_default().add(&c);
            }
            per_name
        })
        .collect();
    // The names kept: the most in use at any moment, and the most allocated.
    let mut most: HashMap<usize, (u64, u64)> = HashMap::new();
    for per_name in &per_moment {
        for (&n, c) in per_name {
            let e = most.entry(n).or_default();
            e.0 = e.0.max(c.inuse_bytes());
            e.1 = e.1.max(c.alloc_bytes);
        }
    }
    let mut ranked: Vec<(usize, (u64, u64))> = most.into_iter().collect();
    let mut kept: HashSet<usize> = HashSet::new();
    for value in [|m: &(u64, u64)| m.0, |m: &(u64, u64)| m.1] {
        ranked.sort_by(|a, b| {
            value(&b.1)
                .cmp(&value(&a.1))
                .then_with(|| names.frames(a.0).cmp(names.frames(b.0)))
        });
        kept.extend(ranked.iter().take(keep).map(|n| n.0));
    }
    // The stacks the file lists: the kept names, then the rest.
    let mut listed: Vec<usize> = Vec::new();
    let mut listed_at: HashMap<usize, usize> = HashMap::new();
    let other = usize::MAX;
    let mut list = |name: usize| -> usize {
        *listed_at.entry(name).or_insert_with(|| {
            listed.push(name);
            listed.len() - 1
        })
    };
    let mut out = Vec::new();
    for (m, per_name) in moments.iter().zip(per_moment) {
        let count =
            |value: fn(&Counters) -> u64| per_name.values().filter(|c| value(c) > 0).count();
        let count = json!({
            "inuse_bytes": count(Counters::inuse_bytes),
            "inuse_objects": count(Counters::inuse_objects),
            "alloc_bytes": count(|c| c.alloc_bytes),
            "allocs": count(|c| c.allocs),
        });
        let mut rows: Vec<(usize, Counters)> = Vec::new();
        let mut rest = Counters::default();
        for (name, c) in per_name {
            if kept.contains(&name) {
                rows.push((list(name), c));
            } else {
                rest.add(&c);
            }
        }
        let rest_row = (rest.allocs > 0).then(|| list(other));
        if let Some(row) = rest_row {
            rows.push((row, rest));
        }
        // Live blocks by period, merged by name as the rows are.
        let mut born: BTreeMap<(usize, u32), (u64, u64)> = BTreeMap::new();
        for &(id, period, c) in m.live_by_period {
            let n = names.of(id, stacks);
            let row = if kept.contains(&n) {
                Some(list(n))
            } else {
                rest_row
            };
            if let Some(row) = row {
                let e = born.entry((row, period)).or_default();
                e.0 += c.inuse_bytes();
                e.1 += c.inuse_objects();
            }
        }
        let t = &m.snapshot.totals;
        out.push(json!({
            "label": m.label,
            "ns": m.snapshot.ns,
            "totals": values(t),
            "unseen_frees": m.snapshot.unseen_frees,
            "count": count,
            "rows": rows.iter().map(|(row, c)| [*row as u64, c.inuse_bytes(), c.inuse_objects(), c.alloc_bytes, c.allocs]).collect::<Vec<_>>(),
            "born": born.iter().map(|(&(row, period), &(bytes, objects))| [row as u64, u64::from(period), bytes, objects]).collect::<Vec<_>>(),
        }));
    }
    let rest_frames = [Frame {
        function: "[other stacks]".into(),
        place: None,
    }];
    let table: Vec<Value> = listed
        .iter()
        .map(|&n| {
            let frames = if n == other {
                &rest_frames[..]
            } else {
                names.frames(n)
            };
            Value::from(frames.iter().map(frame).collect::<Vec<_>>())
        })
        .collect();
    let rest = listed.iter().position(|&n| n == other);
    json!({ "stacks": table, "moments": out, "other": rest, "keep": keep })
}

/// Stack ids by name: stacks that differ only in return addresses on the
/// same lines share one.
#[derive(Default)]
struct Names {
    names: Vec<Vec<Frame>>,
    by_name: std::collections::HashMap<Vec<Frame>, usize>,
    name_of: std::collections::HashMap<u32, usize>,
}

impl Names {
    /// The name of stack `id`, as an index.
    fn of(&mut self, id: u32, stacks: &mut SymbolizedStacks<'_>) -> usize {
        if let Some(&n) = self.name_of.get(&id) {
            return n;
        }
        let frames = stacks.frames(id).to_vec();
        let next = self.names.len();
        let n = *self.by_name.entry(frames.clone()).or_insert(next);
        if n == next {
            self.names.push(frames);
        }
        self.name_of.insert(id, n);
        n
    }

    /// The frames of name `n`.
    fn frames(&self, n: usize) -> &[Frame] {
        &self.names[n]
    }
}

/// The most markers the chart shows: more would be a solid band.
const MARKERS_SHOWN: usize = 2000;

/// The timeline's markers, at most [`MARKERS_SHOWN`], evenly chosen.
fn shown_markers(timeline: &Timeline) -> impl Iterator<Item = &crate::timeline::Mark> {
    let all = timeline.markers();
    let step = all.len().div_ceil(MARKERS_SHOWN).max(1);
    all.iter().step_by(step)
}

/// The whole run, for the page's chart: `title`, what the trace covers if
/// not the whole run (`covers`), in-use bytes over time, the memory mapped
/// at the same times if any, the markers and the peak (if any byte was in
/// use).
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
        "markers": shown_markers(timeline).map(|m| json!({"ns": m.ns, "label": m.label})).collect::<Vec<_>>(),
        "markers_total": timeline.markers().len(),
        "peak": timeline.peak().filter(|p| p.1 > 0).map(|(ns, bytes)| json!({"ns": ns, "bytes": bytes})),
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
        let page = page_with(&json!({"text": "<!-- <script></script><b>"}));
        assert!(!page.contains(" src="), "a script is still loaded");
        assert!(
            !page.contains("stylesheet"),
            "a style sheet is still loaded"
        );
        assert!(page.contains(r#""\u003c!-- \u003cscript>\u003c/script>\u003cb>""#));
        let total: usize = ASSETS[1..].iter().map(|a| a.body.len()).sum();
        assert!(page.len() > total, "{} of {total}", page.len());
    }
}
