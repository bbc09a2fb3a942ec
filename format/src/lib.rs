//! The heapreplay trace format, shared by the recorder and the replayer.
//!
//! A trace is a sequence of *records*. Each record is a zstd skippable frame
//! holding a fixed 44-byte header, followed by one ordinary zstd frame holding
//! the payload. `zstd -d` therefore reads a trace (and ignores our headers),
//! and a reader that meets damage can resynchronise on the next header.
//! The byte-level specification is `FORMAT.md` beside this crate.

pub mod events;
pub mod fold;
pub mod hash;
pub mod header;
pub mod info;
pub mod mappings;
pub mod markers;
pub mod reader;
pub mod settings;
pub mod signals;
pub mod stacks;
pub mod synth;
pub mod units;
pub mod varint;

pub use events::{Event, EventKind};
pub use header::{
    RecordHeader, RecordKind, FORMAT_VERSION, HEADER_LEN, OLDEST_READ_VERSION, RECORD_PREFIX_LEN,
};
pub use info::{
    encode_end, end_detached, progress_resident, ClockSample, EndInfo, FileInfo, ProgressInfo,
};
pub use mappings::{Mapping, MappingOp};
pub use markers::{Marker, MarkerSource};
pub use reader::{Damage, RawRecord, Scan};
