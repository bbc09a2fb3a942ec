//! The stacks a trace defines, read when first asked for.
//!
//! A trace may define far more stacks than its events use (a crafted 1 MB
//! trace defined 450,000 stacks of 128 frames: half a gigabyte decoded).
//! So opening a trace keeps only the Stacks records' compressed payloads
//! and where each stack starts in them; a stack's frames are decoded when a
//! writer first asks for them, which writers do only for stacks that hold
//! allocations. Memory stays proportional to the file and to the stacks used.

use heapreplay_format::stacks::decode_stack_at;
use heapreplay_format::varint::VarintError;
use std::collections::HashMap;
use std::sync::Mutex;

/// Where one stack is defined: which record, at which payload offset.
#[derive(Debug, Clone, Copy)]
pub struct StackPlace {
    record: u32,
    at: u32,
}

/// One Stacks record, payload still compressed.
struct Chunk {
    compressed: Box<[u8]>,
    raw_len: usize,
}

/// The defined stacks of a trace, by id.
#[derive(Default)]
pub struct StackTable {
    chunks: Vec<Chunk>,
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
    fn get(&mut self, r: u32, chunk: &Chunk) -> &[u8] {
        if !self.records.contains_key(&r) {
            // Decompressed once already when the trace was opened.
            let raw = zstd::bulk::decompress(&chunk.compressed, chunk.raw_len).unwrap_or_default();
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
    /// Adds a Stacks record: its compressed payload, and the decompressed
    /// one to index (`define(id, place)` for each stack; the caller decides
    /// which definitions to keep and inserts them with [`StackTable::insert`]).
    pub fn add_record(
        &mut self,
        compressed: &[u8],
        raw: &[u8],
        count: u32,
        mut define: impl FnMut(u32, StackPlace),
    ) -> Result<(), VarintError> {
        let record = self.chunks.len() as u32;
        heapreplay_format::stacks::index_stacks(raw, count, |id, at| {
            define(
                id,
                StackPlace {
                    record,
                    at: at as u32,
                },
            )
        })?;
        self.chunks.push(Chunk {
            compressed: compressed.into(),
            raw_len: raw.len(),
        });
        Ok(())
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
        let raw = cache.get(place.record, &self.chunks[place.record as usize]);
        decode_stack_at(raw, place.at as usize).unwrap_or_default()
    }

    /// A table of the given stacks (tests, and in-memory replays).
    pub fn from_frames<'a>(stacks: impl IntoIterator<Item = (u32, &'a [u64])>) -> Self {
        let mut payload = Vec::new();
        let mut count = 0;
        for (id, frames) in stacks {
            heapreplay_format::stacks::encode_stack(&mut payload, id, frames);
            count += 1;
        }
        let compressed = zstd::bulk::compress(&payload, 1).expect("compressing in memory");
        let mut table = Self::default();
        let mut places = Vec::new();
        table
            .add_record(&compressed, &payload, count, |id, place| {
                places.push((id, place))
            })
            .expect("just encoded");
        table.places.extend(places);
        table
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
        let other = StackTable::from_frames([(9, c)]);
        let chunk = &other.chunks[0];
        let raw = zstd::bulk::decompress(&chunk.compressed, chunk.raw_len).unwrap();
        let mut places = Vec::new();
        table
            .add_record(&chunk.compressed, &raw, 1, |id, p| places.push((id, p)))
            .unwrap();
        table.places_mut().extend(places);
        assert_eq!(table.frames(1), a);
        assert_eq!(table.frames(9), c);
        assert_eq!(table.frames(2), b);
        assert_eq!(table.frames(1), a);
        assert!(table.frames(3).is_empty());
        assert_eq!(table.len(), 3);
    }
}
