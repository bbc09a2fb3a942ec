//! The process's resident set size, read from `/proc/self/statm` once per
//! periodic flush and carried by the Progress record, so that a replay can
//! tell how much of the process's memory went through malloc.

/// Resident bytes now, or `None` if `/proc` cannot say. Leaves errno as it
/// was: it may run on a thread of the program (at exit, before a crash).
pub fn resident_bytes() -> Option<u64> {
    let read = {
        let _errno = crate::guard::ErrnoKeeper::save();
        read_statm()
    };
    let (text, len) = read?;
    // `size resident shared text lib data dt`, in pages.
    let resident: u64 = std::str::from_utf8(&text[..len])
        .ok()?
        .split_ascii_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).ok().map(|page| resident * page)
}

fn read_statm() -> Option<([u8; 128], usize)> {
    // SAFETY: the path is NUL-terminated.
    let fd = unsafe {
        libc::open(
            c"/proc/self/statm".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    let mut buf = [0u8; 128];
    // SAFETY: buf is writable for its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    usize::try_from(n).ok().filter(|&n| n > 0).map(|n| (buf, n))
}
