//! Cutting a trace's events, in sequence order, into Compacted records and
//! compressing them on a thread of their own while the pass goes on.

use heapreplay_engine::resolve::UNKNOWN_STACK;
use heapreplay_format::events::{Block, Columns};
use heapreplay_format::reader::{blank_header, encode_record, record_compressor};
use heapreplay_format::{Event, EventKind, RecordKind};
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

/// Events per Compacted record: large enough for the compressor to find a
/// long run's repetition, small enough that one damaged record loses a
/// bounded part of the trace and a replay holds only a few in memory.
pub const EVENTS_PER_RECORD: usize = 1 << 18;

/// The zstd level of Compacted records. Measured on the workloads of
/// `benches/run.sh` against 3 and 6: level 9 made redis-server's trace 11%
/// smaller than 3, sqlite3's 10%, Python's 7%, and its compaction took
/// 1.3x to 1.7x as long. A trace at rest is written once and kept: level 9.
pub const LEVEL: i32 = 9;

/// The events of one Compacted record on their way to it, as the recorder
/// recorded them, each with the block the replay resolved it to.
#[derive(Default)]
pub struct Chunk {
    events: Vec<Event>,
    /// For each event: the live block a free frees, or that an allocation
    /// retires (a block never seen freed at its address).
    blocks: Vec<Option<Block>>,
    /// The block the last event handed on (a retirement) retired.
    retiring: Option<Block>,
}

impl Chunk {
    /// Adds the next resolved event of the pass.
    pub fn push(&mut self, e: &Event) {
        let (recorded, block) = match e.kind {
            EventKind::Retire => {
                self.retiring = Some((e.size, e.stack));
                return;
            }
            EventKind::Alloc => (*e, self.retiring.take()),
            EventKind::Free => (
                Event {
                    size: 0,
                    stack: 0,
                    ..*e
                },
                (e.stack != UNKNOWN_STACK).then_some((e.size, e.stack)),
            ),
        };
        if self.events.capacity() == 0 {
            self.events.reserve_exact(EVENTS_PER_RECORD);
            self.blocks.reserve_exact(EVENTS_PER_RECORD);
        }
        self.events.push(recorded);
        self.blocks.push(block);
    }

    /// True once the chunk holds a record's worth of events.
    pub fn is_full(&self) -> bool {
        self.events.len() >= EVENTS_PER_RECORD
    }

    /// True if it holds no event.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// What the compressing thread wrote.
#[derive(Debug, Default)]
pub struct Written {
    /// Compacted records.
    pub records: u64,
    /// Events in them.
    pub events: u64,
}

/// The compressing thread.
pub struct Writer;

impl Writer {
    /// Starts a thread that writes each chunk of events sent to it (in
    /// sequence order, each following the last) to `out` as a Compacted
    /// record; it ends when the sender is dropped. Chunks written come back
    /// empty on the second channel, to be filled again.
    #[allow(clippy::type_complexity)]
    pub fn start<'scope, W: Write + Send>(
        scope: &'scope Scope<'scope, '_>,
        out: &'scope mut W,
    ) -> (
        SyncSender<Chunk>,
        Receiver<Chunk>,
        ScopedJoinHandle<'scope, std::io::Result<Written>>,
    ) {
        let (tx, rx) = sync_channel::<Chunk>(1);
        let (back, empty) = sync_channel::<Chunk>(2);
        let handle = scope.spawn(move || {
            let mut compressor = compressor()?;
            let mut columns = Columns::default();
            let mut written = Written::default();
            for mut chunk in rx {
                out.write_all(&record(&mut compressor, &mut columns, &chunk)?)?;
                written.records += 1;
                written.events += chunk.events.len() as u64;
                chunk.events.clear();
                chunk.blocks.clear();
                let _ = back.try_send(chunk);
            }
            Ok(written)
        });
        (tx, empty, handle)
    }
}

/// A compressor for Compacted records: content checksums on, and a window
/// as large as a record can be, so that repetition anywhere in it is found.
pub fn compressor() -> std::io::Result<zstd::bulk::Compressor<'static>> {
    use zstd::zstd_safe::CParameter;
    let mut c = record_compressor(LEVEL)?;
    c.set_parameter(CParameter::WindowLog(26))?;
    Ok(c)
}

/// One Compacted record of a chunk's events (non-empty, in sequence order).
pub fn record(
    compressor: &mut zstd::bulk::Compressor<'_>,
    columns: &mut Columns,
    chunk: &Chunk,
) -> std::io::Result<Vec<u8>> {
    let events = &chunk.events;
    let mut header = blank_header(RecordKind::Compacted);
    header.first_seq = events.first().map_or(0, |e| e.seq);
    header.last_seq = events.last().map_or(0, |e| e.seq);
    header.count = events.len() as u32;
    let raw = columns.compacted(events, |i| chunk.blocks[i]);
    encode_record(compressor, header, &raw)
}
