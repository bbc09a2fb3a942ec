//! The real allocator, found with `dlsym(RTLD_NEXT, ...)` (or, in a
//! program the recorder was loaded into while running, `RTLD_DEFAULT`: see
//! [`use_global_definitions`]), and the bootstrap arena that serves
//! allocations made while it is being looked up.

use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

type MallocFn = unsafe extern "C" fn(usize) -> *mut c_void;
type FreeFn = unsafe extern "C" fn(*mut c_void);
type CallocFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;
type ReallocFn = unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void;
type MemalignFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;
type PosixMemalignFn = unsafe extern "C" fn(*mut *mut c_void, usize, usize) -> i32;
type UsableSizeFn = unsafe extern "C" fn(*mut c_void) -> usize;

/// The next allocator's entry points.
pub struct Real {
    /// `malloc`.
    pub malloc: MallocFn,
    /// `free`.
    pub free: FreeFn,
    /// `calloc`.
    pub calloc: CallocFn,
    /// `realloc`.
    pub realloc: ReallocFn,
    /// `memalign`.
    pub memalign: MemalignFn,
    /// `posix_memalign`.
    pub posix_memalign: PosixMemalignFn,
    /// `aligned_alloc`.
    pub aligned_alloc: MemalignFn,
    /// `valloc`.
    pub valloc: MallocFn,
    /// `pvalloc`.
    pub pvalloc: MallocFn,
    /// `malloc_usable_size`.
    pub malloc_usable_size: UsableSizeFn,
}

const UNRESOLVED: u8 = 0;
const RESOLVING: u8 = 1;
const READY: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNRESOLVED);
static mut REAL: Option<Real> = None;
static MISSING_REPORTED: AtomicBool = AtomicBool::new(false);
/// True when the real functions are the program's global definitions.
static GLOBAL: AtomicBool = AtomicBool::new(false);

/// From now on, the real functions are the program's global definitions
/// (`RTLD_DEFAULT`), not the next after this library's (`RTLD_NEXT`): for
/// a recorder loaded into a running program with `RTLD_LOCAL`, whose own
/// definitions are not global, the global ones are what the program calls.
/// Called before anything is looked up.
pub fn use_global_definitions() {
    GLOBAL.store(true, Ordering::SeqCst);
}

/// The real definition of `name` (NULL if there is none); uncached.
pub fn definition(name: &std::ffi::CStr) -> *mut c_void {
    if !GLOBAL.load(Ordering::SeqCst) {
        // SAFETY: a lookup of a NUL-terminated name; the loader maps and
        // allocates with its own internal calls, never through the hooks.
        return unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    }
    // SAFETY: as above.
    let global = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    // SAFETY: a function's first bytes, readable code.
    if global.is_null() || !unsafe { is_plt_entry(global.cast()) } {
        return global;
    }
    // A program linked without PIE that takes the function's address
    // defines it as its own PLT entry, which jumps through the very table
    // entry the hooks replace: the real definition is the first object's
    // own, in load order.
    first_definition(name)
}

/// True if the code at `code` is a PLT entry (`jmp *slot(%rip)`, maybe
/// after `endbr64` and `bnd`), not a function.
///
/// # Safety
/// `code` points to at least 7 readable bytes of code.
unsafe fn is_plt_entry(code: *const u8) -> bool {
    // SAFETY: the caller's contract.
    let bytes = unsafe { std::slice::from_raw_parts(code, 7) };
    let rest = bytes
        .strip_prefix(&[0xf3, 0x0f, 0x1e, 0xfa])
        .unwrap_or(bytes);
    let rest = rest.strip_prefix(&[0xf2]).unwrap_or(rest);
    rest.starts_with(&[0xff, 0x25])
}

/// The definition of `name` in the first loaded object (in load order,
/// the program itself aside) that defines it itself.
fn first_definition(name: &std::ffi::CStr) -> *mut c_void {
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the Vec passed below; `info` is valid for the
        // call, its name NUL-terminated or NULL.
        unsafe {
            let out = &mut *data.cast::<Vec<(std::ffi::CString, usize)>>();
            let name = (*info).dlpi_name;
            if !name.is_null() && *name != 0 {
                out.push((
                    std::ffi::CStr::from_ptr(name).to_owned(),
                    (*info).dlpi_addr as usize,
                ));
            }
        }
        0
    }
    let mut objects: Vec<(std::ffi::CString, usize)> = Vec::new();
    // SAFETY: `visit` only copies what it is shown into `objects`.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut objects as *mut Vec<_>).cast()) };
    for (object, base) in &objects {
        // SAFETY: a NOLOAD reference to a loaded object, a lookup in it,
        // dladdr of the result, and the reference given back.
        unsafe {
            let handle = libc::dlopen(object.as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_LAZY);
            if handle.is_null() {
                continue;
            }
            let f = libc::dlsym(handle, name.as_ptr());
            libc::dlclose(handle);
            let mut info: libc::Dl_info = std::mem::zeroed();
            if !f.is_null()
                && !is_plt_entry(f.cast())
                && libc::dladdr(f, &mut info) != 0
                && info.dli_fbase as usize == *base
            {
                return f;
            }
        }
    }
    null_mut()
}

/// The next definition of `name` after this library's (0 if there is
/// none), looked up inside the guard (the lookup may allocate) and kept in
/// `slot` once found: for the hooks beyond the allocator's own functions.
pub fn next(slot: &std::sync::atomic::AtomicUsize, name: &std::ffi::CStr) -> usize {
    let f = slot.load(Ordering::Acquire);
    if f != 0 {
        return f;
    }
    let _inside = crate::guard::Guard::enter();
    let f = definition(name) as usize;
    if f != 0 {
        slot.store(f, Ordering::Release);
    }
    f
}

fn lookup(name: &[u8]) -> *mut c_void {
    std::ffi::CStr::from_bytes_with_nul(name).map_or(null_mut(), definition)
}

macro_rules! find {
    ($name:literal, $ty:ty) => {{
        let p = lookup(concat!($name, "\0").as_bytes());
        if p.is_null() {
            None
        } else {
            // SAFETY: a non-null symbol address of the function named, whose
            // C signature is $ty.
            Some(unsafe { std::mem::transmute::<*mut c_void, $ty>(p) })
        }
    }};
}

fn resolve_all() -> Option<Real> {
    Some(Real {
        malloc: find!("malloc", MallocFn)?,
        free: find!("free", FreeFn)?,
        calloc: find!("calloc", CallocFn)?,
        realloc: find!("realloc", ReallocFn)?,
        memalign: find!("memalign", MemalignFn)?,
        posix_memalign: find!("posix_memalign", PosixMemalignFn)?,
        aligned_alloc: find!("aligned_alloc", MemalignFn)?,
        valloc: find!("valloc", MallocFn)?,
        pvalloc: find!("pvalloc", MallocFn)?,
        malloc_usable_size: find!("malloc_usable_size", UsableSizeFn)?,
    })
}

/// The real allocator, or `None` while it is being resolved by this thread
/// (callers then use the bootstrap arena). Resolves on first use; other
/// threads wait for the resolving thread.
#[inline]
pub fn real() -> Option<&'static Real> {
    if STATE.load(Ordering::Acquire) == READY {
        // SAFETY: REAL is written once before STATE becomes READY and never again.
        return unsafe { (*std::ptr::addr_of!(REAL)).as_ref() };
    }
    resolve_slow()
}

#[cold]
fn resolve_slow() -> Option<&'static Real> {
    match STATE.compare_exchange(UNRESOLVED, RESOLVING, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            // dlsym may allocate: those calls re-enter our hooks, find the
            // guard held and land in the bootstrap arena.
            let guard = crate::guard::Guard::enter();
            let found = resolve_all();
            drop(guard);
            if found.is_none() && !MISSING_REPORTED.swap(true, Ordering::Relaxed) {
                crate::report::line(
                    b"heapreplay: the next allocator's functions were not found; cannot run\n",
                );
                // SAFETY: nothing can be allocated without an allocator.
                unsafe { libc::abort() };
            }
            // SAFETY: only the thread that won the exchange writes REAL, once.
            unsafe { *std::ptr::addr_of_mut!(REAL) = found };
            STATE.store(READY, Ordering::Release);
            // SAFETY: just written.
            unsafe { (*std::ptr::addr_of!(REAL)).as_ref() }
        }
        Err(_) => {
            // A thread already inside the recorder (the resolving one) uses the arena.
            crate::guard::Guard::enter()?;
            while STATE.load(Ordering::Acquire) != READY {
                std::hint::spin_loop();
            }
            // SAFETY: READY was observed.
            unsafe { (*std::ptr::addr_of!(REAL)).as_ref() }
        }
    }
}

// ---- bootstrap arena ----

const ARENA_LEN: usize = 256 * 1024;
const ARENA_HEADER: usize = 16;

#[repr(C, align(4096))]
struct Arena([u8; ARENA_LEN]);

static mut ARENA: Arena = Arena([0; ARENA_LEN]);
static ARENA_USED: AtomicUsize = AtomicUsize::new(0);

fn arena_base() -> usize {
    std::ptr::addr_of!(ARENA) as usize
}

/// True if `ptr` was handed out by the bootstrap arena.
#[inline]
pub fn is_bootstrap(ptr: *mut c_void) -> bool {
    let p = ptr as usize;
    p >= arena_base() && p < arena_base() + ARENA_LEN
}

/// Allocates zeroed memory from the bootstrap arena (never freed).
pub fn bootstrap_alloc(size: usize, align: usize) -> *mut c_void {
    let align = align.max(16);
    if align > 4096 || size > ARENA_LEN {
        return null_mut();
    }
    let mut used = ARENA_USED.load(Ordering::Relaxed);
    loop {
        let start = (arena_base() + used + ARENA_HEADER).next_multiple_of(align) - arena_base();
        let end = start + size;
        if end > ARENA_LEN {
            return null_mut();
        }
        match ARENA_USED.compare_exchange(used, end, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => {
                let p = arena_base() + start;
                // SAFETY: [p - 8, p) lies in the arena, inside this allocation's
                // reserved header space; nobody else owns it.
                unsafe { *((p - 8) as *mut usize) = size };
                return p as *mut c_void;
            }
            Err(now) => used = now,
        }
    }
}

/// The size requested for a bootstrap block.
pub fn bootstrap_size(ptr: *mut c_void) -> usize {
    // SAFETY: `ptr` came from bootstrap_alloc, which stored its size just before it.
    unsafe { *((ptr as usize - 8) as *const usize) }
}
