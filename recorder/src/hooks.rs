//! The interposed allocation functions.
//!
//! Each forwards to the real allocator and records the event. Sequence
//! numbers are taken so that the global order is always possible: an
//! allocation takes its number after the real call returns (the block cannot
//! be freed before then), a free takes its number before the real call (the
//! block cannot be handed out again before then).
//!
//! What a hook may do besides calling the real function, by path (all of it
//! inside the guard, so the recorder's own allocations pass straight through,
//! and with `errno` restored on the way out):
//!
//! | path | locks | allocates | I/O |
//! |---|---|---|---|
//! | every recorded event: sequence number, stack walk from the per-thread step cache, stack-cache hit, append to the thread's buffer | the thread's own spin lock (contended only by the writer's periodic flush) | no | no |
//! | a step-cache miss | none (the shared step table is lock-free) | no | no |
//! | a step in neither cache, computed with gimli | none | gimli's context may grow | no |
//! | a library loaded or unloaded since this thread's last walk, or a walk broken at an unknown address | the module-set mutex (a broken walk rebuilds the set) | yes (a copy of the set; on a rebuild, copies of new objects' unwind tables) | `dl_iterate_phdr` on a rebuild |
//! | a frame no packed step describes | the walk is redone by libgcc's unwinder, which takes the loader's lock | libgcc's own | no |
//! | a stack new to this thread's cache | the stack-table mutex | yes, for a stack never seen (its frames and encoding) | no |
//! | a thread's first event | the thread-registry mutex | yes (its buffer, caches and unwind state, about 118 KiB) | no |
//! | a full buffer | the thread's spin lock while its bytes are swapped for a spare (no copy), and under it the queue mutex (the buffer is queued before the spin lock is let go, for the progress watermark) | yes (the next spare, 32 KiB, outside the spin lock) | only if more than 64 buffers are queued: the thread then writes the queue itself, under the output mutex |
//! | an event after the final flush (later exit handlers) | the output mutex | yes | writes the record at once |

#![allow(clippy::missing_safety_doc)] // each hook has exactly the C contract of the function it replaces

use crate::guard::{ErrnoKeeper, Guard};
use crate::real::{bootstrap_alloc, bootstrap_size, is_bootstrap, real};
use crate::{stacks, thread, unwind, writer, ACTIVE, MAX_DEPTH};
use heapreplay_format::stacks::MAX_FRAMES;
use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::atomic::Ordering;

/// The recording work of one hook, entered only when recording is on and
/// this thread is not already inside the recorder.
pub(crate) struct Recording {
    _guard: Guard,
    _errno: ErrnoKeeper,
    state: &'static thread::ThreadState,
}

impl Recording {
    #[inline]
    pub(crate) fn begin() -> Option<Self> {
        if !ACTIVE.load(Ordering::Relaxed) {
            return None;
        }
        let guard = Guard::enter()?;
        let errno = ErrnoKeeper::save();
        Some(Self {
            _guard: guard,
            _errno: errno,
            state: thread::current(),
        })
    }

    /// The stack of the hook's caller (from `caller` when the hook noted it).
    #[inline]
    pub(crate) fn stack(&self, caller: Option<unwind::Caller>) -> u32 {
        let mut frames = [0u64; MAX_FRAMES];
        let (n, hash) = unwind::capture(
            self.state.unwind(),
            &mut frames,
            MAX_DEPTH,
            caller,
            writer::record_maps,
        );
        stacks::intern(self.state.cache(), &frames[..n], hash)
    }

    /// Records an allocation; its sequence number is taken now.
    #[inline]
    fn alloc(&self, ptr: *mut c_void, size: usize, stack: u32) {
        let queued = self.state.record(None, |seq, enc, buf, pos| {
            enc.alloc(buf, pos, seq, ptr as u64, size as u64, stack)
        });
        writer::queued(queued);
    }

    /// Records a free, with its sequence number taken now or `reserved`
    /// before the real call.
    #[inline]
    pub(crate) fn free(&self, reserved: Option<u64>, ptr: *mut c_void) {
        let queued = self.state.record(reserved, |seq, enc, buf, pos| {
            enc.free(buf, pos, seq, ptr as u64)
        });
        writer::queued(queued);
    }

    #[inline]
    pub(crate) fn end(self) {
        if writer::finished() {
            writer::flush(true);
        }
    }
}

#[inline]
pub(crate) fn record_alloc(ptr: *mut c_void, size: usize, caller: Option<unwind::Caller>) {
    if ptr.is_null() {
        return;
    }
    if let Some(r) = Recording::begin() {
        let stack = r.stack(caller);
        r.alloc(ptr, size, stack);
        r.end();
    }
}

/// Hooks whose caller's frame is noted on entry, so that the walk starts
/// there instead of unwinding the recorder's own frames first (a third of a
/// short stack's walk). A naked entry passes the stack pointer and rbp as
/// they were at the call, then jumps to the hook proper with the stack
/// untouched, so that it runs exactly as if it had been called directly.
macro_rules! entry_noting_hook {
    ($(#[$doc:meta])* $name:ident => $inner:ident, ($($arg:ident: $ty:ty),*), $sp:literal, $bp:literal) => {
        entry_noting_hook!($(#[$doc])* extern "C" $name => $inner, ($($arg: $ty),*), $sp, $bp);
    };
    ($(#[$doc:meta])* extern $abi:literal $name:ident => $inner:ident, ($($arg:ident: $ty:ty),*), $sp:literal, $bp:literal) => {
        $(#[$doc])*
        #[no_mangle]
        #[unsafe(naked)]
        pub unsafe extern $abi fn $name($($arg: $ty),*) -> *mut c_void {
            // The unwind info is the entry state (return address at rsp):
            // no instruction here moves the stack.
            std::arch::naked_asm!(
                ".cfi_startproc",
                concat!("mov ", $sp, ", rsp"),
                concat!("mov ", $bp, ", rbp"),
                "jmp {inner}",
                ".cfi_endproc",
                inner = sym $inner,
            )
        }
    };
}
pub(crate) use entry_noting_hook;

entry_noting_hook!(
    /// `malloc`.
    malloc => malloc_from, (size: usize), "rsi", "rdx");
entry_noting_hook!(
    /// `calloc`.
    calloc => calloc_from, (n: usize, size: usize), "rdx", "rcx");
entry_noting_hook!(
    /// `realloc`, recorded as a free of the old block and an allocation of the new.
    realloc => realloc_from, (ptr: *mut c_void, size: usize), "rdx", "rcx");

/// `malloc`, entered from [`malloc`] with its caller's stack and frame pointers.
unsafe extern "C" fn malloc_from(size: usize, sp: u64, bp: u64) -> *mut c_void {
    let Some(real) = real() else {
        return bootstrap_alloc(size, 16);
    };
    // SAFETY: forwarding the caller's arguments to the real function.
    let p = unsafe { (real.malloc)(size) };
    if crate::got::from_loader(sp) {
        return p;
    }
    record_alloc(p, size, Some(unwind::Caller { sp, bp }));
    p
}

/// `calloc`, entered from [`calloc`].
unsafe extern "C" fn calloc_from(n: usize, size: usize, sp: u64, bp: u64) -> *mut c_void {
    let Some(real) = real() else {
        return n
            .checked_mul(size)
            .map_or(null_mut(), |total| bootstrap_alloc(total, 16));
    };
    // SAFETY: forwarding the caller's arguments.
    let p = unsafe { (real.calloc)(n, size) };
    if crate::got::from_loader(sp) {
        return p;
    }
    record_alloc(p, n.wrapping_mul(size), Some(unwind::Caller { sp, bp }));
    p
}

/// `realloc`, entered from [`realloc`].
unsafe extern "C" fn realloc_from(ptr: *mut c_void, size: usize, sp: u64, bp: u64) -> *mut c_void {
    if crate::got::from_loader(sp) && !is_bootstrap(ptr) {
        if let Some(real) = real() {
            // SAFETY: forwarding the caller's arguments.
            return unsafe { (real.realloc)(ptr, size) };
        }
    }
    // SAFETY: same contract as realloc.
    unsafe { realloc_impl(ptr, size, Some(unwind::Caller { sp, bp })) }
}

entry_noting_hook!(
    /// `free` (its return register carries nothing: callers ignore it).
    free => free_from, (ptr: *mut c_void), "rsi", "rdx");

/// `free`, entered from [`free`] with its caller's stack pointer.
unsafe extern "C" fn free_from(ptr: *mut c_void, sp: u64, _bp: u64) -> *mut c_void {
    if ptr.is_null() || is_bootstrap(ptr) {
        return null_mut();
    }
    let Some(real) = real() else {
        return null_mut();
    };
    if !crate::got::from_loader(sp) {
        if let Some(r) = Recording::begin() {
            r.free(None, ptr);
            // SAFETY: forwarding the caller's pointer.
            unsafe { (real.free)(ptr) };
            r.end();
            return null_mut();
        }
    }
    // SAFETY: forwarding the caller's pointer.
    unsafe { (real.free)(ptr) };
    null_mut()
}

/// Copies the bootstrap block `old` into `new` (of `size` bytes, or NULL);
/// returns `new`.
///
/// # Safety
/// `old` is an arena block; `new` is NULL or holds `size` bytes.
unsafe fn move_from_bootstrap(old: *mut c_void, size: usize, new: *mut c_void) -> *mut c_void {
    if !new.is_null() && is_bootstrap(old) {
        // SAFETY: the arena block holds bootstrap_size bytes; new holds size.
        unsafe {
            std::ptr::copy_nonoverlapping(
                old as *const u8,
                new as *mut u8,
                bootstrap_size(old).min(size),
            )
        };
    }
    new
}

unsafe fn realloc_impl(
    ptr: *mut c_void,
    size: usize,
    caller: Option<unwind::Caller>,
) -> *mut c_void {
    if ptr.is_null() {
        // SAFETY: same contract as malloc.
        return unsafe { malloc(size) };
    }
    let Some(real) = real() else {
        // SAFETY: ptr is an arena block (nothing else exists yet).
        return unsafe { move_from_bootstrap(ptr, size, bootstrap_alloc(size, 16)) };
    };
    if is_bootstrap(ptr) {
        // A block from before the real allocator was known: move it out.
        // SAFETY: ptr is an arena block; malloc has its usual contract.
        return unsafe { move_from_bootstrap(ptr, size, malloc(size)) };
    }
    let Some(r) = Recording::begin() else {
        // SAFETY: forwarding the caller's arguments.
        return unsafe { (real.realloc)(ptr, size) };
    };
    let stack = r.stack(caller);
    let free_seq = r.state.reserve_seq();
    // SAFETY: forwarding the caller's arguments.
    let p = unsafe { (real.realloc)(ptr, size) };
    // realloc(p, 0) may free and return NULL; a NULL for a non-zero size
    // means failure, and the old block is untouched.
    if !p.is_null() || size == 0 {
        r.free(Some(free_seq), ptr);
    } else {
        r.state.unreserve();
    }
    if !p.is_null() {
        r.alloc(p, size, stack);
    }
    r.end();
    p
}

/// `reallocarray`.
#[no_mangle]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: same contract as realloc.
        Some(total) => unsafe { realloc_impl(ptr, total, None) },
        None => {
            crate::guard::set_errno(libc::ENOMEM);
            null_mut()
        }
    }
}

macro_rules! aligned_hook {
    ($(#[$doc:meta])* $name:ident, ($($arg:ident: $ty:ty),*), $align:expr, $size:expr) => {
        $(#[$doc])*
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> *mut c_void {
            let Some(real) = real() else {
                return bootstrap_alloc($size, $align);
            };
            // SAFETY: forwarding the caller's arguments.
            let p = unsafe { (real.$name)($($arg),*) };
            record_alloc(p, $size, None);
            p
        }
    };
}

aligned_hook!(
    /// `memalign`.
    memalign, (align: usize, size: usize), align, size);
aligned_hook!(
    /// `aligned_alloc`.
    aligned_alloc, (align: usize, size: usize), align, size);
aligned_hook!(
    /// `valloc`.
    valloc, (size: usize), 4096, size);
aligned_hook!(
    /// `pvalloc`.
    pvalloc, (size: usize), 4096, size);

/// `posix_memalign`.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> i32 {
    let Some(real) = real() else {
        let p = bootstrap_alloc(size, align);
        if p.is_null() {
            return libc::ENOMEM;
        }
        // SAFETY: the caller passes a valid out-pointer.
        unsafe { *out = p };
        return 0;
    };
    // SAFETY: forwarding the caller's arguments.
    let rc = unsafe { (real.posix_memalign)(out, align, size) };
    if rc == 0 {
        // SAFETY: on success the real function stored the block in *out.
        record_alloc(unsafe { *out }, size, None);
    }
    rc
}

/// `malloc_usable_size`, passed through (arena blocks answer for themselves).
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    if ptr.is_null() {
        return 0;
    }
    if is_bootstrap(ptr) {
        return bootstrap_size(ptr);
    }
    match real() {
        // SAFETY: forwarding the caller's pointer.
        Some(real) => unsafe { (real.malloc_usable_size)(ptr) },
        None => 0,
    }
}
