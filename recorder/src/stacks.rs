//! Stack interning: each distinct stack gets a small id once; events carry the id.
//!
//! A per-thread direct-mapped cache answers repeated stacks without a lock;
//! misses go to one global table. New stacks are appended, encoded, to a
//! pending payload that the writer emits before any events that use them.

use heapreplay_format::stacks::encode_stack;
use std::collections::HashMap;
use std::sync::Mutex;

/// Entries in each thread's stack cache.
pub const CACHE_LEN: usize = 2048;

/// One thread's cache of (stack hash, id).
pub struct StackCache {
    slots: Box<[(u64, u32); CACHE_LEN]>,
}

impl Default for StackCache {
    /// An empty cache (hash 0 never occurs, see [`hash`]).
    fn default() -> Self {
        Self {
            slots: Box::new([(0, 0); CACHE_LEN]),
        }
    }
}

struct Table {
    ids: HashMap<u64, u32, heapreplay_format::hash::AddrHash>,
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
    if slot.0 == h {
        return slot.1;
    }
    let id = intern_slow(h, frames);
    *slot = (h, id);
    id
}

#[cold]
fn intern_slow(h: u64, frames: &[u64]) -> u32 {
    let mut guard = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let table = guard.get_or_insert_with(|| Table {
        ids: HashMap::default(),
        pending: Vec::new(),
        pending_count: 0,
        all: Vec::new(),
        all_count: 0,
    });
    if let Some(&id) = table.ids.get(&h) {
        return id;
    }
    // Id 0 is never handed out, so a zeroed cache slot cannot alias a stack.
    let id = table.ids.len() as u32 + 1;
    table.ids.insert(h, id);
    let start = table.all.len();
    encode_stack(&mut table.all, id, frames);
    table.all_count += 1;
    let Table { all, pending, .. } = table;
    pending.extend_from_slice(&all[start..]);
    table.pending_count += 1;
    id
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
