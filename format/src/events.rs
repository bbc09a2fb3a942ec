//! The events of one thread: a run of allocation events in sequence order.
//!
//! The recorder buffers events as rows (a tag byte and LEB128 fields per
//! event, cheap to append); records store them as columns (see
//! [`encode_columns`]), which compress about a quarter smaller. Sequence
//! numbers and addresses are deltas from the previous event of the record.

use crate::varint::{self, put, unzigzag, zigzag, Reader, VarintError, MAX_VARINT_LEN};

/// What an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EventKind {
    /// A block of `size` requested bytes was allocated at `addr` from `stack`.
    Alloc = 0,
    /// The block at `addr` was freed.
    Free = 1,
    /// Never stored in a trace: made by a replay when an allocation reuses
    /// an address whose block was never seen freed. It retires that block
    /// (`size` and `stack` are the old block's) just before the allocation,
    /// with the same sequence number.
    Retire = 2,
}

/// One decoded event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// Global sequence number: the order of events across all threads.
    pub seq: u64,
    /// Address of the block.
    pub addr: u64,
    /// Requested size (allocations only, else 0).
    pub size: u64,
    /// Interned stack id (allocations only, else 0).
    pub stack: u32,
    /// What happened.
    pub kind: EventKind,
}

/// The most bytes one encoded event can take.
pub const MAX_EVENT_LEN: usize = 1 + 4 * MAX_VARINT_LEN;

/// Writes events into a caller-provided buffer without allocating.
#[derive(Debug, Clone, Copy)]
pub struct EventEncoder {
    prev_seq: u64,
    prev_addr: u64,
}

impl EventEncoder {
    /// Starts a record whose header says `first_seq`.
    pub fn new(first_seq: u64) -> Self {
        Self {
            prev_seq: first_seq,
            prev_addr: 0,
        }
    }

    #[inline]
    fn common(&mut self, out: &mut [u8], pos: usize, tag: u8, seq: u64, addr: u64) -> usize {
        out[pos] = tag;
        let pos = put(out, pos + 1, seq.wrapping_sub(self.prev_seq));
        let pos = put(out, pos, zigzag(addr.wrapping_sub(self.prev_addr) as i64));
        self.prev_seq = seq;
        self.prev_addr = addr;
        pos
    }

    /// Encodes an allocation at `pos`; `out` must have [`MAX_EVENT_LEN`] bytes free.
    #[inline]
    pub fn alloc(
        &mut self,
        out: &mut [u8],
        pos: usize,
        seq: u64,
        addr: u64,
        size: u64,
        stack: u32,
    ) -> usize {
        let pos = self.common(out, pos, EventKind::Alloc as u8, seq, addr);
        let pos = put(out, pos, size);
        put(out, pos, u64::from(stack))
    }

    /// Encodes a free at `pos`; `out` must have [`MAX_EVENT_LEN`] bytes free.
    #[inline]
    pub fn free(&mut self, out: &mut [u8], pos: usize, seq: u64, addr: u64) -> usize {
        self.common(out, pos, EventKind::Free as u8, seq, addr)
    }
}

/// Why an event stream could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventsError {
    /// A field ran past the end or was malformed, at this payload offset.
    Truncated(usize),
    /// An unknown tag byte at this payload offset.
    BadTag(usize, u8),
    /// Sequence numbers went backwards or left the header's range, at this
    /// event index.
    BadSequence(usize),
    /// A back-reference that reaches before the record's first event, at
    /// this event index.
    BadReference(usize),
    /// The columns hold more bytes than the record's events use.
    TrailingBytes,
    /// Allocations of a Compacted record said to be freed in it, but not.
    Unpaired(usize),
}

impl std::fmt::Display for EventsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated(at) => write!(f, "a column ends early (payload offset {at})"),
            Self::BadTag(i, t) => write!(f, "event {i} has an unknown tag {t}"),
            Self::BadSequence(i) => write!(
                f,
                "event {i}'s sequence number does not ascend within the header's range"
            ),
            Self::BadReference(i) => {
                write!(f, "event {i}'s address refers to no earlier event")
            }
            Self::TrailingBytes => write!(f, "the columns hold bytes no event uses"),
            Self::Unpaired(n) => {
                write!(f, "{n} allocations said to be freed in the record are not")
            }
        }
    }
}

impl From<VarintError> for EventsError {
    fn from(e: VarintError) -> Self {
        Self::Truncated(e.offset)
    }
}

/// The next event's sequence number from the previous one and its delta:
/// `None` unless it strictly grows (the first may equal the record's
/// first_seq) and stays within the record's last_seq.
#[inline]
fn next_seq(prev: u64, delta: u64, first: bool, last_seq: u64) -> Option<u64> {
    if delta == 0 && !first {
        return None;
    }
    prev.checked_add(delta).filter(|&s| s <= last_seq)
}

/// Decodes the row form the recorder buffers (tag, seq delta, address
/// delta, and for allocations size and stack, per event).
pub fn decode_rows(
    rows: &[u8],
    first_seq: u64,
    last_seq: u64,
    count: u32,
    out: &mut Vec<Event>,
) -> Result<(), EventsError> {
    // Every row takes at least three bytes: a count beyond that is damage,
    // not a reason to reserve memory.
    if count as usize > rows.len() / 3 {
        return Err(EventsError::Truncated(rows.len()));
    }
    let mut r = Reader::new(rows);
    let mut seq = first_seq;
    let mut addr = 0u64;
    out.reserve(count as usize);
    for i in 0..count {
        let at = r.position();
        let tag = r.byte()?;
        seq = next_seq(seq, r.u64()?, i == 0, last_seq).ok_or(EventsError::BadSequence(at))?;
        addr = addr.wrapping_add(unzigzag(r.u64()?) as u64);
        let event = match tag {
            0 => Event {
                seq,
                addr,
                size: r.u64()?,
                stack: r.u32()?,
                kind: EventKind::Alloc,
            },
            1 => Event {
                seq,
                addr,
                size: 0,
                stack: 0,
                kind: EventKind::Free,
            },
            t => return Err(EventsError::BadTag(at, t)),
        };
        out.push(event);
    }
    if !r.is_empty() {
        return Err(EventsError::TrailingBytes);
    }
    Ok(())
}

/// Appends an address delta: a multiple of 16 (nearly all: allocators
/// align blocks) as `zigzag(delta / 16) << 1`; any other as the escape value
/// 1 followed by `zigzag(delta)`.
fn push_addr_delta(out: &mut Vec<u8>, delta: u64) {
    let d = delta as i64;
    if d % 16 == 0 {
        varint::push(out, zigzag(d / 16) << 1);
    } else {
        varint::push(out, 1);
        varint::push(out, zigzag(d));
    }
}

#[inline(always)]
fn read_addr_delta(r: &mut Reader<'_>) -> Result<u64, VarintError> {
    let v = r.u64()?;
    Ok(if v & 1 == 0 {
        unzigzag(v >> 1).wrapping_mul(16) as u64
    } else {
        unzigzag(r.u64()?) as u64
    })
}

/// Tag values in the tag column: the event kind, plus 2 when its address is
/// given as a back-reference instead of a delta.
const TAG_REF: u8 = 2;

/// Writes events as the columns an Events record stores: the lengths of the
/// sequence, reference, address and size columns (varints), then the tag
/// column (one byte per event), the sequence-delta column, the reference
/// column, the address-delta column, the size column and the stack column
/// (allocations only). Like values side by side compress far better than
/// interleaved rows. An event whose address was last seen in this record in
/// an event of the other kind (a free of a block allocated earlier in the
/// record, or an allocation reusing a block freed earlier) gives its address
/// as the distance back to that event instead: short-lived blocks and
/// allocator reuse make that the common case.
pub fn encode_columns(events: &[Event]) -> Vec<u8> {
    Columns::default().encode(events, None)
}

/// Tag of an allocation that a later free in the same Compacted record
/// frees, its address as a delta (plus [`TAG_REF`]: as a back-reference).
const TAG_PAIRED_ALLOC: u8 = 4;

/// Tag of a free, in a Compacted record, of the allocation the pair column
/// says how many events back.
const TAG_PAIRED_FREE: u8 = 5;

/// Added to an unpaired event's tag in a Compacted record: the event is
/// resolved. A free so tagged frees a live block, whose size and stack
/// follow in the size and stack columns; an allocation so tagged takes the
/// address of a block still live (never seen freed), which it retires: its
/// own size and stack, then the retired block's, follow.
const TAG_RESOLVED: u8 = 8;

/// In `links` from [`decode_compacted`]: a free that carries the size and
/// stack of the block it frees.
pub const LINK_RESOLVED: u32 = u32::MAX - 1;

/// A block a Compacted record names beside an event: its size and stack.
pub type Block = (u64, u32);

/// An allocation of a Compacted record that retires a live block: its
/// index in the record, and that block.
pub type Retired = (u32, Block);

/// Writes every thread's events of one span, in sequence order, as a
/// Compacted record's columns: those of an Events record, plus a pair
/// column. An allocation freed later in the record, by a free that nothing
/// else could have freed, is tagged so, and that free names it as the
/// distance back to it: a reader pairs the two without a map of live
/// blocks. Every other event is resolved by `block(i)`: for a free, the
/// live block it frees (`None`: it frees nothing live); for an allocation,
/// the live block at its address it retires (`None`: none). An allocation
/// that retires a block is never paired. So a reader needs no map of live
/// blocks at all.
pub fn encode_compacted(events: &[Event], block: impl Fn(usize) -> Option<Block>) -> Vec<u8> {
    Columns::default().compacted(events, block)
}

/// A column encoder that keeps its buffers from one record to the next (a
/// writer of many large records spends less time growing them).
#[derive(Default)]
pub struct Columns {
    /// The last event at each address: its index and kind.
    last: std::collections::HashMap<u64, (usize, EventKind), crate::hash::AddrHash>,
    tags: Vec<u8>,
    seqs: Vec<u8>,
    refs: Vec<u8>,
    addrs: Vec<u8>,
    sizes: Vec<u8>,
    stacks: Vec<u8>,
    pairs: Vec<u8>,
}

impl Columns {
    /// A Compacted record's payload (see [`encode_compacted`]).
    pub fn compacted(
        &mut self,
        events: &[Event],
        block: impl Fn(usize) -> Option<Block>,
    ) -> Vec<u8> {
        self.encode(events, Some(&block))
    }

    /// The payload of either record: `block` is given for a Compacted
    /// record (which pairs allocations with their frees and resolves the
    /// rest), not for an Events one.
    fn encode(
        &mut self,
        events: &[Event],
        block: Option<&dyn Fn(usize) -> Option<Block>>,
    ) -> Vec<u8> {
        let Self {
            last,
            tags,
            seqs,
            refs,
            addrs,
            sizes,
            stacks,
            pairs,
        } = self;
        last.clear();
        for col in [
            &mut *tags,
            &mut *seqs,
            &mut *refs,
            &mut *addrs,
            &mut *sizes,
            &mut *stacks,
            &mut *pairs,
        ] {
            col.clear();
        }
        last.reserve(events.len());
        tags.reserve(events.len());
        seqs.reserve(events.len());
        let mut prev_seq = events.first().map_or(0, |e| e.seq);
        let mut prev_addr = 0u64;
        for (i, e) in events.iter().enumerate() {
            varint::push(seqs, e.seq.wrapping_sub(prev_seq));
            prev_seq = e.seq;
            let seen = last.insert(e.addr, (i, e.kind));
            // A free whose address was last an allocation's, which retired
            // no block, frees that allocation: pair them (its tag is marked
            // now).
            let resolved = block.and_then(|b| b(i));
            if let (Some(block), Some((j, EventKind::Alloc)), EventKind::Free) =
                (block, seen, e.kind)
            {
                if block(j).is_none() {
                    tags[j] |= TAG_PAIRED_ALLOC;
                    tags.push(TAG_PAIRED_FREE);
                    varint::push(pairs, (i - j) as u64);
                    continue;
                }
            }
            let resolved_tag = if resolved.is_some() { TAG_RESOLVED } else { 0 };
            match seen {
                Some((j, kind)) if kind != e.kind => {
                    tags.push(e.kind as u8 + TAG_REF + resolved_tag);
                    varint::push(refs, (i - j) as u64);
                }
                _ => {
                    tags.push(e.kind as u8 + resolved_tag);
                    push_addr_delta(addrs, e.addr.wrapping_sub(prev_addr));
                    prev_addr = e.addr;
                }
            }
            if e.kind == EventKind::Alloc {
                varint::push(sizes, e.size);
                varint::push(stacks, u64::from(e.stack));
            }
            if let Some((size, stack)) = resolved {
                varint::push(sizes, size);
                varint::push(stacks, u64::from(stack));
            }
        }
        let mut lengths = vec![seqs.len(), refs.len(), addrs.len(), sizes.len()];
        if block.is_some() {
            lengths.push(pairs.len());
        }
        let columns = [&*tags, &*seqs, &*refs, &*addrs, &*sizes, &*pairs, &*stacks];
        let mut out = Vec::with_capacity(columns.iter().map(|c| c.len()).sum::<usize>() + 50);
        for len in lengths {
            varint::push(&mut out, len as u64);
        }
        for col in columns {
            out.extend_from_slice(col);
        }
        out
    }
}

/// Turns the recorder's row form into the stored column form.
pub fn rows_to_columns(
    rows: &[u8],
    first_seq: u64,
    last_seq: u64,
    count: u32,
) -> Result<Vec<u8>, EventsError> {
    let mut events = Vec::with_capacity(count as usize);
    decode_rows(rows, first_seq, last_seq, count, &mut events)?;
    Ok(encode_columns(&events))
}

/// Decodes the `count` events of an Events record whose header says
/// `first_seq..=last_seq`, appending them to `out`.
pub fn decode(
    payload: &[u8],
    first_seq: u64,
    last_seq: u64,
    count: u32,
    out: &mut Vec<Event>,
) -> Result<(), EventsError> {
    decode_with(payload, first_seq, last_seq, count, out, None)
}

/// Decodes the `count` events of a Compacted record whose header says
/// `first_seq..=last_seq`, appending them to `out`; to `links` the
/// distance from each paired event to its partner (forward from an
/// allocation, back from its free), [`LINK_RESOLVED`] for a resolved free
/// (its size and stack given), 0 for the others; and to `retired`, for
/// each allocation that retires a live block, its index in this record and
/// that block. A paired free has its allocation's address; its size and
/// stack are left 0, as an unresolved free's are, for the reader to fill
/// in.
pub fn decode_compacted(
    payload: &[u8],
    first_seq: u64,
    last_seq: u64,
    count: u32,
    out: &mut Vec<Event>,
    links: &mut Vec<u32>,
    retired: &mut Vec<Retired>,
) -> Result<(), EventsError> {
    decode_with(
        payload,
        first_seq,
        last_seq,
        count,
        out,
        Some((links, retired)),
    )
}

/// The column decoder of both records (`links` for a Compacted record).
fn decode_with(
    payload: &[u8],
    first_seq: u64,
    last_seq: u64,
    count: u32,
    out: &mut Vec<Event>,
    mut links: Option<(&mut Vec<u32>, &mut Vec<Retired>)>,
) -> Result<(), EventsError> {
    let compacted = links.is_some();
    let mut head = Reader::new(payload);
    let seq_len = head.u64()? as usize;
    let ref_len = head.u64()? as usize;
    let addr_len = head.u64()? as usize;
    let size_len = head.u64()? as usize;
    let pair_len = if compacted { head.u64()? as usize } else { 0 };
    let mut rest = &payload[head.position()..];
    let mut take = |len: usize| -> Result<&[u8], EventsError> {
        if len > rest.len() {
            return Err(EventsError::Truncated(payload.len() - rest.len()));
        }
        let (col, tail) = rest.split_at(len);
        rest = tail;
        Ok(col)
    };
    let tags = take(count as usize)?;
    let mut seqs = Reader::new(take(seq_len)?);
    let mut refs = Reader::new(take(ref_len)?);
    let mut addrs = Reader::new(take(addr_len)?);
    let mut sizes = Reader::new(take(size_len)?);
    let mut pairs = Reader::new(take(pair_len)?);
    let mut stacks = Reader::new(rest);
    let start = out.len();
    let link_start = links.as_ref().map_or(0, |l| l.0.len());
    let mut seq = first_seq;
    let mut prev_addr = 0u64;
    let mut unpaired = 0usize;
    let max_tag = if compacted {
        TAG_RESOLVED + EventKind::Free as u8 + TAG_REF
    } else {
        EventKind::Free as u8 + TAG_REF
    };
    out.reserve(count as usize);
    for (i, &tag) in tags.iter().enumerate() {
        if tag > max_tag {
            return Err(EventsError::BadTag(i, tag));
        }
        seq = next_seq(seq, seqs.u64()?, i == 0, last_seq).ok_or(EventsError::BadSequence(i))?;
        if tag == TAG_PAIRED_FREE {
            let back = pairs.u64()? as usize;
            let links: &mut Vec<u32> = links.as_mut().ok_or(EventsError::BadTag(i, tag))?.0;
            // Its allocation: a paired one, earlier, not yet freed.
            if back == 0 || back > i || links[link_start + i - back] != u32::MAX {
                return Err(EventsError::BadReference(i));
            }
            links[link_start + i - back] = back as u32;
            links.push(back as u32);
            unpaired -= 1;
            let addr = out[start + i - back].addr;
            out.push(Event {
                seq,
                addr,
                size: 0,
                stack: 0,
                kind: EventKind::Free,
            });
            continue;
        }
        let resolved = tag & TAG_RESOLVED != 0;
        let paired = tag & TAG_PAIRED_ALLOC != 0;
        if resolved && paired {
            return Err(EventsError::BadTag(i, tag));
        }
        let tag = tag & !(TAG_PAIRED_ALLOC | TAG_RESOLVED);
        let addr = if tag >= TAG_REF {
            let back = refs.u64()? as usize;
            if back == 0 || back > i {
                return Err(EventsError::BadReference(i));
            }
            out[start + i - back].addr
        } else {
            prev_addr = prev_addr.wrapping_add(read_addr_delta(&mut addrs)?);
            prev_addr
        };
        let event = match tag {
            0 | 2 => Event {
                seq,
                addr,
                size: sizes.u64()?,
                stack: stacks.u32()?,
                kind: EventKind::Alloc,
            },
            1 | 3 if !paired && resolved => Event {
                seq,
                addr,
                size: sizes.u64()?,
                stack: stacks.u32()?,
                kind: EventKind::Free,
            },
            1 | 3 if !paired => Event {
                seq,
                addr,
                size: 0,
                stack: 0,
                kind: EventKind::Free,
            },
            _ => return Err(EventsError::BadTag(i, tag)),
        };
        if let Some((links, retired)) = links.as_mut() {
            // A paired allocation waits for its free (u32::MAX until then).
            links.push(match (paired, resolved, event.kind) {
                (true, _, _) => u32::MAX,
                (_, true, EventKind::Free) => LINK_RESOLVED,
                _ => 0,
            });
            unpaired += usize::from(paired);
            if resolved && event.kind == EventKind::Alloc {
                retired.push((i as u32, (sizes.u64()?, stacks.u32()?)));
            }
        }
        out.push(event);
    }
    if unpaired > 0 {
        return Err(EventsError::Unpaired(unpaired));
    }
    if !(seqs.is_empty()
        && refs.is_empty()
        && addrs.is_empty()
        && sizes.is_empty()
        && pairs.is_empty()
        && stacks.is_empty())
    {
        return Err(EventsError::TrailingBytes);
    }
    Ok(())
}

/// Encodes events in the recorder's row form (for tests).
pub fn encode_rows(events: &[Event]) -> Vec<u8> {
    let first = events.first().map_or(0, |e| e.seq);
    let mut enc = EventEncoder::new(first);
    let mut out = vec![0u8; events.len() * MAX_EVENT_LEN];
    let mut pos = 0;
    for e in events {
        pos = match e.kind {
            EventKind::Alloc => enc.alloc(&mut out, pos, e.seq, e.addr, e.size, e.stack),
            EventKind::Free => enc.free(&mut out, pos, e.seq, e.addr),
            EventKind::Retire => pos, // made by replays, never recorded
        };
    }
    out.truncate(pos);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_events() -> impl Strategy<Value = Vec<Event>> {
        proptest::collection::vec(
            (
                1u64..1000,
                any::<u64>(),
                any::<u64>(),
                any::<u32>(),
                any::<bool>(),
            ),
            1..200,
        )
        .prop_map(|raw| {
            let mut seq = 10;
            raw.into_iter()
                .map(|(d, addr, size, stack, is_alloc)| {
                    seq += d;
                    if is_alloc {
                        Event {
                            seq,
                            addr,
                            size,
                            stack,
                            kind: EventKind::Alloc,
                        }
                    } else {
                        Event {
                            seq,
                            addr,
                            size: 0,
                            stack: 0,
                            kind: EventKind::Free,
                        }
                    }
                })
                .collect()
        })
    }

    /// Events whose addresses come from a small pool, as real heaps reuse them.
    fn arb_reusing_events() -> impl Strategy<Value = Vec<Event>> {
        arb_events().prop_map(|mut events| {
            for e in &mut events {
                e.addr = 0x5555_0000_0000 + (e.addr % 8) * 48 + (e.addr >> 60);
            }
            events
        })
    }

    /// The worked example of FORMAT.md, byte for byte.
    #[test]
    fn the_spec_example_payload() {
        let ev = |seq, kind, addr, size, stack| Event {
            seq,
            addr,
            size,
            stack,
            kind,
        };
        let events = vec![
            ev(100, EventKind::Alloc, 0x5000, 24, 1),
            ev(101, EventKind::Alloc, 0x5020, 40, 2),
            ev(103, EventKind::Free, 0x5000, 0, 0),
            ev(104, EventKind::Alloc, 0x5000, 16, 1),
            ev(107, EventKind::Free, 0x7000, 0, 0),
        ];
        let payload: &[u8] = &[
            0x05, 0x02, 0x05, 0x03, // column lengths
            0x00, 0x00, 0x03, 0x02, 0x01, // tags
            0x00, 0x01, 0x02, 0x01, 0x03, // seq deltas
            0x02, 0x01, // references
            0x80, 0x28, 0x08, 0xf8, 0x0f, // address deltas
            0x18, 0x28, 0x10, // sizes
            0x01, 0x02, 0x01, // stacks
        ];
        assert_eq!(encode_columns(&events), payload);
        let mut out = Vec::new();
        decode(payload, 100, 107, 5, &mut out).unwrap();
        assert_eq!(out, events);
    }

    #[test]
    fn a_bad_tag_is_named_as_such() {
        let mut payload = encode_columns(&[Event {
            seq: 1,
            addr: 0x10,
            size: 1,
            stack: 1,
            kind: EventKind::Alloc,
        }]);
        payload[4] = 9;
        let mut out = Vec::new();
        assert_eq!(
            decode(&payload, 1, 1, 1, &mut out),
            Err(EventsError::BadTag(0, 9))
        );
    }

    #[test]
    fn compacted_pairs_are_checked() {
        let ev = |seq, kind, addr| Event {
            seq,
            addr,
            size: if kind == EventKind::Alloc { 8 } else { 0 },
            stack: u32::from(kind == EventKind::Alloc),
            kind,
        };
        let events = [
            ev(1, EventKind::Alloc, 0x10),
            ev(2, EventKind::Alloc, 0x20),
            ev(3, EventKind::Free, 0x10),
        ];
        let payload = encode_compacted(&events, |_| None);
        let (mut out, mut links, mut retired) = (Vec::new(), Vec::new(), Vec::new());
        decode_compacted(&payload, 1, 3, 3, &mut out, &mut links, &mut retired).unwrap();
        assert_eq!(out, events);
        assert_eq!(links, vec![2, 0, 2]);
        // A retiring allocation is never paired; it names what it retires,
        // and the free after it the block it frees.
        let payload = encode_compacted(&events, |i| Some((100 + i as u64, 7)));
        let (mut out, mut links, mut retired) = (Vec::new(), Vec::new(), Vec::new());
        decode_compacted(&payload, 1, 3, 3, &mut out, &mut links, &mut retired).unwrap();
        assert_eq!(links, vec![0, 0, LINK_RESOLVED]);
        assert_eq!(retired, vec![(0, (100, 7)), (1, (101, 7))]);
        assert_eq!((out[2].size, out[2].stack), (102, 7));
        // An allocation said to be freed, and not.
        let mut payload = encode_compacted(&events[..2], |_| None);
        payload[5] = TAG_PAIRED_ALLOC;
        let (mut out, mut links, mut retired) = (Vec::new(), Vec::new(), Vec::new());
        assert_eq!(
            decode_compacted(&payload, 1, 2, 2, &mut out, &mut links, &mut retired),
            Err(EventsError::Unpaired(1))
        );
        // Read as an Events payload, a Compacted one is damage.
        let payload = encode_compacted(&events, |_| None);
        assert!(decode(&payload, 1, 3, 3, &mut Vec::new()).is_err());
    }

    proptest! {
        #[test]
        fn compacted_events_round_trip_and_pair_what_a_map_would(
            events in arb_reusing_events(), retiring in 1usize..9
        ) {
            let last = events.last().unwrap().seq;
            let retires = |i: usize| i.is_multiple_of(retiring);
            let block = |i: usize| (retires(i) && events[i].kind == EventKind::Alloc).then_some((3, 4));
            let payload = encode_compacted(&events, block);
            let (mut out, mut links, mut retired) = (Vec::new(), Vec::new(), Vec::new());
            decode_compacted(&payload, events[0].seq, last, events.len() as u32, &mut out, &mut links, &mut retired).unwrap();
            prop_assert_eq!(&out, &events);
            for (i, e) in events.iter().enumerate() {
                let d = links[i] as usize;
                if d == 0 || e.kind != EventKind::Alloc {
                    continue;
                }
                // Paired: not retiring, and freed by the next event at its address.
                prop_assert!(block(i).is_none());
                prop_assert_eq!(events[i + d].kind, EventKind::Free);
                prop_assert_eq!(events[i + d].addr, e.addr);
                prop_assert!(events[i + 1..i + d].iter().all(|x| x.addr != e.addr));
                prop_assert_eq!(links[i + d] as usize, d);
            }
        }

        #[test]
        fn damaged_compacted_streams_error_without_panicking(
            events in arb_reusing_events(), cut in any::<usize>(), flip in any::<usize>()
        ) {
            let mut bytes = encode_compacted(&events, |i| i.is_multiple_of(3).then_some((1, 2)));
            let i = flip % bytes.len();
            bytes[i] ^= 0x5a;
            bytes.truncate(cut % (bytes.len() + 1));
            let (mut out, mut links, mut retired) = (Vec::new(), Vec::new(), Vec::new());
            let _ = decode_compacted(&bytes, events[0].seq, u64::MAX, events.len() as u32, &mut out, &mut links, &mut retired);
        }

        #[test]
        fn reused_addresses_round_trip(events in arb_reusing_events()) {
            let last = events.last().unwrap().seq;
            let columns = encode_columns(&events);
            let mut out = Vec::new();
            decode(&columns, events[0].seq, last, events.len() as u32, &mut out).unwrap();
            prop_assert_eq!(out, events);
        }

        #[test]
        fn events_round_trip(events in arb_events()) {
            let last = events.last().unwrap().seq;
            let rows = encode_rows(&events);
            let columns = rows_to_columns(&rows, events[0].seq, last, events.len() as u32).unwrap();
            prop_assert_eq!(&columns, &encode_columns(&events));
            let mut out = Vec::new();
            decode(&columns, events[0].seq, last, events.len() as u32, &mut out).unwrap();
            prop_assert_eq!(out, events);
        }

        #[test]
        fn damaged_streams_error_without_panicking(
            events in arb_events(), cut in any::<usize>(), flip in any::<usize>()
        ) {
            let mut bytes = encode_columns(&events);
            let i = flip % bytes.len();
            bytes[i] ^= 0x5a;
            bytes.truncate(cut % (bytes.len() + 1));
            let mut out = Vec::new();
            let _ = decode(&bytes, events[0].seq, u64::MAX, events.len() as u32, &mut out);
        }
    }
}
