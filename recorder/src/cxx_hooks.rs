//! The interposed C++ allocation functions: every `operator new` and
//! `operator delete`. libstdc++'s call `malloc` and `free`, which the
//! recorder sees anyway; but a program linked with tcmalloc (`-ltcmalloc`)
//! gets tcmalloc's, which allocate without `malloc`, unseen. So each hook
//! forwards to the next definition inside the recorder's guard (the
//! `malloc` or `free` it makes inside is then not recorded a second time)
//! and records the block itself, with the caller of `new` as frame 0.
//!
//! The next definition is the one after the recorder's; for C++ code
//! loaded with `dlopen` and its own C++ runtime (`RTLD_LOCAL`), which the
//! recorder's lookups do not reach, the runtime's own (libstdc++ or libc++,
//! found by name); with no runtime at all, `malloc`, `posix_memalign` and
//! `free` serve, as libstdc++'s own definitions do.
//!
//! `new` may throw (`std::bad_alloc`, or from a new-handler): its hooks are
//! `extern "C-unwind"`, and nothing of the recorder is held while the next
//! definition runs but the guard, which unwinding lets go of. The recording
//! itself runs in an `extern "C"` function, so that a panic there aborts
//! rather than unwind into the program. A new-handler runs inside the
//! guard: what it frees is not recorded (it runs only when memory ran out).

#![allow(clippy::missing_safety_doc)] // each hook has exactly the C++ contract of the function it replaces

use crate::guard::Guard;
use crate::hooks::{entry_noting_hook, record_alloc, Recording};
use crate::real::is_bootstrap;
use crate::unwind::Caller;
use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The C++ runtimes whose definitions serve code loaded apart, and
/// whether one stays loaded once loaded (libstdc++ has GNU-unique symbols,
/// which keep it), so that its definitions may be kept.
const RUNTIMES: [(&CStr, bool); 2] = [(c"libstdc++.so.6", true), (c"libc++.so.1", false)];

/// The next definition of `name` (0 if there is none): the one after this
/// library's ([`crate::real::next`]), else the C++ runtime's, kept once
/// found where it cannot be unloaded.
fn next(slot: &AtomicUsize, name: &CStr) -> usize {
    let f = crate::real::next(slot, name);
    if f != 0 {
        return f;
    }
    let _inside = Guard::enter();
    for (runtime, stays) in RUNTIMES {
        // SAFETY: RTLD_NOLOAD only finds an object already loaded; the
        // handle is let go of at once (the object stays: it was loaded).
        let f = unsafe {
            let handle = libc::dlopen(runtime.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD);
            if handle.is_null() {
                continue;
            }
            let f = libc::dlsym(handle, name.as_ptr()) as usize;
            libc::dlclose(handle);
            f
        };
        if f != 0 {
            if stays {
                slot.store(f, Ordering::Release);
            }
            return f;
        }
    }
    0
}

/// Records a block `new` returned (`sp` 0: walk from here). A panic here
/// aborts: it must not unwind into the program.
extern "C" fn record_new(p: *mut c_void, size: usize, sp: u64, bp: u64) {
    record_alloc(p, size, (sp != 0).then_some(Caller { sp, bp }));
}

/// With no C++ runtime to forward to: `new` as libstdc++ defines it,
/// through the recorder's own `malloc` or `posix_memalign` (which record
/// the block). A throwing `new` that finds no memory cannot throw from
/// here: the process is stopped, saying why.
extern "C" fn new_without_runtime(size: usize, align: usize, throws: bool) -> *mut c_void {
    let size = size.max(1);
    let p = if align > 16 {
        let mut p = std::ptr::null_mut();
        // SAFETY: a valid out-pointer; posix_memalign's contract.
        match unsafe { crate::hooks::posix_memalign(&mut p, align, size) } {
            0 => p,
            _ => std::ptr::null_mut(),
        }
    } else {
        // SAFETY: malloc's contract.
        unsafe { crate::hooks::malloc(size) }
    };
    if p.is_null() && throws {
        crate::say!("operator new: out of memory, and no C++ runtime to throw std::bad_alloc");
        std::process::abort();
    }
    p
}

/// Forwards a `new` to the next definition of `$name` (called with the
/// arguments `$arg`, typed `$ty`), then records the block of `$size` bytes
/// with the caller noted at (`$sp`, `$bp`); `$fallback` when there is none.
macro_rules! forward_new {
    ($name:expr, ($($arg:ident: $ty:ty),*), $size:expr, ($sp:expr, $bp:expr), $fallback:expr) => {{
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        match next(&NEXT, $name) {
            0 => $fallback,
            f => {
                // SAFETY: the next definition of this very function.
                let f = unsafe {
                    std::mem::transmute::<usize, unsafe extern "C-unwind" fn($($ty),*) -> *mut c_void>(f)
                };
                let p = {
                    let _inside = Guard::enter();
                    // SAFETY: forwarding the caller's arguments; may unwind.
                    unsafe { f($($arg),*) }
                };
                record_new(p, $size, $sp, $bp);
                p
            }
        }
    }};
}

entry_noting_hook!(
    /// `operator new(size_t)`.
    extern "C-unwind" _Znwm => znwm_from, (size: usize), "rsi", "rdx");
entry_noting_hook!(
    /// `operator new[](size_t)`.
    extern "C-unwind" _Znam => znam_from, (size: usize), "rsi", "rdx");

/// `operator new(size_t)`, entered from [`_Znwm`] with its caller noted.
unsafe extern "C-unwind" fn znwm_from(size: usize, sp: u64, bp: u64) -> *mut c_void {
    forward_new!(c"_Znwm", (size: usize), size, (sp, bp), new_without_runtime(size, 0, true))
}

/// `operator new[](size_t)`, entered from [`_Znam`] with its caller noted.
unsafe extern "C-unwind" fn znam_from(size: usize, sp: u64, bp: u64) -> *mut c_void {
    forward_new!(c"_Znam", (size: usize), size, (sp, bp), new_without_runtime(size, 0, true))
}

macro_rules! new_hook {
    ($(#[$doc:meta])* $name:ident, ($($arg:ident: $ty:ty),*), $size:ident, $align:expr, $throws:literal) => {
        $(#[$doc])*
        #[no_mangle]
        pub unsafe extern "C-unwind" fn $name($($arg: $ty),*) -> *mut c_void {
            let name = concat!(stringify!($name), "\0").as_bytes();
            // SAFETY: NUL-terminated above, with no NUL inside.
            let name = unsafe { CStr::from_bytes_with_nul_unchecked(name) };
            forward_new!(name, ($($arg: $ty),*), $size, (0, 0), new_without_runtime($size, $align, $throws))
        }
    };
}

/// The `const std::nothrow_t&` argument.
type Nothrow = *const c_void;

new_hook!(
    /// `operator new(size_t, const std::nothrow_t&)`.
    _ZnwmRKSt9nothrow_t, (size: usize, nothrow: Nothrow), size, 0, false);
new_hook!(
    /// `operator new[](size_t, const std::nothrow_t&)`.
    _ZnamRKSt9nothrow_t, (size: usize, nothrow: Nothrow), size, 0, false);
new_hook!(
    /// `operator new(size_t, std::align_val_t)`.
    _ZnwmSt11align_val_t, (size: usize, align: usize), size, align, true);
new_hook!(
    /// `operator new[](size_t, std::align_val_t)`.
    _ZnamSt11align_val_t, (size: usize, align: usize), size, align, true);
new_hook!(
    /// `operator new(size_t, std::align_val_t, const std::nothrow_t&)`.
    _ZnwmSt11align_val_tRKSt9nothrow_t, (size: usize, align: usize, nothrow: Nothrow), size, align, false);
new_hook!(
    /// `operator new[](size_t, std::align_val_t, const std::nothrow_t&)`.
    _ZnamSt11align_val_tRKSt9nothrow_t, (size: usize, align: usize, nothrow: Nothrow), size, align, false);

macro_rules! delete_hook {
    ($(#[$doc:meta])* $name:ident, ($ptr:ident: *mut c_void $(, $arg:ident: $ty:ty)*)) => {
        $(#[$doc])*
        #[no_mangle]
        pub unsafe extern "C" fn $name($ptr: *mut c_void $(, $arg: $ty)*) {
            if $ptr.is_null() || is_bootstrap($ptr) {
                // Nothing to free, or a block of the recorder's arena.
                return;
            }
            let name = concat!(stringify!($name), "\0").as_bytes();
            // SAFETY: NUL-terminated above, with no NUL inside.
            let name = unsafe { CStr::from_bytes_with_nul_unchecked(name) };
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let f = next(&NEXT, name);
            if f == 0 {
                // SAFETY: a block new_without_runtime had from malloc.
                unsafe { crate::hooks::free($ptr) };
                return;
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
