//! Compaction: rewriting a trace into its dense form, which still reads as
//! a trace and replays to the same bytes. Of a trace still being written,
//! what is complete is compacted; the compacted trace ends there.
//!
//! The recorder writes each thread's events in small records, so that a
//! kill loses at most a second and every record decodes alone. At rest
//! those records compress poorly (each one alone) and must be merged again
//! on every replay. A compacted trace holds every thread's events in
//! sequence order in large Compacted records (FORMAT.md, "9 Compacted"),
//! compressed with a window as large as the record, where the repetition
//! of a long run is found. The rest of the trace (metadata, maps,
//! progress, end) is copied as it is; the clock, markers and stacks are
//! written again as the replay reads them (the stacks numbered as it
//! numbers them); the events' threads are counted in a Threads record.
//!
//! One module per job: [`events`] cuts and compresses the events records,
//! [`records`] copies and writes the others. Beside them, [`fold`] keeps a
//! trace being written under a size, by folding its oldest part into the
//! heap's state there.

pub mod events;
pub mod fold;
pub mod records;

use heapreplay_engine::trace::Problem;
use heapreplay_engine::Trace;
use std::io::Write;
use std::path::Path;

/// What a compaction wrote.
#[derive(Debug, Default)]
pub struct Summary {
    /// Events written.
    pub events: u64,
    /// Compacted records written.
    pub records: u64,
    /// Bytes of the compacted trace.
    pub bytes: u64,
    /// Damage found in the trace read: what it held there is not in the
    /// compacted trace.
    pub problems: Vec<Problem>,
}

/// Writes the compacted form of `trace` to `out` (through a temporary
/// file beside it, renamed into place once complete). With `pipeline`,
/// the pass decodes on the current rayon pool while another thread
/// compresses. `progress` is called with the seq of the last event written.
pub fn compact(
    trace: &Trace,
    out: &Path,
    pipeline: bool,
    mut progress: impl FnMut(u64),
) -> Result<Summary, String> {
    if trace.fold().is_some() {
        return Err(format!(
            "{}: is folded (its run was kept under a size): folded traces are not compacted",
            trace.path.display()
        ));
    }
    remove_abandoned(out);
    let partial = partial_path(out);
    let file = std::fs::File::create(&partial)
        .map_err(|e| format!("{}: cannot write: {}", out.display(), io_text(&e)))?;
    let written = write(trace, file, pipeline, &mut progress).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        format!("{}: cannot write: {}", out.display(), io_text(&e))
    })?;
    std::fs::rename(&partial, out).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        format!("{}: cannot write: {}", out.display(), io_text(&e))
    })?;
    Ok(written)
}

/// The file a compaction writes before it is complete.
fn partial_path(out: &Path) -> std::path::PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".partial-{}", std::process::id()));
    out.with_file_name(name)
}

/// Removes what compactions to `out` that were killed left behind: the
/// partial files of processes no longer running.
fn remove_abandoned(out: &Path) {
    let (Some(dir), Some(name)) = (out.parent(), out.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.partial-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(pid) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        let running = pid
            .parse::<u32>()
            .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !running {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Writes the compacted trace to `file`.
fn write(
    trace: &Trace,
    file: std::fs::File,
    pipeline: bool,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<Summary> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    // Metadata first, then the stacks the events name, then the events.
    let (head, tail) = records::split(trace);
    for rec in &head {
        out.write_all(&records::copy(rec))?;
    }
    for rec in records::clock_and_markers(trace)?
        .into_iter()
        .chain(records::stacks(trace)?)
    {
        out.write_all(&rec)?;
    }
    let mut summary = Summary::default();
    let pass = std::thread::scope(|scope| -> std::io::Result<_> {
        let (chunks, empty, writer) = events::Writer::start(scope, &mut out);
        let mut chunk = events::Chunk::default();
        let mut failed = false;
        let pass = trace.for_each_event_while(pipeline, |e| {
            chunk.push(e);
            if chunk.is_full() {
                progress(e.seq);
                let next = empty.try_recv().unwrap_or_default();
                if chunks.send(std::mem::replace(&mut chunk, next)).is_err() {
                    failed = true;
                    return Ok::<bool, ()>(false);
                }
            }
            Ok(true)
        });
        let pass = pass.unwrap_or_default();
        if !chunk.is_empty() && !failed {
            let _ = chunks.send(chunk);
        }
        drop(chunks);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the compressing thread failed")))?;
        summary.records = written.records;
        summary.events = written.events;
        Ok(pass)
    })?;
    out.write_all(&records::threads(&trace.threads())?)?;
    for rec in &tail {
        out.write_all(&records::copy(rec))?;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    summary.bytes = file.metadata()?.len();
    summary.problems = trace.damage(&pass).into_iter().cloned().collect();
    Ok(summary)
}

/// An I/O error's text without the "(os error N)" suffix.
fn io_text(e: &std::io::Error) -> String {
    heapreplay_engine::trace::io_text(e)
}
