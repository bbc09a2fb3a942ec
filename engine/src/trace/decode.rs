//! Decoding one events record: its events, checked (stack ids, the sum of
//! allocation sizes), ready for the merge.

use super::pass::Span;
use super::{EventsRef, Problem, Trace};
use heapreplay_format::events::decode as decode_events;
use heapreplay_format::header::RECORD_PREFIX_LEN;
use heapreplay_format::{Event, RecordHeader};

/// Why a record whose allocation sizes overflow is skipped.
pub(super) const ALLOC_SUM_TOO_LARGE: &str =
    "its allocation sizes take the bytes allocated past 2^64 - 1 (impossible in a real process)";

/// One decoded events record.
pub(super) struct Run {
    pub(super) events: Vec<Event>,
    pub(super) offset: u64,
    /// The sum of its allocation sizes.
    pub(super) alloc_bytes: u64,
    /// Allocations whose stack id is not defined.
    pub(super) undefined: u64,
}

impl Trace {
    /// Decodes one events record, checking its stack ids and adding up its
    /// allocation sizes.
    pub(super) fn decode_record(&self, r: &EventsRef, span: Span) -> Result<Run, Problem> {
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
        // A live trace is read only as far as it is complete.
        if let Some(limit) = self.limit() {
            events.truncate(events.partition_point(|e| e.seq < limit));
        }
        // A pass over a span of the trace takes only its events.
        if let Some(until) = span.until {
            events.truncate(events.partition_point(|e| e.seq < until));
        }
        if span.from > 0 {
            events.drain(..events.partition_point(|e| e.seq < span.from));
        }
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
}
