//! The stacks a trace defines, read when first asked for.
//!
//! A trace may define far more stacks than its events use (a crafted 1 MB
//! trace defined 450,000 stacks of 128 frames: half a gigabyte decoded).
//! So opening a trace keeps only the Stacks records' compressed payloads
//! and where each stack starts in them; a stack's frames are decoded when a
//! writer first asks for them, which writers do only for stacks that hold
//! allocations. Memory stays proportional to the file and to the stacks used.

use crate::compressed::Compressed;
use heapreplay_format::stacks::{decode_stack_at, encode_stack, index_stacks};
use heapreplay_format::varint::VarintError;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Mutex;

/// Where one stack is defined: which record, at which payload offset.
#[derive(Debug, Clone, Copy)]
pub struct StackPlace {
    record: u32,
    at: u32,
}

/// What a Stacks record defined besides new stacks: definitions a reader
/// ignores (see FORMAT.md).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Defined {
    /// Stacks with id 0, which is not a valid id.
    pub zero: u32,
    /// An id (the first) that an earlier definition already took.
    pub again: Option<u32>,
}

/// The defined stacks of a trace, by id.
#[derive(Default)]
pub struct StackTable {
    records: Vec<Compressed>,
    places: HashMap<u32, StackPlace>,
    /// Records decompressed lately, up to [`CACHED_BYTES`]: a profile asks
    /// for its stacks in order of bytes, not of records.
    cache: Mutex<Cache>,
}

/// Decompressed records kept, at most, in bytes (a real trace's stacks
/// records take a few MiB in all; a crafted one is bounded by this).
const CACHED_BYTES: usize = 64 << 20;

/// Decompressed records, and their order of arrival.
#[derive(Default)]
struct Cache {
    records: HashMap<u32, Vec<u8>>,
    order: std::collections::VecDeque<u32>,
    bytes: usize,
}

impl Cache {
    /// The decompressed payload of record `r`, decompressing it if needed.
    fn get(&mut self, r: u32, record: &Compressed) -> &[u8] {
        if !self.records.contains_key(&r) {
            let raw = record.decompress();
            while self.bytes + raw.len() > CACHED_BYTES {
                let Some(old) = self.order.pop_front() else {
                    break;
                };
                self.bytes -= self.records.remove(&old).map_or(0, |v| v.len());
            }
            self.bytes += raw.len();
            self.order.push_back(r);
            self.records.insert(r, raw);
        }
        &self.records[&r]
    }
}

impl StackTable {
    /// Adds a Stacks record: its payload, kept, and the same decompressed, to
    /// index. The first definition of an id is kept; later ones, and id 0,
    /// are ignored and counted. A malformed record adds nothing.
    pub fn add_record(
        &mut self,
        payload: Compressed,
        raw: &[u8],
        count: u32,
    ) -> Result<Defined, VarintError> {
        let record = self.records.len() as u32;
        let mut found = Vec::with_capacity(count.min(1 << 20) as usize);
        index_stacks(raw, count, |id, at| found.push((id, at as u32)))?;
        self.records.push(payload);
        let mut defined = Defined::default();
        for (id, at) in found {
            if id == 0 {
                defined.zero += 1;
            } else if let Entry::Vacant(v) = self.places.entry(id) {
                v.insert(StackPlace { record, at });
            } else {
                defined.again.get_or_insert(id);
            }
        }
        Ok(defined)
    }

    /// The places of the stacks defined so far, to check and renumber.
    pub fn places_mut(&mut self) -> &mut HashMap<u32, StackPlace> {
        &mut self.places
    }

    /// Stacks defined.
    pub fn len(&self) -> usize {
        self.places.len()
    }

    /// True if no stack is defined.
    pub fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    /// The defined ids, ascending.
    pub fn ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.places.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// True if `id` is defined.
    pub fn contains(&self, id: u32) -> bool {
        self.places.contains_key(&id)
    }

    /// The return addresses of stack `id`, leaf first; empty if the id is
    /// not defined.
    pub fn frames(&self, id: u32) -> Vec<u64> {
        let Some(place) = self.places.get(&id) else {
            return Vec::new();
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let raw = cache.get(place.record, &self.records[place.record as usize]);
        decode_stack_at(raw, place.at as usize).unwrap_or_default()
    }

    /// A table of the given stacks (tests, and tables built in memory).
    pub fn from_frames<'a>(stacks: impl IntoIterator<Item = (u32, &'a [u64])>) -> Self {
        let mut table = Self::default();
        table.add_frames(stacks);
        table
    }

    /// Adds a record of the given stacks.
    fn add_frames<'a>(&mut self, stacks: impl IntoIterator<Item = (u32, &'a [u64])>) -> Defined {
        let mut payload = Vec::new();
        let mut count = 0;
        for (id, frames) in stacks {
            encode_stack(&mut payload, id, frames);
            count += 1;
        }
        self.add_record(Compressed::of(&payload), &payload, count)
            .expect("just encoded")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_back_across_records() {
        let a: &[u64] = &[0x1000, 0x2000];
        let b: &[u64] = &[];
        let c: &[u64] = &[u64::MAX, 0];
        let mut table = StackTable::from_frames([(1, a), (2, b)]);
        assert_eq!(table.add_frames([(9, c)]), Defined::default());
        assert_eq!(table.frames(1), a);
        assert_eq!(table.frames(9), c);
        assert_eq!(table.frames(2), b);
        assert_eq!(table.frames(1), a);
        assert!(table.frames(3).is_empty());
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn id_0_and_second_definitions_are_ignored_and_counted() {
        let a: &[u64] = &[0x1000];
        let b: &[u64] = &[0x2000];
        let mut table = StackTable::from_frames([(1, a)]);
        let defined = table.add_frames([(0, b), (1, b), (2, b)]);
        assert_eq!(
            defined,
            Defined {
                zero: 1,
                again: Some(1)
            }
        );
        assert_eq!(table.frames(1), a);
        assert_eq!(table.frames(2), b);
        assert_eq!(table.len(), 2);
    }
}
