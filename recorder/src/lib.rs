//! `librecord.so`: records every allocation event of the process it is
//! preloaded into (`LD_PRELOAD=librecord.so ./app`).
//!
//! The hooks forward to the next allocator and append compact events, each
//! with an interned stack id and a global sequence number, to per-thread
//! buffers; a writer thread compresses them into trace records. See
//! `format/FORMAT.md` for the file layout.
//!
//! Environment: `HEAPREPLAY_OUT` names the trace (`%p` becomes the pid;
//! default `heapreplay.%p.zst`); `HEAPREPLAY_MARKER_SIGNALS` lists the
//! signals recorded as markers (default `usr2`; `none` for none).

#![cfg_attr(test, allow(dead_code))]

pub mod guard;
// A unit-test harness must not interpose its own malloc or record itself.
#[cfg(not(test))]
pub mod hooks;
pub mod maps;
pub mod markers;
pub mod real;
pub mod signals;
#[macro_use]
pub mod report;
pub mod stacks;
pub mod thread;
pub mod unwind;
pub mod writer;

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A value alone on its cache lines, so that writes to it do not slow down
/// reads of its neighbours.
#[repr(align(128))]
pub struct Padded<T>(pub T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The next event sequence number: the global order of all events. Every
/// event increments it, from every thread, so it lives alone: sharing its
/// cache line with the read-mostly flags made every hook miss on them.
pub static SEQ: Padded<AtomicU64> = Padded(AtomicU64::new(0));

/// True while events are being recorded.
pub static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Most frames kept per stack.
pub const MAX_DEPTH: usize = 64;

/// The recorder's own Rust allocations go straight to the real allocator,
/// never through the hooks.
struct RealAllocator;

// SAFETY: forwards to the real malloc family, which meets GlobalAlloc's contract.
unsafe impl GlobalAlloc for RealAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match real::real() {
            // SAFETY: valid size and power-of-two alignment from Layout.
            Some(r) if layout.align() <= 16 => unsafe { (r.malloc)(layout.size()) as *mut u8 },
            // SAFETY: as above.
            Some(r) => unsafe { (r.memalign)(layout.align(), layout.size()) as *mut u8 },
            None => real::bootstrap_alloc(layout.size(), layout.align()) as *mut u8,
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        if real::is_bootstrap(ptr.cast()) {
            return;
        }
        if let Some(r) = real::real() {
            // SAFETY: ptr came from the real allocator via `alloc`.
            unsafe { (r.free)(ptr.cast()) };
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match real::real() {
            Some(r) if layout.align() <= 16 && !real::is_bootstrap(ptr.cast()) => {
                // SAFETY: ptr came from the real malloc.
                unsafe { (r.realloc)(ptr.cast(), new_size) as *mut u8 }
            }
            _ => {
                // SAFETY: fresh block, then copy the smaller of the two sizes.
                unsafe {
                    let new =
                        self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
                    if !new.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    new
                }
            }
        }
    }
}

#[global_allocator]
static GLOBAL: RealAllocator = RealAllocator;

/// The trace path: `HEAPREPLAY_OUT` (default `heapreplay.%p.zst`), `%p` replaced by the pid.
fn output_path(pid: u32) -> String {
    let template = std::env::var("HEAPREPLAY_OUT")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "heapreplay.%p.zst".to_string());
    template.replace("%p", &pid.to_string())
}

fn file_text(path: &str) -> String {
    std::fs::read(path)
        .map(|b| {
            let s: Vec<u8> = b.iter().map(|&c| if c == 0 { b' ' } else { c }).collect();
            String::from_utf8_lossy(&s).trim_end().to_string()
        })
        .unwrap_or_default()
}

extern "C" fn at_exit() {
    let _guard = guard::Guard::enter();
    let _errno = guard::ErrnoKeeper::save();
    if ACTIVE.load(Ordering::SeqCst) {
        writer::finish();
    }
}

extern "C" fn in_fork_child() {
    // The child has only the forking thread: stop recording there rather
    // than write into the parent's trace.
    ACTIVE.store(false, Ordering::SeqCst);
}

extern "C" fn init() {
    let Some(_guard) = guard::Guard::enter() else {
        return;
    };
    let _errno = guard::ErrnoKeeper::save();
    if real::real().is_none() {
        return;
    }
    unwind::init();
    thread::init();
    let pid = std::process::id();
    let path = output_path(pid);
    let info = heapreplay_format::FileInfo {
        pid,
        // SAFETY: getppid has no preconditions.
        ppid: unsafe { libc::getppid() } as u32,
        start_unix_ns: writer::start_unix_ns(),
        start_mono_ns: writer::mono_ns(),
        exe: std::fs::read_link("/proc/self/exe")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        cmdline: file_text("/proc/self/cmdline"),
        recorder_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let Some(path) = writer::open(&path, info) else {
        return;
    };
    ACTIVE.store(true, Ordering::SeqCst);
    if !writer::start() {
        ACTIVE.store(false, Ordering::SeqCst);
        say!("cannot start the writer thread; the program runs unrecorded");
        return;
    }
    signals::init();
    // SAFETY: registering plain extern "C" functions.
    unsafe {
        libc::atexit(at_exit);
        libc::pthread_atfork(None, None, Some(in_fork_child));
    }
    say!("recording to {path}");
}

#[cfg(not(test))]
#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;
