//! One pass over a trace's events: records decoded in parallel batches,
//! merged into sequence order, resolved, and handed on one by one.

use super::decode::{Run, ALLOC_SUM_TOO_LARGE};
use super::merge::Merge;
use super::summary::RunSummary;
use super::{Problem, Trace};
use crate::heap::Counters;
use crate::resolve::{Resolver, UNKNOWN_STACK};
use crate::snapshots::PeakFinder;
use heapreplay_format::events::{Retired, LINK_RESOLVED};
use heapreplay_format::{Event, EventKind};
use rayon::prelude::*;

/// What a pass over the events found.
#[derive(Debug, Default)]
pub struct Pass {
    /// Events replayed.
    pub events: u64,
    /// Damaged events records, skipped.
    pub problems: Vec<Problem>,
    /// The pass was stopped before the end (see
    /// [`Trace::for_each_event_while`]): what follows the stop was not
    /// replayed, and `events` counts what was decoded.
    pub stopped: bool,
}

/// What a pass over one span of a trace hands on to the pass over the next
/// span (follow mode, replaying a growing trace a part at a time): the live
/// blocks, and where the next span starts.
#[derive(Clone)]
pub struct Carry {
    /// Every event below this seq has been replayed.
    pub from: u64,
    resolver: Resolver,
    alloc_bytes: u64,
    /// The live blocks are wanted after the pass (for the next span). If
    /// not, a trace whose records are all resolved replays without them.
    pub(crate) live_wanted: bool,
}

impl Default for Carry {
    fn default() -> Self {
        Self::at(0, Resolver::default(), 0)
    }
}

impl Carry {
    /// What a pass over the events below `from` hands on: these live
    /// blocks, and the sum of every allocation size below `from`.
    pub fn at(from: u64, resolver: Resolver, alloc_bytes: u64) -> Self {
        Self {
            from,
            resolver,
            alloc_bytes,
            live_wanted: true,
        }
    }

    /// The blocks live at `from`.
    pub fn live(&self) -> &Resolver {
        &self.resolver
    }

    /// The sum of every allocation size below `from`.
    pub fn alloc_bytes(&self) -> u64 {
        self.alloc_bytes
    }
}

/// What a pass shows a checkpoint builder ([`crate::index::Builder`]).
pub(crate) trait Watcher {
    /// Where the pass starts: in-use bytes, the last event and the events
    /// before it.
    fn start(&self) -> Tally;
    /// The seq at or after which the next checkpoint is wanted.
    fn wanted(&self) -> u64;
    /// Every event below `seq` has been handed on, none from `seq` on;
    /// `resolver` holds the live blocks, `tally` the pass so far (its peak
    /// since the last checkpoint).
    fn checkpoint(&mut self, seq: u64, resolver: &Resolver, tally: &Tally);
    /// The pass is over (stopped or at the end): `tally` since the last
    /// checkpoint.
    fn end(&mut self, tally: &Tally);
}

/// What a watched pass counts as it goes, on its serial thread, inline.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tally {
    /// Bytes in use, and where they peaked since the last checkpoint.
    pub(crate) peak: PeakFinder,
    /// The last event's seq.
    pub(crate) last_seq: u64,
    /// Events so far.
    pub(crate) events: u64,
}

impl Tally {
    /// Counts one resolved event.
    #[inline]
    fn apply(&mut self, e: &Event) {
        self.peak.push(e);
        if e.kind != EventKind::Retire {
            self.last_seq = e.seq;
            self.events += 1;
        }
    }
}

/// Takes a resolved compacted run at once (see [`RunSummary`]): `None` if
/// its events are wanted one by one instead, else whether the pass goes on.
pub type TakeRun<'a> = &'a mut dyn FnMut(&RunSummary) -> Option<bool>;

/// The events a pass replays: `from <= seq < until`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    pub(super) from: u64,
    pub(super) until: Option<u64>,
    /// Resolved compacted runs are summed up as they are decoded.
    pub(super) summarize: bool,
}

/// Records decoded per batch, at most: enough to keep every core busy.
const BATCH_RECORDS: usize = 64;

/// Events decoded per batch and decoding thread, at most (unless one record
/// holds more): a compacted record's worth for each, where 64 compacted
/// records, of 2^18 events each, would take 512 MiB.
const BATCH_EVENTS_PER_THREAD: u64 = 1 << 18;

/// Where each batch of records ends, given the records' event counts in
/// order: at most [`BATCH_RECORDS`] records and `max_events` events each,
/// and at least one record.
fn batch_ends(counts: impl Iterator<Item = u32>, max_events: u64) -> Vec<usize> {
    let mut ends = Vec::new();
    let (mut records, mut events) = (0, 0u64);
    for (i, count) in counts.enumerate() {
        if records > 0 && (records == BATCH_RECORDS || events + u64::from(count) > max_events) {
            ends.push(i);
            (records, events) = (0, 0);
        }
        records += 1;
        events += u64::from(count);
    }
    if records > 0 {
        ends.push(ends.last().copied().unwrap_or(0) + records);
    }
    ends
}

/// Why the merge stopped handing on events.
enum Halt<E> {
    /// The caller needs no more events.
    Enough,
    /// The caller failed.
    Failed(E),
}

impl<E> Halt<E> {
    /// Whether handing on events ended early: true if the caller needs no
    /// more, the caller's error if it failed.
    fn stops(handed: Result<(), Halt<E>>) -> Result<bool, E> {
        match handed {
            Ok(()) => Ok(false),
            Err(Halt::Enough) => Ok(true),
            Err(Halt::Failed(e)) => Err(e),
        }
    }
}

/// What a stack allocated and did not free yet, as resolved records say.
#[derive(Debug, Clone, Copy, Default)]
struct Allocated {
    objects: u64,
    bytes: u64,
}

impl Allocated {
    /// What `stack` holds in `per_stack`, made if it has nothing yet.
    fn of(per_stack: &mut Vec<Allocated>, stack: u32) -> &mut Allocated {
        let id = stack as usize;
        if id >= per_stack.len() {
            per_stack.resize(id + 1, Allocated::default());
        }
        &mut per_stack[id]
    }

    /// Counts a block of `size` allocated by `stack` in `per_stack`.
    fn add(per_stack: &mut Vec<Allocated>, stack: u32, size: u64) {
        let a = Self::of(per_stack, stack);
        a.objects += 1;
        a.bytes += size;
    }

    /// Counts what a run did to `stack` (see [`RunSummary`]): its
    /// allocations, less its frees.
    fn add_change(per_stack: &mut Vec<Allocated>, stack: u32, c: &Counters) {
        let a = Self::of(per_stack, stack);
        a.objects = a.objects + c.allocs - c.frees;
        a.bytes = a.bytes + c.alloc_bytes - c.free_bytes;
    }
}

/// The live blocks a pass starts with, per stack.
fn allocated_by_stack(live: &Resolver) -> Vec<Allocated> {
    let mut out = Vec::new();
    for (_, size, stack) in live.blocks() {
        Allocated::add(&mut out, stack, size);
    }
    out
}

/// Where merged events go: resolved against the live blocks, counted for
/// a watcher (with its checkpoints), and handed to the pass's caller.
struct Sink<'w, 't, F> {
    resolver: Resolver,
    /// Resolved records' events are handed on as they are, with no live
    /// blocks kept (nothing needs them: no watcher, no carry).
    resolved: bool,
    /// Per stack, what resolved records allocated and freed so far: a free
    /// they name is taken only if its stack allocated that much.
    allocated: Vec<Allocated>,
    /// Frees a resolved record names that their stack never allocated,
    /// and the first's record.
    unallocated: Option<(u64, u64)>,
    watcher: Option<&'w mut dyn Watcher>,
    /// Takes resolved runs whole, when nothing happens inside them.
    take_run: Option<TakeRun<'t>>,
    tally: Tally,
    /// The seq of the watcher's next checkpoint.
    wanted: u64,
    f: F,
}

impl<F, E> Sink<'_, '_, F>
where
    F: FnMut(&Event) -> Result<bool, E>,
{
    /// Hands resolved events to the caller: the retirement an allocation
    /// made, if any, then the event (both counted first).
    #[inline]
    fn hand(&mut self, retire: Option<Event>, e: &Event) -> Result<(), Halt<E>> {
        if self.watcher.is_some() {
            if let Some(retire) = &retire {
                self.tally.apply(retire);
            }
            self.tally.apply(e);
        }
        let mut call = |e: &Event| match (self.f)(e) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Halt::Enough),
            Err(e) => Err(Halt::Failed(e)),
        };
        if let Some(retire) = &retire {
            call(retire)?;
        }
        call(e)
    }

    /// Shows the watcher the live blocks before `seq` if it wants them:
    /// the resolver's, and `open` (blocks outside it, live there).
    fn checkpoint(&mut self, seq: u64, open: impl Fn() -> Vec<(u64, u64, u32)>) {
        let Some(w) = self.watcher.as_deref_mut() else {
            return;
        };
        let open = open();
        if open.is_empty() {
            w.checkpoint(seq, &self.resolver, &self.tally);
        } else {
            let mut live = self.resolver.clone();
            live.add(open);
            w.checkpoint(seq, &live, &self.tally);
        }
        self.tally.peak = PeakFinder::starting_at(self.tally.peak.inuse());
        self.wanted = w.wanted();
    }

    /// The next event in sequence order, resolved against the live blocks.
    #[inline]
    fn each(&mut self, e: &Event) -> Result<(), Halt<E>> {
        if e.seq >= self.wanted {
            self.checkpoint(e.seq, Vec::new);
        }
        let mut e = *e;
        let retire = self.resolver.resolve(&mut e);
        self.hand(retire, &e)
    }

    /// The events of a compacted run, in sequence order, with their links
    /// (see `Run::links`): a paired allocation and its free bypass the live
    /// blocks; the others go through them.
    fn linked(&mut self, run: &Run) -> Result<(), Halt<E>> {
        let (events, links) = (&run.events[..], &run.links[..]);
        if self.resolved {
            return self.resolved_run(run);
        }
        for (i, e) in events.iter().enumerate() {
            if e.seq >= self.wanted {
                // Paired blocks allocated before `i`, freed at or after it.
                let open = || {
                    (0..i)
                        .filter(|&j| {
                            let d = links[j] as usize;
                            d != 0 && events[j].kind == EventKind::Alloc && j + d >= i
                        })
                        .map(|j| (events[j].addr, events[j].size, events[j].stack))
                        .collect()
                };
                self.checkpoint(e.seq, open);
            }
            let mut e = *e;
            match links[i] {
                0 | LINK_RESOLVED => {
                    let retire = self.resolver.resolve(&mut e);
                    self.hand(retire, &e)?;
                }
                // A paired free frees its allocation's block.
                back if e.kind == EventKind::Free => {
                    let back = back as usize;
                    (e.size, e.stack) = (events[i - back].size, events[i - back].stack);
                    self.hand(None, &e)?;
                }
                _ => self.hand(None, &e)?,
            }
        }
        Ok(())
    }

    /// The events of a resolved compacted run (see [`Sink::linked`]), with
    /// no live blocks: every free names its block or frees nothing live,
    /// and every allocation over a live block names the block it retires.
    /// A part of the run with nothing to do inside is taken whole.
    fn resolved_run(&mut self, run: &Run) -> Result<(), Halt<E>> {
        let mut retired = run.retired.iter().peekable();
        if run.parts.is_empty() {
            return self.resolved_events(run, 0..run.events.len(), &mut retired);
        }
        for part in &run.parts {
            match self.take_whole(part) {
                Some(go_on) => {
                    while retired
                        .next_if(|r| (r.0 as usize) < part.range.end)
                        .is_some()
                    {}
                    if !go_on {
                        return Err(Halt::Enough);
                    }
                }
                None => self.resolved_events(run, part.range.clone(), &mut retired)?,
            }
        }
        Ok(())
    }

    /// The events of a resolved run in `range`, one by one (see
    /// [`Sink::resolved_run`]), with `retired` from there on.
    fn resolved_events<'r>(
        &mut self,
        run: &Run,
        range: std::ops::Range<usize>,
        retired: &mut std::iter::Peekable<impl Iterator<Item = &'r Retired>>,
    ) -> Result<(), Halt<E>> {
        let (events, links, offset) = (&run.events, &run.links, run.offset);
        for i in range {
            let mut e = events[i];
            let mut retire = retired
                .next_if(|r| r.0 as usize == i)
                .map(|&(_, (size, stack))| Event {
                    kind: EventKind::Retire,
                    size,
                    stack,
                    ..e
                });
            match links[i] {
                LINK_RESOLVED => self.check_freed(&mut e, offset),
                0 if e.kind == EventKind::Free => (e.size, e.stack) = (0, UNKNOWN_STACK),
                back if e.kind == EventKind::Free && back != 0 => {
                    let back = back as usize;
                    (e.size, e.stack) = (events[i - back].size, events[i - back].stack);
                    self.check_freed(&mut e, offset);
                }
                _ => {}
            }
            if let Some(r) = retire.as_mut() {
                self.check_freed(r, offset);
            }
            if e.kind == EventKind::Alloc {
                Allocated::add(&mut self.allocated, e.stack, e.size);
            }
            self.hand(retire, &e)?;
        }
        Ok(())
    }

    /// Hands on a part of a resolved run whole if the caller takes it so
    /// and every block it frees from before it was allocated (else it goes
    /// event by event, where such frees are damage). `None` if not taken,
    /// else whether the pass goes on.
    fn take_whole(&mut self, s: &RunSummary) -> Option<bool> {
        let take = self.take_run.as_deref_mut()?;
        let covered = s.earlier.iter().all(|&(stack, objects, bytes)| {
            self.allocated
                .get(stack as usize)
                .is_some_and(|a| a.objects >= objects && a.bytes >= bytes)
        });
        if !covered {
            return None;
        }
        let go_on = take(s)?;
        for &(stack, c) in &s.per_stack {
            Allocated::add_change(&mut self.allocated, stack, &c);
        }
        Some(go_on)
    }

    /// Takes a free (or retirement) a resolved record names only if its
    /// stack allocated that much: what a crafted record claims beyond it
    /// frees nothing, and is reported.
    #[inline]
    fn check_freed(&mut self, e: &mut Event, offset: u64) {
        let taken = self
            .allocated
            .get_mut(e.stack as usize)
            .filter(|a| a.objects > 0 && a.bytes >= e.size);
        match taken {
            Some(a) => {
                a.objects -= 1;
                a.bytes -= e.size;
            }
            None => {
                (e.size, e.stack) = (0, UNKNOWN_STACK);
                self.unallocated.get_or_insert((0, offset)).0 += 1;
            }
        }
    }
}

impl Trace {
    /// Calls `f` on every event in sequence order, resolved (each free
    /// carries the size and stack of the block it frees: see
    /// [`crate::resolve`]). With `pipeline`, another thread decodes events
    /// records in parallel batches (on the current rayon pool) while this
    /// one merges, resolves and calls `f`; without, this thread decodes in
    /// turn. Memory holds only the batches in flight and the live blocks,
    /// never the whole trace. Damaged records are skipped and reported in
    /// the result; an error from `f` stops the pass.
    pub fn for_each_event<E>(
        &self,
        pipeline: bool,
        mut f: impl FnMut(&Event) -> Result<(), E>,
    ) -> Result<Pass, E> {
        self.for_each_event_while(pipeline, |e| f(e).map(|()| true))
    }

    /// [`for_each_event`](Self::for_each_event), where `f` returns false
    /// once it needs no more events: the pass ends there, decoding no
    /// further, with the damage found in every record that could hold an
    /// event before that point.
    pub fn for_each_event_while<E>(
        &self,
        pipeline: bool,
        f: impl FnMut(&Event) -> Result<bool, E>,
    ) -> Result<Pass, E> {
        let mut carry = self.beginning();
        carry.live_wanted = false;
        let mut pass = self.for_each_event_in(pipeline, &mut carry, None, f)?;
        pass.events += self.fold().map_or(0, |f| f.info.events);
        if pass.stopped {
            return Ok(pass);
        }
        Ok(self.check_complete(pass))
    }

    /// [`for_each_event_while`](Self::for_each_event_while) over the events
    /// from `carry.from` up to (not including) `until`, starting with the
    /// live blocks `carry` holds and leaving there those at the end; only
    /// the records that can hold such events are decoded. Passes over
    /// consecutive spans hand on exactly what one pass over the whole hands
    /// on. (A pass stopped by `f` leaves `carry` as it found it.)
    pub fn for_each_event_in<E>(
        &self,
        pipeline: bool,
        carry: &mut Carry,
        until: Option<u64>,
        f: impl FnMut(&Event) -> Result<bool, E>,
    ) -> Result<Pass, E> {
        self.for_each_event_watched(pipeline, carry, until, None, None, f)
    }

    /// [`for_each_event_in`](Self::for_each_event_in), showing `watcher`
    /// every resolved event and the live blocks where it wants them, and
    /// offering `take_run` resolved runs whole.
    pub(crate) fn for_each_event_watched<E>(
        &self,
        pipeline: bool,
        carry: &mut Carry,
        until: Option<u64>,
        watcher: Option<&mut dyn Watcher>,
        take_run: Option<TakeRun<'_>>,
        f: impl FnMut(&Event) -> Result<bool, E>,
    ) -> Result<Pass, E> {
        let span = Span {
            from: carry.from,
            until,
            summarize: take_run.is_some() && self.replays_resolved(carry, watcher.is_some()),
        };
        // Indices (in first-seq order) of the records with events in the span.
        let records: Vec<usize> = (0..self.events.len())
            .filter(|&i| {
                let r = &self.events[i];
                r.last_seq >= span.from && until.is_none_or(|u| r.first_seq < u)
            })
            .collect();
        let records = &records;
        // What must stay readable once the first `done` records are decoded.
        let next = move |done: usize| records.get(done).copied().unwrap_or(self.events.len());
        // Each batch decoded (on the rayon pool when `parallel`), with the
        // count of records decoded so far, letting go of the pages behind.
        let decoded = move |parallel: bool| {
            let (mut start, mut released) = (0, 0);
            let threads = rayon::current_num_threads().max(2) as u64;
            let ends = batch_ends(
                records.iter().map(|&i| self.events[i].count),
                threads * BATCH_EVENTS_PER_THREAD,
            );
            ends.into_iter().map(move |end| {
                let batch = &records[start..end];
                let decode = |&r: &usize| self.decode_record(&self.events[r], span);
                let decoded: Vec<_> = match parallel {
                    true => batch.par_iter().map(decode).collect(),
                    false => batch.iter().map(decode).collect(),
                };
                start = end;
                self.release(next(end), &mut released);
                (end, decoded)
            })
        };
        if !pipeline {
            return self.replay_batches(
                decoded(false),
                records,
                carry,
                until,
                watcher,
                take_run,
                f,
            );
        }
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel(2);
            scope.spawn(move || {
                for batch in decoded(true) {
                    if tx.send(batch).is_err() {
                        return;
                    }
                }
            });
            self.replay_batches(rx.into_iter(), records, carry, until, watcher, take_run, f)
        })
    }

    /// Merges decoded batches of records (each with the count of records
    /// decoded so far) into sequence order, resolves the events and calls
    /// `f` on each. A compacted run that nothing overlaps bypasses the
    /// merge, and its paired events bypass the live blocks.
    #[allow(clippy::too_many_arguments)]
    fn replay_batches<E>(
        &self,
        batches: impl Iterator<Item = (usize, Vec<Result<Run, Problem>>)>,
        records: &[usize],
        carry: &mut Carry,
        until: Option<u64>,
        watcher: Option<&mut dyn Watcher>,
        take_run: Option<TakeRun<'_>>,
        f: impl FnMut(&Event) -> Result<bool, E>,
    ) -> Result<Pass, E> {
        let mut pass = Pass::default();
        let mut merge = Merge::default();
        let resolved = self.replays_resolved(carry, watcher.is_some());
        let mut sink = Sink {
            wanted: watcher.as_ref().map_or(u64::MAX, |w| w.wanted()),
            tally: watcher.as_ref().map(|w| w.start()).unwrap_or_default(),
            watcher,
            resolver: match resolved {
                true => Resolver::default(),
                false => carry.resolver.clone(),
            },
            resolved,
            take_run,
            allocated: match resolved {
                true => allocated_by_stack(&carry.resolver),
                false => Vec::new(),
            },
            unallocated: None,
            f,
        };
        // The first seq of the record after `records[i]`, if any.
        let first_after =
            |i: usize| -> Option<u64> { records.get(i + 1).map(|&r| self.events[r].first_seq) };
        // Every allocation size accepted adds to this; a record that would
        // take it past 2^64 - 1 is damage, so no counter can overflow.
        let mut alloc_bytes = carry.alloc_bytes;
        // Allocations naming an undefined stack, and the first's record.
        let mut undefined: Option<(u64, u64)> = None;
        'batches: for (done, decoded) in batches {
            let base = done - decoded.len();
            for (k, run) in decoded.into_iter().enumerate() {
                let run = match run {
                    Ok(run) => run,
                    Err(p) => {
                        pass.problems.push(p);
                        continue;
                    }
                };
                let Some(sum) = alloc_bytes.checked_add(run.alloc_bytes) else {
                    pass.problems.push(Problem {
                        offset: run.offset,
                        what: format!("events record skipped: {ALLOC_SUM_TOO_LARGE}"),
                    });
                    continue;
                };
                alloc_bytes = sum;
                if run.undefined > 0 {
                    undefined.get_or_insert((0, run.offset)).0 += run.undefined;
                }
                pass.events += run.events.len() as u64;
                let alone = match (run.events.first(), run.events.last()) {
                    (Some(first), Some(last)) if !run.links.is_empty() => first_after(base + k)
                        .is_none_or(|next| next > last.seq)
                        .then_some(first.seq),
                    _ => None,
                };
                if let Some(first) = alone {
                    let drained = merge.drain_before(first, &mut |e| sink.each(e));
                    let replayed = drained.and_then(|()| match merge.pass_by(&run.events) {
                        true => sink.linked(&run),
                        false => {
                            merge.add(run.events, run.offset);
                            Ok(())
                        }
                    });
                    if Halt::stops(replayed)? {
                        pass.stopped = true;
                        break 'batches;
                    }
                    continue;
                }
                merge.add(run.events, run.offset);
            }
            // Records come in first-seq order: nothing not yet decoded can
            // hold an event before the next record's first seq.
            let mut each = |e: &Event| sink.each(e);
            let drained = match records.get(done).map(|&i| &self.events[i]) {
                Some(next) => merge.drain_before(next.first_seq, &mut each),
                None => merge.drain_through(u64::MAX, &mut each),
            };
            if Halt::stops(drained)? {
                pass.stopped = true;
                break;
            }
        }
        if let Some(w) = sink.watcher {
            w.end(&sink.tally);
        }
        if let Some((count, offset)) = sink.unallocated {
            pass.problems.push(Problem {
                offset,
                what: format!(
                    "frees naming a block their stack never allocated (a crafted or damaged record): {count}; they free nothing"
                ),
            });
        }
        if let Some((count, offset)) = undefined {
            pass.problems.push(Problem {
                offset,
                what: format!(
                    "allocations naming a stack id that no stacks record defines: {count}; counted under an empty stack"
                ),
            });
        }
        if let Some((count, offset)) = merge.duplicates {
            pass.problems.push(Problem {
                offset,
                what: format!(
                    "events skipped, their sequence numbers already replayed from another events record (overlapping records, or traces concatenated): {count}"
                ),
            });
            pass.events -= count;
        }
        if pass.stopped {
            return Ok(pass);
        }
        carry.resolver = sink.resolver;
        carry.alloc_bytes = alloc_bytes;
        if let Some(until) = until {
            carry.from = until;
        }
        Ok(pass)
    }

    /// True if a pass from `carry` replays resolved records without live
    /// blocks: nothing needs them (no watcher, no span after it).
    fn replays_resolved(&self, carry: &Carry, watched: bool) -> bool {
        self.resolved && !watched && !carry.live_wanted
    }

    /// Adds a problem if the end record counts more events than `pass`
    /// (a pass over the whole trace) found.
    pub(crate) fn check_complete(&self, mut pass: Pass) -> Pass {
        if let Some(end) = &self.end {
            if pass.events < end.events && pass.problems.is_empty() && self.problems.is_empty() {
                pass.problems.push(Problem {
                    offset: self.end_offset,
                    what: format!(
                        "{} events missing: the end record counts {}, the trace holds {}",
                        end.events - pass.events,
                        end.events,
                        pass.events
                    ),
                });
            }
        }
        pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_few_events_and_at_least_one_record() {
        // Small records: 64 to a batch.
        let max = 2 * BATCH_EVENTS_PER_THREAD;
        assert_eq!(
            batch_ends(std::iter::repeat_n(100, 130), max),
            vec![64, 128, 130]
        );
        // Compacted records: as many as fit, and one alone past the bound.
        let big = 1 << 18;
        assert_eq!(batch_ends([big, big, big, 5].into_iter(), max), vec![2, 4]);
        assert_eq!(batch_ends([4 << 20, 1].into_iter(), max), vec![1, 2]);
        assert_eq!(batch_ends(std::iter::empty(), max), Vec::<usize>::new());
    }
}
