//! A trace file cut shorter while it is being read.
//!
//! Traces are read through a memory map, and a page of a map past the end
//! of its file raises SIGBUS. A trace only grows while its recorder writes
//! it (a new recording to the same path replaces the file instead of
//! emptying it), but anything else may truncate it: this turns that crash
//! into a one-line error naming the file.

use std::path::Path;
use std::sync::atomic::{AtomicPtr, Ordering};

/// The message to print: a leaked, never freed byte string.
static MESSAGE: AtomicPtr<Vec<u8>> = AtomicPtr::new(std::ptr::null_mut());

extern "C" fn on_sigbus(_: libc::c_int) {
    let message = MESSAGE.load(Ordering::Acquire);
    if !message.is_null() {
        // SAFETY: MESSAGE only ever holds a leaked, never freed Vec; write
        // and _exit are async-signal-safe.
        unsafe {
            let m = &*message;
            libc::write(2, m.as_ptr().cast(), m.len());
        }
    }
    // SAFETY: _exit is async-signal-safe and ends the process at once.
    unsafe { libc::_exit(1) }
}

/// Installs the handler (once) and makes its message name `path`.
pub fn watch(path: &Path) {
    let text = format!(
        "heapreplay: {}: the trace file became shorter while it was being read (truncated by another program?); stopped\n",
        path.display()
    );
    let old = MESSAGE.swap(Box::into_raw(Box::new(text.into_bytes())), Ordering::AcqRel);
    if old.is_null() {
        // SAFETY: a plain sigaction with a handler that only writes and exits.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
        }
    }
    // The old message is leaked on purpose: a handler may be reading it.
}
