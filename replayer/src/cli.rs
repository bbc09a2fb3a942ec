//! Command-line interface.

use clap::{Args, Parser, Subcommand};
use heapreplay_analysis::plan::{MarkerFilter, TimePoint};
use std::path::PathBuf;

/// Record a program's allocations once, then write gperftools heap profiles
/// (profile.heap) at any snapshot rule, chosen after the fact.
#[derive(Parser, Debug)]
#[command(
    name = "heapreplay",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Examples:\n  heapreplay record -- ./app            record ./app into heapreplay.<pid>.zst\n  heapreplay --interval 10MB trace.zst  a profile every 10 MB allocated, and one at the end\n  heapreplay --at-marker usr2 trace.zst a profile at each SIGUSR2 the program received\n  heapreplay --at-peak --at 30s,1m trace.zst\n  heapreplay info trace.zst\n  google-pprof --text ./app trace.0001.heap"
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
    /// Describe a trace: process, duration, threads, events, peak, markers, damage.
    Info(InfoArgs),
}

/// `heapreplay info` options.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// The trace to describe.
    #[arg(value_name = "TRACE")]
    pub trace: PathBuf,
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

    /// A profile every SIZE bytes allocated (gperftools'
    /// HEAP_PROFILE_ALLOCATION_INTERVAL). Units: B, KB, MB, GB (binary: 1MB = 2^20).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Snapshot rules")]
    pub interval: Option<u64>,

    /// A profile every SIZE bytes freed (HEAP_PROFILE_DEALLOCATION_INTERVAL).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Snapshot rules")]
    pub dealloc_interval: Option<u64>,

    /// A profile when in-use bytes grow SIZE past their highest point at a
    /// previous rule dump (HEAP_PROFILE_INUSE_INTERVAL).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Snapshot rules")]
    pub inuse_interval: Option<u64>,

    /// A profile every DURATION of wall time (HEAP_PROFILE_TIME_INTERVAL),
    /// e.g. 500ms, 30s, 5m.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration, help_heading = "Snapshot rules")]
    pub time_interval: Option<u64>,

    /// A profile at each marker: a signal (usr1, usr2, SIGUSR2, 12, rtmin+3),
    /// the name given to heapreplay_marker(), or `all`. Repeatable.
    #[arg(long, value_name = "NAME", value_parser = parse_marker, help_heading = "Snapshot rules")]
    pub at_marker: Vec<MarkerFilter>,

    /// Profiles at these times: offsets from the start (30s, 1.5s, 500ms, 2m)
    /// or UTC times (2026-11-27T15:04:05Z). Comma-separated, repeatable.
    #[arg(long, value_name = "TIME[,TIME...]", value_parser = parse_time, value_delimiter = ',', help_heading = "Snapshot rules")]
    pub at: Vec<TimePoint>,

    /// One profile at the moment in-use bytes were highest.
    #[arg(long, help_heading = "Snapshot rules")]
    pub at_peak: bool,

    /// A profile of the state at the end of the trace (what was never freed).
    /// Written anyway, as gperftools does at exit, when only the interval
    /// rules above (or no rule) are given.
    #[arg(long, help_heading = "Snapshot rules")]
    pub at_exit: bool,

    /// Prefix of the output files: PREFIX.0001.heap, ... [default: the trace name without .zst]
    #[arg(short, long, value_name = "PREFIX")]
    pub output: Option<PathBuf>,

    /// Threads: 1 decodes and replays in turn; N decodes on N-1 threads while
    /// one replays [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
}

fn parse_size(s: &str) -> Result<u64, String> {
    heapreplay_analysis::units::parse_size(s)
}

fn parse_positive_duration(s: &str) -> Result<u64, String> {
    match heapreplay_analysis::plan::parse_duration_ns(s)? {
        0 => Err(format!("'{s}' must be greater than zero")),
        ns => Ok(ns),
    }
}

fn parse_marker(s: &str) -> Result<MarkerFilter, String> {
    MarkerFilter::parse(s)
}

fn parse_time(s: &str) -> Result<TimePoint, String> {
    TimePoint::parse(s)
}
