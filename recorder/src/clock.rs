//! The recorder's clocks: monotonic time since recording started (for clock
//! samples, markers and the end record) and wall-clock time (for the file
//! header). A leaf: it depends on nothing else in the recorder.

use std::sync::atomic::{AtomicU64, Ordering};

static START_MONO_NS: AtomicU64 = AtomicU64::new(0);

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

/// Wall-clock now in nanoseconds since the Unix epoch.
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Notes the monotonic time at which this process's trace starts.
pub fn set_start(mono_ns: u64) {
    START_MONO_NS.store(mono_ns, Ordering::Relaxed);
}

/// Nanoseconds since the trace started.
pub fn since_start_ns() -> u64 {
    mono_ns().saturating_sub(START_MONO_NS.load(Ordering::Relaxed))
}
