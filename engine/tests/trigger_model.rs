//! The snapshotter against a straightforward model of gperftools' interval
//! rules (and of markers and the peak), on random event sequences.

use heapreplay_engine::heap::Counters;
use heapreplay_engine::interval_rules::{Reason, Thresholds};
use heapreplay_engine::plan::{MarkerFilter, Plan};
use heapreplay_engine::snapshots::{run, Trigger};
use heapreplay_format::{ClockSample, Event, EventKind, Marker, MarkerSource};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Alloc { slot: usize, size: u64 },
    Free { slot: usize },
    Mark,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(
        prop_oneof![
            6 => (0usize..24, 1u64..5000).prop_map(|(slot, size)| Op::Alloc { slot, size }),
            4 => (0usize..24).prop_map(|slot| Op::Free { slot }),
            1 => Just(Op::Mark),
        ],
        0..400,
    )
}

fn thresholds() -> impl Strategy<Value = Thresholds> {
    let interval = prop_oneof![Just(0u64), 1000u64..20000];
    (
        interval.clone(),
        interval.clone(),
        interval,
        prop_oneof![Just(0u64), 5_000u64..50_000],
    )
        .prop_map(|(a, d, i, t)| Thresholds {
            alloc_interval: a,
            dealloc_interval: d,
            inuse_interval: i,
            time_interval_ns: t,
        })
}

/// Events and markers: every op takes the next sequence number; an event's
/// time is 1000 ns per sequence number.
fn build(ops: &[Op]) -> (Vec<Event>, Vec<Marker>) {
    let (mut events, mut markers) = (Vec::new(), Vec::new());
    let mut live = [false; 24];
    for (seq, op) in ops.iter().enumerate() {
        let seq = seq as u64;
        match *op {
            Op::Alloc { slot, size } => {
                // Realloc-like reuse of a live slot is not possible in a real
                // heap: free first.
                if live[slot] {
                    continue;
                }
                live[slot] = true;
                events.push(Event {
                    seq,
                    addr: 0x1000 + slot as u64 * 16,
                    size,
                    stack: 1 + (slot % 3) as u32,
                    kind: EventKind::Alloc,
                });
            }
            Op::Free { slot } => {
                live[slot] = false;
                events.push(Event {
                    seq,
                    addr: 0x1000 + slot as u64 * 16,
                    size: 0,
                    stack: 0,
                    kind: EventKind::Free,
                });
            }
            Op::Mark => markers.push(Marker {
                seq,
                ns: seq * 1000,
                tid: 1,
                source: MarkerSource::Signal(12),
            }),
        }
    }
    (events, markers)
}

/// The model: gperftools' MaybeDumpProfileLocked after every event, written
/// as plainly as possible; markers before the next event; the peak after
/// the first event that reaches the highest in-use value.
fn model(events: &[Event], markers: &[Marker], t: &Thresholds, peak: bool) -> Vec<(u64, Trigger)> {
    let mut out = Vec::new();
    let mut sizes = std::collections::HashMap::new();
    let (mut alloc, mut freed) = (0u64, 0u64);
    let (mut last_alloc, mut last_free, mut hwm, mut last_time) = (0u64, 0u64, 0u64, 0u64);
    // First pass for the peak.
    let mut peak_at = None;
    {
        let mut live = std::collections::HashMap::new();
        let (mut inuse, mut best) = (0u64, 0u64);
        for e in events {
            if e.kind == EventKind::Alloc {
                live.insert(e.addr, e.size);
                inuse += e.size;
                if peak_at.is_none() || inuse > best {
                    best = inuse;
                    peak_at = Some((e.seq, inuse));
                }
            } else if let Some(s) = live.remove(&e.addr) {
                inuse -= s;
            }
        }
    }
    let mut m = 0;
    for e in events {
        while m < markers.len() && markers[m].seq < e.seq {
            out.push((
                markers[m].seq,
                Trigger::Marker {
                    label: "SIGUSR2".into(),
                    ns: markers[m].ns,
                },
            ));
            m += 1;
        }
        if e.kind == EventKind::Alloc {
            sizes.insert(e.addr, e.size);
            alloc += e.size;
        } else if let Some(s) = sizes.remove(&e.addr) {
            freed += s;
        }
        let inuse = alloc - freed;
        let now = e.seq * 1000;
        let reason = if t.alloc_interval > 0 && alloc >= last_alloc + t.alloc_interval {
            Some(Reason::Allocated {
                alloc_bytes: alloc,
                inuse_bytes: inuse,
            })
        } else if t.dealloc_interval > 0 && freed >= last_free + t.dealloc_interval {
            Some(Reason::Freed {
                free_bytes: freed,
                inuse_bytes: inuse,
            })
        } else if t.inuse_interval > 0 && inuse > hwm + t.inuse_interval {
            Some(Reason::InUse { inuse_bytes: inuse })
        } else if t.time_interval_ns > 0 && now - last_time >= t.time_interval_ns {
            let since = now - last_time;
            last_time = now;
            Some(Reason::Time {
                ns: since,
                fractional: !t.time_interval_ns.is_multiple_of(1_000_000_000),
            })
        } else {
            None
        };
        if let Some(r) = reason {
            out.push((e.seq, Trigger::Rule(r)));
            last_alloc = alloc;
            last_free = freed;
            hwm = hwm.max(inuse);
        }
        if peak && peak_at.is_some_and(|(s, _)| s == e.seq) {
            out.push((
                e.seq,
                Trigger::Peak {
                    bytes: peak_at.unwrap().1,
                    ns: now,
                },
            ));
        }
    }
    for mk in &markers[m..] {
        out.push((
            mk.seq,
            Trigger::Marker {
                label: "SIGUSR2".into(),
                ns: mk.ns,
            },
        ));
    }
    out.push((
        events.last().map_or(0, |e| e.seq),
        Trigger::Exit {
            inuse_bytes: alloc - freed,
            clean: true,
        },
    ));
    out
}

fn engine(
    events: &[Event],
    markers: &[Marker],
    t: Thresholds,
    peak: bool,
) -> (Vec<(u64, Trigger)>, Vec<Counters>) {
    let last = events.last().map_or(0, |e| e.seq) + 1;
    let clock = [
        ClockSample { seq: 0, ns: 0 },
        ClockSample {
            seq: last,
            ns: last * 1000,
        },
    ];
    let plan = Plan {
        thresholds: t,
        markers: vec![MarkerFilter::Signal(12)],
        peak,
        exit: true,
        ..Plan::default()
    };
    let mut points = Vec::new();
    let mut totals = Vec::new();
    run(
        events,
        markers,
        &clock,
        0,
        true,
        &plan,
        |heap, trigger, seq| -> Result<(), ()> {
            points.push((seq, trigger.clone()));
            totals.push(*heap.totals());
            Ok(())
        },
    )
    .unwrap();
    (points, totals)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn engine_matches_the_model(ops in ops(), t in thresholds(), peak in any::<bool>()) {
        let (events, markers) = build(&ops);
        let (points, totals) = engine(&events, &markers, t, peak);
        prop_assert_eq!(&points, &model(&events, &markers, &t, peak));
        // Totals never go backwards in allocated or freed bytes.
        for w in totals.windows(2) {
            prop_assert!(w[0].alloc_bytes <= w[1].alloc_bytes && w[0].free_bytes <= w[1].free_bytes);
        }
    }
}
