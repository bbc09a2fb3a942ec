//! The heap as it evolves: per-stack counters, from resolved events.

use crate::resolve::freed_stack;
use heapreplay_format::{Event, EventKind};

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
    /// Objects in use. Never below 0: mapped memory counts one free per
    /// region a removal cuts, so cutting a mapping in pieces and removing
    /// them one by one counts more frees than maps (as in gperftools).
    pub fn inuse_objects(&self) -> u64 {
        self.allocs.saturating_sub(self.frees)
    }

    /// Bytes in use.
    pub fn inuse_bytes(&self) -> u64 {
        self.alloc_bytes.saturating_sub(self.free_bytes)
    }

    /// Adds `other` to these counters.
    pub fn add(&mut self, other: &Counters) {
        self.allocs += other.allocs;
        self.alloc_bytes += other.alloc_bytes;
        self.frees += other.frees;
        self.free_bytes += other.free_bytes;
    }
}

/// The replayed heap.
#[derive(Debug, Default, Clone)]
pub struct Heap {
    per_stack: Vec<Counters>,
    totals: Counters,
    /// Frees of addresses not live: blocks allocated before the trace
    /// began (a trace started by an attach), never subtracted.
    unseen_frees: u64,
}

impl Heap {
    /// An empty heap.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one resolved event (see [`crate::resolve`]). A free of an
    /// address that was not live is ignored, as gperftools ignores it.
    #[inline]
    pub fn apply(&mut self, e: &Event) {
        match e.kind {
            EventKind::Alloc => {
                let c = self.stack_mut(e.stack);
                c.allocs += 1;
                c.alloc_bytes += e.size;
                self.totals.allocs += 1;
                self.totals.alloc_bytes += e.size;
            }
            EventKind::Free | EventKind::Retire => match freed_stack(e) {
                Some(stack) => self.account_free(e.size, stack),
                None if e.kind == EventKind::Free => self.unseen_frees += 1,
                None => {}
            },
        }
    }

    /// Applies what a run of events did (see
    /// [`crate::trace::RunSummary`]): each stack's change, their sums, and
    /// the frees of addresses not live.
    pub fn apply_changes(
        &mut self,
        per_stack: &[(u32, Counters)],
        totals: &Counters,
        unseen_frees: u64,
    ) {
        for (stack, c) in per_stack {
            self.stack_mut(*stack).add(c);
        }
        self.totals.add(totals);
        self.unseen_frees += unseen_frees;
    }

    /// Frees of addresses that were not live (blocks allocated before the
    /// trace began, in a trace started by an attach): counted apart, never
    /// subtracted.
    pub fn unseen_frees(&self) -> u64 {
        self.unseen_frees
    }

    /// This heap, with `count` frees of addresses not live so far.
    pub fn with_unseen_frees(mut self, count: u64) -> Self {
        self.unseen_frees = count;
        self
    }

    /// The counters of `stack`, made if it has none yet.
    #[inline]
    fn stack_mut(&mut self, stack: u32) -> &mut Counters {
        let id = stack as usize;
        if id >= self.per_stack.len() {
            self.per_stack.resize(id + 1, Counters::default());
        }
        &mut self.per_stack[id]
    }

    fn account_free(&mut self, size: u64, stack: u32) {
        let c = &mut self.per_stack[stack as usize];
        c.frees += 1;
        c.free_bytes += size;
        self.totals.frees += 1;
        self.totals.free_bytes += size;
    }

    /// A heap with these per-stack counters (indexed by stack id); the
    /// totals are their sums. `None` if they cannot be a heap's: a sum
    /// overflows, or more was freed than allocated.
    pub fn with_counters(per_stack: Vec<Counters>) -> Option<Self> {
        let mut totals = Counters::default();
        for c in &per_stack {
            if c.frees > c.allocs || c.free_bytes > c.alloc_bytes {
                return None;
            }
            totals.allocs = totals.allocs.checked_add(c.allocs)?;
            totals.alloc_bytes = totals.alloc_bytes.checked_add(c.alloc_bytes)?;
            totals.frees = totals.frees.checked_add(c.frees)?;
            totals.free_bytes = totals.free_bytes.checked_add(c.free_bytes)?;
        }
        Some(Self {
            per_stack,
            totals,
            unseen_frees: 0,
        })
    }

    /// Counters indexed by stack id (stacks that never allocated are zero).
    pub fn counters(&self) -> &[Counters] {
        &self.per_stack
    }

    /// Totals over all stacks.
    pub fn totals(&self) -> &Counters {
        &self.totals
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
