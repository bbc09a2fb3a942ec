//! A snapshot taken out of the replay (per-stack counters at one point) and
//! its stacks symbolized (function names, files, lines): what every writer beyond
//! profile.heap works from.

use heapreplay_engine::heap::{Counters, Heap};
use heapreplay_engine::mapped::MappedMemory;
use heapreplay_engine::stack_table::StackTable;
use heapreplay_symbols::{Location, Mapping, Symbolizer};
use std::collections::HashMap;
use std::sync::Arc;

/// Which of the four pprof sample values to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SampleKind {
    /// Bytes in use.
    #[default]
    InuseSpace,
    /// Objects in use.
    InuseObjects,
    /// Bytes allocated since the start.
    AllocSpace,
    /// Objects allocated since the start.
    AllocObjects,
}

impl SampleKind {
    /// Every kind, in pprof's order for heap profiles.
    pub const ALL: [SampleKind; 4] = [
        SampleKind::AllocObjects,
        SampleKind::AllocSpace,
        SampleKind::InuseObjects,
        SampleKind::InuseSpace,
    ];

    /// pprof's name (`inuse_space`, ...).
    pub fn name(self) -> &'static str {
        match self {
            SampleKind::InuseSpace => "inuse_space",
            SampleKind::InuseObjects => "inuse_objects",
            SampleKind::AllocSpace => "alloc_space",
            SampleKind::AllocObjects => "alloc_objects",
        }
    }

    /// The unit: `bytes` or `count`.
    pub fn unit(self) -> &'static str {
        match self {
            SampleKind::InuseSpace | SampleKind::AllocSpace => "bytes",
            _ => "count",
        }
    }

    /// Parses pprof's name, with `-` or `_`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|k| k.name() == t)
            .ok_or_else(|| {
                format!(
                    "'{text}' is not one of inuse_space, inuse_objects, alloc_space, alloc_objects"
                )
            })
    }

    /// This value of `c`.
    pub fn of(self, c: &Counters) -> i64 {
        let v = match self {
            SampleKind::InuseSpace => c.inuse_bytes(),
            SampleKind::InuseObjects => c.inuse_objects(),
            SampleKind::AllocSpace => c.alloc_bytes,
            SampleKind::AllocObjects => c.allocs,
        };
        v as i64
    }
}

/// The heap at one snapshot point.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Why it was taken, as logged.
    pub reason: String,
    /// When, in ns since the start of recording.
    pub ns: u64,
    /// Totals over all stacks.
    pub totals: Counters,
    /// Counters of every stack that has allocated, by stack id.
    pub stacks: Vec<(u32, Counters)>,
    /// Memory the program mapped itself, per stack id (`HEAP_PROFILE_MMAP`
    /// traces; else empty): apart from the heap's counters.
    pub mapped: Vec<(u32, Counters)>,
    /// Frees of blocks the trace never saw allocated (allocated before an
    /// attach), up to this point: counted apart, never subtracted.
    pub unseen_frees: u64,
}

impl Snapshot {
    /// Copies what `heap` holds now.
    pub fn take(heap: &Heap, reason: String, ns: u64) -> Self {
        Self {
            reason,
            ns,
            totals: *heap.totals(),
            stacks: heap.stacks().collect(),
            mapped: Vec::new(),
            unseen_frees: heap.unseen_frees(),
        }
    }

    /// Adds the memory mapped at the same point.
    pub fn with_mapped(mut self, mapped: &MappedMemory<'_>) -> Self {
        self.mapped = mapped.stacks().collect();
        self
    }

    /// Bytes mapped (by the program's own mapping calls) at this point.
    pub fn mapped_bytes(&self) -> u64 {
        self.mapped.iter().map(|(_, c)| c.inuse_bytes()).sum()
    }
}

/// One frame of a symbolized stack, inlined calls expanded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frame {
    /// Function name, or `libfoo.so+0x1a2b` / `0x...` when unknown.
    pub function: String,
    /// `file:line` when known.
    pub place: Option<String>,
}

/// The stacks of one trace symbolized, each stack once.
pub struct SymbolizedStacks<'a> {
    table: &'a StackTable,
    /// The addresses of the stacks asked for so far.
    addresses: HashMap<u32, Arc<[u64]>>,
    symbolizer: Symbolizer,
    named: HashMap<u32, Vec<Frame>>,
    /// Addresses in a mapped file that had no symbol, by mapping.
    unnamed: HashMap<usize, std::collections::HashSet<u64>>,
}

impl<'a> SymbolizedStacks<'a> {
    /// Resolves the stacks in `frames` (stack id to return addresses, leaf
    /// first) with `symbolizer`.
    pub fn new(table: &'a StackTable, symbolizer: Symbolizer) -> Self {
        Self {
            table,
            addresses: HashMap::new(),
            symbolizer,
            named: HashMap::new(),
            unnamed: HashMap::new(),
        }
    }

    /// The mapped files.
    pub fn mappings(&self) -> &[Mapping] {
        self.symbolizer.mappings()
    }

    /// The return addresses of stack `id`, leaf first.
    pub fn addresses(&mut self, id: u32) -> Arc<[u64]> {
        let table = self.table;
        self.addresses
            .entry(id)
            .or_insert_with(|| table.frames(id).into())
            .clone()
    }

    /// What `address` symbolizes to.
    pub fn location(&mut self, address: u64) -> &Location {
        self.symbolizer.locate(address)
    }

    /// Stack `id` as frames, leaf (innermost inlined call) first.
    pub fn frames(&mut self, id: u32) -> &[Frame] {
        if !self.named.contains_key(&id) {
            let mut out = Vec::new();
            for &address in self.addresses(id).iter() {
                let location = self.symbolizer.locate(address).clone();
                if location.lines.is_empty() {
                    if let Some(mapping) = location.mapping {
                        self.unnamed.entry(mapping).or_default().insert(address);
                    }
                    out.push(Frame {
                        function: location.unknown_label(self.symbolizer.mappings()),
                        place: None,
                    });
                }
                for line in &location.lines {
                    out.push(Frame {
                        function: line.function.clone(),
                        place: line.file.as_ref().map(|f| {
                            let short = f.rsplit('/').next().unwrap_or(f);
                            if line.line > 0 {
                                format!("{short}:{}", line.line)
                            } else {
                                short.to_string()
                            }
                        }),
                    });
                }
            }
            self.named.insert(id, out);
        }
        &self.named[&id]
    }

    /// The files whose frames had no symbol, among the stacks named so far,
    /// with how many distinct addresses each: the most first.
    pub fn unnamed_frames(&self) -> Vec<(&str, usize)> {
        let mappings = self.symbolizer.mappings();
        let mut files: HashMap<&str, usize> = HashMap::new();
        for (&mapping, addresses) in &self.unnamed {
            *files.entry(mappings[mapping].path.as_str()).or_default() += addresses.len();
        }
        let mut files: Vec<(&str, usize)> = files.into_iter().collect();
        files.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        files
    }

    /// Function names of stack `id`, root first, as flame graphs want them.
    pub fn folded(&mut self, id: u32) -> String {
        folded(self.frames(id))
    }
}

/// Function names of a stack (frames leaf first) joined root first with `;`,
/// the folded form flame graphs read.
pub fn folded(frames: &[Frame]) -> String {
    if frames.is_empty() {
        return "[unknown]".into();
    }
    let names: Vec<String> = frames
        .iter()
        .rev()
        .map(|f| f.function.replace(';', ":"))
        .collect();
    names.join(";")
}
