//! One pass over the ordered events that decides every snapshot point of a
//! plan (gperftools' rules, markers, times, the peak, the end) and hands the
//! heap at each point to a sink, in time order.

use crate::clock::{seconds, SeqClock};
use crate::heap::Heap;
use crate::interval_rules::{DumpRules, Reason};
use crate::plan::{marker_label, Plan};
use crate::resolve::{freed_stack, resolve_all};
use crate::trace::RunSummary;
use crate::windows::{WindowState, Windows};
use heapreplay_format::{ClockSample, Event, EventKind, Marker};

/// Why a snapshot was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// One of gperftools' interval rules.
    Rule(Reason),
    /// A marker.
    Marker {
        /// `SIGUSR2` or `'name'`.
        label: String,
        /// When, in ns since the start.
        ns: u64,
    },
    /// A point in time asked for with `--at`.
    At {
        /// Nanoseconds since the start.
        ns: u64,
    },
    /// Where in-use bytes were highest.
    Peak {
        /// Bytes in use.
        bytes: u64,
        /// When, in ns since the start.
        ns: u64,
    },
    /// The end of the trace.
    Exit {
        /// Bytes in use.
        inuse_bytes: u64,
        /// The process exited normally (else it was killed or is still running).
        clean: bool,
    },
}

impl Trigger {
    /// The reason as logged: gperftools' text for its own rules.
    pub fn reason(&self) -> String {
        match self {
            Trigger::Rule(r) => r.text(),
            Trigger::Marker { label, ns } => format!("marker {label} at {}", seconds(*ns)),
            Trigger::At { ns } => format!("at {}", seconds(*ns)),
            Trigger::Peak { bytes, ns } => {
                format!("peak: {} MB in use at {}", bytes >> 20, seconds(*ns))
            }
            Trigger::Exit {
                inuse_bytes,
                clean: true,
            } => Reason::Exit {
                inuse_bytes: *inuse_bytes,
            }
            .text(),
            Trigger::Exit {
                inuse_bytes,
                clean: false,
            } => format!(
                "end of trace, {} MB in use; the process did not exit",
                inuse_bytes >> 20
            ),
        }
    }

    /// When it happened, in ns since the start, for the triggers that carry
    /// their time (markers, `--at` points, the peak); the others happen at
    /// their event's time, which the caller's clock gives.
    pub fn ns(&self) -> Option<u64> {
        match self {
            Trigger::At { ns } | Trigger::Marker { ns, .. } | Trigger::Peak { ns, .. } => Some(*ns),
            Trigger::Rule(_) | Trigger::Exit { .. } => None,
        }
    }

    /// The rule's part of the file name; `None` for gperftools' own dumps,
    /// which keep gperftools' names.
    pub fn tag(&self) -> Option<String> {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '+' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        match self {
            Trigger::Rule(_) | Trigger::Exit { .. } => None,
            Trigger::Marker { label, .. } => {
                Some(format!("marker-{}", clean(label.trim_matches('\''))))
            }
            Trigger::At { ns } => Some(format!("at-{}ms", ns / 1_000_000)),
            Trigger::Peak { .. } => Some("peak".into()),
        }
    }
}

/// What the pass found beyond the snapshots themselves.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Snapshots handed to the sink.
    pub snapshots: usize,
    /// `--at` points after the end of the trace (ns), which got no snapshot.
    pub past_end: Vec<u64>,
    /// Time of the last event, ns since the start.
    pub end_ns: u64,
}

/// Finds where in-use bytes peaked, one resolved event at a time.
#[derive(Debug, Default, Clone, Copy)]
pub struct PeakFinder {
    inuse: u64,
    best: Option<(u64, u64)>,
}

impl PeakFinder {
    /// A finder for the events after a point where `inuse` bytes were in
    /// use (a checkpoint): it finds the peak of those events only.
    pub fn starting_at(inuse: u64) -> Self {
        Self { inuse, best: None }
    }

    /// Takes the next resolved event in sequence order.
    #[inline]
    pub fn push(&mut self, e: &Event) {
        match e.kind {
            EventKind::Alloc => {
                self.inuse += e.size;
                if self.best.is_none_or(|(_, b)| self.inuse > b) {
                    self.best = Some((e.seq, self.inuse));
                }
            }
            EventKind::Free | EventKind::Retire => {
                if freed_stack(e).is_some() {
                    self.inuse -= e.size;
                }
            }
        }
    }

    /// Bytes in use after the events so far.
    pub fn inuse(&self) -> u64 {
        self.inuse
    }

    /// The peak so far: (seq of the event after which, bytes in use).
    pub fn peak(&self) -> Option<(u64, u64)> {
        self.best
    }
}

/// Where in-use bytes peaked in resolved `events`: (seq of the event after
/// which, bytes).
pub fn find_peak(events: &[Event]) -> Option<(u64, u64)> {
    let mut finder = PeakFinder::default();
    events.iter().for_each(|e| finder.push(e));
    finder.peak()
}

/// What the engine needs to know about the trace besides its events.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// Markers in sequence order.
    pub markers: &'a [Marker],
    /// Clock samples in (seq, ns) order.
    pub clock: &'a [ClockSample],
    /// Wall-clock start of recording, ns since the epoch.
    pub start_unix_ns: u64,
    /// The trace ends with the process exiting.
    pub clean_end: bool,
    /// The fold the trace starts from, if it was folded.
    pub fold: Option<&'a crate::trace::Fold>,
}

/// Where a [`Snapshotter`] stands after the events it was fed: enough to
/// go on with the events that follow, in another pass (follow mode replays
/// a growing trace a part at a time).
#[derive(Debug, Clone, Default)]
pub struct Standing {
    heap: Heap,
    rules: Option<DumpRules>,
    next_marker: usize,
    next_at: usize,
    last_seq: u64,
    windows: Option<WindowState>,
    out: Outcome,
}

impl Standing {
    /// Snapshots made so far.
    pub fn snapshots(&self) -> usize {
        self.out.snapshots
    }
}

impl<'a> Context<'a> {
    /// The context of an opened trace.
    pub fn of(trace: &'a crate::Trace) -> Self {
        Self {
            markers: &trace.markers,
            clock: &trace.clock,
            start_unix_ns: trace.info.start_unix_ns,
            clean_end: trace.end.is_some() && !trace.detached,
            fold: trace.fold(),
        }
    }
}

/// The snapshot pass, fed one event at a time in sequence order; it calls
/// `sink(heap, trigger, seq)` at each snapshot point of the plan, in time
/// order (`seq` says which maps apply).
pub struct Snapshotter<'a, S, E> {
    plan: &'a Plan,
    ctx: Context<'a>,
    heap: Heap,
    rules: DumpRules,
    times: SeqClock<'a>,
    chosen: Vec<&'a Marker>,
    at: Vec<u64>,
    peak: Option<(u64, u64)>,
    need_time: bool,
    next_marker: usize,
    next_at: usize,
    last_seq: u64,
    /// Blocks retired by the next allocation (see [`EventKind::Retire`]).
    retired: Vec<Event>,
    /// The program's starts and stops of gperftools' profiler, when the
    /// plan follows them and the trace has a stop.
    windows: Option<Windows<'a>>,
    out: Outcome,
    sink: S,
    _error: std::marker::PhantomData<E>,
}

impl<'a, S, E> Snapshotter<'a, S, E>
where
    S: FnMut(&Heap, &Trigger, u64) -> Result<(), E>,
{
    /// An engine for `plan`; `peak` is where in-use bytes peak (needed when
    /// the plan asks for the peak: see [`PeakFinder`]).
    pub fn new(ctx: Context<'a>, plan: &'a Plan, peak: Option<(u64, u64)>, sink: S) -> Self {
        let rules = DumpRules::new(plan.thresholds);
        let chosen: Vec<&Marker> = ctx
            .markers
            .iter()
            .filter(|m| plan.markers.iter().any(|f| f.matches(m)))
            .collect();
        let mut at: Vec<u64> = plan
            .at
            .iter()
            .filter_map(|t| t.offset_ns(ctx.start_unix_ns))
            .collect();
        at.sort_unstable();
        let peak = if plan.peak { peak } else { None };
        let need_time = rules.needs_time() || !at.is_empty() || peak.is_some();
        let mut engine = Self {
            plan,
            ctx,
            heap: Heap::new(),
            rules,
            times: SeqClock::new(ctx.clock),
            chosen,
            at,
            peak,
            need_time,
            next_marker: 0,
            next_at: 0,
            last_seq: 0,
            retired: Vec::new(),
            windows: None,
            out: Outcome::default(),
            sink,
            _error: std::marker::PhantomData,
        };
        engine.windows = plan
            .profiler_windows
            .then(|| Windows::of(ctx.markers))
            .flatten();
        if let Some(fold) = ctx.fold {
            engine.start_at_fold(fold);
        }
        engine
    }

    /// Starts from a fold: its heap; markers and times before it passed
    /// without snapshots; interval rules counting from it.
    fn start_at_fold(&mut self, fold: &crate::trace::Fold) {
        // Which of the fold's blocks a start left out is not known there.
        self.windows = None;
        self.heap = fold.heap.clone();
        self.last_seq = fold.last_seq;
        self.rules.dumped(self.heap.totals());
        self.rules.timed_from(fold.info.ns);
        self.next_marker = self.chosen.partition_point(|m| m.seq < fold.seq);
        self.next_at = self.at.partition_point(|&t| t < fold.info.ns);
        self.out.end_ns = fold.info.ns;
    }

    /// Passes the chosen markers and the profiler's starts and stops
    /// before `seq` (all of them with `None`), in seq order: a marker while
    /// the profiler is stopped makes no snapshot, and a start after a stop
    /// begins an empty profile with its interval rules counting afresh.
    fn pass_marks(&mut self, before: Option<u64>) -> Result<(), E> {
        let due = |s: u64| before.is_none_or(|b| s < b);
        loop {
            let marker = self
                .chosen
                .get(self.next_marker)
                .copied()
                .filter(|m| due(m.seq));
            let mark = self
                .windows
                .as_ref()
                .and_then(Windows::next_seq)
                .filter(|&s| due(s));
            match (marker, mark) {
                (None, None) => return Ok(()),
                (Some(m), mark) if mark.is_none_or(|s| m.seq < s) => {
                    self.next_marker += 1;
                    if self.windows.as_ref().is_none_or(Windows::running) {
                        self.emit_marker(m)?;
                    }
                }
                _ => {
                    let started = self.windows.as_mut().and_then(Windows::pass_mark);
                    if let Some(ns) = started {
                        self.heap = Heap::new();
                        self.rules = DumpRules::new(self.plan.thresholds);
                        self.rules.timed_from(ns);
                    }
                }
            }
        }
    }

    fn emit_marker(&mut self, m: &Marker) -> Result<(), E> {
        self.emit(
            Trigger::Marker {
                label: marker_label(m),
                ns: m.ns,
            },
            m.seq,
        )
    }

    fn emit(&mut self, trigger: Trigger, seq: u64) -> Result<(), E> {
        self.out.snapshots += 1;
        (self.sink)(&self.heap, &trigger, seq)
    }

    /// Takes the next resolved event (see [`crate::resolve`]).
    #[inline]
    pub fn event(&mut self, e: &Event) -> Result<(), E> {
        if e.kind == EventKind::Retire {
            // Part of the allocation that follows: applied with it.
            self.retired.push(*e);
            return Ok(());
        }
        let ns = if self.need_time {
            self.times.ns_at(e.seq)
        } else {
            0
        };
        self.pass_marks(Some(e.seq))?;
        while let Some(&t) = self.at.get(self.next_at).filter(|&&t| t < ns) {
            self.emit(Trigger::At { ns: t }, e.seq)?;
            self.next_at += 1;
        }
        for i in 0..self.retired.len() {
            let r = self.retired[i];
            self.apply(&r);
        }
        self.retired.clear();
        self.apply(e);
        if self.windows.as_ref().is_some_and(|w| !w.running()) {
            self.out.end_ns = ns;
            self.last_seq = e.seq;
            return Ok(());
        }
        // gperftools checks its rules after every allocation and every free.
        if let Some(reason) = self.rules.check(self.heap.totals(), ns) {
            self.emit(Trigger::Rule(reason), e.seq)?;
        }
        if let Some((seq, bytes)) = self.peak.filter(|&(seq, _)| seq == e.seq) {
            self.emit(Trigger::Peak { bytes, ns }, seq)?;
        }
        self.out.end_ns = ns;
        self.last_seq = e.seq;
        Ok(())
    }

    /// Applies one resolved event to the heap (with windows, only if it
    /// counts while gperftools' profiler runs).
    #[inline]
    fn apply(&mut self, e: &Event) {
        match self.windows.as_mut() {
            Some(w) => w.apply(e, &mut self.heap),
            None => self.heap.apply(e),
        }
    }

    /// Takes a resolved run whole if no snapshot falls inside it (no
    /// marker, time, peak or rule between its first and last event, nothing
    /// waiting to be applied): the heap after it is then what its events
    /// one by one would leave. False if its events are needed one by one.
    pub fn take_run(&mut self, s: &RunSummary) -> bool {
        if !self.retired.is_empty()
            || self.windows.is_some()
            || self
                .chosen
                .get(self.next_marker)
                .is_some_and(|m| m.seq < s.last_seq)
            || self
                .peak
                .is_some_and(|(seq, _)| (s.first_seq..=s.last_seq).contains(&seq))
        {
            return false;
        }
        let mut times = self.times.clone();
        let ns = if self.need_time {
            times.ns_at(s.last_seq)
        } else {
            0
        };
        if self.at.get(self.next_at).is_some_and(|&t| t < ns)
            || !self
                .rules
                .quiet_through(self.heap.totals(), &s.totals, s.rise, ns)
        {
            return false;
        }
        self.heap
            .apply_changes(&s.per_stack, &s.totals, s.unseen_frees);
        self.times = times;
        self.out.end_ns = ns;
        self.last_seq = s.last_seq;
        true
    }

    /// The heap as replayed so far.
    pub fn heap(&self) -> &Heap {
        &self.heap
    }

    /// The heap of every event so far, whatever the profiler windows leave
    /// out of [`Self::heap`]: what the index's checkpoints keep.
    pub fn real_heap(&self) -> &Heap {
        self.windows.as_ref().map_or(&self.heap, Windows::real_heap)
    }

    /// An engine that goes on from `standing` (from [`Self::standing`] of
    /// an engine over the same trace, context and plan, without a peak).
    pub fn resume(ctx: Context<'a>, plan: &'a Plan, standing: Standing, sink: S) -> Self {
        let mut engine = Self::new(ctx, plan, None, sink);
        engine.heap = standing.heap;
        if let Some(rules) = standing.rules {
            engine.rules = rules;
        }
        engine.next_marker = standing.next_marker;
        engine.next_at = standing.next_at;
        engine.last_seq = standing.last_seq;
        if let Some(w) = engine.windows.as_mut() {
            w.resume(standing.windows, &engine.heap);
        }
        engine.out = standing.out;
        engine
    }

    /// An engine that goes on from a checkpoint of the same trace: `heap`
    /// after every event up to the one at `last_seq`. The plan must have no
    /// interval rules (their state depends on every event before); what
    /// the engine would have done up to there (markers, times and the peak
    /// already passed) counts as done, so snapshots after it come out as
    /// from the start, numbered alike.
    pub fn resume_at(
        ctx: Context<'a>,
        plan: &'a Plan,
        peak: Option<(u64, u64)>,
        heap: Heap,
        last_seq: u64,
        sink: S,
    ) -> Self {
        debug_assert!(!plan.needs_every_event());
        let mut engine = Self::new(ctx, plan, peak, sink);
        engine.heap = heap;
        engine.last_seq = last_seq;
        if last_seq == 0 {
            return engine;
        }
        let ns = if engine.need_time {
            engine.times.ns_at(last_seq)
        } else {
            0
        };
        engine.next_marker = engine.chosen.partition_point(|m| m.seq < last_seq);
        engine.next_at = engine.at.partition_point(|&t| t < ns);
        let peaked = engine.peak.is_some_and(|(seq, _)| seq <= last_seq);
        engine.out.snapshots = engine.next_marker + engine.next_at + usize::from(peaked);
        if peaked {
            engine.peak = None;
        }
        engine.out.end_ns = ns;
        engine
    }

    /// Where this engine stands, to go on from in another pass.
    pub fn standing(&self) -> Standing {
        debug_assert!(self.retired.is_empty(), "a Retire waits for its allocation");
        Standing {
            heap: self.heap.clone(),
            rules: Some(self.rules),
            next_marker: self.next_marker,
            next_at: self.next_at,
            last_seq: self.last_seq,
            windows: self.windows.as_ref().map(Windows::state),
            out: self.out.clone(),
        }
    }

    /// The end of the events: markers and times after the last event, and
    /// the end-of-trace snapshot.
    pub fn finish(mut self) -> Result<Outcome, E> {
        let last_seq = self.last_seq;
        let end_ns = self
            .ctx
            .clock
            .iter()
            .map(|c| c.ns)
            .max()
            .unwrap_or(0)
            .max(self.out.end_ns);
        self.out.end_ns = end_ns;
        self.pass_marks(None)?;
        for i in self.next_at..self.at.len() {
            let t = self.at[i];
            if t <= end_ns {
                self.emit(Trigger::At { ns: t }, last_seq)?;
            } else {
                self.out.past_end.push(t);
            }
        }
        // Stopped at the end: gperftools writes no exit dump.
        if self.plan.wants_exit() && self.windows.as_ref().is_none_or(Windows::running) {
            let inuse_bytes = self.heap.totals().inuse_bytes();
            self.emit(
                Trigger::Exit {
                    inuse_bytes,
                    clean: self.ctx.clean_end,
                },
                last_seq,
            )?;
        }
        Ok(self.out)
    }
}

/// True if a snapshot of the plan falls at or before the event at
/// `last_seq` (with `peak` where in-use bytes peak): a pass that must
/// write every snapshot cannot start after that event.
pub fn snapshot_by(ctx: Context<'_>, plan: &Plan, peak: Option<(u64, u64)>, last_seq: u64) -> bool {
    let mut clock = SeqClock::new(ctx.clock);
    let ns = clock.ns_at(last_seq);
    let marker = ctx
        .markers
        .iter()
        .any(|m| m.seq < last_seq && plan.markers.iter().any(|f| f.matches(m)));
    let at = plan
        .at
        .iter()
        .filter_map(|t| t.offset_ns(ctx.start_unix_ns))
        .any(|t| t < ns);
    let peaked = plan.peak && peak.is_some_and(|(seq, _)| seq <= last_seq);
    (plan.needs_every_event() && last_seq > 0) || marker || at || peaked
}

/// Replays `events` (all in memory) through an [`Snapshotter`].
pub fn run<E>(
    events: &[Event],
    markers: &[Marker],
    clock: &[ClockSample],
    start_unix_ns: u64,
    clean_end: bool,
    plan: &Plan,
    sink: impl FnMut(&Heap, &Trigger, u64) -> Result<(), E>,
) -> Result<Outcome, E> {
    let ctx = Context {
        markers,
        clock,
        start_unix_ns,
        clean_end,
        fold: None,
    };
    let events = resolve_all(events);
    let peak = if plan.peak { find_peak(&events) } else { None };
    let mut engine = Snapshotter::new(ctx, plan, peak, sink);
    for e in &events {
        engine.event(e)?;
    }
    engine.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heap::Counters;
    use crate::interval_rules::Thresholds;
    use crate::plan::{MarkerFilter, TimePoint};
    use heapreplay_format::MarkerSource;
    use proptest::prelude::*;

    /// What a part of resolved events does, summed up as the decoder sums
    /// up a compacted run's part.
    fn summary_of(events: &[Event]) -> RunSummary {
        let mut per_stack = std::collections::BTreeMap::<u32, Counters>::new();
        let (mut inuse, mut rise) = (0i128, 0i128);
        for e in events {
            match e.kind {
                EventKind::Alloc => {
                    let c = per_stack.entry(e.stack).or_default();
                    c.allocs += 1;
                    c.alloc_bytes += e.size;
                    inuse += i128::from(e.size);
                }
                _ => {
                    if let Some(stack) = freed_stack(e) {
                        let c = per_stack.entry(stack).or_default();
                        c.frees += 1;
                        c.free_bytes += e.size;
                        inuse -= i128::from(e.size);
                    }
                }
            }
            rise = rise.max(inuse);
        }
        let mut totals = Counters::default();
        per_stack.values().for_each(|c| totals.add(c));
        RunSummary {
            first_seq: events[0].seq,
            last_seq: events[events.len() - 1].seq,
            range: 0..events.len(),
            per_stack: per_stack.into_iter().collect(),
            totals,
            rise: rise as u64,
            ..RunSummary::default()
        }
    }

    type Seen = Vec<(u64, String, Vec<Counters>)>;

    /// Replays `events` through a snapshotter, offering it parts of
    /// `part` events whole (never splitting a retirement from its
    /// allocation) when `part > 0`; what each snapshot saw, and how many
    /// parts were taken whole of how many.
    fn replay(
        events: &[Event],
        markers: &[Marker],
        plan: &Plan,
        part: usize,
    ) -> (Seen, usize, usize) {
        let last = events.last().map_or(0, |e| e.seq) + 1;
        let clock = [
            ClockSample { seq: 0, ns: 0 },
            ClockSample {
                seq: last,
                ns: last * 1000,
            },
        ];
        let ctx = Context {
            markers,
            clock: &clock,
            start_unix_ns: 0,
            clean_end: true,
            fold: None,
        };
        let events = resolve_all(events);
        let peak = find_peak(&events);
        let mut seen = Vec::new();
        let sink = |heap: &Heap, trigger: &Trigger, seq: u64| -> Result<(), ()> {
            seen.push((seq, trigger.reason(), heap.counters().to_vec()));
            Ok(())
        };
        let mut engine = Snapshotter::new(ctx, plan, peak, sink);
        let (mut taken, mut parts) = (0, 0);
        let mut i = 0;
        while i < events.len() {
            let mut end = (i + part.max(1)).min(events.len());
            while end < events.len() && events[end - 1].kind == EventKind::Retire {
                end += 1;
            }
            if part > 0 && engine.take_run(&summary_of(&events[i..end])) {
                taken += 1;
            } else {
                for e in &events[i..end] {
                    engine.event(e).unwrap();
                }
            }
            i = end;
            parts += 1;
        }
        engine.finish().unwrap();
        (seen, taken, parts)
    }

    /// Random events (allocations over 16 slots, frees of them, frees of
    /// nothing, allocations over a live slot) and markers.
    fn build(ops: &[(u8, usize, u64)]) -> (Vec<Event>, Vec<Marker>) {
        let (mut events, mut markers) = (Vec::new(), Vec::new());
        for (seq, &(op, slot, size)) in ops.iter().enumerate() {
            let seq = seq as u64 + 1;
            let addr = 0x1000 + slot as u64 * 16;
            match op {
                0..=5 => events.push(Event {
                    seq,
                    addr,
                    size,
                    stack: 1 + (slot % 5) as u32,
                    kind: EventKind::Alloc,
                }),
                6..=9 => events.push(Event {
                    seq,
                    addr,
                    size: 0,
                    stack: 0,
                    kind: EventKind::Free,
                }),
                _ => markers.push(Marker {
                    seq,
                    ns: seq * 1000,
                    tid: 1,
                    source: MarkerSource::Signal(12),
                }),
            }
        }
        (events, markers)
    }

    proptest! {
        #[test]
        fn parts_taken_whole_snapshot_as_their_events_one_by_one(
            ops in proptest::collection::vec((0u8..11, 0usize..16, 1u64..5000), 1..300),
            intervals in (0u64..4, 0u64..4, 0u64..4, 0u64..4),
            at in proptest::option::of(0u64..300_000),
            peak: bool,
            part in 1usize..40,
        ) {
            let (events, markers) = build(&ops);
            prop_assume!(!events.is_empty());
            let pick = |k: u64, unit: u64| if k == 0 { 0 } else { k * unit };
            let plan = Plan {
                thresholds: Thresholds {
                    alloc_interval: pick(intervals.0, 20_000),
                    dealloc_interval: pick(intervals.1, 15_000),
                    inuse_interval: pick(intervals.2, 5_000),
                    time_interval_ns: pick(intervals.3, 60_000),
                },
                markers: vec![MarkerFilter::Signal(12)],
                at: at.map(TimePoint::Offset).into_iter().collect(),
                peak,
                exit: true,
                profiler_windows: false,
            };
            let (one_by_one, ..) = replay(&events, &markers, &plan, 0);
            let (in_parts, ..) = replay(&events, &markers, &plan, part);
            prop_assert_eq!(one_by_one, in_parts);
        }
    }

    #[test]
    fn a_part_with_nothing_inside_is_taken_and_one_with_a_snapshot_is_not() {
        let ops: Vec<(u8, usize, u64)> = (0..200).map(|i| ((i % 10) as u8, i % 16, 100)).collect();
        let (events, markers) = build(&ops);
        let quiet = Plan {
            exit: true,
            ..Plan::default()
        };
        let (_, taken, parts) = replay(&events, &markers, &quiet, 20);
        assert!(parts >= 10);
        assert_eq!(taken, parts);
        // An allocation interval crossed in every part: none is taken.
        let busy = Plan {
            thresholds: Thresholds {
                alloc_interval: 100,
                ..Thresholds::default()
            },
            exit: true,
            ..Plan::default()
        };
        assert_eq!(replay(&events, &markers, &busy, 20).1, 0);
    }

    #[test]
    fn a_stopped_profiler_counts_nothing_and_a_restart_begins_empty() {
        let alloc = |seq, slot: u64, stack| Event {
            seq,
            addr: 0x1000 + slot * 16,
            size: 100,
            stack,
            kind: EventKind::Alloc,
        };
        let free = |seq, slot: u64| Event {
            kind: EventKind::Free,
            size: 0,
            stack: 0,
            ..alloc(seq, slot, 0)
        };
        let mark = |seq, source| Marker {
            seq,
            ns: seq * 1000,
            tid: 1,
            source,
        };
        let named = |seq: u64, name: &str| mark(seq, MarkerSource::Named(name.into()));
        let events = [
            alloc(1, 0, 1),
            alloc(2, 1, 1),
            // "before" at 3, stop at 4
            alloc(5, 2, 2),
            free(6, 0),
            // "while stopped" at 7, start at 8
            free(9, 1),
            free(10, 2),
            alloc(11, 3, 3),
            // "after" at 12, stop at 13: no exit dump
        ];
        let markers = [
            named(3, "before"),
            mark(4, MarkerSource::ProfilerStop),
            named(7, "while stopped"),
            mark(8, MarkerSource::ProfilerStart("p".into())),
            named(12, "after"),
            mark(13, MarkerSource::ProfilerStop),
        ];
        let plan = Plan {
            markers: vec![MarkerFilter::AnyNamed],
            exit: true,
            profiler_windows: true,
            ..Plan::default()
        };
        let (seen, ..) = replay(&events, &markers, &plan, 0);
        let reasons: Vec<&str> = seen.iter().map(|(_, r, _)| r.as_str()).collect();
        assert_eq!(
            reasons,
            ["marker 'before' at 0.000 s", "marker 'after' at 0.000 s"]
        );
        // Before the stop: the first allocation. After the restart: only
        // stack 3's block; the frees of older blocks count for nothing.
        assert_eq!(seen[0].2[1].allocs, 2);
        let after = &seen[1].2;
        assert_eq!(after.iter().map(|c| c.allocs).sum::<u64>(), 1);
        assert_eq!(after[3].inuse_bytes(), 100);
        assert_eq!(after.iter().map(|c| c.frees).sum::<u64>(), 0);
        // Without the windows every event counts.
        let all = Plan {
            profiler_windows: false,
            ..plan
        };
        assert_eq!(replay(&events, &markers, &all, 0).0.len(), 4);
    }
}
