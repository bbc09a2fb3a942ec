//! Opening a trace: scanning its records, reading metadata, stacks, maps and
//! clock samples, and decoding the events in parallel into one ordered stream.

use heapreplay_format::events::decode as decode_events;
use heapreplay_format::info::{decode_clock, from_bytes};
use heapreplay_format::markers::decode_markers;
use heapreplay_format::reader::scan;
use heapreplay_format::stacks::decode_stacks;
use heapreplay_format::{
    ClockSample, EndInfo, Event, FileInfo, Marker, RecordHeader, RecordKind, FORMAT_VERSION,
};
use rayon::prelude::*;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
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

/// The memory maps as recorded at one point.
#[derive(Debug, Clone)]
pub struct MapsRecord {
    /// Sequence number current when the maps were read.
    pub seq: u64,
    /// The text of `/proc/self/maps`.
    pub text: String,
}

struct EventsRef {
    offset: u64,
    header: RecordHeader,
    start: usize,
    end: usize,
}

/// An opened trace.
pub struct Trace {
    /// Where it was read from.
    pub path: PathBuf,
    /// The recorded process.
    pub info: FileInfo,
    /// Stack id to return addresses (frame 0 first).
    pub stacks: HashMap<u32, Box<[u64]>>,
    /// Maps records in sequence order.
    pub maps: Vec<MapsRecord>,
    /// Clock samples in sequence order.
    pub clock: Vec<ClockSample>,
    /// Markers in sequence order.
    pub markers: Vec<Marker>,
    /// The end summary, if the recording ended cleanly.
    pub end: Option<EndInfo>,
    /// Damage found so far (scanning, decoding).
    pub problems: Vec<Problem>,
    events: Vec<EventsRef>,
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
        let scanned = scan(&bytes);
        if let Some(v) = scanned.newer_version {
            if scanned.records.is_empty() {
                return Err(err(format!(
                    "written in trace format version {v}, newer than this heapreplay reads (up to {FORMAT_VERSION}); upgrade heapreplay"
                )));
            }
        }
        if let Some(v) = scanned.older_version {
            if scanned.records.is_empty() {
                return Err(err(format!(
                    "written in trace format version {v} by an older heapreplay; this one reads version {FORMAT_VERSION}: record the program again"
                )));
            }
        }
        let Some(first) = scanned.records.first() else {
            return Err(err("not a heapreplay trace (no record header found)".into()));
        };
        let starts_cleanly = first.offset == 0;
        let mut problems: Vec<Problem> = scanned
            .damage
            .iter()
            .map(|d| Problem {
                offset: d.offset,
                what: format!("{} ({} bytes skipped)", d.what, d.len),
            })
            .collect();
        let mut info = None;
        let mut stacks = HashMap::new();
        let mut maps = Vec::new();
        let mut clock = Vec::new();
        let mut end = None;
        let mut markers = Vec::new();
        let mut events = Vec::new();
        let base = bytes.as_ptr() as usize;
        for rec in &scanned.records {
            let start = rec.payload.as_ptr() as usize - base;
            if rec.header.kind == RecordKind::Events {
                events.push(EventsRef {
                    offset: rec.offset,
                    header: rec.header,
                    start,
                    end: start + rec.payload.len(),
                });
                continue;
            }
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
                    let r = decode_stacks(&raw, rec.header.count, |id, frames| {
                        stacks.insert(id, frames.into());
                    });
                    if r.is_err() {
                        problems.push(bad("malformed stack list"));
                    }
                }
                RecordKind::Maps => maps.push(MapsRecord {
                    seq: rec.header.first_seq,
                    text: String::from_utf8_lossy(&raw).into_owned(),
                }),
                RecordKind::Clock => match decode_clock(&raw, rec.header.count) {
                    Ok(samples) => clock.extend(samples),
                    Err(_) => problems.push(bad("malformed clock samples")),
                },
                RecordKind::End => end = from_bytes::<EndInfo>(&raw),
                RecordKind::Markers => match decode_markers(&raw, rec.header.count) {
                    Ok(m) => markers.extend(m),
                    Err(_) => problems.push(bad("malformed markers")),
                },
                RecordKind::Events => unreachable!("handled above"),
            }
        }
        let Some(info) = info else {
            return Err(err(if starts_cleanly {
                "damaged trace: its metadata record is missing or unreadable".into()
            } else {
                "not a heapreplay trace (no record header at offset 0)".into()
            }));
        };
        maps.sort_by_key(|m| m.seq);
        clock.sort_by_key(|c| (c.seq, c.ns));
        events.sort_by_key(|e| e.header.first_seq);
        markers.sort_by_key(|m| m.seq);
        Ok(Trace {
            path: path.to_path_buf(),
            info,
            stacks,
            maps,
            clock,
            markers,
            end,
            problems,
            events,
            bytes,
        })
    }

    /// Number of events records.
    pub fn event_records(&self) -> usize {
        self.events.len()
    }

    /// The distinct threads that recorded events, with their event counts.
    pub fn threads(&self) -> std::collections::BTreeMap<u32, u64> {
        let mut out = std::collections::BTreeMap::new();
        for r in &self.events {
            *out.entry(r.header.tid).or_insert(0) += u64::from(r.header.count);
        }
        out
    }

    /// Decodes every events record in parallel (on the current rayon pool)
    /// and returns all events in sequence order. Damaged records are skipped
    /// and added to [`Trace::problems`].
    pub fn ordered_events(&mut self) -> Vec<Event> {
        let decoded: Vec<Result<Vec<Event>, Problem>> = self
            .events
            .par_iter()
            .map(|r| {
                let rec = heapreplay_format::RawRecord {
                    header: r.header,
                    offset: r.offset,
                    payload: &self.bytes[r.start..r.end],
                };
                let raw = rec.decompress().map_err(|e| Problem {
                    offset: r.offset,
                    what: format!(
                        "events record skipped ({} events lost): {e}",
                        r.header.count
                    ),
                })?;
                let mut out = Vec::new();
                decode_events(
                    &raw,
                    r.header.first_seq,
                    r.header.last_seq,
                    r.header.count,
                    &mut out,
                )
                .map_err(|e| Problem {
                    offset: r.offset,
                    what: format!(
                        "events record skipped ({} events lost): malformed events ({e:?})",
                        r.header.count
                    ),
                })?;
                Ok(out)
            })
            .collect();
        let mut runs = Vec::with_capacity(decoded.len());
        for d in decoded {
            match d {
                Ok(v) => runs.push(v),
                Err(p) => self.problems.push(p),
            }
        }
        let total: usize = runs.iter().map(Vec::len).sum();
        if let Some(end) = &self.end {
            if (total as u64) < end.events && self.problems.is_empty() {
                self.problems.push(Problem {
                    offset: 0,
                    what: format!(
                        "{} events missing: the end record counts {}, the trace holds {total}",
                        end.events - total as u64,
                        end.events
                    ),
                });
            }
        }
        merge(runs, total)
    }
}

/// Merges runs that are each in sequence order into one ordered vector.
fn merge(runs: Vec<Vec<Event>>, total: usize) -> Vec<Event> {
    let mut out = Vec::with_capacity(total);
    let mut heap: BinaryHeap<Reverse<(u64, usize, usize)>> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.is_empty())
        .map(|(i, r)| Reverse((r[0].seq, i, 0)))
        .collect();
    while let Some(Reverse((_, run, idx))) = heap.pop() {
        let r = &runs[run];
        // Take the whole stretch of this run that precedes the next run's head.
        let limit = heap.peek().map_or(u64::MAX, |Reverse((s, _, _))| *s);
        let mut j = idx;
        while j < r.len() && r[j].seq < limit {
            out.push(r[j]);
            j += 1;
        }
        if j < r.len() {
            heap.push(Reverse((r[j].seq, run, j)));
        }
    }
    out
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
        let runs = vec![
            vec![ev(1), ev(4), ev(5), ev(9)],
            vec![ev(2), ev(3), ev(8)],
            vec![],
            vec![ev(6), ev(7)],
        ];
        let seqs: Vec<u64> = merge(runs, 9).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
    }
}
