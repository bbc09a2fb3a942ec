//! The event stream of one thread: a run of allocation events in sequence order.
//!
//! Each event is a tag byte followed by LEB128 fields; sequence numbers and
//! addresses are stored as deltas from the previous event of the same record.

use crate::varint::{self, put, unzigzag, zigzag, Reader, VarintError, MAX_VARINT_LEN};

/// What an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EventKind {
    /// A block of `size` requested bytes was allocated at `addr` from `stack`.
    Alloc = 0,
    /// The block at `addr` was freed.
    Free = 1,
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
    /// Sequence numbers went backwards or left the header's range.
    BadSequence(usize),
}

impl From<VarintError> for EventsError {
    fn from(e: VarintError) -> Self {
        Self::Truncated(e.offset)
    }
}

/// Decodes `count` events of a record whose header says `first_seq..=last_seq`,
/// appending them to `out`.
pub fn decode(
    payload: &[u8],
    first_seq: u64,
    last_seq: u64,
    count: u32,
    out: &mut Vec<Event>,
) -> Result<(), EventsError> {
    let mut r = Reader::new(payload);
    let mut seq = first_seq;
    let mut addr = 0u64;
    out.reserve(count as usize);
    for i in 0..count {
        let at = r.position();
        let tag = r.byte()?;
        let delta = r.u64()?;
        if i > 0 && delta == 0 {
            return Err(EventsError::BadSequence(at));
        }
        seq = seq.checked_add(delta).ok_or(EventsError::BadSequence(at))?;
        if seq > last_seq {
            return Err(EventsError::BadSequence(at));
        }
        addr = addr.wrapping_add(unzigzag(r.u64()?) as u64);
        let event = match tag {
            0 => {
                let size = r.u64()?;
                let stack = r.u32()?;
                Event {
                    seq,
                    addr,
                    size,
                    stack,
                    kind: EventKind::Alloc,
                }
            }
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
        return Err(EventsError::Truncated(r.position()));
    }
    Ok(())
}

/// Encodes events into a new vector (for tests and the trace generator).
pub fn encode_all(events: &[Event]) -> Vec<u8> {
    let first = events.first().map_or(0, |e| e.seq);
    let mut enc = EventEncoder::new(first);
    let mut out = vec![0u8; events.len() * MAX_EVENT_LEN];
    let mut pos = 0;
    for e in events {
        pos = match e.kind {
            EventKind::Alloc => enc.alloc(&mut out, pos, e.seq, e.addr, e.size, e.stack),
            EventKind::Free => enc.free(&mut out, pos, e.seq, e.addr),
        };
    }
    out.truncate(pos);
    out
}

/// Appends one LEB128 value (re-exported for payload builders).
pub fn push_varint(out: &mut Vec<u8>, v: u64) {
    varint::push(out, v)
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

    proptest! {
        #[test]
        fn events_round_trip(events in arb_events()) {
            let bytes = encode_all(&events);
            let mut out = Vec::new();
            let last = events.last().unwrap().seq;
            decode(&bytes, events[0].seq, last, events.len() as u32, &mut out).unwrap();
            prop_assert_eq!(out, events);
        }

        #[test]
        fn damaged_streams_error_without_panicking(
            events in arb_events(), cut in any::<usize>(), flip in any::<usize>()
        ) {
            let mut bytes = encode_all(&events);
            let i = flip % bytes.len();
            bytes[i] ^= 0x5a;
            bytes.truncate(cut % (bytes.len() + 1));
            let mut out = Vec::new();
            let _ = decode(&bytes, events[0].seq, u64::MAX, events.len() as u32, &mut out);
        }
    }
}
