//! The fast unwinder: compact rules from the shared cache, two stack reads
//! per frame. Stack reads are bounded to this thread's stack.

use super::modules::{self, CfiContext, ModuleSet};
use super::rules::{self, Rule};
use super::Filter;

/// One thread's unwinding state.
pub struct ThreadUnwind {
    modules: ModuleSet,
    generation: u64,
    ctx: Box<CfiContext>,
    stack_hi: u64,
}

/// How a walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// Reached the root of the stack (or the frame limit).
    Complete,
    /// Stopped early: unreadable memory or no usable unwind rule.
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
        }
    }

    /// The rule for the frame at `pc` (`first`: `pc` is an instruction
    /// pointer, else a return address).
    #[inline]
    fn rule(&mut self, pc: u64, first: bool) -> Rule {
        if let Some(rule) = rules::lookup(pc) {
            return rule;
        }
        let lookup = if first { pc } else { pc - 1 };
        let rule = match modules::find(&self.modules, lookup) {
            Some(m) => m.rule_for(lookup, &mut self.ctx),
            None => Rule::Unknown,
        };
        // An address outside every known object may belong to one loaded
        // since: leave it uncached so that a refresh can find it.
        if rule != Rule::Unknown || modules::find(&self.modules, lookup).is_some() {
            rules::insert(pc, rule);
        }
        rule
    }

    /// Walks the caller's stack into `filter`.
    #[inline(never)]
    pub fn walk(&mut self, filter: &mut Filter<'_>) -> Walk {
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
        loop {
            if !filter.push(pc) {
                return Walk::Complete;
            }
            let (cfa_bp, cfa_off, ra_off, bp_off) = match self.rule(pc, first) {
                Rule::Frame {
                    cfa_bp,
                    cfa_off,
                    ra_off,
                    bp_off,
                } => (cfa_bp, cfa_off, ra_off, bp_off),
                Rule::End => return Walk::Complete,
                Rule::Unknown => return Walk::Broken,
            };
            let cfa = (if cfa_bp { bp } else { sp }).wrapping_add(cfa_off as i64 as u64);
            let Some(ra) = read(cfa.wrapping_add(ra_off as i64 as u64)) else {
                return Walk::Broken;
            };
            if let Some(off) = bp_off {
                match read(cfa.wrapping_add(off as i64 as u64)) {
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
