//! `heapreplay diff`: what changed between two points of a trace, or two traces.

use crate::cli::{DiffArgs, DiffFormat};
use crate::pass;
use heapreplay_engine::plan::{Point, TimePoint};
use heapreplay_engine::trace::io_text;
use heapreplay_outputs::profile::{self, SampleKind};
use heapreplay_outputs::report::{self, Change};
use heapreplay_outputs::{flamegraph, pprof};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

/// One side of the comparison: the named stacks, and how to call it.
struct Side {
    stacks: Vec<report::NamedStack>,
    label: String,
    code: ExitCode,
}

fn side(
    path: &Path,
    points: &[Point],
    args: &DiffArgs,
    pipeline: bool,
) -> Result<Vec<Side>, String> {
    let trace = pass::open_trace(path)?;
    let (snapshots, code) = pass::capture(&trace, points, pipeline, args.common.quiet)?;
    let mut stacks = pass::stacks(&trace, &args.common);
    Ok(snapshots
        .iter()
        .zip(points)
        .map(|(s, p)| Side {
            stacks: report::by_frames(s, &mut stacks),
            label: format!("{} at {}", path.display(), p.describe_at(s.ns)),
            code,
        })
        .collect())
}

/// Folded lines with the value before and after, for a differential flame graph.
fn folded(changes: &[Change], kind: SampleKind) -> Vec<String> {
    changes
        .iter()
        .filter_map(|c| {
            let before = kind.of(&c.before).max(0);
            let after = kind.of(&c.after).max(0);
            if before == 0 && after == 0 {
                return None;
            }
            Some(format!("{} {before} {after}", profile::folded(&c.frames)))
        })
        .collect()
}

/// Compares the two points and writes the result.
pub fn run(args: &DiffArgs) -> Result<ExitCode, String> {
    let pipeline = crate::threads::setup(args.common.threads)?;
    let (before, after) = match args.traces.as_slice() {
        [one] => {
            let from = args
                .from
                .clone()
                .unwrap_or(Point::Time(TimePoint::Offset(0)));
            let mut sides = side(one, &[from, args.to.clone()], args, pipeline)?;
            let after = sides.pop().ok_or("no snapshot")?;
            (sides.pop().ok_or("no snapshot")?, after)
        }
        [a, b] => {
            let from = args.from.clone().unwrap_or(Point::End);
            let before = side(a, &[from], args, pipeline)?
                .pop()
                .ok_or("no snapshot")?;
            let after = side(b, std::slice::from_ref(&args.to), args, pipeline)?
                .pop()
                .ok_or("no snapshot")?;
            (before, after)
        }
        _ => return Err("diff takes one trace or two".into()),
    };
    let title = format!("from {} to {}", before.label, after.label);
    let changes = report::changes(before.stacks, after.stacks);
    let code = if before.code != ExitCode::SUCCESS {
        before.code
    } else {
        after.code
    };
    if args.format == DiffFormat::Text {
        crate::top::print(|out| report::write_diff(out, &title, &changes, args.count))?;
        return Ok(code);
    }
    let path = args
        .output
        .as_deref()
        .ok_or("--format pprof and flamegraph write to a file: give it with -o FILE")?;
    let shown = path.display();
    let file = std::fs::File::create(path)
        .map_err(|e| format!("{shown}: cannot write: {}", io_text(&e)))?;
    let mut out = BufWriter::new(file);
    let written = match args.format {
        DiffFormat::Pprof => {
            let mut b = pprof::Builder::new(args.sample, 0, &title);
            for c in &changes {
                b.add_named(&c.frames, c.delta());
            }
            b.write(&mut out)
        }
        _ => flamegraph::write_lines(
            &mut out,
            &folded(&changes, args.sample),
            args.sample,
            "heapreplay diff",
            &format!("{} — {title}; red grew, blue shrank", args.sample.name()),
        ),
    };
    written
        .and_then(|_| out.flush())
        .map_err(|e| format!("{shown}: cannot write: {}", io_text(&e)))?;
    if !args.common.quiet {
        eprintln!("heapreplay: wrote {shown} ({title})");
    }
    Ok(code)
}
