//! Passes that use the trace's seeking index: each starts from the latest
//! checkpoint that serves it, and a pass from the index's last checkpoint
//! (or from the beginning, with no index yet) takes new checkpoints and
//! writes them. `HEAPREPLAY_INDEX=off` turns both off;
//! `HEAPREPLAY_CHECKPOINT_EVERY=N` sets the least number of events between
//! checkpoints.

use heapreplay_engine::heap::Heap;
use heapreplay_engine::index::{peak_of, Builder, Index, Start, DEFAULT_SPACING};
use heapreplay_engine::snapshots::PeakFinder;
use heapreplay_engine::trace::{Pass, TakeRun};
use heapreplay_engine::Trace;
use heapreplay_format::Event;
use std::cell::RefCell;

/// True unless `HEAPREPLAY_INDEX=off`.
pub fn enabled() -> bool {
    std::env::var_os("HEAPREPLAY_INDEX").is_none_or(|v| v != "off")
}

/// The least number of events between checkpoints.
pub fn spacing() -> u64 {
    std::env::var("HEAPREPLAY_CHECKPOINT_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SPACING)
}

/// A trace with its index, if it has a usable one.
pub struct Seek<'t> {
    trace: &'t Trace,
    index: Option<Index>,
    enabled: bool,
    explain: bool,
    spacing: u64,
    quiet: bool,
}

impl<'t> Seek<'t> {
    /// `trace` and its index.
    pub fn new(trace: &'t Trace, quiet: bool) -> Self {
        let setting = std::env::var_os("HEAPREPLAY_INDEX");
        let enabled = enabled();
        let explain = setting.is_some_and(|v| v == "explain");
        let spacing = spacing();
        Self {
            trace,
            index: if enabled { Index::find(trace) } else { None },
            enabled,
            explain,
            spacing,
            quiet,
        }
    }

    /// The index in use, if any.
    pub fn index(&self) -> Option<&Index> {
        self.index.as_ref()
    }

    /// The latest checkpoint whose last event satisfies `usable` (see
    /// [`Index::start`]), or the beginning.
    pub fn start(&self, usable: impl Fn(u64) -> bool) -> Start {
        match &self.index {
            Some(index) => index.start(self.trace, usable),
            None => Start::beginning(self.trace),
        }
    }

    /// A pass from `start` (see [`Trace::for_each_event_from`]) that takes
    /// checkpoints if it can, and writes them to the index; `heap` gives
    /// the heap after every event handed to `f` so far. A pass that takes
    /// no checkpoints offers `take_run` resolved runs whole.
    pub fn pass<E>(
        &mut self,
        pipeline: bool,
        mut start: Start,
        heap: &dyn Fn() -> Heap,
        take_run: Option<TakeRun<'_>>,
        f: impl FnMut(&Event) -> Result<bool, E>,
    ) -> Result<Pass, E> {
        // A pass too short for a checkpoint builds nothing (a crafted
        // trace's seqs may also jump far ahead of its events).
        let ahead = self.trace.recorded_events().saturating_sub(start.events);
        let mut builder = (self.enabled && ahead >= self.spacing)
            .then(|| Builder::new(self.trace, self.index.as_ref(), &start, self.spacing))
            .flatten();
        if self.explain {
            self.say(&match (&self.index, start.checkpoint()) {
                (Some(index), Some(i)) => format!(
                    "replaying from checkpoint {} of {} in {} (after event {})",
                    i + 1,
                    index.checkpoints().len(),
                    index.path().display(),
                    start.last_seq
                ),
                (Some(index), None) => {
                    format!(
                        "replaying from the start ({} not used)",
                        index.path().display()
                    )
                }
                (None, _) => "replaying from the start (no index)".into(),
            });
        }
        let pass = self.trace.for_each_event_from(
            pipeline,
            &mut start,
            builder.as_mut().map(|b| (b, heap)),
            take_run,
            f,
        )?;
        if let Some(mut builder) = builder {
            let intact = pass.problems.is_empty();
            let made = builder.made();
            match builder.save(self.trace, !pass.stopped, intact) {
                Ok(Some(path)) => {
                    if self.explain {
                        self.say(&format!(
                            "{made} new checkpoint{} written to {}",
                            if made == 1 { "" } else { "s" },
                            path.display()
                        ));
                    }
                    self.index = Index::find(self.trace);
                }
                Ok(None) => {}
                Err(e) if !self.quiet => eprintln!(
                    "heapreplay: {}: cannot write its index ({e}); points will be replayed from the start",
                    self.trace.path.display()
                ),
                Err(_) => {}
            }
        }
        Ok(pass)
    }

    fn say(&self, what: &str) {
        eprintln!("heapreplay: {}: {what}", self.trace.path.display());
    }

    /// Where in-use bytes peak in the whole trace: from the index where it
    /// covers the trace, else by a pass from its last checkpoint (which
    /// extends it). `tick` is called on each event replayed.
    pub fn peak(
        &mut self,
        pipeline: bool,
        mut tick: impl FnMut(),
    ) -> Result<Option<(u64, u64)>, String> {
        if let Some(peak) = self.index.as_ref().and_then(|i| i.peak(self.trace)) {
            return Ok(peak);
        }
        let before = self.index.as_ref().and_then(|i| i.peak_before_last());
        let start = self.start(|_| true);
        let mut finder = PeakFinder::starting_at(start.heap.totals().inuse_bytes());
        let before = if start.checkpoint().is_some() {
            before
        } else {
            None
        };
        let heap = RefCell::new(start.heap.clone());
        let heap_now = || heap.borrow().clone();
        self.pass(pipeline, start, &heap_now, None, |e| {
            heap.borrow_mut().apply(e);
            finder.push(e);
            tick();
            Ok::<bool, String>(true)
        })?;
        Ok(peak_of([before, finder.peak()]))
    }
}
