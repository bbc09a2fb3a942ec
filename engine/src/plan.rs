//! What snapshots to write: the rules a user chose, parsed from the
//! command line.

use crate::interval_rules::Thresholds;
use heapreplay_format::signals::{parse_signal, signal_name};
use heapreplay_format::{Marker, MarkerSource};

/// Which markers make snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkerFilter {
    /// Every marker.
    All,
    /// Markers placed by this signal.
    Signal(i32),
    /// Markers placed by `heapreplay_marker(name)` with this name.
    Named(String),
    /// Every named marker (gperftools' `HeapProfilerDump(reason)` places
    /// one).
    AnyNamed,
}

impl MarkerFilter {
    /// Parses `all`, a signal (`usr2`, `SIGUSR2`, `12`, `rtmin+3`) or a marker name.
    /// Text that looks like a signal but is none is refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("empty marker name".into());
        }
        if t.eq_ignore_ascii_case("all") {
            return Ok(Self::All);
        }
        if let Some(n) = parse_signal(t) {
            return Ok(Self::Signal(n));
        }
        let upper = t.to_ascii_uppercase();
        if upper.starts_with("SIG")
            || upper.starts_with("RTM")
            || t.chars().all(|c| c.is_ascii_digit())
        {
            return Err(format!(
                "'{t}' is not a signal (use a name such as usr2, SIGUSR2, 12 or rtmin+3)"
            ));
        }
        Ok(Self::Named(t.to_string()))
    }

    /// True if `m` is selected.
    pub fn matches(&self, m: &Marker) -> bool {
        match (self, &m.source) {
            // The profiler's starts and stops are controls, not moments.
            (Self::All, MarkerSource::ProfilerStart(_) | MarkerSource::ProfilerStop) => false,
            (Self::All, _) => true,
            (Self::Signal(n), MarkerSource::Signal(s)) => n == s,
            (Self::Named(n), MarkerSource::Named(s)) => n == s,
            (Self::AnyNamed, MarkerSource::Named(_)) => true,
            _ => false,
        }
    }

    /// How it is shown to people.
    pub fn describe(&self) -> String {
        match self {
            Self::All => "all markers".into(),
            Self::Signal(n) => signal_name(*n),
            Self::Named(n) => format!("'{n}'"),
            Self::AnyNamed => "named markers".into(),
        }
    }
}

/// How a marker is shown: `SIGUSR2` or `'phase 2'`.
pub fn marker_label(m: &Marker) -> String {
    match &m.source {
        MarkerSource::Signal(n) => signal_name(*n),
        MarkerSource::Named(n) => format!("'{n}'"),
        MarkerSource::ProfilerStart(prefix) => format!("HeapProfilerStart('{prefix}')"),
        MarkerSource::ProfilerStop => "HeapProfilerStop".into(),
    }
}

/// A point in time asked for with `--at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimePoint {
    /// Nanoseconds after the start of recording.
    Offset(u64),
    /// Wall-clock nanoseconds since the Unix epoch.
    Absolute(u64),
}

impl TimePoint {
    /// Parses an offset (`30s`, `1.5s`, `500ms`, `2m`, `1h`; a bare number is
    /// seconds) or an absolute time (`2026-11-27T15:04:05Z`, `2026-11-27 15:04:05`, UTC).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.contains('-') && t.contains(':') {
            let when = humantime::parse_rfc3339_weak(t)
                .map_err(|e| format!("'{t}' is not a time: {e}"))?;
            let ns = when
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|_| format!("'{t}' is before 1970"))?
                .as_nanos() as u64;
            return Ok(Self::Absolute(ns));
        }
        parse_duration_ns(t).map(Self::Offset)
    }

    /// Nanoseconds after the start of a recording that started at `start_unix_ns`.
    pub fn offset_ns(&self, start_unix_ns: u64) -> Option<u64> {
        match *self {
            Self::Offset(ns) => Some(ns),
            Self::Absolute(ns) => ns.checked_sub(start_unix_ns),
        }
    }
}

/// Parses a duration: a number (fractions allowed) and a unit among `ns`,
/// `us`, `ms`, `s`, `m`, `h`; a bare number is seconds. Zero is allowed here;
/// callers that need a positive value check.
pub fn parse_duration_ns(text: &str) -> Result<u64, String> {
    if text.starts_with('-') {
        return Err(format!(
            "'{text}' is negative: a duration must be greater than zero"
        ));
    }
    let (num, unit) = crate::units::split_number(text);
    let value: f64 = num.parse().map_err(|_| {
        format!("'{text}' is not a duration: expected a number and a unit, such as 30s or 500ms")
    })?;
    let scale = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "" | "s" | "sec" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        other => {
            return Err(format!(
                "'{text}' has an unknown unit '{other}': use ms, s, m or h"
            ))
        }
    };
    let ns = value * scale;
    if !ns.is_finite() || ns >= u64::MAX as f64 {
        return Err(format!("'{text}' is too long"));
    }
    Ok(ns.round() as u64)
}

/// One point of a trace named on the command line (`top --at`, `diff --from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Point {
    /// The end of the trace.
    End,
    /// Where in-use bytes were highest.
    Peak,
    /// A time (`30s`, `2026-11-27T15:04:05Z`; `start` is 0).
    Time(TimePoint),
    /// The `nth` (from 1) marker matching the filter (`marker:usr2`, `marker:usr2#3`).
    Marker(MarkerFilter, usize),
}

impl Point {
    /// Parses `end`, `peak`, `start`, a time, or `marker:NAME[#N]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        match t.to_ascii_lowercase().as_str() {
            "end" | "exit" => return Ok(Self::End),
            "peak" => return Ok(Self::Peak),
            "start" => return Ok(Self::Time(TimePoint::Offset(0))),
            _ => {}
        }
        if let Some(rest) = t.strip_prefix("marker:") {
            let (name, nth) = match rest.rsplit_once('#') {
                Some((name, n)) => {
                    let n: usize = n.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                        format!("'{t}': after # comes which marker, counting from 1")
                    })?;
                    (name, n)
                }
                None => (rest, 1),
            };
            return Ok(Self::Marker(MarkerFilter::parse(name)?, nth));
        }
        TimePoint::parse(t).map(Self::Time).map_err(|e| {
            format!("{e} (a point is end, peak, start, a time such as 30s, or marker:NAME[#N])")
        })
    }

    /// How it is shown to people, with the time it turned out to be.
    pub fn describe_at(&self, ns: u64) -> String {
        match self {
            Self::Time(TimePoint::Offset(_)) => self.describe(),
            _ => format!("{} ({})", self.describe(), crate::clock::seconds(ns)),
        }
    }

    /// How it is shown to people.
    pub fn describe(&self) -> String {
        match self {
            Self::Time(TimePoint::Offset(0)) => "the start".into(),
            Self::End => "the end".into(),
            Self::Peak => "the peak".into(),
            Self::Time(TimePoint::Offset(ns)) => crate::clock::seconds(*ns),
            Self::Time(TimePoint::Absolute(_)) => "the given time".into(),
            Self::Marker(f, n) => format!("{} marker #{n}", f.describe()),
        }
    }
}

/// The snapshots asked for.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// gperftools' interval rules.
    pub thresholds: Thresholds,
    /// Markers that make snapshots.
    pub markers: Vec<MarkerFilter>,
    /// Points in time.
    pub at: Vec<TimePoint>,
    /// One snapshot where in-use bytes peak.
    pub peak: bool,
    /// A snapshot at the end of the trace.
    pub exit: bool,
    /// Count only while gperftools' profiler runs: the program's
    /// `HeapProfilerStop` and `HeapProfilerStart` (see [`crate::windows`]).
    pub profiler_windows: bool,
}

impl Plan {
    /// True if only gperftools' own rules (or none) were asked for: the
    /// end-of-trace dump is then written as gperftools writes it at exit.
    pub fn gperftools_only(&self) -> bool {
        self.markers.is_empty() && self.at.is_empty() && !self.peak
    }

    /// True if any of gperftools' interval rules is on: their state at a
    /// point depends on every event before it, so a pass for this plan
    /// starts at the beginning, never at a checkpoint.
    pub fn has_interval_rules(&self) -> bool {
        self.thresholds != Thresholds::default()
    }

    /// True if the state at a point depends on every event before it (the
    /// interval rules, the profiler's starts and stops): a pass for this
    /// plan starts at the beginning, never at a checkpoint.
    pub fn needs_every_event(&self) -> bool {
        self.has_interval_rules() || self.profiler_windows
    }

    /// Whether to write the dump at the end of the trace.
    pub fn wants_exit(&self) -> bool {
        self.exit || self.gperftools_only()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_parse() {
        assert_eq!(MarkerFilter::parse("usr2"), Ok(MarkerFilter::Signal(12)));
        assert_eq!(MarkerFilter::parse("SIGUSR2"), Ok(MarkerFilter::Signal(12)));
        assert_eq!(MarkerFilter::parse("rtmin+3"), Ok(MarkerFilter::Signal(37)));
        assert_eq!(MarkerFilter::parse("All"), Ok(MarkerFilter::All));
        assert_eq!(
            MarkerFilter::parse("after warm-up"),
            Ok(MarkerFilter::Named("after warm-up".into()))
        );
        assert!(MarkerFilter::parse("SIGFOO")
            .unwrap_err()
            .contains("not a signal"));
        assert!(MarkerFilter::parse("99")
            .unwrap_err()
            .contains("not a signal"));
        assert!(MarkerFilter::parse("rtmin+99").is_err());
    }

    #[test]
    fn points_parse() {
        assert_eq!(Point::parse("end"), Ok(Point::End));
        assert_eq!(Point::parse("Peak"), Ok(Point::Peak));
        assert_eq!(Point::parse("start"), Ok(Point::Time(TimePoint::Offset(0))));
        assert_eq!(
            Point::parse("marker:usr2#3"),
            Ok(Point::Marker(MarkerFilter::Signal(12), 3))
        );
        assert_eq!(
            Point::parse("marker:phase 2"),
            Ok(Point::Marker(MarkerFilter::Named("phase 2".into()), 1))
        );
        assert!(Point::parse("marker:usr2#0").is_err());
        assert!(Point::parse("tomorrow").unwrap_err().contains("a point is"));
    }

    #[test]
    fn durations_and_times_parse() {
        assert_eq!(parse_duration_ns("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration_ns("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_duration_ns("2m"), Ok(120_000_000_000));
        assert_eq!(parse_duration_ns("3"), Ok(3_000_000_000));
        assert!(parse_duration_ns("3 fortnights")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_duration_ns("soon")
            .unwrap_err()
            .contains("not a duration"));
        assert_eq!(
            TimePoint::parse("30s"),
            Ok(TimePoint::Offset(30_000_000_000))
        );
        assert_eq!(
            TimePoint::parse("1970-01-01T00:01:00Z"),
            Ok(TimePoint::Absolute(60_000_000_000))
        );
        assert_eq!(
            TimePoint::Absolute(60_000_000_000).offset_ns(10_000_000_000),
            Some(50_000_000_000)
        );
    }
}
