//! gperftools' heap-profile dump rules (HEAP_PROFILE_*_INTERVAL), reproduced
//! exactly: checked after each allocation, first matching rule wins, and the
//! same state updates after every dump.

use crate::replay::Counters;

/// The thresholds; 0 turns a rule off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Thresholds {
    /// HEAP_PROFILE_ALLOCATION_INTERVAL: bytes allocated since the last dump.
    pub alloc_interval: u64,
    /// HEAP_PROFILE_DEALLOCATION_INTERVAL: bytes freed since the last dump.
    pub dealloc_interval: u64,
    /// HEAP_PROFILE_INUSE_INTERVAL: in-use growth over the high-water mark.
    pub inuse_interval: u64,
    /// HEAP_PROFILE_TIME_INTERVAL: seconds since the last dump.
    pub time_interval_secs: u64,
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
        /// Seconds since the last dump.
        secs: u64,
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
            Reason::Time { secs } => format!("{secs} sec since the last dump"),
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

/// The dump state gperftools keeps between checks.
#[derive(Debug, Clone, Copy, Default)]
pub struct DumpRules {
    thresholds: Thresholds,
    last_dump_alloc: u64,
    last_dump_free: u64,
    high_water_mark: u64,
    last_dump_secs: u64,
}

impl DumpRules {
    /// Rules with the given thresholds, state at zero.
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            thresholds,
            ..Self::default()
        }
    }

    /// True if any rule is on.
    pub fn any(&self) -> bool {
        self.thresholds != Thresholds::default()
    }

    /// The check after an allocation: returns the reason to dump, if any,
    /// and updates the state as gperftools does after dumping. `secs` is
    /// whole seconds since the start of recording.
    pub fn after_alloc(&mut self, totals: &Counters, secs: u64) -> Option<Reason> {
        let t = &self.thresholds;
        let inuse_bytes = totals.inuse_bytes();
        let reason = if t.alloc_interval > 0
            && totals.alloc_bytes >= self.last_dump_alloc + t.alloc_interval
        {
            Reason::Allocated {
                alloc_bytes: totals.alloc_bytes,
                inuse_bytes,
            }
        } else if t.dealloc_interval > 0
            && totals.free_bytes >= self.last_dump_free + t.dealloc_interval
        {
            Reason::Freed {
                free_bytes: totals.free_bytes,
                inuse_bytes,
            }
        } else if t.inuse_interval > 0 && inuse_bytes > self.high_water_mark + t.inuse_interval {
            Reason::InUse { inuse_bytes }
        } else if t.time_interval_secs > 0
            && secs.saturating_sub(self.last_dump_secs) >= t.time_interval_secs
        {
            let since = secs - self.last_dump_secs;
            self.last_dump_secs = secs;
            Reason::Time { secs: since }
        } else {
            return None;
        };
        self.dumped(totals);
        Some(reason)
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
        assert_eq!(r.after_alloc(&totals(99, 0), 0), None);
        assert!(matches!(
            r.after_alloc(&totals(100, 0), 0),
            Some(Reason::Allocated { .. })
        ));
        assert_eq!(r.after_alloc(&totals(199, 0), 0), None);
        assert!(r.after_alloc(&totals(200, 0), 0).is_some());
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
