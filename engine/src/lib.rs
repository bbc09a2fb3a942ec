//! The replay engine: reads a trace, puts its events in sequence order,
//! resolves each free to the block it frees, keeps the heap's state, and
//! decides where the snapshots of a plan fall (gperftools' interval rules,
//! markers, times, the peak, the end), handing the heap at each to a sink.
//!
//! Stages, in the order events flow through them: [`trace`] (open, decode,
//! merge), [`resolve`], [`heap`], [`snapshots`] (with [`interval_rules`] and
//! the user's [`plan`], and gperftools' profiler [`windows`]). Beside them: [`mapped`] (the memory the program
//! mapped itself, replayed apart from the heap), [`stack_table`] and [`stack_ids`] (the
//! recorded stacks), [`maps`] (which memory maps apply at a point), [`clock`]
//! (sequence numbers to times). [`allocated_since`] counts what a window of the run left live. [`index`] keeps checkpoints of the heap's
//! state beside a trace, so that a point is replayed from the checkpoint
//! before it.

pub mod allocated_since;
pub mod clock;
pub mod compressed;
pub mod heap;
pub mod index;
pub mod interval_rules;
pub mod mapped;
pub mod maps;
pub mod plan;
pub mod resolve;
pub mod snapshots;
pub mod stack_ids;
pub mod stack_table;
pub mod trace;
pub mod windows;
/// User-given sizes (`10MB`), shared with the recorder's settings.
pub use heapreplay_format::units;

pub use trace::{Live, Trace, TraceError};
