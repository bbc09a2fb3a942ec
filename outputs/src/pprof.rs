//! pprof's profile.proto (gzipped), as `go tool pprof`, speedscope and
//! Grafana read it: the four heap sample types, mappings with build ids,
//! locations with inlined functions and lines.

use crate::profile::{Frame, SampleKind, Snapshot, SymbolizedStacks};
use heapreplay_symbols::Location;
use std::collections::HashMap;
use std::io::{self, Write};

/// The messages of profile.proto that we write.
pub mod proto {
    #![allow(missing_docs)]
    /// The whole profile.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
        #[prost(int64, repeated, tag = "13")]
        pub comment: Vec<i64>,
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }
    /// A sample type and its unit (string table indexes).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }
    /// One stack and its values.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }
    /// A sample's label (string table indexes).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(int64, tag = "1")]
        pub key: i64,
        #[prost(int64, tag = "2")]
        pub str: i64,
    }
    /// A mapped file.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub memory_start: u64,
        #[prost(uint64, tag = "3")]
        pub memory_limit: u64,
        #[prost(uint64, tag = "4")]
        pub file_offset: u64,
        #[prost(int64, tag = "5")]
        pub filename: i64,
        #[prost(int64, tag = "6")]
        pub build_id: i64,
        #[prost(bool, tag = "7")]
        pub has_functions: bool,
        #[prost(bool, tag = "8")]
        pub has_filenames: bool,
        #[prost(bool, tag = "9")]
        pub has_line_numbers: bool,
        #[prost(bool, tag = "10")]
        pub has_inline_frames: bool,
    }
    /// A code address and the functions (inlined first) at it.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(uint64, tag = "3")]
        pub address: u64,
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
    }
    /// A function and line at a location.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }
    /// A function.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
        #[prost(int64, tag = "5")]
        pub start_line: i64,
    }
}

/// Builds one profile: interns strings, functions, mappings and locations.
pub struct Builder {
    profile: proto::Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<(String, String), u64>,
    mappings: HashMap<usize, u64>,
    by_address: HashMap<u64, u64>,
    by_frame: HashMap<Frame, u64>,
}

impl Builder {
    /// A profile with the four heap sample types, showing `default` first;
    /// `time_unix_ns` is when the snapshot was taken.
    pub fn new(default: SampleKind, time_unix_ns: u64, comment: &str) -> Self {
        let mut b = Self {
            profile: proto::Profile::default(),
            strings: HashMap::new(),
            functions: HashMap::new(),
            mappings: HashMap::new(),
            by_address: HashMap::new(),
            by_frame: HashMap::new(),
        };
        b.string("");
        for kind in SampleKind::ALL {
            let vt = b.value_type(kind.name(), kind.unit());
            b.profile.sample_type.push(vt);
        }
        b.profile.default_sample_type = b.string(default.name());
        b.profile.period_type = Some(b.value_type("space", "bytes"));
        b.profile.period = 1;
        b.profile.time_nanos = time_unix_ns as i64;
        let c = b.string(comment);
        b.profile.comment.push(c);
        b
    }

    fn value_type(&mut self, kind: &str, unit: &str) -> proto::ValueType {
        proto::ValueType {
            r#type: self.string(kind),
            unit: self.string(unit),
        }
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.to_string());
        self.strings.insert(s.to_string(), i);
        i
    }

    fn function(&mut self, name: &str, file: &str) -> u64 {
        let key = (name.to_string(), file.to_string());
        if let Some(&id) = self.functions.get(&key) {
            return id;
        }
        let id = self.profile.function.len() as u64 + 1;
        let f = proto::Function {
            id,
            name: self.string(name),
            system_name: self.string(name),
            filename: self.string(file),
            start_line: 0,
        };
        self.profile.function.push(f);
        self.functions.insert(key, id);
        id
    }

    fn mapping(&mut self, index: usize, stacks: &SymbolizedStacks<'_>) -> u64 {
        if let Some(&id) = self.mappings.get(&index) {
            return id;
        }
        let m = &stacks.mappings()[index];
        let id = self.profile.mapping.len() as u64 + 1;
        let mapping = proto::Mapping {
            id,
            memory_start: m.start,
            memory_limit: m.end,
            file_offset: m.offset,
            filename: self.string(&m.path),
            build_id: self.string(m.build_id.as_deref().unwrap_or("")),
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            has_inline_frames: true,
        };
        self.profile.mapping.push(mapping);
        self.mappings.insert(index, id);
        id
    }

    /// The location id of a recorded return address.
    fn address_location(&mut self, address: u64, stacks: &mut SymbolizedStacks<'_>) -> u64 {
        if let Some(&id) = self.by_address.get(&address) {
            return id;
        }
        let loc: Location = stacks.location(address).clone();
        let mapping_id = loc.mapping.map_or(0, |i| self.mapping(i, stacks));
        let mut lines = Vec::new();
        for l in &loc.lines {
            let function_id = self.function(&l.function, l.file.as_deref().unwrap_or(""));
            lines.push(proto::Line {
                function_id,
                line: i64::from(l.line),
            });
        }
        if lines.is_empty() {
            // No symbol: name it by file and offset so every reader shows something.
            let name = loc.unknown_label(stacks.mappings());
            let function_id = self.function(&name, "");
            lines.push(proto::Line {
                function_id,
                line: 0,
            });
        }
        let id = self.profile.location.len() as u64 + 1;
        self.profile.location.push(proto::Location {
            id,
            mapping_id,
            address,
            line: lines,
        });
        self.by_address.insert(address, id);
        id
    }

    /// The location id of a frame known only by name (diffs across traces).
    fn frame_location(&mut self, frame: &Frame) -> u64 {
        if let Some(&id) = self.by_frame.get(frame) {
            return id;
        }
        let (file, line) = match frame.place.as_deref().and_then(|p| p.rsplit_once(':')) {
            Some((f, l)) => (f.to_string(), l.parse().unwrap_or(0)),
            None => (frame.place.clone().unwrap_or_default(), 0),
        };
        let function_id = self.function(&frame.function, &file);
        let id = self.profile.location.len() as u64 + 1;
        self.profile.location.push(proto::Location {
            id,
            mapping_id: 0,
            address: 0,
            line: vec![proto::Line { function_id, line }],
        });
        self.by_frame.insert(frame.clone(), id);
        id
    }

    /// Adds the stacks of a snapshot with their four values.
    /// The memory the program mapped itself is labelled `memory: mapped`
    /// (`go tool pprof -tagignore memory=mapped` leaves it out).
    pub fn add_snapshot(&mut self, snapshot: &Snapshot, stacks: &mut SymbolizedStacks<'_>) {
        let mapped = match snapshot.mapped.is_empty() {
            true => Vec::new(),
            false => vec![proto::Label {
                key: self.string("memory"),
                str: self.string("mapped"),
            }],
        };
        let parts = [(&snapshot.stacks, Vec::new()), (&snapshot.mapped, mapped)];
        for (per_stack, label) in parts {
            for (id, c) in per_stack {
                let location_id = stacks
                    .addresses(*id)
                    .iter()
                    .map(|&a| self.address_location(a, stacks))
                    .collect();
                let value = SampleKind::ALL.iter().map(|k| k.of(c)).collect();
                self.profile.sample.push(proto::Sample {
                    location_id,
                    value,
                    label: label.clone(),
                });
            }
        }
    }

    /// Adds a stack known by its frames (leaf first) with values in
    /// [`SampleKind::ALL`] order (negative in diffs).
    pub fn add_named(&mut self, frames: &[Frame], value: [i64; 4]) {
        let location_id = frames.iter().map(|f| self.frame_location(f)).collect();
        self.profile.sample.push(proto::Sample {
            location_id,
            value: value.to_vec(),
            label: Vec::new(),
        });
    }

    /// Writes the profile gzipped.
    pub fn write(self, out: impl Write) -> io::Result<()> {
        use prost::Message;
        let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        gz.write_all(&self.profile.encode_to_vec())?;
        gz.finish()?.flush()
    }
}

/// Writes `snapshot` as a gzipped profile.proto, with `note` (what the
/// trace covers, if not the whole run) as a second comment.
pub fn write_snapshot(
    out: impl Write,
    snapshot: &Snapshot,
    stacks: &mut SymbolizedStacks<'_>,
    start_unix_ns: u64,
    note: Option<&str>,
) -> io::Result<()> {
    let mut b = Builder::new(
        SampleKind::InuseSpace,
        start_unix_ns + snapshot.ns,
        &snapshot.reason,
    );
    if let Some(note) = note {
        let c = b.string(note);
        b.profile.comment.push(c);
    }
    b.add_snapshot(snapshot, stacks);
    b.write(out)
}
