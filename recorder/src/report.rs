//! Messages to the user on stderr, written with plain `write(2)` so that
//! reporting never allocates or takes a lock the application might hold.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// True when the recorder must not write to the program's stderr.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Says nothing on stderr from now on: in a program attached to, whose
/// output must stay its own (the attaching command reports instead).
pub fn quiet() {
    QUIET.store(true, Ordering::Relaxed);
}

/// Writes `msg` to stderr as it is (unless [`quiet`]).
pub fn line(msg: &[u8]) {
    if QUIET.load(Ordering::Relaxed) {
        return;
    }
    let mut rest = msg;
    while !rest.is_empty() {
        // SAFETY: rest points to rest.len() readable bytes.
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            return;
        }
        rest = &rest[n as usize..];
    }
}

/// Formats a message into a stack buffer and writes it to stderr.
pub fn format(args: std::fmt::Arguments<'_>) {
    let mut buf = [0u8; 1024];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = cursor.write_fmt(args);
    let len = cursor.position() as usize;
    line(&buf[..len]);
}

/// `format!`-style reporting to stderr, prefixed with `heapreplay: `.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::report::format(format_args!("heapreplay: {}\n", format_args!($($arg)*)))
    };
}

/// The text of an `errno` value.
pub fn strerror(errno: i32) -> String {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}
