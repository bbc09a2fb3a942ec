//! A window of the run, between two points: what was allocated in it and
//! still live at its end (leak suspects), and what was allocated and freed
//! within it (temporaries), by stack. One pass, from the index's
//! checkpoint before the window's start.

use crate::pass::{self, Taken};
use heapreplay_engine::allocated_since::AllocatedSince;
use heapreplay_engine::heap::{Counters, Heap};
use heapreplay_engine::plan::Point;
use heapreplay_engine::Trace;
use heapreplay_format::Event;
use heapreplay_outputs::profile::Snapshot;
use std::cell::RefCell;
use std::process::ExitCode;

/// What a window of the run did.
pub struct Window {
    /// The heap at its start.
    pub from: Snapshot,
    /// The heap at its end.
    pub to: Snapshot,
    /// Per stack id, the blocks allocated in the window: `inuse_*` is what
    /// is still live at its end, `frees`/`free_bytes` what it freed of them.
    pub allocated: Vec<(u32, Counters)>,
}

/// Where the pass stands in the window.
#[derive(Default)]
struct Tracking {
    /// Blocks allocated since the window began; `None` before it.
    since: Option<AllocatedSince>,
    /// The event the start's snapshot already holds (the peak): not the
    /// window's.
    skip: Option<u64>,
    /// The end's snapshot holds this event (the peak): the window closes
    /// after it.
    close_after: Option<u64>,
    /// The window, closed.
    done: Option<AllocatedSince>,
    /// The end came before the start.
    backwards: bool,
    /// Events seen so far.
    events: u64,
    /// The end was taken first, after this many events.
    end_first: Option<u64>,
}

impl Tracking {
    fn taken(&mut self, t: Taken) {
        match t.point {
            // The end taken first at the same event (a marker and a time
            // between the same two events): an empty window.
            0 if self.end_first == Some(self.events) => {
                self.done = Some(AllocatedSince::new());
            }
            0 if self.end_first.is_some() => self.backwards = true,
            0 => {
                self.since = Some(AllocatedSince::new());
                self.skip = t.after_event.then_some(t.seq);
            }
            _ if self.since.is_none() => self.end_first = Some(self.events),
            _ if t.after_event => self.close_after = Some(t.seq),
            _ => self.done = self.since.take(),
        }
    }

    fn event(&mut self, e: &Event) {
        self.events += 1;
        if let Some(since) = self.since.as_mut() {
            if self.skip != Some(e.seq) {
                since.apply(e);
            }
        }
        if self.close_after == Some(e.seq) {
            self.done = self.since.take();
        }
    }
}

/// The window of `trace` from `from` to `to`.
pub fn capture(
    trace: &Trace,
    from: &Point,
    to: &Point,
    pipeline: bool,
    quiet: bool,
) -> Result<(Window, ExitCode), String> {
    let tracking = RefCell::new(Tracking::default());
    let mut each = |_: &Heap, e: &Event| tracking.borrow_mut().event(e);
    let (mut snapshots, code) = pass::capture_with(
        trace,
        &[from.clone(), to.clone()],
        pipeline,
        quiet,
        |t| tracking.borrow_mut().taken(t),
        Some(&mut each),
    )?;
    let mut tracking = tracking.into_inner();
    let (to_snapshot, from_snapshot) = match (snapshots.pop(), snapshots.pop()) {
        (Some(to), Some(from)) => (to, from),
        _ => return Err(format!("{}: no snapshot", trace.path.display())),
    };
    if tracking.backwards || from_snapshot.ns > to_snapshot.ns {
        return Err(format!(
            "{}: the window's start ({}) is after its end ({})",
            trace.path.display(),
            from.describe_at(from_snapshot.ns),
            to.describe_at(to_snapshot.ns)
        ));
    }
    let since = tracking
        .done
        .take()
        .or(tracking.since.take())
        .unwrap_or_default();
    Ok((
        Window {
            from: from_snapshot,
            to: to_snapshot,
            allocated: since.stacks(),
        },
        code,
    ))
}
