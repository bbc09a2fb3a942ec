//! A folded trace: choosing the fold a trace starts from, and setting
//! aside the records it replaced.
//!
//! A fold (written by `heapreplay keep`, see FORMAT.md "Folds and gaps")
//! is a Folded record followed by its members, appended in one write. The
//! complete fold with the highest seq is the trace's start: the records in
//! the range it replaces are not read, nor are the members of other folds.
//! A fold cut short (its writer killed mid-write) is ignored, and the
//! damage its torn end leaves is not the trace's: its bytes are copies.

use super::open::record_at;
use super::{EventsRef, Problem};
use crate::heap::Heap;
use crate::index::state;
use crate::resolve::Resolver;
use heapreplay_format::fold::FoldInfo;
use heapreplay_format::header::{
    record_flags, FLAG_FOLD_MEMBER, HEADER_LEN, RECORD_PREFIX_LEN, SIGNATURE, SKIPPABLE_MAGIC,
};
use heapreplay_format::{Damage, RawRecord, RecordKind};

/// The heap's state at the seq a folded trace starts from.
#[derive(Debug, Clone)]
pub struct Fold {
    /// Every event below this seq is in the state, none after.
    pub seq: u64,
    /// The seq of the last event in the state (0 if none).
    pub last_seq: u64,
    /// What the Folded record says: the part of the file replaced, the
    /// events and bytes allocated before `seq`, the peak before it.
    pub info: FoldInfo,
    /// Where the Folded record is.
    pub offset: u64,
    /// The per-stack counters at `seq` (totals since the start of the run).
    pub heap: Heap,
    /// The state as stored (live blocks, counters).
    state: Vec<u8>,
}

impl Fold {
    /// Where in-use bytes peaked before `seq`: (seq of the event after
    /// which, bytes, ns since the start of recording); `None` if nothing
    /// was ever live.
    pub fn peak(&self) -> Option<(u64, u64, u64)> {
        let (seq, bytes) = self.info.peak;
        (bytes > 0).then_some((seq, bytes, self.info.peak_ns))
    }

    /// The run's peak, given `kept`, the peak of the part after `fold`
    /// (seq, bytes, ns): the first of the highest, as one pass over the
    /// whole run finds it.
    pub fn run_peak(fold: Option<&Fold>, kept: Option<(u64, u64, u64)>) -> Option<(u64, u64, u64)> {
        match (fold.and_then(Fold::peak), kept) {
            (Some(before), Some(k)) if k.1 > before.1 => Some(k),
            (Some(before), _) => Some(before),
            (None, k) => k,
        }
    }

    /// The blocks live at `seq`.
    pub fn live_blocks(&self) -> Resolver {
        state::decode_raw(&self.state).map_or_else(Resolver::default, |(r, _)| r)
    }
}

/// What choosing a fold found.
#[derive(Default)]
pub(super) struct Chosen {
    /// The fold the trace starts from.
    pub(super) fold: Option<Fold>,
    /// Folds ignored because they were cut short.
    pub(super) unfinished: usize,
}

/// A Folded record, read, and where its members end.
struct Candidate<'a> {
    rec: RawRecord<'a>,
    info: FoldInfo,
    heap: Heap,
    state: Vec<u8>,
    /// One past the last member found (the whole group if complete).
    members_end: u64,
    complete: bool,
}

/// Chooses the fold `others` and `events` (from a scan of `bytes`) start
/// from, and removes what it replaced, the other folds and their members;
/// `damage` that a fold cut short left loses its place there. A Folded
/// record that cannot be read is added to `problems`.
pub(super) fn choose<'a>(
    bytes: &'a [u8],
    others: &mut Vec<RawRecord<'a>>,
    events: &mut Vec<EventsRef>,
    damage: &mut Vec<Damage>,
    problems: &mut Vec<Problem>,
) -> Chosen {
    let mut chosen = Chosen::default();
    // A torn Folded record itself: it starts as one, and goes no further.
    damage.retain(|d| {
        let torn = starts_a_fold(&bytes[d.offset as usize..]);
        chosen.unfinished += usize::from(torn);
        !torn
    });
    if !others.iter().any(|r| r.header.kind == RecordKind::Folded) {
        return chosen;
    }
    let starts: std::collections::BTreeSet<u64> = others
        .iter()
        .map(|r| r.offset)
        .chain(events.iter().map(|e| e.offset))
        .collect();
    let mut candidates = Vec::new();
    let mut set_aside: Vec<(u64, u64)> = Vec::new();
    for rec in others
        .iter()
        .filter(|r| r.header.kind == RecordKind::Folded)
    {
        match read(bytes, rec, &starts) {
            Some(c) => candidates.push(c),
            None => {
                problems.push(Problem {
                    offset: rec.offset,
                    what: "Folded record skipped: its state cannot be read; the events it folded are lost".into(),
                });
                // Its members are copies all the same.
                let (end, _) = members_end(bytes, rec, u64::MAX, &starts);
                set_aside.push((rec.offset, end));
            }
        }
    }
    // Members of every fold, complete or not, are copies: never read as
    // the trace's own records, except the chosen fold's.
    let best = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.complete)
        .max_by_key(|(_, c)| (c.rec.header.first_seq, c.rec.offset))
        .map(|(i, _)| i);
    for (i, c) in candidates.iter().enumerate() {
        if Some(i) != best {
            set_aside.push((c.rec.offset, c.members_end));
        }
        if !c.complete {
            chosen.unfinished += 1;
            let at = c.members_end;
            damage.retain(|d| d.offset != at);
        }
    }
    let Some(best) = best.map(|i| candidates.swap_remove(i)) else {
        others.retain(|r| !inside(&set_aside, r.offset));
        events.retain(|e| !inside(&set_aside, e.offset));
        return chosen;
    };
    set_aside.push((best.info.replaces_from, best.info.replaces_to));
    damage.retain(|d| !inside(&set_aside[set_aside.len() - 1..], d.offset));
    let seq = best.rec.header.first_seq;
    others.retain(|r| !inside(&set_aside, r.offset));
    events.retain(|e| !inside(&set_aside, e.offset) && e.last_seq >= seq);
    chosen.fold = Some(Fold {
        seq,
        last_seq: best.rec.header.last_seq,
        info: best.info,
        offset: best.rec.offset,
        heap: best.heap,
        state: best.state,
    });
    chosen
}

/// True if `bytes` start as a Folded record does: the record prefix up to
/// its kind byte (a header cut anywhere after it, or whole).
fn starts_a_fold(bytes: &[u8]) -> bool {
    let mut start = Vec::with_capacity(13);
    start.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
    start.extend_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    start.extend_from_slice(&SIGNATURE);
    start.push(RecordKind::Folded as u8);
    bytes.starts_with(&start)
}

/// True if `offset` is in one of the ranges.
fn inside(ranges: &[(u64, u64)], offset: u64) -> bool {
    ranges
        .iter()
        .any(|&(from, to)| (from..to).contains(&offset))
}

/// A Folded record read, with its members checked: each must be a record
/// the scan found (`starts`), flagged as a fold's copy, one right after
/// the other.
fn read<'a>(
    bytes: &'a [u8],
    rec: &RawRecord<'a>,
    starts: &std::collections::BTreeSet<u64>,
) -> Option<Candidate<'a>> {
    let raw = rec.decompress().ok()?;
    let (info, state_bytes) = FoldInfo::decode(&raw)?;
    // It replaces a part of the file after the FileInfo record and before
    // itself, or it is damaged.
    if info.replaces_from == 0 || info.replaces_to > rec.offset {
        return None;
    }
    let (_, heap) = state::decode_raw(state_bytes)?;
    let first = rec.offset + (RECORD_PREFIX_LEN + rec.payload.len()) as u64;
    let end = first.checked_add(info.members_len)?;
    let (at, found) = members_end(bytes, rec, end, starts);
    Some(Candidate {
        rec: *rec,
        info,
        heap,
        state: state_bytes.to_vec(),
        members_end: at,
        complete: found == rec.header.count && at == end,
    })
}

/// Where the members of the Folded record `rec` end (at most at `end`),
/// and how many there are: the flagged records right after it, one after
/// the other, up to its count.
fn members_end(
    bytes: &[u8],
    rec: &RawRecord<'_>,
    end: u64,
    starts: &std::collections::BTreeSet<u64>,
) -> (u64, u32) {
    let mut at = rec.offset + (RECORD_PREFIX_LEN + rec.payload.len()) as u64;
    let mut found = 0;
    while found < rec.header.count && at < end && starts.contains(&at) {
        let Some(member) = record_at(bytes, at) else {
            break;
        };
        let flagged = record_flags(&bytes[at as usize..]) & FLAG_FOLD_MEMBER != 0;
        let kind = member.header.kind;
        if !flagged || matches!(kind, RecordKind::FileInfo | RecordKind::Folded) {
            break;
        }
        at += (RECORD_PREFIX_LEN + member.payload.len()) as u64;
        found += 1;
    }
    (at, found)
}
