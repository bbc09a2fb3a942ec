//! Interactive SVG flame graphs (inferno) of a snapshot, or of the change
//! between two.

use crate::profile::{SampleKind, Snapshot, SymbolizedStacks};
use inferno::flamegraph::{self, color::BasicPalette, color::Palette, Options};
use std::collections::BTreeMap;
use std::io::{self, Write};

fn options(kind: SampleKind, title: &str, subtitle: &str) -> Options<'static> {
    let mut opt = Options::default();
    opt.title = title.to_string();
    opt.subtitle = Some(subtitle.to_string());
    opt.colors = Palette::Basic(BasicPalette::Mem);
    opt.count_name = kind.unit().to_string();
    opt.name_type = "Function:".to_string();
    opt.deterministic = true;
    opt.hash = true;
    opt
}

/// Folded stacks (`root;...;leaf VALUE`) of `snapshot`, one line per distinct
/// call chain, zero values left out.
pub fn folded(
    snapshot: &Snapshot,
    stacks: &mut SymbolizedStacks<'_>,
    kind: SampleKind,
) -> Vec<String> {
    let mut merged: BTreeMap<String, i64> = BTreeMap::new();
    for (id, c) in &snapshot.stacks {
        let v = kind.of(c);
        if v > 0 {
            *merged.entry(stacks.folded(*id)).or_default() += v;
        }
    }
    merged
        .into_iter()
        .map(|(s, v)| format!("{s} {v}"))
        .collect()
}

/// Writes the flame graph of `lines` (folded, with one value, or two for a
/// differential graph), or an SVG saying there is nothing to show.
pub fn write_lines(
    out: impl Write,
    lines: &[String],
    kind: SampleKind,
    title: &str,
    subtitle: &str,
) -> io::Result<()> {
    let mut opt = options(kind, title, subtitle);
    if lines.is_empty() {
        // inferno refuses empty input; a graph with one empty frame says it plainly.
        let empty = [format!("no {} at this point 0", kind.name())];
        opt.min_width = 0.0;
        return flamegraph::from_lines(&mut opt, empty.iter().map(String::as_str), out);
    }
    flamegraph::from_lines(&mut opt, lines.iter().map(String::as_str), out)
}

/// Writes the flame graph of `snapshot`.
pub fn write_snapshot(
    out: impl Write,
    snapshot: &Snapshot,
    stacks: &mut SymbolizedStacks<'_>,
    kind: SampleKind,
    title: &str,
) -> io::Result<()> {
    let lines = folded(snapshot, stacks, kind);
    let subtitle = format!("{} — {}", kind.name(), snapshot.reason);
    write_lines(out, &lines, kind, title, &subtitle)
}
