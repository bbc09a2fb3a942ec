//! What a resolved compacted run does to the heap as a whole: per-stack
//! changes, their sums, and how high in-use bytes rose inside it. A replay
//! with nothing to do between the run's first and last event (no snapshot,
//! no rule crossed) applies the run at once instead of event by event.
//!
//! Summaries are made on the decoding threads; the serial replay only adds
//! them up.

use crate::heap::Counters;
use heapreplay_format::events::{Retired, LINK_RESOLVED};
use heapreplay_format::{Event, EventKind};
use std::cell::RefCell;
use std::ops::Range;

/// Stack ids above this are not summarized (they are dense and small in
/// every trace that opens: see [`crate::stack_ids`]; this bounds the table).
const MAX_STACK: u32 = 1 << 24;

/// A part of a resolved compacted run, summed up (see the module header).
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// The seq of its first event.
    pub first_seq: u64,
    /// The seq of its last event.
    pub last_seq: u64,
    /// Per stack: how its counters change.
    pub per_stack: Vec<(u32, Counters)>,
    /// The sums of `per_stack`.
    pub totals: Counters,
    /// The most that in-use bytes rise above where they stood before the
    /// run, after any of its events (0 if they never rise).
    pub rise: u64,
    /// Frees of addresses no block of the trace holds (see
    /// [`crate::heap::Heap::unseen_frees`]).
    pub unseen_frees: u64,
    /// Per stack: the blocks the run frees or retires that it did not
    /// allocate itself (objects, bytes).
    pub(crate) earlier: Vec<(u32, u64, u64)>,
    /// Where its events are in their run.
    pub(crate) range: Range<usize>,
}

impl RunSummary {
    /// Its events.
    pub fn events(&self) -> u64 {
        self.range.len() as u64
    }
}

/// One stack's share of a run, while it is summed up.
#[derive(Debug, Clone, Copy, Default)]
struct Share {
    counters: Counters,
    earlier_objects: u64,
    earlier_bytes: u64,
}

impl Share {
    /// Counts a free of `size` bytes; `earlier`: of a block allocated
    /// before the run. `None` if a byte count overflows (crafted sizes).
    fn free(&mut self, size: u64, earlier: bool) -> Option<()> {
        self.counters.frees += 1;
        self.counters.free_bytes = self.counters.free_bytes.checked_add(size)?;
        if earlier {
            self.earlier_objects += 1;
            self.earlier_bytes = self.earlier_bytes.checked_add(size)?;
        }
        Some(())
    }
}

/// Events per summary: a run is summed up in parts this long, so that a
/// snapshot inside one costs only that part event by event.
const PART: usize = 1 << 13;

/// The stacks' shares of the part being summed up, and which were touched;
/// the size each free in the part frees, if its block was allocated there.
struct Table {
    shares: Vec<Share>,
    touched: Vec<u32>,
    pending: Vec<u64>,
}

thread_local! {
    /// Each decoding thread's table, kept from one record to the next (it
    /// is as long as the largest stack id seen).
    static TABLE: RefCell<Table> = RefCell::new(Table {
        shares: Vec::new(),
        touched: Vec::new(),
        pending: vec![0; PART],
    });
}

impl Table {
    /// Forgets the part being summed up.
    fn clear(&mut self) {
        for id in self.touched.drain(..) {
            self.shares[id as usize] = Share::default();
        }
    }

    /// The share of `stack`; `None` if its id is out of bounds.
    fn share(&mut self, stack: u32) -> Option<&mut Share> {
        if stack > MAX_STACK {
            return None;
        }
        let id = stack as usize;
        if id >= self.shares.len() {
            self.shares.resize(id + 1, Share::default());
        }
        let s = &mut self.shares[id];
        if s.counters.allocs == 0 && s.counters.frees == 0 {
            self.touched.push(stack);
        }
        Some(s)
    }
}

/// Sums up a resolved compacted run in parts of [`PART`] events: `events`
/// with their `links` and the blocks `retired` names, as [`super::pass`]
/// replays them without live blocks. Empty if a stack id is past
/// [`MAX_STACK`] or a byte count overflows (the run then goes event by
/// event).
pub(super) fn summarize(events: &[Event], links: &[u32], retired: &[Retired]) -> Vec<RunSummary> {
    summarize_by(events, links, retired, PART)
}

/// [`summarize`] in parts of `part` events (at most [`PART`]).
fn summarize_by(
    events: &[Event],
    links: &[u32],
    retired: &[Retired],
    part: usize,
) -> Vec<RunSummary> {
    TABLE.with_borrow_mut(|table| {
        let mut retired = retired.iter().peekable();
        let mut parts = Vec::with_capacity(events.len().div_ceil(part));
        for begin in (0..events.len()).step_by(part) {
            let range = begin..(begin + part).min(events.len());
            match summarize_part(events, links, &mut retired, range, table) {
                Some(part) => parts.push(part),
                None => {
                    table.clear();
                    return Vec::new();
                }
            }
        }
        parts
    })
}

/// Sums up `events[range]` (see [`summarize`]), with `table` empty.
fn summarize_part<'a>(
    events: &[Event],
    links: &[u32],
    retired: &mut std::iter::Peekable<impl Iterator<Item = &'a Retired>>,
    range: Range<usize>,
    table: &mut Table,
) -> Option<RunSummary> {
    let (mut inuse, mut rise) = (0i128, 0i128);
    let mut unseen_frees = 0;
    for i in range.clone() {
        let e = &events[i];
        if let Some(&(_, (size, stack))) = retired.next_if(|r| r.0 as usize == i) {
            table.share(stack)?.free(size, true)?;
            inuse -= i128::from(size);
        }
        match (e.kind, links[i]) {
            (EventKind::Alloc, ahead) => {
                let s = table.share(e.stack)?;
                s.counters.allocs += 1;
                s.counters.alloc_bytes = s.counters.alloc_bytes.checked_add(e.size)?;
                inuse += i128::from(e.size);
                // Freed in this part: its free counted now, where its size
                // and stack are at hand.
                let freed_at = i + ahead as usize;
                if ahead != 0 && freed_at < range.end {
                    s.free(e.size, false)?;
                    table.pending[freed_at - range.start] = e.size;
                }
            }
            (EventKind::Free, LINK_RESOLVED) => {
                table.share(e.stack)?.free(e.size, true)?;
                inuse -= i128::from(e.size);
            }
            // A free of no block the run knows: it frees nothing.
            (EventKind::Free, 0) => unseen_frees += 1,
            // Its block, allocated in this part: counted there.
            (EventKind::Free, back) if i - range.start >= back as usize => {
                inuse -= i128::from(table.pending[i - range.start]);
            }
            (EventKind::Free, back) => {
                // Its block, allocated before this part.
                let at = i.checked_sub(back as usize)?;
                let freed = &events[at];
                table.share(freed.stack)?.free(freed.size, true)?;
                inuse -= i128::from(freed.size);
            }
            (EventKind::Retire, _) => return None,
        }
        rise = rise.max(inuse);
    }
    let mut summary = RunSummary {
        first_seq: events[range.start].seq,
        last_seq: events[range.end - 1].seq,
        rise: rise as u64,
        unseen_frees,
        range,
        ..RunSummary::default()
    };
    for id in table.touched.drain(..) {
        let s = std::mem::take(&mut table.shares[id as usize]);
        let c = s.counters;
        summary.per_stack.push((id, c));
        let t = &mut summary.totals;
        t.allocs += c.allocs;
        t.alloc_bytes = t.alloc_bytes.checked_add(c.alloc_bytes)?;
        t.frees += c.frees;
        t.free_bytes = t.free_bytes.checked_add(c.free_bytes)?;
        if s.earlier_objects > 0 {
            summary
                .earlier
                .push((id, s.earlier_objects, s.earlier_bytes));
        }
    }
    Some(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::{resolve_all, UNKNOWN_STACK};
    use heapreplay_format::events::{decode_compacted, encode_compacted, Block};
    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashMap};

    /// Recorded events from ops over 12 addresses: allocations (over a live
    /// block too, as a realloc in place that the recorder missed would be),
    /// frees (of a block not live too).
    fn recorded(ops: &[(bool, usize, u64)]) -> Vec<Event> {
        ops.iter()
            .enumerate()
            .map(|(i, &(alloc, slot, size))| Event {
                seq: i as u64 + 1,
                addr: 0x1000 + slot as u64 * 16,
                size: if alloc { size } else { 0 },
                stack: if alloc { 1 + (size % 4) as u32 } else { 0 },
                kind: if alloc {
                    EventKind::Alloc
                } else {
                    EventKind::Free
                },
            })
            .collect()
    }

    /// What one part of recorded events does, from the resolved events (as
    /// the replay resolves them through live blocks): per-stack counters,
    /// the highest rise of in-use bytes, and per stack the blocks freed or
    /// retired that the part did not allocate.
    type Expected = (Vec<(u32, Counters)>, u64, Vec<(u32, u64, u64)>);

    fn expected(resolved: &[Event], part: usize) -> Vec<Expected> {
        let mut out = Vec::new();
        let (mut per_stack, mut earlier) = (BTreeMap::new(), BTreeMap::new());
        let (mut inuse, mut rise) = (0i128, 0i128);
        // Where each live address was allocated (recorded index).
        let mut born: HashMap<u64, usize> = HashMap::new();
        let mut index = 0;
        let mut start = 0;
        for e in resolved {
            let c: &mut Counters = per_stack.entry(e.stack).or_default();
            match e.kind {
                EventKind::Alloc => {
                    c.allocs += 1;
                    c.alloc_bytes += e.size;
                    inuse += i128::from(e.size);
                    born.insert(e.addr, index);
                }
                _ if e.stack == UNKNOWN_STACK => {}
                _ => {
                    c.frees += 1;
                    c.free_bytes += e.size;
                    inuse -= i128::from(e.size);
                    if born.remove(&e.addr).is_none_or(|at| at < start) {
                        let x: &mut (u64, u64) = earlier.entry(e.stack).or_default();
                        *x = (x.0 + 1, x.1 + e.size);
                    }
                }
            }
            if e.kind == EventKind::Retire {
                continue;
            }
            rise = rise.max(inuse);
            index += 1;
            if index % part == 0
                || index
                    == resolved
                        .iter()
                        .filter(|e| e.kind != EventKind::Retire)
                        .count()
            {
                per_stack.retain(|_, c: &mut Counters| c.allocs + c.frees > 0);
                out.push((
                    std::mem::take(&mut per_stack).into_iter().collect(),
                    rise as u64,
                    std::mem::take(&mut earlier)
                        .into_iter()
                        .map(|(s, (o, b))| (s, o, b))
                        .collect(),
                ));
                (inuse, rise, start) = (0, 0, index);
            }
        }
        out
    }

    proptest! {
        #[test]
        fn parts_of_an_encoded_record_sum_what_its_resolved_events_do(
            ops in proptest::collection::vec((any::<bool>(), 0usize..12, 1u64..1000), 1..200),
            part in 1usize..40,
        ) {
            let events = recorded(&ops);
            let resolved = resolve_all(&events);
            // The blocks a compacted record names, as compaction finds them.
            let (mut blocks, mut retiring) = (Vec::<Option<Block>>::new(), None);
            for e in &resolved {
                match e.kind {
                    EventKind::Retire => retiring = Some((e.size, e.stack)),
                    EventKind::Alloc => blocks.push(retiring.take()),
                    EventKind::Free => {
                        blocks.push((e.stack != UNKNOWN_STACK).then_some((e.size, e.stack)))
                    }
                }
            }
            let payload = encode_compacted(&events, |i| blocks[i]);
            let (mut decoded, mut links, mut retired) = (Vec::new(), Vec::new(), Vec::new());
            let last = events.len() as u64;
            decode_compacted(&payload, 1, last, last as u32, &mut decoded, &mut links, &mut retired)
                .unwrap();
            let parts = summarize_by(&decoded, &links, &retired, part);
            let want = expected(&resolved, part);
            prop_assert_eq!(parts.len(), want.len());
            for (p, (per_stack, rise, earlier)) in parts.iter().zip(want) {
                let mut got = p.per_stack.clone();
                got.sort_by_key(|s| s.0);
                prop_assert_eq!(&got, &per_stack);
                prop_assert_eq!(p.rise, rise);
                // What a part frees from before it is counted so, and
                // perhaps more (a retirement or a free of a block that
                // retired one is counted so even within the part): never
                // more than the part frees.
                let of = |list: &[(u32, u64, u64)], stack: u32| {
                    list.iter().find(|e| e.0 == stack).map_or((0, 0), |e| (e.1, e.2))
                };
                for &(stack, c) in &per_stack {
                    let (want, got) = (of(&earlier, stack), of(&p.earlier, stack));
                    prop_assert!(want.0 <= got.0 && want.1 <= got.1, "stack {}", stack);
                    prop_assert!(got.0 <= c.frees && got.1 <= c.free_bytes, "stack {}", stack);
                }
            }
        }
    }

    fn ev(seq: u64, kind: EventKind, size: u64, stack: u32) -> Event {
        Event {
            seq,
            addr: seq * 16,
            size,
            stack,
            kind,
        }
    }

    #[test]
    fn a_part_sums_what_its_events_do_one_by_one() {
        use EventKind::{Alloc, Free};
        let events = [
            ev(1, Alloc, 100, 1), // freed at 3 (paired)
            ev(2, Free, 40, 2),   // frees an earlier block of stack 2
            ev(3, Free, 0, 0),    // frees event 1
            ev(4, Alloc, 10, 2),  // retires an earlier block of stack 1
            ev(5, Free, 0, 0),    // frees nothing known
            ev(6, Alloc, 300, 1), // stays live
            ev(7, Free, 0, 0),    // frees event 6
        ];
        let links = [2, LINK_RESOLVED, 2, 0, 0, 1, 1];
        let retired = [(3, (25, 1))];
        let parts = summarize(&events, &links, &retired);
        assert_eq!(parts.len(), 1);
        let s = &parts[0];
        assert_eq!((s.first_seq, s.last_seq, s.events()), (1, 7, 7));
        assert_eq!(s.range, 0..7);
        let mut per_stack = s.per_stack.clone();
        per_stack.sort_by_key(|p| p.0);
        let c = |allocs, alloc_bytes, frees, free_bytes| Counters {
            allocs,
            alloc_bytes,
            frees,
            free_bytes,
        };
        assert_eq!(
            per_stack,
            vec![(1, c(2, 400, 3, 425)), (2, c(1, 10, 1, 40))]
        );
        assert_eq!(s.totals, c(3, 410, 4, 465));
        // In use, from the start: 100, 60, -40, -55, -55, 245, -55.
        assert_eq!(s.rise, 245);
        let mut earlier = s.earlier.clone();
        earlier.sort();
        assert_eq!(earlier, vec![(1, 1, 25), (2, 1, 40)]);
    }

    #[test]
    fn a_long_run_is_summed_in_parts_and_a_free_across_them_is_from_before() {
        let n = PART + 10;
        let mut events: Vec<Event> = (0..n as u64)
            .map(|i| ev(i + 1, EventKind::Alloc, 8, 3))
            .collect();
        let mut links = vec![0u32; n];
        // The first allocation is freed by the last event, in the next part.
        events[n - 1] = ev(n as u64, EventKind::Free, 0, 0);
        links[0] = (n - 1) as u32;
        links[n - 1] = (n - 1) as u32;
        let parts = summarize(&events, &links, &[]);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].range, 0..PART);
        assert_eq!(parts[1].range, PART..n);
        assert_eq!(parts[1].earlier, vec![(3, 1, 8)]);
        assert_eq!(parts[1].totals.frees, 1);
        assert_eq!(parts[0].totals.allocs, PART as u64);
        assert!(parts[0].earlier.is_empty());
    }

    #[test]
    fn an_id_out_of_bounds_or_sizes_that_overflow_are_not_summed() {
        let big = [ev(1, EventKind::Alloc, 8, MAX_STACK + 1)];
        assert!(summarize(&big, &[0], &[]).is_empty());
        let overflow = [
            ev(1, EventKind::Free, u64::MAX, 1),
            ev(2, EventKind::Free, 2, 1),
        ];
        let links = [LINK_RESOLVED, LINK_RESOLVED];
        assert!(summarize(&overflow, &links, &[]).is_empty());
    }
}
