//! What `heapreplay record` checks about a program before running it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Finds `program` the way the shell does: as given if it has a slash,
/// else in `PATH`.
pub fn find_program(program: &str) -> Option<PathBuf> {
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

/// For an ELF executable: true if it has no program interpreter (statically
/// linked). `None` if it is not an ELF file.
fn is_static_elf(bytes: &[u8]) -> Option<bool> {
    use object::read::elf::{ElfFile, FileHeader, ProgramHeader};
    fn check<Elf: FileHeader>(bytes: &[u8]) -> Option<bool> {
        let file = ElfFile::<Elf>::parse(bytes).ok()?;
        let endian = file.endian();
        let types: Vec<_> = file
            .elf_program_headers()
            .iter()
            .map(|p| p.p_type(endian))
            .collect();
        let interp = types.contains(&object::elf::PT_INTERP);
        let dynamic = types.contains(&object::elf::PT_DYNAMIC);
        let shared = file.elf_header().e_type(endian) == object::elf::ET_DYN;
        // Static-PIE binaries have a dynamic section but no interpreter.
        Some(!interp && (!dynamic || shared))
    }
    match object::FileKind::parse(bytes).ok()? {
        object::FileKind::Elf64 => check::<object::elf::FileHeader64<object::Endianness>>(bytes),
        object::FileKind::Elf32 => check::<object::elf::FileHeader32<object::Endianness>>(bytes),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_programs_are_recordable() {
        let sh = find_program("sh").expect("sh on PATH");
        assert_eq!(unrecordable(&sh), None);
        assert_eq!(is_static_elf(b"#!/bin/sh\n"), None);
    }
}
