//! Offline symbolization of recorded return addresses: which binary (from
//! the recorded memory maps), which function, file and line (ELF symbols and
//! DWARF, inlined frames expanded, separate debug files found by build id and
//! debuglink).

pub mod debug_file;

use object::{Object, ObjectSegment};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A mapped file, as pprof describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// File offset of `start`.
    pub offset: u64,
    /// The file.
    pub path: String,
    /// The file's GNU build id in hex, if it has one and can be read.
    pub build_id: Option<String>,
}

/// One function at a location; several when calls were inlined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Demangled function name.
    pub function: String,
    /// Source file, when debug information says.
    pub file: Option<String>,
    /// Source line (0 when unknown).
    pub line: u32,
}

/// What a return address symbolizes to: its function, file and line
/// (with inlined calls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The recorded address.
    pub address: u64,
    /// Index into [`Symbolizer::mappings`], if the address is in a mapped file.
    pub mapping: Option<usize>,
    /// Innermost (inlined) function first, the function the code belongs to last;
    /// empty when nothing is known.
    pub lines: Vec<Line>,
}

impl Location {
    /// A short name for a frame with no symbol: `libfoo.so+0x1a2b`, or the address.
    pub fn unknown_label(&self, mappings: &[Mapping]) -> String {
        match self.mapping.map(|i| &mappings[i]) {
            Some(m) => {
                let name = m.path.rsplit('/').next().unwrap_or(&m.path);
                format!("{name}+0x{:x}", self.address - m.start + m.offset)
            }
            None => format!("0x{:x}", self.address),
        }
    }
}

struct Segment {
    file_offset: u64,
    file_size: u64,
    address: u64,
}

struct Module {
    loader: addr2line::Loader,
    /// The binary itself, for symbols when the DWARF came from a debug file
    /// that lacks them.
    binary_symbols: Option<addr2line::Loader>,
    segments: Vec<Segment>,
}

impl Module {
    fn open(path: &Path, debug_dirs: &[PathBuf]) -> Option<(Module, Option<String>)> {
        let map = debug_file::map(path)?;
        let obj = object::File::parse(&*map).ok()?;
        let segments = obj
            .segments()
            .map(|s| {
                let (file_offset, file_size) = s.file_range();
                Segment {
                    file_offset,
                    file_size,
                    address: s.address(),
                }
            })
            .collect();
        let build_id = obj.build_id().ok().flatten().map(debug_file::hex);
        let debug = debug_file::find(&obj, path, debug_dirs);
        let dwarf_path = debug.separate.as_deref().unwrap_or(path);
        let loader = addr2line::Loader::new_with_sup(dwarf_path, debug.supplementary.as_deref())
            .or_else(|_| addr2line::Loader::new(dwarf_path))
            .or_else(|_| addr2line::Loader::new(path))
            .ok()?;
        let binary_symbols = debug
            .separate
            .as_ref()
            .and_then(|_| addr2line::Loader::new(path).ok());
        Some((
            Module {
                loader,
                binary_symbols,
                segments,
            },
            build_id,
        ))
    }

    /// The address in the file's own terms for a file offset.
    fn file_address(&self, file_offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| file_offset >= s.file_offset && file_offset < s.file_offset + s.file_size)
            .map(|s| s.address + (file_offset - s.file_offset))
    }

    fn lines(&self, probe: u64) -> Vec<Line> {
        let mut lines = Vec::new();
        if let Ok(mut frames) = self.loader.find_frames(probe) {
            while let Ok(Some(frame)) = frames.next() {
                let function = frame
                    .function
                    .as_ref()
                    .and_then(|f| f.demangle().ok().map(|s| s.into_owned()));
                let (file, line) = frame
                    .location
                    .map(|l| (l.file.map(str::to_owned), l.line.unwrap_or(0)))
                    .unwrap_or((None, 0));
                lines.push(Line {
                    function: function.unwrap_or_default(),
                    file,
                    line,
                });
            }
        }
        // The outermost function may be unnamed in DWARF (or there is no DWARF).
        if lines.last().is_none_or(|l| l.function.is_empty()) {
            let symbol = self
                .loader
                .find_symbol(probe)
                .or_else(|| self.binary_symbols.as_ref()?.find_symbol(probe))
                .map(|s| addr2line::demangle_auto(s.into(), None).into_owned());
            match (lines.last_mut(), symbol) {
                (Some(last), Some(name)) => last.function = name,
                (None, Some(name)) => lines.push(Line {
                    function: name,
                    file: None,
                    line: 0,
                }),
                _ => {}
            }
        }
        lines.retain(|l| !l.function.is_empty());
        lines
    }
}

/// Resolves addresses against one set of recorded memory maps.
pub struct Symbolizer {
    mappings: Vec<Mapping>,
    modules: HashMap<String, Option<Module>>,
    debug_dirs: Vec<PathBuf>,
    cache: HashMap<u64, Location>,
}

/// The default places for separate debug files.
pub fn default_debug_dirs() -> Vec<PathBuf> {
    vec![PathBuf::from("/usr/lib/debug")]
}

/// Parses a `/proc/PID/maps` line into (start, end, offset, path) for a file mapping.
fn parse_maps_line(line: &str) -> Option<(u64, u64, u64, String)> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let _perms = fields.next()?;
    let offset = fields.next()?;
    let _dev = fields.next()?;
    let _inode = fields.next()?;
    let path: Vec<&str> = fields.collect();
    let path = path.join(" ");
    let path = path.strip_suffix(" (deleted)").unwrap_or(&path);
    if !path.starts_with('/') {
        return None;
    }
    Some((
        u64::from_str_radix(start, 16).ok()?,
        u64::from_str_radix(end, 16).ok()?,
        u64::from_str_radix(offset, 16).ok()?,
        path.to_string(),
    ))
}

impl Symbolizer {
    /// A symbolizer for addresses of a process whose maps were `maps_text`;
    /// separate debug files are looked for under `debug_dirs`.
    pub fn new(maps_text: &str, debug_dirs: Vec<PathBuf>) -> Self {
        let mut mappings: Vec<Mapping> = maps_text
            .lines()
            .filter_map(parse_maps_line)
            .map(|(start, end, offset, path)| Mapping {
                start,
                end,
                offset,
                path,
                build_id: None,
            })
            .collect();
        mappings.sort_by_key(|m| m.start);
        Self {
            mappings,
            modules: HashMap::new(),
            debug_dirs,
            cache: HashMap::new(),
        }
    }

    /// The opened file of mapping `index`, opened on first use (files no
    /// stack reaches are never read); its build id goes to every mapping of
    /// the file.
    fn module(&mut self, index: usize) -> Option<&Module> {
        let path = self.mappings[index].path.clone();
        if !self.modules.contains_key(&path) {
            let (module, id) = match Module::open(Path::new(&path), &self.debug_dirs) {
                Some((m, id)) => (Some(m), id),
                None => (None, None),
            };
            for m in self.mappings.iter_mut().filter(|m| m.path == path) {
                m.build_id = id.clone();
            }
            self.modules.insert(path.clone(), module);
        }
        self.modules.get(&path)?.as_ref()
    }

    /// Every mapped file, by start address (build ids known for the files
    /// that an address symbolized so far lies in).
    pub fn mappings(&self) -> &[Mapping] {
        &self.mappings
    }

    fn mapping_of(&self, address: u64) -> Option<usize> {
        let i = self.mappings.partition_point(|m| m.start <= address);
        let i = i.checked_sub(1)?;
        (address < self.mappings[i].end).then_some(i)
    }

    /// What the return address `address` symbolizes to (cached).
    pub fn locate(&mut self, address: u64) -> &Location {
        if !self.cache.contains_key(&address) {
            let location = self.symbolize(address);
            self.cache.insert(address, location);
        }
        &self.cache[&address]
    }

    fn symbolize(&mut self, address: u64) -> Location {
        let mapping = self.mapping_of(address);
        let lines = mapping
            .and_then(|i| {
                let (start, offset) = (self.mappings[i].start, self.mappings[i].offset);
                let module = self.module(i)?;
                // A return address points after the call: look up the call itself.
                let offset = address.checked_sub(1)? - start + offset;
                Some(module.lines(module.file_address(offset)?))
            })
            .unwrap_or_default();
        Location {
            address,
            mapping,
            lines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_parse_files_only() {
        assert_eq!(
            parse_maps_line("7f00-7f10 r-xp 00001000 08:01 123   /usr/lib/lib c.so (deleted)"),
            Some((0x7f00, 0x7f10, 0x1000, "/usr/lib/lib c.so".into()))
        );
        assert_eq!(parse_maps_line("7f00-7f10 rw-p 0 00:00 0 [heap]"), None);
        assert_eq!(parse_maps_line("7f00-7f10 rw-p 0 00:00 0"), None);
    }

    #[test]
    fn own_code_symbolizes_to_this_function() {
        // This test binary's own maps, and an address inside this function.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let mut s = Symbolizer::new(&maps, default_debug_dirs());
        let here = own_code_symbolizes_to_this_function as *const () as usize as u64;
        let loc = s.locate(here + 1).clone();
        let names: Vec<_> = loc.lines.iter().map(|l| l.function.as_str()).collect();
        assert!(
            names
                .iter()
                .any(|n| n.ends_with("own_code_symbolizes_to_this_function")),
            "{names:?}"
        );
        assert!(loc.lines.iter().any(|l| l
            .file
            .as_deref()
            .is_some_and(|f| f.ends_with("symbols/src/lib.rs"))));
    }
}
