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
//! signals recorded as markers (default `usr2`; `none` for none);
//! `HEAPREPLAY_MAX_SIZE` is the disk cap `heapreplay keep` holds the trace
//! under: past four times it, nothing is folding it, and recording stops.
//! gperftools' `HEAPPROFILE` (and its rule variables, kept in the trace)
//! names the trace `PREFIX.trace.zst` unless `HEAPREPLAY_OUT` is set, and
//! `HEAPPROFILESIGNAL` adds a marker signal. `PERFTOOLS_VERBOSE` above 0
//! (or `HEAPREPLAY_VERBOSE`) makes the recorder say what it does.

#![cfg_attr(test, allow(dead_code))]

pub mod attach;
pub mod clock;
// Exported C++ symbols: not in a unit-test harness.
#[cfg(not(test))]
pub mod cxx_hooks;
pub mod got;
pub mod guard;
// A unit-test harness must not interpose its own malloc or record itself.
#[cfg(not(test))]
pub mod hooks;
#[cfg(not(test))]
pub mod map_hooks;
pub mod mapping;
pub mod maps;
pub mod markers;
pub mod output;
// Exported C symbols: not in a unit-test harness.
#[cfg(not(test))]
pub mod profiler_api;
pub mod queue;
pub mod real;
pub mod signals;
#[macro_use]
pub mod report;
pub mod rss;
pub mod stacks;
pub mod thread;
pub mod unwind;
pub mod writer;

use heapreplay_format::settings::Settings;
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

/// `HEAPREPLAY_OUT`, the trace path template (`%p` becomes the pid), read
/// once at start so a forked child uses the same one.
static TEMPLATE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// The settings the program started with, read once at start.
static SETTINGS: std::sync::OnceLock<Settings> = std::sync::OnceLock::new();

/// True if the recorder says what it does: `PERFTOOLS_VERBOSE` above 0
/// (gperftools' variable) or `HEAPREPLAY_VERBOSE` set; read once at start.
pub(crate) fn verbose() -> bool {
    static VERBOSE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *VERBOSE.get_or_init(|| {
        let perftools = std::env::var("PERFTOOLS_VERBOSE")
            .is_ok_and(|v| heapreplay_format::settings::env_to_int(&v) > 0);
        perftools || std::env::var_os("HEAPREPLAY_VERBOSE").is_some_and(|v| !v.is_empty())
    })
}

/// The file of the allocator the hooks forward to.
fn allocator_library() -> String {
    let Some(real) = real::real() else {
        return "an unknown object".into();
    };
    // SAFETY: dladdr fills `info` for an address; the names it gives are
    // NUL-terminated and live as long as the object is loaded.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        let found = libc::dladdr(real.malloc as *const libc::c_void, &mut info) != 0;
        match found && !info.dli_fname.is_null() {
            true => std::ffi::CStr::from_ptr(info.dli_fname)
                .to_string_lossy()
                .into_owned(),
            false => "an unknown object".to_string(),
        }
    }
}

/// Says, when verbose, which allocator the hooks forward to.
fn say_allocator() {
    let library = allocator_library();
    say!("hooks in place (malloc, free, calloc, realloc, memalign and the rest); the allocator underneath is {library}");
    if mapping::enabled() {
        say!("mapping calls recorded too (HEAP_PROFILE_MMAP): mmap, mmap64, munmap, mremap, sbrk, brk");
    }
    let settings = settings();
    if !settings.is_empty() {
        let vars: Vec<String> = settings
            .vars
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        say!("gperftools settings kept in the trace: {}", vars.join(" "));
    }
}

/// The profiling settings this process started with.
pub(crate) fn settings() -> &'static Settings {
    SETTINGS.get_or_init(|| {
        Settings::from_lookup(|name| {
            use std::os::unix::ffi::OsStrExt;
            let value = std::env::var_os(name)?;
            let (value, marked) = heapreplay_format::settings::env_value(value.as_bytes());
            // Marked by libtcmalloc: by this process's own (linked in, its
            // constructor ran first), or by a parent's, which makes this a
            // child, named PREFIX_PID as gperftools names it.
            let own = || !real::definition(c"HeapProfilerStart").is_null();
            Some(match marked && name == "HEAPPROFILE" && !own() {
                true => format!("{value}_{}", std::process::id()),
                false => value,
            })
        })
    })
}

/// The trace path for this process (`child`: a forked child of a recorded
/// one): `HEAPREPLAY_OUT` with `%p` replaced by the pid; else, under
/// gperftools' `HEAPPROFILE`, named as this process's profiles are
/// (`PREFIX.trace.zst`); else `heapreplay.PID.zst`.
fn output_path(child: bool) -> String {
    let pid = std::process::id();
    let template = TEMPLATE.get_or_init(|| {
        std::env::var("HEAPREPLAY_OUT")
            .ok()
            .filter(|s| !s.is_empty())
    });
    match (template, settings().profile_prefix(pid, child)) {
        (Some(template), _) => template.replace("%p", &pid.to_string()),
        (None, Some(prefix)) => format!("{prefix}.trace.zst"),
        (None, None) => format!("heapreplay.{pid}.zst"),
    }
}

/// Takes the recorder out of `LD_PRELOAD`, so that programs this one starts
/// with `exec` run unrecorded (`HEAPREPLAY_FOLLOW_EXEC=0`). This process
/// and its forked children are still recorded.
fn stop_following_exec() {
    let Ok(preload) = std::env::var("LD_PRELOAD") else {
        return;
    };
    let kept: Vec<&str> = preload
        .split([':', ' '])
        .filter(|lib| !lib.is_empty() && !lib.ends_with("librecord.so"))
        .collect();
    // SAFETY: called from the library constructor, before the program's
    // main and before the recorder starts any thread.
    unsafe {
        if kept.is_empty() {
            std::env::remove_var("LD_PRELOAD");
        } else {
            std::env::set_var("LD_PRELOAD", kept.join(":"));
        }
    }
}

/// What describes this process in its trace's first record (`child`: a
/// forked child of a recorded process, or one whose trace was moved aside),
/// with the settings it runs with; `HEAPPROFILE` there is the prefix its
/// profiles take.
pub(crate) fn first_record(child: bool) -> output::FirstRecord {
    let mut settings = settings().clone();
    if let Some(prefix) = settings.profile_prefix(std::process::id(), child) {
        for (name, value) in &mut settings.vars {
            if name == "HEAPPROFILE" {
                *value = prefix.clone();
            }
        }
    }
    (file_info(), settings, None)
}

/// What describes this process in its trace's first record.
fn file_info() -> heapreplay_format::FileInfo {
    heapreplay_format::FileInfo {
        pid: std::process::id(),
        // SAFETY: getppid has no preconditions.
        ppid: unsafe { libc::getppid() } as u32,
        start_unix_ns: clock::unix_ns(),
        start_mono_ns: clock::mono_ns(),
        exe: std::fs::read_link("/proc/self/exe")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        cmdline: file_text("/proc/self/cmdline"),
        recorder_version: env!("CARGO_PKG_VERSION").to_string(),
    }
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
        writer::finish(false);
    }
}

type ExitFn = unsafe extern "C" fn(i32) -> !;

/// Flushes, then leaves through the next definition of `name` (`_exit` or
/// `_Exit`), which skips exit handlers: without this, a process that ends
/// with `_exit` (a forked child, typically) would lose its last events.
fn exit_now(name: &std::ffi::CStr, status: i32) -> ! {
    at_exit();
    let next = real::definition(name);
    if !next.is_null() {
        // SAFETY: libc's _exit/_Exit, which never return.
        unsafe { std::mem::transmute::<*mut libc::c_void, ExitFn>(next)(status) }
    }
    // SAFETY: the exit_group system call ends the process.
    unsafe { libc::syscall(libc::SYS_exit_group, status) };
    // SAFETY: exit_group does not return.
    unsafe { std::hint::unreachable_unchecked() }
}

/// `_exit`: flush, then exit.
///
/// # Safety
/// The C contract of `_exit`.
#[cfg(not(test))]
#[no_mangle]
pub unsafe extern "C" fn _exit(status: i32) -> ! {
    exit_now(c"_exit", status)
}

/// `_Exit`: flush, then exit.
///
/// # Safety
/// The C contract of `_Exit`.
#[cfg(not(test))]
#[no_mangle]
pub unsafe extern "C" fn _Exit(status: i32) -> ! {
    exit_now(c"_Exit", status)
}

/// The recorder's locks, held from just before `fork` until just after, in
/// the forking thread of parent and child alike.
static mut FORK_LOCKS: Option<ForkLocks> = None;

/// Every recorder lock, in the order every path takes them in: output,
/// queue, threads, stacks, then the mapping calls (taken by the writer
/// under the output), then the patched entries (held alone).
type ForkLocks = (
    writer::ForkLock,
    queue::ForkLock,
    thread::ForkLock,
    stacks::ForkLock,
    mapping::ForkLock,
    got::ForkLock,
);

fn lock_all() -> ForkLocks {
    (
        writer::lock_for_fork(),
        queue::lock_for_fork(),
        thread::lock_for_fork(),
        stacks::lock_for_fork(),
        mapping::lock_for_fork(),
        got::lock_for_fork(),
    )
}

extern "C" fn before_fork() {
    if !ACTIVE.load(Ordering::SeqCst) {
        return;
    }
    let locks = lock_all();
    // SAFETY: only the forking thread touches FORK_LOCKS, between the fork
    // handlers of one fork call.
    unsafe { *std::ptr::addr_of_mut!(FORK_LOCKS) = Some(locks) };
}

extern "C" fn after_fork_in_parent() {
    // SAFETY: as in before_fork.
    drop(unsafe { (*std::ptr::addr_of_mut!(FORK_LOCKS)).take() });
}

/// The child goes on recording, into a trace of its own (`%p` in the path
/// becomes its pid; without `%p` it gets `PATH.<pid>`, as the parent holds
/// the path), starting with every stack the parent interned.
extern "C" fn after_fork_in_child() {
    // SAFETY: as in before_fork.
    let Some(mut locks) = (unsafe { (*std::ptr::addr_of_mut!(FORK_LOCKS)).take() }) else {
        return;
    };
    let _guard = guard::Guard::enter();
    let _errno = guard::ErrnoKeeper::save();
    if attach::CONTROL.state.load(Ordering::SeqCst) != attach::PRELOADED {
        // A child of a process attached to is not recorded: it gets the
        // program's own entries and dispositions back, and no trace.
        ACTIVE.store(false, Ordering::SeqCst);
        locks.5.restore_in_child();
        drop(locks);
        signals::restore();
        attach::CONTROL.state.store(attach::INERT, Ordering::SeqCst);
        return;
    }
    locks.1.restart_in_child();
    locks.2.restart_in_child();
    locks.3.restart_in_child();
    locks.4.restart_in_child();
    let path = output_path(true);
    let ok = locks.0.restart_in_child(&path, &|_| first_record(true));
    drop(locks);
    if !ok || !writer::start() {
        ACTIVE.store(false, Ordering::SeqCst);
    }
}

/// True if this library was loaded with `dlopen` into a running program
/// (after libc, in load order), not preloaded before it: its functions
/// then stand in for nothing the program already calls. Allocates nothing
/// (no allocator has been looked up yet).
fn loaded_late() -> bool {
    struct Seen {
        ours: Option<usize>,
        libc: Option<usize>,
        index: usize,
        name: *const std::ffi::c_char,
    }
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `Seen` passed below; `info` is valid for
        // the call, its name NUL-terminated (or NULL); so is `seen.name`.
        unsafe {
            let seen = &mut *data.cast::<Seen>();
            let name = (*info).dlpi_name;
            if !name.is_null() {
                let name = std::ffi::CStr::from_ptr(name);
                if name == std::ffi::CStr::from_ptr(seen.name) {
                    seen.ours.get_or_insert(seen.index);
                } else if name.to_bytes().ends_with(b"/libc.so.6") {
                    seen.libc.get_or_insert(seen.index);
                }
            }
            seen.index += 1;
        }
        0
    }
    // SAFETY: dladdr fills `info` for an address of this library; the name
    // it gives lives as long as the library is loaded.
    let name = unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(init as *const libc::c_void, &mut info) == 0 || info.dli_fname.is_null() {
            return false;
        }
        info.dli_fname
    };
    let mut seen = Seen {
        ours: None,
        libc: None,
        index: 0,
        name,
    };
    // SAFETY: `visit` only reads what it is given and writes `seen`.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut seen as *mut Seen).cast()) };
    matches!((seen.ours, seen.libc), (Some(ours), Some(libc)) if libc < ours)
}

/// True if a debugger or `heapreplay attach` traces this process now.
fn traced() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .is_some_and(|pid| pid.trim() != "0")
    })
}

/// What a recording needs before its trace opens (once per process).
pub(crate) fn prepare() {
    #[cfg(not(test))]
    map_hooks::resolve();
    unwind::init();
    mapping::init(settings(), &allocator_library());
    thread::init(writer::queued);
}

/// Opens a new trace at `path` after a detach: what the last recording
/// left behind (events buffered after its last flush, queued chunks and
/// mapping calls) is dropped, and every stack interned so far is written
/// again. False if the trace cannot be opened.
pub(crate) fn restart(path: &str, first: &dyn Fn(&str) -> output::FirstRecord) -> bool {
    let mut locks = lock_all();
    locks.1.restart_in_child();
    locks.2.discard_buffers();
    locks.3.restart_in_child();
    locks.4.restart_in_child();
    locks.0.restart_in_child(path, first)
}

/// Registers the exit and fork handlers (once per process; they do
/// nothing while nothing is recorded).
pub(crate) fn register_process_handlers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: registering plain extern "C" functions.
    ONCE.call_once(|| unsafe {
        libc::atexit(at_exit);
        libc::pthread_atfork(
            Some(before_fork),
            Some(after_fork_in_parent),
            Some(after_fork_in_child),
        );
    });
}

extern "C" fn init() {
    let Some(_guard) = guard::Guard::enter() else {
        return;
    };
    let _errno = guard::ErrnoKeeper::save();
    if loaded_late() {
        // The program's calls go to its global definitions, never to ours.
        real::use_global_definitions();
        if !traced() {
            say!("librecord.so was loaded into a running program (dlopen), not preloaded: it records nothing; preload it (LD_PRELOAD), use heapreplay record, or heapreplay attach");
        }
        return;
    }
    attach::CONTROL
        .state
        .store(attach::PRELOADED, Ordering::SeqCst);
    if real::real().is_none() {
        return;
    }
    prepare();
    if std::env::var("HEAPREPLAY_FOLLOW_EXEC").is_ok_and(|v| v == "0") {
        stop_following_exec();
    }
    let wanted = output_path(false);
    // Moved aside (another process records to the path, an exec'd child of
    // it, say): its profiles take their own prefix too.
    let Some(path) = writer::open(&wanted, &|claimed| first_record(claimed != wanted)) else {
        return;
    };
    ACTIVE.store(true, Ordering::SeqCst);
    if !writer::start() {
        ACTIVE.store(false, Ordering::SeqCst);
        say!("cannot start the writer thread; the program runs unrecorded");
        return;
    }
    signals::init();
    if verbose() {
        say_allocator();
    }
    register_process_handlers();
    say!("recording to {path}");
}

#[cfg(not(test))]
#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;
