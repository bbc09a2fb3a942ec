//! `heapreplay compact`: writes a trace's dense form beside it.

use crate::cli::CompactArgs;
use crate::pass::EXIT_DAMAGED;
use crate::progress::Progress;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The default output: `t.zst` gives `t.compact.zst`.
fn default_output(trace: &Path) -> PathBuf {
    let mut s = crate::replay::default_prefix(trace).into_os_string();
    s.push(".compact.zst");
    PathBuf::from(s)
}

/// True if `a` and `b` name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Compacts the trace, says what it wrote, and reports damage.
pub fn run(args: &CompactArgs) -> Result<ExitCode, String> {
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| default_output(&args.trace));
    if same_file(&args.trace, &out) {
        return Err(format!(
            "{}: is the trace itself; give another path with -o",
            out.display()
        ));
    }
    let (trace, pipeline) = crate::pass::open(&args.trace, &args.common)?;
    let quiet = args.common.quiet;
    let mut progress = Progress::new(trace.recorded_events(), "compacting", quiet);
    let summary = heapreplay_compact::compact(&trace, &out, pipeline, |_| {
        progress.add(heapreplay_compact::events::EVENTS_PER_RECORD as u64)
    })?;
    progress.finish();
    let shown = trace.path.display();
    let before = std::fs::metadata(&trace.path).map_or(0, |m| m.len());
    if !quiet {
        eprintln!(
            "heapreplay: {}: {} events in {} bytes ({:.2} bytes per event; the trace took {} bytes, {:.2} per event)",
            out.display(),
            summary.events,
            summary.bytes,
            per_event(summary.bytes, summary.events),
            before,
            per_event(before, summary.events),
        );
        if let Some(note) = crate::pass::live_note(&trace) {
            eprintln!("heapreplay: {shown}: {note}; compacted as far as it is complete");
        }
    }
    if summary.problems.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for p in &summary.problems {
        eprintln!(
            "heapreplay: {shown}: damaged at offset {}: {}",
            p.offset, p.what
        );
    }
    eprintln!(
        "heapreplay: {shown}: compacted {} events that were intact; the compacted trace holds only those",
        summary.events
    );
    Ok(ExitCode::from(EXIT_DAMAGED))
}

/// Bytes per event (0 without events).
fn per_event(bytes: u64, events: u64) -> f64 {
    bytes as f64 / events.max(1) as f64
}
