//! A pass over consecutive spans of a trace (follow mode replays a growing
//! trace a part at a time, carrying the live blocks between parts) hands on
//! exactly the resolved events one pass over the whole hands on, whatever
//! the cut points, and the snapshot engine resumed at each cut makes the
//! same snapshots as one engine over the whole.

use heapreplay_e2e::{hostile, Work};
use heapreplay_engine::heap::Heap;
use heapreplay_engine::plan::{MarkerFilter, Plan};
use heapreplay_engine::snapshots::{Context, Snapshotter, Standing, Trigger};
use heapreplay_engine::trace::Carry;
use heapreplay_engine::Trace;
use heapreplay_format::Event;

/// Opens the generator's valid trace (three threads, overlapping records,
/// realloc-like address reuse, a marker).
fn valid_trace(work: &Work) -> Trace {
    let case = hostile::named_case("valid", 7).unwrap();
    let path = work.path("valid.zst");
    std::fs::write(&path, &case.bytes).unwrap();
    Trace::open(&path).unwrap()
}

fn whole(trace: &Trace) -> Vec<Event> {
    let mut out = Vec::new();
    trace
        .for_each_event(false, |e| {
            out.push(*e);
            Ok::<(), ()>(())
        })
        .unwrap();
    out
}

#[test]
fn consecutive_spans_hand_on_what_the_whole_pass_hands_on() {
    let work = Work::new("spans_events");
    let trace = valid_trace(&work);
    let all = whole(&trace);
    assert!(all.len() > 100, "{} events", all.len());
    let last = all.last().unwrap().seq;
    for cuts in [
        vec![1],
        vec![last / 3, 2 * last / 3],
        vec![5, 6, 7, last / 2, last],
        vec![last + 1],
    ] {
        for pipeline in [false, true] {
            let mut carry = Carry::default();
            let mut got = Vec::new();
            for &until in &cuts {
                trace
                    .for_each_event_in(pipeline, &mut carry, Some(until), |e| {
                        assert!(e.seq < until, "{} past the span's end {until}", e.seq);
                        got.push(*e);
                        Ok::<bool, ()>(true)
                    })
                    .unwrap();
                assert_eq!(carry.from, until);
            }
            trace
                .for_each_event_in(pipeline, &mut carry, None, |e| {
                    got.push(*e);
                    Ok::<bool, ()>(true)
                })
                .unwrap();
            assert_eq!(got, all, "cut at {cuts:?}, pipeline {pipeline}");
        }
    }
}

/// Every snapshot as (trigger, seq, bytes in use, objects in use).
type Taken = Vec<(String, u64, u64, u64)>;

fn take(out: &mut Taken) -> impl FnMut(&Heap, &Trigger, u64) -> Result<(), ()> + '_ {
    |heap, trigger, seq| {
        let t = heap.totals();
        out.push((trigger.reason(), seq, t.inuse_bytes(), t.inuse_objects()));
        Ok(())
    }
}

#[test]
fn a_resumed_snapshotter_makes_the_snapshots_of_one_pass() {
    let work = Work::new("spans_snapshots");
    let trace = valid_trace(&work);
    let ctx = Context::of(&trace);
    let mut plan = Plan {
        markers: vec![MarkerFilter::All],
        ..Plan::default()
    };
    plan.thresholds.alloc_interval = 4096;
    plan.thresholds.inuse_interval = 2048;
    let all = whole(&trace);
    let mut expected = Taken::new();
    let mut one = Snapshotter::new(ctx, &plan, None, take(&mut expected));
    all.iter().for_each(|e| one.event(e).unwrap());
    drop(one);
    assert!(expected.len() > 3, "{expected:?}");

    let last = all.last().unwrap().seq;
    let mut got = Taken::new();
    let mut carry = Carry::default();
    let mut standing = Standing::default();
    for until in [last / 4, last / 2, last / 2 + 1, last + 1] {
        let mut engine = Snapshotter::resume(ctx, &plan, standing, take(&mut got));
        trace
            .for_each_event_in(false, &mut carry, Some(until), |e| {
                engine.event(e)?;
                Ok::<bool, ()>(true)
            })
            .unwrap();
        standing = engine.standing();
    }
    assert_eq!(got, expected);
}
