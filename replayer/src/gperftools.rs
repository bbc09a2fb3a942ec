//! A trace recorded under gperftools' variables (`HEAPPROFILE`,
//! `HEAP_PROFILE_*_INTERVAL`, `HEAPPROFILESIGNAL`), replayed with no rule of
//! our own, writes what gperftools would have written: its rules with its
//! defaults, its file names and its reasons.

use crate::cli::RuleArgs;
use heapreplay_engine::interval_rules::Thresholds;
use heapreplay_engine::plan::{MarkerFilter, Plan};
use heapreplay_engine::snapshots::Trigger;
use heapreplay_format::settings::{env_to_int, Settings};
use std::path::PathBuf;

/// gperftools' defaults: a dump every 1 GiB allocated, and whenever in-use
/// bytes pass the high-water mark by 100 MiB.
const ALLOCATION_INTERVAL: i64 = 1 << 30;
const INUSE_INTERVAL: i64 = 100 << 20;

/// What a replay does as gperftools would.
pub struct AsGperftools {
    /// Its rules, the signal and the dump at exit.
    pub plan: Plan,
    /// The profiles' prefix (`HEAPPROFILE`, as the recorder resolved it).
    pub prefix: PathBuf,
}

/// The replay the trace's `settings` ask for, if it was recorded with
/// `HEAPPROFILE` and `rules` asks for nothing.
pub fn from_settings(settings: &Settings, rules: &RuleArgs) -> Option<AsGperftools> {
    let prefix = settings.get("HEAPPROFILE").filter(|p| !p.is_empty())?;
    if asks_anything(rules) {
        return None;
    }
    let interval = |name: &str, default: i64| -> u64 {
        let value = settings.get(name).map_or(default, env_to_int);
        value.max(0) as u64
    };
    let seconds = interval("HEAP_PROFILE_TIME_INTERVAL", 0);
    let signal = settings.profile_signal();
    Some(AsGperftools {
        plan: Plan {
            thresholds: Thresholds {
                alloc_interval: interval("HEAP_PROFILE_ALLOCATION_INTERVAL", ALLOCATION_INTERVAL),
                dealloc_interval: interval("HEAP_PROFILE_DEALLOCATION_INTERVAL", 0),
                inuse_interval: interval("HEAP_PROFILE_INUSE_INTERVAL", INUSE_INTERVAL),
                time_interval_ns: seconds.saturating_mul(1_000_000_000),
            },
            // HeapProfilerDump(reason) calls are named markers.
            markers: signal
                .map(MarkerFilter::Signal)
                .into_iter()
                .chain([MarkerFilter::AnyNamed])
                .collect(),
            at: Vec::new(),
            peak: false,
            exit: true,
            // HeapProfilerStop and HeapProfilerStart bound what counts.
            profiler_windows: true,
        },
        prefix: PathBuf::from(prefix),
    })
}

/// True if `rules` asks for any snapshot of its own.
fn asks_anything(rules: &RuleArgs) -> bool {
    rules.interval.is_some()
        || rules.dealloc_interval.is_some()
        || rules.inuse_interval.is_some()
        || rules.time_interval.is_some()
        || !rules.at_marker.is_empty()
        || !rules.at.is_empty()
        || rules.at_peak
        || rules.at_exit
}

/// The reason gperftools logs for a dump: a signal's dump is `signal`, one
/// of `HeapProfilerDump(reason)` its reason; its own rules and the exit as
/// ours.
pub fn reason(trigger: &Trigger) -> String {
    match trigger {
        Trigger::Marker { label, .. } => match label.strip_prefix('\'') {
            Some(name) => name.strip_suffix('\'').unwrap_or(name).to_string(),
            None => "signal".to_string(),
        },
        other => other.reason(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_variables_make_gperftools_plan_and_names() {
        let settings = Settings::from_lookup(|name| match name {
            "HEAPPROFILE" => Some("/tmp/app".into()),
            "HEAP_PROFILE_ALLOCATION_INTERVAL" => Some("10000000".into()),
            "HEAP_PROFILE_TIME_INTERVAL" => Some("2".into()),
            "HEAPPROFILESIGNAL" => Some("12".into()),
            _ => None,
        });
        let g = from_settings(&settings, &RuleArgs::default()).unwrap();
        assert_eq!(g.prefix, PathBuf::from("/tmp/app"));
        let t = g.plan.thresholds;
        assert_eq!(t.alloc_interval, 10_000_000);
        assert_eq!(t.inuse_interval, 100 << 20, "gperftools' default");
        assert_eq!(t.dealloc_interval, 0);
        assert_eq!(t.time_interval_ns, 2_000_000_000);
        assert_eq!(
            g.plan.markers,
            vec![MarkerFilter::Signal(12), MarkerFilter::AnyNamed]
        );
        assert!(g.plan.exit);
        // A rule of our own on the command line: ours, not the recorded ones.
        let ours = RuleArgs {
            interval: Some(1 << 20),
            ..RuleArgs::default()
        };
        assert!(from_settings(&settings, &ours).is_none());
        // No HEAPPROFILE: nothing to do as gperftools.
        assert!(from_settings(&Settings::default(), &RuleArgs::default()).is_none());
    }
}
