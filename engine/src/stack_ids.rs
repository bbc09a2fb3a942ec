//! Checking the stack ids that events name against the stacks the trace
//! defines.
//!
//! Per-stack counters are indexed by stack id, so an id must be small and
//! defined: a crafted id of 4294967295 would otherwise size a table for four
//! billion stacks. The recorder hands out ids densely from 1; a trace whose
//! ids are that dense keeps them, and any other is renumbered densely (in
//! ascending id order) when it is opened. Events naming an id that no Stacks
//! record defines get [`UNDEFINED_STACK`] and are reported as damage.

use heapreplay_format::{Event, EventKind};
use std::collections::HashMap;

/// The stack id given to allocations whose id no Stacks record defines.
/// The recorder never hands out 0, and a definition of 0 is refused.
pub const UNDEFINED_STACK: u32 = 0;

/// Ids up to this many past twice the number of stacks count as dense.
const DENSE_SLACK: u32 = 1024;

/// The defined stack ids, and how events' ids map onto them.
#[derive(Debug)]
pub enum StackIds {
    /// Ids kept as they are: a bit per id up to the largest.
    Dense(Vec<u64>),
    /// Sparse ids renumbered from 1 in ascending order.
    Renumbered(HashMap<u32, u32>),
}

impl StackIds {
    /// Builds the check from the defined stacks, renumbering `stacks` in
    /// place if their ids are sparse.
    pub fn new<V>(stacks: &mut HashMap<u32, V>) -> Self {
        let max = stacks.keys().copied().max().unwrap_or(0);
        let dense_limit = (stacks.len() as u32)
            .saturating_mul(2)
            .saturating_add(DENSE_SLACK);
        if max <= dense_limit {
            let mut bits = vec![0u64; max as usize / 64 + 1];
            for &id in stacks.keys() {
                bits[id as usize / 64] |= 1 << (id % 64);
            }
            return Self::Dense(bits);
        }
        let mut ids: Vec<u32> = stacks.keys().copied().collect();
        ids.sort_unstable();
        let renumber: HashMap<u32, u32> = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i as u32 + 1))
            .collect();
        *stacks = std::mem::take(stacks)
            .into_iter()
            .map(|(id, place)| (renumber[&id], place))
            .collect();
        Self::Renumbered(renumber)
    }

    /// True if ids are renumbered: [`StackIds::check_all`] then maps only
    /// the allocations' ids, and other ids an event names need [`StackIds::check`].
    pub fn renumbers(&self) -> bool {
        matches!(self, Self::Renumbered(_))
    }

    /// Gives each allocation in `events` the id it is replayed with (see
    /// [`StackIds::check`]); returns how many name an undefined id.
    pub fn check_all(&self, events: &mut [Event]) -> u64 {
        let mut undefined = 0;
        match self {
            Self::Dense(bits) => {
                for e in events {
                    let defined = bit(bits, e.stack);
                    let alloc = e.kind == EventKind::Alloc;
                    undefined += u64::from(alloc & !defined);
                    e.stack = if defined { e.stack } else { UNDEFINED_STACK };
                }
            }
            Self::Renumbered(_) => {
                for e in events.iter_mut().filter(|e| e.kind == EventKind::Alloc) {
                    e.stack = self.check(e.stack);
                    undefined += u64::from(e.stack == UNDEFINED_STACK);
                }
            }
        }
        undefined
    }

    /// The id an event naming `id` is replayed with: [`UNDEFINED_STACK`]
    /// if no Stacks record defines it.
    #[inline]
    pub fn check(&self, id: u32) -> u32 {
        match self {
            Self::Dense(bits) if bit(bits, id) => id,
            Self::Dense(_) => UNDEFINED_STACK,
            Self::Renumbered(map) => map.get(&id).copied().unwrap_or(UNDEFINED_STACK),
        }
    }
}

/// Whether `id`'s bit is set (ids past the end are not).
#[inline]
fn bit(bits: &[u64], id: u32) -> bool {
    let word = bits.get(id as usize / 64).copied().unwrap_or(0);
    word >> (id % 64) & 1 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(ids: &[u32]) -> HashMap<u32, Box<[u64]>> {
        ids.iter()
            .map(|&id| (id, vec![u64::from(id)].into()))
            .collect()
    }

    #[test]
    fn dense_ids_stay_and_undefined_ones_are_caught() {
        let mut stacks = table(&[1, 2, 3, 5]);
        let ids = StackIds::new(&mut stacks);
        assert!(matches!(ids, StackIds::Dense(_)));
        assert_eq!(ids.check(2), 2);
        assert_eq!(ids.check(4), UNDEFINED_STACK);
        assert_eq!(ids.check(u32::MAX), UNDEFINED_STACK);
        assert_eq!(stacks.len(), 4);
    }

    #[test]
    fn sparse_ids_are_renumbered_with_their_frames() {
        let mut stacks = table(&[7, 1 << 26, u32::MAX]);
        let ids = StackIds::new(&mut stacks);
        assert!(matches!(ids, StackIds::Renumbered(_)));
        assert_eq!(ids.check(7), 1);
        assert_eq!(ids.check(1 << 26), 2);
        assert_eq!(ids.check(u32::MAX), 3);
        assert_eq!(ids.check(8), UNDEFINED_STACK);
        assert_eq!(&*stacks[&3], &[u64::from(u32::MAX)]);
    }
}
