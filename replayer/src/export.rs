//! `heapreplay export --parquet`: events, stacks and snapshots as Parquet.

use crate::cli::ExportArgs;
use std::process::ExitCode;

/// Writes the Parquet files.
pub fn run(args: &ExportArgs) -> Result<ExitCode, String> {
    Err(format!(
        "{}: export is not written yet",
        args.trace.display()
    ))
}
