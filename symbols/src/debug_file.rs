//! Finding the separate debug file of a binary, as gdb does: by build id
//! (`DEBUG_DIR/.build-id/ab/cdef....debug`), then by `.gnu_debuglink` (next to
//! the binary, in its `.debug/` folder, or under `DEBUG_DIR` at the binary's
//! own path), and the dwz supplementary file named by `.gnu_debugaltlink`.

use object::{Object, ObjectSection};
use std::path::{Path, PathBuf};

/// Where a binary's DWARF lives.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DebugFiles {
    /// The file holding the DWARF (and symbols), if not the binary itself.
    pub separate: Option<PathBuf>,
    /// A dwz supplementary file the DWARF refers to.
    pub supplementary: Option<PathBuf>,
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn build_id_path(dir: &Path, id: &[u8], suffix: &str) -> Option<PathBuf> {
    if id.len() < 2 {
        return None;
    }
    let id = hex(id);
    let p = dir
        .join(".build-id")
        .join(&id[..2])
        .join(format!("{}{suffix}", &id[2..]));
    p.is_file().then_some(p)
}

fn has_dwarf(file: &object::File<'_>) -> bool {
    file.section_by_name(".debug_info")
        .is_some_and(|s| s.size() > 0)
}

/// Maps the file at `path` read-only, to be parsed.
pub fn map(path: &Path) -> Option<memmap2::Mmap> {
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: the mapping is read-only and only parsed; a binary rewritten
    // while we read it gives wrong names, not memory unsafety in our code
    // beyond what every debugger accepts.
    unsafe { memmap2::Mmap::map(&file) }.ok()
}

/// The debug files for `binary`, read from `path`, looked up under `debug_dirs`.
pub fn find(binary: &object::File<'_>, path: &Path, debug_dirs: &[PathBuf]) -> DebugFiles {
    let separate = if has_dwarf(binary) {
        None
    } else {
        by_build_id(binary, debug_dirs).or_else(|| by_debuglink(binary, path, debug_dirs))
    };
    let supplementary = match &separate {
        Some(p) => map(p).and_then(|m| {
            object::File::parse(&*m)
                .ok()
                .and_then(|o| altlink(&o, p, debug_dirs))
        }),
        None => altlink(binary, path, debug_dirs),
    };
    DebugFiles {
        separate,
        supplementary,
    }
}

fn by_build_id(binary: &object::File<'_>, debug_dirs: &[PathBuf]) -> Option<PathBuf> {
    let id = binary.build_id().ok()??;
    debug_dirs
        .iter()
        .find_map(|d| build_id_path(d, id, ".debug"))
}

fn by_debuglink(binary: &object::File<'_>, path: &Path, debug_dirs: &[PathBuf]) -> Option<PathBuf> {
    let (name, _crc) = binary.gnu_debuglink().ok()??;
    let name = Path::new(std::str::from_utf8(name).ok()?);
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = real.parent()?;
    let mut candidates = vec![dir.join(name), dir.join(".debug").join(name)];
    for d in debug_dirs {
        candidates.push(d.join(dir.strip_prefix("/").unwrap_or(dir)).join(name));
    }
    candidates
        .into_iter()
        .find(|c| c.is_file() && c.as_path() != real.as_path())
}

fn altlink(file: &object::File<'_>, path: &Path, debug_dirs: &[PathBuf]) -> Option<PathBuf> {
    let (name, id) = file.gnu_debugaltlink().ok()??;
    let named = Path::new(std::str::from_utf8(name).ok()?);
    let named = if named.is_absolute() {
        named.to_path_buf()
    } else {
        path.parent()?.join(named)
    };
    if named.is_file() {
        return Some(named);
    }
    debug_dirs
        .iter()
        .find_map(|d| build_id_path(d, id, ".debug"))
}
