//! The writer thread, on top of the recorder's leaf modules: it takes full
//! buffers from the [`queue`](crate::queue) and writes them, with the stacks
//! they use, mapping calls, markers, clock samples and memory maps, to the
//! [`Output`](crate::output::Output).
//!
//! Every second it also takes partly filled buffers, so a killed process
//! leaves a trace that replays up to its last flush, and ends that flush
//! with a Progress record: every event and marker below the seq it names is
//! written. Stacks interned since the last flush are written before the
//! events that use them. Every 10 ms it samples the clock against the
//! sequence counter and checks whether libraries were loaded (then it
//! records the memory maps again).

use crate::output::FirstRecord;
use crate::output::Output;
use crate::queue;
use crate::{mapping, maps, markers, stacks, thread, ACTIVE, SEQ};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Chunks waiting in the queue beyond which producers write them themselves.
const HELP_THRESHOLD: usize = 64;
/// How often partly filled buffers are flushed.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often the clock is sampled and library loads are checked.
const TICK: Duration = Duration::from_millis(10);

static OUTPUT: Mutex<Option<Output>> = Mutex::new(None);
static FINISHED: AtomicBool = AtomicBool::new(false);
/// A crashing thread's request for a last flush: 0 none, 1 asked, 2 done.
static CRASH_FLUSH: AtomicU8 = AtomicU8::new(0);

fn output() -> MutexGuard<'static, Option<Output>> {
    OUTPUT.lock().unwrap_or_else(|e| e.into_inner())
}

/// From a crash handler: asks the writer thread for a last flush and waits
/// for it at most `limit`. Only atomics, a futex wake and nanosleep:
/// the flush itself (which locks and allocates) runs on the writer thread.
pub fn flush_before_crash(limit: Duration) {
    if !ACTIVE.load(Ordering::Relaxed) {
        return;
    }
    CRASH_FLUSH.store(1, Ordering::SeqCst);
    queue::wake();
    let step = libc::timespec {
        tv_sec: 0,
        tv_nsec: 1_000_000,
    };
    for _ in 0..limit.as_millis() {
        if CRASH_FLUSH.load(Ordering::SeqCst) == 2 {
            return;
        }
        // SAFETY: nanosleep with a valid request and no remainder.
        unsafe { libc::nanosleep(&step, std::ptr::null_mut()) };
    }
}

/// Opens the trace file and writes its first records; returns its path.
/// On failure, says why on stderr once and returns `None`: the program then
/// runs unrecorded.
pub fn open(path: &str, first: &dyn Fn(&str) -> FirstRecord) -> Option<String> {
    let out = Output::start(path, first, SEQ.load(Ordering::SeqCst))?;
    let path = out.path().to_string();
    *output() = Some(out);
    Some(path)
}

/// Runs `write` on the output, if there still is one; if it fails, the
/// output is given up (said once, recording stops).
fn write_with(
    guard: &mut MutexGuard<'_, Option<Output>>,
    write: impl FnOnce(&mut Output) -> Result<(), i32>,
) {
    let Some(out) = guard.as_mut() else { return };
    if let Err(err) = write(out) {
        if let Some(out) = guard.take() {
            ACTIVE.store(false, Ordering::SeqCst);
            out.give_up(err);
        }
    }
}

/// After a thread queued a chunk (`waiting` chunks now wait; 0: none was
/// queued): if the writer has fallen far behind, or has finished, the
/// calling thread writes the queue itself instead of letting it grow.
#[inline]
pub fn queued(waiting: usize) {
    if waiting > HELP_THRESHOLD || (waiting > 0 && FINISHED.load(Ordering::Relaxed)) {
        flush(false);
    }
}

/// Writes queued chunks (and, with `take_partial`, every thread's partly
/// filled buffer), preceded by the stacks they use. With `take_partial`,
/// ends with the clock samples and a Progress record.
pub fn flush(take_partial: bool) {
    let mut guard = output();
    // Read before the buffers are taken: every event below it was appended,
    // or reserved, under its thread's lock before that lock was taken here.
    let mut complete_below = SEQ.load(Ordering::SeqCst);
    let ns = crate::clock::since_start_ns();
    let mut chunks = Vec::new();
    if take_partial {
        // Markers below the watermark are placed and drained first.
        if markers::settle(Duration::from_millis(1)) {
            write_markers_locked(&mut guard);
        } else {
            complete_below = 0;
        }
        thread::for_each(|t| {
            let (chunk, reserved) = t.take();
            chunks.extend(chunk);
            if let Some(seq) = reserved {
                complete_below = complete_below.min(seq);
            }
        });
    }
    // After the threads: a full buffer is queued before its thread lets go
    // of its lock, so it is here.
    chunks.extend(queue::take_all());
    // After the watermark was read: every mapping call below it is pushed.
    let mappings = mapping::drain();
    // Stacks are taken after the events: every stack those events use is in it.
    let (stacks, stack_count) = stacks::take_pending();
    chunks.sort_by_key(|c| c.first_seq);
    write_with(&mut guard, |out| {
        if stack_count > 0 {
            out.stacks(&stacks, stack_count)?;
        }
        for c in &chunks {
            out.chunk(c)?;
        }
        if !mappings.is_empty() {
            out.mappings(&mappings)?;
        }
        if take_partial {
            out.clock()?;
            if complete_below > 0 {
                out.progress(complete_below, ns, crate::rss::resident_bytes())?;
            }
        }
        Ok(())
    });
    if take_partial && crate::verbose() {
        say_flushed(&guard);
    }
}

/// Says, once a second when verbose and something new was written, how
/// far the trace has come.
fn say_flushed(guard: &MutexGuard<'_, Option<Output>>) {
    static SAID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let Some(out) = guard.as_ref() else { return };
    let (events, size) = out.written();
    if SAID.swap(events, Ordering::Relaxed) != events && !FINISHED.load(Ordering::Relaxed) {
        crate::say!("flushed: {events} events in {size} bytes so far");
    }
}

/// Writes the markers placed since the last call; true if there were any.
fn write_markers() -> bool {
    write_markers_locked(&mut output())
}

/// [`write_markers`] with the output already locked.
fn write_markers_locked(guard: &mut MutexGuard<'_, Option<Output>>) -> bool {
    let markers = markers::drain();
    if markers.is_empty() {
        return false;
    }
    write_with(guard, |out| out.markers(&markers));
    true
}

/// Records the memory maps again (after a library was loaded).
pub fn record_maps() {
    let text = maps::read();
    let mut guard = output();
    // Read under the output lock: a Maps record below a Progress record's
    // seq comes before it in the file.
    let seq = SEQ.load(Ordering::SeqCst);
    write_with(&mut guard, |out| out.maps(&text, seq));
}

extern "C" fn writer_main(_: *mut libc::c_void) -> *mut libc::c_void {
    crate::guard::Guard::enter_forever();
    run();
    std::ptr::null_mut()
}

fn run() {
    let mut last_flush = std::time::Instant::now();
    let mut loads = maps::load_count();
    loop {
        queue::wait(TICK);
        if !ACTIVE.load(Ordering::Relaxed) {
            if let Some(stopped) = ATTACH_STOPPED.get() {
                stopped();
            }
            return;
        }
        if let Some(out) = output().as_mut() {
            out.sample_clock(&SEQ, TICK.as_nanos() as u64);
        }
        let now_loads = maps::load_count();
        if ATTACH_TICK
            .get()
            .is_some_and(|tick| tick(now_loads != loads))
        {
            return;
        }
        if now_loads != loads {
            loads = now_loads;
            record_maps();
            // Build the new module set here rather than in a recording thread.
            crate::unwind::modules::refresh_if_changed();
        }
        // A marker is a moment someone cares about: flush everything up to it.
        let marked = write_markers();
        let crashing = CRASH_FLUSH.load(Ordering::SeqCst) == 1;
        let periodic = marked || crashing || last_flush.elapsed() >= FLUSH_EVERY;
        if periodic {
            last_flush = std::time::Instant::now();
        }
        flush(periodic);
        if crashing {
            CRASH_FLUSH.store(2, Ordering::SeqCst);
        }
    }
}

/// What the writer thread does for a recording started by an attach, each
/// tick (told whether libraries were loaded since the last): true ends the
/// thread (a detach). Set by the attach, which sits above this module.
static ATTACH_TICK: std::sync::OnceLock<fn(bool) -> bool> = std::sync::OnceLock::new();
/// What the writer thread does for an attach when recording stopped by
/// itself (the trace could not be written).
static ATTACH_STOPPED: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Gives the writer thread an attach's work: `tick` each tick, `stopped`
/// when recording stops by itself.
pub fn serve_attach(tick: fn(bool) -> bool, stopped: fn()) {
    let _ = ATTACH_TICK.set(tick);
    let _ = ATTACH_STOPPED.set(stopped);
}

/// Starts the writer thread. It is a raw pthread so that its very first
/// instruction already runs inside the guard (no thread-start allocation is
/// recorded), and it blocks every signal so that signals meant for the
/// application are never delivered to it.
pub fn start() -> bool {
    // SAFETY: plain libc calls with valid out-pointers; the old mask is
    // restored before returning, and the new thread inherits the full mask.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let mut tid: libc::pthread_t = 0;
        let rc = libc::pthread_create(
            &mut tid,
            std::ptr::null(),
            writer_main,
            std::ptr::null_mut(),
        );
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if rc == 0 {
            libc::pthread_setname_np(tid, c"heapreplay-wr".as_ptr());
            libc::pthread_detach(tid);
        }
        rc == 0
    }
}

/// Final flush at process exit: everything buffered, then the end record.
/// Events that still happen afterwards (later exit handlers) are written
/// as they come.
pub fn finish(detached: bool) {
    FINISHED.store(true, Ordering::SeqCst);
    if let Some(out) = output().as_mut() {
        out.sample_clock(&SEQ, 0);
    }
    // Libraries loaded since the writer's last tick must be in the maps.
    record_maps();
    write_markers();
    flush(true);
    write_with(&mut output(), |out| {
        out.end(
            SEQ.load(Ordering::SeqCst),
            markers::DROPPED.load(Ordering::Relaxed),
            detached,
        )
    });
    if crate::verbose() {
        if let Some(out) = output().as_ref() {
            let (events, size) = out.written();
            crate::say!("wrote {events} events in {size} bytes to {}", out.path());
        }
    }
}

/// Closes the trace (after [`finish`], at a detach): nothing more is
/// written to it.
pub fn close() {
    if let Some(out) = output().take() {
        out.close();
    }
}

/// True once the final flush has run.
pub fn finished() -> bool {
    FINISHED.load(Ordering::Relaxed)
}

/// The output held locked across `fork`, so no thread is writing while the
/// process is copied.
pub struct ForkLock(MutexGuard<'static, Option<Output>>);

/// Locks the output before `fork` (before the queue: the order every other
/// path takes them in).
pub fn lock_for_fork() -> ForkLock {
    ForkLock(output())
}

impl ForkLock {
    /// In the child: the parent's trace stays the parent's; the child opens
    /// its own trace at `path` (`%p` expanded by the caller) and writes its
    /// first records. False if it cannot.
    pub fn restart_in_child(&mut self, path: &str, first: &dyn Fn(&str) -> FirstRecord) -> bool {
        if let Some(old) = self.0.take() {
            old.close();
        }
        drop(markers::drain());
        FINISHED.store(false, Ordering::SeqCst);
        match Output::start(path, first, SEQ.load(Ordering::SeqCst)) {
            Some(out) => {
                *self.0 = Some(out);
                true
            }
            None => false,
        }
    }
}
