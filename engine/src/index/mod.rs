//! The seeking index: checkpoints of the heap's state kept beside a trace,
//! so that a question about any point reads only from the checkpoint
//! before it, however long the trace.
//!
//! A checkpoint at seq `S` holds what a pass over every event below `S`
//! hands on: the live blocks (a [`Carry`]) and the per-stack counters (a
//! [`Heap`]), with the in-use peak of the span since the previous
//! checkpoint. Any full pass builds the index ([`Builder`]); a pass that
//! goes past the last checkpoint (a live trace grown since) extends it.
//! An index is used only for the trace it was built from: the trace's
//! identity (process, start, and checksums of its first bytes and of the
//! bytes before where the index stopped reading) must match, and the part
//! it covers must be free of damage.
//!
//! - `state`: a checkpoint's heap state as bytes;
//! - `file`: the index file (states, table, footer; appended in place);
//! - `build`: making checkpoints during a pass.

mod build;
mod file;
pub mod state;

pub use build::{Builder, DEFAULT_SPACING};

use crate::heap::Heap;
use crate::trace::{Carry, Pass, ScanCache, TakeRun};
use crate::Trace;
use heapreplay_format::Event;
use std::path::{Path, PathBuf};

/// Bytes at each end of the covered part that the identity check reads.
const CHECKED_BYTES: u64 = 64 << 10;

/// Which trace an index was built from, and how far it read: the trace's
/// first bytes (its FileInfo record: process, command, start time) and the
/// bytes before where it stopped, by checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    /// The trace's length when the index was last written.
    covered_len: u64,
    /// CRC-32 of the first bytes (up to [`CHECKED_BYTES`]).
    head_crc: u32,
    /// CRC-32 of the bytes (up to [`CHECKED_BYTES`]) before `covered_len`.
    tail_crc: u32,
}

impl Identity {
    /// The identity of the trace whose file holds `bytes` now.
    fn of(bytes: &[u8]) -> Self {
        let n = bytes.len().min(CHECKED_BYTES as usize);
        Self {
            covered_len: bytes.len() as u64,
            head_crc: crc32fast::hash(&bytes[..n]),
            tail_crc: crc32fast::hash(&bytes[bytes.len() - n..]),
        }
    }

    /// The identity the trace had when it was `len` bytes long; `None` if
    /// it is shorter now.
    fn at(bytes: &[u8], len: u64) -> Option<Self> {
        Some(Self::of(bytes.get(..usize::try_from(len).ok()?)?))
    }

    /// True if the trace whose file holds `bytes` is the one this was
    /// taken of, grown or not.
    fn matches(&self, bytes: &[u8]) -> bool {
        Self::at(bytes, self.covered_len).as_ref() == Some(self)
    }
}

/// The heap's state after every event below `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Every event below this seq is in the state, none after.
    pub seq: u64,
    /// The seq of the last event in the state (0 if none).
    pub last_seq: u64,
    /// Events in the state.
    pub events: u64,
    /// The sum of every allocation size in the state.
    alloc_bytes: u64,
    /// Where in-use bytes peaked since the previous checkpoint (or the
    /// start): the seq of the event after which, and the bytes.
    pub peak: Option<(u64, u64)>,
    state_offset: u64,
    state_len: u64,
    /// The state's size once decompressed.
    raw_len: u64,
}

/// An index's table of contents.
#[derive(Debug, Clone)]
struct Table {
    identity: Identity,
    /// A pass reached this seq (every event below it) when the index was
    /// last written; at least the last checkpoint's seq.
    covered_seq: u64,
    /// Where in-use bytes peaked between the last checkpoint (or the start)
    /// and `covered_seq`.
    end_peak: Option<(u64, u64)>,
    checkpoints: Vec<Checkpoint>,
    /// What scanning the trace's first part found.
    scan: Option<ScanCache>,
}

/// Where a pass starts: the beginning of the trace, or a checkpoint.
pub struct Start {
    /// The live blocks, and where the events to replay start.
    pub carry: Carry,
    /// The heap's counters.
    pub heap: Heap,
    /// The last event replayed before the start (0 if none).
    pub last_seq: u64,
    /// Events replayed before the start.
    pub events: u64,
    /// The checkpoint started from: its position in the index.
    checkpoint: Option<usize>,
}

impl Start {
    /// The beginning of `trace`: nothing live, or the state of its fold.
    pub fn beginning(trace: &Trace) -> Self {
        match trace.fold() {
            Some(f) => Self {
                carry: trace.beginning(),
                heap: f.heap.clone(),
                last_seq: f.last_seq,
                events: f.info.events,
                checkpoint: None,
            },
            None => Self {
                carry: Carry::default(),
                heap: Heap::new(),
                last_seq: 0,
                events: 0,
                checkpoint: None,
            },
        }
    }

    /// The checkpoint started from: its position in the index.
    pub fn checkpoint(&self) -> Option<usize> {
        self.checkpoint
    }
}

/// A trace's index, checked against the trace.
pub struct Index {
    path: PathBuf,
    opened: file::Opened,
    /// The index file's size when read.
    size: u64,
}

impl Index {
    /// The index of `trace`, if there is one built from this very trace
    /// and the part it covers is intact. (Beside the trace as `TRACE.idx`,
    /// or in the user's cache directory: see [`places`].)
    pub fn find(trace: &Trace) -> Option<Index> {
        places(&trace.path).into_iter().find_map(|path| {
            let opened = file::open(&path)?;
            let id = opened.table.identity;
            // An index written before the trace's fold describes events
            // the trace no longer holds.
            let after_fold = trace.fold().is_none_or(|f| id.covered_len > f.offset);
            let usable = after_fold
                && id.matches(trace.file_bytes())
                && trace.problems.iter().all(|p| p.offset >= id.covered_len);
            let size = opened.file.metadata().ok()?.len();
            usable.then_some(Index { path, opened, size })
        })
    }

    /// Where the index file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The checkpoints, in seq order.
    pub fn checkpoints(&self) -> &[Checkpoint] {
        &self.opened.table.checkpoints
    }

    /// Every event below this seq was read by the pass that last wrote the
    /// index.
    pub fn covered_seq(&self) -> u64 {
        self.opened.table.covered_seq
    }

    /// The latest checkpoint whose last event satisfies `usable` (which
    /// must hold for every seq below one where it holds), loaded; the
    /// beginning if there is none, or if its state cannot be read.
    pub fn start(&self, trace: &Trace, usable: impl Fn(u64) -> bool) -> Start {
        let cps = self.checkpoints();
        let n = cps.partition_point(|cp| usable(cp.last_seq));
        let Some(i) = n.checked_sub(1) else {
            return Start::beginning(trace);
        };
        self.load(i).unwrap_or_else(|| Start::beginning(trace))
    }

    /// The state at checkpoint `i`.
    fn load(&self, i: usize) -> Option<Start> {
        let cp = &self.checkpoints()[i];
        let bytes = file::read_state(&self.opened.file, cp)?;
        let (resolver, heap) = state::decode(&bytes, usize::try_from(cp.raw_len).ok()?)?;
        Some(Start {
            carry: Carry::at(cp.seq, resolver, cp.alloc_bytes),
            heap,
            last_seq: cp.last_seq,
            events: cp.events,
            checkpoint: Some(i),
        })
    }

    /// Where in-use bytes peak in the whole of `trace` as it reads now,
    /// if the index covers all of it: (seq of the event after which,
    /// bytes). `None` if it does not, `Some(None)` if nothing was live.
    pub fn peak(&self, trace: &Trace) -> Option<Option<(u64, u64)>> {
        let table = &self.opened.table;
        (table.covered_seq >= trace.seq_end()).then(|| {
            peak_of(
                table
                    .checkpoints
                    .iter()
                    .map(|cp| cp.peak)
                    .chain([table.end_peak]),
            )
        })
    }

    /// Where in-use bytes peak up to the last checkpoint.
    pub fn peak_before_last(&self) -> Option<(u64, u64)> {
        peak_of(self.checkpoints().iter().map(|cp| cp.peak))
    }
}

/// What the index of the trace at `path` (whose file holds `bytes`) says
/// scanning its first part found, if it was built from this very trace.
pub(crate) fn cached_scan(path: &Path, bytes: &[u8]) -> Option<ScanCache> {
    places(path).into_iter().find_map(|p| {
        let table = file::open(&p)?.table;
        if !table.identity.matches(bytes) {
            return None;
        }
        table.scan
    })
}

/// The first of the highest of spans' peaks, in order: what one pass over
/// all the spans finds.
pub fn peak_of(peaks: impl IntoIterator<Item = Option<(u64, u64)>>) -> Option<(u64, u64)> {
    let mut best: Option<(u64, u64)> = None;
    for p in peaks.into_iter().flatten() {
        if best.is_none_or(|(_, b)| p.1 > b) {
            best = Some(p);
        }
    }
    best
}

/// Where the index of the trace at `trace` may be, in the order looked
/// at: beside it (`TRACE.idx`), then under the user's cache directory
/// (`$XDG_CACHE_HOME/heapreplay`, or `~/.cache/heapreplay`) for traces in
/// directories one cannot write.
pub fn places(trace: &Path) -> Vec<PathBuf> {
    let mut beside = trace.as_os_str().to_owned();
    beside.push(".idx");
    let mut out = vec![PathBuf::from(beside)];
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")));
    if let Some(cache) = cache {
        let full = std::fs::canonicalize(trace).unwrap_or_else(|_| trace.to_path_buf());
        let name = trace.file_name().unwrap_or_default().to_string_lossy();
        let tag = crc32fast::hash(full.as_os_str().as_encoded_bytes());
        out.push(
            cache
                .join("heapreplay")
                .join(format!("{name}-{tag:08x}.idx")),
        );
    }
    out
}

impl Trace {
    /// [`Trace::for_each_event_while`] from `start` (the beginning or a
    /// checkpoint) to the end of the trace, or until `f` returns false.
    /// A `builder` takes checkpoints as the pass goes, with the heap that
    /// `heap` gives: the counters after every event handed to `f` so far.
    /// Without a builder, `take_run` is offered resolved runs whole.
    pub fn for_each_event_from<E>(
        &self,
        pipeline: bool,
        start: &mut Start,
        builder: Option<(&mut Builder, &dyn Fn() -> Heap)>,
        take_run: Option<TakeRun<'_>>,
        f: impl FnMut(&Event) -> Result<bool, E>,
    ) -> Result<Pass, E> {
        // The pass goes to the end: no span follows it.
        start.carry.live_wanted = false;
        let mut watching = builder.map(|(builder, heap)| build::Watching { builder, heap });
        let watcher = watching
            .as_mut()
            .map(|w| w as &mut dyn crate::trace::Watcher);
        let mut pass =
            self.for_each_event_watched(pipeline, &mut start.carry, None, watcher, take_run, f)?;
        pass.events += start.events;
        if !pass.stopped {
            return Ok(self.check_complete(pass));
        }
        Ok(pass)
    }

    /// [`Trace::for_each_event_in`], with a `builder` taking checkpoints
    /// on the way (see [`Trace::for_each_event_from`]).
    pub fn for_each_event_building<E>(
        &self,
        pipeline: bool,
        carry: &mut Carry,
        until: Option<u64>,
        builder: Option<(&mut Builder, &dyn Fn() -> Heap)>,
        f: impl FnMut(&Event) -> Result<bool, E>,
    ) -> Result<Pass, E> {
        let mut watching = builder.map(|(builder, heap)| build::Watching { builder, heap });
        let watcher = watching
            .as_mut()
            .map(|w| w as &mut dyn crate::trace::Watcher);
        self.for_each_event_watched(pipeline, carry, until, watcher, None, f)
    }
}
