//! What `heapreplay record` checks about a program before running it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Finds `program` the way the shell does: as given if it has a slash,
/// else in `PATH`.
pub fn resolve(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// Why the recorder could not see a program's allocations, if it could not.
pub fn unrecordable(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.permissions().mode();
    if mode & 0o6000 != 0 {
        return Some(format!(
            "{} is set-user-ID or set-group-ID: the dynamic loader ignores LD_PRELOAD for it, so the recorder cannot see its allocations",
            path.display()
        ));
    }
    let bytes = std::fs::read(path).ok()?;
    if is_static_elf(&bytes)? {
        return Some(format!(
            "{} is statically linked: it loads no shared libraries, so the recorder (LD_PRELOAD) cannot see its allocations",
            path.display()
        ));
    }
    None
}

/// For a 64-bit little-endian ELF executable: true if it has no program
/// interpreter (statically linked). `None` if it is not such a file.
fn is_static_elf(b: &[u8]) -> Option<bool> {
    if b.len() < 64 || &b[0..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
    let phoff = u64_at(0x20)? as usize;
    let phentsize = u16_at(0x36)? as usize;
    let phnum = u16_at(0x38)? as usize;
    const PT_INTERP: u32 = 3;
    const PT_DYNAMIC: u32 = 2;
    let mut interp = false;
    let mut dynamic = false;
    for i in 0..phnum {
        match u32_at(phoff + i * phentsize)? {
            PT_INTERP => interp = true,
            PT_DYNAMIC => dynamic = true,
            _ => {}
        }
    }
    // Static-PIE binaries have a dynamic section but no interpreter.
    Some(!interp && (!dynamic || u16_at(0x10)? == 3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_programs_are_recordable() {
        let sh = resolve("sh").expect("sh on PATH");
        assert_eq!(unrecordable(&sh), None);
        assert_eq!(is_static_elf(b"#!/bin/sh\n"), None);
    }
}
