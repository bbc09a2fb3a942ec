//! The fast unwinder: compact steps from the shared cache, two stack reads
//! per frame. Stack reads are bounded to this thread's stack.

use super::modules::{self, CfiContext, ModuleSet};
use super::steps::{self, Step};
use super::{Caller, Filter};

/// One thread's unwinding state.
pub struct ThreadUnwind {
    modules: ModuleSet,
    generation: u64,
    ctx: Box<CfiContext>,
    stack_hi: u64,
    near: Box<NearCache>,
}

/// Slots in each thread's own step cache.
const NEAR_SLOTS: usize = 1024;

/// A thread's own direct-mapped cache of steps, in front of the shared
/// table: one load, no probing, no seqlock re-check, and small enough
/// (16 KiB) to stay in the first-level cache. A frame's step lookup sits on
/// the walk's serial chain (read a return address, find its step, read the
/// next), so its latency is the walk's speed.
struct NearCache {
    /// (code address, packed step) pairs; a zero address is empty.
    slots: [(u64, u64); NEAR_SLOTS],
}

impl NearCache {
    #[inline(always)]
    fn slot(pc: u64) -> usize {
        ((pc ^ (pc >> 10)) as usize) & (NEAR_SLOTS - 1)
    }

    /// The packed step for `pc` (see [`Step::pack`]), or 0.
    #[inline(always)]
    fn get(&self, pc: u64) -> u64 {
        let (key, packed) = self.slots[Self::slot(pc)];
        if key == pc {
            packed
        } else {
            0
        }
    }

    #[inline]
    fn put(&mut self, pc: u64, packed: u64) {
        self.slots[Self::slot(pc)] = (pc, packed);
    }

    fn clear(&mut self) {
        self.slots.fill((0, 0));
    }
}

/// How a walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// Reached the root of the stack (or the frame limit).
    Complete,
    /// Stopped early: unreadable memory or no usable unwind step.
    Broken,
    /// Could not start (the stack pointer is not below the known stack top).
    Unavailable,
}

extern "C" {
    /// Set by the dynamic loader: the stack pointer at process start.
    static __libc_stack_end: *mut libc::c_void;
}

/// The highest address of this thread's stack that frames can lie below.
///
/// Found without any call that may lock or allocate: `pthread_getattr_np`
/// takes the thread's lock and allocates (for the main thread it even reads
/// /proc/self/maps), so calling it from a hook deadlocks when the hook runs
/// inside it, as it does in every Rust program at start-up. glibc places a
/// thread's descriptor at the top of its stack, so `pthread_self()` bounds a
/// thread's frames; the main thread's frames lie below `__libc_stack_end`.
fn stack_top() -> u64 {
    // SAFETY: plain system calls and a read of a loader-provided variable.
    unsafe {
        if libc::gettid() == libc::getpid() {
            __libc_stack_end as u64
        } else {
            libc::pthread_self() as u64
        }
    }
}

/// The furthest a walk reads above the stack pointer; beyond it the stack is
/// not one glibc laid out (a custom stack, another runtime's threads), and
/// the walk is left to libgcc.
const MAX_STACK_SPAN: u64 = 256 << 20;

impl Default for ThreadUnwind {
    /// State for the calling thread.
    fn default() -> Self {
        let (generation, modules) = modules::current();
        Self {
            modules,
            generation,
            ctx: Box::new(CfiContext::new()),
            stack_hi: stack_top(),
            near: Box::new(NearCache {
                slots: [(0, 0); NEAR_SLOTS],
            }),
        }
    }
}

impl ThreadUnwind {
    /// Picks up a new module set if one was built since.
    #[inline]
    fn sync(&mut self) {
        if self.generation != modules::generation() {
            let (generation, set) = modules::current();
            self.generation = generation;
            self.modules = set;
            // Steps were cleared because an object was unloaded.
            self.near.clear();
        }
    }

    /// The packed step for the frame at `pc` (`first`: `pc` is an
    /// instruction pointer, else a return address). A step that does not
    /// pack is given as [`Step::Unknown`]'s word: the walk is then redone by
    /// libgcc.
    #[inline(always)]
    fn rule_word(&mut self, pc: u64, first: bool) -> u64 {
        let word = self.near.get(pc);
        if word != 0 {
            return word;
        }
        self.rule_word_slow(pc, first)
    }

    #[inline(never)]
    fn rule_word_slow(&mut self, pc: u64, first: bool) -> u64 {
        let word = self.step(pc, first).pack().unwrap_or(Step::UNKNOWN_WORD);
        self.near.put(pc, word);
        word
    }

    /// The step for the frame at `pc`, from the shared table or computed.
    fn step(&mut self, pc: u64, first: bool) -> Step {
        if let Some(step) = steps::lookup(pc) {
            return step;
        }
        let lookup = if first { pc } else { pc - 1 };
        let step = match modules::find(&self.modules, lookup) {
            Some(m) => m.step_for(lookup, &mut self.ctx),
            None => Step::Unknown,
        };
        // An address outside every known object may belong to one loaded
        // since: leave it uncached so that a refresh can find it.
        if step != Step::Unknown || modules::find(&self.modules, lookup).is_some() {
            steps::insert(pc, step);
        }
        step
    }

    /// Walks the stack into `filter`, from `caller`'s frame (a hook's
    /// caller, noted on entry to the hook) or, without, from here.
    #[inline(never)]
    pub fn walk_from(&mut self, filter: &mut Filter<'_>, caller: Option<Caller>) -> Walk {
        let (mut pc, mut sp, mut bp): (u64, u64, u64);
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
        if sp >= self.stack_hi || self.stack_hi - sp > MAX_STACK_SPAN {
            return Walk::Unavailable;
        }
        self.sync();
        let (lo, hi) = (sp, self.stack_hi);
        let read = |addr: u64| -> Option<u64> {
            if addr >= lo
                && addr.checked_add(8).is_some_and(|end| end <= hi)
                && addr.is_multiple_of(8)
            {
                // SAFETY: addr lies within this thread's stack, between the
                // current stack pointer and the stack's top: mapped and readable.
                Some(unsafe { *(addr as *const u64) })
            } else {
                None
            }
        };
        let mut first = true;
        if let Some(c) = caller {
            // The hook's entry lies above this frame on the same stack.
            let Some(ra) = read(c.sp) else {
                return Walk::Broken;
            };
            (pc, sp, bp, first) = (ra, c.sp + 8, c.bp, false);
        }
        loop {
            if !filter.push(pc) {
                return Walk::Complete;
            }
            // Decoded in place from the packed word: the lookup is on the
            // walk's serial chain, and frames are nearly always `Frame`.
            let word = self.rule_word(pc, first);
            let Some(frame) = steps::FrameWord::new(word) else {
                return if Step::unpack(word) == Some(Step::End) {
                    Walk::Complete
                } else {
                    Walk::Broken
                };
            };
            let cfa = (if frame.cfa_bp() { bp } else { sp }).wrapping_add(frame.cfa_off());
            let Some(ra) = read(cfa.wrapping_add(frame.ra_off())) else {
                return Walk::Broken;
            };
            if let Some(off) = frame.bp_off() {
                match read(cfa.wrapping_add(off)) {
                    Some(v) => bp = v,
                    None => return Walk::Broken,
                }
            }
            if ra == 0 {
                return Walk::Complete;
            }
            // The stack grows down: each caller's frame lies above.
            if cfa <= sp {
                return Walk::Broken;
            }
            sp = cfa;
            pc = ra;
            first = false;
        }
    }
}
