//! Folding: keeping a trace under a size, however long its run.
//!
//! A fold replaces the oldest part of a trace by the heap's state at a
//! seq `W`: the live blocks with their stacks and the per-stack totals
//! since the start (FORMAT.md, "11 Folded" and "Folds and gaps"). It is
//! made beside the recording program, never inside it:
//!
//! 1. choose `W`: the `complete_below` of a Progress record `P`, so that
//!    every event below `W` is in a record before `P`, and none after;
//! 2. replay from the trace's current start (its last fold) up to `W`;
//! 3. append, in one write, a Folded record with that state and copies of
//!    what the replaced part still holds that is needed (stacks, maps,
//!    clock, markers, and the events records that also hold events at or
//!    after `W`), each flagged as a fold's copy;
//! 4. turn the replaced part into gaps, and give their disk blocks back
//!    (`fallocate(FALLOC_FL_PUNCH_HOLE)`): the file keeps its length, but
//!    not its size on disk.
//!
//! Every state in between reads as the same trace: until the Folded record
//! is whole, readers ignore it; once it is, they ignore what it replaced.
//! So the folding process may be killed at any point.

use crate::records::clock_and_markers_of;
use heapreplay_engine::heap::Heap;
use heapreplay_engine::index::state;
use heapreplay_engine::snapshots::PeakFinder;
use heapreplay_engine::trace::Fold;
use heapreplay_engine::Trace;
use heapreplay_format::fold::{gap_prefix, FoldInfo, MAX_GAP_LEN};
use heapreplay_format::header::{set_record_flags, FLAG_FOLD_MEMBER, MAX_PAYLOAD_LEN};
use heapreplay_format::info::{decode_clock, from_bytes};
use heapreplay_format::markers::decode_markers;
use heapreplay_format::reader::{blank_header, encode_record, record_compressor};
use heapreplay_format::{ProgressInfo, RawRecord, RecordKind, RECORD_PREFIX_LEN};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

/// What a fold did.
#[derive(Debug, Clone, Copy)]
pub struct Folded {
    /// The trace now starts at this seq: every event below it is folded.
    pub seq: u64,
    /// Events in the fold (every event below `seq`).
    pub events: u64,
    /// Bytes of the file replaced.
    pub replaced: u64,
    /// Bytes of the fold written (the Folded record and its copies).
    pub written: u64,
}

/// Folds the trace at `path` so that what follows the fold is at most
/// about `keep` bytes (at least one Progress record's worth); `Ok(None)`
/// if there is nothing to fold yet. `pipeline`: decode on the rayon pool.
pub fn fold(path: &Path, keep: u64, pipeline: bool) -> Result<Option<Folded>, String> {
    let shown = path.display();
    let cannot_write = |e: std::io::Error| format!("{shown}: cannot write: {}", io_text(&e));
    // The file read is the file written: a recording started anew at the
    // same path in between is left alone.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(cannot_write)?;
    let trace = Trace::open(path).map_err(|e| e.to_string())?;
    if identity(&file) != std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino())) {
        return Ok(None);
    }
    if trace.compacted().1 > 0 {
        return Err(format!(
            "{shown}: is compacted: a trace at rest is not folded"
        ));
    }
    if let Some(p) = trace.problems.first() {
        return Err(format!(
            "{shown}: damaged at offset {}: {}; not folded (a fold would hide it)",
            p.offset, p.what
        ));
    }
    // A fold whose writer stopped before its gaps were made: make them.
    if let Some(f) = trace.fold() {
        make_gaps(&file, f.info.replaces_from, f.info.replaces_to)
            .map_err(|e| format!("{shown}: cannot give back its folded part: {e}"))?;
    }
    let records = trace.records();
    let Some(cut) = choose_cut(&trace, &records, keep) else {
        return Ok(None);
    };
    let state = replay_to(&trace, cut.seq, pipeline)?;
    let first = records
        .first()
        .filter(|r| r.offset == 0 && r.header.kind == RecordKind::FileInfo)
        .ok_or_else(|| format!("{shown}: its first record is not its metadata"))?;
    let from = (RECORD_PREFIX_LEN + first.payload.len()) as u64;
    let (members, count) =
        members(&records, &cut).map_err(|e| format!("{shown}: cannot fold: {e}"))?;
    let info = FoldInfo {
        replaces_from: from,
        replaces_to: cut.offset,
        members_len: members.len() as u64,
        events: state.events,
        alloc_bytes: state.alloc_bytes,
        peak: state.peak.map_or((0, 0), |p| (p.0, p.1)),
        peak_ns: state.peak.map_or(0, |p| p.2),
        ns: cut.ns,
    };
    let raw = info.encode(&state.bytes);
    if raw.len() > MAX_PAYLOAD_LEN as usize {
        return Err(format!(
            "{shown}: the heap's state ({} MB) is larger than one record holds ({} MB): not folded",
            raw.len() >> 20,
            MAX_PAYLOAD_LEN >> 20
        ));
    }
    let mut header = blank_header(RecordKind::Folded);
    header.first_seq = cut.seq;
    header.last_seq = state.last_seq;
    header.count = count;
    let mut compressor = record_compressor(3).map_err(|e| e.to_string())?;
    let mut group = encode_record(&mut compressor, header, &raw).map_err(|e| e.to_string())?;
    group.extend_from_slice(&members);
    let written = group.len() as u64;
    // Appended through a descriptor of its own (O_APPEND: at the end, past
    // whatever the recorder wrote meanwhile); gaps through the other.
    let appending = std::fs::OpenOptions::new()
        .append(true)
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(cannot_write)?;
    append(&appending, &group).map_err(cannot_write)?;
    drop(records);
    drop(trace);
    make_gaps(&file, from, cut.offset)
        .map_err(|e| format!("{shown}: cannot give back its folded part: {e}"))?;
    Ok(Some(Folded {
        seq: cut.seq,
        events: state.events,
        replaced: cut.offset - from,
        written,
    }))
}

/// The members of a fold cutting at `cut`, flagged, back to back, and how
/// many: copies of the records before the cut that are still needed (the
/// stacks, maps, threads and end; the events records holding events from
/// the cut's seq on), then one Clock record of the samples from the last
/// one before the cut's seq on, and one Markers record of every marker.
fn members(records: &[RawRecord<'_>], cut: &Cut) -> Result<(Vec<u8>, u32), String> {
    let mut out = Vec::new();
    let mut count = 0u32;
    let mut add = |out: &mut Vec<u8>, record: &[u8]| {
        let start = out.len();
        out.extend_from_slice(record);
        set_record_flags(&mut out[start..], FLAG_FOLD_MEMBER);
        count += 1;
    };
    let mut clock = Vec::new();
    let mut markers = Vec::new();
    for rec in records.iter().filter(|r| r.offset < cut.offset) {
        let raw = || rec.decompress();
        match rec.header.kind {
            RecordKind::FileInfo | RecordKind::Progress | RecordKind::Folded => {}
            RecordKind::Events | RecordKind::Compacted if rec.header.last_seq < cut.seq => {}
            RecordKind::Clock => {
                clock.extend(decode_clock(&raw()?, rec.header.count).map_err(|e| format!("{e:?}"))?)
            }
            RecordKind::Markers => markers
                .extend(decode_markers(&raw()?, rec.header.count).map_err(|e| format!("{e:?}"))?),
            _ => {
                let mut bytes = rec.header.encode().to_vec();
                bytes.extend_from_slice(rec.payload);
                add(&mut out, &bytes);
            }
        }
    }
    // Times are needed from the cut on; the samples before it only place
    // what the fold replaced.
    clock.sort_by_key(|c| (c.seq, c.ns));
    let from = clock
        .partition_point(|c| c.seq <= cut.seq)
        .saturating_sub(1);
    markers.sort_by_key(|m| m.seq);
    for record in clock_and_markers_of(&clock[from..], &markers).map_err(|e| e.to_string())? {
        add(&mut out, &record);
    }
    Ok((out, count))
}

/// Where a fold cuts: the Progress record `offset`, which promises every
/// event below `seq`, at `ns`.
struct Cut {
    offset: u64,
    seq: u64,
    ns: u64,
}

/// The earliest Progress record with at most `keep` bytes after it (the
/// last one if none is), if it promises more than the trace's fold holds
/// and comes after that fold.
fn choose_cut(trace: &Trace, records: &[RawRecord<'_>], keep: u64) -> Option<Cut> {
    let len = trace_len(trace);
    // Past the current fold's group, so that the new one replaces it.
    let (folded_below, group_at) = trace.fold().map_or((0, 0), |f| (f.seq, f.offset));
    let cuts: Vec<Cut> = records
        .iter()
        .filter(|r| r.header.kind == RecordKind::Progress)
        .filter_map(|r| {
            let p: ProgressInfo = from_bytes(&r.decompress().ok()?)?;
            Some(Cut {
                offset: r.offset,
                seq: p.complete_below,
                ns: p.ns,
            })
        })
        .filter(|c| c.seq > folded_below && c.offset > group_at)
        .collect();
    let at = cuts
        .iter()
        .position(|c| len.saturating_sub(c.offset) <= keep)
        .unwrap_or(cuts.len().checked_sub(1)?);
    cuts.into_iter().nth(at)
}

/// The trace's length: one past its last record.
fn trace_len(trace: &Trace) -> u64 {
    std::fs::metadata(&trace.path).map_or(0, |m| m.len())
}

/// The heap's state below a seq.
struct State {
    bytes: Vec<u8>,
    events: u64,
    alloc_bytes: u64,
    last_seq: u64,
    /// Where in-use bytes peaked: seq, bytes, ns.
    peak: Option<(u64, u64, u64)>,
}

/// Replays `trace` from its start (its fold) up to `seq`.
fn replay_to(trace: &Trace, seq: u64, pipeline: bool) -> Result<State, String> {
    let mut carry = trace.beginning();
    let fold = trace.fold();
    let mut heap = fold.map_or_else(Heap::new, |f| f.heap.clone());
    let mut events = fold.map_or(0, |f| f.info.events);
    let mut last_seq = fold.map_or(0, |f| f.last_seq);
    let mut finder = PeakFinder::starting_at(heap.totals().inuse_bytes());
    let pass = trace.for_each_event_in(pipeline, &mut carry, Some(seq), |e| {
        heap.apply(e);
        finder.push(e);
        events += 1;
        last_seq = e.seq;
        Ok::<bool, String>(true)
    })?;
    if let Some(p) = pass.problems.first() {
        return Err(format!(
            "{}: damaged at offset {}: {}; not folded",
            trace.path.display(),
            p.offset,
            p.what
        ));
    }
    let mut clock = heapreplay_engine::clock::SeqClock::new(&trace.clock);
    let window = finder
        .peak()
        .map(|(seq, bytes)| (seq, bytes, clock.ns_at(seq)));
    Ok(State {
        bytes: state::encode_raw(carry.live(), &heap),
        events,
        alloc_bytes: carry.alloc_bytes(),
        last_seq,
        peak: Fold::run_peak(fold, window),
    })
}

/// Appends `bytes` in one write, so that it lands whole between the
/// recorder's records (a write cut short is a fold readers ignore), and
/// makes it durable before anything it replaces is touched.
fn append(file: &std::fs::File, bytes: &[u8]) -> std::io::Result<()> {
    let n = (&*file).write(bytes)?;
    if n != bytes.len() {
        return Err(std::io::Error::other(format!(
            "only {n} of {} bytes written",
            bytes.len()
        )));
    }
    file.sync_data()
}

/// Turns `from..to` (everything in it replaced) into gaps of at most
/// [`MAX_GAP_LEN`] bytes, one after the other, then gives back their disk
/// blocks. What the gaps cover is never read, so they may start anywhere;
/// the first is written last, so that a reader meanwhile sees either the
/// bytes as they were (inside the replaced range, set aside) or the gaps.
/// Done again on the same range, it changes nothing.
fn make_gaps(file: &std::fs::File, from: u64, to: u64) -> Result<(), String> {
    let mut gaps = Vec::new();
    let mut start = from;
    while to - start > MAX_GAP_LEN {
        // Leave at least a gap's prefix for the next one.
        let len = if to - start - MAX_GAP_LEN < 8 {
            MAX_GAP_LEN - 8
        } else {
            MAX_GAP_LEN
        };
        gaps.push((start, start + len));
        start += len;
    }
    if to - start >= 8 {
        gaps.push((start, to));
    }
    for &(start, end) in gaps.iter().rev() {
        file.write_all_at(&gap_prefix(end - start), start)
            .map_err(|e| io_text(&e))?;
    }
    file.sync_data().map_err(|e| io_text(&e))?;
    for (start, end) in gaps {
        punch(file, start + 8, end)?;
    }
    Ok(())
}

/// The file's (device, inode).
fn identity(file: &std::fs::File) -> Option<(u64, u64)> {
    file.metadata().ok().map(|m| (m.dev(), m.ino()))
}

/// Gives back the disk blocks wholly inside `from..to`.
fn punch(file: &std::fs::File, from: u64, to: u64) -> Result<(), String> {
    const BLOCK: u64 = 4096;
    let start = from.div_ceil(BLOCK) * BLOCK;
    let end = to / BLOCK * BLOCK;
    if end <= start {
        return Ok(());
    }
    // SAFETY: fallocate on a descriptor we own; no memory is touched.
    let done = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            start as libc::off_t,
            (end - start) as libc::off_t,
        )
    };
    if done == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    Err(match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) => {
            "its file system cannot free part of a file (fallocate punch hole): keep traces on ext4, xfs, btrfs or tmpfs".into()
        }
        _ => io_text(&e),
    })
}

/// An I/O error's text without the "(os error N)" suffix.
fn io_text(e: &std::io::Error) -> String {
    heapreplay_engine::trace::io_text(e)
}
