//! Replaying a trace into profile.heap files.

use crate::cli::ReplayArgs;
use crate::progress::Progress;
use heapreplay_analysis::clock::seconds;
use heapreplay_analysis::maps::maps_at;
use heapreplay_analysis::plan::{MarkerFilter, Plan};
use heapreplay_analysis::replay::Heap;
use heapreplay_analysis::rules::Thresholds;
use heapreplay_analysis::snapshots::{Context, Engine, PeakFinder, Trigger};
use heapreplay_analysis::trace::io_text;
use heapreplay_analysis::{heap_profile, Trace};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit status when profiles were written but the trace was damaged.
const EXIT_DAMAGED: u8 = 3;

/// The default output prefix: the trace path without `.zst`.
fn default_prefix(trace: &Path) -> PathBuf {
    let s = trace.to_string_lossy();
    PathBuf::from(s.strip_suffix(".zst").unwrap_or(&s).to_string())
}

/// The snapshot plan from the command line.
fn plan(args: &ReplayArgs) -> Plan {
    Plan {
        thresholds: Thresholds {
            alloc_interval: args.interval.unwrap_or(0),
            dealloc_interval: args.dealloc_interval.unwrap_or(0),
            inuse_interval: args.inuse_interval.unwrap_or(0),
            time_interval_ns: args.time_interval.unwrap_or(0),
        },
        markers: args.at_marker.clone(),
        at: args.at.clone(),
        peak: args.at_peak,
        exit: args.at_exit,
    }
}

/// Writes one profile file per snapshot, numbered in time order.
struct Writer<'a> {
    trace: &'a Trace,
    text: heap_profile::StackText<'a>,
    prefix: PathBuf,
    count: usize,
    quiet: bool,
    progress: &'a std::cell::RefCell<Progress>,
}

impl Writer<'_> {
    fn write(&mut self, heap: &Heap, trigger: &Trigger, seq: u64) -> Result<(), String> {
        self.count += 1;
        let name = match trigger.tag() {
            None => format!("{}.{:04}.heap", self.prefix.display(), self.count),
            Some(tag) => format!("{}.{:04}.{tag}.heap", self.prefix.display(), self.count),
        };
        if !self.quiet {
            self.progress.borrow().say(&format!(
                "Dumping heap profile to {name} ({})",
                trigger.reason()
            ));
        }
        let file = std::fs::File::create(&name)
            .map_err(|e| format!("{name}: cannot write: {}", io_text(&e)))?;
        let mut out = BufWriter::new(file);
        let mut stacks: Vec<_> = heap.stacks().collect();
        let maps = maps_at(&self.trace.maps, seq);
        heap_profile::write(&mut out, &heap.totals(), &mut stacks, &mut self.text, &maps)
            .and_then(|_| out.flush())
            .map_err(|e| format!("{name}: cannot write: {}", io_text(&e)))
    }
}

/// Named markers asked for that the trace does not hold are an error (most
/// likely a typo); signals that never came are only worth a warning.
fn check_markers(trace: &Trace, plan: &Plan, quiet: bool) -> Result<(), String> {
    for f in &plan.markers {
        if trace.markers.iter().any(|m| f.matches(m)) {
            continue;
        }
        let present = crate::info::marker_summary(&trace.markers);
        match f {
            MarkerFilter::Named(_) => {
                return Err(format!(
                    "{}: no marker named {} (markers in this trace: {present})",
                    trace.path.display(),
                    f.describe()
                ))
            }
            _ if !quiet => eprintln!(
                "heapreplay: {}: no {} marker in this trace (markers in this trace: {present})",
                trace.path.display(),
                f.describe()
            ),
            _ => {}
        }
    }
    Ok(())
}

/// Replays the trace with the chosen rules.
pub fn run(args: &ReplayArgs) -> Result<ExitCode, String> {
    let path = args.trace.as_deref().ok_or("no trace given")?;
    let pipeline = crate::threads::setup(args.threads)?;
    let trace = Trace::open(path).map_err(|e| e.to_string())?;
    let plan = plan(args);
    check_markers(&trace, &plan, args.quiet)?;
    // The peak is only known after a whole pass: find it first if asked for.
    let total = trace.recorded_events();
    let peak = if plan.peak {
        let mut finder = PeakFinder::default();
        let mut progress = Progress::new(total, "finding the peak", args.quiet);
        trace.for_each_event(pipeline, |e| {
            finder.push(e);
            progress.tick();
            Ok::<(), String>(())
        })?;
        progress.finish();
        finder.peak()
    } else {
        None
    };
    let progress = std::cell::RefCell::new(Progress::new(total, "replaying", args.quiet));
    let mut writer = Writer {
        trace: &trace,
        text: heap_profile::StackText::new(&trace.stacks),
        prefix: args.output.clone().unwrap_or_else(|| default_prefix(path)),
        count: 0,
        quiet: args.quiet,
        progress: &progress,
    };
    let ctx = Context {
        markers: &trace.markers,
        clock: &trace.clock,
        start_unix_ns: trace.info.start_unix_ns,
        clean_end: trace.end.is_some(),
    };
    let mut engine = Engine::new(ctx, &plan, peak, |heap: &Heap, trigger: &Trigger, seq| {
        writer.write(heap, trigger, seq)
    });
    let mut seen = 0u32;
    let pass = trace.for_each_event(pipeline, |e| {
        seen += 1;
        if seen == 1 << 16 {
            progress.borrow_mut().add(u64::from(seen));
            seen = 0;
        }
        engine.event(e)
    })?;
    let outcome = engine.finish()?;
    progress.borrow_mut().finish();
    let problems: Vec<_> = trace.problems.iter().chain(&pass.problems).collect();

    let shown = path.display();
    if !args.quiet {
        for t in &outcome.past_end {
            eprintln!(
                "heapreplay: {shown}: --at {} is after the end of the trace ({}); no profile for it",
                seconds(*t),
                seconds(outcome.end_ns)
            );
        }
        if trace.end.is_none() {
            eprintln!(
                "heapreplay: {shown}: the trace has no end record (the process was killed or is still running); replayed up to its last flush"
            );
        }
        if outcome.snapshots == 0 {
            eprintln!("heapreplay: {shown}: no snapshot point matched; nothing written");
        }
    }
    if problems.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for p in &problems {
        eprintln!(
            "heapreplay: {shown}: damaged at offset {}: {}",
            p.offset, p.what
        );
    }
    eprintln!(
        "heapreplay: {shown}: replayed {} events that were intact; profiles above are partial",
        pass.events
    );
    Ok(ExitCode::from(EXIT_DAMAGED))
}
