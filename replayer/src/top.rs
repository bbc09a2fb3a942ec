//! `heapreplay top` and `heapreplay leaks`: text reports at one point.

use crate::cli::{LeaksArgs, TopArgs};
use crate::pass;
use heapreplay_engine::plan::{Point, TimePoint};
use heapreplay_outputs::report;
use std::io::Write;
use std::process::ExitCode;

/// Writes a text report to standard output; what `write` returns.
pub fn print<T>(
    write: impl FnOnce(&mut std::io::StdoutLock<'_>) -> std::io::Result<T>,
) -> Result<T, String> {
    let mut out = std::io::stdout().lock();
    write(&mut out)
        .and_then(|value| out.flush().map(|()| value))
        .map_err(|e| format!("cannot write the report: {e}"))
}

/// Prints the biggest stacks at the chosen point.
pub fn top(args: &TopArgs) -> Result<ExitCode, String> {
    let (trace, pipeline) = pass::open(&args.trace, &args.common)?;
    let (snapshots, code) = pass::capture(
        &trace,
        std::slice::from_ref(&args.at),
        pipeline,
        args.common.quiet,
    )?;
    let snapshot = &snapshots[0];
    let mut stacks = pass::stacks(&trace, &args.common);
    let title = format!(
        "{} at {}",
        trace.path.display(),
        args.at.describe_at(snapshot.ns)
    );
    print(|out| {
        if let Some(note) = crate::attached::note(&trace, snapshot.unseen_frees) {
            writeln!(out, "{note}")?;
        }
        report::write_top(out, &title, snapshot, &mut stacks, args.count)
    })?;
    crate::symbol_hint::say(&stacks, args.common.quiet);
    Ok(code)
}

/// Prints what was never freed, or what a window left live.
pub fn leaks(args: &LeaksArgs) -> Result<ExitCode, String> {
    if args.from.is_some() || args.to.is_some() {
        return window(args);
    }
    let (trace, pipeline) = pass::open(&args.trace, &args.common)?;
    let (snapshots, code) = pass::capture(&trace, &[Point::End], pipeline, args.common.quiet)?;
    let mut stacks = pass::stacks(&trace, &args.common);
    let how = if trace.detached {
        "at the detach (the process went on running: some of this may yet be freed)"
    } else if trace.end.is_some() {
        "at exit"
    } else if trace.live.is_some() {
        "so far (the process is still running: some of this may yet be freed)"
    } else {
        "at the end of the trace (the process did not exit: some of this may still have been freed)"
    };
    let title = format!("{} {how}", trace.path.display());
    let (snapshot, n) = (&snapshots[0], args.count);
    let leaked = print(|out| {
        if let Some(note) = crate::attached::note(&trace, snapshot.unseen_frees) {
            writeln!(out, "{note}")?;
        }
        report::write_leaks(out, &title, snapshot, &mut stacks, n, &args.ignore)
    })?;
    crate::symbol_hint::say(&stacks, args.common.quiet);
    if !args.check {
        return Ok(code);
    }
    let max = args.max.unwrap_or(0);
    let shown = trace.path.display();
    if trace.end.is_none() || trace.detached {
        eprintln!("heapreplay: {shown}: leak check failed: the process did not exit normally while recorded, so what it still held is not known to be leaked");
        return Ok(ExitCode::FAILURE);
    }
    if leaked.bytes > max {
        eprintln!(
            "heapreplay: {shown}: leak check failed: {} bytes in {} objects from {} stacks never freed (at most {max} allowed)",
            leaked.bytes, leaked.objects, leaked.stacks
        );
        return Ok(ExitCode::FAILURE);
    }
    if !args.common.quiet {
        eprintln!(
            "heapreplay: {shown}: leak check passed: {} bytes never freed (at most {max} allowed)",
            leaked.bytes
        );
    }
    Ok(code)
}

/// Prints what the window from `--from` to `--to` allocated and left live,
/// and what it allocated and freed.
fn window(args: &LeaksArgs) -> Result<ExitCode, String> {
    let (trace, pipeline) = pass::open(&args.trace, &args.common)?;
    // By default from the start, or from where a folded trace begins.
    let start = trace.fold().map_or(0, |f| f.info.ns);
    let from = args
        .from
        .clone()
        .unwrap_or(Point::Time(TimePoint::Offset(start)));
    let to = args.to.clone().unwrap_or(Point::End);
    let (window, code) = crate::window::capture(&trace, &from, &to, pipeline, args.common.quiet)?;
    let mut stacks = pass::stacks(&trace, &args.common);
    let title = format!(
        "{} from {} to {}",
        trace.path.display(),
        from.describe_at(window.from.ns),
        to.describe_at(window.to.ns)
    );
    print(|out| {
        if let Some(note) = crate::attached::note(&trace, window.to.unseen_frees) {
            writeln!(out, "{note}")?;
        }
        report::write_window(
            out,
            &title,
            &window.allocated,
            &mut stacks,
            args.count,
            &args.ignore,
        )
    })?;
    crate::symbol_hint::say(&stacks, args.common.quiet);
    Ok(code)
}
