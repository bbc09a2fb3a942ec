//! `heapreplay timeline`: in-use bytes over time as an SVG or PNG plot.

use crate::cli::TimelineArgs;
use std::process::ExitCode;

/// Draws the plot.
pub fn run(args: &TimelineArgs) -> Result<ExitCode, String> {
    Err(format!(
        "{}: timeline is not written yet",
        args.trace.display()
    ))
}
