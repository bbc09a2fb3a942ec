//! The heap as it evolves: live blocks and per-stack counters.

use heapreplay_format::hash::AddrHash;
use heapreplay_format::{Event, EventKind};
use std::collections::HashMap;

/// Allocation and free counts and bytes, per stack or in total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Allocations.
    pub allocs: u64,
    /// Bytes allocated.
    pub alloc_bytes: u64,
    /// Frees.
    pub frees: u64,
    /// Bytes freed.
    pub free_bytes: u64,
}

impl Counters {
    /// Objects in use.
    pub fn inuse_objects(&self) -> u64 {
        self.allocs - self.frees
    }

    /// Bytes in use.
    pub fn inuse_bytes(&self) -> u64 {
        self.alloc_bytes - self.free_bytes
    }
}

/// The replayed heap.
#[derive(Debug, Default)]
pub struct Heap {
    live: HashMap<u64, (u64, u32), AddrHash>,
    per_stack: Vec<Counters>,
    totals: Counters,
}

impl Heap {
    /// An empty heap.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one event. A free of an address never seen allocated (before
    /// recording started, or by a path the recorder could not see) is
    /// ignored, as gperftools ignores it.
    /// Events marked [`Event::paired`] (freed within their record) skip the
    /// live map: the free carries the size and stack.
    #[inline]
    pub fn apply(&mut self, e: &Event) {
        match e.kind {
            EventKind::Alloc => {
                if !e.paired {
                    if let Some((size, stack)) = self.live.insert(e.addr, (e.size, e.stack)) {
                        // The previous block's free was never seen: retire it now.
                        self.account_free(size, stack);
                    }
                }
                let id = e.stack as usize;
                if id >= self.per_stack.len() {
                    self.per_stack.resize(id + 1, Counters::default());
                }
                let c = &mut self.per_stack[id];
                c.allocs += 1;
                c.alloc_bytes += e.size;
                self.totals.allocs += 1;
                self.totals.alloc_bytes += e.size;
            }
            EventKind::Free if e.paired => self.account_free(e.size, e.stack),
            EventKind::Free => {
                if let Some((size, stack)) = self.live.remove(&e.addr) {
                    self.account_free(size, stack);
                }
            }
        }
    }

    fn account_free(&mut self, size: u64, stack: u32) {
        let c = &mut self.per_stack[stack as usize];
        c.frees += 1;
        c.free_bytes += size;
        self.totals.frees += 1;
        self.totals.free_bytes += size;
    }

    /// Totals over all stacks.
    pub fn totals(&self) -> Counters {
        self.totals
    }

    /// Counters per stack id, for every stack that has allocated.
    pub fn stacks(&self) -> impl Iterator<Item = (u32, Counters)> + '_ {
        self.per_stack
            .iter()
            .enumerate()
            .filter(|(_, c)| c.allocs > 0)
            .map(|(id, c)| (id as u32, *c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heapreplay_format::events::pair_within;

    /// One thread's events from a small generator: blocks that die young,
    /// live long or never die, and addresses reused.
    fn events(n: u64, seed: u64) -> Vec<Event> {
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut live: Vec<u64> = Vec::new();
        let mut out = Vec::new();
        for seq in 0..n {
            let r = next();
            let free = !live.is_empty() && r % 3 == 0;
            let e = if free {
                let i = (next() % live.len() as u64) as usize;
                let addr = live.swap_remove(i);
                Event {
                    seq,
                    addr,
                    size: 0,
                    stack: 0,
                    kind: EventKind::Free,
                    paired: false,
                }
            } else {
                let addr = 0x1000 + (next() % 64) * 16;
                if live.contains(&addr) {
                    continue;
                }
                live.push(addr);
                Event {
                    seq,
                    addr,
                    size: 1 + r % 500,
                    stack: (r % 7) as u32,
                    kind: EventKind::Alloc,
                    paired: false,
                }
            };
            out.push(e);
        }
        out
    }

    #[test]
    fn pairing_within_records_changes_no_count() {
        for seed in 1..20 {
            let plain = events(5000, seed);
            let mut by_lookup = Heap::new();
            let mut by_pairs = Heap::new();
            let mut paired = plain.clone();
            // Records of 300 events each, as a thread's buffers would cut them.
            for record in paired.chunks_mut(300) {
                pair_within(record);
            }
            assert!(paired.iter().filter(|e| e.paired).count() > 1000);
            for (a, b) in plain.iter().zip(&paired) {
                by_lookup.apply(a);
                by_pairs.apply(b);
                assert_eq!(
                    by_lookup.totals(),
                    by_pairs.totals(),
                    "seed {seed} seq {}",
                    a.seq
                );
            }
            let s1: Vec<_> = by_lookup.stacks().collect();
            let s2: Vec<_> = by_pairs.stacks().collect();
            assert_eq!(s1, s2, "seed {seed}");
        }
    }
}
