//! `heapreplay info`: what is in a trace.

use crate::cli::InfoArgs;
use heapreplay_engine::clock::{seconds, SeqClock};
use heapreplay_engine::index::Index;
use heapreplay_engine::mapped::levels;
use heapreplay_engine::plan::marker_label;
use heapreplay_engine::snapshots::PeakFinder;
use heapreplay_engine::Trace;
use heapreplay_format::{EventKind, Marker};
use std::collections::BTreeMap;
use std::process::ExitCode;

/// `SIGUSR2 x3, 'phase 2' x1`, or `none`.
pub fn marker_summary(markers: &[Marker]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for m in markers {
        *counts.entry(marker_label(m)).or_default() += 1;
    }
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(label, n)| format!("{label} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// Resident memory this far beyond the heap's peak, and at least twice it,
/// was mostly not allocated through malloc: say so, and what to do.
const OUTSIDE_MALLOC: u64 = 48 << 20;

/// The note on the `resident:` line when most of the process's memory did
/// not come from malloc; empty otherwise.
fn outside_malloc(heap_peak: u64, resident_peak: u64) -> String {
    if resident_peak < heap_peak.saturating_mul(2) || resident_peak - heap_peak < OUTSIDE_MALLOC {
        return String::new();
    }
    format!(
        "; the heap's peak is {}% of it: most of the process's memory did not come from malloc (an allocator with its own pools: for Python, record with PYTHONMALLOC=malloc; README, \"Programs with their own pools\")",
        heap_peak * 100 / resident_peak
    )
}

/// The `mapped:` line: what the program mapped itself, at most and at the
/// end, when mapping calls were recorded (`HEAP_PROFILE_MMAP`).
/// The `other:` line: about how much of the resident peak is neither the
/// heap's peak nor (`mapped_peak`, when recorded) the most mapped at once.
/// The peaks may fall at different times: an estimate.
fn other_memory(resident: u64, heap_peak: u64, mapped_peak: Option<u64>) -> String {
    const WHY: &str = "README, \"Heap in use and resident memory\"";
    let accounted = heap_peak.saturating_add(mapped_peak.unwrap_or(0));
    let Some(other) = resident.checked_sub(accounted).filter(|&o| o > 0) else {
        return format!(
            "none: the peaks above add up to more (pages never written are not resident; {WHY})"
        );
    };
    let what = match mapped_peak {
        Some(_) => "neither the heap's peak nor the most mapped by the program: about that much is the allocator's overhead and the freed memory it keeps, thread stacks, code and data",
        None => "not the heap's peak: about that much is the allocator's overhead and the freed memory it keeps, memory mapped without malloc (HEAP_PROFILE_MMAP=true records the program's own), thread stacks, code and data",
    };
    format!("{} of it is {what} ({WHY})", mib(other))
}

/// With the most mapped at once.
fn mapped_summary(trace: &Trace) -> Option<(String, u64)> {
    let asked = trace.settings.mmap_profile();
    if trace.mappings.is_empty() {
        let line = "no mapping calls recorded (HEAP_PROFILE_MMAP was set)";
        return asked.then(|| (line.into(), 0));
    }
    let (mut most, mut end) = (0, 0);
    for (_, bytes) in levels(&trace.mappings) {
        (most, end) = (most.max(bytes), bytes);
    }
    let line = format!(
        "{} at most, {} at the end, in {} (mmap, munmap, mremap, sbrk, brk; apart from the heap)",
        mib(most),
        mib(end),
        heapreplay_outputs::report::counted(trace.mappings.len() as u64, "call")
    );
    Some((line, most))
}

/// Prints the description.
pub fn run(args: &InfoArgs) -> Result<ExitCode, String> {
    let trace = crate::pass::open_trace(&args.trace)?;
    let info = &trace.info;
    let mut seek = crate::seek::Seek::new(&trace, false);
    let start = heapreplay_engine::index::Start::beginning(&trace);
    let heap = std::cell::RefCell::new(start.heap.clone());
    // A folded trace's counts since the start of the run.
    let before = *start.heap.totals();
    let (mut allocs, mut frees, mut bytes) = (before.allocs, before.frees, before.alloc_bytes);
    let mut peak = PeakFinder::starting_at(before.inuse_bytes());
    let heap_now = || heap.borrow().clone();
    let pass = seek.pass(crate::threads::setup(None)?, start, &heap_now, None, |e| {
        heap.borrow_mut().apply(e);
        match e.kind {
            EventKind::Alloc => {
                allocs += 1;
                bytes += e.size;
            }
            EventKind::Free => frees += 1,
            EventKind::Retire => {}
        }
        peak.push(e);
        Ok::<bool, String>(true)
    })?;
    let end_ns = trace
        .end
        .as_ref()
        .map(|e| e.end_ns)
        .unwrap_or_else(|| trace.clock.iter().map(|c| c.ns).max().unwrap_or(0));
    let mut clock = SeqClock::new(&trace.clock);
    println!("trace:      {}", args.trace.display());
    println!(
        "process:    pid {} (parent {}), {}",
        info.pid, info.ppid, info.exe
    );
    println!("command:    {}", info.cmdline);
    println!(
        "recorded:   {} for {} (recorder {})",
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_nanos(info.start_unix_ns)
        ),
        seconds(end_ns),
        info.recorder_version
    );
    if let Some(when) = crate::attached::when(&trace) {
        println!(
            "attached:   at {when}: allocations before it are not in the trace; {} of such blocks counted apart, never subtracted",
            heapreplay_outputs::report::counted(heap.borrow().unseen_frees(), "free")
        );
    }
    println!("threads:    {}", trace.threads().len());
    println!(
        "events:     {} ({allocs} allocations, {frees} frees), {} allocated",
        pass.events,
        mib(bytes)
    );
    let (compacted, records) = trace.compacted();
    if records > 0 {
        println!(
            "compacted:  {compacted} events in {}",
            heapreplay_outputs::report::counted(records as u64, "compacted record")
        );
    }
    if let Some(fold) = trace.fold() {
        println!("{}", kept_summary(&trace, fold, clock.ns_at(fold.seq)));
    }
    if trace.unfinished_folds() > 0 {
        println!(
            "folds:      {} ignored (the folding process stopped while writing)",
            trace.unfinished_folds()
        );
    }
    println!("stacks:     {} distinct", trace.stacks.len());
    // A folded trace's peak may be before the part it keeps (its time is
    // in the fold: the clock samples that placed it are not).
    let kept = peak
        .peak()
        .map(|(seq, bytes)| (seq, bytes, clock.ns_at(seq)));
    let highest = heapreplay_engine::trace::Fold::run_peak(trace.fold(), kept);
    match highest {
        Some((_, peak, ns)) => println!("peak:       {} in use at {}", mib(peak), seconds(ns)),
        None => println!("peak:       no allocations"),
    }
    let mapped = mapped_summary(&trace);
    if let Some((line, _)) = &mapped {
        println!("mapped:     {line}");
    }
    if let Some(resident) = trace.resident_peak {
        let heap = highest.map_or(0, |(_, bytes, _)| bytes);
        println!(
            "resident:   {} at most (sampled once a second){}",
            mib(resident),
            outside_malloc(heap, resident)
        );
        let mapped_peak = mapped.as_ref().map(|(_, most)| *most);
        println!("other:      {}", other_memory(resident, heap, mapped_peak));
    }
    println!("markers:    {}", marker_summary(&trace.markers));
    for m in &trace.markers {
        println!(
            "  {:>10}  {}  (thread {})",
            seconds(m.ns),
            marker_label(m),
            m.tid
        );
    }
    match &trace.end {
        Some(end) => {
            match trace.detached {
                true => println!("end:        clean, at a detach (heapreplay detach): the process went on running"),
                false => println!("end:        clean (the process exited normally)"),
            }
            if end.markers_dropped > 0 {
                println!("            {} markers were dropped (too many at once)", end.markers_dropped);
            }
        }
        None => match crate::pass::live_note(&trace) {
            Some(note) => println!("end:        {note}"),
            None => println!("end:        cut short (no end record: the process was killed or crashed); complete up to its last flush"),
        },
    }
    let problems = trace.damage(&pass);
    println!(
        "index:      {}",
        index_summary(&trace, seek.index(), !problems.is_empty())
    );
    if problems.is_empty() {
        println!("damage:     none");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "damage:     {} damaged; the rest is usable",
        heapreplay_outputs::report::counted(problems.len() as u64, "range")
    );
    for p in &problems {
        println!("  at offset {}: {}", p.offset, p.what);
    }
    Ok(ExitCode::from(3))
}

/// Which part of a folded trace's run is kept, in one line.
fn kept_summary(trace: &Trace, fold: &heapreplay_engine::trace::Fold, ns: u64) -> String {
    use std::os::unix::fs::MetadataExt;
    let (len, disk) =
        std::fs::metadata(&trace.path).map_or((0, 0), |m| (m.len(), m.blocks() * 512));
    format!(
        "kept:       the run from {} on (event {}); the {} events before are folded into the heap's state there; {} on disk ({} long)",
        seconds(ns),
        fold.seq,
        fold.info.events,
        mib(disk),
        mib(len)
    )
}

/// What the trace's index holds, in one line.
fn index_summary(trace: &Trace, index: Option<&Index>, damaged: bool) -> String {
    let Some(index) = index else {
        return if !crate::seek::enabled() {
            "none (HEAPREPLAY_INDEX=off)".into()
        } else if damaged {
            "none (a damaged trace is replayed from the start)".into()
        } else {
            "none (the trace is short enough to replay whole)".into()
        };
    };
    let trace_len = std::fs::metadata(&trace.path).map_or(0, |m| m.len()).max(1);
    let n = index.checkpoints().len();
    format!(
        "{n} checkpoint{}, {} ({:.1}% of the trace), {}",
        if n == 1 { "" } else { "s" },
        mib(index.size()),
        index.size() as f64 * 100.0 / trace_len as f64,
        index.path().display()
    )
}
