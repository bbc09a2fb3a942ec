//! Placing events in time: clock samples map sequence numbers to
//! nanoseconds since the start of recording; times between samples are
//! interpolated.

use heapreplay_format::ClockSample;

/// Answers "when did the event with this seq happen" for ascending seqs.
#[derive(Clone)]
pub struct SeqClock<'a> {
    samples: &'a [ClockSample],
    cursor: usize,
}

impl<'a> SeqClock<'a> {
    /// A clock over samples sorted by (seq, ns).
    pub fn new(samples: &'a [ClockSample]) -> Self {
        Self { samples, cursor: 0 }
    }

    /// Nanoseconds since the start for `seq`. Calls must come with
    /// non-decreasing `seq` (the cursor only moves forward).
    pub fn ns_at(&mut self, seq: u64) -> u64 {
        let s = self.samples;
        if s.is_empty() {
            return 0;
        }
        while self.cursor + 1 < s.len() && s[self.cursor + 1].seq <= seq {
            self.cursor += 1;
        }
        let a = s[self.cursor];
        if seq < a.seq {
            return a.ns;
        }
        // The first later sample with a larger seq bounds the event in time.
        let Some(b) = s[self.cursor + 1..].iter().find(|b| b.seq > seq) else {
            return a.ns;
        };
        let span = (b.seq - a.seq) as u128;
        a.ns + (((b.ns - a.ns) as u128 * (seq - a.seq) as u128) / span) as u64
    }
}

/// Formats nanoseconds as seconds for people: `0.250 s`, `12.3 s`, `95 s`.
pub fn seconds(ns: u64) -> String {
    let s = ns as f64 / 1e9;
    if s < 10.0 {
        format!("{s:.3} s")
    } else if s < 100.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.0} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_between_samples() {
        let samples = [
            ClockSample { seq: 0, ns: 0 },
            ClockSample { seq: 100, ns: 1000 },
            ClockSample { seq: 100, ns: 2000 },
            ClockSample { seq: 200, ns: 4000 },
        ];
        let mut c = SeqClock::new(&samples);
        assert_eq!(c.ns_at(0), 0);
        assert_eq!(c.ns_at(50), 500);
        assert_eq!(c.ns_at(100), 2000);
        assert_eq!(c.ns_at(150), 3000);
        assert_eq!(c.ns_at(500), 4000);
    }
}
