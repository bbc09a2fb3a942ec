//! Making checkpoints during a pass, and writing them to the index.

use super::{file, places, state, Checkpoint, Identity, Index, Start, Table};
use crate::heap::Heap;
use crate::resolve::Resolver;
use crate::snapshots::PeakFinder;
use crate::trace::Watcher;
use crate::Trace;
use heapreplay_format::{Event, EventKind};
use std::path::PathBuf;

/// Events between checkpoints at least: replaying this many from a
/// checkpoint takes a fraction of a second.
pub const DEFAULT_SPACING: u64 = 1 << 23;

/// The index takes at most 1/this of the trace's size: a checkpoint
/// whose state is large is followed by one only this many times its size
/// further into the trace.
const SIZE_RATIO: u64 = 20;

/// Takes checkpoints during a pass that starts at the beginning of a trace
/// or at its index's last checkpoint, and writes them to the index.
pub struct Builder {
    /// The index extended, with where its table was; `None` for a new one.
    base: Option<(PathBuf, u64, Table)>,
    spacing: u64,
    /// Trace bytes per seq, averaged over the trace: to keep the index small.
    bytes_per_seq: f64,
    next_spacing: u64,
    /// The seq at or after which the next checkpoint is taken.
    wanted: u64,
    heap: Heap,
    peak: PeakFinder,
    last_seq: u64,
    events: u64,
    made: Vec<Checkpoint>,
    /// The states of the checkpoints made, and where the index goes.
    spool: Option<(std::fs::File, PathBuf)>,
    spooled: u64,
    /// Where a new index may go, in order.
    places: Vec<PathBuf>,
    failed: bool,
}

impl Builder {
    /// A builder for a pass over `trace` from `start`, if that pass can
    /// build or extend its index (`index`, if it has one): from the
    /// beginning with no index, or from the index's last checkpoint; and
    /// only over an intact trace read as far as it is known complete.
    /// `spacing` is the least number of events between checkpoints.
    pub fn new(trace: &Trace, index: Option<&Index>, start: &Start, spacing: u64) -> Option<Self> {
        let intact =
            trace.problems.is_empty() && trace.live.is_none_or(|l| l.complete_below.is_some());
        // From the beginning, a new index replaces one that covers less
        // than the trace now holds; from the last checkpoint, the index is
        // extended.
        let index = match (index, start.checkpoint) {
            (_, None) if start.carry.from != 0 => return None,
            (Some(index), None)
                if index.checkpoints().is_empty() || index.covered_seq() < trace.seq_end() =>
            {
                None
            }
            (Some(_), None) => return None,
            (Some(index), Some(i)) if i + 1 == index.checkpoints().len() => Some(index),
            (None, None) => None,
            (_, Some(_)) => return None,
        };
        if !intact {
            return None;
        }
        let seq_end = trace.seq_end().max(1);
        Some(Self {
            base: index.map(|i| {
                (
                    i.path.clone(),
                    i.opened.table_offset,
                    i.opened.table.clone(),
                )
            }),
            spacing: spacing.max(1),
            bytes_per_seq: trace.file_bytes().len() as f64 / seq_end as f64,
            next_spacing: spacing.max(1),
            wanted: start.carry.from.saturating_add(spacing.max(1)),
            heap: start.heap.clone(),
            peak: PeakFinder::starting_at(start.heap.totals().inuse_bytes()),
            last_seq: start.last_seq,
            events: start.events,
            made: Vec::new(),
            spool: None,
            spooled: 0,
            places: places(&trace.path),
            failed: false,
        })
    }

    /// Takes a checkpoint at `seq`: every event below it seen, none after;
    /// `resolver` holds the live blocks.
    fn take(&mut self, seq: u64, resolver: &Resolver) {
        let inuse = self.heap.totals().inuse_bytes();
        let peak = std::mem::replace(&mut self.peak, PeakFinder::starting_at(inuse)).peak();
        let Some(bytes) = self.encode(resolver) else {
            self.failed = true;
            return;
        };
        // The next checkpoint comes later if this one is large for the
        // stretch of trace it saves replaying.
        let by_size = (SIZE_RATIO * bytes.0) as f64 / self.bytes_per_seq.max(0.01);
        self.next_spacing = self.spacing.max(by_size as u64);
        self.wanted = seq.saturating_add(self.next_spacing);
        self.made.push(Checkpoint {
            seq,
            last_seq: self.last_seq,
            events: self.events,
            // Frees add nothing to the pass's sum of allocation sizes.
            alloc_bytes: self.heap.totals().alloc_bytes,
            peak,
            state_offset: self.spooled - bytes.0,
            state_len: bytes.0,
            raw_len: bytes.1,
        });
    }

    /// Encodes the state (with `resolver`'s live blocks) into the spool:
    /// (its length, its length before compression).
    fn encode(&mut self, resolver: &Resolver) -> Option<(u64, u64)> {
        let (bytes, raw_len) = state::encode(resolver, &self.heap).ok()?;
        if self.spool.is_none() {
            let place = match &self.base {
                Some((path, _, _)) => vec![path.clone()],
                None => self.places.clone(),
            };
            self.spool = place
                .into_iter()
                .find_map(|p| file::spool(&p).ok().map(|f| (f, p)));
        }
        let (spool, _) = self.spool.as_ref()?;
        std::os::unix::fs::FileExt::write_all_at(spool, &bytes, self.spooled).ok()?;
        self.spooled += bytes.len() as u64;
        Some((bytes.len() as u64, raw_len as u64))
    }

    /// Checkpoints taken so far.
    pub fn made(&self) -> usize {
        self.made.len()
    }

    /// Writes what the pass found to the index of `trace`: the checkpoints
    /// taken and, if the pass reached the end of the trace (`reached_end`)
    /// and found no damage (`intact`), where in-use bytes peaked after the
    /// last one. Returns where the index is, or `None` if there was nothing
    /// to write (no checkpoint in a trace too short for one, or an index
    /// changed meanwhile by another heapreplay).
    pub fn save(
        self,
        trace: &Trace,
        reached_end: bool,
        intact: bool,
    ) -> std::io::Result<Option<PathBuf>> {
        if self.failed || !intact {
            return Ok(None);
        }
        let (covered_seq, end_peak) = match (reached_end, self.made.last()) {
            (true, _) => (trace.seq_end(), self.peak.peak()),
            (false, Some(last)) => (last.seq, None),
            (false, None) => return Ok(None),
        };
        let identity = Identity::of(trace.file_bytes());
        let scan = trace.scan_cache();
        let Some((spool, path)) = self.spool.as_ref() else {
            // No checkpoint made: only an index already there may learn
            // that its end was reached.
            return match self.base {
                Some((path, table_offset, mut table)) if covered_seq > table.covered_seq => {
                    let first_new = table.checkpoints.len();
                    table.identity = identity;
                    table.covered_seq = covered_seq;
                    table.end_peak = end_peak;
                    table.scan = scan;
                    let spool = file::spool(&path)?;
                    let written = file::append(&path, table_offset, &mut table, first_new, &spool)?;
                    Ok(written.then_some(path))
                }
                _ => Ok(None),
            };
        };
        match self.base {
            None => {
                let mut table = Table {
                    identity,
                    covered_seq,
                    end_peak,
                    checkpoints: self.made,
                    scan,
                };
                file::create(path, &mut table, spool)?;
                Ok(Some(path.clone()))
            }
            Some((path, table_offset, mut table)) => {
                let first_new = table.checkpoints.len();
                table.identity = identity;
                table.covered_seq = covered_seq;
                table.end_peak = end_peak;
                table.scan = scan;
                table.checkpoints.extend(self.made);
                let written = file::append(&path, table_offset, &mut table, first_new, spool)?;
                Ok(written.then_some(path))
            }
        }
    }
}

impl Watcher for Builder {
    #[inline]
    fn event(&mut self, e: &Event) {
        self.heap.apply(e);
        self.peak.push(e);
        if e.kind != EventKind::Retire {
            self.last_seq = e.seq;
            self.events += 1;
        }
    }

    fn wanted(&self) -> u64 {
        self.wanted
    }

    fn checkpoint(&mut self, seq: u64, resolver: &Resolver) {
        self.take(seq, resolver);
    }
}
