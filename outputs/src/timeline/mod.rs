//! In-use heap bytes over time: a [`Timeline`] keeps a bounded number of
//! points however long the trace, with markers and snapshots; [`chart`]
//! (feature `chart`) draws it as SVG or PNG.

#[cfg(feature = "chart")]
pub mod chart;

/// How many time buckets [`Timeline::new`] cuts the duration into.
pub const DEFAULT_BUCKETS: usize = 2000;

/// One time bucket: the highest, lowest and last value pushed in it, each
/// with its time, so spikes and dips stay visible after the thinning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    index: u64,
    max: (u64, u64),
    min: (u64, u64),
    last: (u64, u64),
}

impl Bucket {
    fn new(index: u64, ns: u64, bytes: u64) -> Self {
        Bucket {
            index,
            max: (ns, bytes),
            min: (ns, bytes),
            last: (ns, bytes),
        }
    }

    fn add(&mut self, ns: u64, bytes: u64) {
        // Time never goes backwards inside the plot.
        let ns = ns.max(self.last.0);
        if bytes > self.max.1 {
            self.max = (ns, bytes);
        }
        if bytes < self.min.1 {
            self.min = (ns, bytes);
        }
        self.last = (ns, bytes);
    }
}

/// A labelled point in time: a marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// Nanoseconds since the start of recording.
    pub ns: u64,
    /// What to write next to it (`SIGUSR2`, `'phase 2'`).
    pub label: String,
}

/// A snapshot point drawn on the curve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotMark {
    /// Nanoseconds since the start of recording.
    pub ns: u64,
    /// Bytes in use at the snapshot.
    pub bytes: u64,
    /// Why the snapshot was taken.
    pub label: String,
}

/// In-use bytes over time, thinned to at most a fixed number of buckets
/// (the highest, lowest and last value of each are kept), with markers,
/// snapshot points and the peak. Memory does not grow with the trace.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// The window drawn: from `start_ns` (0: the start of recording)...
    start_ns: u64,
    /// ...to `end_ns`.
    end_ns: u64,
    /// Bytes in use at `start_ns`: the last value pushed before it.
    at_start: u64,
    bucket_ns: u64,
    max_buckets: u64,
    buckets: Vec<Bucket>,
    markers: Vec<Mark>,
    snapshots: Vec<SnapshotMark>,
    /// One bit per bucket: a snapshot is kept there.
    snapshot_buckets: Vec<u64>,
    merged_snapshots: u64,
    peak: Option<(u64, u64)>,
    /// Memory the program mapped itself, over the same window, if it was
    /// recorded (`HEAP_PROFILE_MMAP`).
    mapped: Option<Box<Timeline>>,
}

impl Timeline {
    /// A timeline over `end_ns` nanoseconds in [`DEFAULT_BUCKETS`] buckets.
    pub fn new(end_ns: u64) -> Self {
        Self::with_buckets(end_ns, DEFAULT_BUCKETS)
    }

    /// A timeline over `end_ns` nanoseconds in at most `buckets` buckets.
    pub fn with_buckets(end_ns: u64, buckets: usize) -> Self {
        Self::window(0, end_ns, buckets)
    }

    /// A timeline of the window from `start_ns` to `end_ns` (nanoseconds
    /// since the start of recording) in at most `buckets` buckets. Values
    /// pushed before the window set the level it starts at; markers and
    /// snapshots before it are left out (those after it, in the last
    /// bucket: a caller drawing a window leaves them out).
    pub fn window(start_ns: u64, end_ns: u64, buckets: usize) -> Self {
        let max_buckets = buckets.max(1) as u64;
        let end_ns = end_ns.max(start_ns);
        Timeline {
            start_ns,
            end_ns,
            at_start: 0,
            bucket_ns: (end_ns - start_ns).div_ceil(max_buckets).max(1),
            max_buckets,
            buckets: Vec::new(),
            markers: Vec::new(),
            snapshots: Vec::new(),
            snapshot_buckets: vec![0; max_buckets.div_ceil(64) as usize],
            merged_snapshots: 0,
            peak: None,
            mapped: None,
        }
    }

    /// Adds the memory the program mapped itself, as a second curve over
    /// the same window.
    pub fn set_mapped(&mut self, mapped: Timeline) {
        self.mapped = Some(Box::new(mapped));
    }

    /// The mapped-memory curve, if there is one.
    pub fn mapped(&self) -> Option<&Timeline> {
        self.mapped.as_deref()
    }

    fn bucket_of(&self, ns: u64) -> u64 {
        (ns.saturating_sub(self.start_ns) / self.bucket_ns).min(self.max_buckets - 1)
    }

    fn outside(&self, ns: u64) -> bool {
        ns < self.start_ns
    }

    /// Records `bytes` in use at `ns` (after an event). Times should not go
    /// backwards; one that does counts in the latest bucket.
    pub fn push(&mut self, ns: u64, bytes: u64) {
        if ns < self.start_ns {
            self.at_start = bytes;
            return;
        }
        if self.peak.is_none_or(|(_, peak)| bytes > peak) {
            self.peak = Some((ns, bytes));
        }
        let index = self.bucket_of(ns);
        match self.buckets.last_mut() {
            Some(b) if b.index >= index => b.add(ns, bytes),
            _ => self.buckets.push(Bucket::new(index, ns, bytes)),
        }
    }

    /// Adds a marker line.
    pub fn marker(&mut self, ns: u64, label: String) {
        if self.outside(ns) {
            return;
        }
        self.markers.push(Mark { ns, label });
    }

    /// Adds a snapshot point with `bytes` in use. Only the first snapshot
    /// given in each bucket is kept (the rest are counted), so that the
    /// number of points stays bounded.
    pub fn snapshot(&mut self, ns: u64, bytes: u64, label: String) {
        if self.outside(ns) {
            return;
        }
        let index = self.bucket_of(ns) as usize;
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        if self.snapshot_buckets[word] & bit != 0 {
            self.merged_snapshots += 1;
            return;
        }
        self.snapshot_buckets[word] |= bit;
        let at = self.snapshots.partition_point(|s| s.ns <= ns);
        self.snapshots.insert(at, SnapshotMark { ns, bytes, label });
    }

    /// Where the window drawn ends, in nanoseconds since the start.
    pub fn end_ns(&self) -> u64 {
        self.end_ns
    }

    /// Where the window drawn starts, in nanoseconds since the start.
    pub fn start_ns(&self) -> u64 {
        self.start_ns
    }

    /// The highest in-use bytes pushed and when they were first reached:
    /// `(ns, bytes)`; `None` before any push.
    pub fn peak(&self) -> Option<(u64, u64)> {
        self.peak
    }

    /// The markers, as added.
    pub fn markers(&self) -> &[Mark] {
        &self.markers
    }

    /// The snapshot points kept, in time order.
    pub fn snapshots(&self) -> &[SnapshotMark] {
        &self.snapshots
    }

    /// Snapshots not kept because an earlier one fell in the same bucket.
    pub fn merged_snapshots(&self) -> u64 {
        self.merged_snapshots
    }

    /// How many buckets hold values (never more than asked for).
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// The curve as `(ns, bytes)` corners of a step line: it starts at
    /// the window's start (at 0 bytes for the whole run), holds each value
    /// until the next one, and ends at the window's end.
    pub fn points(&self) -> Vec<(u64, u64)> {
        let mut out = vec![(self.start_ns, self.at_start)];
        let mut current = self.at_start;
        let mut step = |out: &mut Vec<(u64, u64)>, (ns, bytes): (u64, u64)| {
            if bytes != current {
                if out.last() != Some(&(ns, current)) {
                    out.push((ns, current));
                }
                out.push((ns, bytes));
                current = bytes;
            }
        };
        for b in &self.buckets {
            let mut inner = [b.max, b.min];
            inner.sort_by_key(|&(ns, _)| ns);
            for p in inner {
                step(&mut out, p);
            }
            step(&mut out, b.last);
        }
        let last_ns = out.last().map_or(0, |p| p.0);
        let end = self.end_ns.max(last_ns);
        if end > last_ns {
            out.push((end, current));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bucket_keeps_its_max_and_last() {
        // 10 buckets of 100 ns.
        let mut t = Timeline::with_buckets(1000, 10);
        for (ns, bytes) in [(0, 10), (10, 50), (20, 5), (30, 20)] {
            t.push(ns, bytes);
        }
        t.push(150, 30);
        assert_eq!(t.buckets(), 2);
        let points = t.points();
        assert_eq!(
            points,
            vec![
                (0, 0),
                (10, 0),
                (10, 50),
                (20, 50),
                (20, 5),
                (30, 5),
                (30, 20),
                (150, 20),
                (150, 30),
                (1000, 30)
            ]
        );
        assert_eq!(t.peak(), Some((10, 50)));
    }

    #[test]
    fn a_single_spike_survives_thinning() {
        let mut t = Timeline::with_buckets(1_000_000, 10);
        for ns in 0..1_000_000 {
            let bytes = if ns == 123_456 { 1 << 30 } else { 100 };
            t.push(ns, bytes);
        }
        assert!(t.points().contains(&(123_456, 1 << 30)));
        assert_eq!(t.peak(), Some((123_456, 1 << 30)));
    }

    #[test]
    fn the_size_is_bounded() {
        let mut t = Timeline::with_buckets(1_000_000_000, 100);
        let mut bytes = 0u64;
        for i in 0..2_000_000u64 {
            // A saw-tooth, with times past the end folded into the last bucket.
            bytes = if i % 7 == 0 {
                bytes / 2
            } else {
                bytes + i % 1000
            };
            t.push(i * 600, bytes);
            if i % 1000 == 0 {
                t.snapshot(i * 600, bytes, format!("snap {i}"));
            }
        }
        assert_eq!(t.buckets(), 100);
        // A start, two corners per value kept (max, min, last), an end.
        assert!(t.points().len() <= 2 + 2 * 3 * 100, "{}", t.points().len());
        assert!(t.snapshots().len() <= 100);
        assert_eq!(t.snapshots().len() as u64 + t.merged_snapshots(), 2000);
        let last = *t.points().last().unwrap();
        assert_eq!(last, (1_199_999_400, bytes));
    }

    #[test]
    fn snapshots_are_kept_in_time_order_one_per_bucket() {
        let mut t = Timeline::with_buckets(1000, 10);
        t.snapshot(500, 1, "b".into());
        t.snapshot(100, 2, "a".into());
        t.snapshot(150, 3, "same bucket as a".into());
        t.snapshot(999, 4, "c".into());
        t.snapshot(5000, 5, "past the end: the last bucket".into());
        let labels: Vec<&str> = t.snapshots().iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["a", "b", "c"]);
        assert_eq!(t.merged_snapshots(), 2);
    }

    #[test]
    fn an_empty_timeline_is_flat() {
        let t = Timeline::new(0);
        assert_eq!(t.points(), vec![(0, 0)]);
        assert_eq!(t.peak(), None);
    }
}
