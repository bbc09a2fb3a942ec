//! The interposed mapping functions (`mmap`, `mmap64`, `munmap`, `mremap`,
//! `sbrk`, `brk`). Each forwards to the next definition of its name (the
//! first three straight to the kernel if there is none). With
//! `HEAP_PROFILE_MMAP` it records the call (see [`crate::mapping`]): the
//! caller's stack is walked first, then the call is made and recorded
//! under the mapping order lock. `errno` is what the real call left.
//!
//! The next definitions are looked up before that lock is taken: the
//! lookup takes the loader's lock, which a thread inside `dlopen` holds
//! while a library's constructor may map memory.
//!
//! Calls that glibc makes inside itself (malloc's own arenas, thread
//! stacks, the loader mapping libraries) do not go through these symbols
//! and are not seen, as gperftools does not see them either under glibc.

#![allow(clippy::missing_safety_doc)] // each hook has exactly the C contract of the function it replaces

use crate::guard::{errno, set_errno};
use crate::hooks::Recording;
use crate::mapping::{self, Pending};
use crate::real::next;
use heapreplay_format::MappingOp;
use std::ffi::{c_int, c_void};
use std::sync::atomic::AtomicUsize;

static NEXT_MMAP: AtomicUsize = AtomicUsize::new(0);
static NEXT_MMAP64: AtomicUsize = AtomicUsize::new(0);
static NEXT_MUNMAP: AtomicUsize = AtomicUsize::new(0);
static NEXT_MREMAP: AtomicUsize = AtomicUsize::new(0);
static NEXT_SBRK: AtomicUsize = AtomicUsize::new(0);
static NEXT_BRK: AtomicUsize = AtomicUsize::new(0);

type MmapFn = unsafe extern "C" fn(*mut c_void, usize, c_int, c_int, c_int, i64) -> *mut c_void;
type MunmapFn = unsafe extern "C" fn(*mut c_void, usize) -> c_int;
type MremapFn = unsafe extern "C" fn(*mut c_void, usize, usize, c_int, *mut c_void) -> *mut c_void;
type SbrkFn = unsafe extern "C" fn(isize) -> *mut c_void;
type BrkFn = unsafe extern "C" fn(*mut c_void) -> c_int;

/// Looks up every next definition now, so that no hook needs the lookup
/// (and the guard's thread-local storage) later: an allocator calls these
/// from inside itself, holding its locks, and a thread's first touch of a
/// loaded library's thread-local storage allocates.
pub fn resolve() {
    for (slot, name) in [
        (&NEXT_MMAP, c"mmap"),
        (&NEXT_MMAP64, c"mmap64"),
        (&NEXT_MUNMAP, c"munmap"),
        (&NEXT_MREMAP, c"mremap"),
        (&NEXT_SBRK, c"sbrk"),
        (&NEXT_BRK, c"brk"),
    ] {
        next(slot, name);
    }
}

/// What a hook does besides the real call: whether it needs the caller's
/// stack (the calls that add memory), and how it turns the call's result
/// into recorded calls.
struct Record<R, W: FnOnce(R, &mut Pending, u32)> {
    stack: bool,
    what: W,
    _result: std::marker::PhantomData<R>,
}

fn record<R, W: FnOnce(R, &mut Pending, u32)>(stack: bool, what: W) -> Record<R, W> {
    Record {
        stack,
        what,
        _result: std::marker::PhantomData,
    }
}

/// Runs `call` (the real function) and, when mapping calls are recorded
/// and this thread is not inside the recorder, records what it did.
fn recorded<R: Copy, W: FnOnce(R, &mut Pending, u32)>(
    call: impl FnOnce() -> R,
    rec: Record<R, W>,
) -> R {
    if !mapping::enabled() {
        return call();
    }
    let caller_errno = errno();
    let Some(r) = Recording::begin() else {
        return call();
    };
    let stack = if rec.stack { r.stack(None) } else { 0 };
    let mut pending = Pending::lock();
    // The call sees, and on success leaves, the caller's errno.
    set_errno(caller_errno);
    let result = call();
    let call_errno = errno();
    (rec.what)(result, &mut pending, stack);
    drop(pending);
    r.end();
    set_errno(call_errno);
    result
}

/// Calls `mmap` through `f` (a next definition, or 0: the kernel).
///
/// # Safety
/// mmap's contract.
unsafe fn call_mmap(
    f: usize,
    a: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    match f {
        // SAFETY: the kernel checks every argument.
        0 => unsafe { libc::syscall(libc::SYS_mmap, a, len, prot, flags, fd, off) as *mut c_void },
        // SAFETY: libc's mmap or mmap64, whose signature MmapFn is.
        f => unsafe { std::mem::transmute::<usize, MmapFn>(f)(a, len, prot, flags, fd, off) },
    }
}

/// `mmap` through `f` (see [`call_mmap`]), recorded.
///
/// # Safety
/// mmap's contract.
unsafe fn map_through(
    f: usize,
    a: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    let what = move |p, pending: &mut Pending, stack| {
        if p != libc::MAP_FAILED {
            pending.push(MappingOp::Map, p as u64, len as u64, stack);
        }
    };
    // SAFETY: the caller's contract is mmap's.
    recorded(
        || unsafe { call_mmap(f, a, len, prot, flags, fd, off) },
        record(true, what),
    )
}

/// `mmap`.
#[no_mangle]
pub unsafe extern "C" fn mmap(
    a: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    // SAFETY: forwarding the caller's arguments.
    unsafe { map_through(next(&NEXT_MMAP, c"mmap"), a, len, prot, flags, fd, off) }
}

/// `mmap64`: the same as `mmap` on 64-bit Linux.
#[no_mangle]
pub unsafe extern "C" fn mmap64(
    a: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    // SAFETY: forwarding the caller's arguments.
    unsafe { map_through(next(&NEXT_MMAP64, c"mmap64"), a, len, prot, flags, fd, off) }
}

/// `munmap`.
#[no_mangle]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: usize) -> c_int {
    let f = next(&NEXT_MUNMAP, c"munmap");
    let call = || match f {
        // SAFETY: forwarding the caller's arguments to the kernel.
        0 => unsafe { libc::syscall(libc::SYS_munmap, addr, len) as c_int },
        // SAFETY: libc's munmap, whose signature MunmapFn is.
        f => unsafe { std::mem::transmute::<usize, MunmapFn>(f)(addr, len) },
    };
    let what = move |rc, pending: &mut Pending, _| {
        if rc == 0 {
            pending.push(MappingOp::Unmap, addr as u64, len as u64, 0);
        }
    };
    recorded(call, record(false, what))
}

/// `mremap`. Declared with its optional fifth argument, which the C
/// calling convention passes in the same register either way; it is read
/// only with `MREMAP_FIXED`, when the caller passed it.
#[no_mangle]
pub unsafe extern "C" fn mremap(
    old: *mut c_void,
    old_len: usize,
    len: usize,
    flags: c_int,
    new: *mut c_void,
) -> *mut c_void {
    let f = next(&NEXT_MREMAP, c"mremap");
    let new = match flags & libc::MREMAP_FIXED {
        0 => std::ptr::null_mut(),
        _ => new,
    };
    let call = || match f {
        // SAFETY: forwarding the caller's arguments to the kernel.
        0 => unsafe {
            libc::syscall(libc::SYS_mremap, old, old_len, len, flags, new) as *mut c_void
        },
        // SAFETY: libc's mremap, whose signature MremapFn is.
        f => unsafe { std::mem::transmute::<usize, MremapFn>(f)(old, old_len, len, flags, new) },
    };
    let what = move |p, pending: &mut Pending, stack| {
        if p != libc::MAP_FAILED {
            let kept = flags & libc::MREMAP_DONTUNMAP != 0;
            let old = if kept {
                (0, 0)
            } else {
                (old as u64, old_len as u64)
            };
            pending.push_remap(MappingOp::Remap, p as u64, len as u64, old, stack);
        }
    };
    recorded(call, record(true, what))
}

/// Records the break moving from `before` to `after`.
fn break_moved(pending: &mut Pending, before: u64, after: u64, stack: u32) {
    if after > before {
        pending.push(MappingOp::Grow, before, after - before, stack);
    } else if after < before {
        pending.push(MappingOp::Shrink, after, before - after, 0);
    }
}

/// `sbrk`, through libc's (which keeps the break glibc's malloc uses).
#[no_mangle]
pub unsafe extern "C" fn sbrk(increment: isize) -> *mut c_void {
    let f = next(&NEXT_SBRK, c"sbrk");
    if f == 0 {
        set_errno(libc::ENOMEM);
        return usize::MAX as *mut c_void;
    }
    // SAFETY: libc's sbrk, whose signature SbrkFn is.
    let f = unsafe { std::mem::transmute::<usize, SbrkFn>(f) };
    let what = move |old: *mut c_void, pending: &mut Pending, stack| {
        if old as usize != usize::MAX {
            let old = old as u64;
            break_moved(pending, old, old.wrapping_add(increment as u64), stack);
        }
    };
    // SAFETY: forwarding the caller's argument.
    recorded(|| unsafe { f(increment) }, record(increment > 0, what))
}

/// `brk`, through libc's.
#[no_mangle]
pub unsafe extern "C" fn brk(addr: *mut c_void) -> c_int {
    let (f, sbrk_fn) = (next(&NEXT_BRK, c"brk"), next(&NEXT_SBRK, c"sbrk"));
    if f == 0 {
        set_errno(libc::ENOMEM);
        return -1;
    }
    // SAFETY: libc's brk and sbrk, whose signatures BrkFn and SbrkFn are.
    let (f, sbrk_fn) = unsafe {
        (
            std::mem::transmute::<usize, BrkFn>(f),
            (sbrk_fn != 0).then(|| std::mem::transmute::<usize, SbrkFn>(sbrk_fn)),
        )
    };
    // The break before, read under the order lock: no recorded call moves
    // it in between.
    let call = || {
        // SAFETY: sbrk(0) only reads the break.
        let before = sbrk_fn.map_or(0, |s| unsafe { s(0) } as u64);
        // SAFETY: forwarding the caller's argument.
        (unsafe { f(addr) }, before)
    };
    let what = move |(rc, before), pending: &mut Pending, stack| {
        if rc == 0 && before != 0 {
            break_moved(pending, before, addr as u64, stack);
        }
    };
    recorded(call, record(true, what)).0
}
