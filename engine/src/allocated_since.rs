//! The blocks allocated since a point of the run and still live: what a
//! window of the run leaves behind (its leak suspects), per stack. Fed the
//! resolved events that follow the point, in order.

use crate::heap::Counters;
use crate::resolve::freed_stack;
use heapreplay_format::hash::AddrHash;
use heapreplay_format::{Event, EventKind};
use std::collections::HashSet;

/// Blocks allocated since the point where it was made, and still live.
#[derive(Debug, Default, Clone)]
pub struct AllocatedSince {
    /// Their addresses.
    live: HashSet<u64, AddrHash>,
    /// Per stack id: what they allocated, and what of it was freed since.
    per_stack: Vec<Counters>,
}

impl AllocatedSince {
    /// Nothing allocated yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one resolved event (see [`crate::resolve`]): an allocation
    /// is tracked; a free (or a retire) of a tracked block is counted
    /// against its stack; a free of an older block changes nothing here.
    pub fn apply(&mut self, e: &Event) {
        match e.kind {
            EventKind::Alloc => {
                self.live.insert(e.addr);
                let c = self.stack_mut(e.stack);
                c.allocs += 1;
                c.alloc_bytes += e.size;
            }
            EventKind::Free | EventKind::Retire => {
                if let Some(stack) = freed_stack(e) {
                    if self.live.remove(&e.addr) {
                        let c = self.stack_mut(stack);
                        c.frees += 1;
                        c.free_bytes += e.size;
                    }
                }
            }
        }
    }

    fn stack_mut(&mut self, stack: u32) -> &mut Counters {
        let id = stack as usize;
        if id >= self.per_stack.len() {
            self.per_stack.resize(id + 1, Counters::default());
        }
        &mut self.per_stack[id]
    }

    /// Per stack id that allocated since the point: its allocations since
    /// then (`allocs`, `alloc_bytes`) and those of them freed since
    /// (`frees`, `free_bytes`), so that `inuse_*` is what is still live.
    pub fn stacks(&self) -> impl Iterator<Item = (u32, Counters)> + '_ {
        self.per_stack
            .iter()
            .enumerate()
            .filter(|(_, c)| c.allocs > 0)
            .map(|(id, c)| (id as u32, *c))
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
        // The address reused without a free: the old block retired.
        since.apply(&event(EventKind::Retire, 0x40, 32, 3));
        since.apply(&event(EventKind::Alloc, 0x40, 4, 3));
        let stacks: Vec<_> = since.stacks().collect();
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
}
