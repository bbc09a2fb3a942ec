//! The fallback unwinder: libgcc's `_Unwind_Backtrace`, which follows
//! `.eh_frame` with no cache. Slow (it decodes every frame's CFI on every
//! call) but trusted everywhere, including signal frames and stacks the fast
//! unwinder cannot bound.

use super::Filter;
use std::ffi::{c_int, c_void};

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

extern "C" fn on_frame(ctx: *mut UnwindContext, arg: *mut c_void) -> c_int {
    // SAFETY: arg is the &mut Filter passed to _Unwind_Backtrace below, alive for the call.
    let filter = unsafe { &mut *(arg as *mut Filter<'_>) };
    // SAFETY: ctx is the live context handed to this callback.
    let ip = unsafe { _Unwind_GetIP(ctx) };
    if ip == 0 || !filter.push(ip as u64) {
        URC_NORMAL_STOP
    } else {
        URC_NO_REASON
    }
}

/// Walks the caller's stack into `filter`.
#[inline(never)]
pub fn walk(filter: &mut Filter<'_>) {
    // SAFETY: on_frame only touches `filter`, which outlives the call.
    unsafe { _Unwind_Backtrace(on_frame, (filter as *mut Filter<'_>).cast()) };
}
