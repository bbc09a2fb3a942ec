//! `heapreplay timeline`: in-use bytes over time as an SVG or PNG plot.

#[cfg(feature = "chart")]
use crate::cli::TimelineArgs;
use crate::pass;
#[cfg(feature = "chart")]
use heapreplay_engine::clock::seconds;
use heapreplay_engine::clock::SeqClock;
use heapreplay_engine::mapped::levels;
use heapreplay_engine::plan::marker_label;
#[cfg(feature = "chart")]
use heapreplay_engine::plan::TimePoint;
use heapreplay_engine::resolve::freed_stack;
use heapreplay_engine::snapshots::Trigger;
use heapreplay_engine::Trace;
use heapreplay_format::ClockSample;
#[cfg(feature = "chart")]
use heapreplay_outputs::report::human;
#[cfg(feature = "chart")]
use heapreplay_outputs::timeline::chart::{check_output, render};
use heapreplay_outputs::timeline::{Timeline, DEFAULT_BUCKETS};
use std::cell::RefCell;
#[cfg(feature = "chart")]
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `trace.zst` -> `trace.timeline.svg`.
#[cfg(feature = "chart")]
fn default_output(trace: &Path) -> PathBuf {
    let mut s = crate::replay::default_prefix(trace).into_os_string();
    s.push(".timeline.svg");
    PathBuf::from(s)
}

/// The trace's clock samples with its markers added as samples: a marker
/// knows both its sequence number and its time, so that events interpolated
/// between two samples stay on the right side of a marker between them (a
/// process that idles until a signal would otherwise seem to react before
/// the signal came).
fn clock_samples(trace: &Trace) -> Vec<ClockSample> {
    let mut samples: Vec<ClockSample> = trace
        .clock
        .iter()
        .copied()
        .chain(trace.markers.iter().map(|m| ClockSample {
            seq: m.seq,
            ns: m.ns,
        }))
        .collect();
    samples.sort_by_key(|s| (s.seq, s.ns));
    // Time never goes backwards, whatever order two clocks were read in.
    let mut ns = 0;
    for s in &mut samples {
        ns = ns.max(s.ns);
        s.ns = ns;
    }
    samples
}

/// Draws the plot.
#[cfg(feature = "chart")]
pub fn run(args: &TimelineArgs) -> Result<ExitCode, String> {
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| default_output(&args.trace));
    // An image we cannot write is refused before the pass, not after it.
    check_output(&out)?;
    let quiet = args.common.quiet;
    let (trace, pipeline) = pass::open(&args.trace, &args.common)?;
    let plan = pass::plan(&args.rules);
    let end_ns = end_ns(&trace);
    let shown = trace.path.display();
    let offset = |t: &Option<TimePoint>, default: u64| match t {
        None => Ok(default),
        Some(t) => t
            .offset_ns(trace.info.start_unix_ns)
            .ok_or_else(|| format!("{shown}: --from or --to is a time before the trace started")),
    };
    let (from_ns, to_ns) = (offset(&args.from, 0)?, offset(&args.to, end_ns)?);
    if from_ns >= to_ns {
        return Err(format!(
            "{shown}: --from {} is not before --to {}",
            seconds(from_ns),
            seconds(to_ns)
        ));
    }
    let (timeline, code) = collect(
        &trace,
        &plan,
        pipeline,
        quiet,
        (from_ns, to_ns),
        args.to.is_some(),
        args.rules.at_exit,
    )?;
    let program = Path::new(&trace.info.exe)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| trace.path.display().to_string());
    let what = match timeline.mapped() {
        Some(_) => "Heap in use and mapped memory",
        None => "Heap in use",
    };
    let mut title = format!(
        "{what}: {program} (pid {}), {}",
        trace.info.pid,
        trace.path.display()
    );
    if let Some(since) = crate::attached::since(&trace) {
        title += &format!(", {since}");
    }
    render(&timeline, &out, &title)?;
    if !quiet {
        let peak = match timeline.peak() {
            Some((ns, bytes)) => format!("peak {} at {}", human(bytes), seconds(ns)),
            None => "no allocations".into(),
        };
        eprintln!("heapreplay: wrote {} ({peak})", out.display());
    }
    Ok(code)
}

/// Where the trace's timeline ends: its last clock sample or its end,
/// whichever is later, in ns since the start.
pub fn end_ns(trace: &Trace) -> u64 {
    trace
        .clock
        .iter()
        .map(|c| c.ns)
        .chain(trace.end.as_ref().map(|e| e.end_ns))
        .max()
        .unwrap_or(0)
}

/// Replays `trace` into its timeline between `from_ns` and `to_ns` (past
/// `to_ns` only if not `bounded`), with `plan`'s snapshots marked (the
/// end's only with `at_exit`): in-use bytes, markers, the peak, and the
/// memory the program mapped itself.
pub fn collect(
    trace: &Trace,
    plan: &heapreplay_engine::plan::Plan,
    pipeline: bool,
    quiet: bool,
    (from_ns, to_ns): (u64, u64),
    bounded: bool,
    at_exit: bool,
) -> Result<(Timeline, ExitCode), String> {
    let mut timeline = Timeline::window(from_ns, to_ns, DEFAULT_BUCKETS);
    for m in (trace.markers.iter()).filter(|m| !bounded || m.ns <= to_ns) {
        timeline.marker(m.ns, marker_label(m));
    }

    let timeline = RefCell::new(timeline);
    let samples = clock_samples(trace);
    let mut snapshot_clock = SeqClock::new(&samples);
    let mut event_clock = SeqClock::new(&samples);
    // A window starts at the checkpoint before it, and the pass ends once
    // past it.
    let at_or_before_from = |last_seq: u64, _| SeqClock::new(&samples).ns_at(last_seq) <= from_ns;
    let past = std::cell::Cell::new(false);
    let started = std::cell::Cell::new(from_ns == 0);
    let (_, code) = pass::run_while(
        trace,
        plan,
        pipeline,
        quiet,
        pass::From::Where(&at_or_before_from),
        |heap, trigger, seq, _| {
            // Without rules the plan asks for the end of the trace only,
            // as gperftools dumps at exit: not worth a point unless asked.
            if matches!(trigger, Trigger::Exit { .. }) && !at_exit {
                return Ok(());
            }
            let ns = trigger.ns().unwrap_or_else(|| snapshot_clock.ns_at(seq));
            if bounded && ns > to_ns {
                return Ok(());
            }
            let bytes = heap.totals().inuse_bytes();
            timeline.borrow_mut().snapshot(ns, bytes, trigger.reason());
            Ok(())
        },
        Some(&mut |heap, event| {
            let ns = event_clock.ns_at(event.seq);
            past.set(ns > to_ns);
            let mut timeline = timeline.borrow_mut();
            let inuse = heap.totals().inuse_bytes();
            if ns >= from_ns && !started.replace(true) {
                // The level the window starts at: before its first event.
                timeline.push(from_ns.saturating_sub(1), level_before(inuse, event));
            }
            timeline.push(ns, inuse);
        }),
        || past.get(),
    )?;
    let mut timeline = timeline.into_inner();
    if !trace.mappings.is_empty() {
        timeline.set_mapped(mapped_curve(trace, &samples, from_ns, to_ns));
    }
    Ok((timeline, code))
}

/// The memory the program mapped itself over the window, one point per
/// mapping call.
fn mapped_curve(trace: &Trace, samples: &[ClockSample], from_ns: u64, to_ns: u64) -> Timeline {
    let mut curve = Timeline::window(from_ns, to_ns, DEFAULT_BUCKETS);
    let mut clock = SeqClock::new(samples);
    for (seq, bytes) in levels(&trace.mappings) {
        let ns = clock.ns_at(seq);
        if ns > to_ns {
            break;
        }
        curve.push(ns, bytes);
    }
    curve
}

/// Bytes in use before `event`, from `inuse` after it (a `Retire` is
/// applied with the allocation after it).
fn level_before(inuse: u64, event: &heapreplay_format::Event) -> u64 {
    use heapreplay_format::EventKind;
    match event.kind {
        EventKind::Alloc => inuse.saturating_sub(event.size),
        EventKind::Free if freed_stack(event).is_some() => inuse + event.size,
        EventKind::Free | EventKind::Retire => inuse,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_output_drops_zst() {
        assert_eq!(
            default_output(Path::new("dir/heapreplay.12.zst")),
            PathBuf::from("dir/heapreplay.12.timeline.svg")
        );
        assert_eq!(
            default_output(Path::new("t.trace")),
            PathBuf::from("t.trace.timeline.svg")
        );
    }
}
