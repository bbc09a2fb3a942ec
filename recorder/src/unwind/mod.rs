//! Stack capture from inside an allocation hook.
//!
//! Stacks are unwound from `.eh_frame` call-frame information, so code built
//! with `-fomit-frame-pointer` (as most distribution binaries are) gets
//! correct stacks. The fast path ([`fast`]) applies compact per-address
//! steps ([`steps`]) computed once from the copied unwind tables
//! ([`modules`]) and shared by all threads; when it cannot finish a walk (a
//! library loaded since the module set was built, a stack outside the
//! thread's known stack, a frame whose step has another shape, such as a
//! signal frame) the walk is redone by libgcc's unwinder ([`libgcc`]), which
//! handles everything, slowly.
//!
//! Leading frames that belong to the recorder itself, or to C++ `operator
//! new` (which reaches us through malloc), are dropped, so frame 0 is the
//! return address into the function that called malloc or new, as in
//! gperftools.

pub mod fast;
pub mod libgcc;
pub mod modules;
pub mod steps;

pub use fast::ThreadUnwind;

use crate::stacks::StackHasher;
use fast::Walk;
use heapreplay_format::stacks::MAX_FRAMES;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

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
/// Two per function: the program's own definition, if it has one, and the
/// C++ runtime's.
static WRAPPER_RANGES: [(AtomicUsize, AtomicUsize); 16] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; 16];

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
    let lookups = WRAPPERS
        .iter()
        .flat_map(|name| [(name, libc::RTLD_DEFAULT), (name, libc::RTLD_NEXT)]);
    for ((name, scope), (lo, hi)) in lookups.zip(WRAPPER_RANGES.iter()) {
        // The first definition (the program's own, or the recorder's hook,
        // skipped: its frames are dropped as the recorder's), and the one
        // after the recorder's (the C++ runtime's).
        // SAFETY: name is NUL-terminated; these lookups are always allowed.
        let addr = unsafe { libc::dlsym(scope, name.as_ptr()) };
        let ours = (SELF_LO.load(Ordering::Relaxed)..SELF_HI.load(Ordering::Relaxed))
            .contains(&(addr as usize));
        if addr.is_null() || ours {
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

/// Collects return addresses, dropping the recorder's and operator new's
/// leading frames.
pub struct Filter<'a> {
    frames: &'a mut [u64; MAX_FRAMES],
    len: usize,
    limit: usize,
    seen_self: bool,
    hasher: StackHasher,
}

impl<'a> Filter<'a> {
    fn new(frames: &'a mut [u64; MAX_FRAMES], limit: usize) -> Self {
        Self {
            frames,
            len: 0,
            limit: limit.min(MAX_FRAMES),
            seen_self: false,
            hasher: StackHasher::default(),
        }
    }

    /// The frames kept, and their hash.
    fn done(&self) -> (usize, u64) {
        (self.len, self.hasher.finish(self.len))
    }

    fn reset(&mut self) {
        self.len = 0;
        self.seen_self = false;
        self.hasher = StackHasher::default();
    }

    /// Takes the next frame, innermost first; false once the stack is full.
    #[inline(always)]
    pub fn push(&mut self, ip: u64) -> bool {
        let ip_usize = ip as usize;
        let ours = ip_usize >= SELF_LO.load(Ordering::Relaxed)
            && ip_usize < SELF_HI.load(Ordering::Relaxed);
        if self.len == 0 && (ours || !self.seen_self || in_wrapper(ip_usize)) {
            // Still inside the unwinder, the recorder or operator new.
            self.seen_self |= ours;
            return true;
        }
        self.frames[self.len] = ip;
        self.hasher.push(ip);
        self.len += 1;
        self.len < self.limit
    }
}

/// Where a hook was called from: the stack pointer (pointing at the return
/// address) and rbp as they were on entry to the hook.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// The stack pointer on entry: the return address is stored there.
    pub sp: u64,
    /// rbp on entry (callee-saved: the caller's value).
    pub bp: u64,
}

/// Captures the caller's stack into `frames`, at most `limit` deep; returns
/// the number of frames and their hash (see [`StackHasher`]). With
/// `caller`, the walk starts at the hook's caller; without, it starts here
/// and drops the recorder's own frames. When the walk finds code of a library
/// loaded since the last look, `new_code` runs first (the caller records the
/// memory maps there, before the library can be unloaded again).
#[inline(never)]
pub fn capture(
    thread: &mut ThreadUnwind,
    frames: &mut [u64; MAX_FRAMES],
    limit: usize,
    caller: Option<Caller>,
    new_code: fn(),
) -> (usize, u64) {
    let mut filter = Filter::new(frames, limit);
    if let Some(caller) = caller {
        filter.seen_self = true;
        if thread.walk_from(&mut filter, Some(caller)) == Walk::Complete {
            return filter.done();
        }
        // Whatever stopped it, the full walk below decides.
        filter.reset();
    }
    match thread.walk_from(&mut filter, None) {
        Walk::Complete => return filter.done(),
        Walk::Broken if modules::refresh_if_changed() => {
            // A library loaded since the last look has code on this stack.
            new_code();
            filter.reset();
            if thread.walk_from(&mut filter, None) == Walk::Complete {
                return filter.done();
            }
        }
        Walk::Broken | Walk::Unavailable => {}
    }
    filter.reset();
    libgcc::walk(&mut filter);
    filter.done()
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
/// so their frames can be dropped, and builds the first module set.
pub fn init() {
    find_wrappers();
    let here = capture as *const () as usize;
    // SAFETY: find_self matches dl_iterate_phdr's callback contract.
    unsafe { libc::dl_iterate_phdr(Some(find_self), here as *mut c_void) };
    let _ = modules::current();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_hashed_as_they_are_kept() {
        let mut frames = [0u64; MAX_FRAMES];
        let mut filter = Filter::new(&mut frames, 3);
        filter.seen_self = true; // past the recorder's own frames
        for f in [0x1000, 0x2000, 0x3000, 0x4000] {
            if !filter.push(f) {
                break;
            }
        }
        let (len, hash) = filter.done();
        assert_eq!(len, 3);
        assert_eq!(hash, crate::stacks::hash(&[0x1000, 0x2000, 0x3000]));
        assert_ne!(hash, crate::stacks::hash(&[0x1000, 0x2000]));
        filter.reset();
        assert_eq!(filter.done(), (0, crate::stacks::hash(&[])));
    }
}
