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

fn range(line: &str) -> Option<(u64, u64)> {
    let field = line.split_whitespace().next()?;
    let (a, b) = field.split_once('-')?;
    Some((
        u64::from_str_radix(a, 16).ok()?,
        u64::from_str_radix(b, 16).ok()?,
    ))
}

fn overlaps(map: &BTreeMap<u64, (u64, &str)>, lo: u64, hi: u64) -> Vec<u64> {
    map.range(..hi)
        .filter(|(_, (end, _))| *end > lo)
        .map(|(&start, _)| start)
        .collect()
}

/// The maps text for a snapshot at `seq`, built from `records` (sorted by seq).
pub fn maps_at(records: &[MapsRecord], seq: u64) -> String {
    let split = records.partition_point(|m| m.seq <= seq);
    let (before, after) = records.split_at(split);
    let mut map: BTreeMap<u64, (u64, &str)> = BTreeMap::new();
    // Older to newer: a newer line replaces what it overlaps.
    for rec in before {
        for line in rec.text.lines() {
            if let Some((lo, hi)) = range(line) {
                for start in overlaps(&map, lo, hi) {
                    map.remove(&start);
                }
                map.insert(lo, (hi, line));
            }
        }
    }
    // Later records only fill gaps.
    for rec in after {
        for line in rec.text.lines() {
            if let Some((lo, hi)) = range(line) {
                if overlaps(&map, lo, hi).is_empty() {
                    map.insert(lo, (hi, line));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, text: &str) -> MapsRecord {
        MapsRecord {
            seq,
            text: text.to_string(),
        }
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
}
