//! Replaying a trace into one file per snapshot: profile.heap, pprof or a
//! flame graph.
//!
//! The replaying thread only copies each snapshot's counters and hands them
//! to a writing thread, which sorts, formats and writes the file; so many
//! snapshots cost little more than one pass over the trace.

use crate::cli::{CommonArgs, Format, ReplayArgs};
use crate::pass;
use heapreplay_engine::clock::SeqClock;
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
}

impl FileWriter<'_> {
    fn write(&mut self, job: Job) -> Result<(), String> {
        let Job {
            name,
            seq,
            mut snapshot,
        } = job;
        let file = std::fs::File::create(&name)
            .map_err(|e| format!("{name}: cannot write: {}", io_text(&e)))?;
        let mut out = BufWriter::new(file);
        let written = match self.format {
            Format::Heap => {
                let maps = self.maps.at(self.trace.maps_for(seq), seq);
                heap_profile::write(
                    &mut out,
                    &snapshot.totals,
                    &mut snapshot.stacks,
                    &mut self.text,
                    maps,
                )
            }
            Format::Pprof | Format::Flamegraph => {
                let (trace, common) = (self.trace, self.common);
                let stacks = self
                    .stacks
                    .get_or_insert_with(|| pass::stacks(trace, common));
                if self.format == Format::Pprof {
                    pprof::write_snapshot(&mut out, &snapshot, stacks, trace.info.start_unix_ns)
                } else {
                    let title = format!("{} — {}", trace.info.cmdline, name);
                    flamegraph::write_snapshot(&mut out, &snapshot, stacks, self.sample, &title)
                }
            }
        };
        written
            .and_then(|_| out.flush())
            .map_err(|e| format!("{name}: cannot write: {}", io_text(&e)))
    }

    /// Writes every job until the queue closes; stops at the first error.
    fn run(mut self, jobs: Receiver<Job>) -> Result<(), String> {
        for job in jobs {
            self.write(job)?;
        }
        Ok(())
    }
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
    let path = args.trace.as_deref().ok_or("no trace given")?;
    let (trace, pipeline) = pass::open(path, &args.common)?;
    let plan = pass::plan(&args.rules);
    let quiet = args.common.quiet;
    let prefix = args.output.clone().unwrap_or_else(|| default_prefix(path));
    let ext = extension(args.format);
    let writer = FileWriter {
        trace: &trace,
        format: args.format,
        sample: args.sample,
        common: &args.common,
        text: heap_profile::StackText::new(&trace.stacks),
        stacks: None,
        maps: MapsCache::default(),
    };
    let (jobs, queue) = sync_channel::<Job>(QUEUED);
    let (replayed, written) = std::thread::scope(|scope| {
        let writing = scope.spawn(move || writer.run(queue));
        let mut clock = SeqClock::new(&trace.clock);
        let mut count = 0usize;
        let replayed = pass::run(
            &trace,
            &plan,
            pipeline,
            quiet,
            |heap, trigger, seq, progress| {
                count += 1;
                let name = match trigger.tag() {
                    None => format!("{}.{count:04}.{ext}", prefix.display()),
                    Some(tag) => format!("{}.{count:04}.{tag}.{ext}", prefix.display()),
                };
                if !quiet {
                    progress.say(&format!(
                        "Dumping heap profile to {name} ({})",
                        trigger.reason()
                    ));
                }
                let snapshot = Snapshot::take(heap, trigger.reason(), clock.ns_at(seq));
                // A closed queue means the writer stopped on an error: it
                // says which once joined.
                jobs.send(Job {
                    name,
                    seq,
                    snapshot,
                })
                .map_err(|_| String::new())
            },
            |_, _| {},
        );
        drop(jobs);
        let written = writing
            .join()
            .unwrap_or_else(|_| Err("the writing thread failed".into()));
        (replayed, written)
    });
    written?;
    let (outcome, code) = replayed?;
    if outcome.snapshots == 0 && !quiet {
        eprintln!(
            "heapreplay: {}: no snapshot point matched; nothing written",
            path.display()
        );
    }
    Ok(code)
}
