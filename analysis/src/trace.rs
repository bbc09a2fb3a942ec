//! Opening a trace: scanning its records, reading metadata, stacks, maps and
//! clock samples, and decoding the events in parallel into one ordered stream.

use crate::compressed::Compressed;
use crate::resolve::Resolver;
use crate::stack_ids::StackIds;
use crate::stack_table::{Defined, StackTable};
use heapreplay_format::events::decode as decode_events;
use heapreplay_format::header::RECORD_PREFIX_LEN;
use heapreplay_format::info::{decode_clock, from_bytes};
use heapreplay_format::markers::decode_markers;
use heapreplay_format::reader::scan_with;
use heapreplay_format::{
    ClockSample, EndInfo, Event, FileInfo, Marker, RecordHeader, RecordKind, FORMAT_VERSION,
};
use rayon::prelude::*;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A trace that cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for TraceError {}

/// A part of a trace that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Byte offset in the file.
    pub offset: u64,
    /// What was wrong and what was skipped.
    pub what: String,
}

/// The memory maps as recorded at one point, kept compressed: a long run
/// records them many times, and a crafted trace can hold gigabytes of maps
/// text in a few megabytes of file.
#[derive(Debug, Clone)]
pub struct MapsRecord {
    /// Sequence number current when the maps were read.
    pub seq: u64,
    payload: Compressed,
}

impl MapsRecord {
    /// A record of `text` at `seq`.
    pub fn new(seq: u64, text: &str) -> Self {
        Self {
            seq,
            payload: Compressed::of(text.as_bytes()),
        }
    }

    /// The text of `/proc/self/maps`.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload.decompress()).into_owned()
    }
}

/// Where an events record is, and what the pass needs of its header without
/// reading it again (the rest is read from the file when it is decoded).
/// Kept small: a trace of billions of events has hundreds of thousands.
struct EventsRef {
    offset: u64,
    first_seq: u64,
    tid: u32,
    count: u32,
}

/// An opened trace.
pub struct Trace {
    /// Where it was read from.
    pub path: PathBuf,
    /// The recorded process.
    pub info: FileInfo,
    /// The defined stacks: id to return addresses (frame 0 first).
    pub stacks: StackTable,
    /// Maps records in sequence order.
    pub maps: Vec<MapsRecord>,
    /// Clock samples in sequence order.
    pub clock: Vec<ClockSample>,
    /// Markers in sequence order.
    pub markers: Vec<Marker>,
    /// The end summary, if the recording ended cleanly.
    pub end: Option<EndInfo>,
    /// Byte offset of the end record.
    end_offset: u64,
    /// How events' stack ids map onto `stacks`.
    stack_ids: StackIds,
    /// Damage found so far (scanning, decoding).
    pub problems: Vec<Problem>,
    events: Vec<EventsRef>,
    /// For each index into `events`, the lowest file offset of it and every
    /// record after it: what must stay readable once the records before it
    /// are decoded.
    low_water: Vec<usize>,
    bytes: memmap2::Mmap,
}

impl Trace {
    /// Opens and scans `path`. Fails only if nothing in it can be used.
    pub fn open(path: &Path) -> Result<Trace, TraceError> {
        let err = |message: String| TraceError {
            path: path.to_path_buf(),
            message,
        };
        let file =
            std::fs::File::open(path).map_err(|e| err(format!("cannot open: {}", io_text(&e))))?;
        let meta = file
            .metadata()
            .map_err(|e| err(format!("cannot read: {}", io_text(&e))))?;
        if meta.is_dir() {
            return Err(err("is a directory, not a trace file".into()));
        }
        if meta.len() == 0 {
            return Err(err("is empty, not a heapreplay trace".into()));
        }
        // SAFETY: the map is read-only; a trace being written concurrently
        // only grows, and every read is bounds-checked against the map length.
        let bytes = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| err(format!("cannot map: {}", io_text(&e))))?;
        // The scan and then the decoding read the file nearly in order: let
        // the kernel read ahead. (Without, a trace not in the page cache is
        // read a page per fault: a replay took 2.1x as long from a cold cache.)
        let _ = bytes.advise(memmap2::Advice::Sequential);
        // Reading the headers faults in pages (and the kernel maps pages
        // around each fault): let go of them behind the scan as it goes.
        let mut released = 0usize;
        let mut others = Vec::new();
        let mut events = Vec::new();
        let mut first = None;
        let scanned = scan_with(
            &bytes,
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
                if rec.header.kind == RecordKind::Events {
                    events.push(EventsRef {
                        offset: rec.offset,
                        first_seq: rec.header.first_seq,
                        tid: rec.header.tid,
                        count: rec.header.count,
                    });
                } else {
                    others.push(rec);
                }
            },
        );
        if let Some(v) = scanned.newer_version {
            if first.is_none() {
                return Err(err(format!(
                    "written in trace format version {v}, newer than this heapreplay reads (up to {FORMAT_VERSION}); upgrade heapreplay"
                )));
            }
        }
        if let Some(v) = scanned.older_version {
            if first.is_none() {
                return Err(err(format!(
                    "written in trace format version {v} by an older heapreplay; this one reads version {FORMAT_VERSION}: record the program again"
                )));
            }
        }
        let Some(first) = first else {
            return Err(err(match scanned.damaged_headers {
                0 => "not a heapreplay trace (no record header found)".into(),
                n => format!(
                    "no readable record: {n} record headers found, every one damaged (first: {})",
                    scanned
                        .damage
                        .iter()
                        .find(|d| d.what != "not a record header")
                        .map_or("", |d| &d.what)
                ),
            }));
        };
        let starts_cleanly = first == 0;
        let mut problems: Vec<Problem> = scanned
            .damage
            .iter()
            .map(|d| Problem {
                offset: d.offset,
                what: format!("{} ({} bytes skipped)", d.what, d.len),
            })
            .collect();
        let mut info = None;
        let mut stacks = StackTable::default();
        let mut maps = Vec::new();
        let mut clock = Vec::new();
        let mut end = None;
        let mut end_offset = 0;
        let mut markers = Vec::new();
        for rec in &others {
            let raw = match rec.decompress() {
                Ok(raw) => raw,
                Err(e) => {
                    problems.push(Problem {
                        offset: rec.offset,
                        what: format!("{:?} record skipped: {e}", rec.header.kind),
                    });
                    continue;
                }
            };
            let bad = |what: &str| Problem {
                offset: rec.offset,
                what: format!("{:?} record skipped: {what}", rec.header.kind),
            };
            match rec.header.kind {
                RecordKind::FileInfo => match from_bytes::<FileInfo>(&raw) {
                    Some(i) => info = info.or(Some(i)),
                    None => problems.push(bad("malformed metadata")),
                },
                RecordKind::Stacks => {
                    let payload = Compressed::keep(rec.payload, raw.len());
                    let Defined { zero, again } =
                        match stacks.add_record(payload, &raw, rec.header.count) {
                            Ok(defined) => defined,
                            Err(e) => {
                                problems.push(bad(&format!(
                                    "malformed stack list at payload offset {}",
                                    e.offset
                                )));
                                continue;
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
                RecordKind::Maps => maps.push(MapsRecord {
                    seq: rec.header.first_seq,
                    payload: Compressed::keep(rec.payload, raw.len()),
                }),
                RecordKind::Clock => match decode_clock(&raw, rec.header.count) {
                    Ok(samples) => clock.extend(samples),
                    Err(_) => problems.push(bad("malformed clock samples")),
                },
                RecordKind::End => match from_bytes::<EndInfo>(&raw) {
                    Some(_) if end.is_some() => problems.push(bad("a second end record")),
                    Some(e) => {
                        end = Some(e);
                        end_offset = rec.offset;
                    }
                    None => problems.push(bad("malformed end summary")),
                },
                RecordKind::Markers => match decode_markers(&raw, rec.header.count) {
                    Ok(m) => markers.extend(m),
                    Err(_) => problems.push(bad("malformed markers")),
                },
                RecordKind::Events => unreachable!("handled above"),
            }
        }
        let Some(info) = info else {
            return Err(err(if let Some(at) = scanned.another_trace_at {
                format!("damaged trace: its first record is not its metadata (FileInfo) record; the one at offset {at} is read as the start of another trace")
            } else if starts_cleanly {
                "damaged trace: its metadata record is missing or unreadable".into()
            } else {
                "not a heapreplay trace (no record header at offset 0)".into()
            }));
        };
        maps.sort_by_key(|m| m.seq);
        clock.sort_by_key(|c| (c.seq, c.ns));
        events.sort_by_key(|e| e.first_seq);
        events.shrink_to_fit();
        let mut low_water = vec![0; events.len()];
        let mut low = usize::MAX;
        for (i, e) in events.iter().enumerate().rev() {
            low = low.min(e.offset as usize);
            low_water[i] = low;
        }
        markers.sort_by_key(|m| m.seq);
        let stack_ids = StackIds::new(stacks.places_mut());
        // Scanning the headers faulted in most of the file (the kernel maps
        // pages around each fault); let them go until the events are decoded.
        // SAFETY: read-only file map: dropped pages are read again on access.
        let _ = unsafe { bytes.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        Ok(Trace {
            path: path.to_path_buf(),
            info,
            stacks,
            maps,
            clock,
            markers,
            end,
            end_offset,
            stack_ids,
            problems,
            events,
            low_water,
            bytes,
        })
    }

    /// Everything found damaged: in opening the trace, and in `pass`, in
    /// file order.
    pub fn damage<'a>(&'a self, pass: &'a Pass) -> Vec<&'a Problem> {
        let mut all: Vec<_> = self.problems.iter().chain(&pass.problems).collect();
        all.sort_by_key(|p| p.offset);
        all
    }

    /// Events the trace's events records say they hold.
    pub fn recorded_events(&self) -> u64 {
        self.events.iter().map(|r| u64::from(r.count)).sum()
    }

    /// The distinct threads that recorded events, with their event counts.
    pub fn threads(&self) -> std::collections::BTreeMap<u32, u64> {
        let mut out = std::collections::BTreeMap::new();
        for r in &self.events {
            *out.entry(r.tid).or_insert(0) += u64::from(r.count);
        }
        out
    }

    /// Lets go of the file's pages below every record not decoded yet (the
    /// first `decoded` records, in first-seq order, are done), so resident
    /// memory stays bounded by the work in flight, not the trace's length.
    /// `released` is how far this was done before. The kernel maps pages
    /// around each fault, some behind the point released before, so the
    /// range starts a little earlier each time.
    fn release(&self, decoded: usize, released: &mut usize) {
        const FAULT_AROUND: usize = 256 * 1024;
        let below = self
            .low_water
            .get(decoded)
            .copied()
            .unwrap_or(self.bytes.len());
        if below <= *released {
            return;
        }
        let from = released.saturating_sub(FAULT_AROUND);
        // SAFETY: the map is a read-only view of the file: dropping its pages
        // only means a later access reads them from the file again.
        let _ = unsafe {
            self.bytes.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                from,
                below - from,
            )
        };
        *released = below;
    }

    /// Decodes one events record, checking its stack ids and adding up its
    /// allocation sizes.
    fn decode_record(&self, r: &EventsRef) -> Result<Run, Problem> {
        let lost = |what: String| Problem {
            offset: r.offset,
            what: format!("events record skipped: {what}"),
        };
        // The scan read this header and its payload already: both are there.
        let at = r.offset as usize;
        let header = RecordHeader::decode(&self.bytes[at..])
            .map_err(|e| lost(format!("header unreadable on second read ({e:?})")))?;
        let start = at + RECORD_PREFIX_LEN;
        let payload = self
            .bytes
            .get(start..start + header.payload_len as usize)
            .ok_or_else(|| lost("payload past the end of the file".into()))?;
        let rec = heapreplay_format::RawRecord {
            header,
            offset: r.offset,
            payload,
        };
        let raw = rec.decompress().map_err(lost)?;
        let mut events = Vec::new();
        decode_events(
            &raw,
            header.first_seq,
            header.last_seq,
            header.count,
            &mut events,
        )
        .map_err(|e| lost(format!("{e} (its header says {} events)", header.count)))?;
        // Frees have size 0 and stack 0: the sum and the check need no
        // branch on the kind (which would mispredict on every other event).
        let (mut alloc_bytes, mut overflow) = (0u64, false);
        for e in &events {
            let (sum, o) = alloc_bytes.overflowing_add(e.size);
            alloc_bytes = sum;
            overflow |= o;
        }
        if overflow {
            return Err(lost(ALLOC_SUM_TOO_LARGE.into()));
        }
        let undefined = self.stack_ids.check_all(&mut events);
        Ok(Run {
            events,
            offset: r.offset,
            alloc_bytes,
            undefined,
        })
    }

    /// Calls `f` on every event in sequence order, resolved (each free
    /// carries the size and stack of the block it frees: see
    /// [`crate::resolve`]). With `pipeline`, another thread decodes events
    /// records in parallel batches (on the current rayon pool) while this
    /// one merges, resolves and calls `f`; without, this thread decodes in
    /// turn. Memory holds only the batches in flight and the live blocks,
    /// never the whole trace. Damaged records are skipped and reported in
    /// the result; an error from `f` stops the pass.
    pub fn for_each_event<E>(
        &self,
        pipeline: bool,
        f: impl FnMut(&Event) -> Result<(), E>,
    ) -> Result<Pass, E> {
        /// Records decoded per batch: enough to keep every core busy.
        const BATCH: usize = 64;
        let records = &self.events;
        if !pipeline {
            let mut released = 0;
            let batches = records.iter().enumerate().map(|(i, r)| {
                let decoded = self.decode_record(r);
                if i % BATCH == BATCH - 1 {
                    self.release(i + 1, &mut released);
                }
                (i + 1, vec![decoded])
            });
            return self.replay_batches(batches, f);
        }
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel(2);
            scope.spawn(move || {
                let (mut done, mut released) = (0, 0);
                for batch in records.chunks(BATCH) {
                    let decoded: Vec<_> = batch.par_iter().map(|r| self.decode_record(r)).collect();
                    done += batch.len();
                    self.release(done, &mut released);
                    if tx.send((done, decoded)).is_err() {
                        return;
                    }
                }
            });
            self.replay_batches(rx.into_iter(), f)
        })
    }

    /// Merges decoded batches of records (each with the count of records
    /// decoded so far) into sequence order, resolves the events and calls
    /// `f` on each.
    fn replay_batches<E>(
        &self,
        batches: impl Iterator<Item = (usize, Vec<Result<Run, Problem>>)>,
        mut f: impl FnMut(&Event) -> Result<(), E>,
    ) -> Result<Pass, E> {
        let mut pass = Pass::default();
        let mut merge = Merge::default();
        let mut resolver = Resolver::default();
        let mut each = |e: &Event| {
            let mut e = *e;
            if let Some(retire) = resolver.resolve(&mut e) {
                f(&retire)?;
            }
            f(&e)
        };
        // Every allocation size accepted adds to this; a record that would
        // take it past 2^64 - 1 is damage, so no counter can overflow.
        let mut alloc_bytes = 0u64;
        // Allocations naming an undefined stack, and the first's record.
        let mut undefined: Option<(u64, u64)> = None;
        for (done, decoded) in batches {
            for run in decoded {
                let run = match run {
                    Ok(run) => run,
                    Err(p) => {
                        pass.problems.push(p);
                        continue;
                    }
                };
                let Some(sum) = alloc_bytes.checked_add(run.alloc_bytes) else {
                    pass.problems.push(Problem {
                        offset: run.offset,
                        what: format!("events record skipped: {ALLOC_SUM_TOO_LARGE}"),
                    });
                    continue;
                };
                alloc_bytes = sum;
                if run.undefined > 0 {
                    undefined.get_or_insert((0, run.offset)).0 += run.undefined;
                }
                pass.events += run.events.len() as u64;
                merge.add(run.events, run.offset);
            }
            // Records come in first-seq order: nothing not yet decoded can
            // hold an event before the next record's first seq.
            match self.events.get(done) {
                Some(next) => {
                    if let Some(through) = next.first_seq.checked_sub(1) {
                        merge.drain_through(through, &mut each)?;
                    }
                }
                None => merge.drain_through(u64::MAX, &mut each)?,
            }
        }
        if let Some((count, offset)) = undefined {
            pass.problems.push(Problem {
                offset,
                what: format!(
                    "allocations naming a stack id that no stacks record defines: {count}; counted under an empty stack"
                ),
            });
        }
        if let Some((count, offset)) = merge.duplicates {
            pass.problems.push(Problem {
                offset,
                what: format!(
                    "events skipped, their sequence numbers already replayed from another events record (overlapping records, or traces concatenated): {count}"
                ),
            });
            pass.events -= count;
        }
        Ok(self.check_complete(pass))
    }

    /// Adds a problem if the end record counts more events than were found.
    fn check_complete(&self, mut pass: Pass) -> Pass {
        if let Some(end) = &self.end {
            if pass.events < end.events && pass.problems.is_empty() && self.problems.is_empty() {
                pass.problems.push(Problem {
                    offset: self.end_offset,
                    what: format!(
                        "{} events missing: the end record counts {}, the trace holds {}",
                        end.events - pass.events,
                        end.events,
                        pass.events
                    ),
                });
            }
        }
        pass
    }
}

/// Why a record whose allocation sizes overflow is skipped.
const ALLOC_SUM_TOO_LARGE: &str =
    "its allocation sizes take the bytes allocated past 2^64 - 1 (impossible in a real process)";

/// One decoded events record.
struct Run {
    events: Vec<Event>,
    offset: u64,
    /// The sum of its allocation sizes.
    alloc_bytes: u64,
    /// Allocations whose stack id is not defined.
    undefined: u64,
}

/// What a pass over the events found.
#[derive(Debug, Default)]
pub struct Pass {
    /// Events replayed.
    pub events: u64,
    /// Damaged events records, skipped.
    pub problems: Vec<Problem>,
}

/// A k-way merge of runs that are each in sequence order. A sequence
/// number already handed on (it appears in two runs) is skipped and counted.
#[derive(Default)]
struct Merge {
    runs: Vec<Vec<Event>>,
    /// The file offset of each run's record.
    offsets: Vec<u64>,
    free: Vec<usize>,
    heads: BinaryHeap<Reverse<(u64, usize, usize)>>,
    /// The last sequence number handed on.
    last: Option<u64>,
    /// Events skipped as duplicates, and the offset of the first's record.
    duplicates: Option<(u64, u64)>,
}

impl Merge {
    fn add(&mut self, run: Vec<Event>, offset: u64) {
        let Some(first) = run.first().map(|e| e.seq) else {
            return;
        };
        let slot = match self.free.pop() {
            Some(i) => {
                self.runs[i] = run;
                self.offsets[i] = offset;
                i
            }
            None => {
                self.runs.push(run);
                self.offsets.push(offset);
                self.runs.len() - 1
            }
        };
        self.heads.push(Reverse((first, slot, 0)));
    }

    /// Hands every event at or below `through` to `f`, in order.
    fn drain_through<E>(
        &mut self,
        through: u64,
        f: &mut impl FnMut(&Event) -> Result<(), E>,
    ) -> Result<(), E> {
        while let Some(&Reverse((seq, slot, idx))) = self.heads.peek() {
            if seq > through {
                break;
            }
            self.heads.pop();
            let run = &self.runs[slot];
            let mut j = idx;
            if let Some(last) = self.last.filter(|&last| seq <= last) {
                // Already handed on from another run: skip what overlaps.
                let skip = run[j..].partition_point(|e| e.seq <= last);
                j += skip;
                let d = self.duplicates.get_or_insert((0, self.offsets[slot]));
                d.0 += skip as u64;
            } else {
                // The head is the least of all heads: hand it on, then the
                // stretch of this run before the next run's head.
                f(&run[j])?;
                let next = self.heads.peek().map_or(u64::MAX, |Reverse((s, _, _))| *s);
                let limit = next.saturating_sub(1).min(through);
                j += 1;
                while j < run.len() && run[j].seq <= limit {
                    f(&run[j])?;
                    j += 1;
                }
                self.last = Some(run[j - 1].seq);
            }
            if j < run.len() {
                self.heads.push(Reverse((run[j].seq, slot, j)));
            } else {
                self.runs[slot] = Vec::new();
                self.free.push(slot);
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use heapreplay_format::EventKind;

    fn ev(seq: u64) -> Event {
        Event {
            seq,
            addr: seq,
            size: 1,
            stack: 1,
            kind: EventKind::Alloc,
        }
    }

    #[test]
    fn merge_interleaves_runs_by_sequence() {
        let mut m = Merge::default();
        m.add(vec![ev(1), ev(4), ev(5), ev(9)], 0);
        m.add(vec![ev(2), ev(3), ev(8)], 0);
        m.add(vec![], 0);
        let mut seqs = Vec::new();
        m.drain_through(5, &mut |e: &Event| -> Result<(), ()> {
            seqs.push(e.seq);
            Ok(())
        })
        .unwrap();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        m.add(vec![ev(6), ev(7)], 0);
        m.drain_through(u64::MAX, &mut |e: &Event| -> Result<(), ()> {
            seqs.push(e.seq);
            Ok(())
        })
        .unwrap();
        assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
    }

    fn drain_all(m: &mut Merge) -> Vec<u64> {
        let mut seqs = Vec::new();
        m.drain_through(u64::MAX, &mut |e: &Event| -> Result<(), ()> {
            seqs.push(e.seq);
            Ok(())
        })
        .unwrap();
        seqs
    }

    #[test]
    fn a_sequence_number_in_two_runs_is_handed_on_once() {
        let mut m = Merge::default();
        m.add(vec![ev(1), ev(2), ev(3)], 100);
        m.add(vec![ev(1), ev(2), ev(3)], 200);
        m.add(vec![ev(2), ev(4)], 300);
        assert_eq!(drain_all(&mut m), vec![1, 2, 3, 4]);
        assert_eq!(m.duplicates.map(|d| d.0), Some(4));
    }

    #[test]
    fn the_last_sequence_number_is_handed_on() {
        let mut m = Merge::default();
        m.add(vec![ev(u64::MAX - 1), ev(u64::MAX)], 0);
        m.add(vec![ev(u64::MAX)], 0);
        assert_eq!(drain_all(&mut m), vec![u64::MAX - 1, u64::MAX]);
    }
}
