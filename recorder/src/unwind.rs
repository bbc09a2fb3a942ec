//! Stack capture from inside an allocation hook.
//!
//! Uses the system unwinder (libgcc's `_Unwind_Backtrace`), which follows
//! `.eh_frame` call-frame information and therefore gives correct stacks for
//! code built with `-fomit-frame-pointer`, as most distribution binaries are.
//! Leading frames that belong to the recorder itself are dropped, so frame 0
//! is the return address into the function that called the allocator.

use heapreplay_format::stacks::MAX_FRAMES;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

#[repr(C)]
struct UnwindContext {
    _opaque: [u8; 0],
}

const URC_NO_REASON: c_int = 0;
const URC_NORMAL_STOP: c_int = 4;

#[link(name = "gcc_s")]
extern "C" {
    fn _Unwind_Backtrace(
        trace: extern "C" fn(*mut UnwindContext, *mut c_void) -> c_int,
        arg: *mut c_void,
    ) -> c_int;
    fn _Unwind_GetIP(ctx: *mut UnwindContext) -> usize;
}

/// The address range of the recorder's own code.
static SELF_LO: AtomicUsize = AtomicUsize::new(0);
static SELF_HI: AtomicUsize = AtomicUsize::new(0);

struct Walk<'a> {
    frames: &'a mut [u64; MAX_FRAMES],
    len: usize,
    limit: usize,
    seen_self: bool,
}

extern "C" fn on_frame(ctx: *mut UnwindContext, arg: *mut c_void) -> c_int {
    // SAFETY: arg is the &mut Walk passed to _Unwind_Backtrace below, alive for the call.
    let walk = unsafe { &mut *(arg as *mut Walk<'_>) };
    // SAFETY: ctx is the live context handed to this callback.
    let ip = unsafe { _Unwind_GetIP(ctx) };
    if ip == 0 {
        return URC_NORMAL_STOP;
    }
    let lo = SELF_LO.load(Ordering::Relaxed);
    let hi = SELF_HI.load(Ordering::Relaxed);
    let ours = ip >= lo && ip < hi;
    if walk.len == 0 && (ours || !walk.seen_self) {
        // Still inside the unwinder or the recorder: not the caller's frames yet.
        walk.seen_self |= ours;
        return URC_NO_REASON;
    }
    walk.frames[walk.len] = ip as u64;
    walk.len += 1;
    if walk.len >= walk.limit {
        URC_NORMAL_STOP
    } else {
        URC_NO_REASON
    }
}

/// Captures the caller's stack into `frames`, at most `limit` deep; returns
/// the number of frames.
#[inline(never)]
pub fn capture(frames: &mut [u64; MAX_FRAMES], limit: usize) -> usize {
    let mut walk = Walk {
        frames,
        len: 0,
        limit: limit.min(MAX_FRAMES),
        seen_self: false,
    };
    // SAFETY: on_frame only touches `walk`, which outlives the call.
    unsafe { _Unwind_Backtrace(on_frame, (&mut walk as *mut Walk<'_>).cast()) };
    walk.len
}

unsafe extern "C" fn find_self(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: the loader passes a valid info for the duration of the callback.
    let info = unsafe { &*info };
    let target = data as usize;
    let base = info.dlpi_addr as usize;
    let (mut lo, mut hi, mut hit) = (usize::MAX, 0usize, false);
    for i in 0..info.dlpi_phnum as usize {
        // SAFETY: dlpi_phdr has dlpi_phnum entries.
        let ph = unsafe { &*info.dlpi_phdr.add(i) };
        if ph.p_type != libc::PT_LOAD {
            continue;
        }
        let start = base + ph.p_vaddr as usize;
        let end = start + ph.p_memsz as usize;
        lo = lo.min(start);
        hi = hi.max(end);
        hit |= target >= start && target < end;
    }
    if hit {
        SELF_LO.store(lo, Ordering::Relaxed);
        SELF_HI.store(hi, Ordering::Relaxed);
        1
    } else {
        0
    }
}

/// Finds the recorder's own address range so its frames can be dropped.
pub fn init() {
    let here = capture as *const () as usize;
    // SAFETY: find_self matches dl_iterate_phdr's callback contract.
    unsafe { libc::dl_iterate_phdr(Some(find_self), here as *mut c_void) };
}
