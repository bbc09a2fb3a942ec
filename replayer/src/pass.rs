//! One replaying pass over a trace, shared by every command that replays:
//! the peak pre-pass when needed, progress, warnings about the trace, damage.

use crate::cli::{CommonArgs, RuleArgs};
use crate::progress::Progress;
use crate::seek::Seek;
use heapreplay_engine::clock::{seconds, SeqClock};
use heapreplay_engine::heap::Heap;
use heapreplay_engine::index::{Builder, Index, Start};
use heapreplay_engine::interval_rules::Thresholds;
use heapreplay_engine::mapped::MappedMemory;
use heapreplay_engine::maps::maps_at;
use heapreplay_engine::plan::{MarkerFilter, Plan, Point};
use heapreplay_engine::snapshots::{snapshot_by, Context, Outcome, Snapshotter, Standing, Trigger};
use heapreplay_engine::trace::{Carry, Pass, RunSummary, TakeRun};
use heapreplay_engine::Trace;
use heapreplay_format::Event;
use heapreplay_outputs::profile::{Snapshot, SymbolizedStacks};
use heapreplay_symbols::{default_debug_dirs, Symbolizer};
use std::cell::RefCell;
use std::process::ExitCode;

/// Exit status when output was written but the trace was damaged.
pub const EXIT_DAMAGED: u8 = 3;

/// The snapshot plan from the command line's rules.
pub fn plan(rules: &RuleArgs) -> Plan {
    Plan {
        thresholds: Thresholds {
            alloc_interval: rules.interval.unwrap_or(0),
            dealloc_interval: rules.dealloc_interval.unwrap_or(0),
            inuse_interval: rules.inuse_interval.unwrap_or(0),
            time_interval_ns: rules.time_interval.unwrap_or(0),
        },
        markers: rules.at_marker.clone(),
        at: rules.at.clone(),
        peak: rules.at_peak,
        exit: rules.at_exit,
        profiler_windows: false,
    }
}

/// Opens a trace and sets up the decoding threads.
pub fn open(path: &std::path::Path, common: &CommonArgs) -> Result<(Trace, bool), String> {
    let pipeline = crate::threads::setup(common.threads)?;
    Ok((open_trace(path)?, pipeline))
}

/// Opens a trace, with a file cut shorter while it is read made an error
/// (see [`crate::shrink_guard`]).
pub fn open_trace(path: &std::path::Path) -> Result<Trace, String> {
    crate::shrink_guard::watch(path);
    let opened = match crate::seek::enabled() {
        true => Trace::open_indexed(path),
        false => Trace::open(path),
    };
    opened.map_err(|e| e.to_string())
}

/// Resolves the trace's stacks against the maps recorded over its whole run.
pub fn stacks<'a>(trace: &'a Trace, common: &CommonArgs) -> SymbolizedStacks<'a> {
    let dirs = if common.debug_dir.is_empty() {
        default_debug_dirs()
    } else {
        common.debug_dir.clone()
    };
    let maps = maps_at(&trace.maps, u64::MAX);
    SymbolizedStacks::new(&trace.stacks, Symbolizer::new(&maps, dirs))
}

/// Named markers asked for that the trace does not hold are an error (most
/// likely a typo); signals that never came are only worth a warning.
fn check_markers(trace: &Trace, plan: &Plan, quiet: bool) -> Result<(), String> {
    // The recorded plan (gperftools' variables: the only one with any named
    // marker) dumps at HEAPPROFILESIGNAL if it came, and is silent if it
    // did not, as gperftools is.
    let recorded = plan.markers.contains(&MarkerFilter::AnyNamed);
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
            // gperftools' dumps from code: a program need not make any.
            MarkerFilter::AnyNamed => {}
            _ if !quiet && !recorded => eprintln!(
                "heapreplay: {}: no {} marker in this trace (markers in this trace: {present})",
                trace.path.display(),
                f.describe()
            ),
            _ => {}
        }
    }
    Ok(())
}

/// What a pass calls after every event, with the heap after it.
pub type Each<'a> = &'a mut dyn FnMut(&Heap, &Event);

/// Where a replaying pass may start.
#[derive(Clone, Copy)]
pub enum From<'a> {
    /// At the beginning: the caller needs every event (an export).
    #[cfg_attr(not(feature = "parquet"), allow(dead_code))]
    Beginning,
    /// At the latest checkpoint before every snapshot of the plan: a replay.
    BeforeSnapshots,
    /// At the latest checkpoint this allows, given the seq of the last
    /// event before it and where in-use bytes peak.
    Where(&'a dyn Fn(u64, Option<(u64, u64)>) -> bool),
}

/// Replays `trace` under `plan`: `sink(heap, trigger, seq, progress)` at each
/// snapshot point, `each(heap, event)` after every event (without it,
/// stretches of events with no snapshot inside may be applied at once). Returns what the pass
/// found and the exit status (damage gives [`EXIT_DAMAGED`]), having told the
/// user about a missing end, `--at` points past the end, and damage.
#[allow(clippy::too_many_arguments)]
pub fn run(
    trace: &Trace,
    plan: &Plan,
    pipeline: bool,
    quiet: bool,
    from: From<'_>,
    sink: impl FnMut(&Heap, &Trigger, u64, &Progress) -> Result<(), String>,
    each: Option<Each<'_>>,
) -> Result<(Outcome, ExitCode), String> {
    run_while(trace, plan, pipeline, quiet, from, sink, each, || false)
}

/// [`run`], stopping as soon as `enough()` is true after an event: the rest
/// of the trace is then neither read nor reported on, and there is no
/// end-of-trace snapshot.
#[allow(clippy::too_many_arguments)]
pub fn run_while(
    trace: &Trace,
    plan: &Plan,
    pipeline: bool,
    quiet: bool,
    from: From<'_>,
    mut sink: impl FnMut(&Heap, &Trigger, u64, &Progress) -> Result<(), String>,
    mut each: Option<Each<'_>>,
    enough: impl Fn() -> bool,
) -> Result<(Outcome, ExitCode), String> {
    check_markers(trace, plan, quiet)?;
    let mut seek = Seek::new(trace, quiet);
    // The peak is only known after a whole pass (or from the index).
    let total = trace.recorded_events();
    let peak = if plan.peak {
        let mut progress = Progress::new(total, "finding the peak", quiet);
        let peak = seek.peak(pipeline, || progress.tick())?;
        progress.finish();
        let folded = trace.fold().and_then(|f| f.peak());
        if let Some((_, bytes, ns)) = folded.filter(|f| peak.is_none_or(|p| f.1 > p.1)) {
            if !quiet {
                eprintln!(
                    "heapreplay: {}: the run peaked at {bytes} bytes in use at {}, before the part the trace keeps; the peak of that part is used",
                    trace.path.display(),
                    seconds(ns)
                );
            }
        }
        peak
    } else {
        None
    };
    let ctx = Context::of(trace);
    let start = match from {
        _ if plan.needs_every_event() => Start::beginning(trace),
        From::Beginning => Start::beginning(trace),
        From::BeforeSnapshots => seek.start(|l| !snapshot_by(ctx, plan, peak, l)),
        From::Where(ok) => seek.start(|l| ok(l, peak)),
    };
    let progress = RefCell::new(Progress::new(
        total.saturating_sub(start.events),
        "replaying",
        quiet,
    ));
    let sink = |heap: &Heap, trigger: &Trigger, seq| sink(heap, trigger, seq, &progress.borrow());
    let engine = if start.checkpoint().is_some() {
        Snapshotter::resume_at(ctx, plan, peak, start.heap.clone(), start.last_seq, sink)
    } else {
        Snapshotter::new(ctx, plan, peak, sink)
    };
    let mut seen = 0u32;
    // The index takes its checkpoints' counters from the engine's heap.
    let engine = RefCell::new(engine);
    let heap_now = || engine.borrow().real_heap().clone();
    // With nothing to see between snapshots, a run with none inside is
    // taken whole.
    let mut take_run = |s: &RunSummary| {
        if !engine.borrow_mut().take_run(s) {
            return None;
        }
        progress.borrow_mut().add(s.events());
        Some(!enough())
    };
    let take_run = each.is_none().then_some(&mut take_run as TakeRun);
    let pass = seek.pass(pipeline, start, &heap_now, take_run, |e| {
        seen += 1;
        if seen == 1 << 16 {
            progress.borrow_mut().add(u64::from(seen));
            seen = 0;
        }
        let mut engine = engine.borrow_mut();
        engine.event(e)?;
        if let Some(each) = each.as_mut() {
            each(engine.heap(), e);
        }
        Ok::<bool, String>(!enough())
    })?;
    let engine = engine.into_inner();
    // Stopped early, the end of the trace was not reached: no end-of-trace
    // snapshot, and nothing to say about the end.
    let outcome = if pass.stopped {
        Outcome::default()
    } else {
        engine.finish()?
    };
    progress.borrow_mut().finish();

    let code = report(trace, &pass, &outcome, quiet, false);
    Ok((outcome, code))
}

/// Tells the user about `--at` points past the end, a missing end, and
/// damage (`said_before`: damage was already said in follow rounds); the
/// exit status.
fn report(
    trace: &Trace,
    pass: &Pass,
    outcome: &Outcome,
    quiet: bool,
    said_before: bool,
) -> ExitCode {
    let shown = trace.path.display();
    if !quiet && !pass.stopped {
        for t in &outcome.past_end {
            eprintln!(
                "heapreplay: {shown}: --at {} is after the end of the trace ({}); no snapshot for it",
                seconds(*t),
                seconds(outcome.end_ns)
            );
        }
        if let Some(note) = live_note(trace) {
            eprintln!("heapreplay: {shown}: {note}");
        } else if trace.end.is_none() {
            eprintln!(
                "heapreplay: {shown}: the trace has no end record (the process was killed or crashed); replayed up to its last flush"
            );
        }
    }
    let problems = trace.damage(pass);
    if problems.is_empty() && !said_before {
        // A time asked for past the end of a finished trace got nothing:
        // not a success (a live trace may yet reach it).
        let missed = !pass.stopped && !outcome.past_end.is_empty() && trace.live.is_none();
        return if missed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    for p in &problems {
        eprintln!(
            "heapreplay: {shown}: damaged at offset {}: {}",
            p.offset, p.what
        );
    }
    eprintln!(
        "heapreplay: {shown}: replayed {} events that were intact; the output is partial",
        pass.events
    );
    ExitCode::from(EXIT_DAMAGED)
}

/// For a trace still being written: which process writes it, and how far
/// back it is read to (`still being written by pid N; up to 0.8 s ago`).
pub fn live_note(trace: &Trace) -> Option<String> {
    let live = trace.live?;
    let pid = live.pid;
    Some(match live.complete_below {
        Some(0) => format!(
            "still being written by pid {pid}; nothing is complete yet (the recorder marks its progress every second)"
        ),
        Some(_) => format!(
            "still being written by pid {pid}; up to {} ago",
            seconds_ago(live.age_ns(trace.info.start_unix_ns))
        ),
        None => format!(
            "still being written by pid {pid} (format 3, without progress marks); read as far as it goes"
        ),
    })
}

/// `0.8 s`, `12 s`, `3 min`: how long ago, rounded for a person.
fn seconds_ago(ns: u64) -> String {
    let s = ns as f64 / 1e9;
    if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else {
        format!("{:.0} min", s / 60.0)
    }
}

/// A pass for follow mode over a trace still being written: `sink` at each
/// snapshot point before the event at seq `until`, then stop. No peak, no
/// end-of-trace snapshot, no progress and no report: the final pass, once
/// the trace is finished, does those. The rounds build the trace's index
/// as they go, so that opening the trace stays quick however long it grows.
pub fn run_until(
    trace: &Trace,
    plan: &Plan,
    pipeline: bool,
    until: u64,
    followed: &mut Followed,
    sink: impl FnMut(&Heap, &Trigger, u64) -> Result<(), String>,
) -> Result<(), String> {
    let (engine, pass) = round(trace, plan, pipeline, Some(until), followed, sink)?;
    followed.standing = engine.standing();
    followed.save(trace, &pass, false);
    // Damage is said as soon as a round meets it (once); the final pass
    // says it all again and exits with its status.
    for p in trace.damage(&pass) {
        if followed.said.insert(p.offset) {
            eprintln!(
                "heapreplay: {}: damaged at offset {}: {}",
                trace.path.display(),
                p.offset,
                p.what
            );
        }
    }
    Ok(())
}

/// Follow mode's last pass, once the trace is finished: from where the
/// rounds stood to the end, with the end-of-trace snapshot and the report
/// of a replay.
pub fn run_rest(
    trace: &Trace,
    plan: &Plan,
    pipeline: bool,
    quiet: bool,
    followed: &mut Followed,
    sink: impl FnMut(&Heap, &Trigger, u64) -> Result<(), String>,
) -> Result<(Outcome, ExitCode), String> {
    let (engine, mut pass) = round(trace, plan, pipeline, None, followed, sink)?;
    let outcome = engine.finish()?;
    followed.save(trace, &pass, true);
    // The report counts every event, not only this pass's.
    pass.events += followed.events;
    let code = report(trace, &pass, &outcome, quiet, !followed.said.is_empty());
    Ok((outcome, code))
}

/// One follow pass, from where `followed` stands up to the event at
/// `until` (to the end with `None`), building the index on the way; the
/// engine as the pass leaves it.
fn round<'a, S>(
    trace: &'a Trace,
    plan: &'a Plan,
    pipeline: bool,
    until: Option<u64>,
    followed: &mut Followed,
    sink: S,
) -> Result<(Snapshotter<'a, S, String>, Pass), String>
where
    S: FnMut(&Heap, &Trigger, u64) -> Result<(), String>,
{
    let ctx = Context::of(trace);
    let fold = trace.fold().map_or(0, |f| f.seq);
    let engine = RefCell::new(if followed.started {
        if fold > followed.carry.from {
            return Err(format!(
                "the trace was folded past the point follow mode had reached (event {}); follow it again",
                followed.carry.from
            ));
        }
        Snapshotter::resume(ctx, plan, followed.standing.clone(), sink)
    } else {
        followed.carry = trace.beginning();
        followed.started = true;
        Snapshotter::new(ctx, plan, None, sink)
    });
    let heap_now = || engine.borrow().real_heap().clone();
    let mut carry = followed.carry.clone();
    followed.start_building(trace);
    let builder = followed.builder.as_mut();
    let pass = trace.for_each_event_building(
        pipeline,
        &mut carry,
        until,
        builder.map(|b| (b, &heap_now as &dyn Fn() -> Heap)),
        |e| {
            engine.borrow_mut().event(e)?;
            Ok::<bool, String>(true)
        },
    )?;
    followed.carry = carry;
    Ok((engine.into_inner(), pass))
}

/// How far follow mode has replayed a growing trace: the live blocks and
/// the snapshot engine's state after the events so far, so that each round
/// replays only what is new; and the index it builds on the way.
#[derive(Default)]
pub struct Followed {
    /// A round has run: `carry` and `standing` are where it left off.
    started: bool,
    carry: Carry,
    standing: Standing,
    /// Events replayed by the rounds so far.
    events: u64,
    builder: Option<Builder>,
    /// The builder could not be made, or failed: no index from this follow.
    no_index: bool,
    /// Offsets of the damage already said.
    said: std::collections::HashSet<u64>,
}

impl Followed {
    /// Snapshot points made so far.
    pub fn snapshots(&self) -> usize {
        self.standing.snapshots()
    }

    /// Every event below this seq has been replayed.
    pub fn replayed_below(&self) -> u64 {
        self.carry.from
    }

    /// Makes the index builder on the first round, replaying from the start.
    fn start_building(&mut self, trace: &Trace) {
        if self.builder.is_some() || self.no_index || self.carry.from != 0 {
            return;
        }
        if crate::seek::enabled() {
            let index = Index::find(trace);
            let start = Start::beginning(trace);
            self.builder = Builder::new(trace, index.as_ref(), &start, crate::seek::spacing());
        }
        self.no_index = self.builder.is_none();
    }

    /// Writes the checkpoints the round took, if any.
    fn save(&mut self, trace: &Trace, pass: &Pass, reached_end: bool) {
        self.events += pass.events;
        let Some(builder) = self.builder.as_mut() else {
            return;
        };
        if !pass.problems.is_empty() {
            self.builder = None;
            self.no_index = true;
            return;
        }
        if builder.made() > 0 || reached_end {
            if let Err(e) = builder.save(trace, reached_end, true) {
                eprintln!(
                    "heapreplay: {}: cannot write its index ({e}); points will be replayed from the start",
                    trace.path.display()
                );
                self.builder = None;
                self.no_index = true;
            }
        }
    }
}

/// The snapshot point a [`Point`] comes out as in the pass.
enum Target {
    /// Before the first event: nothing allocated.
    Start,
    Exit,
    Peak,
    At(u64),
    MarkerSeq(u64),
}

impl Target {
    fn matches(&self, trigger: &Trigger, seq: u64) -> bool {
        match (self, trigger) {
            (Target::Exit, Trigger::Exit { .. }) | (Target::Peak, Trigger::Peak { .. }) => true,
            (Target::At(t), Trigger::At { ns }) => t == ns,
            (Target::MarkerSeq(s), Trigger::Marker { .. }) => *s == seq,
            _ => false,
        }
    }
}

/// Snapshots of `trace` at each of `points` (in the order given), in one pass.
pub fn capture(
    trace: &Trace,
    points: &[Point],
    pipeline: bool,
    quiet: bool,
) -> Result<(Vec<Snapshot>, ExitCode), String> {
    capture_with(trace, points, pipeline, quiet, |_| {}, None)
}

/// Where in the pass a point's snapshot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Which of the points.
    pub point: usize,
    /// The event at which it was taken (0 before the first).
    pub seq: u64,
    /// The snapshot holds that event (the peak), else it was taken just
    /// before it.
    pub after_event: bool,
}

/// [`capture`], calling `taken` as each point's snapshot is taken and
/// `each` after every event, from the first on.
pub fn capture_with(
    trace: &Trace,
    points: &[Point],
    pipeline: bool,
    quiet: bool,
    mut taken: impl FnMut(Taken),
    each: Option<Each<'_>>,
) -> Result<(Vec<Snapshot>, ExitCode), String> {
    let mut plan = Plan::default();
    let mut targets = Vec::new();
    let shown = trace.path.display();
    for p in points {
        targets.push(match p {
            Point::End => {
                plan.exit = true;
                Target::Exit
            }
            Point::Peak => {
                plan.peak = true;
                Target::Peak
            }
            Point::Time(t) => {
                let ns = t.offset_ns(trace.info.start_unix_ns).ok_or_else(|| {
                    format!("{shown}: {} is before the trace started", p.describe())
                })?;
                if ns == 0 {
                    Target::Start
                } else {
                    plan.at.push(*t);
                    Target::At(ns)
                }
            }
            Point::Marker(f, n) => {
                let m = trace
                    .markers
                    .iter()
                    .filter(|m| f.matches(m))
                    .nth(n - 1)
                    .ok_or_else(|| {
                        format!(
                            "{shown}: there is no {} (markers in this trace: {})",
                            p.describe(),
                            crate::info::marker_summary(&trace.markers)
                        )
                    })?;
                plan.markers.push(f.clone());
                Target::MarkerSeq(m.seq)
            }
        });
    }
    if let Some(fold) = trace.fold() {
        for (t, p) in targets.iter().zip(points) {
            let before = match t {
                Target::Start => true,
                Target::At(ns) => *ns < fold.info.ns,
                Target::MarkerSeq(seq) => *seq < fold.seq,
                Target::Peak | Target::Exit => false,
            };
            if before {
                return Err(format!(
                    "{shown}: {} is before the part of the run the trace keeps (from {} on; what came before was folded)",
                    p.describe(),
                    seconds(fold.info.ns)
                ));
            }
        }
    }
    let mut found: Vec<Option<Snapshot>> = targets
        .iter()
        .map(|t| {
            matches!(t, Target::Start).then(|| Snapshot::take(&Heap::new(), "start".into(), 0))
        })
        .collect();
    for (point, slot) in found.iter().enumerate() {
        if slot.is_some() {
            taken(Taken {
                point,
                seq: 0,
                after_event: false,
            });
        }
    }
    let mut clock = SeqClock::new(&trace.clock);
    let mut mapped = MappedMemory::new(&trace.mappings);
    // The pass stops once every point is taken: a point early in a long
    // trace costs only the part of the trace before it.
    let missing = std::cell::Cell::new(found.iter().filter(|s| s.is_none()).count());
    // Start at the latest checkpoint before every point; at the
    // beginning if `each` must see every event from the start.
    let from_start = each.is_some();
    let before_all = |last_seq: u64, peak: Option<(u64, u64)>| {
        targets.iter().all(|t| match t {
            Target::Start => !from_start,
            Target::Exit => true,
            Target::Peak => peak.is_none_or(|(seq, _)| seq > last_seq),
            Target::At(ns) => SeqClock::new(&trace.clock).ns_at(last_seq) <= *ns,
            Target::MarkerSeq(seq) => last_seq <= *seq,
        })
    };
    let (outcome, code) = run_while(
        trace,
        &plan,
        pipeline,
        quiet,
        From::Where(&before_all),
        |heap, trigger, seq, _| {
            let ns = trigger.ns().unwrap_or_else(|| clock.ns_at(seq));
            for (point, (slot, target)) in found.iter_mut().zip(&targets).enumerate() {
                if slot.is_none() && target.matches(trigger, seq) {
                    let mapped = mapped.seek_snapshot(trigger, seq);
                    *slot = Some(Snapshot::take(heap, trigger.reason(), ns).with_mapped(mapped));
                    missing.set(missing.get() - 1);
                    let after_event = matches!(target, Target::Peak);
                    taken(Taken {
                        point,
                        seq,
                        after_event,
                    });
                }
            }
            Ok(())
        },
        each,
        || missing.get() == 0,
    )?;
    let mut snapshots = Vec::new();
    for (slot, p) in found.into_iter().zip(points) {
        match slot {
            Some(s) => snapshots.push(s),
            // The pass's report has already said so for a time past the end.
            None if matches!(p, Point::Time(_)) && !outcome.past_end.is_empty() && !quiet => {
                return Err(String::new())
            }
            None => {
                return Err(format!(
                    "{shown}: {} is not in the trace (it ends at {})",
                    p.describe(),
                    seconds(outcome.end_ns)
                ))
            }
        }
    }
    Ok((snapshots, code))
}
