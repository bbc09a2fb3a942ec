//! Per-thread event buffers.
//!
//! Each thread appends encoded events to its own buffer under a spin lock
//! that only the writer ever contends for (when it takes a partly filled
//! buffer for the periodic flush). A full buffer becomes a [`Chunk`] on the
//! writer's queue; thread exit queues what is left. Nothing is allocated or
//! copied under the spin lock on the recording path: a full buffer is
//! swapped for a spare allocated beforehand.
//!
//! An event's sequence number is taken under the same spin lock that
//! appends it (or, for a realloc's free, which must take its number before
//! the real call, noted as reserved under it). So once the writer has read
//! the counter and then taken every thread's buffer, every event below
//! what it read is in its hands: the trace's progress watermark.

use crate::queue::{self, Chunk};
use crate::stacks::StackCache;
use crate::SEQ;
use heapreplay_format::events::{EventEncoder, MAX_EVENT_LEN};
use std::cell::{Cell, UnsafeCell};
use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// Bytes of encoded events a thread buffers before handing them to the writer.
pub const BUF_LEN: usize = 32 * 1024;

/// The bytes of one buffer.
type Bytes = Box<[u8; BUF_LEN]>;

fn new_bytes() -> Bytes {
    Box::new([0; BUF_LEN])
}

struct Buffer {
    bytes: Bytes,
    len: usize,
    first_seq: u64,
    last_seq: u64,
    count: u32,
    encoder: EventEncoder,
    /// A sequence number taken but not yet appended (a realloc's free
    /// while the real call runs), or [`NO_SEQ`].
    reserved: u64,
}

/// No sequence number.
const NO_SEQ: u64 = u64::MAX;

impl Buffer {
    /// The chunk of a full buffer, whose bytes are handed over whole and
    /// replaced by `spare`: no copy.
    fn swap_out(&mut self, tid: u32, spare: Bytes) -> Chunk {
        let full: Box<[u8]> = std::mem::replace(&mut self.bytes, spare) as Box<[u8]>;
        let mut bytes = Vec::from(full);
        bytes.truncate(self.len);
        let chunk = self.chunk(tid, bytes);
        self.len = 0;
        self.count = 0;
        chunk
    }

    fn chunk(&self, tid: u32, bytes: Vec<u8>) -> Chunk {
        Chunk {
            tid,
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            count: self.count,
            bytes,
        }
    }

    /// What is buffered, copied out (a partly filled buffer, taken by the
    /// periodic flush or at thread exit).
    fn take(&mut self, tid: u32) -> Option<Chunk> {
        if self.count == 0 {
            return None;
        }
        let chunk = self.chunk(tid, self.bytes[..self.len].to_vec());
        self.len = 0;
        self.count = 0;
        Some(chunk)
    }
}

/// One thread's recording state.
pub struct ThreadState {
    tid: std::sync::atomic::AtomicU32,
    locked: AtomicBool,
    buffer: UnsafeCell<Buffer>,
    /// Bytes to swap in for a full buffer; only the owning thread touches it.
    spare: UnsafeCell<Option<Bytes>>,
    cache: UnsafeCell<StackCache>,
    unwind: UnsafeCell<crate::unwind::ThreadUnwind>,
}

// SAFETY: `buffer` is only touched under `locked`; `spare`, `cache` and
// `unwind` only by the owning thread.
unsafe impl Sync for ThreadState {}

impl ThreadState {
    #[inline]
    fn lock(&self) {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
    }

    #[inline]
    fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// The stack cache; only the owning thread may call this.
    #[allow(clippy::mut_from_ref)]
    #[inline]
    pub fn cache(&self) -> &mut StackCache {
        // SAFETY: only the owning thread calls this, and never re-entrantly
        // (the reentrancy guard is held).
        unsafe { &mut *self.cache.get() }
    }

    /// The unwinding state; only the owning thread may call this.
    #[allow(clippy::mut_from_ref)]
    #[inline]
    pub fn unwind(&self) -> &mut crate::unwind::ThreadUnwind {
        // SAFETY: as for `cache`.
        unsafe { &mut *self.unwind.get() }
    }

    /// Appends one event; `encode` writes it, with the sequence number it
    /// is given, at the given position and returns the new end. The number
    /// is `reserved` (from [`reserve_seq`](Self::reserve_seq)) or, if
    /// `None`, the next one, taken here under the lock. When the buffer was
    /// full, its contents go to the writer's queue first; returns how many
    /// chunks are then waiting (0 if none was queued), for the caller to
    /// help the writer if it has fallen behind. Only the owning thread may
    /// call this.
    #[inline]
    #[must_use]
    pub fn record(
        &self,
        reserved: Option<u64>,
        encode: impl FnOnce(u64, &mut EventEncoder, &mut [u8], usize) -> usize,
    ) -> usize {
        // SAFETY: only the owning thread touches `spare`, and never
        // re-entrantly (the reentrancy guard is held).
        let spare = unsafe { &mut *self.spare.get() };
        let mut queued = 0;
        loop {
            self.lock();
            // SAFETY: we hold the lock.
            let buf = unsafe { &mut *self.buffer.get() };
            if buf.len + MAX_EVENT_LEN <= BUF_LEN {
                break;
            }
            match spare.take() {
                Some(bytes) => {
                    // Queued before the lock is let go: the writer, once it
                    // holds this lock, finds every earlier event either
                    // here or on the queue.
                    queued = queue::push(buf.swap_out(self.tid.load(Ordering::Relaxed), bytes));
                    break;
                }
                None => {
                    // Allocate outside the lock, then look again: the
                    // writer may have emptied the buffer meanwhile.
                    self.unlock();
                    *spare = Some(new_bytes());
                }
            }
        }
        // SAFETY: we hold the lock.
        let buf = unsafe { &mut *self.buffer.get() };
        let seq = match reserved {
            Some(seq) => {
                buf.reserved = NO_SEQ;
                seq
            }
            None => SEQ.fetch_add(1, Ordering::Relaxed),
        };
        if buf.count == 0 {
            buf.first_seq = seq;
            buf.encoder = EventEncoder::new(seq);
        }
        buf.len = encode(seq, &mut buf.encoder, &mut buf.bytes[..], buf.len);
        buf.last_seq = seq;
        buf.count += 1;
        self.unlock();
        queued
    }

    /// Takes the next sequence number for an event appended later with
    /// [`record`](Self::record) (or given up with
    /// [`unreserve`](Self::unreserve)); until then the writer's progress
    /// watermark stays below it.
    pub fn reserve_seq(&self) -> u64 {
        self.lock();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        // SAFETY: we hold the lock.
        unsafe { &mut *self.buffer.get() }.reserved = seq;
        self.unlock();
        seq
    }

    /// Gives up the reserved number (the event did not happen: a failed
    /// realloc). The number stays unused.
    pub fn unreserve(&self) {
        self.lock();
        // SAFETY: we hold the lock.
        unsafe { &mut *self.buffer.get() }.reserved = NO_SEQ;
        self.unlock();
    }

    /// Takes whatever is buffered (for the periodic flush), and the
    /// sequence number reserved but not yet appended, if any.
    pub fn take(&self) -> (Option<Chunk>, Option<u64>) {
        self.lock();
        // SAFETY: we hold the lock.
        let buf = unsafe { &mut *self.buffer.get() };
        let chunk = buf.take(self.tid.load(Ordering::Relaxed));
        let reserved = (buf.reserved != NO_SEQ).then_some(buf.reserved);
        self.unlock();
        (chunk, reserved)
    }
}

/// Addresses of every live thread's state, for the periodic flush.
static THREADS: Mutex<Vec<usize>> = Mutex::new(Vec::new());
static mut EXIT_KEY: libc::pthread_key_t = 0;

thread_local! {
    static CURRENT: Cell<*mut ThreadState> = const { Cell::new(null_mut()) };
}

/// Calls `f` on every live thread's state while holding the registry lock.
pub fn for_each(mut f: impl FnMut(&ThreadState)) {
    let threads = THREADS.lock().unwrap_or_else(|e| e.into_inner());
    for &p in threads.iter() {
        // SAFETY: states in the registry stay allocated until removed under this lock.
        f(unsafe { &*(p as *const ThreadState) });
    }
}

/// This thread's state, created on first use. Call with the guard held.
#[inline]
pub fn current() -> &'static ThreadState {
    let p = CURRENT.with(|c| c.get());
    if !p.is_null() {
        // SAFETY: the pointer is this thread's live state, freed only at its exit.
        return unsafe { &*p };
    }
    create()
}

#[cold]
fn create() -> &'static ThreadState {
    let state = Box::new(ThreadState {
        // SAFETY: gettid has no preconditions.
        tid: std::sync::atomic::AtomicU32::new(unsafe { libc::gettid() } as u32),
        locked: AtomicBool::new(false),
        buffer: UnsafeCell::new(Buffer {
            bytes: new_bytes(),
            len: 0,
            first_seq: 0,
            last_seq: 0,
            count: 0,
            encoder: EventEncoder::new(0),
            reserved: NO_SEQ,
        }),
        spare: UnsafeCell::new(None),
        cache: UnsafeCell::new(StackCache::default()),
        unwind: UnsafeCell::new(crate::unwind::ThreadUnwind::default()),
    });
    let p = Box::into_raw(state);
    THREADS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(p as usize);
    CURRENT.with(|c| c.set(p));
    // SAFETY: EXIT_KEY was created in `init` before recording started.
    unsafe { libc::pthread_setspecific(EXIT_KEY, p as *const c_void) };
    // SAFETY: just allocated and registered; lives until thread exit.
    unsafe { &*p }
}

unsafe extern "C" fn on_thread_exit(p: *mut c_void) {
    let _guard = crate::guard::Guard::enter();
    let _errno = crate::guard::ErrnoKeeper::save();
    let p = p as *mut ThreadState;
    let queued = {
        let mut threads = THREADS.lock().unwrap_or_else(|e| e.into_inner());
        // Queued while still registered: the writer's flush, which holds
        // the registry, finds these events in the buffer or on the queue.
        // SAFETY: p is this thread's registered state.
        let chunk = unsafe { &*p }.take().0;
        threads.retain(|&q| q != p as usize);
        chunk.map_or(0, queue::push)
    };
    CURRENT.with(|c| c.set(null_mut()));
    // SAFETY: p was made by Box::into_raw in `create` and is now unregistered,
    // so no one else can reach it.
    drop(unsafe { Box::from_raw(p) });
    if let (true, Some(on_queued)) = (queued > 0, ON_QUEUED.get()) {
        on_queued(queued);
    }
}

/// Told how many chunks wait after a finished thread queued its last events.
static ON_QUEUED: OnceLock<fn(usize)> = OnceLock::new();

/// Creates the thread-exit key; after a thread queues its last events at
/// exit, `on_queued` is told how many chunks wait. Call once, before
/// recording starts.
pub fn init(on_queued: fn(usize)) {
    let _ = ON_QUEUED.set(on_queued);
    // SAFETY: EXIT_KEY is written once here, before any thread can read it.
    unsafe { libc::pthread_key_create(std::ptr::addr_of_mut!(EXIT_KEY), Some(on_thread_exit)) };
}

/// The thread registry held locked across `fork`.
pub struct ForkLock(std::sync::MutexGuard<'static, Vec<usize>>);

/// Locks the registry before `fork`.
pub fn lock_for_fork() -> ForkLock {
    ForkLock(THREADS.lock().unwrap_or_else(|e| e.into_inner()))
}

impl ForkLock {
    /// Drops what every thread's buffer holds (events after a detach's
    /// last flush, before a new attach starts a new trace).
    pub fn discard_buffers(&mut self) {
        for &p in self.0.iter() {
            // SAFETY: a live thread's state; the registry is locked.
            drop(unsafe { &*(p as *const ThreadState) }.take());
        }
    }

    /// In the child, where only the forking thread lives on: the other
    /// threads' states are freed, and the forking thread's buffered events,
    /// which the parent records, are dropped.
    pub fn restart_in_child(&mut self) {
        let me = CURRENT.with(|c| c.get()) as usize;
        for &p in self.0.iter().filter(|&&p| p != me) {
            // SAFETY: states of threads that do not exist in the child; no
            // one can reach them any more.
            drop(unsafe { Box::from_raw(p as *mut ThreadState) });
        }
        self.0.retain(|&p| p == me);
        if me != 0 {
            // SAFETY: this thread's own live state.
            let state = unsafe { &*(me as *const ThreadState) };
            // SAFETY: gettid has no preconditions.
            state
                .tid
                .store(unsafe { libc::gettid() } as u32, Ordering::Relaxed);
            drop(state.take());
        }
    }
}
