//! Addresses of exported functions and data in the process attached to:
//! read from the dynamic symbols of the object's file, plus the object's
//! load bias from its mappings.

use crate::target::Mapping;
use object::{Object, ObjectSegment, ObjectSymbol};
use std::path::Path;

/// An object loaded in the process: its file (as this process reaches it)
/// and its load bias.
pub struct Loaded {
    data: Vec<u8>,
    bias: u64,
}

impl Loaded {
    /// The object mapped from `file` (readable here at `readable`), whose
    /// mappings are among `maps`; `None` if it is not mapped, or its file
    /// cannot be read or parsed.
    pub fn find(maps: &[Mapping], file: &str, readable: &Path) -> Option<Loaded> {
        let data = std::fs::read(readable).ok()?;
        let first = maps
            .iter()
            .filter(|m| m.path == file && m.offset == 0)
            .map(|m| m.start)
            .min()?;
        let parsed = object::File::parse(&*data).ok()?;
        // The lowest segment's address, rounded down to its page, is where
        // the first mapping starts.
        let lowest = parsed.segments().map(|s| s.address()).min().unwrap_or(0) & !0xfff;
        let bias = first.checked_sub(lowest)?;
        Some(Loaded { data, bias })
    }

    /// The address of the first of `names` the object exports (a defined
    /// dynamic symbol), with which name.
    pub fn symbol(&self, names: &[&str]) -> Option<(u64, String)> {
        let parsed = object::File::parse(&*self.data).ok()?;
        for name in names {
            let found = parsed
                .dynamic_symbols()
                .find(|s| s.is_definition() && s.name().is_ok_and(|n| n == *name));
            if let Some(s) = found {
                return Some((self.bias + s.address(), name.to_string()));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_process_s_own_malloc() {
        let me = std::process::id() as i32;
        let maps = crate::target::maps(me).unwrap();
        let libc = maps
            .iter()
            .find(|m| m.file_name().starts_with("libc.so"))
            .unwrap()
            .path
            .clone();
        let loaded = Loaded::find(&maps, &libc, Path::new(&libc)).unwrap();
        let (addr, name) = loaded.symbol(&["no_such_function", "malloc"]).unwrap();
        assert_eq!(name, "malloc");
        // SAFETY: a lookup of a NUL-terminated name.
        let real = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"malloc".as_ptr()) } as u64;
        assert_eq!(addr, real);
    }
}
