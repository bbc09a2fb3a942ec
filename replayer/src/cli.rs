//! Command-line interface.

use clap::{Args, Parser, Subcommand, ValueEnum};
use heapreplay_engine::plan::{MarkerFilter, Point, TimePoint};
use heapreplay_outputs::profile::SampleKind;
use std::path::PathBuf;

/// Record a program's allocations once, then write gperftools heap profiles
/// (profile.heap) at any snapshot rule, chosen after the fact.
#[derive(Parser, Debug)]
#[command(
    name = "heapreplay",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Examples:\n  heapreplay record -- ./app                  record ./app into heapreplay.<pid>.zst\n  heapreplay --interval 10MB trace.zst        a profile every 10 MB allocated, and one at the end\n  heapreplay --at-marker usr2 trace.zst       a profile at each SIGUSR2 the program received\n  heapreplay --at-peak --at 30s,1m trace.zst  at the peak, 30 s and 1 min in\n  heapreplay info trace.zst                   what the trace holds\n  heapreplay top --at peak trace.zst          the biggest stacks at the peak\n  heapreplay leaks trace.zst                  what was never freed\n  heapreplay --format pprof trace.zst         then: go tool pprof -top trace.0001.pb.gz\n  google-pprof --text ./app trace.0001.heap   read a profile"
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
    /// The stacks holding the most memory, and allocating the most, at one point.
    Top(TopArgs),
    /// What was still allocated at the end of the trace, by stack.
    Leaks(LeaksArgs),
    /// What grew between two points of a trace, or between two traces.
    Diff(DiffArgs),
    /// A plot of in-use bytes over time, with markers, snapshots and the peak.
    Timeline(TimelineArgs),
    /// Events, stacks and snapshots as Parquet files, for DuckDB, DataFusion or Spark.
    Export(ExportArgs),
    /// Rewrite a trace in its dense form: smaller, faster to replay, the same output.
    Compact(CompactArgs),
    /// Keep a trace being recorded under a size, folding its oldest part.
    Keep(KeepArgs),
    /// A page on 127.0.0.1: the run's timeline, and the heap at any moment.
    Serve(ServeArgs),
    /// The page of `serve` as one self-contained HTML file, with moments precomputed.
    Report(ReportArgs),
    /// Start recording a process that is already running (until Ctrl-C).
    Attach(AttachArgs),
    /// Stop the recording `heapreplay attach` started in a process.
    Detach(DetachArgs),
}

/// `heapreplay serve` options.
#[derive(Args, Debug)]
#[command(after_help = "\
Serves a page on 127.0.0.1 and prints its address: the run's in-use bytes
over time with its markers and peak; a click on a moment (or a time typed
in) shows the heap then as a flame graph and a table of its top stacks,
with the numbers `heapreplay top --at` prints. It opens at the peak. Each
moment is replayed from the nearest checkpoint of the trace's index.
Ctrl-C stops it.

  heapreplay serve trace.zst            # then open the printed address")]
pub struct ServeArgs {
    /// The trace to show.
    #[arg(value_name = "TRACE")]
    pub trace: PathBuf,

    /// The port to listen on (0: any free one).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// `heapreplay report` options.
#[derive(Args, Debug)]
#[command(after_help = "\
Writes the page `heapreplay serve` serves as one file that needs no network
and no server: open it in a browser, attach it to a bug report. The heap is
precomputed at --moments moments evenly spread over the run, and at the
peak and the end; a click picks the nearest moment at or before it. A
window or two moments compare those moments. The file lists the stacks
that held or allocated the most whole, the same in every moment, and the
rest as one; it is at most 10 MB whatever the trace's length (fewer stacks
are listed whole to stay under, and at most 2,000 markers are drawn).

  heapreplay report trace.zst -o report.html")]
pub struct ReportArgs {
    /// The trace to show.
    #[arg(value_name = "TRACE")]
    pub trace: PathBuf,

    /// The file to write [default: the trace's name with .html].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// How many moments, evenly spread, besides the peak and the end (2 to 200).
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(2..=200))]
    pub moments: u32,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// `heapreplay attach` options.
#[derive(Args, Debug)]
#[command(after_help = "\
Loads the recorder into process PID and records every allocation and free
from then on, in every thread, until Ctrl-C here, `heapreplay detach PID`
from elsewhere, or the process's exit. One thread of the process is stopped
for a moment (a few milliseconds) while the recorder is loaded; after a
detach the process runs on as before, with its own output, exit status and
signal dispositions; the library stays mapped, inert, and a later attach
reuses it. Profiles of the trace cover allocations since the attach: frees
of blocks allocated before it are counted apart, never subtracted.

Needs the right to trace the process (ptrace): the same user with
kernel.yama.ptrace_scope=0, or root / CAP_SYS_PTRACE. A process in a
container gets a copy of the library in its /tmp, and writes the trace in
its own file system (reachable here as /proc/PID/root/PATH).

  heapreplay attach 4242 -o leak.zst     # Ctrl-C when enough is recorded
  heapreplay top leak.zst; heapreplay leaks leak.zst

Exit status: 0 once detached (or the process exited); 1 when it cannot
attach: no such process, ptrace not permitted, statically linked, already
recorded, stopped, or it exited during the attach.")]
pub struct AttachArgs {
    /// The process to record.
    #[arg(value_name = "PID")]
    pub pid: i32,

    /// Trace file to write, as the process sees it; `%p` becomes its pid
    /// [default: heapreplay.PID.zst in this directory].
    #[arg(short, long, alias = "out", value_name = "PATH")]
    pub output: Option<String>,
}

/// `heapreplay detach` options.
#[derive(Args, Debug)]
#[command(after_help = "\
Asks the recorder that `heapreplay attach` loaded into PID to stop: it puts
back every function it hooked and the program's signal dispositions,
writes the trace's last records and ends its thread. No thread of the
process is stopped for it. Exit status: 0 once detached; 1 if the process
is not recorded by an attach.")]
pub struct DetachArgs {
    /// The process recorded.
    #[arg(value_name = "PID")]
    pub pid: i32,
}

/// `heapreplay keep` options.
#[derive(Args, Debug)]
#[command(after_help = "\
Runs beside a program recorded under LD_PRELOAD (`heapreplay record
--max-size` runs it for you) until the recording ends. When the trace's
size on disk passes 3/4 of SIZE, its oldest part is folded into the heap's
state at that point (the live blocks with their stacks, and the totals
since the start), and its disk blocks are given back: the trace keeps its
newest half or so. Replays, top, leaks and diff at any point after the fold
are exact; interval rules count from it; `heapreplay info` says which part
of the run is kept. The file's length (ls -l) still grows; its size on disk
(du) does not.

  HEAPREPLAY_MAX_SIZE=1GB LD_PRELOAD=librecord.so HEAPREPLAY_OUT=app.zst ./app &
  heapreplay keep app.zst

Exit status: 0 once the recording has ended; 1 when the trace cannot be
folded (a file system without hole punching, damage, a live heap too large).")]
pub struct KeepArgs {
    /// The trace to keep under the size (it may not exist yet).
    #[arg(value_name = "TRACE")]
    pub trace: PathBuf,

    /// The most disk the trace may take [default: $HEAPREPLAY_MAX_SIZE].
    #[arg(long, value_name = "SIZE", value_parser = parse_max_size)]
    pub max_size: Option<u64>,
}

/// Parses a `--max-size`: a size such as 1GB, at least 1 MiB.
fn parse_max_size(text: &str) -> Result<u64, String> {
    let size = heapreplay_engine::units::parse_size(text)?;
    if size < 1 << 20 {
        return Err(format!("'{text}' is too small: at least 1MB"));
    }
    Ok(size)
}

/// The size `HEAPREPLAY_MAX_SIZE` gives, if set.
pub fn max_size_from_env() -> Result<Option<u64>, String> {
    match std::env::var("HEAPREPLAY_MAX_SIZE") {
        Ok(v) if !v.is_empty() => parse_max_size(&v)
            .map(Some)
            .map_err(|e| format!("HEAPREPLAY_MAX_SIZE: {e}")),
        _ => Ok(None),
    }
}

/// `heapreplay compact` options.
#[derive(Args, Debug)]
#[command(after_help = "\
Every replay, report and export of the compacted trace is the same as the
original's. The original is left as it is; delete it once you no longer
need it. A trace still being recorded is compacted as far as it is
complete; the compacted trace ends there.

Exit status: 0; 3 when the trace is damaged (what could be read is
compacted, the rest is not); 1 when the output cannot be written.")]
pub struct CompactArgs {
    /// The trace to compact.
    #[arg(value_name = "TRACE")]
    pub trace: PathBuf,

    /// Where to write the compacted trace [default: the trace name with
    /// .compact.zst in place of .zst].
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub common: CommonArgs,
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
#[command(after_help = "\
The `--` before PROGRAM is optional; give it when PROGRAM's own arguments
start with a dash that heapreplay should not read.

The recorder reads these variables (they work the same under LD_PRELOAD):
  HEAPREPLAY_OUT             the trace path (what -o sets); %p is the process id
  HEAPREPLAY_MARKER_SIGNALS  signals recorded as markers: usr2 (default), a list
                             such as usr1,rtmin+3, or none
  HEAPREPLAY_FOLLOW_EXEC     0: do not record programs this one executes
  HEAPREPLAY_MAX_SIZE        what --max-size sets (under LD_PRELOAD, run
                             `heapreplay keep TRACE` beside the program)

Exit status: the program's own (128 + N if signal N killed it); 1 when it
cannot be run under the recorder (not found, statically linked, set-user-ID).

Then: heapreplay --interval 10MB TRACE, heapreplay info TRACE, heapreplay top TRACE")]
pub struct RecordArgs {
    /// Trace file to write; `%p` becomes the process id [default:
    /// heapreplay.%p.zst; with gperftools' HEAPPROFILE set, PREFIX.trace.zst,
    /// and the profiles gperftools would write appear as the program runs].
    #[arg(short, long, alias = "out", value_name = "PATH")]
    pub output: Option<String>,

    /// Keep the trace under SIZE on disk, however long the program runs,
    /// folding its oldest part (see `heapreplay keep --help`) [default:
    /// $HEAPREPLAY_MAX_SIZE, else no limit].
    #[arg(long, value_name = "SIZE", value_parser = parse_max_size)]
    pub max_size: Option<u64>,

    /// The program to run, and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROGRAM"
    )]
    pub program: Vec<String>,
}

/// Replay options: which snapshots to write, in which format, and where.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The trace to replay.
    #[arg(value_name = "TRACE", required = true)]
    pub trace: Option<PathBuf>,

    #[command(flatten)]
    pub rules: RuleArgs,

    /// Prefix of the output files: PREFIX.0001.heap, ... [default: the trace name without .zst]
    #[arg(short, long, value_name = "PREFIX")]
    pub output: Option<PathBuf>,

    /// What to write per snapshot: gperftools `heap` profiles, gzipped
    /// `pprof` protobuf (.pb.gz), or `flamegraph` SVGs.
    #[arg(long, value_enum, default_value = "heap")]
    pub format: Format,

    /// The value a flame graph shows: inuse_space, inuse_objects,
    /// alloc_space or alloc_objects (pprof files hold all four).
    #[arg(long, value_name = "KIND", value_parser = parse_sample, default_value = "inuse_space")]
    pub sample: SampleKind,

    /// Keep replaying as the trace grows (its process still running): each
    /// snapshot is written about a second after its point, the same file a
    /// replay of the finished trace writes. Ends when the process exits or
    /// on Ctrl-C; a restart writes no snapshot twice. Not with --at-peak,
    /// which needs the whole run.
    #[arg(long)]
    pub follow: bool,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// Output formats of a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// gperftools profile.heap text (`PREFIX.NNNN.heap`).
    Heap,
    /// Gzipped pprof profile.proto (`PREFIX.NNNN.pb.gz`).
    Pprof,
    /// Interactive SVG flame graph (`PREFIX.NNNN.svg`).
    Flamegraph,
}

/// Snapshot rules: when to take snapshots.
#[derive(Args, Debug, Clone, Default)]
pub struct RuleArgs {
    /// A profile every SIZE bytes allocated (gperftools'
    /// HEAP_PROFILE_ALLOCATION_INTERVAL). Units: B, KB, MB, GB (binary: 1MB = 2^20).
    /// The four interval rules depend on every event before a point, so a
    /// replay with any of them reads the trace from the start.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, allow_hyphen_values = true, help_heading = "Snapshot rules")]
    pub interval: Option<u64>,

    /// A profile every SIZE bytes freed (HEAP_PROFILE_DEALLOCATION_INTERVAL).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, allow_hyphen_values = true, help_heading = "Snapshot rules")]
    pub dealloc_interval: Option<u64>,

    /// A profile when in-use bytes grow SIZE past their highest point at a
    /// previous rule dump (HEAP_PROFILE_INUSE_INTERVAL).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, allow_hyphen_values = true, help_heading = "Snapshot rules")]
    pub inuse_interval: Option<u64>,

    /// A profile every DURATION of wall time (HEAP_PROFILE_TIME_INTERVAL),
    /// e.g. 500ms, 30s, 5m.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration, allow_hyphen_values = true, help_heading = "Snapshot rules")]
    pub time_interval: Option<u64>,

    /// A profile at each marker: a signal (usr1, usr2, SIGUSR2, 12, rtmin+3),
    /// the name given to heapreplay_marker(), or `all`. Repeatable. This rule,
    /// --at and --at-peak start from the trace's index (TRACE.idx): at the
    /// checkpoint before their first point.
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
}

/// Options every replaying command takes.
#[derive(Args, Debug, Clone, Default)]
pub struct CommonArgs {
    /// Threads: 1 decodes and replays in turn; N decode while one more
    /// replays, whichever waits for the other [default: all cores].
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub threads: Option<usize>,

    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,

    /// Where to look for separate debug files (by build id and debuglink),
    /// besides next to each binary. Repeatable [default: /usr/lib/debug].
    #[arg(long, value_name = "DIR")]
    pub debug_dir: Vec<PathBuf>,
}

/// `heapreplay top` options.
#[derive(Args, Debug)]
pub struct TopArgs {
    /// The trace.
    #[arg(value_name = "TRACE")]
    pub trace: PathBuf,

    /// The point to look at: end, peak, start, a time (30s, 2026-11-27T15:04:05Z)
    /// or marker:NAME[#N] (the Nth such marker, from 1).
    #[arg(long, value_name = "POINT", value_parser = parse_point, default_value = "end")]
    pub at: Point,

    /// How many stacks to list in each table.
    #[arg(
        short = 'n',
        long,
        value_name = "N",
        allow_hyphen_values = true,
        default_value_t = 10
    )]
    pub count: usize,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// `heapreplay leaks` options.
#[derive(Args, Debug)]
pub struct LeaksArgs {
    /// The trace.
    #[arg(value_name = "TRACE")]
    pub trace: PathBuf,

    /// How many stacks to list [default: all].
    #[arg(short = 'n', long, value_name = "N", allow_hyphen_values = true)]
    pub count: Option<usize>,

    /// A gate for CI: exit 1 if more than --max bytes were never freed at
    /// exit (or the process did not exit), 0 otherwise.
    #[arg(long)]
    pub check: bool,

    /// Leave out every stack with a frame whose function or file:line
    /// contains PATTERN (repeat for more): memory a program keeps on
    /// purpose until exit.
    #[arg(long, value_name = "PATTERN")]
    pub ignore: Vec<String>,

    /// A window's start (see `top --at`): list what was allocated from
    /// then to --to and still live at --to (leak suspects), then what was
    /// allocated and freed in between (temporaries).
    #[arg(long, value_name = "POINT", value_parser = parse_point, conflicts_with = "check")]
    pub from: Option<Point>,

    /// A window's end [default: end]; alone, the window starts at the start
    /// (of the part a folded trace keeps).
    #[arg(long, value_name = "POINT", value_parser = parse_point, conflicts_with = "check")]
    pub to: Option<Point>,

    /// With --check: bytes that may stay unfreed [default: 0].
    #[arg(long, value_name = "SIZE", value_parser = parse_size, allow_hyphen_values = true, requires = "check")]
    pub max: Option<u64>,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// `heapreplay diff` options.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The trace; with a second trace, compares the first at --from with the
    /// second at --to.
    #[arg(value_name = "TRACE", num_args = 1..=2, required = true)]
    pub traces: Vec<PathBuf>,

    /// The earlier point (see `top --at`) [default: start with one trace, end with two].
    #[arg(long, value_name = "POINT", value_parser = parse_point)]
    pub from: Option<Point>,

    /// The later point [default: end].
    #[arg(long, value_name = "POINT", value_parser = parse_point, default_value = "end")]
    pub to: Point,

    /// `text` to stdout, or `pprof` / `flamegraph` to the file given with -o.
    #[arg(long, value_enum, default_value = "text")]
    pub format: DiffFormat,

    /// Output file for pprof and flamegraph.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// The value a flame graph compares (inuse_space, inuse_objects, alloc_space, alloc_objects).
    #[arg(long, value_name = "KIND", value_parser = parse_sample, default_value = "inuse_space")]
    pub sample: SampleKind,

    /// How many stacks to list as text.
    #[arg(
        short = 'n',
        long,
        value_name = "N",
        allow_hyphen_values = true,
        default_value_t = 20
    )]
    pub count: usize,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// Formats of `heapreplay diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    /// A table of the stacks that changed most.
    Text,
    /// Gzipped pprof with the differences as values (negative where it shrank).
    Pprof,
    /// A differential flame graph: sizes are the later point, red grew, blue shrank.
    Flamegraph,
}

/// `heapreplay timeline` options.
#[derive(Args, Debug)]
pub struct TimelineArgs {
    /// The trace.
    #[arg(value_name = "TRACE")]
    pub trace: PathBuf,

    /// The image to write: .svg or .png [default: the trace name with .timeline.svg].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Draw only from this time on: an offset from the start (30s, 2m) or a
    /// UTC time. Read from the trace's index: the checkpoint before it.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: Option<TimePoint>,

    /// Draw only up to this time (the trace is read no further).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub to: Option<TimePoint>,

    /// Snapshot points to draw on the plot (the same rules as a replay).
    #[command(flatten)]
    pub rules: RuleArgs,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// `heapreplay export` options.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The trace.
    #[arg(value_name = "TRACE")]
    pub trace: PathBuf,

    /// Write Parquet files (events.parquet, stacks.parquet, snapshots.parquet).
    #[arg(long, required = true)]
    pub parquet: bool,

    /// The folder to write them to [default: the trace name with .parquet].
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,

    /// Snapshots to export (the same rules as a replay; default: the end).
    #[command(flatten)]
    pub rules: RuleArgs,

    #[command(flatten)]
    pub common: CommonArgs,
}

fn parse_point(s: &str) -> Result<Point, String> {
    Point::parse(s)
}

fn parse_sample(s: &str) -> Result<SampleKind, String> {
    SampleKind::parse(s)
}

fn parse_size(s: &str) -> Result<u64, String> {
    heapreplay_engine::units::parse_size(s)
}

fn parse_positive_duration(s: &str) -> Result<u64, String> {
    match heapreplay_engine::plan::parse_duration_ns(s)? {
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
