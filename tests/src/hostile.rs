//! Hostile traces: a small valid trace, then structure-aware mutations of it
//! (valid records with hostile fields, records repeated, moved or lying
//! about their contents), for the fuzz harness and the checked-in vectors.
//!
//! Every case knows what a reader must do with it: replay it exactly (the
//! mutation keeps the trace valid), report damage or refuse it, or at least
//! neither crash, hang nor blow up (random bytes).

use heapreplay_format::events::{encode_columns, encode_compacted};
use heapreplay_format::info::{encode_clock, encode_threads, to_bytes};
use heapreplay_format::markers::encode_markers;
use heapreplay_format::reader::{blank_header, encode_record, record_compressor};
use heapreplay_format::stacks::encode_stack;
use heapreplay_format::{
    ClockSample, EndInfo, Event, EventKind, FileInfo, Marker, MarkerSource, RecordHeader,
    RecordKind,
};

/// A small deterministic pseudo-random sequence (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A sequence from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value below `n` (0 if `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// One record before encoding: its header fields and raw payload.
#[derive(Debug, Clone)]
pub struct Rec {
    /// The header (lengths are filled in when encoded, unless `lie` says).
    pub header: RecordHeader,
    /// The uncompressed payload.
    pub raw: Vec<u8>,
    /// For Events records: the events, re-encoded into `raw` by [`Rec::events`].
    pub events: Vec<Event>,
    /// A payload length to write instead of the true one.
    pub lie_payload_len: Option<u32>,
}

impl Rec {
    fn new(kind: RecordKind, raw: Vec<u8>) -> Self {
        Self {
            header: blank_header(kind),
            raw,
            events: Vec::new(),
            lie_payload_len: None,
        }
    }

    /// An Events record of thread `tid` holding `events`.
    pub fn events(tid: u32, events: Vec<Event>) -> Self {
        let mut r = Self::new(RecordKind::Events, encode_columns(&events));
        r.header.first_seq = events.first().map_or(0, |e| e.seq);
        r.header.last_seq = events.last().map_or(0, |e| e.seq);
        r.header.tid = tid;
        r.header.count = events.len() as u32;
        r.events = events;
        r
    }

    /// Encodes the events again after they were changed.
    fn reencode(&mut self) {
        let tid = self.header.tid;
        *self = Self::events(tid, std::mem::take(&mut self.events));
    }
}

/// What a reader must do with a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Replay it with no damage, and with the totals given.
    Exact(Totals),
    /// Report damage (or refuse the file with an error).
    Damage,
    /// Anything but a crash, a hang or unbounded memory.
    Survive,
}

/// The heap at the end of a trace, as a model of its events says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Allocations.
    pub allocs: u64,
    /// Bytes allocated.
    pub alloc_bytes: u64,
    /// Frees of live blocks.
    pub frees: u64,
    /// Bytes freed.
    pub free_bytes: u64,
}

/// A trace to feed a reader, and what the reader must do with it.
#[derive(Debug, Clone)]
pub struct Case {
    /// The mutations applied, in words (also the vector's file name).
    pub name: String,
    /// The trace file's bytes.
    pub bytes: Vec<u8>,
    /// What must happen.
    pub expect: Expect,
}

/// The valid trace every case starts from: FileInfo, Maps, Stacks, then the
/// events of three threads in records of up to `per_record` events, a
/// Markers record, a Clock record and End.
pub fn base(rng: &mut Rng) -> Vec<Rec> {
    let info = FileInfo {
        pid: 4242,
        ppid: 1,
        start_unix_ns: 1_800_000_000_000_000_000,
        start_mono_ns: 0,
        exe: "/usr/bin/hostile".into(),
        cmdline: "hostile".into(),
        recorder_version: "hostile".into(),
    };
    let mut recs = vec![
        Rec::new(RecordKind::FileInfo, to_bytes(&info).expect("encodable")),
        Rec::new(
            RecordKind::Maps,
            b"555555554000-555555600000 r-xp 00000000 00:00 1 /usr/bin/hostile\n".to_vec(),
        ),
    ];
    let stacks = 4 + rng.below(12) as u32;
    let mut payload = Vec::new();
    for id in 1..=stacks {
        let frames: Vec<u64> = (0..1 + rng.below(6))
            .map(|_| 0x5555_5555_4000 + rng.below(0xac000))
            .collect();
        encode_stack(&mut payload, id, &frames);
    }
    let mut st = Rec::new(RecordKind::Stacks, payload);
    st.header.count = stacks;
    recs.push(st);

    let threads = 1 + rng.below(3) as u32;
    let mut live: Vec<Vec<u64>> = vec![Vec::new(); threads as usize];
    let mut pending: Vec<Vec<Event>> = vec![Vec::new(); threads as usize];
    let per_record = 5 + rng.below(40) as usize;
    let mut next_addr = 0x7f00_0000_0000u64;
    let events = 50 + rng.below(400);
    for seq in 0..events {
        let t = rng.below(u64::from(threads)) as usize;
        let e = if !live[t].is_empty() && rng.below(100) < 45 {
            let i = rng.below(live[t].len() as u64) as usize;
            let addr = live[t].swap_remove(i);
            Event {
                seq,
                addr,
                size: 0,
                stack: 0,
                kind: EventKind::Free,
            }
        } else {
            next_addr += 0x40;
            live[t].push(next_addr);
            Event {
                seq,
                addr: next_addr,
                size: 1 + rng.below(4000),
                stack: 1 + rng.below(u64::from(stacks)) as u32,
                kind: EventKind::Alloc,
            }
        };
        pending[t].push(e);
        if pending[t].len() >= per_record {
            recs.push(Rec::events(
                1000 + t as u32,
                std::mem::take(&mut pending[t]),
            ));
        }
    }
    for (t, p) in pending.into_iter().enumerate() {
        if !p.is_empty() {
            recs.push(Rec::events(1000 + t as u32, p));
        }
    }
    let markers = vec![Marker {
        seq: events / 2,
        ns: events / 2 * 1000,
        tid: 1000,
        source: MarkerSource::Signal(12),
    }];
    let mut m = Rec::new(RecordKind::Markers, encode_markers(&markers));
    m.header.first_seq = markers[0].seq;
    m.header.last_seq = markers[0].seq;
    m.header.count = 1;
    recs.push(m);
    let clock = [
        ClockSample { seq: 0, ns: 0 },
        ClockSample {
            seq: events,
            ns: events * 1000,
        },
    ];
    let mut c = Rec::new(RecordKind::Clock, encode_clock(&clock));
    c.header.first_seq = 0;
    c.header.last_seq = events;
    c.header.count = 2;
    recs.push(c);
    let end = EndInfo {
        next_seq: events,
        events,
        end_ns: events * 1000,
        markers_dropped: 0,
    };
    let mut e = Rec::new(RecordKind::End, to_bytes(&end).expect("encodable"));
    e.header.first_seq = events;
    e.header.last_seq = events;
    recs.push(e);
    recs
}

/// The totals a replay of `recs` must give (frees of addresses not live
/// are ignored, allocations over a live address retire the old block).
pub fn model(recs: &[Rec]) -> Totals {
    let mut events: Vec<Event> = recs.iter().flat_map(|r| r.events.clone()).collect();
    events.sort_by_key(|e| e.seq);
    let mut live = std::collections::HashMap::new();
    let mut t = Totals::default();
    for e in events {
        match e.kind {
            EventKind::Alloc => {
                if let Some(old) = live.insert(e.addr, e.size) {
                    t.frees += 1;
                    t.free_bytes += old;
                }
                t.allocs += 1;
                t.alloc_bytes += e.size;
            }
            _ => {
                if let Some(old) = live.remove(&e.addr) {
                    t.frees += 1;
                    t.free_bytes += old;
                }
            }
        }
    }
    t
}

/// Encodes records into a trace file.
pub fn encode(recs: &[Rec]) -> Vec<u8> {
    let mut c = record_compressor(1).expect("a zstd compressor");
    let mut out = Vec::new();
    for r in recs {
        let mut bytes = encode_record(&mut c, r.header, &r.raw).expect("compressible");
        if let Some(len) = r.lie_payload_len {
            let mut h = RecordHeader::decode(&bytes).expect("just encoded");
            h.payload_len = len;
            bytes[..heapreplay_format::RECORD_PREFIX_LEN].copy_from_slice(&h.encode());
        }
        out.extend(bytes);
    }
    out
}

/// The mutations, each by name: `(name, what a reader must do)`.
pub const MUTATIONS: &[(&str, Mutation)] = &[
    ("valid", Mutation::None),
    ("records-reordered", Mutation::Reorder),
    ("events-record-twice", Mutation::RecordTwice),
    ("overlapping-records", Mutation::Overlap),
    ("files-concatenated", Mutation::Concatenate),
    ("stack-id-u32-max", Mutation::StackId(u32::MAX)),
    ("stack-id-2-pow-26", Mutation::StackId(1 << 26)),
    ("stack-id-0-used", Mutation::StackId(0)),
    ("stack-0-defined", Mutation::DefineStack(0)),
    ("stack-defined-twice", Mutation::DefineStack(1)),
    ("sparse-stack-ids", Mutation::SparseIds),
    ("sizes-overflow", Mutation::HugeSizes),
    ("seq-at-u64-max", Mutation::SeqAtMax),
    ("count-lies", Mutation::CountLie),
    ("payload-len-too-long", Mutation::PayloadLenLie(true)),
    ("payload-len-too-short", Mutation::PayloadLenLie(false)),
    ("maps-65k-lines", Mutation::BigMaps(65_536, 1)),
    ("maps-four-large-records", Mutation::BigMaps(10_000, 4)),
    ("maps-of-special-files", Mutation::SpecialFileMaps),
    (
        "trailing-bytes-stacks",
        Mutation::Trailing(RecordKind::Stacks),
    ),
    (
        "trailing-bytes-events",
        Mutation::Trailing(RecordKind::Events),
    ),
    (
        "trailing-bytes-clock",
        Mutation::Trailing(RecordKind::Clock),
    ),
    (
        "trailing-bytes-markers",
        Mutation::Trailing(RecordKind::Markers),
    ),
    (
        "trailing-bytes-fileinfo",
        Mutation::Trailing(RecordKind::FileInfo),
    ),
    ("trailing-bytes-end", Mutation::Trailing(RecordKind::End)),
    ("trailing-bytes-maps", Mutation::Trailing(RecordKind::Maps)),
    ("fileinfo-not-first", Mutation::FileInfoLater),
    ("end-twice", Mutation::EndTwice),
    ("end-count-lies", Mutation::EndCountLie),
    ("bad-tag", Mutation::BadTag),
    ("last-seq-lies", Mutation::LastSeqLie),
    ("unused-stacks", Mutation::UnusedStacks(20_000)),
    ("hostile-clock-and-markers", Mutation::HostileClock),
    ("hostile-mappings", Mutation::HostileMappings),
    ("every-header-damaged", Mutation::EveryChecksum),
    ("cut-short", Mutation::Truncate),
    ("bytes-flipped", Mutation::Flip),
    ("compacted", Mutation::Compacted),
    ("compacted-bytes-flipped", Mutation::CompactedFlip),
    ("compacted-frees-lie", Mutation::CompactedLies),
];

/// A structure-aware change to the base trace.
#[derive(Debug, Clone, Copy)]
pub enum Mutation {
    /// The base trace as it is.
    None,
    /// The events as a compacted trace holds them: every thread's in
    /// sequence order, in Compacted records, with a Threads record (valid).
    Compacted,
    /// A compacted trace with a few bits flipped.
    CompactedFlip,
    /// A compacted trace whose resolved frees name blocks far larger than
    /// their stacks allocated (a reader without a map must not trust them).
    CompactedLies,
    /// Records other than FileInfo shuffled (valid: readers sort).
    Reorder,
    /// One events record written twice.
    RecordTwice,
    /// An events record of another thread repeating seqs of an existing one.
    Overlap,
    /// The whole file twice (`cat a a > b`).
    Concatenate,
    /// One allocation names this stack id, which is not defined.
    StackId(u32),
    /// A Stacks record defines this id (again).
    DefineStack(u32),
    /// Stacks defined and used with ids far apart (valid).
    SparseIds,
    /// Allocation sizes that add up past 2^64.
    HugeSizes,
    /// The events moved so that the last one has seq u64::MAX (valid).
    SeqAtMax,
    /// An events record's count says u32::MAX.
    CountLie,
    /// A header's payload length lies (longer, or shorter).
    PayloadLenLie(bool),
    /// Maps records of this many lines, this many times (valid).
    BigMaps(usize, usize),
    /// Maps lines naming devices, directories and /proc files.
    SpecialFileMaps,
    /// Bytes added after a record's payload.
    Trailing(RecordKind),
    /// FileInfo moved after the Maps record.
    FileInfoLater,
    /// The End record written twice.
    EndTwice,
    /// The End record counts more events than there are.
    EndCountLie,
    /// An events record with an unknown tag byte.
    BadTag,
    /// An events record's last_seq below its events'.
    LastSeqLie,
    /// This many stacks of 128 frames no event uses (valid).
    UnusedStacks(u32),
    /// Clock samples going backwards and markers at the ends of time.
    HostileClock,
    /// Mapping calls at the ends of the address space, of every length,
    /// naming an undefined stack, and a Mappings record whose count lies.
    HostileMappings,
    /// Every record header's checksum broken.
    EveryChecksum,
    /// The file cut at a random point.
    Truncate,
    /// A few random bytes changed.
    Flip,
}

fn events_records(recs: &[Rec]) -> Vec<usize> {
    (0..recs.len())
        .filter(|&i| recs[i].header.kind == RecordKind::Events)
        .collect()
}

fn first_of(recs: &[Rec], kind: RecordKind) -> usize {
    recs.iter()
        .position(|r| r.header.kind == kind)
        .expect("the base trace has one of each kind")
}

/// Changes the allocation events of record `i` with `f`, re-encoding it.
fn change_allocs(recs: &mut [Rec], i: usize, mut f: impl FnMut(&mut Event)) {
    for e in recs[i].events.iter_mut() {
        if e.kind == EventKind::Alloc {
            f(e);
        }
    }
    recs[i].reencode();
}

/// A Stacks record defining `ids`, each with `depth` frames.
fn stacks_record(ids: &[u32], depth: usize) -> Rec {
    let mut payload = Vec::new();
    for &id in ids {
        let frames: Vec<u64> = (0..depth as u64)
            .map(|d| 0x5555_5555_4000 + d * 8)
            .collect();
        encode_stack(&mut payload, id, &frames);
    }
    let mut r = Rec::new(RecordKind::Stacks, payload);
    r.header.count = ids.len() as u32;
    r
}

/// Applies `m` to `recs` (or to the encoded bytes); returns the bytes and
/// what a reader must do.
pub fn apply(mut recs: Vec<Rec>, m: Mutation, rng: &mut Rng) -> (Vec<u8>, Expect) {
    let evs = events_records(&recs);
    let pick = |rng: &mut Rng| evs[rng.below(evs.len() as u64) as usize];
    let exact = |recs: &[Rec]| Expect::Exact(model(recs));
    let expect = match m {
        Mutation::None => exact(&recs),
        Mutation::Reorder => {
            for i in (2..recs.len()).rev() {
                let j = 1 + rng.below(i as u64) as usize;
                recs.swap(i, j);
            }
            // Stacks must still come before the events that use them.
            let s = first_of(&recs, RecordKind::Stacks);
            let st = recs.remove(s);
            recs.insert(1, st);
            exact(&recs)
        }
        Mutation::RecordTwice => {
            let i = pick(rng);
            let copy = recs[i].clone();
            recs.insert(i + 1 + rng.below((recs.len() - i) as u64) as usize, copy);
            Expect::Damage
        }
        Mutation::Overlap => {
            let i = pick(rng);
            let mut copy = recs[i].clone();
            copy.header.tid += 7;
            copy.events.truncate(1 + copy.events.len() / 2);
            copy.reencode();
            recs.push(copy);
            Expect::Damage
        }
        Mutation::Concatenate => {
            let once = encode(&recs);
            return ([once.clone(), once].concat(), Expect::Damage);
        }
        Mutation::StackId(id) => {
            let i = evs
                .iter()
                .copied()
                .find(|&i| recs[i].events.iter().any(|e| e.kind == EventKind::Alloc))
                .expect("an allocation");
            let mut done = false;
            change_allocs(&mut recs, i, |e| {
                if !done {
                    e.stack = id;
                    done = true;
                }
            });
            Expect::Damage
        }
        Mutation::DefineStack(id) => {
            let at = first_of(&recs, RecordKind::Stacks) + 1;
            recs.insert(at, stacks_record(&[id], 3));
            Expect::Damage
        }
        Mutation::SparseIds => {
            let ids = [100u32, 1 << 26, u32::MAX - 1, u32::MAX];
            let at = first_of(&recs, RecordKind::Stacks) + 1;
            recs.insert(at, stacks_record(&ids, 2));
            for i in events_records(&recs) {
                change_allocs(&mut recs, i, |e| {
                    e.stack = ids[(e.addr as usize / 0x40) % ids.len()];
                });
            }
            exact(&recs)
        }
        Mutation::HugeSizes => {
            let i = pick(rng);
            change_allocs(&mut recs, i, |e| e.size = u64::MAX / 2 + 1);
            if model_allocs(&recs[i]) < 2 {
                // One huge size alone does not overflow: add another.
                let j = evs
                    .iter()
                    .copied()
                    .find(|&j| j != i && model_allocs(&recs[j]) > 0);
                if let Some(j) = j {
                    change_allocs(&mut recs, j, |e| e.size = u64::MAX / 2 + 1);
                } else {
                    return (encode(&recs), Expect::Survive);
                }
            }
            Expect::Damage
        }
        Mutation::SeqAtMax => {
            let last = recs
                .iter()
                .flat_map(|r| r.events.iter().map(|e| e.seq))
                .max()
                .unwrap_or(0);
            let shift = u64::MAX - last;
            for i in evs {
                for e in recs[i].events.iter_mut() {
                    e.seq += shift;
                }
                recs[i].reencode();
            }
            exact(&recs)
        }
        Mutation::CountLie => {
            recs[pick(rng)].header.count = u32::MAX;
            Expect::Damage
        }
        Mutation::PayloadLenLie(longer) => {
            let i = 1 + rng.below(recs.len() as u64 - 1) as usize;
            recs[i].lie_payload_len = Some(if longer { 1 << 25 } else { 3 });
            Expect::Damage
        }
        Mutation::BigMaps(lines, times) => {
            for k in 0..times {
                let text: String = (0..lines as u64)
                    .map(|l| {
                        let lo = 0x1000_0000 + (l * 3 + k as u64) * 0x2000;
                        format!(
                            "{lo:x}-{:x} r--p 00000000 00:00 0 /nonexistent/lib{l}.so\n",
                            lo + 0x3000
                        )
                    })
                    .collect();
                let mut r = Rec::new(RecordKind::Maps, text.into_bytes());
                r.header.first_seq = k as u64 * 10;
                r.header.last_seq = k as u64 * 10;
                recs.insert(2, r);
            }
            exact(&recs)
        }
        Mutation::SpecialFileMaps => {
            let text = "555555554000-555555600000 r-xp 00000000 00:00 1 /dev/zero\n\
                        555555600000-555555700000 r-xp 00000000 00:00 1 /proc/self/mem\n\
                        555555700000-555555800000 r-xp 00000000 00:00 1 /\n\
                        555555800000-555555900000 r-xp 00000000 00:00 1 /dev/urandom\n\
                        555555900000-555555a00000 r-xp 00000000 00:00 1 /proc/kcore\n";
            recs[1].raw = text.as_bytes().to_vec();
            exact(&recs)
        }
        Mutation::Trailing(kind) => {
            let i = first_of(&recs, kind);
            recs[i].raw.extend_from_slice(&[0x81, 0x01, 0x7f]);
            match kind {
                // bincode payloads tolerate trailing bytes; maps are text.
                RecordKind::FileInfo | RecordKind::End | RecordKind::Maps => exact(&recs),
                _ => Expect::Damage,
            }
        }
        Mutation::FileInfoLater => {
            recs.swap(0, 1);
            Expect::Damage
        }
        Mutation::EndTwice => {
            let e = recs[first_of(&recs, RecordKind::End)].clone();
            recs.push(e);
            Expect::Damage
        }
        Mutation::EndCountLie => {
            let i = first_of(&recs, RecordKind::End);
            let mut end: EndInfo =
                heapreplay_format::info::from_bytes(&recs[i].raw).expect("valid");
            end.events += 1 + rng.below(1000);
            recs[i].raw = to_bytes(&end).expect("encodable");
            Expect::Damage
        }
        Mutation::BadTag => {
            let i = pick(rng);
            // The tag column starts after the four column lengths.
            let mut pos = 0;
            for _ in 0..4 {
                while recs[i].raw[pos] & 0x80 != 0 {
                    pos += 1;
                }
                pos += 1;
            }
            let k = rng.below(u64::from(recs[i].header.count)) as usize;
            recs[i].raw[pos + k] = 4 + rng.below(250) as u8;
            Expect::Damage
        }
        Mutation::LastSeqLie => {
            let i = pick(rng);
            if recs[i].events.len() < 2 {
                return (encode(&recs), Expect::Survive);
            }
            recs[i].header.last_seq = recs[i].header.first_seq;
            Expect::Damage
        }
        Mutation::UnusedStacks(n) => {
            let ids: Vec<u32> = (1000..1000 + n).collect();
            recs.insert(3, stacks_record(&ids, 128));
            exact(&recs)
        }
        Mutation::HostileClock => {
            let clock = [
                ClockSample {
                    seq: 5,
                    ns: u64::MAX,
                },
                ClockSample { seq: 3, ns: 0 },
                ClockSample {
                    seq: u64::MAX,
                    ns: 1,
                },
            ];
            let mut c = Rec::new(RecordKind::Clock, encode_clock(&clock));
            c.header.count = 3;
            recs.push(c);
            let markers = [
                Marker {
                    seq: u64::MAX,
                    ns: u64::MAX,
                    tid: u32::MAX,
                    source: MarkerSource::Named("x".repeat(63)),
                },
                Marker {
                    seq: 0,
                    ns: 0,
                    tid: 0,
                    source: MarkerSource::Signal(i32::MAX),
                },
            ];
            let mut m = Rec::new(RecordKind::Markers, encode_markers(&markers));
            m.header.count = 2;
            recs.push(m);
            Expect::Survive
        }
        Mutation::HostileMappings => {
            use heapreplay_format::mappings::encode_mappings;
            use heapreplay_format::{Mapping, MappingOp};
            let call = Mapping::new;
            let calls = [
                call(1, MappingOp::Map, u64::MAX - 4095, u64::MAX, 1),
                call(2, MappingOp::Map, 0, u64::MAX, 999_999),
                call(3, MappingOp::Grow, 4096, 1 << 40, 2),
                Mapping {
                    old_addr: u64::MAX,
                    old_len: u64::MAX,
                    ..call(4, MappingOp::Remap, 1 << 20, 8192, 3)
                },
                call(5, MappingOp::Unmap, 8192, 4096, 0),
                call(u64::MAX - 1, MappingOp::Shrink, 0, u64::MAX, 0),
            ];
            let mut m = Rec::new(RecordKind::Mappings, encode_mappings(1, &calls));
            (m.header.first_seq, m.header.last_seq) = (1, u64::MAX - 1);
            m.header.count = calls.len() as u32;
            recs.push(m);
            let mut lying = Rec::new(RecordKind::Mappings, encode_mappings(7, &calls[..2]));
            (lying.header.first_seq, lying.header.last_seq) = (7, 9);
            lying.header.count = u32::MAX;
            recs.push(lying);
            Expect::Survive
        }
        Mutation::EveryChecksum => {
            let mut bytes = encode(&recs);
            let pattern = &RecordHeader::decode(&bytes).expect("valid").encode()[..12];
            let starts: Vec<usize> = (0..bytes.len().saturating_sub(12))
                .filter(|&i| &bytes[i..i + 12] == pattern)
                .collect();
            for i in starts {
                bytes[i + 48] ^= 0xff;
            }
            return (bytes, Expect::Damage);
        }
        Mutation::Truncate => {
            let mut bytes = encode(&recs);
            let cut = 1 + rng.below(bytes.len() as u64 - 1) as usize;
            bytes.truncate(cut);
            return (bytes, Expect::Survive);
        }
        Mutation::Compacted => {
            recs = compacted(recs, rng, false);
            exact(&recs)
        }
        Mutation::CompactedFlip => {
            return apply(compacted(recs, rng, false), Mutation::Flip, rng);
        }
        Mutation::CompactedLies => {
            return (encode(&compacted(recs, rng, true)), Expect::Survive);
        }
        Mutation::Flip => {
            let mut bytes = encode(&recs);
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(bytes.len() as u64) as usize;
                bytes[i] ^= 1 << rng.below(8);
            }
            return (bytes, Expect::Survive);
        }
    };
    (encode(&recs), expect)
}

/// `recs` with their events records replaced by Compacted records of a
/// few hundred events each (where the first events record was) and a
/// Threads record, as `heapreplay compact` writes them; with `lie`, each
/// resolved free names a block 2^40 bytes larger than the one it frees.
fn compacted(recs: Vec<Rec>, rng: &mut Rng, lie: bool) -> Vec<Rec> {
    let at = first_of(&recs, RecordKind::Events);
    let mut threads = std::collections::BTreeMap::new();
    let mut events = Vec::new();
    let mut rest = Vec::new();
    for r in recs {
        if r.header.kind == RecordKind::Events {
            *threads.entry(r.header.tid).or_insert(0u64) += r.events.len() as u64;
            events.extend(r.events);
        } else {
            rest.push(r);
        }
    }
    events.sort_by_key(|e| e.seq);
    // Resolved as a replay resolves them: a free names the live block it
    // frees; an allocation at an address still live retires its block.
    let mut live = std::collections::HashMap::new();
    let blocks: Vec<Option<(u64, u32)>> = events
        .iter()
        .map(|e| match e.kind {
            EventKind::Alloc => live.insert(e.addr, (e.size, e.stack)),
            _ => live
                .remove(&e.addr)
                .map(|(size, stack)| (if lie { size + (1 << 40) } else { size }, stack)),
        })
        .collect();
    let mut records = Vec::new();
    let mut start = 0;
    while start < events.len() {
        let end = (start + 1 + rng.below(300) as usize).min(events.len());
        let chunk = events[start..end].to_vec();
        let raw = encode_compacted(&chunk, |i| blocks[start + i]);
        let mut r = Rec::new(RecordKind::Compacted, raw);
        r.header.first_seq = chunk[0].seq;
        r.header.last_seq = chunk[chunk.len() - 1].seq;
        r.header.count = chunk.len() as u32;
        r.events = chunk;
        records.push(r);
        start = end;
    }
    let mut t = Rec::new(RecordKind::Threads, encode_threads(&threads));
    t.header.count = threads.len() as u32;
    records.push(t);
    rest.splice(at..at, records);
    rest
}

fn model_allocs(r: &Rec) -> usize {
    r.events
        .iter()
        .filter(|e| e.kind == EventKind::Alloc)
        .count()
}

/// The case made by `name`'s mutation on the base trace of `seed`.
pub fn named_case(name: &str, seed: u64) -> Option<Case> {
    let (_, m) = MUTATIONS.iter().find(|(n, _)| *n == name)?;
    let mut rng = Rng::new(seed);
    let recs = base(&mut rng);
    let (bytes, expect) = apply(recs, *m, &mut rng);
    Some(Case {
        name: name.to_string(),
        bytes,
        expect,
    })
}

/// A random case: one or two mutations (the second on the bytes of the first
/// only when both are structural), on a random base trace.
pub fn random_case(rng: &mut Rng) -> Case {
    let (name, m) = MUTATIONS[rng.below(MUTATIONS.len() as u64) as usize];
    let recs = base(rng);
    let (mut bytes, mut expect) = apply(recs, m, rng);
    let mut name = name.to_string();
    if rng.below(4) == 0 {
        // A second, byte-level blow on top.
        for _ in 0..1 + rng.below(3) {
            let i = rng.below(bytes.len() as u64) as usize;
            bytes[i] ^= 1 << rng.below(8);
        }
        expect = Expect::Survive;
        name.push_str("+flipped");
    }
    Case {
        name,
        bytes,
        expect,
    }
}
