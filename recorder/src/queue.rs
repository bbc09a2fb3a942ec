//! The channel from recording threads to the writer thread: full buffers
//! ([`Chunk`]s) wait here until the writer compresses them. A leaf: it
//! depends on nothing else in the recorder.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// A run of one thread's encoded events, ready to be written as a record.
pub struct Chunk {
    /// Kernel thread id.
    pub tid: u32,
    /// Sequence number of the first event.
    pub first_seq: u64,
    /// Sequence number of the last event.
    pub last_seq: u64,
    /// Number of events.
    pub count: u32,
    /// The encoded events.
    pub bytes: Vec<u8>,
}

static QUEUE: Mutex<Vec<Chunk>> = Mutex::new(Vec::new());
static WAKE: Condvar = Condvar::new();

fn lock() -> MutexGuard<'static, Vec<Chunk>> {
    QUEUE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Queues a chunk and returns how many are waiting; the first one queued
/// wakes the writer.
pub fn push(chunk: Chunk) -> usize {
    let queued = {
        let mut q = lock();
        q.push(chunk);
        q.len()
    };
    if queued == 1 {
        WAKE.notify_one();
    }
    queued
}

/// Takes every queued chunk.
pub fn take_all() -> Vec<Chunk> {
    std::mem::take(&mut *lock())
}

/// Wakes the writer thread (a marker was placed, or a crash wants a flush).
/// Only a futex wake: safe in a signal handler.
pub fn wake() {
    WAKE.notify_one();
}

/// Waits until a chunk is queued, [`wake`] is called, or `limit` passes.
pub fn wait(limit: Duration) {
    let q = lock();
    if q.is_empty() {
        let _ = WAKE.wait_timeout(q, limit);
    }
}

/// The queue held locked across `fork`.
pub struct ForkLock(MutexGuard<'static, Vec<Chunk>>);

/// Locks the queue before `fork`.
pub fn lock_for_fork() -> ForkLock {
    ForkLock(lock())
}

impl ForkLock {
    /// In the child: the queued events are the parent's to write.
    pub fn restart_in_child(&mut self) {
        self.0.clear();
    }
}
