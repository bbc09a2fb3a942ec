//! The trace file and the background writer thread.
//!
//! Full thread buffers arrive on a queue; the writer compresses each into an
//! events record. Every second it also takes partly filled buffers, so a
//! killed process leaves a trace that replays up to its last flush. Stacks
//! interned since the last flush are written before the events that use them.
//! Every 10 ms it samples the clock against the sequence counter and checks
//! whether libraries were loaded (then it records the memory maps again).

use crate::thread::{self, Chunk};
use crate::{maps, stacks, ACTIVE, SEQ};
use heapreplay_format::info::{encode_clock, to_bytes};
use heapreplay_format::reader::{blank_header, encode_record, record_compressor};
use heapreplay_format::{ClockSample, EndInfo, FileInfo, RecordHeader, RecordKind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Chunks waiting in the queue beyond which producers write them themselves.
const HELP_THRESHOLD: usize = 64;
/// How often partly filled buffers are flushed.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often the clock is sampled and library loads are checked.
const TICK: Duration = Duration::from_millis(10);
/// zstd level for records: fast, and the writer runs beside the program.
const ZSTD_LEVEL: i32 = 1;

struct Output {
    fd: i32,
    /// The trace file's (device, inode): the descriptor must still be it.
    identity: (u64, u64),
    path: String,
    compressor: zstd::bulk::Compressor<'static>,
    events: u64,
    clock: Vec<ClockSample>,
    start_mono_ns: u64,
}

static OUTPUT: Mutex<Option<Output>> = Mutex::new(None);
static QUEUE: Mutex<Vec<Chunk>> = Mutex::new(Vec::new());
static WAKE: Condvar = Condvar::new();
static FINISHED: AtomicBool = AtomicBool::new(false);
/// A crashing thread's request for a last flush: 0 none, 1 asked, 2 done.
static CRASH_FLUSH: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// From a crash handler: asks the writer thread for a last flush and waits
/// for it at most `limit`. Only atomics, a futex wake and nanosleep:
/// the flush itself (which locks and allocates) runs on the writer thread.
pub fn flush_before_crash(limit: Duration) {
    if !ACTIVE.load(Ordering::Relaxed) {
        return;
    }
    CRASH_FLUSH.store(1, Ordering::SeqCst);
    WAKE.notify_one();
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
static START_MONO_NS: AtomicU64 = AtomicU64::new(0);

/// Monotonic time at which recording started.
pub fn start_mono_ns() -> u64 {
    START_MONO_NS.load(Ordering::Relaxed)
}

/// Wakes the writer thread (after a marker, so it is written promptly).
pub fn wake() {
    WAKE.notify_one();
}

/// Monotonic clock in nanoseconds.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Output {
    /// Closes the trace's descriptor, unless the program has taken its
    /// number over (then it is the program's to close, not ours).
    fn close(&self) {
        if identity(self.fd) == Some(self.identity) {
            // SAFETY: the descriptor is still our trace file.
            unsafe { libc::close(self.fd) };
        }
    }

    fn write_all(&mut self, mut bytes: &[u8]) -> Result<(), i32> {
        // A program may close descriptors it did not open (daemons close
        // them all) and reuse the number: never write into its file.
        if identity(self.fd) != Some(self.identity) {
            return Err(libc::EBADF);
        }
        while !bytes.is_empty() {
            // SAFETY: bytes is a valid readable slice.
            let n = unsafe { libc::write(self.fd, bytes.as_ptr().cast(), bytes.len()) };
            if n < 0 {
                // SAFETY: reading errno right after the failed call.
                let err = unsafe { *libc::__errno_location() };
                if err == libc::EINTR {
                    continue;
                }
                return Err(err);
            }
            if n == 0 {
                return Err(libc::ENOSPC);
            }
            bytes = &bytes[n as usize..];
        }
        Ok(())
    }

    fn record(&mut self, header: RecordHeader, raw: &[u8]) -> Result<(), i32> {
        let bytes = encode_record(&mut self.compressor, header, raw).map_err(|_| libc::ENOMEM)?;
        self.write_all(&bytes)
    }

    fn chunk(&mut self, c: &Chunk) -> Result<(), i32> {
        let mut h = blank_header(RecordKind::Events);
        h.first_seq = c.first_seq;
        h.last_seq = c.last_seq;
        h.tid = c.tid;
        h.count = c.count;
        // Rows are cheap for recording threads to append; records store
        // columns, which compress better. The writer thread does the turn.
        let columns =
            heapreplay_format::events::rows_to_columns(&c.bytes, c.first_seq, c.last_seq, c.count)
                .map_err(|_| libc::EINVAL)?;
        self.record(h, &columns)?;
        self.events += u64::from(c.count);
        Ok(())
    }

    fn clock(&mut self) -> Result<(), i32> {
        if self.clock.is_empty() {
            return Ok(());
        }
        let samples = std::mem::take(&mut self.clock);
        let mut h = blank_header(RecordKind::Clock);
        h.first_seq = samples[0].seq;
        h.last_seq = samples[samples.len() - 1].seq;
        h.count = samples.len() as u32;
        self.record(h, &encode_clock(&samples))
    }

    fn maps(&mut self, text: &[u8], seq: u64) -> Result<(), i32> {
        let mut h = blank_header(RecordKind::Maps);
        h.first_seq = seq;
        h.last_seq = seq;
        self.record(h, text)
    }

    fn markers(&mut self, markers: &[heapreplay_format::Marker]) -> Result<(), i32> {
        let mut h = blank_header(RecordKind::Markers);
        h.first_seq = markers[0].seq;
        h.last_seq = markers[markers.len() - 1].seq;
        h.count = markers.len() as u32;
        self.record(h, &heapreplay_format::markers::encode_markers(markers))
    }

    fn sample_clock(&mut self) {
        let ns = mono_ns().saturating_sub(self.start_mono_ns);
        self.clock.push(ClockSample {
            seq: SEQ.load(Ordering::SeqCst),
            ns,
        });
    }
}

/// Opens the trace file and writes its first records. On failure, says why on
/// stderr once and returns false: the program then runs unrecorded.
pub fn open(path: &str, info: FileInfo) -> Option<String> {
    let out = start_output(path, info)?;
    let path = out.path.clone();
    *OUTPUT.lock().unwrap_or_else(|e| e.into_inner()) = Some(out);
    Some(path)
}

/// Claims the trace file and writes its first records.
fn start_output(path: &str, info: FileInfo) -> Option<Output> {
    let (fd, path) = match claim(path) {
        Ok(claimed) => claimed,
        Err(err) => {
            crate::say!(
                "cannot write trace to {path}: {}; the program runs unrecorded",
                crate::report::strerror(err)
            );
            return None;
        }
    };
    let Ok(compressor) = record_compressor(ZSTD_LEVEL) else {
        crate::say!("cannot start the trace compressor; the program runs unrecorded");
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
        return None;
    };
    START_MONO_NS.store(info.start_mono_ns, Ordering::Relaxed);
    let mut out = Output {
        fd,
        identity: identity(fd).unwrap_or((0, 0)),
        path: path.clone(),
        compressor,
        events: 0,
        clock: Vec::new(),
        start_mono_ns: info.start_mono_ns,
    };
    let seq = SEQ.load(Ordering::SeqCst);
    let result = to_bytes(&info)
        .map_err(|_| libc::EINVAL)
        .and_then(|info| out.record(blank_header(RecordKind::FileInfo), &info))
        .and_then(|_| out.maps(&maps::read(), seq));
    out.clock.push(ClockSample { seq, ns: 0 });
    if let Err(err) = result {
        fail(&out, err);
        return None;
    }
    Some(out)
}

/// The (device, inode) of what `fd` refers to.
fn identity(fd: i32) -> Option<(u64, u64)> {
    // SAFETY: fstat writes only `st`.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut st) == 0).then_some((st.st_dev, st.st_ino))
    }
}

/// Opens `path` and takes an exclusive lock on it. If another live process
/// holds the lock (it records to the same path, as a parent and its child do
/// when the path has no `%p`), the trace goes to `PATH.<pid>` instead, and
/// that is said on stderr, so two recorders never write into one file.
fn claim(path: &str) -> Result<(i32, String), i32> {
    if let Some(fd) = claim_at(path)? {
        return Ok((fd, path.to_string()));
    }
    let own = format!("{path}.{}", std::process::id());
    let fd = claim_at(&own)?.ok_or(libc::EBUSY)?;
    crate::say!("{path} is being written by another process; this one records to {own}");
    Ok((fd, own))
}

/// Opens `path` for a new trace and locks it: `None` if another process
/// holds the lock. An earlier trace there is replaced by a new file, not
/// emptied in place: a replayer still reading it keeps its copy (emptying it
/// would pull the pages from under that reader's memory map).
fn claim_at(path: &str) -> Result<Option<i32>, i32> {
    let c = std::ffi::CString::new(path).map_err(|_| libc::EINVAL)?;
    let open = |flags: i32| -> Result<i32, i32> {
        // SAFETY: c is NUL-terminated.
        let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_WRONLY | libc::O_CLOEXEC, 0o644) };
        if fd < 0 {
            // SAFETY: reading errno right after the failed call.
            Err(unsafe { *libc::__errno_location() })
        } else {
            Ok(fd)
        }
    };
    // SAFETY: fd is ours; fstat writes only `st`; flock has no memory effects.
    let inspect = |fd: i32| unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        let regular = libc::fstat(fd, &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG;
        let locked = regular && libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) == 0;
        (regular, locked, st.st_size)
    };
    // SAFETY: fd is ours.
    let close = |fd: i32| unsafe { libc::close(fd) };
    let fd = open(libc::O_CREAT)?;
    let (regular, locked, size) = inspect(fd);
    if !regular {
        // A device or a pipe (/dev/null, /dev/full, a FIFO) is written as it is.
        return Ok(Some(fd));
    }
    if !locked {
        close(fd);
        return Ok(None);
    }
    if size == 0 {
        return Ok(Some(fd));
    }
    // SAFETY: c is NUL-terminated.
    if unsafe { libc::unlink(c.as_ptr()) } == 0 {
        close(fd);
        let fd = match open(libc::O_CREAT | libc::O_EXCL) {
            Ok(fd) => fd,
            // Another recorder made it first: it is theirs.
            Err(libc::EEXIST) => return Ok(None),
            Err(e) => return Err(e),
        };
        return Ok(inspect(fd).1.then_some(fd).or_else(|| {
            close(fd);
            None
        }));
    }
    // The folder does not let us replace the file: empty it in place.
    // SAFETY: fd is ours; ftruncate has no memory effects.
    if unsafe { libc::ftruncate(fd, 0) } == 0 {
        Ok(Some(fd))
    } else {
        // SAFETY: reading errno right after the failed call.
        let e = unsafe { *libc::__errno_location() };
        close(fd);
        Err(e)
    }
}

fn fail(out: &Output, err: i32) {
    ACTIVE.store(false, Ordering::SeqCst);
    let why = if err == libc::EBADF {
        "the program closed its descriptor".to_string()
    } else {
        crate::report::strerror(err)
    };
    crate::say!(
        "cannot write trace to {}: {why}; recording stopped, the program runs on unrecorded",
        out.path
    );
    out.close();
}

/// Runs `write` on the output, if there still is one; if it fails, the
/// output is given up (said once, recording stops).
fn write_with(
    guard: &mut std::sync::MutexGuard<'_, Option<Output>>,
    write: impl FnOnce(&mut Output) -> Result<(), i32>,
) {
    let Some(out) = guard.as_mut() else { return };
    if let Err(err) = write(out) {
        if let Some(out) = guard.take() {
            fail(&out, err);
        }
    }
}

/// Hands a full chunk to the writer. If the writer has fallen far behind,
/// the calling thread writes the queue itself instead of letting it grow.
pub fn submit(chunk: Chunk) {
    let queued = {
        let mut q = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
        q.push(chunk);
        q.len()
    };
    if queued > HELP_THRESHOLD || FINISHED.load(Ordering::Relaxed) {
        flush(false);
    } else if queued == 1 {
        WAKE.notify_one();
    }
}

/// Writes queued chunks (and, with `take_partial`, every thread's partly
/// filled buffer), preceded by the stacks they use.
pub fn flush(take_partial: bool) {
    let mut guard = OUTPUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut chunks = std::mem::take(&mut *QUEUE.lock().unwrap_or_else(|e| e.into_inner()));
    if take_partial {
        thread::for_each(|t| chunks.extend(t.take()));
    }
    // Stacks are taken after the events: every stack those events use is in it.
    let (stacks, stack_count) = stacks::take_pending();
    chunks.sort_by_key(|c| c.first_seq);
    write_with(&mut guard, |out| {
        if stack_count > 0 {
            let mut h = blank_header(RecordKind::Stacks);
            h.count = stack_count;
            out.record(h, &stacks)?;
        }
        for c in &chunks {
            out.chunk(c)?;
        }
        if take_partial {
            out.clock()?;
        }
        Ok(())
    });
}

/// Writes the markers placed since the last call; true if there were any.
fn write_markers() -> bool {
    let markers = crate::markers::drain();
    if markers.is_empty() {
        return false;
    }
    write_with(
        &mut OUTPUT.lock().unwrap_or_else(|e| e.into_inner()),
        |out| out.markers(&markers),
    );
    true
}

/// Records the memory maps again (after a library was loaded).
pub fn record_maps() {
    let text = maps::read();
    let seq = SEQ.load(Ordering::SeqCst);
    write_with(
        &mut OUTPUT.lock().unwrap_or_else(|e| e.into_inner()),
        |out| out.maps(&text, seq),
    );
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
        {
            let q = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
            if q.is_empty() {
                let _ = WAKE.wait_timeout(q, TICK);
            }
        }
        if !ACTIVE.load(Ordering::Relaxed) {
            return;
        }
        if let Some(out) = OUTPUT.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            if out
                .clock
                .last()
                .is_none_or(|s| mono_ns() - out.start_mono_ns >= s.ns + TICK.as_nanos() as u64)
            {
                out.sample_clock();
            }
        }
        let now_loads = maps::load_count();
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
pub fn finish() {
    FINISHED.store(true, Ordering::SeqCst);
    if let Some(out) = OUTPUT.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        out.sample_clock();
    }
    // Libraries loaded since the writer's last tick must be in the maps.
    record_maps();
    write_markers();
    flush(true);
    write_with(
        &mut OUTPUT.lock().unwrap_or_else(|e| e.into_inner()),
        |out| {
            let end = EndInfo {
                next_seq: SEQ.load(Ordering::SeqCst),
                events: out.events,
                markers_dropped: crate::markers::DROPPED.load(Ordering::Relaxed),
                end_ns: mono_ns().saturating_sub(out.start_mono_ns),
            };
            let mut h = blank_header(RecordKind::End);
            h.first_seq = end.next_seq;
            h.last_seq = end.next_seq;
            let end = to_bytes(&end).map_err(|_| libc::EINVAL)?;
            out.record(h, &end)
        },
    );
}

/// True once the final flush has run.
pub fn finished() -> bool {
    FINISHED.load(Ordering::Relaxed)
}

/// Wall-clock now, for the file header.
pub fn start_unix_ns() -> u64 {
    unix_ns()
}

/// The output and the queue held locked across `fork`, so no thread is
/// writing or queueing while the process is copied.
pub struct ForkLock(
    std::sync::MutexGuard<'static, Option<Output>>,
    std::sync::MutexGuard<'static, Vec<Chunk>>,
);

/// Locks the output and the queue before `fork`.
pub fn lock_for_fork() -> ForkLock {
    let out = OUTPUT.lock().unwrap_or_else(|e| e.into_inner());
    let queue = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
    ForkLock(out, queue)
}

impl ForkLock {
    /// In the child: the parent's trace and queued events stay the
    /// parent's; the child opens its own trace at `path` (`%p` expanded by
    /// the caller) and writes its first records. False if it cannot.
    pub fn restart_in_child(&mut self, path: &str, info: FileInfo) -> bool {
        if let Some(old) = self.0.take() {
            old.close();
        }
        self.1.clear();
        drop(crate::markers::drain());
        FINISHED.store(false, Ordering::SeqCst);
        match start_output(path, info) {
            Some(out) => {
                *self.0 = Some(out);
                true
            }
            None => false,
        }
    }
}
