//! Replaying a trace into one file per snapshot: profile.heap, pprof or a
//! flame graph.
//!
//! The replaying thread only copies each snapshot's counters and hands them
//! to a writing thread, which sorts, formats and writes the file; so many
//! snapshots cost little more than one pass over the trace.

use crate::cli::{CommonArgs, Format, ReplayArgs};
use crate::pass;
use heapreplay_engine::clock::SeqClock;
use heapreplay_engine::mapped::MappedMemory;
use heapreplay_engine::maps::MapsCache;
use heapreplay_engine::trace::io_text;
use heapreplay_engine::Trace;
use heapreplay_outputs::profile::{SampleKind, Snapshot, SymbolizedStacks};
use heapreplay_outputs::{flamegraph, heap_profile, pprof};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{sync_channel, Receiver};

/// Snapshots waiting to be written, at most: bounds the memory they hold.
const QUEUED: usize = 8;

/// The default output prefix: the trace path without `.zst`.
pub fn default_prefix(trace: &Path) -> PathBuf {
    let s = trace.to_string_lossy();
    PathBuf::from(s.strip_suffix(".zst").unwrap_or(&s).to_string())
}

/// One file to write.
struct Job {
    name: String,
    /// Sequence number of the snapshot (which maps apply).
    seq: u64,
    snapshot: Snapshot,
}

/// Writes the files, on its own thread.
struct FileWriter<'a> {
    trace: &'a Trace,
    format: Format,
    sample: SampleKind,
    common: &'a CommonArgs,
    text: heap_profile::StackText<'a>,
    stacks: Option<SymbolizedStacks<'a>>,
    maps: MapsCache,
    /// Follow mode: a file already there with the same bytes is left
    /// alone (a restart writes no snapshot twice), and each file written is
    /// announced here, as there is no progress bar to say it.
    follow: Option<bool>,
}

impl FileWriter<'_> {
    fn write(&mut self, job: Job) -> Result<(), String> {
        let Some(quiet) = self.follow else {
            let name = job.name.clone();
            let failed = |e: std::io::Error| format!("{name}: cannot write: {}", io_text(&e));
            let mut out = BufWriter::new(std::fs::File::create(&name).map_err(failed)?);
            return self
                .format(&mut out, job)
                .and_then(|_| out.flush())
                .map_err(failed);
        };
        let (name, reason) = (job.name.clone(), job.snapshot.reason.clone());
        let failed = |e: std::io::Error| format!("{name}: cannot write: {}", io_text(&e));
        let mut bytes = Vec::new();
        self.format(&mut bytes, job).map_err(failed)?;
        if std::fs::read(&name).is_ok_and(|old| old == bytes) {
            return Ok(());
        }
        std::fs::write(&name, &bytes).map_err(failed)?;
        if !quiet {
            eprintln!("Dumping heap profile to {name} ({reason})");
        }
        Ok(())
    }

    /// Formats one snapshot into `out`.
    fn format(&mut self, out: &mut impl Write, job: Job) -> std::io::Result<()> {
        let Job {
            name,
            seq,
            mut snapshot,
        } = job;
        match self.format {
            Format::Heap => {
                let maps = self.maps.at(self.trace.maps_for(seq), seq);
                let buckets = heap_profile::Buckets {
                    totals: &snapshot.totals,
                    mapped: &mut snapshot.mapped,
                    stacks: &mut snapshot.stacks,
                };
                heap_profile::write(out, buckets, &mut self.text, maps)
            }
            Format::Pprof | Format::Flamegraph => {
                let (trace, common) = (self.trace, self.common);
                let stacks = self
                    .stacks
                    .get_or_insert_with(|| pass::stacks(trace, common));
                let since = crate::attached::since(trace);
                if self.format == Format::Pprof {
                    let start = trace.info.start_unix_ns;
                    pprof::write_snapshot(out, &snapshot, stacks, start, since.as_deref())
                } else {
                    let mut title = format!("{} — {}", trace.info.cmdline, name);
                    if let Some(since) = since {
                        title += &format!(" ({since})");
                    }
                    flamegraph::write_snapshot(out, &snapshot, stacks, self.sample, &title)
                }
            }
        }
    }

    /// Writes every job until the queue closes; stops at the first error.
    fn run(mut self, jobs: Receiver<Job>) -> Result<(), String> {
        for job in jobs {
            self.write(job)?;
        }
        Ok(())
    }
}

/// Fails as writing `name` would, before any snapshot is announced: a
/// missing folder, no permission, a read-only file. Leaves no file behind.
fn check_writable(name: &str) -> Result<(), String> {
    let existed = std::path::Path::new(name).exists();
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(name)
        .map_err(|e| format!("{name}: cannot write: {}", io_text(&e)))?;
    if !existed {
        let _ = std::fs::remove_file(name);
    }
    Ok(())
}

fn extension(format: Format) -> &'static str {
    match format {
        Format::Heap => "heap",
        Format::Pprof => "pb.gz",
        Format::Flamegraph => "svg",
    }
}

/// Replays the trace with the chosen rules.
pub fn run(args: &ReplayArgs) -> Result<ExitCode, String> {
    if args.follow {
        return crate::follow::run(args);
    }
    let path = args.trace.as_deref().ok_or("no trace given")?;
    let (trace, pipeline) = pass::open(path, &args.common)?;
    let rules = Rules::of(args, &trace.settings);
    if let (Some(since), false) = (crate::attached::since(&trace), args.common.quiet) {
        eprintln!(
            "heapreplay: {}: the profiles cover allocations {since} only; frees of older blocks are not subtracted",
            path.display()
        );
    }
    let Written { outcome, code, .. } = write(&trace, &rules, args, pipeline, Span::Whole)?;
    let outcome = outcome.unwrap_or_default();
    if outcome.snapshots == 0 && !args.common.quiet {
        eprintln!(
            "heapreplay: {}: no snapshot point matched; nothing written",
            path.display()
        );
    }
    Ok(code)
}

/// How much of the trace a [`write`] replays.
pub enum Span<'f> {
    /// All of it, with the end-of-trace snapshot and the report.
    Whole,
    /// Follow mode, before the trace is finished: the snapshot points from
    /// where `followed` stands up to the event at `until`.
    Until {
        until: u64,
        followed: &'f mut pass::Followed,
    },
    /// Follow mode, once the trace is finished: from where `followed`
    /// stands to the end, with the end-of-trace snapshot and the report.
    Rest { followed: &'f mut pass::Followed },
}

/// What a [`write`] did.
pub struct Written {
    /// Snapshot points the plan made, written or skipped.
    pub count: usize,
    /// What the pass found (a whole pass only).
    pub outcome: Option<heapreplay_engine::snapshots::Outcome>,
    /// The exit status.
    pub code: ExitCode,
}

/// The snapshot plan of a replay, and how its files are named.
pub struct Rules {
    /// When to take snapshots.
    pub plan: heapreplay_engine::plan::Plan,
    /// Files and reasons as gperftools names them (`PREFIX.0001.heap`, a
    /// signal's dump logged as `signal`), under this default prefix.
    pub gperftools: Option<PathBuf>,
}

impl Rules {
    /// The rules `args` asks for; with none, those the trace was recorded
    /// under (gperftools' variables), if any.
    pub fn of(args: &ReplayArgs, settings: &heapreplay_format::settings::Settings) -> Self {
        match crate::gperftools::from_settings(settings, &args.rules) {
            Some(g) => Rules {
                plan: g.plan,
                gperftools: Some(g.prefix),
            },
            None => Rules {
                plan: pass::plan(&args.rules),
                gperftools: None,
            },
        }
    }
}

/// Replays `span` of `trace` under `rules`, one file per snapshot.
pub fn write(
    trace: &Trace,
    rules: &Rules,
    args: &ReplayArgs,
    pipeline: bool,
    span: Span<'_>,
) -> Result<Written, String> {
    let path = args.trace.as_deref().ok_or("no trace given")?;
    let quiet = args.common.quiet;
    let plan = &rules.plan;
    let prefix = match (&args.output, &rules.gperftools) {
        (Some(prefix), _) | (None, Some(prefix)) => prefix.clone(),
        (None, None) => default_prefix(path),
    };
    let ext = extension(args.format);
    // Snapshots are numbered from the first: a resumed pass goes on from
    // where it stands.
    let (mut count, follow) = match &span {
        Span::Whole => (0, None),
        Span::Until { followed, .. } | Span::Rest { followed } => {
            (followed.snapshots(), Some(quiet))
        }
    };
    check_writable(&format!("{}.{:04}.{ext}", prefix.display(), count + 1))?;
    let writer = FileWriter {
        trace,
        format: args.format,
        sample: args.sample,
        common: &args.common,
        text: heap_profile::StackText::new(&trace.stacks),
        stacks: None,
        maps: MapsCache::default(),
        follow,
    };
    let (jobs, queue) = sync_channel::<Job>(QUEUED);
    let (replayed, written) = std::thread::scope(|scope| {
        let writing = scope.spawn(move || writer.run(queue));
        let mut clock = SeqClock::new(&trace.clock);
        let mut mapped = MappedMemory::new(&trace.mappings);
        let mut job = |heap: &heapreplay_engine::heap::Heap,
                       trigger: &heapreplay_engine::snapshots::Trigger,
                       seq: u64|
         -> Result<String, String> {
            count += 1;
            let (tag, reason) = match rules.gperftools {
                Some(_) => (None, crate::gperftools::reason(trigger)),
                None => (trigger.tag(), trigger.reason()),
            };
            let name = match tag {
                None => format!("{}.{count:04}.{ext}", prefix.display()),
                Some(tag) => format!("{}.{count:04}.{tag}.{ext}", prefix.display()),
            };
            let said = format!("Dumping heap profile to {name} ({reason})");
            let snapshot = Snapshot::take(heap, reason, clock.ns_at(seq))
                .with_mapped(mapped.seek_snapshot(trigger, seq));
            // A closed queue means the writer stopped on an error: it
            // says which once joined.
            jobs.send(Job {
                name,
                seq,
                snapshot,
            })
            .map_err(|_| String::new())?;
            Ok(said)
        };
        let replayed = match span {
            Span::Until { until, followed } => pass::run_until(
                trace,
                plan,
                pipeline,
                until,
                followed,
                |heap, trigger, seq| job(heap, trigger, seq).map(|_| ()),
            )
            .map(|()| None),
            Span::Rest { followed } => pass::run_rest(
                trace,
                plan,
                pipeline,
                quiet,
                followed,
                |heap, trigger, seq| job(heap, trigger, seq).map(|_| ()),
            )
            .map(Some),
            Span::Whole => pass::run(
                trace,
                plan,
                pipeline,
                quiet,
                pass::From::BeforeSnapshots,
                |heap, trigger, seq, progress| {
                    let said = job(heap, trigger, seq)?;
                    if !quiet && follow.is_none() {
                        progress.say(&said);
                    }
                    Ok(())
                },
                None,
            )
            .map(Some),
        };
        drop(jobs);
        let written = writing
            .join()
            .unwrap_or_else(|_| Err("the writing thread failed".into()));
        (replayed, written)
    });
    written?;
    let (outcome, code) = match replayed? {
        Some((outcome, code)) => (Some(outcome), code),
        None => (None, ExitCode::SUCCESS),
    };
    Ok(Written {
        count,
        outcome,
        code,
    })
}
