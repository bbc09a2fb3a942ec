//! `heapreplay export --parquet`: a trace's events, stacks and snapshots as
//! Parquet files (`events.parquet`, `stacks.parquet`, `snapshots.parquet` in
//! one folder), so that many traces can be queried together in DuckDB,
//! DataFusion or Spark. Every table has a `trace` column (the trace's file
//! name) to tell traces apart once unioned.

use crate::cli::ExportArgs;
use std::process::ExitCode;

/// Writes the trace's events, stacks and snapshots (at the chosen rules; by
/// default one at the end) as Parquet files into the output folder.
pub fn run(args: &ExportArgs) -> Result<ExitCode, String> {
    #[cfg(feature = "parquet")]
    {
        files::run(args)
    }
    #[cfg(not(feature = "parquet"))]
    {
        let _ = args;
        Err("this heapreplay was built without Parquet support (cargo feature `parquet`)".into())
    }
}

#[cfg(feature = "parquet")]
mod events;
#[cfg(feature = "parquet")]
mod files;
#[cfg(feature = "parquet")]
mod snapshots;
#[cfg(feature = "parquet")]
mod stacks;
#[cfg(feature = "parquet")]
mod table;
