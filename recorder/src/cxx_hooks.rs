//! The interposed C++ allocation functions: every `operator new` and
//! `operator delete`. libstdc++'s call `malloc` and `free`, which the
//! recorder sees anyway; but a program linked with tcmalloc (`-ltcmalloc`)
//! gets tcmalloc's, which allocate without `malloc`, unseen. So each hook
//! forwards to the next definition inside the recorder's guard (the
//! `malloc` or `free` it makes inside is then not recorded a second time)
//! and records the block itself, with the caller of `new` as frame 0.
//!
//! `new` may throw (`std::bad_alloc`, or from a new-handler): its hooks are
//! `extern "C-unwind"`, and nothing of the recorder is held while the next
//! definition runs but the guard, which unwinding lets go of.

#![allow(clippy::missing_safety_doc)] // each hook has exactly the C++ contract of the function it replaces

use crate::guard::Guard;
use crate::hooks::{record_alloc, Recording};
use crate::real::is_bootstrap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The next definition of the NUL-terminated `name` (0 if there is none),
/// looked up once into `slot`.
fn next(slot: &AtomicUsize, name: &[u8]) -> usize {
    let f = slot.load(Ordering::Acquire);
    if f != 0 {
        return f;
    }
    // SAFETY: `name` is NUL-terminated (the macros below append the NUL);
    // RTLD_NEXT lookups are always allowed. dlsym may allocate: those calls
    // pass through the malloc hook.
    let f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast()) } as usize;
    slot.store(f, Ordering::Release);
    f
}

macro_rules! new_hook {
    ($(#[$doc:meta])* $name:ident, ($size:ident: usize $(, $arg:ident: $ty:ty)*)) => {
        $(#[$doc])*
        #[no_mangle]
        pub unsafe extern "C-unwind" fn $name($size: usize $(, $arg: $ty)*) -> *mut c_void {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let f = next(&NEXT, concat!(stringify!($name), "\0").as_bytes());
            if f == 0 {
                // No C++ runtime underneath (it cannot be: something
                // called this), so malloc serves, and records, the block.
                // SAFETY: malloc's contract.
                return unsafe { crate::hooks::malloc($size) };
            }
            // SAFETY: the next definition of this very function.
            let f = unsafe {
                std::mem::transmute::<usize, unsafe extern "C-unwind" fn(usize $(, $ty)*) -> *mut c_void>(f)
            };
            let p = {
                let _inside = Guard::enter();
                // SAFETY: forwarding the caller's arguments; may unwind.
                unsafe { f($size $(, $arg)*) }
            };
            record_alloc(p, $size, None);
            p
        }
    };
}

macro_rules! delete_hook {
    ($(#[$doc:meta])* $name:ident, ($ptr:ident: *mut c_void $(, $arg:ident: $ty:ty)*)) => {
        $(#[$doc])*
        #[no_mangle]
        pub unsafe extern "C" fn $name($ptr: *mut c_void $(, $arg: $ty)*) {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            if $ptr.is_null() || is_bootstrap($ptr) {
                // Nothing to free, or a block of the recorder's arena.
                return;
            }
            let f = next(&NEXT, concat!(stringify!($name), "\0").as_bytes());
            if f == 0 {
                // SAFETY: a block from malloc (see new_hook).
                return unsafe { crate::hooks::free($ptr) };
            }
            // SAFETY: the next definition of this very function.
            let f = unsafe {
                std::mem::transmute::<usize, unsafe extern "C" fn(*mut c_void $(, $ty)*)>(f)
            };
            match Recording::begin() {
                Some(r) => {
                    r.free(None, $ptr);
                    // SAFETY: forwarding the caller's arguments, inside the guard.
                    unsafe { f($ptr $(, $arg)*) };
                    r.end();
                }
                // SAFETY: forwarding the caller's arguments.
                None => unsafe { f($ptr $(, $arg)*) },
            }
        }
    };
}

type Nothrow = *const c_void;

new_hook!(
    /// `operator new(size_t)`.
    _Znwm, (size: usize));
new_hook!(
    /// `operator new[](size_t)`.
    _Znam, (size: usize));
new_hook!(
    /// `operator new(size_t, const std::nothrow_t&)`.
    _ZnwmRKSt9nothrow_t, (size: usize, nothrow: Nothrow));
new_hook!(
    /// `operator new[](size_t, const std::nothrow_t&)`.
    _ZnamRKSt9nothrow_t, (size: usize, nothrow: Nothrow));
new_hook!(
    /// `operator new(size_t, std::align_val_t)`.
    _ZnwmSt11align_val_t, (size: usize, align: usize));
new_hook!(
    /// `operator new[](size_t, std::align_val_t)`.
    _ZnamSt11align_val_t, (size: usize, align: usize));
new_hook!(
    /// `operator new(size_t, std::align_val_t, const std::nothrow_t&)`.
    _ZnwmSt11align_val_tRKSt9nothrow_t, (size: usize, align: usize, nothrow: Nothrow));
new_hook!(
    /// `operator new[](size_t, std::align_val_t, const std::nothrow_t&)`.
    _ZnamSt11align_val_tRKSt9nothrow_t, (size: usize, align: usize, nothrow: Nothrow));

delete_hook!(
    /// `operator delete(void*)`.
    _ZdlPv, (ptr: *mut c_void));
delete_hook!(
    /// `operator delete[](void*)`.
    _ZdaPv, (ptr: *mut c_void));
delete_hook!(
    /// `operator delete(void*, size_t)`.
    _ZdlPvm, (ptr: *mut c_void, size: usize));
delete_hook!(
    /// `operator delete[](void*, size_t)`.
    _ZdaPvm, (ptr: *mut c_void, size: usize));
delete_hook!(
    /// `operator delete(void*, const std::nothrow_t&)`.
    _ZdlPvRKSt9nothrow_t, (ptr: *mut c_void, nothrow: Nothrow));
delete_hook!(
    /// `operator delete[](void*, const std::nothrow_t&)`.
    _ZdaPvRKSt9nothrow_t, (ptr: *mut c_void, nothrow: Nothrow));
delete_hook!(
    /// `operator delete(void*, std::align_val_t)`.
    _ZdlPvSt11align_val_t, (ptr: *mut c_void, align: usize));
delete_hook!(
    /// `operator delete[](void*, std::align_val_t)`.
    _ZdaPvSt11align_val_t, (ptr: *mut c_void, align: usize));
delete_hook!(
    /// `operator delete(void*, size_t, std::align_val_t)`.
    _ZdlPvmSt11align_val_t, (ptr: *mut c_void, size: usize, align: usize));
delete_hook!(
    /// `operator delete[](void*, size_t, std::align_val_t)`.
    _ZdaPvmSt11align_val_t, (ptr: *mut c_void, size: usize, align: usize));
delete_hook!(
    /// `operator delete(void*, std::align_val_t, const std::nothrow_t&)`.
    _ZdlPvSt11align_val_tRKSt9nothrow_t, (ptr: *mut c_void, align: usize, nothrow: Nothrow));
delete_hook!(
    /// `operator delete[](void*, std::align_val_t, const std::nothrow_t&)`.
    _ZdaPvSt11align_val_tRKSt9nothrow_t, (ptr: *mut c_void, align: usize, nothrow: Nothrow));
