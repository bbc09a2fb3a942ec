//! Offline analysis of heapreplay traces: loading and ordering events,
//! replaying the heap, deciding snapshot points, writing profiles.

pub mod clock;
pub mod compressed;
pub mod flamegraph;
pub mod heap_profile;
pub mod maps;
pub mod plan;
pub mod pprof;
pub mod profile;
pub mod replay;
pub mod report;
pub mod resolve;
pub mod rules;
pub mod snapshots;
pub mod stack_ids;
pub mod stack_table;
pub mod symbols;
pub mod timeline;
pub mod trace;
pub mod units;

pub use trace::{Trace, TraceError};
