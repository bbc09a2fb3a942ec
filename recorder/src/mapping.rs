//! Mapping calls (`HEAP_PROFILE_MMAP`): the `mmap` family's calls waiting
//! for the writer thread, and the locks that order them.
//!
//! A mapping hook holds the order lock across the real call, so the calls
//! are recorded in the order they took effect (the kernel serialises them
//! per process anyway), and a range one call gives back cannot be recorded
//! as mapped by another before it is recorded as given back. Under it, the
//! hook takes its sequence number and appends the call under the list
//! lock, briefly: that is the only lock the writer takes, so a slow call
//! never holds up the writer. The writer drains the list after reading its
//! progress watermark: a call with a seq below it has been appended.

use heapreplay_format::{Mapping, MappingOp};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

static ON: AtomicBool = AtomicBool::new(false);
static ORDER: Mutex<()> = Mutex::new(());
static LIST: Mutex<Vec<Mapping>> = Mutex::new(Vec::new());

fn lock<T>(m: &'static Mutex<T>) -> MutexGuard<'static, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether mapping calls are recorded.
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Turns recording of mapping calls on if the settings ask for it
/// (`HEAP_PROFILE_MMAP`) and the allocator underneath is glibc's; says so
/// once and leaves it off under another allocator, whose own mapping
/// calls come through the same hooks while it holds its locks.
pub fn init(settings: &heapreplay_format::settings::Settings, allocator: &str) {
    if !settings.mmap_profile() {
        return;
    }
    if !allocator.contains("libc.so") {
        crate::say!("HEAP_PROFILE_MMAP is ignored: the allocator underneath ({allocator}) maps its memory through the same functions, and recording them inside it could deadlock it");
        return;
    }
    ON.store(true, Ordering::Relaxed);
}

/// The right to make one mapping call and record it: calls are recorded
/// in the order they take effect.
pub struct Pending(#[allow(dead_code)] MutexGuard<'static, ()>);

impl Pending {
    /// Takes the order lock: held across a hook's real call.
    pub fn lock() -> Self {
        Self(lock(&ORDER))
    }

    /// Records a call that just took effect, with a sequence number taken now.
    pub fn push(&mut self, op: MappingOp, addr: u64, len: u64, stack: u32) {
        self.push_remap(op, addr, len, (0, 0), stack);
    }

    /// Records a call that also gave back `old` (address, length).
    pub fn push_remap(&mut self, op: MappingOp, addr: u64, len: u64, old: (u64, u64), stack: u32) {
        let mut list = lock(&LIST);
        let seq = crate::SEQ.fetch_add(1, Ordering::SeqCst);
        list.push(Mapping {
            old_addr: old.0,
            old_len: old.1,
            ..Mapping::new(seq, op, addr, len, stack)
        });
    }
}

/// Takes every call recorded so far, in seq order (writer thread).
pub fn drain() -> Vec<Mapping> {
    std::mem::take(&mut *lock(&LIST))
}

/// Both locks, held across `fork`.
pub struct ForkLock(
    #[allow(dead_code)] MutexGuard<'static, ()>,
    MutexGuard<'static, Vec<Mapping>>,
);

/// Locks the order, then the list, before `fork`.
pub fn lock_for_fork() -> ForkLock {
    ForkLock(lock(&ORDER), lock(&LIST))
}

impl ForkLock {
    /// In the child: the parent's calls belong to the parent's trace.
    pub fn restart_in_child(&mut self) {
        self.1.clear();
    }
}
