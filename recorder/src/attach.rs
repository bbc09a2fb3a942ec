//! Recording a process that is already running, and stopping again.
//!
//! `heapreplay attach PID` loads this library into the process (a `dlopen`
//! run for a moment in one of its threads; the library's constructor sees
//! that it was not preloaded and does nothing) and calls
//! [`heapreplay_attach`], which starts a trace and puts the hooks in place
//! in every loaded object's table ([`crate::got`]). `heapreplay detach PID`
//! writes a request into [`CONTROL`]; the writer thread sees it within a
//! tick, puts the old entries back, gives the program its own signal
//! dispositions back, writes the trace's last records and ends. The
//! library stays mapped (unloading code another thread may still be
//! returning through is not safe), and a later attach reuses it.

use crate::{guard, ACTIVE};
use heapreplay_format::settings::Attached;
use std::ffi::{c_char, CStr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

/// Loaded, recording nothing (`dlopen`ed, or detached): an attach may start.
pub const INERT: u32 = 0;
/// Preloaded: recording (or stepped aside); an attach is refused.
pub const PRELOADED: u32 = 1;
/// Recording since an attach.
pub const ATTACHED: u32 = 2;
/// Detaching: the writer thread is putting everything back.
pub const DETACHING: u32 = 3;

/// What `heapreplay attach` and `detach` read and write in the process
/// (through `/proc/PID/mem`-style access, at the address of the exported
/// symbol `heapreplay_control`). Its layout is part of the interface.
#[repr(C)]
pub struct Control {
    /// [`INERT`], [`PRELOADED`], [`ATTACHED`] or [`DETACHING`].
    pub state: AtomicU32,
    /// Set to 1 by `heapreplay detach`; the writer thread takes it.
    pub detach: AtomicU32,
    /// How many attaches this process has had.
    pub attaches: AtomicU32,
}

/// The control block of this library in this process.
#[export_name = "heapreplay_control"]
pub static CONTROL: Control = Control {
    state: AtomicU32::new(INERT),
    detach: AtomicU32::new(0),
    attaches: AtomicU32::new(0),
};

/// [`heapreplay_attach`]: another attach or a preload is recording.
pub const BUSY: i32 = -1;
/// [`heapreplay_attach`]: the allocator's functions were not found.
pub const NO_ALLOCATOR: i32 = -2;
/// [`heapreplay_attach`]: the writer thread could not start.
pub const NO_THREAD: i32 = -3;

/// True while this process is recorded since an attach.
pub fn attached() -> bool {
    CONTROL.state.load(Ordering::SeqCst) == ATTACHED
}

/// When this process started, nanoseconds since the Unix epoch (0 if
/// unknown): `/proc/self/stat`'s start time after boot, plus boot time.
fn process_start_unix_ns() -> u64 {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command, which may hold spaces, in parentheses.
            let rest = &s[s.rfind(')')? + 2..];
            rest.split(' ').nth(19)?.parse::<u64>().ok()
        });
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse::<u64>()
            .ok()
    });
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    match (ticks, boot) {
        (Some(ticks), Some(boot)) => boot * 1_000_000_000 + ticks * (1_000_000_000 / hz),
        _ => 0,
    }
}

/// Starts recording this process into the trace at `path` (as the process
/// names it; `%p` becomes its pid): the entry point `heapreplay attach`
/// calls in a thread it has stopped for a moment. Returns 0 once recording,
/// else [`BUSY`], [`NO_ALLOCATOR`], [`NO_THREAD`], or the `errno` (above
/// 0) of a trace that could not be created.
///
/// # Safety
/// `path` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn heapreplay_attach(path: *const c_char) -> i32 {
    let Some(_guard) = guard::Guard::enter() else {
        return BUSY;
    };
    let _errno = guard::ErrnoKeeper::save();
    if CONTROL
        .state
        .compare_exchange(INERT, ATTACHED, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return BUSY;
    }
    let code = start(
        // SAFETY: the caller passes a NUL-terminated path.
        &unsafe { CStr::from_ptr(path) }.to_string_lossy(),
    );
    if code != 0 {
        CONTROL.state.store(INERT, Ordering::SeqCst);
    }
    code
}

/// Starts the recording (state already [`ATTACHED`]); 0 or an error code.
fn start(path: &str) -> i32 {
    crate::report::quiet();
    if crate::real::real().is_none() {
        return NO_ALLOCATOR;
    }
    static FIRST: AtomicBool = AtomicBool::new(true);
    let path = path.replace("%p", &std::process::id().to_string());
    let attached = Attached {
        process_start_unix_ns: process_start_unix_ns(),
    };
    let first = |_: &str| {
        let (info, settings, _) = crate::first_record(false);
        (info, settings, Some(attached))
    };
    CONTROL.detach.store(0, Ordering::SeqCst);
    let opened = match FIRST.swap(false, Ordering::SeqCst) {
        true => {
            crate::prepare();
            crate::writer::open(&path, &first).is_some()
        }
        // Again, after a detach: what the last one left behind goes.
        false => crate::restart(&path, &first),
    };
    if !opened {
        return guard::errno().max(1);
    }
    ACTIVE.store(true, Ordering::SeqCst);
    crate::signals::init();
    crate::register_process_handlers();
    crate::got::patch_loaded();
    // The writer last: a detach it takes finds everything in place.
    crate::writer::serve_attach(tick, give_up);
    if !crate::writer::start() {
        undo();
        crate::writer::close();
        return NO_THREAD;
    }
    CONTROL.attaches.fetch_add(1, Ordering::SeqCst);
    0
}

/// Gives the program back its own signal dispositions (while the hooked
/// `sigaction` still keeps track of its changes), then its table entries,
/// and stops recording once hooks already running are done.
fn undo() {
    crate::signals::restore();
    crate::got::restore();
    std::thread::sleep(SETTLE);
    ACTIVE.store(false, Ordering::SeqCst);
    std::thread::sleep(SETTLE);
}

/// Time given to hooks already running when their entries are put back,
/// before the trace's last records are written.
const SETTLE: Duration = Duration::from_millis(20);

/// On the writer thread, each tick (`loaded`: libraries were loaded since
/// the last): detaches if asked, else patches what was loaded. True once
/// detached (the writer thread then ends).
fn tick(loaded: bool) -> bool {
    if detach_if_asked() {
        return true;
    }
    if loaded && attached() {
        crate::got::patch_loaded();
    }
    false
}

/// Detaches if asked. True once detached.
fn detach_if_asked() -> bool {
    if !attached() || CONTROL.detach.swap(0, Ordering::SeqCst) == 0 {
        return false;
    }
    CONTROL.state.store(DETACHING, Ordering::SeqCst);
    undo();
    crate::writer::finish(true);
    crate::writer::close();
    CONTROL.state.store(INERT, Ordering::SeqCst);
    true
}

/// On the writer thread, when recording has stopped by itself (the trace
/// could not be written): an attached process gets everything back, as at
/// a detach, and can be attached to again.
fn give_up() {
    if CONTROL.state.load(Ordering::SeqCst) == ATTACHED {
        CONTROL.state.store(DETACHING, Ordering::SeqCst);
        undo();
        crate::writer::close();
        CONTROL.state.store(INERT, Ordering::SeqCst);
    }
}
