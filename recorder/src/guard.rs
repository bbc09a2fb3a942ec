//! The per-thread reentrancy guard.
//!
//! Every hook enters the guard before doing recorder work. Allocation calls
//! made while the guard is held (by the recorder itself, by libc on its
//! behalf, or by a signal handler interrupting a hook) are passed straight to
//! the real allocator and not recorded. The flag is a plain `Cell<bool>` with
//! a const initialiser and no destructor, so touching it never allocates.

use std::cell::Cell;

thread_local! {
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Proof that this thread is inside the recorder; leaving drops it.
pub struct Guard(());

impl Guard {
    /// Enters the recorder, or returns `None` if this thread already is inside.
    #[inline]
    pub fn enter() -> Option<Guard> {
        INSIDE.with(|inside| {
            if inside.get() {
                None
            } else {
                inside.set(true);
                Some(Guard(()))
            }
        })
    }

    /// Marks this thread as permanently inside (the writer thread).
    pub fn enter_forever() {
        INSIDE.with(|inside| inside.set(true));
    }
}

impl Drop for Guard {
    #[inline]
    fn drop(&mut self) {
        INSIDE.with(|inside| inside.set(false));
    }
}

/// This thread's `errno`.
#[inline]
pub fn errno() -> i32 {
    // SAFETY: __errno_location always returns this thread's valid errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets this thread's `errno`.
#[inline]
pub fn set_errno(e: i32) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = e };
}

/// Saves `errno` on creation and restores it on drop, so recorder work never
/// changes what the application sees in `errno`.
pub struct ErrnoKeeper(i32);

impl ErrnoKeeper {
    /// Captures the current `errno`.
    #[inline]
    pub fn save() -> Self {
        Self(errno())
    }
}

impl Drop for ErrnoKeeper {
    #[inline]
    fn drop(&mut self) {
        set_errno(self.0);
    }
}
