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
    let mut tags = Vec::with_capacity(events.len());
    let (mut seqs, mut refs, mut addrs, mut sizes, mut stacks) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut last: std::collections::HashMap<u64, (usize, EventKind), crate::hash::AddrHash> =
        std::collections::HashMap::with_capacity_and_hasher(events.len(), crate::hash::AddrHash);
    let mut prev_seq = events.first().map_or(0, |e| e.seq);
    let mut prev_addr = 0u64;
    for (i, e) in events.iter().enumerate() {
        varint::push(&mut seqs, e.seq.wrapping_sub(prev_seq));
        prev_seq = e.seq;
        match last.insert(e.addr, (i, e.kind)) {
            Some((j, kind)) if kind != e.kind => {
                tags.push(e.kind as u8 + TAG_REF);
                varint::push(&mut refs, (i - j) as u64);
            }
            _ => {
                tags.push(e.kind as u8);
                push_addr_delta(&mut addrs, e.addr.wrapping_sub(prev_addr));
                prev_addr = e.addr;
            }
        }
        if e.kind == EventKind::Alloc {
            varint::push(&mut sizes, e.size);
            varint::push(&mut stacks, u64::from(e.stack));
        }
    }
    let mut out = Vec::with_capacity(
        tags.len() + seqs.len() + refs.len() + addrs.len() + sizes.len() + stacks.len() + 16,
    );
    for len in [seqs.len(), refs.len(), addrs.len(), sizes.len()] {
        varint::push(&mut out, len as u64);
    }
    for col in [tags, seqs, refs, addrs, sizes, stacks] {
        out.extend_from_slice(&col);
    }
    out
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
    let mut head = Reader::new(payload);
    let seq_len = head.u64()? as usize;
    let ref_len = head.u64()? as usize;
    let addr_len = head.u64()? as usize;
    let size_len = head.u64()? as usize;
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
    let mut stacks = Reader::new(rest);
    let start = out.len();
    let mut seq = first_seq;
    let mut prev_addr = 0u64;
    out.reserve(count as usize);
    for (i, &tag) in tags.iter().enumerate() {
        if tag > EventKind::Free as u8 + TAG_REF {
            return Err(EventsError::BadTag(i, tag));
        }
        seq = next_seq(seq, seqs.u64()?, i == 0, last_seq).ok_or(EventsError::BadSequence(i))?;
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
        out.push(match tag {
            0 | 2 => Event {
                seq,
                addr,
                size: sizes.u64()?,
                stack: stacks.u32()?,
                kind: EventKind::Alloc,
            },
            1 | 3 => Event {
                seq,
                addr,
                size: 0,
                stack: 0,
                kind: EventKind::Free,
            },
            t => return Err(EventsError::BadTag(i, t)),
        });
    }
    if !(seqs.is_empty()
        && refs.is_empty()
        && addrs.is_empty()
        && sizes.is_empty()
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

    proptest! {
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
