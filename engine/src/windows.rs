//! gperftools' profiler started and stopped by the program: the markers
//! `HeapProfilerStart` and `HeapProfilerStop` place. A replay following
//! gperftools' variables counts only what happens while the profiler runs:
//! a stop ends the profile (no dump until the next start), and a start
//! after a stop begins an empty one, where frees of blocks allocated
//! before it count for nothing, as gperftools' fresh table knows nothing
//! of them.

use crate::heap::Heap;
use heapreplay_format::{Event, EventKind, Marker, MarkerSource};
use std::collections::HashSet;

/// Where the program's starts and stops leave the profiler.
#[derive(Debug, Clone)]
pub struct Windows<'a> {
    marks: Vec<&'a Marker>,
    state: WindowState,
}

/// What [`Windows`] carries from one pass to the next (follow mode).
#[derive(Debug, Clone, Default)]
pub struct WindowState {
    /// Marks passed.
    next: usize,
    stopped: bool,
    /// Started again after a stop: from then on only the blocks allocated
    /// since count. Before, every block does (the profiler ran from the
    /// start), and none is tracked.
    restarted: bool,
    /// The blocks allocated since the profiler last restarted, still live.
    blocks: HashSet<u64>,
    /// The heap of every event, whatever the windows leave out: what the
    /// index's checkpoints keep.
    real: Heap,
}

impl<'a> Windows<'a> {
    /// The starts and stops among `markers` (in seq order), with the
    /// profiler running from the start; `None` if there is no stop (a
    /// start while running does nothing).
    pub fn of(markers: &'a [Marker]) -> Option<Self> {
        if !markers
            .iter()
            .any(|m| m.source == MarkerSource::ProfilerStop)
        {
            return None;
        }
        let marks: Vec<&Marker> = markers
            .iter()
            .filter(|m| {
                matches!(
                    m.source,
                    MarkerSource::ProfilerStart(_) | MarkerSource::ProfilerStop
                )
            })
            .collect();
        (!marks.is_empty()).then(|| Self {
            marks,
            state: WindowState::default(),
        })
    }

    /// Goes on from `state` (from [`Self::state`] over the same markers),
    /// or, with none (the first stop came after the last pass, so every
    /// event counted until then), from `heap`.
    pub fn resume(&mut self, state: Option<WindowState>, heap: &Heap) {
        self.state = state.unwrap_or_else(|| WindowState {
            real: heap.clone(),
            ..WindowState::default()
        });
    }

    /// Where it stands.
    pub fn state(&self) -> WindowState {
        self.state.clone()
    }

    /// The seq of the next start or stop.
    pub fn next_seq(&self) -> Option<u64> {
        self.marks.get(self.state.next).map(|m| m.seq)
    }

    /// Passes the next start or stop; returns its time if it starts the
    /// profiler afresh (the caller then begins an empty profile).
    pub fn pass_mark(&mut self) -> Option<u64> {
        let m = self.marks.get(self.state.next)?;
        self.state.next += 1;
        match m.source {
            MarkerSource::ProfilerStop => {
                self.state.stopped = true;
                None
            }
            // A start while running does nothing, as in gperftools.
            _ if !self.state.stopped => None,
            _ => {
                self.state.stopped = false;
                self.state.restarted = true;
                self.state.blocks.clear();
                Some(m.ns)
            }
        }
    }

    /// Whether the profiler runs.
    pub fn running(&self) -> bool {
        !self.state.stopped
    }

    /// The heap of every event so far.
    pub fn real_heap(&self) -> &Heap {
        &self.state.real
    }

    /// Applies `e` to the real heap, and to `heap` if it counts.
    pub fn apply(&mut self, e: &Event, heap: &mut Heap) {
        self.state.real.apply(e);
        if self.counts(e) {
            heap.apply(e);
        }
    }

    /// Whether `e` counts: an allocation while running, or the free (or
    /// retirement) of a block allocated since the profiler last started.
    fn counts(&mut self, e: &Event) -> bool {
        if self.state.stopped {
            return false;
        }
        if !self.state.restarted {
            return true;
        }
        match e.kind {
            EventKind::Alloc => {
                self.state.blocks.insert(e.addr);
                true
            }
            EventKind::Free | EventKind::Retire => self.state.blocks.remove(&e.addr),
        }
    }
}
