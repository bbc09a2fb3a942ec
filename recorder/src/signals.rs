//! Marker signals (`HEAPREPLAY_MARKER_SIGNALS`, default `usr2`), and the
//! crash signals (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT), which get a
//! last flush before the process dies when the program has no handler of
//! its own for them.
//!
//! For each marker signal the recorder installs its own handler, which
//! records a marker and then does what the application asked for that
//! signal: runs its handler (with `SA_SIGINFO` or not), ignores it, or, if
//! the application never set a handler, consumes it instead of letting it
//! kill the process (as gperftools' HEAPPROFILESIGNAL does). `sigaction`,
//! `signal`, `bsd_signal` and `sysv_signal` are interposed so that handlers
//! the application installs before or after the recorder starts are kept as
//! the application's, and it always sees its own disposition back. The
//! kernel-level handler keeps the application's mask and its `SA_RESTART`,
//! `SA_NODEFER`, `SA_ONSTACK` and `SA_RESETHAND` flags.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};

const NSIG: usize = 65;

type SigactionFn = unsafe extern "C" fn(i32, *const libc::sigaction, *mut libc::sigaction) -> i32;

/// The application's view of one marker signal.
struct AppDisposition {
    handler: AtomicUsize,
    flags: AtomicI32,
    mask: [AtomicU64; 2],
}

static MARKED: [AtomicBool; NSIG] = [const { AtomicBool::new(false) }; NSIG];
/// Signals that end the process by default, watched to flush before dying.
static CRASH: [AtomicBool; NSIG] = [const { AtomicBool::new(false) }; NSIG];
/// The signals watched for crashes.
const CRASH_SIGNALS: [i32; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];
static APP: [AppDisposition; NSIG] = [const {
    AppDisposition {
        handler: AtomicUsize::new(0),
        flags: AtomicI32::new(0),
        mask: [AtomicU64::new(0), AtomicU64::new(0)],
    }
}; NSIG];
static REAL_SIGACTION: AtomicUsize = AtomicUsize::new(0);

/// Flags of the application's that the kernel-level handler keeps.
const KEPT_FLAGS: i32 = libc::SA_RESTART | libc::SA_NODEFER | libc::SA_ONSTACK | libc::SA_RESETHAND;

fn real_sigaction() -> Option<SigactionFn> {
    let p = crate::real::next(&REAL_SIGACTION, c"sigaction");
    // SAFETY: p is the address of libc's sigaction.
    (p != 0).then(|| unsafe { std::mem::transmute::<usize, SigactionFn>(p) })
}

/// True for the signals whose dispositions the recorder keeps for the
/// application (marker and crash signals).
fn is_interposed(sig: i32) -> bool {
    sig > 0
        && (sig as usize) < NSIG
        && (MARKED[sig as usize].load(Ordering::Acquire)
            || CRASH[sig as usize].load(Ordering::Acquire))
}

fn mask_words(set: &libc::sigset_t) -> [u64; 2] {
    // SAFETY: sigset_t is at least 16 bytes of plain data on Linux.
    let words =
        unsafe { std::slice::from_raw_parts(set as *const libc::sigset_t as *const u64, 2) };
    [words[0], words[1]]
}

fn set_mask(set: &mut libc::sigset_t, words: [u64; 2]) {
    // SAFETY: as in mask_words.
    let out = unsafe { std::slice::from_raw_parts_mut(set as *mut libc::sigset_t as *mut u64, 2) };
    out.copy_from_slice(&words);
}

fn remember(sig: i32, act: &libc::sigaction) {
    let app = &APP[sig as usize];
    app.handler.store(act.sa_sigaction, Ordering::Release);
    app.flags.store(act.sa_flags, Ordering::Release);
    for (slot, w) in app.mask.iter().zip(mask_words(&act.sa_mask)) {
        slot.store(w, Ordering::Release);
    }
}

fn app_view(sig: i32) -> libc::sigaction {
    let app = &APP[sig as usize];
    // SAFETY: sigaction is plain data; all-zero is valid.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = app.handler.load(Ordering::Acquire);
    act.sa_flags = app.flags.load(Ordering::Acquire);
    set_mask(
        &mut act.sa_mask,
        [
            app.mask[0].load(Ordering::Acquire),
            app.mask[1].load(Ordering::Acquire),
        ],
    );
    act
}

/// Installs the recorder's handler with the application's mask and flags.
fn install(sig: i32, real: SigactionFn) -> i32 {
    let app = app_view(sig);
    // SAFETY: sigaction is plain data; all-zero is valid.
    let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
    ours.sa_sigaction = on_signal as *const () as usize;
    ours.sa_mask = app.sa_mask;
    let has_handler = app.sa_sigaction != libc::SIG_DFL && app.sa_sigaction != libc::SIG_IGN;
    ours.sa_flags = libc::SA_SIGINFO
        | if has_handler {
            app.sa_flags & KEPT_FLAGS
        } else if CRASH[sig as usize].load(Ordering::Acquire) {
            // A crash may be a stack overflow: use the alternate stack if any.
            libc::SA_ONSTACK
        } else {
            libc::SA_RESTART
        };
    // SAFETY: valid sigaction pointers.
    unsafe { real(sig, &ours, std::ptr::null_mut()) }
}

extern "C" fn on_signal(sig: i32, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    let saved = crate::guard::errno();
    if MARKED[sig as usize].load(Ordering::Acquire) {
        crate::markers::place(sig, b"");
    }
    let app = &APP[sig as usize];
    let handler = app.handler.load(Ordering::Acquire);
    let flags = app.flags.load(Ordering::Acquire);
    if CRASH[sig as usize].load(Ordering::Acquire) && handler == libc::SIG_DFL {
        crash(sig, info);
        return;
    }
    if flags & libc::SA_RESETHAND != 0 {
        // The kernel has reset the disposition; so does the application's view.
        app.handler.store(libc::SIG_DFL, Ordering::Release);
    }
    // errno as it was, before the application's handler sees it.
    crate::guard::set_errno(saved);
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        return;
    }
    if flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the application installed this as an SA_SIGINFO handler.
        let f: extern "C" fn(i32, *mut libc::siginfo_t, *mut c_void) =
            unsafe { std::mem::transmute(handler) };
        f(sig, info, ctx);
    } else {
        // SAFETY: the application installed this as a plain handler.
        let f: extern "C" fn(i32) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
}

/// The process is about to die of `sig`: have the writer flush what it can
/// (waiting at most 300 ms, so a crash inside the recorder or the allocator
/// cannot turn into a hang), then let the crash proceed as it would have
/// without the recorder: default disposition, same signal, same core dump.
fn crash(sig: i32, info: *mut libc::siginfo_t) {
    crate::writer::flush_before_crash(std::time::Duration::from_millis(300));
    if let Some(real) = real_sigaction() {
        // SAFETY: sigaction is plain data; installing the default action.
        unsafe {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            real(sig, &dfl, std::ptr::null_mut());
        }
    }
    // SAFETY: info is the kernel's siginfo for this delivery (or NULL).
    let sent = info.is_null() || unsafe { (*info).si_code } <= 0;
    if sent {
        // Sent by a process (kill, raise, abort): send it again; it is
        // delivered, fatally, once this handler returns.
        // SAFETY: raising a signal at this thread.
        unsafe { libc::raise(sig) };
    }
    // A fault: returning re-runs the faulting instruction, which now kills
    // the process with the same signal.
}

/// Parses `HEAPREPLAY_MARKER_SIGNALS` (and gperftools' `HEAPPROFILESIGNAL`)
/// and installs the handlers (unknown names are reported once and skipped),
/// and watches the crash signals the program leaves at their default.
pub fn init() {
    let mut spec = std::env::var("HEAPREPLAY_MARKER_SIGNALS").unwrap_or_else(|_| "usr2".into());
    // gperftools' signal, read as gperftools reads it (with HEAPPROFILE only).
    if let Some(sig) = crate::settings().profile_signal() {
        spec = format!("{spec},{sig}");
    }
    let Some(real) = real_sigaction() else { return };
    for name in spec
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "none")
    {
        let Some(sig) = heapreplay_format::signals::parse_signal(name) else {
            crate::say!("HEAPREPLAY_MARKER_SIGNALS: unknown signal '{name}', ignored");
            continue;
        };
        if sig == libc::SIGKILL || sig == libc::SIGSTOP || (sig as usize) >= NSIG {
            crate::say!("HEAPREPLAY_MARKER_SIGNALS: signal '{name}' cannot be caught, ignored");
            continue;
        }
        if MARKED[sig as usize].load(Ordering::Acquire) {
            continue; // named twice: installing again would chain to itself
        }
        // SAFETY: sigaction is plain data; all-zero is valid.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: querying the current disposition into a valid out-pointer.
        if unsafe { real(sig, std::ptr::null(), &mut old) } != 0 {
            continue;
        }
        remember(sig, &old);
        MARKED[sig as usize].store(true, Ordering::Release);
        install(sig, real);
    }
    for sig in CRASH_SIGNALS {
        // SAFETY: sigaction is plain data; all-zero is valid.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: querying the current disposition into a valid out-pointer.
        if unsafe { real(sig, std::ptr::null(), &mut old) } != 0
            || MARKED[sig as usize].load(Ordering::Acquire)
        {
            continue;
        }
        remember(sig, &old);
        CRASH[sig as usize].store(true, Ordering::Release);
        install(sig, real);
    }
}

/// Gives every signal the recorder handles back to the application's own
/// disposition, as it stands now (at detach: the process is left as it
/// would be had the recorder never been there).
pub fn restore() {
    let Some(real) = real_sigaction() else { return };
    for sig in 1..NSIG as i32 {
        if !is_interposed(sig) {
            continue;
        }
        MARKED[sig as usize].store(false, Ordering::Release);
        CRASH[sig as usize].store(false, Ordering::Release);
        let app = app_view(sig);
        // SAFETY: a valid sigaction: the application's, as it set it.
        unsafe { real(sig, &app, std::ptr::null_mut()) };
    }
}

unsafe fn sigaction_impl(sig: i32, act: *const libc::sigaction, old: *mut libc::sigaction) -> i32 {
    let Some(real) = real_sigaction() else {
        crate::guard::set_errno(libc::ENOSYS);
        return -1;
    };
    if !is_interposed(sig) {
        // SAFETY: forwarding the caller's arguments.
        return unsafe { real(sig, act, old) };
    }
    // Copy the new action first: `act` and `old` may point to the same struct.
    // SAFETY: a non-NULL `act` points to a valid sigaction.
    let new = (!act.is_null()).then(|| unsafe { *act });
    if !old.is_null() {
        // SAFETY: the caller passes a valid out-pointer.
        unsafe { *old = app_view(sig) };
    }
    match new {
        Some(new) => {
            remember(sig, &new);
            install(sig, real)
        }
        None => 0,
    }
}

/// `sigaction`, keeping marker signals routed through the recorder.
///
/// # Safety
/// The C contract of `sigaction`.
#[cfg(not(test))]
#[no_mangle]
pub unsafe extern "C" fn sigaction(
    sig: i32,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> i32 {
    // SAFETY: same contract.
    unsafe { sigaction_impl(sig, act, old) }
}

unsafe fn signal_with(sig: i32, handler: libc::sighandler_t, flags: i32) -> libc::sighandler_t {
    // SAFETY: sigaction is plain data; all-zero is valid.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: sigaction is plain data; all zeroes is a valid value.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler;
    act.sa_flags = flags;
    // SAFETY: valid sigset pointer; the signal blocks itself unless SA_NODEFER.
    unsafe {
        libc::sigemptyset(&mut act.sa_mask);
        if flags & libc::SA_NODEFER == 0 && sig > 0 && sig < NSIG as i32 {
            libc::sigaddset(&mut act.sa_mask, sig);
        }
    }
    // SAFETY: valid pointers.
    if unsafe { sigaction_impl(sig, &act, &mut old) } != 0 {
        return libc::SIG_ERR;
    }
    old.sa_sigaction
}

/// `signal` (BSD semantics, as glibc's).
///
/// # Safety
/// The C contract of `signal`.
#[cfg(not(test))]
#[no_mangle]
pub unsafe extern "C" fn signal(sig: i32, handler: libc::sighandler_t) -> libc::sighandler_t {
    // SAFETY: same contract.
    unsafe { signal_with(sig, handler, libc::SA_RESTART) }
}

/// `bsd_signal`.
///
/// # Safety
/// The C contract of `bsd_signal`.
#[cfg(not(test))]
#[no_mangle]
pub unsafe extern "C" fn bsd_signal(sig: i32, handler: libc::sighandler_t) -> libc::sighandler_t {
    // SAFETY: same contract.
    unsafe { signal_with(sig, handler, libc::SA_RESTART) }
}

/// `sysv_signal` (one-shot, not deferred, not restarting).
///
/// # Safety
/// The C contract of `sysv_signal`.
#[cfg(not(test))]
#[no_mangle]
pub unsafe extern "C" fn sysv_signal(sig: i32, handler: libc::sighandler_t) -> libc::sighandler_t {
    // SAFETY: same contract.
    unsafe { signal_with(sig, handler, libc::SA_RESETHAND | libc::SA_NODEFER) }
}
