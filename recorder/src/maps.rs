//! The process's memory maps, read from `/proc/self/maps`, and a cheap way to
//! notice that libraries were loaded since the last look.

use std::ffi::{c_int, c_void};

/// The current text of `/proc/self/maps` (empty if it cannot be read).
pub fn read() -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * 1024);
    // SAFETY: the path is NUL-terminated.
    let fd = unsafe {
        libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return out;
    }
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    out
}

unsafe extern "C" fn first_adds(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: valid for the callback; data is the &mut u64 passed below.
    unsafe { *(data as *mut u64) = (*info).dlpi_adds + (*info).dlpi_subs };
    1
}

/// How many objects the dynamic loader has loaded plus unloaded so far;
/// changes after dlopen and dlclose.
pub fn load_count() -> u64 {
    let mut adds = 0u64;
    // SAFETY: first_adds matches the callback contract and writes only `adds`.
    unsafe { libc::dl_iterate_phdr(Some(first_adds), (&mut adds as *mut u64).cast()) };
    adds
}
