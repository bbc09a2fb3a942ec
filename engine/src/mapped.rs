//! Mapped memory: what the program's own mapping calls (`mmap`, `munmap`,
//! `mremap`, `sbrk`, `brk`, recorded with `HEAP_PROFILE_MMAP`) hold at a
//! point, per stack. Replayed from the trace's Mappings records, apart from
//! the heap: mapping calls are few, and gperftools' dump rules count the
//! heap alone.
//!
//! Like gperftools' region map, a mapping call counts as an allocation of
//! its bytes to its stack, and removing memory counts as frees of the bytes
//! removed, credited to the stacks of the regions they cut. Unlike it, a
//! map over memory already mapped (`MAP_FIXED`) replaces what it covers, as
//! the kernel does, so in-use bytes never count a byte twice.

use crate::heap::Counters;
use crate::snapshots::Trigger;
use heapreplay_format::{Mapping, MappingOp};
use std::collections::BTreeMap;

/// Bytes mapped after each of `mappings` (in seq order): its seq and the
/// bytes mapped then.
pub fn levels(mappings: &[Mapping]) -> impl Iterator<Item = (u64, u64)> + '_ {
    let mut mapped = MappedMemory::new(mappings);
    mappings
        .iter()
        .map(move |m| (m.seq, mapped.seek(m.seq).mapped_bytes()))
}

/// One mapped region.
#[derive(Debug, Clone, Copy)]
struct Region {
    end: u64,
    stack: u32,
}

/// The mapped regions after a prefix of a trace's mappings.
#[derive(Debug, Clone)]
pub struct MappedMemory<'a> {
    mappings: &'a [Mapping],
    /// Mappings applied so far.
    next: usize,
    /// Regions by start address; they never overlap.
    regions: BTreeMap<u64, Region>,
    per_stack: BTreeMap<u32, Counters>,
    totals: Counters,
}

impl<'a> MappedMemory<'a> {
    /// Nothing mapped yet; `mappings` in ascending seq order.
    pub fn new(mappings: &'a [Mapping]) -> Self {
        Self {
            mappings,
            next: 0,
            regions: BTreeMap::new(),
            per_stack: BTreeMap::new(),
            totals: Counters::default(),
        }
    }

    /// Moves to the point just after event `seq`: every mapping with a seq
    /// up to it applied, none after. Going back starts over.
    pub fn seek(&mut self, seq: u64) -> &Self {
        if self.next > 0 && self.mappings[self.next - 1].seq > seq {
            *self = Self::new(self.mappings);
        }
        while let Some(m) = self.mappings.get(self.next).filter(|m| m.seq <= seq) {
            self.apply(m);
            self.next += 1;
        }
        self
    }

    fn apply(&mut self, m: &Mapping) {
        match m.op {
            MappingOp::Map | MappingOp::Grow => self.add(m.addr, m.len, m.stack),
            MappingOp::Unmap | MappingOp::Shrink => self.remove(m.addr, m.len),
            MappingOp::Remap => {
                self.remove(m.old_addr, m.old_len);
                self.add(m.addr, m.len, m.stack);
            }
        }
    }

    fn add(&mut self, addr: u64, len: u64, stack: u32) {
        if len == 0 {
            return;
        }
        self.remove(addr, len);
        let end = addr.saturating_add(len);
        self.regions.insert(addr, Region { end, stack });
        let len = end - addr;
        let change = Counters {
            allocs: 1,
            alloc_bytes: len,
            ..Counters::default()
        };
        self.count(stack, &change);
    }

    /// Removes `[addr, addr + len)` from every region it overlaps, cutting
    /// regions it covers in part.
    fn remove(&mut self, addr: u64, len: u64) {
        let end = addr.saturating_add(len);
        if end == addr {
            return;
        }
        let first = self
            .regions
            .range(..=addr)
            .next_back()
            .filter(|(_, r)| r.end > addr)
            .map_or(addr, |(&start, _)| start);
        let cut: Vec<(u64, Region)> = self
            .regions
            .range(first..end)
            .map(|(&s, &r)| (s, r))
            .collect();
        for (start, region) in cut {
            self.regions.remove(&start);
            let (lo, hi) = (start.max(addr), region.end.min(end));
            let change = Counters {
                frees: 1,
                free_bytes: hi - lo,
                ..Counters::default()
            };
            self.count(region.stack, &change);
            if start < lo {
                self.regions.insert(start, Region { end: lo, ..region });
            }
            if hi < region.end {
                self.regions.insert(hi, region);
            }
        }
    }

    /// Adds `change` to `stack`'s counters and the totals, saturating: a
    /// crafted trace can map more than 2^64 bytes in all.
    fn count(&mut self, stack: u32, change: &Counters) {
        let add = |c: &mut Counters| {
            c.allocs = c.allocs.saturating_add(change.allocs);
            c.alloc_bytes = c.alloc_bytes.saturating_add(change.alloc_bytes);
            c.frees = c.frees.saturating_add(change.frees);
            c.free_bytes = c.free_bytes.saturating_add(change.free_bytes);
        };
        add(self.per_stack.entry(stack).or_default());
        add(&mut self.totals);
    }

    /// Moves to a snapshot's point (`seq`, made by `trigger`): for the exit
    /// snapshot the end of the trace (calls after the heap's last event
    /// count), else just after event `seq`.
    pub fn seek_snapshot(&mut self, trigger: &Trigger, seq: u64) -> &Self {
        match trigger {
            Trigger::Exit { .. } => self.seek(u64::MAX),
            _ => self.seek(seq),
        }
    }

    /// Counters per stack id, for every stack that has mapped memory.
    pub fn stacks(&self) -> impl Iterator<Item = (u32, Counters)> + '_ {
        self.per_stack.iter().map(|(&s, &c)| (s, c))
    }

    /// Totals over all stacks.
    pub fn totals(&self) -> &Counters {
        &self.totals
    }

    /// Bytes mapped now.
    pub fn mapped_bytes(&self) -> u64 {
        self.totals.inuse_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(seq: u64, op: MappingOp, addr: u64, len: u64, stack: u32) -> Mapping {
        Mapping::new(seq, op, addr, len, stack)
    }

    #[test]
    fn cuts_remaps_and_overlays_are_counted_once() {
        let maps = [
            m(1, MappingOp::Map, 0x10000, 0x4000, 1),
            // Cut a hole out of the middle: two regions remain.
            m(2, MappingOp::Unmap, 0x11000, 0x1000, 0),
            // Moved: the old range's bytes freed, the new ones allocated.
            Mapping {
                old_addr: 0x12000,
                old_len: 0x2000,
                ..m(3, MappingOp::Remap, 0x40000, 0x3000, 2)
            },
            // MAP_FIXED over the first region: replaces it.
            m(4, MappingOp::Map, 0x10000, 0x1000, 3),
            m(5, MappingOp::Grow, 0x90000, 0x2000, 4),
            m(6, MappingOp::Shrink, 0x91000, 0x1000, 0),
        ];
        let mut mem = MappedMemory::new(&maps);
        assert_eq!(mem.seek(1).mapped_bytes(), 0x4000);
        assert_eq!(mem.seek(2).mapped_bytes(), 0x3000);
        assert_eq!(mem.seek(3).mapped_bytes(), 0x1000 + 0x3000);
        assert_eq!(mem.seek(4).mapped_bytes(), 0x1000 + 0x3000);
        let by_stack: BTreeMap<u32, Counters> = mem.stacks().collect();
        assert_eq!(by_stack[&1].inuse_bytes(), 0);
        assert_eq!(by_stack[&1].frees, 3);
        assert_eq!(by_stack[&3].inuse_bytes(), 0x1000);
        assert_eq!(mem.seek(6).mapped_bytes(), 0x1000 + 0x3000 + 0x1000);
        // Going back starts over.
        assert_eq!(mem.seek(1).mapped_bytes(), 0x4000);
    }
}
