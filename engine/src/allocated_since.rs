//! The blocks allocated since a point of the run and still live: what a
//! window of the run leaves behind (its leak suspects), per stack. Fed the
//! resolved events that follow the point, in order. The time since the
//! point may be cut in periods ([`AllocatedSince::next_period`]), each
//! block counted in the period it was allocated in, so that one pass
//! answers for every window between the cuts.

use crate::heap::Counters;
use crate::resolve::freed_stack;
use heapreplay_format::hash::AddrHash;
use heapreplay_format::{Event, EventKind};
use std::collections::HashMap;

/// Blocks allocated since the point where it was made, by the period they
/// were allocated in.
#[derive(Debug, Default, Clone)]
pub struct AllocatedSince {
    /// Their addresses, each with its period.
    live: HashMap<u64, u32, AddrHash>,
    /// Per (stack id, period): what was allocated, and what of it was
    /// freed since.
    counters: HashMap<(u32, u32), Counters>,
    /// The period now.
    period: u32,
    /// Retires not yet applied: as in the snapshots, each is applied with
    /// the allocation that follows it, so that a point between the two
    /// still sees the old block live.
    retired: Vec<Event>,
}

impl AllocatedSince {
    /// Nothing allocated yet; period 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one resolved event (see [`crate::resolve`]; a retire with
    /// the allocation after it): an allocation is counted in the period now; a free (or a retire) of a block
    /// allocated since the point is counted against its stack and period;
    /// a free of an older block changes nothing here.
    pub fn apply(&mut self, e: &Event) {
        if e.kind == EventKind::Retire {
            self.retired.push(*e);
            return;
        }
        for r in std::mem::take(&mut self.retired) {
            self.count(&r);
        }
        self.count(e);
    }

    fn count(&mut self, e: &Event) {
        match e.kind {
            EventKind::Alloc => {
                self.live.insert(e.addr, self.period);
                let c = self.counters.entry((e.stack, self.period)).or_default();
                c.allocs += 1;
                c.alloc_bytes += e.size;
            }
            EventKind::Free | EventKind::Retire => {
                if let Some(stack) = freed_stack(e) {
                    if let Some(period) = self.live.remove(&e.addr) {
                        let c = self.counters.entry((stack, period)).or_default();
                        c.frees += 1;
                        c.free_bytes += e.size;
                    }
                }
            }
        }
    }

    /// Begins the next period; returns its number.
    pub fn next_period(&mut self) -> u32 {
        self.period += 1;
        self.period
    }

    /// Per stack id that allocated since the point: its allocations since
    /// then (`allocs`, `alloc_bytes`) and those of them freed since
    /// (`frees`, `free_bytes`), so that `inuse_*` is what is still live;
    /// in no particular order.
    pub fn stacks(&self) -> Vec<(u32, Counters)> {
        let mut per_stack: HashMap<u32, Counters> = HashMap::new();
        for (&(stack, _), c) in &self.counters {
            per_stack.entry(stack).or_default().add(c);
        }
        per_stack.into_iter().collect()
    }

    /// Per (stack id, period), the bytes and objects still live: each
    /// period's leftovers, in no particular order.
    pub fn live_by_period(&self) -> Vec<(u32, u32, Counters)> {
        self.counters
            .iter()
            .filter(|(_, c)| c.inuse_objects() > 0)
            .map(|(&(stack, period), c)| (stack, period, *c))
            .collect()
    }

    /// Blocks allocated since the point and still live.
    pub fn live_blocks(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, addr: u64, size: u64, stack: u32) -> Event {
        Event {
            seq: 0,
            addr,
            size,
            stack,
            kind,
        }
    }

    #[test]
    fn counts_only_blocks_allocated_since_and_their_frees() {
        let mut since = AllocatedSince::new();
        // A free of a block allocated before the point: not counted.
        since.apply(&event(EventKind::Free, 0x10, 100, 1));
        since.apply(&event(EventKind::Alloc, 0x20, 8, 2));
        since.apply(&event(EventKind::Alloc, 0x30, 16, 2));
        since.apply(&event(EventKind::Alloc, 0x40, 32, 3));
        since.apply(&event(EventKind::Free, 0x30, 16, 2));
        // A free of an address never live: no stack.
        since.apply(&event(
            EventKind::Free,
            0x50,
            0,
            crate::resolve::UNKNOWN_STACK,
        ));
        // The address reused without a free: the old block retired, but
        // only with the allocation that reuses it.
        since.apply(&event(EventKind::Retire, 0x40, 32, 3));
        assert_eq!(since.live_blocks(), 2);
        since.apply(&event(EventKind::Alloc, 0x40, 4, 3));
        let mut stacks = since.stacks();
        stacks.sort_by_key(|s| s.0);
        assert_eq!(stacks.len(), 2);
        let (id, c) = stacks[0];
        assert_eq!((id, c.inuse_objects(), c.inuse_bytes()), (2, 1, 8));
        assert_eq!(
            (c.allocs, c.alloc_bytes, c.frees, c.free_bytes),
            (2, 24, 1, 16)
        );
        let (id, c) = stacks[1];
        assert_eq!((id, c.inuse_objects(), c.inuse_bytes()), (3, 1, 4));
        assert_eq!(since.live_blocks(), 2);
    }

    #[test]
    fn a_block_freed_in_a_later_period_counts_against_its_own() {
        let mut since = AllocatedSince::new();
        since.apply(&event(EventKind::Alloc, 0x20, 8, 2));
        since.apply(&event(EventKind::Alloc, 0x30, 16, 2));
        assert_eq!(since.next_period(), 1);
        since.apply(&event(EventKind::Alloc, 0x40, 32, 2));
        since.apply(&event(EventKind::Free, 0x20, 8, 2));
        let mut live = since.live_by_period();
        live.sort_by_key(|l| l.1);
        let shown: Vec<_> = live
            .iter()
            .map(|(s, p, c)| (*s, *p, c.inuse_objects(), c.inuse_bytes()))
            .collect();
        assert_eq!(shown, vec![(2, 0, 1, 16), (2, 1, 1, 32)]);
    }
}
