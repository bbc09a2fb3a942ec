//! Text reports for people: the biggest stacks at a point (`top`), what was
//! never freed (`leaks`), what changed between two points (`diff`).

use crate::profile::{Frame, Snapshot, SymbolizedStacks};
use heapreplay_engine::heap::Counters;
use std::collections::HashMap;
use std::io::{self, Write};

/// A stack by its frames (leaf first) with its counters; stacks that differ
/// only in return addresses on the same lines are merged.
pub type NamedStack = (Vec<Frame>, Counters);

/// The stacks of `snapshot` by name.
pub fn by_frames(snapshot: &Snapshot, stacks: &mut SymbolizedStacks<'_>) -> Vec<NamedStack> {
    named(&snapshot.stacks, stacks)
}

/// Counters per stack id (`per_stack`) by name.
pub fn named(per_stack: &[(u32, Counters)], stacks: &mut SymbolizedStacks<'_>) -> Vec<NamedStack> {
    let mut merged: HashMap<Vec<Frame>, Counters> = HashMap::new();
    for (id, c) in per_stack {
        merged
            .entry(stacks.frames(*id).to_vec())
            .or_default()
            .add(c);
    }
    merged.into_iter().collect()
}

/// `1,234,567`.
pub fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1 object`, `1,024 objects`: a count with its noun.
pub fn counted(n: u64, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        _ => format!("{} {noun}s", grouped(n)),
    }
}

/// [`counted`] with a sign: `+1 object`, `-12 objects`.
fn signed_counted(n: i64, noun: &str) -> String {
    match n.unsigned_abs() {
        1 => format!("{} {noun}", signed(n)),
        _ => format!("{} {noun}s", signed(n)),
    }
}

/// The heading of a list cut to `n` of its `total` entries.
fn listed(what: &str, total: usize, n: usize) -> String {
    let all = counted(total as u64, "stack");
    if total > n {
        format!("{what}: {all}, the first {n} shown (-n to show more)")
    } else {
        format!("{what}: {all}")
    }
}

fn signed(n: i64) -> String {
    let sign = if n < 0 { "-" } else { "+" };
    format!("{sign}{}", grouped(n.unsigned_abs()))
}

/// `10.0 MiB`, `512 B`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn frame_text(f: &Frame) -> String {
    match &f.place {
        Some(p) => format!("{} ({p})", f.function),
        None => f.function.clone(),
    }
}

/// The first few frames of a stack on one line: `leaf (f.c:3) < caller (f.c:9) < ...`.
pub fn short_stack(frames: &[Frame]) -> String {
    const SHOWN: usize = 4;
    let mut parts: Vec<String> = frames.iter().take(SHOWN).map(frame_text).collect();
    if frames.len() > SHOWN {
        parts.push("...".into());
    }
    if parts.is_empty() {
        return "[no stack]".into();
    }
    parts.join(" < ")
}

fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".into();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

fn table(
    out: &mut impl Write,
    heading: &str,
    rows: &[&NamedStack],
    total: (u64, u64),
    value: impl Fn(&Counters) -> (u64, u64),
) -> io::Result<()> {
    writeln!(out, "\n{heading}")?;
    writeln!(
        out,
        "{:>15} {:>7} {:>11}  stack (allocating function first)",
        "bytes", "share", "objects"
    )?;
    for (frames, c) in rows {
        let (bytes, objects) = value(c);
        writeln!(
            out,
            "{:>15} {:>7} {:>11}  {}",
            grouped(bytes),
            share(bytes, total.0),
            grouped(objects),
            short_stack(frames)
        )?;
    }
    writeln!(
        out,
        "{:>15} {:>7} {:>11}  all stacks",
        grouped(total.0),
        "100%",
        grouped(total.1)
    )
}

/// `heapreplay top`: the `n` stacks with the most bytes in use, and the `n`
/// that allocated the most, at `snapshot`.
pub fn write_top(
    out: &mut impl Write,
    title: &str,
    snapshot: &Snapshot,
    stacks: &mut SymbolizedStacks<'_>,
    n: usize,
) -> io::Result<()> {
    let t = snapshot.totals;
    writeln!(
        out,
        "{title}: {} in use in {}; {} allocated in {} since the start",
        human(t.inuse_bytes()),
        counted(t.inuse_objects(), "object"),
        human(t.alloc_bytes),
        counted(t.allocs, "object")
    )?;
    let named = by_frames(snapshot, stacks);
    let inuse = |c: &Counters| (c.inuse_bytes(), c.inuse_objects());
    let heading = |shown, all| format!("In use: top {shown} of {all} stacks");
    top_table(out, heading, &named, inuse(&t), inuse, n)?;
    let allocated = |c: &Counters| (c.alloc_bytes, c.allocs);
    let heading = |shown, all| format!("Allocated since the start: top {shown} of {all} stacks");
    top_table(out, heading, &named, allocated(&t), allocated, n)?;
    write_mapped(out, snapshot, stacks, n)
}

/// The table of the `n` stacks with the most `value` (bytes, objects),
/// largest first, under the heading `heading(shown, all)`.
fn top_table(
    out: &mut impl Write,
    heading: impl Fn(usize, usize) -> String,
    named: &[NamedStack],
    total: (u64, u64),
    value: impl Fn(&Counters) -> (u64, u64),
    n: usize,
) -> io::Result<()> {
    let mut rows: Vec<&NamedStack> = named.iter().filter(|(_, c)| value(c).0 > 0).collect();
    rows.sort_by(|a, b| value(&b.1).0.cmp(&value(&a.1).0).then(a.0.cmp(&b.0)));
    let heading = heading(n.min(rows.len()), rows.len());
    rows.truncate(n);
    table(out, &heading, &rows, total, value)
}

/// The memory the program mapped itself (`HEAP_PROFILE_MMAP` traces): the
/// `n` stacks holding the most, apart from the heap. Nothing without it.
fn write_mapped(
    out: &mut impl Write,
    snapshot: &Snapshot,
    stacks: &mut SymbolizedStacks<'_>,
    n: usize,
) -> io::Result<()> {
    if snapshot.mapped.is_empty() {
        return Ok(());
    }
    let mut total = Counters::default();
    for (_, c) in &snapshot.mapped {
        total.add(c);
    }
    let held = |c: &Counters| (c.inuse_bytes(), c.inuse_objects());
    let bytes = human(total.inuse_bytes());
    let heading = |shown, all| {
        format!("Mapped by the program itself (mmap, mremap, sbrk; not in the heap above): {bytes}, top {shown} of {all} stacks")
    };
    let named = named(&snapshot.mapped, stacks);
    top_table(out, heading, &named, held(&total), held, n)
}

/// `heapreplay leaks`: every stack with blocks still allocated at `snapshot`
/// (the end), largest first, with its whole stack.
pub fn write_leaks(
    out: &mut impl Write,
    title: &str,
    snapshot: &Snapshot,
    stacks: &mut SymbolizedStacks<'_>,
    n: Option<usize>,
    ignore: &[String],
) -> io::Result<Leaked> {
    let named = by_frames(snapshot, stacks);
    write_live(out, title, named, "never freed", n, ignore)
}

/// `heapreplay leaks --from A --to B`: the blocks allocated in the window
/// (`allocated`, per stack id, as [`heapreplay_engine::allocated_since`]
/// counts them) and still live at its end, with their whole stacks; then
/// the `n` stacks whose blocks were allocated and freed within it.
pub fn write_window(
    out: &mut impl Write,
    title: &str,
    allocated: &[(u32, Counters)],
    stacks: &mut SymbolizedStacks<'_>,
    n: Option<usize>,
    ignore: &[String],
) -> io::Result<Leaked> {
    let named = named(allocated, stacks);
    let leaked = write_live(
        out,
        title,
        named.clone(),
        "allocated in the window and still live at its end",
        n,
        ignore,
    )?;
    let mut total = Counters::default();
    for (_, c) in &named {
        total.add(c);
    }
    let freed = |c: &Counters| (c.free_bytes, c.frees);
    let heading = |shown, all| {
        format!("Temporary (allocated and freed within the window): top {shown} of {all} stacks")
    };
    top_table(
        out,
        heading,
        &named,
        freed(&total),
        freed,
        n.unwrap_or(usize::MAX),
    )?;
    Ok(leaked)
}

/// The stacks of `named` with blocks in use (`what` they are), largest
/// first, with their whole stacks, leaving out those `ignore` matches.
fn write_live(
    out: &mut impl Write,
    title: &str,
    named: Vec<NamedStack>,
    what: &str,
    n: Option<usize>,
    ignore: &[String],
) -> io::Result<Leaked> {
    let mut live: Vec<NamedStack> = named
        .into_iter()
        .filter(|(_, c)| c.inuse_objects() > 0)
        .collect();
    let before = live.len();
    // A stack with a frame whose text holds a pattern is not counted.
    live.retain(|(frames, _)| {
        !frames
            .iter()
            .any(|f| ignore.iter().any(|p| frame_text(f).contains(p.as_str())))
    });
    live.sort_by(|a, b| {
        b.1.inuse_bytes()
            .cmp(&a.1.inuse_bytes())
            .then(a.0.cmp(&b.0))
    });
    let leaked = Leaked {
        bytes: live.iter().map(|(_, c)| c.inuse_bytes()).sum(),
        objects: live.iter().map(|(_, c)| c.inuse_objects()).sum(),
        stacks: live.len(),
        ignored: before - live.len(),
    };
    let ignored = match leaked.ignored {
        0 => String::new(),
        k => format!(" ({} ignored)", counted(k as u64, "stack")),
    };
    writeln!(
        out,
        "{title}: {} bytes ({}) in {} {what}, from {}{ignored}",
        grouped(leaked.bytes),
        human(leaked.bytes),
        counted(leaked.objects, "object"),
        counted(live.len() as u64, "stack")
    )?;
    let shown = n.unwrap_or(live.len()).min(live.len());
    for (frames, c) in &live[..shown] {
        writeln!(
            out,
            "\n{} bytes in {} allocated at:",
            grouped(c.inuse_bytes()),
            counted(c.inuse_objects(), "object")
        )?;
        for (i, f) in frames.iter().enumerate() {
            writeln!(out, "    #{i} {}", frame_text(f))?;
        }
    }
    if shown < live.len() {
        writeln!(
            out,
            "\n... and {} more stacks (-n to show more)",
            live.len() - shown
        )?;
    }
    Ok(leaked)
}

/// What a leak report counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaked {
    /// Bytes never freed, in the stacks counted.
    pub bytes: u64,
    /// Objects never freed, in the stacks counted.
    pub objects: u64,
    /// Stacks counted.
    pub stacks: usize,
    /// Stacks left out by an ignore pattern.
    pub ignored: usize,
}

/// A stack's counters at two points.
#[derive(Debug, Clone)]
pub struct Change {
    /// The stack, leaf first.
    pub frames: Vec<Frame>,
    /// At the earlier point (zero if absent).
    pub before: Counters,
    /// At the later point.
    pub after: Counters,
}

impl Change {
    /// Later minus earlier, in [`crate::profile::SampleKind::ALL`] order.
    pub fn delta(&self) -> [i64; 4] {
        let d = |a: u64, b: u64| a as i64 - b as i64;
        [
            d(self.after.allocs, self.before.allocs),
            d(self.after.alloc_bytes, self.before.alloc_bytes),
            d(self.after.inuse_objects(), self.before.inuse_objects()),
            d(self.after.inuse_bytes(), self.before.inuse_bytes()),
        ]
    }
}

/// Pairs the stacks of two points by name; largest in-use growth first.
pub fn changes(before: Vec<NamedStack>, after: Vec<NamedStack>) -> Vec<Change> {
    let mut map: HashMap<Vec<Frame>, (Counters, Counters)> = HashMap::new();
    for (f, c) in before {
        map.entry(f).or_default().0.add(&c);
    }
    for (f, c) in after {
        map.entry(f).or_default().1.add(&c);
    }
    let mut out: Vec<Change> = map
        .into_iter()
        .map(|(frames, (before, after))| Change {
            frames,
            before,
            after,
        })
        .collect();
    out.sort_by(|a, b| {
        b.delta()[3]
            .cmp(&a.delta()[3])
            .then(b.delta()[1].cmp(&a.delta()[1]))
            .then(a.frames.cmp(&b.frames))
    });
    out
}

/// `heapreplay diff` as text: the `n` stacks whose in-use bytes grew most,
/// then those that shrank most.
pub fn write_diff(
    out: &mut impl Write,
    title: &str,
    changes: &[Change],
    n: usize,
) -> io::Result<()> {
    let total = changes.iter().fold([0i64; 4], |mut acc, c| {
        for (a, d) in acc.iter_mut().zip(c.delta()) {
            *a += d;
        }
        acc
    });
    writeln!(
        out,
        "{title}: in use {} bytes ({}); allocated {} bytes ({}) in between",
        signed(total[3]),
        signed_counted(total[2], "object"),
        signed(total[1]),
        signed_counted(total[0], "object")
    )?;
    let header = |out: &mut dyn Write, heading: &str| -> io::Result<()> {
        writeln!(out, "\n{heading}")?;
        writeln!(
            out,
            "{:>15} {:>11} {:>15}  stack (allocating function first)",
            "in use bytes", "objects", "allocated"
        )
    };
    let row = |out: &mut dyn Write, c: &Change| -> io::Result<()> {
        let d = c.delta();
        writeln!(
            out,
            "{:>15} {:>11} {:>15}  {}",
            signed(d[3]),
            signed(d[2]),
            signed(d[1]),
            short_stack(&c.frames)
        )
    };
    let grew: Vec<&Change> = changes.iter().filter(|c| c.delta()[3] > 0).collect();
    header(out, &listed("Grew", grew.len(), n))?;
    for c in grew.iter().take(n) {
        row(out, c)?;
    }
    let shrank: Vec<&Change> = changes.iter().rev().filter(|c| c.delta()[3] < 0).collect();
    if !shrank.is_empty() {
        header(out, &listed("Shrank", shrank.len(), n))?;
        for c in shrank.iter().take(n) {
            row(out, c)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_agree_with_their_nouns_and_cut_lists_say_so() {
        assert_eq!(counted(1, "object"), "1 object");
        assert_eq!(counted(0, "object"), "0 objects");
        assert_eq!(counted(1024, "range"), "1,024 ranges");
        assert_eq!(signed_counted(-1, "object"), "-1 object");
        assert_eq!(signed_counted(804, "object"), "+804 objects");
        assert_eq!(
            listed("Grew", 327, 20),
            "Grew: 327 stacks, the first 20 shown (-n to show more)"
        );
        assert_eq!(listed("Shrank", 1, 20), "Shrank: 1 stack");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(1234567), "1,234,567");
        assert_eq!(signed(-1000), "-1,000");
        assert_eq!(human(512), "512 B");
        assert_eq!(human(10 << 20), "10.0 MiB");
    }
}
