//! Command-line interface.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Record a program's allocations once, then write gperftools heap profiles
/// (profile.heap) at any snapshot rule, chosen after the fact.
#[derive(Parser, Debug)]
#[command(
    name = "heapreplay",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Examples:\n  heapreplay record -- ./app            record ./app into heapreplay.<pid>.zst\n  heapreplay --interval 10MB trace.zst  a profile every 10 MB allocated, and one at the end\n  google-pprof --text ./app trace.0001.heap"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub replay: ReplayArgs,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a program under the recorder (sets LD_PRELOAD for you).
    Record(RecordArgs),
}

/// `heapreplay record` options.
#[derive(Args, Debug)]
pub struct RecordArgs {
    /// Trace file to write; `%p` becomes the process id.
    #[arg(short, long, value_name = "PATH", default_value = "heapreplay.%p.zst")]
    pub out: String,

    /// The program to run, and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROGRAM"
    )]
    pub program: Vec<String>,
}

/// Replay options: which snapshots to write and where.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The trace to replay.
    #[arg(value_name = "TRACE", required = true)]
    pub trace: Option<PathBuf>,

    /// Write a profile every SIZE bytes allocated (gperftools'
    /// HEAP_PROFILE_ALLOCATION_INTERVAL). Units: B, KB, MB, GB (binary: 1MB = 2^20).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub interval: Option<u64>,

    /// Prefix of the output files: PREFIX.0001.heap, ... [default: the trace name without .zst]
    #[arg(short, long, value_name = "PREFIX")]
    pub output: Option<PathBuf>,

    /// Decoding threads [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
}

fn parse_size(s: &str) -> Result<u64, String> {
    heapreplay_analysis::units::parse_size(s)
}
