//! Replaying a trace into one file per snapshot: profile.heap, pprof or a
//! flame graph.

use crate::cli::{Format, ReplayArgs};
use crate::pass;
use crate::progress::Progress;
use heapreplay_analysis::clock::SeqClock;
use heapreplay_analysis::maps::maps_at;
use heapreplay_analysis::profile::{SampleKind, Snapshot, Stacks};
use heapreplay_analysis::replay::Heap;
use heapreplay_analysis::snapshots::Trigger;
use heapreplay_analysis::trace::io_text;
use heapreplay_analysis::{flamegraph, heap_profile, pprof, Trace};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The default output prefix: the trace path without `.zst`.
pub fn default_prefix(trace: &Path) -> PathBuf {
    let s = trace.to_string_lossy();
    PathBuf::from(s.strip_suffix(".zst").unwrap_or(&s).to_string())
}

/// Writes one file per snapshot, numbered in time order.
struct Writer<'a> {
    trace: &'a Trace,
    format: Format,
    sample: SampleKind,
    text: heap_profile::StackText<'a>,
    stacks: Option<Stacks<'a>>,
    common: &'a crate::cli::CommonArgs,
    clock: SeqClock<'a>,
    prefix: PathBuf,
    count: usize,
    quiet: bool,
}

impl Writer<'_> {
    fn extension(&self) -> &'static str {
        match self.format {
            Format::Heap => "heap",
            Format::Pprof => "pb.gz",
            Format::Flamegraph => "svg",
        }
    }

    fn write(
        &mut self,
        heap: &Heap,
        trigger: &Trigger,
        seq: u64,
        progress: &Progress,
    ) -> Result<(), String> {
        self.count += 1;
        let ext = self.extension();
        let name = match trigger.tag() {
            None => format!("{}.{:04}.{ext}", self.prefix.display(), self.count),
            Some(tag) => format!("{}.{:04}.{tag}.{ext}", self.prefix.display(), self.count),
        };
        if !self.quiet {
            progress.say(&format!(
                "Dumping heap profile to {name} ({})",
                trigger.reason()
            ));
        }
        let file = std::fs::File::create(&name)
            .map_err(|e| format!("{name}: cannot write: {}", io_text(&e)))?;
        let mut out = BufWriter::new(file);
        let written = match self.format {
            Format::Heap => {
                let mut stacks: Vec<_> = heap.stacks().collect();
                let maps = maps_at(&self.trace.maps, seq);
                heap_profile::write(&mut out, &heap.totals(), &mut stacks, &mut self.text, &maps)
            }
            Format::Pprof | Format::Flamegraph => {
                let ns = self.clock.ns_at(seq);
                let snapshot = Snapshot::take(heap, trigger.reason(), ns);
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
}

/// Replays the trace with the chosen rules.
pub fn run(args: &ReplayArgs) -> Result<ExitCode, String> {
    let path = args.trace.as_deref().ok_or("no trace given")?;
    let (trace, pipeline) = pass::open(path, &args.common)?;
    let plan = pass::plan(&args.rules);
    let quiet = args.common.quiet;
    let mut writer = Writer {
        trace: &trace,
        format: args.format,
        sample: args.sample,
        text: heap_profile::StackText::new(&trace.stacks),
        stacks: None,
        common: &args.common,
        clock: SeqClock::new(&trace.clock),
        prefix: args.output.clone().unwrap_or_else(|| default_prefix(path)),
        count: 0,
        quiet,
    };
    let (outcome, code) = pass::run(
        &trace,
        &plan,
        pipeline,
        quiet,
        |heap, trigger, seq, progress| writer.write(heap, trigger, seq, progress),
        |_, _| {},
    )?;
    if outcome.snapshots == 0 && !quiet {
        eprintln!(
            "heapreplay: {}: no snapshot point matched; nothing written",
            path.display()
        );
    }
    Ok(code)
}
