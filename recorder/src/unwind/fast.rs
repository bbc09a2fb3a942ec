//! The fast unwinder: framehop over the copied unwind tables, with a
//! per-thread cache of unwind rules by return address, so a stack seen
//! before costs a cache lookup and two stack reads per frame instead of a
//! CFI decode. Stack reads are bounded to this thread's stack.

use super::modules::{self, SharedUnwinder};
use super::Filter;
use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64};
use framehop::Unwinder;

/// One thread's unwinding state.
pub struct ThreadUnwind {
    unwinder: SharedUnwinder,
    generation: u64,
    cache: CacheX86_64,
    stack_lo: u64,
    stack_hi: u64,
}

/// How a walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// Reached the root of the stack (or the frame limit).
    Complete,
    /// Stopped early: unreadable memory or no unwind information.
    Broken,
    /// Could not start (the stack pointer is outside the known stack).
    Unavailable,
}

/// This thread's stack bounds, from pthread_getattr_np.
fn stack_bounds() -> (u64, u64) {
    // SAFETY: attr is initialised by pthread_getattr_np before use and
    // destroyed after; the out-pointers are valid.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return (0, 0);
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: usize = 0;
        let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 {
            return (0, 0);
        }
        (addr as u64, addr as u64 + size as u64)
    }
}

impl Default for ThreadUnwind {
    /// State for the calling thread.
    fn default() -> Self {
        let (generation, unwinder) = modules::current();
        let (stack_lo, stack_hi) = stack_bounds();
        Self {
            unwinder,
            generation,
            cache: CacheX86_64::new(),
            stack_lo,
            stack_hi,
        }
    }
}

impl ThreadUnwind {
    /// Picks up a new module set if one was built since.
    #[inline]
    fn sync(&mut self) {
        if self.generation != modules::generation() {
            let (generation, unwinder) = modules::current();
            self.generation = generation;
            self.unwinder = unwinder;
        }
    }

    /// Walks the caller's stack into `filter`.
    #[inline(never)]
    pub fn walk(&mut self, filter: &mut Filter<'_>) -> Walk {
        let (pc, sp, bp): (u64, u64, u64);
        // SAFETY: reads three registers; no memory or stack effects.
        unsafe {
            std::arch::asm!(
                "lea {pc}, [rip]",
                "mov {sp}, rsp",
                "mov {bp}, rbp",
                pc = out(reg) pc,
                sp = out(reg) sp,
                bp = out(reg) bp,
                options(nomem, nostack, preserves_flags)
            );
        }
        if sp < self.stack_lo || sp >= self.stack_hi {
            return Walk::Unavailable;
        }
        self.sync();
        let hi = self.stack_hi;
        let mut read = |addr: u64| {
            if addr >= sp
                && addr.checked_add(8).is_some_and(|end| end <= hi)
                && addr.is_multiple_of(8)
            {
                // SAFETY: addr lies within this thread's stack, between the
                // current stack pointer and the stack's top: mapped and readable.
                Ok(unsafe { *(addr as *const u64) })
            } else {
                Err(())
            }
        };
        let mut frames = self.unwinder.iter_frames(
            pc,
            UnwindRegsX86_64::new(pc, sp, bp),
            &mut self.cache,
            &mut read,
        );
        loop {
            match frames.next() {
                Ok(Some(f)) => {
                    if !filter.push(f.address()) {
                        return Walk::Complete;
                    }
                }
                Ok(None) => return Walk::Complete,
                Err(_) => return Walk::Broken,
            }
        }
    }
}
