//! An opened trace: its metadata, stacks, maps, clock and markers read when
//! it is opened, and its events decoded, merged into sequence order and
//! resolved in one pass. One job per submodule:
//! - `open`: mapping the file, scanning its headers, reading every record
//!   but the events;
//! - `fold`: choosing the fold a folded trace starts from;
//! - `decode`: decoding one events record and checking it;
//! - `merge`: the k-way merge of decoded records by sequence number;
//! - `pass`: the pass itself, decoding in parallel batches;
//! - `release`: letting go of the file's pages behind the pass;
//! - `summary`: summing up a resolved compacted run, to apply at once.

mod decode;
mod fold;
mod merge;
mod open;
mod pass;
mod release;
mod summary;

pub use fold::Fold;
pub use open::{being_recorded, io_text};
pub use pass::{Carry, Pass, TakeRun};
pub(crate) use pass::{Tally, Watcher};
pub use summary::RunSummary;

use crate::compressed::Compressed;
use crate::stack_ids::StackIds;
use crate::stack_table::StackTable;
use heapreplay_format::settings::Settings;
use heapreplay_format::{ClockSample, EndInfo, FileInfo, Marker};
use std::fmt;
use std::path::PathBuf;

/// A trace that cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for TraceError {}

/// A part of a trace that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Byte offset in the file.
    pub offset: u64,
    /// What was wrong and what was skipped.
    pub what: String,
}

/// The memory maps as recorded at one point, kept compressed: a long run
/// records them many times, and a crafted trace can hold gigabytes of maps
/// text in a few megabytes of file.
#[derive(Debug, Clone)]
pub struct MapsRecord {
    /// Sequence number current when the maps were read.
    pub seq: u64,
    payload: Compressed,
}

impl MapsRecord {
    /// A record of `text` at `seq`.
    pub fn new(seq: u64, text: &str) -> Self {
        Self {
            seq,
            payload: Compressed::of(text.as_bytes()),
        }
    }

    /// The text of `/proc/self/maps`.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload.decompress()).into_owned()
    }
}

/// Where an events record is, and what the pass needs of its header without
/// reading it again (the rest is read from the file when it is decoded).
/// Kept small: a trace of billions of events has hundreds of thousands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventsRef {
    pub(crate) offset: u64,
    pub(crate) first_seq: u64,
    pub(crate) last_seq: u64,
    /// The recording thread; 0 for a compacted record, which holds every
    /// thread's events (their counts are in Threads records).
    pub(crate) tid: u32,
    pub(crate) count: u32,
}

/// What scanning a trace's first `resume` bytes found, kept in its index
/// so that opening it again scans only what follows: its events records,
/// and the offsets of its other records (read again from the trace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanCache {
    /// A record boundary: everything before it is described here.
    pub(crate) resume: u64,
    /// The events records before `resume`, in first-seq order.
    pub(crate) events: Vec<EventsRef>,
    /// The offsets of the other records before `resume`, ascending.
    pub(crate) others: Vec<u64>,
}

/// A trace whose recording process still holds it open: it has no End
/// record yet, and is read only as far as it is known to be complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    /// The recording process.
    pub pid: u32,
    /// Every event and marker below this seq is read, nothing after it.
    /// `None` for a trace of format version 3, which has no Progress
    /// records: it is read as far as it goes.
    pub complete_below: Option<u64>,
    /// When the trace was complete that far: ns since the start of
    /// recording (0 when nothing is complete yet).
    pub ns: u64,
    /// Events below this seq lie between two recorded clock samples, so
    /// their times are final: what the trace says of them now, it will say
    /// once finished. At most `complete_below`.
    pub timed_below: u64,
}

impl Live {
    /// How long ago the trace was complete as far as it is read, in ns, by
    /// the wall clock (`start_unix_ns` from the trace's FileInfo).
    pub fn age_ns(&self, start_unix_ns: u64) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        now.saturating_sub(start_unix_ns.saturating_add(self.ns))
    }
}

/// An opened trace.
pub struct Trace {
    /// Where it was read from.
    pub path: PathBuf,
    /// The recorded process.
    pub info: FileInfo,
    /// The profiling settings it ran with (gperftools' variables).
    pub settings: Settings,
    /// Set if the trace began with an attach to a running process: it
    /// covers allocations since then (`info.start_unix_ns`) only.
    pub attached: Option<heapreplay_format::settings::Attached>,
    /// True if the recording ended with a detach: the process went on
    /// running after the trace's end.
    pub detached: bool,
    /// The defined stacks: id to return addresses (frame 0 first).
    pub stacks: StackTable,
    /// Maps records in sequence order.
    pub maps: Vec<MapsRecord>,
    /// Clock samples in sequence order.
    pub clock: Vec<ClockSample>,
    /// Markers in sequence order.
    pub markers: Vec<Marker>,
    /// Mapping calls (`HEAP_PROFILE_MMAP`) in sequence order; see
    /// [`crate::mapped`].
    pub mappings: Vec<heapreplay_format::Mapping>,
    /// The end summary, if the recording ended cleanly.
    pub end: Option<EndInfo>,
    /// Set when the recording process still holds the trace open.
    pub live: Option<Live>,
    /// The most resident memory the recorder sampled (once a second, in its
    /// Progress records); `None` from recorders that did not sample it.
    pub resident_peak: Option<u64>,
    /// The seqs of the Progress records, ascending.
    progress_marks: Vec<u64>,
    /// Events of compacted records, per thread.
    compacted_threads: std::collections::BTreeMap<u32, u64>,
    /// The fold the trace starts from, if it was folded.
    fold: Option<Fold>,
    /// Folds ignored because their writer stopped while writing them.
    unfinished_folds: usize,
    /// Every events record is a resolved Compacted one (version 6 on), none
    /// overlapping another: a pass needs no live blocks to resolve them.
    resolved: bool,
    /// Byte offset of the end record.
    end_offset: u64,
    /// How events' stack ids map onto `stacks`.
    stack_ids: StackIds,
    /// Damage found so far (scanning, decoding).
    pub problems: Vec<Problem>,
    events: Vec<EventsRef>,
    /// Events records at or past a live trace's limit: not read now.
    beyond_limit: Vec<EventsRef>,
    /// The offsets of every record but the events records, ascending.
    other_offsets: Vec<u64>,
    /// How far the scan's findings may be kept in an index: to the end of
    /// an intact trace, to the newest Progress record of a live one; `None`
    /// if damage was found.
    cacheable_until: Option<u64>,
    /// For each index into `events`, the lowest file offset of it and every
    /// record after it: what must stay readable once the records before it
    /// are decoded.
    low_water: Vec<usize>,
    bytes: memmap2::Mmap,
}

impl Trace {
    /// Events at or above this seq are not read: a live trace's part not
    /// known to be complete.
    fn limit(&self) -> Option<u64> {
        self.live.and_then(|l| l.complete_below)
    }

    /// Everything found damaged: in opening the trace, and in `pass`, in
    /// file order.
    pub fn damage<'a>(&'a self, pass: &'a Pass) -> Vec<&'a Problem> {
        let mut all: Vec<_> = self.problems.iter().chain(&pass.problems).collect();
        all.sort_by_key(|p| p.offset);
        all
    }

    /// The Maps records a snapshot at `seq` may use: those before the first
    /// Progress mark above `seq` (all of them in a trace without marks).
    /// A later record only fills gaps for a library loaded just before
    /// `seq`; bounding it makes a snapshot the same whether it is taken
    /// while the trace is written or once it is finished.
    pub fn maps_for(&self, seq: u64) -> &[MapsRecord] {
        let bound = self
            .progress_marks
            .get(self.progress_marks.partition_point(|&m| m <= seq))
            .copied()
            .unwrap_or(u64::MAX);
        &self.maps[..self.maps.partition_point(|m| m.seq < bound)]
    }

    /// One past the highest seq an events record holds (as far as the
    /// trace is read): a pass from here on would find nothing.
    pub fn seq_end(&self) -> u64 {
        let end = self
            .events
            .iter()
            .map(|r| r.last_seq.saturating_add(1))
            .max()
            .unwrap_or(0);
        self.limit().map_or(end, |limit| end.min(limit))
    }

    /// What the scan found up to where it may be kept in an index.
    pub(crate) fn scan_cache(&self) -> Option<ScanCache> {
        let resume = self.cacheable_until?;
        let mut events: Vec<EventsRef> = self
            .events
            .iter()
            .chain(&self.beyond_limit)
            .filter(|r| r.offset < resume)
            .copied()
            .collect();
        events.sort_by_key(|r| r.first_seq);
        let others = self
            .other_offsets
            .iter()
            .copied()
            .filter(|&o| o < resume)
            .collect();
        Some(ScanCache {
            resume,
            events,
            others,
        })
    }

    /// The trace file's bytes, as long as it was when opened.
    pub(crate) fn file_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Events the trace's events records say they hold, and those its
    /// fold holds.
    pub fn recorded_events(&self) -> u64 {
        let folded = self.fold.as_ref().map_or(0, |f| f.info.events);
        folded + self.events.iter().map(|r| u64::from(r.count)).sum::<u64>()
    }

    /// The fold the trace starts from: the heap's state at the first event
    /// it still holds. `None` for a trace that holds every event.
    pub fn fold(&self) -> Option<&Fold> {
        self.fold.as_ref()
    }

    /// Folds ignored because their writer stopped while writing them.
    pub fn unfinished_folds(&self) -> usize {
        self.unfinished_folds
    }

    /// Where a pass over the whole trace starts: nothing live, or the live
    /// blocks of its fold.
    pub fn beginning(&self) -> Carry {
        match &self.fold {
            Some(f) => Carry::at(f.seq, f.live_blocks(), f.info.alloc_bytes),
            None => Carry::default(),
        }
    }

    /// The distinct threads that recorded events, with their event counts.
    pub fn threads(&self) -> std::collections::BTreeMap<u32, u64> {
        let mut out = self.compacted_threads.clone();
        for r in self.events.iter().filter(|r| r.tid != 0) {
            *out.entry(r.tid).or_insert(0) += u64::from(r.count);
        }
        out
    }

    /// Events in compacted records, and those records.
    pub fn compacted(&self) -> (u64, usize) {
        let compacted = self.events.iter().filter(|r| r.tid == 0);
        let records = compacted.clone().count();
        (compacted.map(|r| u64::from(r.count)).sum(), records)
    }

    /// Every record of the trace (events records included, those past a
    /// live trace's limit too), as they are in the file, in file order.
    pub fn records(&self) -> Vec<heapreplay_format::RawRecord<'_>> {
        let mut offsets: Vec<u64> = self.other_offsets.clone();
        offsets.extend(
            self.events
                .iter()
                .chain(&self.beyond_limit)
                .map(|e| e.offset),
        );
        offsets.sort_unstable();
        offsets
            .into_iter()
            .filter_map(|offset| open::record_at(&self.bytes, offset))
            .collect()
    }

    /// Every record of the trace but the events records, as they are in
    /// the file (for a writer copying them), in file order.
    pub fn other_records(&self) -> impl Iterator<Item = heapreplay_format::RawRecord<'_>> + '_ {
        self.other_offsets
            .iter()
            .filter_map(|&offset| open::record_at(&self.bytes, offset))
    }
}
