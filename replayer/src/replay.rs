//! Replaying a trace into profile.heap files.

use crate::cli::ReplayArgs;
use heapreplay_analysis::maps::maps_at;
use heapreplay_analysis::replay::{Applied, Heap};
use heapreplay_analysis::rules::{DumpRules, Reason, Thresholds};
use heapreplay_analysis::{heap_profile, Trace};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit status when profiles were written but the trace was damaged.
const EXIT_DAMAGED: u8 = 3;

/// The default output prefix: the trace path without `.zst`.
fn default_prefix(trace: &Path) -> PathBuf {
    let s = trace.to_string_lossy();
    PathBuf::from(s.strip_suffix(".zst").unwrap_or(&s).to_string())
}

struct Dumper<'a> {
    trace: &'a Trace,
    prefix: PathBuf,
    count: usize,
    quiet: bool,
}

impl Dumper<'_> {
    fn dump(&mut self, heap: &Heap, seq: u64, reason: Reason) -> Result<(), String> {
        self.count += 1;
        let name = format!("{}.{:04}.heap", self.prefix.display(), self.count);
        if !self.quiet {
            eprintln!("Dumping heap profile to {name} ({})", reason.text());
        }
        let file =
            std::fs::File::create(&name).map_err(|e| format!("{name}: cannot write: {e}"))?;
        let mut out = BufWriter::new(file);
        let mut stacks: Vec<_> = heap.stacks().collect();
        let maps = maps_at(&self.trace.maps, seq);
        heap_profile::write(
            &mut out,
            &heap.totals(),
            &mut stacks,
            &self.trace.stacks,
            &maps,
        )
        .and_then(|_| out.flush())
        .map_err(|e| format!("{name}: cannot write: {e}"))
    }
}

/// Replays the trace with the chosen rules.
pub fn run(args: &ReplayArgs) -> Result<ExitCode, String> {
    let path = args.trace.as_deref().ok_or("no trace given")?;
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .map_err(|e| format!("cannot start {n} threads: {e}"))?;
    }
    let mut trace = Trace::open(path).map_err(|e| e.to_string())?;
    let events = trace.ordered_events();
    let thresholds = Thresholds {
        alloc_interval: args.interval.unwrap_or(0),
        ..Thresholds::default()
    };
    let mut rules = DumpRules::new(thresholds);
    let mut heap = Heap::new();
    let prefix = args.output.clone().unwrap_or_else(|| default_prefix(path));
    let mut dumper = Dumper {
        trace: &trace,
        prefix,
        count: 0,
        quiet: args.quiet,
    };
    for e in &events {
        if heap.apply(e) == Applied::Alloc {
            if let Some(reason) = rules.after_alloc(&heap.totals(), 0) {
                dumper.dump(&heap, e.seq, reason)?;
            }
        }
    }
    let last_seq = events.last().map_or(0, |e| e.seq);
    let inuse_bytes = heap.totals().inuse_bytes();
    dumper.dump(&heap, last_seq, Reason::Exit { inuse_bytes })?;

    let shown = path.display();
    if trace.end.is_none() && !args.quiet {
        eprintln!(
            "heapreplay: {shown}: the trace has no end record (the process was killed or is still running); replayed up to its last flush"
        );
    }
    if trace.problems.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for p in &trace.problems {
        eprintln!(
            "heapreplay: {shown}: damaged at offset {}: {}",
            p.offset, p.what
        );
    }
    eprintln!(
        "heapreplay: {shown}: replayed {} events that were intact; profiles above are partial",
        events.len()
    );
    Ok(ExitCode::from(EXIT_DAMAGED))
}
