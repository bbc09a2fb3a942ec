//! One pass over the ordered events that decides every snapshot point of a
//! plan (gperftools' rules, markers, times, the peak, the end) and hands the
//! heap at each point to a sink, in time order.

use crate::clock::{seconds, SeqClock};
use crate::plan::{marker_label, Plan};
use crate::replay::Heap;
use crate::rules::{DumpRules, Reason};
use heapreplay_format::hash::AddrHash;
use heapreplay_format::{ClockSample, Event, EventKind, Marker};
use std::collections::HashMap;

/// Why a snapshot was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// One of gperftools' interval rules.
    Rule(Reason),
    /// A marker.
    Marker {
        /// `SIGUSR2` or `'name'`.
        label: String,
        /// When, in ns since the start.
        ns: u64,
    },
    /// A point in time asked for with `--at`.
    At {
        /// Nanoseconds since the start.
        ns: u64,
    },
    /// Where in-use bytes were highest.
    Peak {
        /// Bytes in use.
        bytes: u64,
        /// When, in ns since the start.
        ns: u64,
    },
    /// The end of the trace.
    Exit {
        /// Bytes in use.
        inuse_bytes: u64,
        /// The process exited normally (else it was killed or is still running).
        clean: bool,
    },
}

impl Trigger {
    /// The reason as logged: gperftools' text for its own rules.
    pub fn reason(&self) -> String {
        match self {
            Trigger::Rule(r) => r.text(),
            Trigger::Marker { label, ns } => format!("marker {label} at {}", seconds(*ns)),
            Trigger::At { ns } => format!("at {}", seconds(*ns)),
            Trigger::Peak { bytes, ns } => {
                format!("peak: {} MB in use at {}", bytes >> 20, seconds(*ns))
            }
            Trigger::Exit {
                inuse_bytes,
                clean: true,
            } => Reason::Exit {
                inuse_bytes: *inuse_bytes,
            }
            .text(),
            Trigger::Exit {
                inuse_bytes,
                clean: false,
            } => format!(
                "end of trace, {} MB in use; the process did not exit",
                inuse_bytes >> 20
            ),
        }
    }

    /// The rule's part of the file name; `None` for gperftools' own dumps,
    /// which keep gperftools' names.
    pub fn tag(&self) -> Option<String> {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '+' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        match self {
            Trigger::Rule(_) | Trigger::Exit { .. } => None,
            Trigger::Marker { label, .. } => {
                Some(format!("marker-{}", clean(label.trim_matches('\''))))
            }
            Trigger::At { ns } => Some(format!("at-{}ms", ns / 1_000_000)),
            Trigger::Peak { .. } => Some("peak".into()),
        }
    }
}

/// What the pass found beyond the snapshots themselves.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Snapshots handed to the sink.
    pub snapshots: usize,
    /// `--at` points after the end of the trace (ns), which got no snapshot.
    pub past_end: Vec<u64>,
    /// Time of the last event, ns since the start.
    pub end_ns: u64,
}

/// Where in-use bytes peaked: (seq of the event after which, bytes).
pub fn find_peak(events: &[Event]) -> Option<(u64, u64)> {
    let mut live: HashMap<u64, u64, AddrHash> = HashMap::default();
    let (mut inuse, mut best) = (0u64, None::<(u64, u64)>);
    for e in events {
        match e.kind {
            EventKind::Alloc => {
                if let Some(old) = live.insert(e.addr, e.size) {
                    inuse -= old;
                }
                inuse += e.size;
                if best.is_none_or(|(_, b)| inuse > b) {
                    best = Some((e.seq, inuse));
                }
            }
            EventKind::Free => {
                if let Some(size) = live.remove(&e.addr) {
                    inuse -= size;
                }
            }
        }
    }
    best
}

/// Replays `events` and calls `sink(heap, trigger, seq)` at each snapshot
/// point of `plan`, in time order; `seq` says which maps apply. `clean_end`
/// says whether the trace ends with the process exiting.
pub fn run<E>(
    events: &[Event],
    markers: &[Marker],
    clock: &[ClockSample],
    start_unix_ns: u64,
    clean_end: bool,
    plan: &Plan,
    mut sink: impl FnMut(&Heap, &Trigger, u64) -> Result<(), E>,
) -> Result<Outcome, E> {
    let mut heap = Heap::new();
    let mut rules = DumpRules::new(plan.thresholds);
    let mut times = SeqClock::new(clock);
    let mut out = Outcome::default();
    let chosen: Vec<&Marker> = markers
        .iter()
        .filter(|m| plan.markers.iter().any(|f| f.matches(m)))
        .collect();
    let mut at: Vec<u64> = plan
        .at
        .iter()
        .filter_map(|t| t.offset_ns(start_unix_ns))
        .collect();
    at.sort_unstable();
    let peak = if plan.peak { find_peak(events) } else { None };
    let need_time = rules.needs_time() || !at.is_empty() || peak.is_some();
    let (mut next_marker, mut next_at) = (0, 0);
    let mut emit = |heap: &Heap, trigger: Trigger, seq: u64, out: &mut Outcome| {
        out.snapshots += 1;
        sink(heap, &trigger, seq)
    };
    for e in events {
        let ns = if need_time { times.ns_at(e.seq) } else { 0 };
        while let Some(m) = chosen.get(next_marker).filter(|m| m.seq < e.seq) {
            emit(
                &heap,
                Trigger::Marker {
                    label: marker_label(m),
                    ns: m.ns,
                },
                m.seq,
                &mut out,
            )?;
            next_marker += 1;
        }
        while let Some(&t) = at.get(next_at).filter(|&&t| t < ns) {
            emit(&heap, Trigger::At { ns: t }, e.seq, &mut out)?;
            next_at += 1;
        }
        // gperftools checks its rules after every allocation and every free.
        heap.apply(e);
        if let Some(reason) = rules.check(&heap.totals(), ns) {
            emit(&heap, Trigger::Rule(reason), e.seq, &mut out)?;
        }
        if let Some((seq, bytes)) = peak.filter(|&(seq, _)| seq == e.seq) {
            emit(&heap, Trigger::Peak { bytes, ns }, seq, &mut out)?;
        }
        out.end_ns = ns;
    }
    let last_seq = events.last().map_or(0, |e| e.seq);
    let end_ns = clock
        .iter()
        .map(|c| c.ns)
        .max()
        .unwrap_or(0)
        .max(out.end_ns);
    out.end_ns = end_ns;
    for m in &chosen[next_marker..] {
        emit(
            &heap,
            Trigger::Marker {
                label: marker_label(m),
                ns: m.ns,
            },
            m.seq,
            &mut out,
        )?;
    }
    for &t in &at[next_at..] {
        if t <= end_ns {
            emit(&heap, Trigger::At { ns: t }, last_seq, &mut out)?;
        } else {
            out.past_end.push(t);
        }
    }
    if plan.wants_exit() {
        let inuse_bytes = heap.totals().inuse_bytes();
        emit(
            &heap,
            Trigger::Exit {
                inuse_bytes,
                clean: clean_end,
            },
            last_seq,
            &mut out,
        )?;
    }
    Ok(out)
}
