//! Synthetic traces of any size, for replay benchmarks: a realistic mix of
//! threads, stacks (a few hot, many cold), block sizes and lifetimes
//! (most blocks die young, some live long, a few never die), with addresses
//! handed out by a small size-class allocator that reuses freed blocks last
//! in, first out, as real allocators do.

use crate::events::{encode_rows, rows_to_columns};
use crate::info::{encode_clock, to_bytes};
use crate::reader::{blank_header, encode_record, record_compressor};
use crate::stacks::encode_stack;
use crate::{ClockSample, EndInfo, Event, EventKind, FileInfo, RecordKind};
use std::collections::HashMap;
use std::io::{self, Write};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Events in all (allocations plus frees), at least.
    pub events: u64,
    /// Threads, each with its own records.
    pub threads: u32,
    /// Distinct stacks.
    pub stacks: u32,
    /// Blocks alive at once, at most (the live set), per thread.
    pub live_per_thread: usize,
    /// Seed of the pseudo-random sequence.
    pub seed: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            events: 1_000_000,
            threads: 4,
            stacks: 2000,
            live_per_thread: 20_000,
            seed: 1,
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One simulated thread: its live blocks and its allocator's free lists.
struct SimThread {
    tid: u32,
    live: Vec<(u64, u64)>,
    free_lists: HashMap<u64, Vec<u64>>,
    next_addr: u64,
    pending: Vec<Event>,
}

impl SimThread {
    fn alloc_addr(&mut self, size: u64) -> u64 {
        let class = size.div_ceil(16) * 16;
        if let Some(a) = self.free_lists.get_mut(&class).and_then(Vec::pop) {
            return a;
        }
        let a = self.next_addr;
        self.next_addr += class + 16;
        a
    }
}

/// Writes a synthetic trace to `out`; returns the number of events.
pub fn generate(spec: &Spec, out: &mut impl Write) -> io::Result<u64> {
    let mut rng = Rng(spec.seed.max(1) * 0x9e37_79b9_7f4a_7c15);
    let mut c = record_compressor(1)?;
    let info = FileInfo {
        pid: 4242,
        ppid: 1,
        start_unix_ns: 1_800_000_000_000_000_000,
        start_mono_ns: 0,
        exe: "/usr/bin/synthetic".into(),
        cmdline: format!("synthetic --events {}", spec.events),
        recorder_version: "synthetic".into(),
    };
    out.write_all(&encode_record(
        &mut c,
        blank_header(RecordKind::FileInfo),
        &to_bytes(&info)?,
    )?)?;
    let maps = "555555554000-555555600000 r-xp 00000000 00:00 1 /usr/bin/synthetic\n";
    out.write_all(&encode_record(
        &mut c,
        blank_header(RecordKind::Maps),
        maps.as_bytes(),
    )?)?;
    // Stacks: 2-40 frames inside the synthetic binary's text.
    let mut payload = Vec::new();
    for id in 1..=spec.stacks {
        let depth = 2 + rng.below(38) as usize;
        let frames: Vec<u64> = (0..depth)
            .map(|_| 0x5555_5555_4000 + rng.below(0xac000))
            .collect();
        encode_stack(&mut payload, id, &frames);
    }
    let mut h = blank_header(RecordKind::Stacks);
    h.count = spec.stacks;
    out.write_all(&encode_record(&mut c, h, &payload)?)?;

    let mut threads: Vec<SimThread> = (0..spec.threads.max(1))
        .map(|t| SimThread {
            tid: 1000 + t,
            live: Vec::new(),
            free_lists: HashMap::new(),
            next_addr: 0x7f00_0000_0000 + u64::from(t) * 0x10_0000_0000,
            pending: Vec::new(),
        })
        .collect();
    let per_record = 4000;
    let mut seq = 0u64;
    let mut clock = vec![ClockSample { seq: 0, ns: 0 }];
    let mut written = 0u64;
    while seq < spec.events {
        let t = &mut threads[rng.below(u64::from(spec.threads.max(1))) as usize];
        // Runs of events per thread, as a thread does a stretch of work.
        for _ in 0..1 + rng.below(64) {
            let free =
                !t.live.is_empty() && (t.live.len() >= spec.live_per_thread || rng.below(100) < 48);
            if free {
                // Most frees take a young block, some an old one.
                let n = t.live.len() as u64;
                let i = if rng.below(10) < 8 {
                    n - 1 - rng.below(n.min(16))
                } else {
                    rng.below(n)
                } as usize;
                let (addr, size) = t.live.swap_remove(i);
                t.free_lists
                    .entry(size.div_ceil(16) * 16)
                    .or_default()
                    .push(addr);
                t.pending.push(Event {
                    seq,
                    addr,
                    size: 0,
                    stack: 0,
                    kind: EventKind::Free,
                });
            } else {
                // Hot stacks: a quarter of the stacks take most allocations.
                let stack = 1 + if rng.below(10) < 8 {
                    rng.below(u64::from(spec.stacks) / 4 + 1)
                } else {
                    rng.below(u64::from(spec.stacks))
                } as u32;
                let size = 8 << rng.below(8) | rng.below(64);
                let addr = t.alloc_addr(size);
                t.live.push((addr, size));
                t.pending.push(Event {
                    seq,
                    addr,
                    size,
                    stack: stack.min(spec.stacks),
                    kind: EventKind::Alloc,
                });
            }
            seq += 1;
            if seq.is_multiple_of(100_000) {
                clock.push(ClockSample { seq, ns: seq * 50 });
            }
            if t.pending.len() >= per_record {
                written += flush_thread(t, &mut c, out)?;
            }
        }
    }
    for t in &mut threads {
        written += flush_thread(t, &mut c, out)?;
    }
    let mut h = blank_header(RecordKind::Clock);
    h.count = clock.len() as u32;
    out.write_all(&encode_record(&mut c, h, &encode_clock(&clock))?)?;
    let end = EndInfo {
        next_seq: seq,
        events: written,
        end_ns: seq * 50,
        markers_dropped: 0,
    };
    out.write_all(&encode_record(
        &mut c,
        blank_header(RecordKind::End),
        &to_bytes(&end)?,
    )?)?;
    Ok(written)
}

fn flush_thread(
    t: &mut SimThread,
    c: &mut zstd::bulk::Compressor<'static>,
    out: &mut impl Write,
) -> io::Result<u64> {
    if t.pending.is_empty() {
        return Ok(0);
    }
    let events = std::mem::take(&mut t.pending);
    let (first, last) = (events[0].seq, events[events.len() - 1].seq);
    let columns = rows_to_columns(&encode_rows(&events), first, last, events.len() as u32)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}")))?;
    let mut h = blank_header(RecordKind::Events);
    h.first_seq = first;
    h.last_seq = last;
    h.tid = t.tid;
    h.count = events.len() as u32;
    out.write_all(&encode_record(c, h, &columns)?)?;
    Ok(events.len() as u64)
}
