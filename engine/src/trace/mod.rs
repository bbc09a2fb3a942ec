//! An opened trace: its metadata, stacks, maps, clock and markers read when
//! it is opened, and its events decoded, merged into sequence order and
//! resolved in one pass. One job per submodule:
//! - `open`: mapping the file, scanning its headers, reading every record
//!   but the events;
//! - `decode`: decoding one events record and checking it;
//! - `merge`: the k-way merge of decoded records by sequence number;
//! - `pass`: the pass itself, decoding in parallel batches;
//! - `release`: letting go of the file's pages behind the pass.

mod decode;
mod merge;
mod open;
mod pass;
mod release;

pub use open::io_text;
pub use pass::Pass;

use crate::compressed::Compressed;
use crate::stack_ids::StackIds;
use crate::stack_table::StackTable;
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
struct EventsRef {
    offset: u64,
    first_seq: u64,
    tid: u32,
    count: u32,
}

/// An opened trace.
pub struct Trace {
    /// Where it was read from.
    pub path: PathBuf,
    /// The recorded process.
    pub info: FileInfo,
    /// The defined stacks: id to return addresses (frame 0 first).
    pub stacks: StackTable,
    /// Maps records in sequence order.
    pub maps: Vec<MapsRecord>,
    /// Clock samples in sequence order.
    pub clock: Vec<ClockSample>,
    /// Markers in sequence order.
    pub markers: Vec<Marker>,
    /// The end summary, if the recording ended cleanly.
    pub end: Option<EndInfo>,
    /// Byte offset of the end record.
    end_offset: u64,
    /// How events' stack ids map onto `stacks`.
    stack_ids: StackIds,
    /// Damage found so far (scanning, decoding).
    pub problems: Vec<Problem>,
    events: Vec<EventsRef>,
    /// For each index into `events`, the lowest file offset of it and every
    /// record after it: what must stay readable once the records before it
    /// are decoded.
    low_water: Vec<usize>,
    bytes: memmap2::Mmap,
}

impl Trace {
    /// Everything found damaged: in opening the trace, and in `pass`, in
    /// file order.
    pub fn damage<'a>(&'a self, pass: &'a Pass) -> Vec<&'a Problem> {
        let mut all: Vec<_> = self.problems.iter().chain(&pass.problems).collect();
        all.sort_by_key(|p| p.offset);
        all
    }

    /// Events the trace's events records say they hold.
    pub fn recorded_events(&self) -> u64 {
        self.events.iter().map(|r| u64::from(r.count)).sum()
    }

    /// The distinct threads that recorded events, with their event counts.
    pub fn threads(&self) -> std::collections::BTreeMap<u32, u64> {
        let mut out = std::collections::BTreeMap::new();
        for r in &self.events {
            *out.entry(r.tid).or_insert(0) += u64::from(r.count);
        }
        out
    }
}
