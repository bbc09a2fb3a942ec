//! Stack capture from inside an allocation hook.
//!
//! Uses the system unwinder (libgcc's `_Unwind_Backtrace`), which follows
//! `.eh_frame` call-frame information and therefore gives correct stacks for
//! code built with `-fomit-frame-pointer`, as most distribution binaries are.
//! Leading frames that belong to the recorder itself, or to C++ `operator
//! new` (which reaches us through malloc), are dropped, so frame 0 is the
//! return address into the function that called malloc or new, as in
//! gperftools.

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

/// Code ranges of the C++ allocation functions that wrap malloc.
const WRAPPERS: [&std::ffi::CStr; 8] = [
    c"_Znwm",
    c"_Znam",
    c"_ZnwmRKSt9nothrow_t",
    c"_ZnamRKSt9nothrow_t",
    c"_ZnwmSt11align_val_t",
    c"_ZnamSt11align_val_t",
    c"_ZnwmSt11align_val_tRKSt9nothrow_t",
    c"_ZnamSt11align_val_tRKSt9nothrow_t",
];
static WRAPPER_RANGES: [(AtomicUsize, AtomicUsize); 8] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; 8];

#[inline]
fn in_wrapper(ip: usize) -> bool {
    WRAPPER_RANGES
        .iter()
        .any(|(lo, hi)| ip >= lo.load(Ordering::Relaxed) && ip < hi.load(Ordering::Relaxed))
}

/// glibc's `RTLD_DL_SYMENT` flag for `dladdr1`: return the symbol table entry.
const RTLD_DL_SYMENT: i32 = 1;

/// Finds the extent of each C++ allocation function present in the process.
fn find_wrappers() {
    for (name, (lo, hi)) in WRAPPERS.iter().zip(WRAPPER_RANGES.iter()) {
        // SAFETY: name is NUL-terminated; RTLD_DEFAULT lookups are always allowed.
        let addr = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        if addr.is_null() {
            continue;
        }
        // SAFETY: Dl_info is plain data; all-zero is a valid value.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        let mut sym: *mut libc::Elf64_Sym = std::ptr::null_mut();
        // SAFETY: valid out-pointers; RTLD_DL_SYMENT stores a pointer to the symbol entry.
        let ok = unsafe {
            libc::dladdr1(
                addr,
                &mut info,
                (&mut sym as *mut *mut libc::Elf64_Sym).cast(),
                RTLD_DL_SYMENT,
            )
        };
        if ok == 0 || sym.is_null() {
            continue;
        }
        // SAFETY: dladdr1 succeeded and gave a pointer into the loaded symbol table.
        let size = unsafe { (*sym).st_size } as usize;
        lo.store(addr as usize, Ordering::Relaxed);
        hi.store(addr as usize + size.max(1), Ordering::Relaxed);
    }
}

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
    if walk.len == 0 && (ours || !walk.seen_self || in_wrapper(ip)) {
        // Still inside the unwinder, the recorder or operator new.
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

/// Finds the recorder's own address range and the C++ allocation functions,
/// so their frames can be dropped.
pub fn init() {
    find_wrappers();
    let here = capture as *const () as usize;
    // SAFETY: find_self matches dl_iterate_phdr's callback contract.
    unsafe { libc::dl_iterate_phdr(Some(find_self), here as *mut c_void) };
}
