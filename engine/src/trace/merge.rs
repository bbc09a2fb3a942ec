//! The k-way merge of decoded events records into sequence order.

use heapreplay_format::Event;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A k-way merge of runs that are each in sequence order. A sequence
/// number already handed on (it appears in two runs) is skipped and counted.
#[derive(Default)]
pub(super) struct Merge {
    runs: Vec<Vec<Event>>,
    /// The file offset of each run's record.
    offsets: Vec<u64>,
    free: Vec<usize>,
    heads: BinaryHeap<Reverse<(u64, usize, usize)>>,
    /// The last sequence number handed on.
    last: Option<u64>,
    /// Events skipped as duplicates, and the offset of the first's record.
    pub(super) duplicates: Option<(u64, u64)>,
}

impl Merge {
    pub(super) fn add(&mut self, run: Vec<Event>, offset: u64) {
        let Some(first) = run.first().map(|e| e.seq) else {
            return;
        };
        let slot = match self.free.pop() {
            Some(i) => {
                self.runs[i] = run;
                self.offsets[i] = offset;
                i
            }
            None => {
                self.runs.push(run);
                self.offsets.push(offset);
                self.runs.len() - 1
            }
        };
        self.heads.push(Reverse((first, slot, 0)));
    }

    /// True if `run` (in sequence order) can be handed on whole, bypassing
    /// the merge: every event before it has been handed on, none of its
    /// events was, and no run waiting in the merge holds any at or after
    /// its first. If so, the merge counts it as handed on.
    pub(super) fn pass_by(&mut self, run: &[Event]) -> bool {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return false;
        };
        if !self.heads.is_empty() || self.last.is_some_and(|l| l >= first.seq) {
            return false;
        }
        self.last = Some(last.seq);
        true
    }

    /// Hands every event below `seq` to `f`, in order.
    pub(super) fn drain_before<E>(
        &mut self,
        seq: u64,
        f: &mut impl FnMut(&Event) -> Result<(), E>,
    ) -> Result<(), E> {
        match seq.checked_sub(1) {
            Some(through) => self.drain_through(through, f),
            None => Ok(()),
        }
    }

    /// Hands every event at or below `through` to `f`, in order.
    pub(super) fn drain_through<E>(
        &mut self,
        through: u64,
        f: &mut impl FnMut(&Event) -> Result<(), E>,
    ) -> Result<(), E> {
        while let Some(&Reverse((seq, slot, idx))) = self.heads.peek() {
            if seq > through {
                break;
            }
            self.heads.pop();
            let run = &self.runs[slot];
            let mut j = idx;
            if let Some(last) = self.last.filter(|&last| seq <= last) {
                // Already handed on from another run: skip what overlaps.
                let skip = run[j..].partition_point(|e| e.seq <= last);
                j += skip;
                let d = self.duplicates.get_or_insert((0, self.offsets[slot]));
                d.0 += skip as u64;
            } else {
                // The head is the least of all heads: hand it on, then the
                // stretch of this run before the next run's head.
                f(&run[j])?;
                let next = self.heads.peek().map_or(u64::MAX, |Reverse((s, _, _))| *s);
                let limit = next.saturating_sub(1).min(through);
                j += 1;
                while j < run.len() && run[j].seq <= limit {
                    f(&run[j])?;
                    j += 1;
                }
                self.last = Some(run[j - 1].seq);
            }
            if j < run.len() {
                self.heads.push(Reverse((run[j].seq, slot, j)));
            } else {
                self.runs[slot] = Vec::new();
                self.free.push(slot);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heapreplay_format::EventKind;

    fn ev(seq: u64) -> Event {
        Event {
            seq,
            addr: seq,
            size: 1,
            stack: 1,
            kind: EventKind::Alloc,
        }
    }

    #[test]
    fn merge_interleaves_runs_by_sequence() {
        let mut m = Merge::default();
        m.add(vec![ev(1), ev(4), ev(5), ev(9)], 0);
        m.add(vec![ev(2), ev(3), ev(8)], 0);
        m.add(vec![], 0);
        let mut seqs = Vec::new();
        m.drain_through(5, &mut |e: &Event| -> Result<(), ()> {
            seqs.push(e.seq);
            Ok(())
        })
        .unwrap();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        m.add(vec![ev(6), ev(7)], 0);
        m.drain_through(u64::MAX, &mut |e: &Event| -> Result<(), ()> {
            seqs.push(e.seq);
            Ok(())
        })
        .unwrap();
        assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
    }

    fn drain_all(m: &mut Merge) -> Vec<u64> {
        let mut seqs = Vec::new();
        m.drain_through(u64::MAX, &mut |e: &Event| -> Result<(), ()> {
            seqs.push(e.seq);
            Ok(())
        })
        .unwrap();
        seqs
    }

    #[test]
    fn a_sequence_number_in_two_runs_is_handed_on_once() {
        let mut m = Merge::default();
        m.add(vec![ev(1), ev(2), ev(3)], 100);
        m.add(vec![ev(1), ev(2), ev(3)], 200);
        m.add(vec![ev(2), ev(4)], 300);
        assert_eq!(drain_all(&mut m), vec![1, 2, 3, 4]);
        assert_eq!(m.duplicates.map(|d| d.0), Some(4));
    }

    #[test]
    fn a_run_passes_by_only_when_nothing_overlaps_it() {
        let mut m = Merge::default();
        m.add(vec![ev(1), ev(5)], 0);
        assert!(!m.pass_by(&[ev(2), ev(3)]), "a run waits with 5");
        assert_eq!(drain_all(&mut m), vec![1, 5]);
        assert!(!m.pass_by(&[ev(4), ev(6)]), "4 comes before 5, handed on");
        assert!(m.pass_by(&[ev(6), ev(7)]));
        m.add(vec![ev(7), ev(8)], 9);
        assert_eq!(drain_all(&mut m), vec![8], "7 was handed on in the run");
        assert_eq!(m.duplicates, Some((1, 9)));
    }

    #[test]
    fn the_last_sequence_number_is_handed_on() {
        let mut m = Merge::default();
        m.add(vec![ev(u64::MAX - 1), ev(u64::MAX)], 0);
        m.add(vec![ev(u64::MAX)], 0);
        assert_eq!(drain_all(&mut m), vec![u64::MAX - 1, u64::MAX]);
    }
}
