//! gperftools' heap-profile dump rules (HEAP_PROFILE_*_INTERVAL), reproduced
//! exactly: checked after every allocation and every free (as gperftools
//! 2.10's hooks do), first matching rule wins, and the same state updates
//! after every rule dump. Dumps from other sources (signals, markers, exit)
//! leave this state alone, as in gperftools.
//!
//! One deliberate difference: the time rule counts from the start of
//! recording, where gperftools 2.10 starts its clock at the Unix epoch (so
//! its first time dump comes at the very first allocation).

use crate::heap::Counters;

/// The thresholds; 0 turns a rule off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Thresholds {
    /// HEAP_PROFILE_ALLOCATION_INTERVAL: bytes allocated since the last dump.
    pub alloc_interval: u64,
    /// HEAP_PROFILE_DEALLOCATION_INTERVAL: bytes freed since the last dump.
    pub dealloc_interval: u64,
    /// HEAP_PROFILE_INUSE_INTERVAL: in-use growth over the high-water mark.
    pub inuse_interval: u64,
    /// HEAP_PROFILE_TIME_INTERVAL: time since the last time dump, in ns.
    pub time_interval_ns: u64,
}

/// Why a dump happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The allocation interval was crossed.
    Allocated {
        /// Total bytes allocated.
        alloc_bytes: u64,
        /// Bytes in use.
        inuse_bytes: u64,
    },
    /// The deallocation interval was crossed.
    Freed {
        /// Total bytes freed.
        free_bytes: u64,
        /// Bytes in use.
        inuse_bytes: u64,
    },
    /// In-use bytes rose past the high-water mark plus the interval.
    InUse {
        /// Bytes in use.
        inuse_bytes: u64,
    },
    /// The time interval passed.
    Time {
        /// Nanoseconds since the last time dump.
        ns: u64,
        /// Print fractions of a second (the interval is not whole seconds).
        fractional: bool,
    },
    /// The end of the trace.
    Exit {
        /// Bytes in use.
        inuse_bytes: u64,
    },
}

impl Reason {
    /// The text gperftools logs for this reason.
    pub fn text(&self) -> String {
        match *self {
            Reason::Allocated {
                alloc_bytes,
                inuse_bytes,
            } => format!(
                "{} MB allocated cumulatively, {} MB currently in use",
                alloc_bytes >> 20,
                inuse_bytes >> 20
            ),
            Reason::Freed {
                free_bytes,
                inuse_bytes,
            } => format!(
                "{} MB freed cumulatively, {} MB currently in use",
                free_bytes >> 20,
                inuse_bytes >> 20
            ),
            Reason::InUse { inuse_bytes } => format!("{} MB currently in use", inuse_bytes >> 20),
            Reason::Time {
                ns,
                fractional: false,
            } => {
                format!("{} sec since the last dump", ns / 1_000_000_000)
            }
            Reason::Time {
                ns,
                fractional: true,
            } => {
                format!("{:.3} sec since the last dump", ns as f64 / 1e9)
            }
            Reason::Exit { inuse_bytes } => {
                if inuse_bytes >> 20 > 0 {
                    format!("Exiting, {} MB in use", inuse_bytes >> 20)
                } else if inuse_bytes >> 10 > 0 {
                    format!("Exiting, {} kB in use", inuse_bytes >> 10)
                } else {
                    format!("Exiting, {inuse_bytes} bytes in use")
                }
            }
        }
    }
}

/// True if `now` has reached `interval` (on) past `last`: the allocation,
/// deallocation and time rules. Saturating: an interval near 2^64 is never
/// crossed.
fn crosses(interval: u64, now: u64, last: u64) -> bool {
    interval > 0 && now >= last.saturating_add(interval)
}

/// True if in-use bytes `inuse` are over `interval` (on) past the
/// high-water mark `high`: the in-use rule.
fn rises_past(interval: u64, inuse: u64, high: u64) -> bool {
    interval > 0 && inuse > high.saturating_add(interval)
}

/// The dump state gperftools keeps between checks.
#[derive(Debug, Clone, Copy, Default)]
pub struct DumpRules {
    thresholds: Thresholds,
    last_dump_alloc: u64,
    last_dump_free: u64,
    high_water_mark: u64,
    last_dump_ns: u64,
}

impl DumpRules {
    /// Rules with the given thresholds, state at zero.
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            thresholds,
            ..Self::default()
        }
    }

    /// True if the time rule is on (events then need their times).
    pub fn needs_time(&self) -> bool {
        self.thresholds.time_interval_ns > 0
    }

    /// The check after an allocation or a free: returns the reason to dump,
    /// if any, and updates the state as gperftools does after dumping.
    /// `now_ns` is the event's time since the start of recording.
    pub fn check(&mut self, totals: &Counters, now_ns: u64) -> Option<Reason> {
        let t = &self.thresholds;
        let inuse_bytes = totals.inuse_bytes();
        let reason = if crosses(t.alloc_interval, totals.alloc_bytes, self.last_dump_alloc) {
            Reason::Allocated {
                alloc_bytes: totals.alloc_bytes,
                inuse_bytes,
            }
        } else if crosses(t.dealloc_interval, totals.free_bytes, self.last_dump_free) {
            Reason::Freed {
                free_bytes: totals.free_bytes,
                inuse_bytes,
            }
        } else if rises_past(t.inuse_interval, inuse_bytes, self.high_water_mark) {
            Reason::InUse { inuse_bytes }
        } else if t.time_interval_ns > 0
            && now_ns.saturating_sub(self.last_dump_ns) >= t.time_interval_ns
        {
            let since = now_ns - self.last_dump_ns;
            self.last_dump_ns = now_ns;
            Reason::Time {
                ns: since,
                fractional: !t.time_interval_ns.is_multiple_of(1_000_000_000),
            }
        } else {
            return None;
        };
        self.dumped(totals);
        Some(reason)
    }

    /// True if no rule fires at any event of a run that starts at `totals`,
    /// changes them by `change`, raises in-use bytes by at most `rise`
    /// above where they start, and ends at `last_ns`: every counter and the
    /// time only grow within it, so its end (and its highest in-use point)
    /// decide.
    pub fn quiet_through(
        &self,
        totals: &Counters,
        change: &Counters,
        rise: u64,
        last_ns: u64,
    ) -> bool {
        let t = &self.thresholds;
        let alloc = totals.alloc_bytes.saturating_add(change.alloc_bytes);
        let free = totals.free_bytes.saturating_add(change.free_bytes);
        let high = totals.inuse_bytes().saturating_add(rise);
        !(crosses(t.alloc_interval, alloc, self.last_dump_alloc)
            || crosses(t.dealloc_interval, free, self.last_dump_free)
            || rises_past(t.inuse_interval, high, self.high_water_mark)
            || crosses(t.time_interval_ns, last_ns, self.last_dump_ns))
    }

    /// Counts time from `ns` (since the start of recording), as if a dump
    /// had been made then.
    pub fn timed_from(&mut self, ns: u64) {
        self.last_dump_ns = ns;
    }

    /// State update after any dump.
    pub fn dumped(&mut self, totals: &Counters) {
        self.last_dump_alloc = totals.alloc_bytes;
        self.last_dump_free = totals.free_bytes;
        self.high_water_mark = self.high_water_mark.max(totals.inuse_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(alloc: u64, free: u64) -> Counters {
        Counters {
            allocs: 1,
            alloc_bytes: alloc,
            frees: 0,
            free_bytes: free,
        }
    }

    #[test]
    fn allocation_interval_fires_at_threshold_and_rebases() {
        let mut r = DumpRules::new(Thresholds {
            alloc_interval: 100,
            ..Default::default()
        });
        assert_eq!(r.check(&totals(99, 0), 0), None);
        assert!(matches!(
            r.check(&totals(100, 0), 0),
            Some(Reason::Allocated { .. })
        ));
        assert_eq!(r.check(&totals(199, 0), 0), None);
        assert!(r.check(&totals(200, 0), 0).is_some());
    }

    #[test]
    fn exit_reason_text_matches_gperftools() {
        assert_eq!(
            Reason::Exit {
                inuse_bytes: 3 << 20
            }
            .text(),
            "Exiting, 3 MB in use"
        );
        assert_eq!(
            Reason::Exit { inuse_bytes: 4096 }.text(),
            "Exiting, 4 kB in use"
        );
        assert_eq!(
            Reason::Exit { inuse_bytes: 12 }.text(),
            "Exiting, 12 bytes in use"
        );
        assert_eq!(
            Reason::Allocated {
                alloc_bytes: 10 << 20,
                inuse_bytes: 5 << 20
            }
            .text(),
            "10 MB allocated cumulatively, 5 MB currently in use"
        );
    }
}
