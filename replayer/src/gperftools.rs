//! A trace recorded under gperftools' variables (`HEAPPROFILE`,
//! `HEAP_PROFILE_*_INTERVAL`, `HEAPPROFILESIGNAL`), replayed with no rule of
//! our own, writes what gperftools would have written: its rules with its
//! defaults, its file names and its reasons.

use crate::cli::RuleArgs;
use heapreplay_engine::interval_rules::Thresholds;
use heapreplay_engine::plan::{MarkerFilter, Plan};
use heapreplay_engine::snapshots::Trigger;
use heapreplay_format::settings::Settings;
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
    let signal = settings
        .get("HEAPPROFILESIGNAL")
        .map(env_to_int)
        .filter(|&n| (1..=64).contains(&n));
    Some(AsGperftools {
        plan: Plan {
            thresholds: Thresholds {
                alloc_interval: interval("HEAP_PROFILE_ALLOCATION_INTERVAL", ALLOCATION_INTERVAL),
                dealloc_interval: interval("HEAP_PROFILE_DEALLOCATION_INTERVAL", 0),
                inuse_interval: interval("HEAP_PROFILE_INUSE_INTERVAL", INUSE_INTERVAL),
                time_interval_ns: seconds.saturating_mul(1_000_000_000),
            },
            markers: signal
                .map(|n| MarkerFilter::Signal(n as i32))
                .into_iter()
                .collect(),
            at: Vec::new(),
            peak: false,
            exit: true,
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

/// A number as gperftools reads one from the environment (`strtoll` in
/// base 10): leading blanks, a sign, then digits up to the first other
/// character; 0 if there are none. Saturates past the range.
pub fn env_to_int(text: &str) -> i64 {
    let t = text.trim_start();
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut value: i64 = 0;
    for d in digits.bytes().take_while(u8::is_ascii_digit) {
        let d = i64::from(d - b'0');
        value = value.saturating_mul(10).saturating_add(d);
    }
    if negative {
        -value
    } else {
        value
    }
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
    fn numbers_read_as_strtoll_reads_them() {
        assert_eq!(env_to_int("10000000"), 10_000_000);
        assert_eq!(env_to_int("  12abc"), 12);
        assert_eq!(env_to_int("10MB"), 10);
        assert_eq!(env_to_int("-5"), -5);
        assert_eq!(env_to_int("x"), 0);
        assert_eq!(env_to_int(""), 0);
        assert_eq!(env_to_int("99999999999999999999999"), i64::MAX);
    }

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
        assert_eq!(g.plan.markers, vec![MarkerFilter::Signal(12)]);
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
