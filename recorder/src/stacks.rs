//! Stack interning: each distinct stack gets a small id once; events carry the id.
//!
//! A per-thread direct-mapped cache answers repeated stacks without a lock;
//! misses go to one global table. New stacks are appended, encoded, to a
//! pending payload that the writer emits before any events that use them.
//!
//! Interning is exact: a hash only finds a candidate, whose frames are then
//! compared, so two stacks whose hashes collide still get two ids. Each
//! interned stack's frames are kept for that (8 bytes a frame, never freed,
//! as the ids are never freed either).

use heapreplay_format::stacks::encode_stack;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Mutex;

/// Entries in each thread's stack cache.
pub const CACHE_LEN: usize = 2048;

/// One cache slot: a stack's hash, its id and its frames.
type Slot = (u64, u32, &'static [u64]);

/// One thread's cache of interned stacks.
pub struct StackCache {
    slots: Box<[Slot; CACHE_LEN]>,
}

impl Default for StackCache {
    /// An empty cache (hash 0 never occurs, see [`hash`]).
    fn default() -> Self {
        Self {
            slots: Box::new([(0, 0, &[]); CACHE_LEN]),
        }
    }
}

struct Table {
    /// The first stack interned with each hash.
    ids: HashMap<u64, u32, heapreplay_format::hash::AddrHash>,
    /// Stacks whose hash an earlier, different stack already had.
    collided: Vec<(u64, u32)>,
    /// Each id's frames (id 1 first).
    frames: Vec<&'static [u64]>,
    pending: Vec<u8>,
    pending_count: u32,
    /// Every stack interned so far, encoded: a forked child's trace starts
    /// with all of them.
    all: Vec<u8>,
    all_count: u32,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

/// A 64-bit hash of a stack, fed one frame at a time as the unwinder finds
/// them: its multiply chain then runs beside the walk's chain of stack reads
/// instead of after it (on a 25-deep stack, a third of the walk's time).
#[derive(Debug, Clone, Copy)]
pub struct StackHasher(u64);

impl Default for StackHasher {
    fn default() -> Self {
        Self(0x9e37_79b9_7f4a_7c15)
    }
}

impl StackHasher {
    /// Takes the next frame, innermost first.
    #[inline(always)]
    pub fn push(&mut self, frame: u64) {
        let h = (self.0 ^ frame).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        self.0 = h ^ (h >> 31);
    }

    /// The hash of the `len` frames pushed; never 0.
    #[inline]
    pub fn finish(self, len: usize) -> u64 {
        let h = (self.0 ^ len as u64).wrapping_mul(0x94d0_49bb_1331_11eb);
        (h ^ (h >> 31)) | 1
    }
}

/// The hash of a whole stack, as [`StackHasher`] gives it.
#[cfg(test)]
pub fn hash(frames: &[u64]) -> u64 {
    let mut h = StackHasher::default();
    frames.iter().for_each(|&f| h.push(f));
    h.finish(frames.len())
}

/// Returns the id of `frames`, whose [`hash`] is `h`, interning it if new.
#[inline]
pub fn intern(cache: &mut StackCache, frames: &[u64], h: u64) -> u32 {
    let slot = &mut cache.slots[(h as usize) % CACHE_LEN];
    if slot.0 == h && slot.2 == frames {
        return slot.1;
    }
    let (id, kept) = intern_slow(h, frames);
    *slot = (h, id, kept);
    id
}

#[cold]
fn intern_slow(h: u64, frames: &[u64]) -> (u32, &'static [u64]) {
    let mut guard = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let table = guard.get_or_insert_with(|| Table {
        ids: HashMap::default(),
        collided: Vec::new(),
        frames: Vec::new(),
        pending: Vec::new(),
        pending_count: 0,
        all: Vec::new(),
        all_count: 0,
    });
    let known = table.ids.get(&h).into_iter().copied().chain(
        table
            .collided
            .iter()
            .filter(|(c, _)| *c == h)
            .map(|&(_, id)| id),
    );
    for id in known {
        let kept = table.frames[id as usize - 1];
        if kept == frames {
            return (id, kept);
        }
    }
    // Id 0 is never handed out, so a zeroed cache slot cannot alias a stack.
    let id = table.frames.len() as u32 + 1;
    let kept: &'static [u64] = Box::leak(frames.into());
    table.frames.push(kept);
    match table.ids.entry(h) {
        Entry::Vacant(first) => {
            first.insert(id);
        }
        Entry::Occupied(_) => table.collided.push((h, id)),
    }
    let start = table.all.len();
    encode_stack(&mut table.all, id, frames);
    table.all_count += 1;
    let Table { all, pending, .. } = table;
    pending.extend_from_slice(&all[start..]);
    table.pending_count += 1;
    (id, kept)
}

/// Takes the stacks interned since the last call: (payload, count).
pub fn take_pending() -> (Vec<u8>, u32) {
    let mut guard = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    match guard.as_mut() {
        Some(t) => {
            let count = std::mem::take(&mut t.pending_count);
            (std::mem::take(&mut t.pending), count)
        }
        None => (Vec::new(), 0),
    }
}

/// The stack table held locked across `fork`, so no thread is interning
/// while the process is copied.
pub struct ForkLock(std::sync::MutexGuard<'static, Option<Table>>);

/// Locks the table before `fork`.
pub fn lock_for_fork() -> ForkLock {
    ForkLock(TABLE.lock().unwrap_or_else(|e| e.into_inner()))
}

impl ForkLock {
    /// In the child: its trace must define every stack the parent interned.
    pub fn restart_in_child(&mut self) {
        if let Some(t) = self.0.as_mut() {
            t.pending = t.all.clone();
            t.pending_count = t.all_count;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_whose_hashes_collide_get_their_own_ids() {
        let mut cache = StackCache::default();
        let a = [0x1000u64, 0x2000];
        let b = [0x3000u64, 0x4000, 0x5000];
        let h = 0x5eed_0000_0001;
        let id_a = intern(&mut cache, &a, h);
        let id_b = intern(&mut cache, &b, h);
        assert_ne!(id_a, id_b);
        // Again, through the cache and through the table.
        assert_eq!(intern(&mut cache, &a, h), id_a);
        assert_eq!(intern(&mut StackCache::default(), &b, h), id_b);
        assert_eq!(intern(&mut StackCache::default(), &a, h), id_a);
        assert_eq!(
            intern(&mut cache, &a, hash(&a)),
            intern(&mut cache, &a, hash(&a))
        );
    }
}
