//! Markers, placed from signal handlers or by `heapreplay_marker(name)`.
//!
//! A marker must be recordable from a signal handler that interrupted
//! anything, including the recorder itself, so it never touches a lock or
//! a thread buffer: it takes a sequence number and goes into a fixed,
//! lock-free multi-producer queue (Vyukov's bounded queue) that the writer
//! thread drains. A full queue drops the marker and counts it.

use crate::SEQ;
use heapreplay_format::markers::{Marker, MarkerSource, MAX_NAME_LEN};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const SLOTS: usize = 1024;

#[derive(Clone, Copy)]
struct Entry {
    seq: u64,
    ns: u64,
    tid: u32,
    signal: i32,
    name_len: u8,
    name: [u8; MAX_NAME_LEN],
}

struct Slot {
    turn: AtomicUsize,
    entry: UnsafeCell<Entry>,
}

// SAFETY: `entry` is written only by the producer that claimed the slot and
// read only by the consumer after `turn` says it was published.
unsafe impl Sync for Slot {}

static QUEUE: [Slot; SLOTS] = {
    const EMPTY: Entry = Entry {
        seq: 0,
        ns: 0,
        tid: 0,
        signal: 0,
        name_len: 0,
        name: [0; MAX_NAME_LEN],
    };
    let mut q = [const {
        Slot {
            turn: AtomicUsize::new(0),
            entry: UnsafeCell::new(EMPTY),
        }
    }; SLOTS];
    let mut i = 0;
    while i < SLOTS {
        q[i].turn = AtomicUsize::new(i);
        i += 1;
    }
    q
};
static HEAD: AtomicUsize = AtomicUsize::new(0);
static TAIL: AtomicUsize = AtomicUsize::new(0);
/// The `signal` of a marker placed by `HeapProfilerStart` (its name is the
/// prefix): no signal has this number.
pub const PROFILER_START: i32 = i32::MIN;
/// The `signal` of a marker placed by `HeapProfilerStop`.
pub const PROFILER_STOP: i32 = i32::MIN + 1;

/// Markers dropped because the queue was full.
pub static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Markers being placed right now (taken a seq, not yet published).
static PLACING: AtomicUsize = AtomicUsize::new(0);

/// Records a marker. Async-signal-safe: atomics, `clock_gettime` and `gettid` only.
pub fn place(signal: i32, name: &[u8]) {
    PLACING.fetch_add(1, Ordering::SeqCst);
    publish(signal, name);
    PLACING.fetch_sub(1, Ordering::SeqCst);
}

/// Waits, at most `limit`, until no marker is being placed; false if one
/// still is. Once it returns true, every marker whose seq is below a value
/// read from the counter before the call is published (writer thread only).
pub fn settle(limit: std::time::Duration) -> bool {
    let start = std::time::Instant::now();
    while PLACING.load(Ordering::SeqCst) != 0 {
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

fn publish(signal: i32, name: &[u8]) {
    let seq = SEQ.fetch_add(1, Ordering::SeqCst);
    let ns = crate::clock::since_start_ns();
    let mut pos = HEAD.load(Ordering::Relaxed);
    let slot = loop {
        let slot = &QUEUE[pos % SLOTS];
        let turn = slot.turn.load(Ordering::Acquire);
        if turn == pos {
            match HEAD.compare_exchange_weak(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break slot,
                Err(now) => pos = now,
            }
        } else if turn < pos {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        } else {
            pos = HEAD.load(Ordering::Relaxed);
        }
    };
    let len = name.len().min(MAX_NAME_LEN);
    let mut entry = Entry {
        seq,
        ns,
        // SAFETY: gettid has no preconditions and is async-signal-safe.
        tid: unsafe { libc::gettid() } as u32,
        signal,
        name_len: len as u8,
        name: [0; MAX_NAME_LEN],
    };
    entry.name[..len].copy_from_slice(&name[..len]);
    // SAFETY: this producer owns the slot until it publishes the next turn.
    unsafe { *slot.entry.get() = entry };
    slot.turn.store(pos + 1, Ordering::Release);
}

/// Takes every published marker (writer thread only).
pub fn drain() -> Vec<Marker> {
    let mut out = Vec::new();
    let mut tail = TAIL.load(Ordering::Relaxed);
    loop {
        let slot = &QUEUE[tail % SLOTS];
        if slot.turn.load(Ordering::Acquire) != tail + 1 {
            break;
        }
        // SAFETY: the turn says the producer published this entry.
        let e = unsafe { *slot.entry.get() };
        slot.turn.store(tail + SLOTS, Ordering::Release);
        tail += 1;
        let name = || String::from_utf8_lossy(&e.name[..e.name_len as usize]).into_owned();
        let source = match e.signal {
            0 => MarkerSource::Named(name()),
            PROFILER_START => MarkerSource::ProfilerStart(name()),
            PROFILER_STOP => MarkerSource::ProfilerStop,
            signal => MarkerSource::Signal(signal),
        };
        out.push(Marker {
            seq: e.seq,
            ns: e.ns,
            tid: e.tid,
            source,
        });
    }
    TAIL.store(tail, Ordering::Relaxed);
    out
}

/// Places a named marker in the trace; a no-op when the recorder is not
/// recording. Declared in `include/heapreplay.h`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn heapreplay_marker(name: *const libc::c_char) {
    if !crate::ACTIVE.load(Ordering::Relaxed) {
        return;
    }
    let bytes = if name.is_null() {
        &b"marker"[..]
    } else {
        // SAFETY: the caller passes a NUL-terminated string.
        unsafe { std::ffi::CStr::from_ptr(name) }.to_bytes()
    };
    let _errno = crate::guard::ErrnoKeeper::save();
    place(0, bytes);
    crate::queue::wake();
}
