//! `heapreplay report`: the page of `heapreplay serve` as one file, with
//! the heap precomputed at moments spread over the run, and what each
//! stretch between two moments allocated and left live at every later one,
//! so that the page answers a window with no server.

use crate::cli::ReportArgs;
use crate::pass::{self, Taken};
use heapreplay_engine::allocated_since::AllocatedSince;
use heapreplay_engine::heap::{Counters, Heap};
use heapreplay_engine::plan::{Point, TimePoint};
use heapreplay_engine::trace::io_text;
use heapreplay_format::Event;
use heapreplay_outputs::web::{self, Moment};
use std::cell::RefCell;
use std::process::ExitCode;

/// The most a report may weigh.
const MAX_BYTES: usize = 10 * 1000 * 1000;

/// (stack id, period, counters) of the blocks live at a moment.
type LiveByPeriod = Vec<(u32, u32, Counters)>;

/// Per moment (in the order the pass took them): which point it was, and
/// the blocks still live by the period they were allocated in.
#[derive(Default)]
struct Periods {
    since: AllocatedSince,
    /// A moment taken after its event (the peak): recorded once the event
    /// is counted here too.
    pending: Option<Taken>,
    taken: Vec<(usize, LiveByPeriod)>,
}

impl Periods {
    fn record(&mut self, point: usize) {
        self.taken.push((point, self.since.live_by_period()));
        self.since.next_period();
    }

    fn taken(&mut self, t: Taken) {
        if t.after_event {
            self.pending = Some(t);
        } else {
            self.record(t.point);
        }
    }

    fn event(&mut self, e: &Event) {
        self.since.apply(e);
        if let Some(t) = self.pending.filter(|t| t.seq == e.seq) {
            self.pending = None;
            self.record(t.point);
        }
    }
}

/// Writes the report.
pub fn run(args: &ReportArgs) -> Result<ExitCode, String> {
    let (trace, pipeline) = pass::open(&args.trace, &args.common)?;
    let quiet = args.common.quiet;
    let timeline = crate::serve::timeline(&trace, pipeline, quiet)?;
    // From the start (of the part a folded trace keeps) to the last time a
    // replay reaches (its clock's last sample).
    let start_ns = trace.fold().map_or(0, |f| f.info.ns);
    let end_ns = trace
        .clock
        .iter()
        .map(|c| c.ns)
        .max()
        .unwrap_or(0)
        .max(start_ns);
    // The start, the moments between, the end, and the peak if any.
    let n = u64::from(args.moments);
    let mut times: Vec<u64> = (0..n)
        .map(|k| start_ns + (end_ns - start_ns) * k / n)
        .collect();
    times.dedup();
    let mut points: Vec<Point> = times
        .into_iter()
        .map(|ns| Point::Time(TimePoint::Offset(ns)))
        .collect();
    points.push(Point::End);
    // A peak of some bytes in use (a trace of frees alone has none).
    if !timeline["peak"].is_null() {
        points.push(Point::Peak);
    }
    let periods = RefCell::new(Periods::default());
    let mut each = |_: &Heap, e: &Event| periods.borrow_mut().event(e);
    let (snapshots, code) = pass::capture_with(
        &trace,
        &points,
        pipeline,
        quiet,
        |t| periods.borrow_mut().taken(t),
        Some(&mut each),
    )?;
    let periods = periods.into_inner();
    // In the order taken: a block allocated between moments k-1 and k is
    // in period k.
    let moments: Vec<Moment<'_>> = periods
        .taken
        .iter()
        .map(|(point, live)| Moment {
            snapshot: &snapshots[*point],
            label: points[*point].describe_at(snapshots[*point].ns),
            live_by_period: live,
        })
        .collect();
    let mut stacks = pass::stacks(&trace, &args.common);
    let mut keep = 200;
    let page = loop {
        let data = web::report(&moments, &mut stacks, keep);
        let first = moments
            .iter()
            .position(|m| m.label.starts_with("the peak"))
            .unwrap_or(moments.len() - 1);
        let page = web::page_with(&serde_json::json!({
            "timeline": &timeline,
            "report": data,
            "first": first,
        }));
        if page.len() <= MAX_BYTES || keep <= 5 {
            break page;
        }
        keep /= 2;
    };
    let path = args
        .output
        .clone()
        .unwrap_or_else(|| trace.path.with_extension("html"));
    let shown = path.display();
    if page.len() > MAX_BYTES {
        return Err(format!(
            "{shown}: the report would take {} bytes, over its 10 MB, even with 3 stacks listed whole; ask for fewer --moments",
            page.len()
        ));
    }
    std::fs::write(&path, &page).map_err(|e| format!("{shown}: cannot write: {}", io_text(&e)))?;
    if !quiet {
        eprintln!(
            "heapreplay: wrote {shown} ({} moments, {} KB; the {keep} stacks that held the most and the {keep} that allocated the most listed whole)",
            moments.len(),
            page.len().div_ceil(1000)
        );
    }
    Ok(code)
}
