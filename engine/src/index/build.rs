//! Making checkpoints during a pass, and writing them to the index.

use super::{file, places, state, Checkpoint, Identity, Index, Start, Table};
use crate::heap::Heap;
use crate::resolve::Resolver;
use crate::snapshots::PeakFinder;
use crate::trace::{Tally, Watcher};
use crate::Trace;
use std::path::PathBuf;

/// Events between checkpoints at least (2M): replaying this many from a
/// checkpoint takes about 0.1 s, so that a point anywhere in a trace is
/// answered within 0.3 s (`benches/serve.sh`).
pub const DEFAULT_SPACING: u64 = 1 << 21;

/// The index's checkpoints take at most about 1/this of the trace's size
/// (its table and scan cache come on top): a checkpoint
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
    /// Where the pass started.
    start: Tally,
    /// Where in-use bytes peaked after the last checkpoint, once the pass
    /// is over.
    end_peak: Option<(u64, u64)>,
    made: Vec<Checkpoint>,
    /// The states of the checkpoints made, and where the index goes.
    spool: Option<(std::fs::File, PathBuf)>,
    spooled: u64,
    /// Where a new index may go, in order.
    places: Vec<PathBuf>,
    failed: bool,
    /// Why a checkpoint could not be written, said once the pass is over.
    error: Option<std::io::Error>,
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
        if !intact {
            return None;
        }
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
            start: Tally {
                peak: PeakFinder::starting_at(start.heap.totals().inuse_bytes()),
                last_seq: start.last_seq,
                events: start.events,
            },
            end_peak: None,
            made: Vec::new(),
            spool: None,
            spooled: 0,
            places: places(&trace.path),
            failed: false,
            error: None,
        })
    }

    /// Takes a checkpoint at `seq`: every event below it seen, none after;
    /// `resolver` holds the live blocks and `heap` the counters.
    fn take(&mut self, seq: u64, resolver: &Resolver, heap: &Heap, tally: &Tally) {
        let Some(bytes) = self.encode(resolver, heap) else {
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
            last_seq: tally.last_seq,
            events: tally.events,
            // Frees add nothing to the pass's sum of allocation sizes.
            alloc_bytes: heap.totals().alloc_bytes,
            peak: tally.peak.peak(),
            state_offset: self.spooled - bytes.0,
            state_len: bytes.0,
            raw_len: bytes.1,
        });
    }

    /// Encodes the state (with `resolver`'s live blocks) into the spool:
    /// (its length, its length before compression).
    fn encode(&mut self, resolver: &Resolver, heap: &Heap) -> Option<(u64, u64)> {
        let written = self.try_encode(resolver, heap);
        match written {
            Ok(sizes) => Some(sizes),
            Err(e) => {
                self.error.get_or_insert(e);
                None
            }
        }
    }

    fn try_encode(&mut self, resolver: &Resolver, heap: &Heap) -> std::io::Result<(u64, u64)> {
        let (bytes, raw_len) = state::encode(resolver, heap)?;
        let spool = match self.spool.take() {
            Some(spool) => spool,
            None => self.open_spool()?,
        };
        let written = std::os::unix::fs::FileExt::write_all_at(&spool.0, &bytes, self.spooled);
        self.spool = Some(spool);
        written?;
        self.spooled += bytes.len() as u64;
        Ok((bytes.len() as u64, raw_len as u64))
    }

    /// A spool beside the index being extended, or in the first place a
    /// new index can go.
    fn open_spool(&self) -> std::io::Result<(std::fs::File, PathBuf)> {
        let places = match &self.base {
            Some((path, _, _)) => std::slice::from_ref(path),
            None => &self.places[..],
        };
        let mut last = None;
        for place in places {
            match file::spool(place) {
                Ok(f) => return Ok((f, place.clone())),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no place for an index")))
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
        &mut self,
        trace: &Trace,
        reached_end: bool,
        intact: bool,
    ) -> std::io::Result<Option<PathBuf>> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.failed || !intact {
            return Ok(None);
        }
        let identity = Identity::of(trace.file_bytes());
        let mut table = match &self.base {
            Some((_, _, table)) => table.clone(),
            None if self.made.is_empty() => return Ok(None),
            None => Table {
                identity,
                covered_seq: 0,
                end_peak: None,
                checkpoints: Vec::new(),
                scan: None,
            },
        };
        let (covered_seq, end_peak) = match (reached_end, self.made.last()) {
            (true, _) => (trace.seq_end(), self.end_peak),
            (false, Some(last)) => (last.seq, None),
            (false, None) => return Ok(None),
        };
        if self.made.is_empty() && covered_seq <= table.covered_seq {
            return Ok(None);
        }
        let first_new = table.checkpoints.len();
        table.identity = identity;
        table.covered_seq = covered_seq;
        table.end_peak = end_peak;
        table.scan = trace.scan_cache();
        table.checkpoints.append(&mut self.made);
        // With no checkpoint made, an empty spool: the table still goes
        // where the index is.
        if self.spool.is_none() {
            self.spool = Some(self.open_spool()?);
        }
        let Some((spool, spool_place)) = &self.spool else {
            return Ok(None);
        };
        let (path, table_offset) = match &self.base {
            None => {
                let offset = file::create(spool_place, &mut table, spool)?;
                (spool_place.clone(), offset)
            }
            Some((path, offset, _)) => {
                match file::append(path, *offset, &mut table, first_new, spool)? {
                    Some(offset) => (path.clone(), offset),
                    None => {
                        // Another heapreplay changed the index meanwhile.
                        self.failed = true;
                        return Ok(None);
                    }
                }
            }
        };
        self.base = Some((path.clone(), table_offset, table));
        self.spooled = 0;
        Ok(Some(path))
    }
}

/// What a pass shows a [`Builder`]: every event, and at each checkpoint the
/// live blocks and the heap (`heap` gives the counters after every event
/// handed on so far: the pass's consumer keeps them, so that they are not
/// kept twice on the pass's one serial thread).
pub(super) struct Watching<'a> {
    pub(super) builder: &'a mut Builder,
    pub(super) heap: &'a dyn Fn() -> Heap,
}

impl Watcher for Watching<'_> {
    fn start(&self) -> Tally {
        self.builder.start
    }

    fn wanted(&self) -> u64 {
        self.builder.wanted
    }

    fn checkpoint(&mut self, seq: u64, resolver: &Resolver, tally: &Tally) {
        let heap = (self.heap)();
        self.builder.take(seq, resolver, &heap, tally);
    }

    fn end(&mut self, tally: &Tally) {
        // A later pass (a follow round) goes on from here, its peak since
        // the last checkpoint included.
        self.builder.start = *tally;
        self.builder.end_peak = tally.peak.peak();
    }
}
