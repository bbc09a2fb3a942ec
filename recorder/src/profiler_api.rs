//! gperftools' heap-profiler API (`gperftools/heap-profiler.h`), so that a
//! program written against it runs unchanged under the recorder in place of
//! a preloaded libtcmalloc (the preloaded definitions come first):
//!
//! - `HeapProfilerDump(reason)` places a marker named by the reason; a
//!   replay following gperftools' variables writes a profile there, logged
//!   with that reason, as gperftools does.
//! - `HeapProfilerStart(prefix)` and `HeapProfilerStop()` place markers of
//!   their own: the recorder records the whole run, and a replay following
//!   gperftools' variables counts only what happened between a start and
//!   a stop, each start from an empty profile, as gperftools does.
//! - `IsHeapProfilerRunning` says whether the recorder is recording.
//! - `GetHeapProfile` returns a profile with no samples: the recorder keeps
//!   no map of live blocks inside the program (that work belongs beside it),
//!   so it cannot say what is in use there. A `HeapProfilerDump` (or a
//!   `heapreplay_marker`) at that point gives the replay the real profile.
//!
//! None of them takes a lock or allocates, but `GetHeapProfile`, whose
//! caller frees the text it returns.

use crate::markers;
use std::ffi::c_char;
use std::sync::atomic::{AtomicBool, Ordering};

/// The header of a profile with no samples, and its (empty) maps section.
const EMPTY_PROFILE: &[u8] =
    b"heap profile:      0:        0 [     0:        0] @ heapprofile\n\nMAPPED_LIBRARIES:\n\0";

/// Set between a `HeapProfilerStop` and the next `HeapProfilerStart`.
static STOPPED: AtomicBool = AtomicBool::new(false);

/// Places a marker of `kind` (see [`markers::PROFILER_START`]).
fn place(kind: i32, text: &[u8]) {
    if !crate::ACTIVE.load(Ordering::Relaxed) {
        return;
    }
    let _errno = crate::guard::ErrnoKeeper::save();
    markers::place(kind, text);
    crate::queue::wake();
}

/// `void HeapProfilerStart(const char* prefix)`: the recording runs on; a
/// marker says that the program (re)started gperftools' profiler, which
/// a replay following gperftools' variables starts counting from afresh.
///
/// # Safety
/// `prefix` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn HeapProfilerStart(prefix: *const c_char) {
    STOPPED.store(false, Ordering::Relaxed);
    let text = match prefix.is_null() {
        true => &b""[..],
        // SAFETY: a NUL-terminated string, as the caller promises.
        false => unsafe { std::ffi::CStr::from_ptr(prefix) }.to_bytes(),
    };
    place(markers::PROFILER_START, text);
}

/// `void HeapProfilerStop(void)`: the recording runs on; a marker says
/// that the program stopped gperftools' profiler, which a replay following
/// gperftools' variables stops counting at.
#[no_mangle]
pub extern "C" fn HeapProfilerStop() {
    STOPPED.store(true, Ordering::Relaxed);
    place(markers::PROFILER_STOP, b"");
}

/// `int IsHeapProfilerRunning(void)`: 1 while the recorder records, but
/// between a `HeapProfilerStop` and the next `HeapProfilerStart`.
#[no_mangle]
pub extern "C" fn IsHeapProfilerRunning() -> libc::c_int {
    let running = crate::ACTIVE.load(Ordering::Relaxed) && !STOPPED.load(Ordering::Relaxed);
    libc::c_int::from(running)
}

/// `void HeapProfilerDump(const char* reason)`: a marker named `reason`.
///
/// # Safety
/// `reason` is NULL or a NUL-terminated string.
/// libtcmalloc, linked into a program, dumps "Exiting" from a static
/// destructor when its own profiler never started (the recorder's
/// `HeapProfilerStart` is the one it calls): once the recorder's exit flush
/// is done, that dump is the exit dump's twin and is left out.
#[no_mangle]
pub unsafe extern "C" fn HeapProfilerDump(reason: *const c_char) {
    let reason = match reason.is_null() {
        true => c"HeapProfilerDump".as_ptr(),
        false => reason,
    };
    // SAFETY: a NUL-terminated string, as above.
    let text = unsafe { std::ffi::CStr::from_ptr(reason) };
    if crate::writer::finished() && text.to_bytes().starts_with(b"Exiting") {
        return;
    }
    // SAFETY: a NUL-terminated string, as above.
    unsafe { crate::markers::heapreplay_marker(reason) };
}

/// `char* GetHeapProfile(void)`: a profile with no samples, in memory from
/// `malloc` that the caller frees (see the module header); NULL if there is
/// none.
#[no_mangle]
pub extern "C" fn GetHeapProfile() -> *mut c_char {
    // Through the program's malloc (this library's), so that its free is
    // the program's like any other.
    // SAFETY: malloc of a fixed size; the copy stays within it.
    unsafe {
        let text = libc::malloc(EMPTY_PROFILE.len()).cast::<u8>();
        if !text.is_null() {
            std::ptr::copy_nonoverlapping(EMPTY_PROFILE.as_ptr(), text, EMPTY_PROFILE.len());
        }
        text.cast()
    }
}
