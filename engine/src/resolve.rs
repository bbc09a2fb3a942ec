//! Resolving frees to the blocks they free.
//!
//! A recorded free names only an address. Replaying it needs the size and
//! stack of the block allocated there, which means a map of live blocks:
//! the costliest part of a replay (a probe that misses the cache on nearly
//! every event). The trace pass keeps the one map and hands on resolved
//! events, so that what follows (per-stack counters, snapshot rules, the
//! peak, exported events) is plain arithmetic with no map of its own.
//!
//! Resolved events keep `Alloc` and `Free`, with these meanings:
//! - a free of a live block carries that block's `size` and `stack`;
//! - a free of an address not live (allocated before recording started, or
//!   by a path the recorder could not see) has `size` 0 and `stack`
//!   [`UNKNOWN_STACK`]; a replay ignores it, as gperftools does;
//! - an allocation at an address still live (its free was never seen) is
//!   preceded by a `Retire` event with the same sequence number, carrying
//!   the old block's size and stack.

use heapreplay_format::hash::AddrHash;
use heapreplay_format::{Event, EventKind};
use std::collections::HashMap;

/// The stack of a resolved free whose address was not live.
pub const UNKNOWN_STACK: u32 = u32::MAX;

/// The stack of the block a resolved `Free` or `Retire` freed (its size is
/// `e.size`); `None` for allocations and for frees of addresses not live.
#[inline]
pub fn freed_stack(e: &Event) -> Option<u32> {
    (e.kind != EventKind::Alloc && e.stack != UNKNOWN_STACK).then_some(e.stack)
}

/// The live blocks: address to (size, stack).
#[derive(Default, Clone)]
pub struct Resolver {
    live: HashMap<u64, (u64, u32), AddrHash>,
}

impl Resolver {
    /// The live blocks: (address, size, stack), in no particular order.
    pub fn blocks(&self) -> impl Iterator<Item = (u64, u64, u32)> + '_ {
        self.live
            .iter()
            .map(|(&addr, &(size, stack))| (addr, size, stack))
    }

    /// Live blocks, counted.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// True when no block is live.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// A resolver holding these live blocks: (address, size, stack).
    pub fn with_blocks(blocks: impl IntoIterator<Item = (u64, u64, u32)>) -> Self {
        let blocks = blocks.into_iter();
        let mut live = HashMap::with_capacity_and_hasher(blocks.size_hint().0, AddrHash);
        live.extend(blocks.map(|(addr, size, stack)| (addr, (size, stack))));
        Self { live }
    }

    /// Adds live blocks: (address, size, stack).
    pub fn add(&mut self, blocks: impl IntoIterator<Item = (u64, u64, u32)>) {
        self.live.extend(
            blocks
                .into_iter()
                .map(|(addr, size, stack)| (addr, (size, stack))),
        );
    }

    /// Resolves the next recorded event in sequence order, in place; returns
    /// the `Retire` event to hand on before it, if it overwrites a live block.
    #[inline]
    pub fn resolve(&mut self, e: &mut Event) -> Option<Event> {
        match e.kind {
            EventKind::Alloc => {
                let (size, stack) = self.live.insert(e.addr, (e.size, e.stack))?;
                Some(Event {
                    kind: EventKind::Retire,
                    size,
                    stack,
                    ..*e
                })
            }
            EventKind::Free => {
                (e.size, e.stack) = self.live.remove(&e.addr).unwrap_or((0, UNKNOWN_STACK));
                None
            }
            EventKind::Retire => None,
        }
    }
}

/// Resolves a whole sequence of recorded events at once (tests, and the
/// in-memory replay of [`crate::snapshots::run`]).
pub fn resolve_all(events: &[Event]) -> Vec<Event> {
    let mut resolver = Resolver::default();
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        let mut e = *e;
        out.extend(resolver.resolve(&mut e));
        out.push(e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, kind: EventKind, addr: u64, size: u64, stack: u32) -> Event {
        Event {
            seq,
            addr,
            size,
            stack,
            kind,
        }
    }

    #[test]
    fn frees_carry_their_block_and_overwrites_retire_it() {
        let out = resolve_all(&[
            ev(1, EventKind::Alloc, 0x10, 24, 3),
            ev(2, EventKind::Free, 0x10, 0, 0),
            ev(3, EventKind::Free, 0x20, 0, 0),
            ev(4, EventKind::Alloc, 0x30, 8, 1),
            ev(5, EventKind::Alloc, 0x30, 16, 2),
        ]);
        assert_eq!(
            out,
            vec![
                ev(1, EventKind::Alloc, 0x10, 24, 3),
                ev(2, EventKind::Free, 0x10, 24, 3),
                ev(3, EventKind::Free, 0x20, 0, UNKNOWN_STACK),
                ev(4, EventKind::Alloc, 0x30, 8, 1),
                ev(5, EventKind::Retire, 0x30, 8, 1),
                ev(5, EventKind::Alloc, 0x30, 16, 2),
            ]
        );
    }
}
