//! The memory maps to print with a snapshot.
//!
//! Maps are recorded at start and whenever the recorder notices that a
//! library was loaded. For a snapshot at sequence number `seq`, the newest
//! record at or before `seq` is the base; ranges that only older records
//! describe are kept (a library since unloaded still explains old stacks);
//! ranges that only a later record describes fill the remaining gaps (a
//! library loaded just before `seq`, noticed on the recorder's next tick).

use crate::trace::MapsRecord;
use std::collections::BTreeMap;

/// The address range of a maps line; `None` for a line that is not one
/// (or an empty or reversed range).
fn range(line: &str) -> Option<(u64, u64)> {
    let field = line.split_whitespace().next()?;
    let (a, b) = field.split_once('-')?;
    let (lo, hi) = (
        u64::from_str_radix(a, 16).ok()?,
        u64::from_str_radix(b, 16).ok()?,
    );
    (lo < hi).then_some((lo, hi))
}

/// The starts of the ranges in `map` that overlap `lo..hi`. The ranges in
/// `map` never overlap each other, so their ends ascend with their starts:
/// walking down from `hi`, the overlapping ones come first and the first
/// that ends at or below `lo` ends the search (O(log n + overlaps)).
fn overlaps(map: &BTreeMap<u64, (u64, String)>, lo: u64, hi: u64) -> Vec<u64> {
    map.range(..hi)
        .rev()
        .take_while(|(_, (end, _))| *end > lo)
        .map(|(&start, _)| start)
        .collect()
}

/// The maps text for a snapshot at `seq`, built from `records` (sorted by seq).
pub fn maps_at(records: &[MapsRecord], seq: u64) -> String {
    maps_after(records, records.partition_point(|m| m.seq <= seq))
}

/// The maps text for snapshots after the first `split` records: every
/// snapshot between two Maps records has the same one, so [`MapsCache`]
/// builds it once per record, not once per snapshot.
fn maps_after(records: &[MapsRecord], split: usize) -> String {
    let (before, after) = records.split_at(split);
    // Only the lines in effect are kept: one record's text at a time.
    let mut map: BTreeMap<u64, (u64, String)> = BTreeMap::new();
    // Older to newer: a newer line replaces what it overlaps.
    for rec in before {
        for line in rec.text().lines() {
            if let Some((lo, hi)) = range(line) {
                for start in overlaps(&map, lo, hi) {
                    map.remove(&start);
                }
                map.insert(lo, (hi, line.to_string()));
            }
        }
    }
    // Later records only fill gaps.
    for rec in after {
        for line in rec.text().lines() {
            if let Some((lo, hi)) = range(line) {
                if overlaps(&map, lo, hi).is_empty() {
                    map.insert(lo, (hi, line.to_string()));
                }
            }
        }
    }
    let mut out = String::with_capacity(map.len() * 100);
    for (_, line) in map.values() {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The maps text of the last snapshot, kept for the next one.
#[derive(Default)]
pub struct MapsCache {
    /// The split and the number of records the text was built from.
    split: Option<(usize, usize)>,
    text: String,
}

impl MapsCache {
    /// The maps text for a snapshot at `seq` (as [`maps_at`]).
    pub fn at(&mut self, records: &[MapsRecord], seq: u64) -> &str {
        let split = records.partition_point(|m| m.seq <= seq);
        if self.split != Some((split, records.len())) {
            self.text = maps_after(records, split);
            self.split = Some((split, records.len()));
        }
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, text: &str) -> MapsRecord {
        MapsRecord::new(seq, text)
    }

    #[test]
    fn newest_wins_older_survive_later_fill_gaps() {
        let records = vec![
            rec(
                0,
                "1000-2000 r-xp 0 00:00 0 /a\n3000-4000 r-xp 0 00:00 0 /old\n",
            ),
            rec(5, "1000-2000 r-xp 0 00:00 0 /a2\n"),
            rec(
                9,
                "3000-4000 r-xp 0 00:00 0 /new\n5000-6000 r-xp 0 00:00 0 /late\n",
            ),
        ];
        let text = maps_at(&records, 6);
        assert_eq!(
            text,
            "1000-2000 r-xp 0 00:00 0 /a2\n3000-4000 r-xp 0 00:00 0 /old\n5000-6000 r-xp 0 00:00 0 /late\n"
        );
    }

    #[test]
    fn a_maps_record_of_200k_lines_is_read() {
        let text: String = (0..200_000u64)
            .map(|i| {
                format!(
                    "{:x}-{:x} r-xp 0 00:00 0 /lib{i}\n",
                    i * 0x2000,
                    i * 0x2000 + 0x1000
                )
            })
            .collect();
        let records = vec![rec(0, &text), rec(5, &text)];
        // Quadratic work on 200k lines would take minutes.
        let out = maps_at(&records, 1);
        assert_eq!(out.lines().count(), 200_000);
    }

    #[test]
    fn reversed_ranges_are_not_lines() {
        let records = vec![rec(
            0,
            "2000-1000 r-xp 0 00:00 0 /bad\n1000-2000 r-xp 0 00:00 0 /a\n",
        )];
        assert_eq!(maps_at(&records, 0), "1000-2000 r-xp 0 00:00 0 /a\n");
    }
}
