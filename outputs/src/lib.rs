//! What a replay writes: every writer takes the heap at a snapshot point
//! (from the engine) and, where it shows names, the stacks symbolized.
//!
//! - [`heap_profile`]: gperftools' `profile.heap` text (addresses only);
//! - [`profile`]: a snapshot with its stacks symbolized, which the writers
//!   below work from;
//! - [`pprof`]: gzipped pprof protobuf;
//! - [`flamegraph`]: folded stacks and flame graph SVGs (feature `flamegraph`);
//! - [`report`]: `top`, `leaks` and `diff` text;
//! - [`timeline`]: bytes in use over time as data, CSV, and (feature
//!   `chart`) SVG or PNG charts;
//! - `parquet`: events, stacks and snapshots as Parquet tables (feature
//!   `parquet`).

pub mod flamegraph;
pub mod heap_profile;
#[cfg(feature = "parquet")]
pub mod parquet;
pub mod pprof;
pub mod profile;
pub mod report;
pub mod timeline;
pub mod web;
