//! Decoding one events record: its events, checked (stack ids, the sum of
//! allocation sizes), ready for the merge.

use super::pass::Span;
use super::summary::{summarize, RunSummary};
use super::{EventsRef, Problem, Trace};
use heapreplay_format::events::{
    decode as decode_events, decode_compacted, Retired, LINK_RESOLVED,
};
use heapreplay_format::header::RECORD_PREFIX_LEN;
use heapreplay_format::{Event, EventKind, RecordHeader, RecordKind};

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
    /// Of a Compacted record: for each event, the distance to its partner
    /// (forward from an allocation to the free in the run that frees it,
    /// back from that free, which frees that allocation's size and stack);
    /// 0 for events that go through the live blocks. Empty for an Events
    /// record.
    pub(super) links: Vec<u32>,
    /// Of a Compacted record: the allocations that retire a live block
    /// (never seen freed), by index in `events`, with that block.
    pub(super) retired: Vec<Retired>,
    /// Of a resolved Compacted record, when the pass wants them: its
    /// events summed up in parts, in order (see [`super::summary`]).
    pub(super) parts: Vec<RunSummary>,
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
        let mut links = Vec::new();
        let mut retired = Vec::new();
        let decoded = match header.kind {
            RecordKind::Compacted => decode_compacted(
                &raw,
                header.first_seq,
                header.last_seq,
                header.count,
                &mut events,
                &mut links,
                &mut retired,
            ),
            _ => decode_events(
                &raw,
                header.first_seq,
                header.last_seq,
                header.count,
                &mut events,
            ),
        };
        decoded.map_err(|e| lost(format!("{e} (its header says {} events)", header.count)))?;
        // A live trace is read only as far as it is complete; a pass over a
        // span of the trace takes only its events.
        let mut end = events.len();
        if let Some(limit) = self.limit() {
            end = events[..end].partition_point(|e| e.seq < limit);
        }
        if let Some(until) = span.until {
            end = events[..end].partition_point(|e| e.seq < until);
        }
        let begin = match span.from {
            0 => 0,
            from => events[..end].partition_point(|e| e.seq < from),
        };
        if !links.is_empty() && (begin > 0 || end < events.len()) {
            unlink_outside(&mut events, &mut links, begin, end);
            links.truncate(end);
            links.drain(..begin);
            retired.retain(|&(i, _)| (begin..end).contains(&(i as usize)));
            for r in &mut retired {
                r.0 -= begin as u32;
            }
        }
        events.truncate(end);
        events.drain(..begin);
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
        // The blocks a resolved record names: their stacks too (dense ids
        // were all checked above).
        if self.stack_ids.renumbers() {
            for (e, &link) in events.iter_mut().zip(&links) {
                if link == LINK_RESOLVED {
                    e.stack = self.stack_ids.check(e.stack);
                }
            }
        }
        for (_, (_, stack)) in &mut retired {
            *stack = self.stack_ids.check(*stack);
        }
        let parts = match span.summarize && !links.is_empty() {
            true => summarize(&events, &links, &retired),
            false => Vec::new(),
        };
        Ok(Run {
            events,
            offset: r.offset,
            alloc_bytes,
            undefined,
            links,
            retired,
            parts,
        })
    }
}

/// Unpairs the events in `begin..end` whose partner lies outside it: an
/// allocation whose free is not replayed here stays live; a free whose
/// allocation was replayed before is resolved to it (it frees that block).
fn unlink_outside(events: &mut [Event], links: &mut [u32], begin: usize, end: usize) {
    for i in begin..end {
        let d = links[i] as usize;
        if d == 0 || links[i] == LINK_RESOLVED {
            continue;
        }
        match events[i].kind {
            EventKind::Alloc if i + d >= end => links[i] = 0,
            EventKind::Free if i < begin + d => {
                (events[i].size, events[i].stack) = (events[i - d].size, events[i - d].stack);
                links[i] = LINK_RESOLVED;
            }
            _ => {}
        }
    }
}
