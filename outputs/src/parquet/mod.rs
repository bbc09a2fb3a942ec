//! A trace's events, stacks and snapshots as Parquet tables
//! (`events.parquet`, `stacks.parquet`, `snapshots.parquet` in one folder),
//! so that many traces can be queried together in DuckDB, DataFusion or
//! Spark. Every table has a `trace` column (the trace's file name) to tell
//! traces apart once unioned. Each table is fed as the replay goes.

mod events;
mod snapshots;
mod stacks;
mod table;

pub use events::Events;
pub use snapshots::Snapshots;
pub use stacks::StackRows;
pub use table::{Constant, Table};

/// The files of an export, in the order events, stacks, snapshots.
pub const FILES: [&str; 3] = ["events.parquet", "stacks.parquet", "snapshots.parquet"];
