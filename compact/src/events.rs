//! Cutting a trace's events, in sequence order, into Compacted records and
//! compressing them on a thread of their own while the pass goes on.

use heapreplay_format::events::encode_columns;
use heapreplay_format::reader::{blank_header, encode_record, record_compressor};
use heapreplay_format::{Event, RecordKind};
use std::io::Write;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

/// Events per Compacted record: large enough for the compressor to find a
/// long run's repetition, small enough that one damaged record loses a
/// bounded part of the trace and a replay holds only a few in memory.
pub const EVENTS_PER_RECORD: usize = 1 << 18;

/// Events per record (experiment).
pub fn events_per_record() -> usize {
    std::env::var("HEAPREPLAY_COMPACT_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(EVENTS_PER_RECORD)
}

/// The zstd level of Compacted records.
pub const LEVEL: i32 = 9;

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
    /// record; it ends when the sender is dropped.
    pub fn start<'scope, W: Write + Send>(
        scope: &'scope Scope<'scope, '_>,
        out: &'scope mut W,
    ) -> (
        SyncSender<Vec<Event>>,
        ScopedJoinHandle<'scope, std::io::Result<Written>>,
    ) {
        let (tx, rx) = sync_channel::<Vec<Event>>(1);
        let handle = scope.spawn(move || {
            let mut compressor = compressor()?;
            let mut written = Written::default();
            for chunk in rx {
                out.write_all(&record(&mut compressor, &chunk)?)?;
                written.records += 1;
                written.events += chunk.len() as u64;
            }
            Ok(written)
        });
        (tx, handle)
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

/// One Compacted record of `events` (non-empty, in sequence order).
pub fn record(
    compressor: &mut zstd::bulk::Compressor<'_>,
    events: &[Event],
) -> std::io::Result<Vec<u8>> {
    let mut header = blank_header(RecordKind::Compacted);
    header.first_seq = events.first().map_or(0, |e| e.seq);
    header.last_seq = events.last().map_or(0, |e| e.seq);
    header.count = events.len() as u32;
    let raw = encode_columns(events);
    encode_record(compressor, header, &raw)
}
