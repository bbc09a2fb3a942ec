//! Opening a trace: mapping the file, scanning its record headers, and
//! reading every record but the events (which the pass decodes later).

use super::ScanCache;
use super::{EventsRef, Live, MapsRecord, Problem, Trace, TraceError};
use crate::compressed::Compressed;
use crate::stack_ids::StackIds;
use crate::stack_table::{Defined, StackTable};
use heapreplay_format::header::RECORD_PREFIX_LEN;
use heapreplay_format::info::{decode_clock, decode_threads, from_bytes};
use heapreplay_format::mappings::decode_mappings;
use heapreplay_format::markers::decode_markers;
use heapreplay_format::reader::{scan_from, Findings};
use heapreplay_format::settings::{decode_attached, decode_settings, Attached, Settings};
use heapreplay_format::RecordHeader;
use heapreplay_format::{
    progress_resident, ClockSample, EndInfo, FileInfo, Mapping, Marker, ProgressInfo, RawRecord,
    RecordKind, FORMAT_VERSION, OLDEST_READ_VERSION,
};
use std::path::Path;

impl Trace {
    /// Opens and scans `path`. Fails only if nothing in it can be used.
    pub fn open(path: &Path) -> Result<Trace, TraceError> {
        Self::open_scanning(path, false)
    }

    /// [`Trace::open`], scanning only the part of the file after what its
    /// index (see [`crate::index`]) describes, if it has one built from
    /// this very trace.
    pub fn open_indexed(path: &Path) -> Result<Trace, TraceError> {
        Self::open_scanning(path, true)
    }

    fn open_scanning(path: &Path, use_index: bool) -> Result<Trace, TraceError> {
        let err = |message: String| TraceError {
            path: path.to_path_buf(),
            message,
        };
        let (bytes, held) = map(path).map_err(err)?;
        let cached = if use_index {
            crate::index::cached_scan(path, &bytes)
        } else {
            None
        };
        let Scan {
            mut others,
            mut events,
            first,
            mut findings,
        } = match cached.and_then(|c| scan_cached(&bytes, c)) {
            Some(scan) => scan,
            None => scan(&bytes, 0),
        };
        let first = first.ok_or_else(|| err(nothing_readable(&findings)))?;
        let mut problems = Vec::new();
        let folds = super::fold::choose(
            &bytes,
            &mut others,
            &mut events,
            &mut findings.damage,
            &mut problems,
        );
        problems.extend(findings.damage.iter().map(|d| Problem {
            offset: d.offset,
            what: format!("{} ({} bytes skipped)", d.what, d.len),
        }));
        let mut meta = Metadata::default();
        for rec in &others {
            meta.read(rec, &mut problems);
        }
        let other_offsets: Vec<u64> = others.iter().map(|r| r.offset).collect();
        let Some(info) = meta.info.take() else {
            return Err(err(if let Some(at) = findings.another_trace_at {
                format!("damaged trace: its first record is not its metadata (FileInfo) record; the one at offset {at} is read as the start of another trace")
            } else if first == 0 {
                "damaged trace: its metadata record is missing or unreadable".into()
            } else {
                "not a heapreplay trace (no record header at offset 0)".into()
            }));
        };
        meta.maps.sort_by_key(|m| m.seq);
        meta.clock.sort_by_key(|c| (c.seq, c.ns));
        meta.markers.sort_by_key(|m| m.seq);
        meta.mappings.sort_by_key(|m| m.seq);
        meta.mappings.dedup_by_key(|m| m.seq);
        meta.progress_marks.sort_unstable();
        events.sort_by_key(|e| e.first_seq);
        let mut live = (held && meta.end.is_none()).then(|| meta.live(info.pid));
        let limit = live.and_then(|l| l.complete_below);
        let mut beyond_limit = Vec::new();
        if let Some(limit) = limit {
            // Past the newest Progress record the recorder is still writing:
            // what is there is incomplete, not damaged.
            if let Some((_, offset)) = meta.progress {
                problems.retain(|p| p.offset < offset);
            }
            beyond_limit = events.split_off(events.partition_point(|e| e.first_seq < limit));
            meta.markers.retain(|m| m.seq < limit);
            meta.mappings.retain(|m| m.seq < limit);
            meta.maps.retain(|m| m.seq < limit);
            meta.clock.retain(|c| c.seq <= limit);
            if let Some(live) = live.as_mut() {
                live.timed_below = meta.clock.last().map_or(0, |c| c.seq);
            }
            if let Some((progress, _)) = meta.progress {
                meta.clock.push(ClockSample {
                    seq: limit,
                    ns: progress.ns,
                });
                meta.clock.sort_by_key(|c| (c.seq, c.ns));
            }
        }
        events.shrink_to_fit();
        // Time never goes back: a sample before the one ahead of it (a
        // crafted or damaged clock) is taken as at that one.
        let mut latest = 0;
        for c in &mut meta.clock {
            latest = latest.max(c.ns);
            c.ns = latest;
        }
        let cacheable_until = match (&live, meta.progress) {
            _ if !problems.is_empty() || findings.another_trace_at.is_some() => None,
            (None, _) => Some(bytes.len() as u64),
            (
                Some(Live {
                    complete_below: Some(_),
                    ..
                }),
                Some((_, offset)),
            ) => Some(offset),
            (Some(_), _) => None,
        };
        let low_water = low_water(&events);
        let resolved = all_resolved(&bytes, &events);
        let stack_ids = StackIds::new(meta.stacks.places_mut());
        let mut undefined = 0u64;
        for m in meta.mappings.iter_mut().filter(|m| m.op.adds()) {
            m.stack = stack_ids.check(m.stack);
            undefined += u64::from(m.stack == crate::stack_ids::UNDEFINED_STACK);
        }
        if undefined > 0 {
            problems.push(Problem {
                offset: 0,
                what: format!("mapping calls naming a stack no Stacks record defines: {undefined}"),
            });
        }
        // Scanning the headers faulted in most of the file (the kernel maps
        // pages around each fault); let them go until the events are decoded.
        // SAFETY: read-only file map: dropped pages are read again on access.
        let _ = unsafe { bytes.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        Ok(Trace {
            path: path.to_path_buf(),
            info,
            settings: meta.settings,
            attached: meta.attached,
            detached: meta.detached,
            stacks: meta.stacks,
            maps: meta.maps,
            clock: meta.clock,
            markers: meta.markers,
            mappings: meta.mappings,
            end: meta.end,
            live,
            resident_peak: meta.resident_peak,
            progress_marks: meta.progress_marks,
            compacted_threads: meta.compacted_threads,
            fold: folds.fold,
            unfinished_folds: folds.unfinished,
            resolved,
            end_offset: meta.end_offset,
            stack_ids,
            problems,
            events,
            beyond_limit,
            other_offsets,
            cacheable_until,
            low_water,
            bytes,
        })
    }
}

/// Maps the file read-only, refusing what cannot be a trace; true with it
/// if a recorder still holds the file open (it keeps an exclusive lock on
/// it while it records).
fn map(path: &Path) -> Result<(memmap2::Mmap, bool), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {}", io_text(&e)))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read: {}", io_text(&e)))?;
    if meta.is_dir() {
        return Err("is a directory, not a trace file".into());
    }
    if meta.len() == 0 {
        return Err("is empty, not a heapreplay trace".into());
    }
    // SAFETY: the map is read-only; a trace being written concurrently
    // only grows, and every read is bounds-checked against the map length.
    let bytes =
        unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("cannot map: {}", io_text(&e)))?;
    // The scan and then the decoding read the file nearly in order: let
    // the kernel read ahead. (Without, a trace not in the page cache is
    // read a page per fault: a replay took 2.1x as long from a cold cache.)
    let _ = bytes.advise(memmap2::Advice::Sequential);
    Ok((bytes, held_by_recorder(&file)))
}

/// True if a recorder still holds the trace at `path` (its exclusive
/// lock): it is being written. Whatever its pid now names.
pub fn being_recorded(path: &std::path::Path) -> bool {
    std::fs::File::open(path).is_ok_and(|f| held_by_recorder(&f))
}

/// True if another process holds the file's exclusive lock: a recorder
/// still writing it. The shared lock taken to find out is let go at once,
/// so a recorder starting on the same path is not turned away.
fn held_by_recorder(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: flock on a descriptor we own; no memory is touched.
    if unsafe { libc::flock(fd, libc::LOCK_SH | libc::LOCK_NB) } == 0 {
        // SAFETY: as above.
        unsafe { libc::flock(fd, libc::LOCK_UN) };
        return false;
    }
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK)
}

/// What the header scan found.
struct Scan<'a> {
    /// Every record but the events, in file order.
    others: Vec<RawRecord<'a>>,
    /// Where the events records are.
    events: Vec<EventsRef>,
    /// The offset of the first readable record.
    first: Option<u64>,
    /// Damage and other findings of the scan.
    findings: Findings,
}

/// Scans the record headers, letting go of the pages behind the scan as it
/// goes (reading the headers faults pages in, and the kernel maps pages
/// around each fault).
fn scan(bytes: &memmap2::Mmap, start: usize) -> Scan<'_> {
    scan_after(bytes, start, Vec::new(), Vec::new())
}

/// [`scan`] from `start`, adding to the records already found before it.
fn scan_after<'a>(
    bytes: &'a memmap2::Mmap,
    start: usize,
    mut others: Vec<RawRecord<'a>>,
    mut events: Vec<EventsRef>,
) -> Scan<'a> {
    let mut released = start;
    let mut first = (start > 0).then_some(0);
    let findings = scan_from(
        bytes,
        start,
        |pos| {
            const STEP: usize = 8 << 20;
            if pos >= released + 2 * STEP {
                // SAFETY: read-only file map: dropped pages are read again on access.
                let _ = unsafe {
                    bytes.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        released,
                        pos - STEP - released,
                    )
                };
                released = pos - STEP;
            }
        },
        |rec| {
            first.get_or_insert(rec.offset);
            if rec.header.kind.holds_events() {
                events.push(EventsRef {
                    offset: rec.offset,
                    first_seq: rec.header.first_seq,
                    last_seq: rec.header.last_seq,
                    tid: match rec.header.kind {
                        RecordKind::Compacted => 0,
                        _ => rec.header.tid,
                    },
                    count: rec.header.count,
                });
            } else {
                others.push(rec);
            }
        },
    );
    Scan {
        others,
        events,
        first,
        findings,
    }
}

/// The scan of a trace whose first part its index describes: the records
/// there are taken from `cache` (the other records read again from the
/// file, where each must still be), and only what follows is scanned.
/// `None` if the file does not hold what the cache says.
fn scan_cached(bytes: &memmap2::Mmap, cache: ScanCache) -> Option<Scan<'_>> {
    let resume = usize::try_from(cache.resume).ok()?;
    if resume > bytes.len() {
        return None;
    }
    let mut others = Vec::with_capacity(cache.others.len());
    for offset in cache.others {
        let rec = record_at(bytes, offset)?;
        let end = offset as usize + RECORD_PREFIX_LEN + rec.payload.len();
        if rec.header.kind.holds_events() || end > resume {
            return None;
        }
        others.push(rec);
    }
    Some(scan_after(bytes, resume, others, cache.events))
}

/// The record whose header is at `offset` in `bytes`, as far as its header
/// is valid and its payload within `bytes` (a place found by an earlier
/// scan, read again).
pub(crate) fn record_at(bytes: &[u8], offset: u64) -> Option<RawRecord<'_>> {
    let at = usize::try_from(offset).ok()?;
    let header = RecordHeader::decode(bytes.get(at..)?).ok()?;
    let start = at + RECORD_PREFIX_LEN;
    let payload = bytes.get(start..start + header.payload_len as usize)?;
    Some(RawRecord {
        header,
        offset,
        payload,
    })
}

/// Why a file with no readable record is not a trace.
fn nothing_readable(findings: &Findings) -> String {
    if let Some(v) = findings.newer_version {
        return format!(
            "written in trace format version {v}, newer than this heapreplay reads (up to {FORMAT_VERSION}); upgrade heapreplay"
        );
    }
    if let Some(v) = findings.older_version {
        return format!(
            "written in trace format version {v} by an older heapreplay; this one reads versions {OLDEST_READ_VERSION} to {FORMAT_VERSION}: record the program again"
        );
    }
    match findings.damaged_headers {
        0 => "not a heapreplay trace (no record header found)".into(),
        n => format!(
            "no readable record: {n} record headers found, every one damaged (first: {})",
            findings
                .damage
                .iter()
                .find(|d| d.what != "not a record header")
                .map_or("", |d| &d.what)
        ),
    }
}

/// True if every record of `events` (sorted by first seq) is a Compacted
/// record of version 6 or later (whose events are resolved), each after
/// the one before it.
fn all_resolved(bytes: &[u8], events: &[EventsRef]) -> bool {
    !events.is_empty()
        && events.iter().all(|e| {
            e.tid == 0
                && record_at(bytes, e.offset).is_some_and(|r| {
                    r.header.kind == RecordKind::Compacted && r.header.version >= 6
                })
        })
        && events.windows(2).all(|w| w[0].last_seq < w[1].first_seq)
}

/// For each index into `events` (sorted by first seq), the lowest file
/// offset of it and every record after it.
fn low_water(events: &[EventsRef]) -> Vec<usize> {
    let mut low_water = vec![0; events.len()];
    let mut low = usize::MAX;
    for (i, e) in events.iter().enumerate().rev() {
        low = low.min(e.offset as usize);
        low_water[i] = low;
    }
    low_water
}

/// Everything but the events, as read from the records.
#[derive(Default)]
struct Metadata {
    info: Option<FileInfo>,
    /// The profiling settings the FileInfo record carries.
    settings: Settings,
    /// The attach the FileInfo record names, if the trace began with one.
    attached: Option<Attached>,
    /// True if the End record says the recording ended with a detach.
    detached: bool,
    stacks: StackTable,
    maps: Vec<MapsRecord>,
    clock: Vec<ClockSample>,
    markers: Vec<Marker>,
    mappings: Vec<Mapping>,
    end: Option<EndInfo>,
    end_offset: u64,
    /// The Progress record completing the most, and its offset.
    progress: Option<(ProgressInfo, u64)>,
    /// Every Progress record's seq.
    progress_marks: Vec<u64>,
    /// The most resident memory any Progress record carries.
    resident_peak: Option<u64>,
    /// The format version of the FileInfo record.
    version: u16,
    /// Events of compacted records, per thread (Threads records).
    compacted_threads: std::collections::BTreeMap<u32, u64>,
}

impl Metadata {
    /// How far a trace still being written by `pid` can be read.
    fn live(&self, pid: u32) -> Live {
        match self.progress {
            Some((p, _)) => Live {
                pid,
                complete_below: Some(p.complete_below),
                ns: p.ns,
                timed_below: 0,
            },
            // Progress records came with version 4: before its first one,
            // nothing is known to be complete.
            None if self.version >= 4 => Live {
                pid,
                complete_below: Some(0),
                ns: 0,
                timed_below: 0,
            },
            None => Live {
                pid,
                complete_below: None,
                ns: self.clock.iter().map(|c| c.ns).max().unwrap_or(0),
                timed_below: 0,
            },
        }
    }

    /// Reads one record that is not an events record; what cannot be used
    /// is added to `problems`.
    fn read(&mut self, rec: &RawRecord<'_>, problems: &mut Vec<Problem>) {
        let raw = match rec.decompress() {
            Ok(raw) => raw,
            Err(e) => {
                problems.push(Problem {
                    offset: rec.offset,
                    what: format!("{:?} record skipped: {e}", rec.header.kind),
                });
                return;
            }
        };
        let bad = |what: &str| Problem {
            offset: rec.offset,
            what: format!("{:?} record skipped: {what}", rec.header.kind),
        };
        match rec.header.kind {
            RecordKind::FileInfo => match from_bytes::<FileInfo>(&raw) {
                Some(i) if self.info.is_none() => {
                    self.settings = decode_settings(&raw, &i);
                    self.attached = decode_attached(&raw, &i, &self.settings);
                    self.info = Some(i);
                    self.version = rec.header.version;
                }
                Some(_) => {}
                None => problems.push(bad("malformed metadata")),
            },
            RecordKind::Progress => match from_bytes::<ProgressInfo>(&raw) {
                Some(p) => {
                    self.progress_marks.push(p.complete_below);
                    if let Some(resident) = progress_resident(&raw) {
                        self.resident_peak = self.resident_peak.max(Some(resident));
                    }
                    if self
                        .progress
                        .is_none_or(|(q, _)| p.complete_below > q.complete_below)
                    {
                        self.progress = Some((p, rec.offset));
                    }
                }
                None => problems.push(bad("malformed progress")),
            },
            RecordKind::Stacks => {
                let payload = Compressed::keep(rec.payload, raw.len());
                let Defined { zero, again } =
                    match self.stacks.add_record(payload, &raw, rec.header.count) {
                        Ok(defined) => defined,
                        Err(e) => {
                            problems.push(bad(&format!(
                                "malformed stack list at payload offset {}",
                                e.offset
                            )));
                            return;
                        }
                    };
                if zero > 0 {
                    problems.push(Problem {
                        offset: rec.offset,
                        what: format!("stacks with id 0 (not a valid id) ignored: {zero}"),
                    });
                }
                if let Some(id) = again {
                    problems.push(Problem {
                        offset: rec.offset,
                        what: format!(
                            "stack {id} (and maybe others) defined again; the first definition kept"
                        ),
                    });
                }
            }
            RecordKind::Maps => self.maps.push(MapsRecord {
                seq: rec.header.first_seq,
                payload: Compressed::keep(rec.payload, raw.len()),
            }),
            RecordKind::Clock => match decode_clock(&raw, rec.header.count) {
                Ok(samples) => self.clock.extend(samples),
                Err(_) => problems.push(bad("malformed clock samples")),
            },
            RecordKind::End => match from_bytes::<EndInfo>(&raw) {
                Some(_) if self.end.is_some() => problems.push(bad("a second end record")),
                Some(e) => {
                    self.detached = heapreplay_format::end_detached(&raw, &e);
                    self.end = Some(e);
                    self.end_offset = rec.offset;
                }
                None => problems.push(bad("malformed end summary")),
            },
            RecordKind::Markers => match decode_markers(&raw, rec.header.count) {
                Ok(m) => self.markers.extend(m),
                Err(_) => problems.push(bad("malformed markers")),
            },
            RecordKind::Threads => match decode_threads(&raw, rec.header.count) {
                Ok(threads) => {
                    for (tid, events) in threads {
                        let n = self.compacted_threads.entry(tid).or_default();
                        *n = n.saturating_add(events);
                    }
                }
                Err(_) => problems.push(bad("malformed thread list")),
            },
            RecordKind::Mappings => match decode_mappings(
                &raw,
                rec.header.first_seq,
                rec.header.last_seq,
                rec.header.count,
            ) {
                Ok(m) => self.mappings.extend(m),
                Err(_) => problems.push(bad("malformed mappings")),
            },
            // Read when the scan's records are sorted out (`fold`).
            RecordKind::Folded => {}
            RecordKind::Events | RecordKind::Compacted => {
                unreachable!("events records are kept apart by the scan")
            }
        }
    }
}

/// An I/O error's text without the "(os error N)" suffix.
pub fn io_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}
