//! The records of a compacted trace other than its events: copied from the
//! trace read (headers rewritten to this format version), or written anew
//! (the stacks as the replay numbers them, the threads' event counts).

use heapreplay_engine::Trace;
use heapreplay_format::info::{encode_clock, encode_threads};
use heapreplay_format::mappings::encode_mappings;
use heapreplay_format::markers::encode_markers;
use heapreplay_format::reader::{blank_header, encode_record, record_compressor};
use heapreplay_format::stacks::encode_stack;
use heapreplay_format::{ClockSample, Marker, RawRecord, RecordKind, FORMAT_VERSION};
use std::collections::BTreeMap;

/// Raw stack-list bytes per Stacks record written.
const STACKS_PER_RECORD: usize = 4 << 20;

/// The records to copy, in file order: those that go before the events
/// (metadata, maps), and those that go after them (progress, end), which
/// promise that what comes before is complete. Of a trace still being
/// written, only what is complete: maps and progress below its limit.
/// Stacks, clock, markers and thread counts are written anew from what the
/// trace read; events are compacted.
pub fn split(trace: &Trace) -> (Vec<RawRecord<'_>>, Vec<RawRecord<'_>>) {
    let limit = trace
        .live
        .and_then(|l| l.complete_below)
        .unwrap_or(u64::MAX);
    let (mut head, mut tail) = (Vec::new(), Vec::new());
    for rec in trace.other_records() {
        match rec.header.kind {
            RecordKind::FileInfo => head.push(rec),
            RecordKind::Maps if rec.header.first_seq < limit => head.push(rec),
            RecordKind::Progress if rec.header.first_seq <= limit => tail.push(rec),
            RecordKind::End => tail.push(rec),
            _ => {}
        }
    }
    (head, tail)
}

/// The Clock record of every sample the trace read, the Markers record
/// of its markers, and the Mappings record of its mapping calls (each if
/// there are any; their stacks as the replay numbers them).
pub fn clock_and_markers(trace: &Trace) -> std::io::Result<Vec<Vec<u8>>> {
    let mut out = clock_and_markers_of(&trace.clock, &trace.markers)?;
    let mut compressor = record_compressor(super::events::LEVEL)?;
    // A million mappings take at most 56 MB raw: under the payload limit.
    for part in trace.mappings.chunks(1 << 20) {
        let mut header = blank_header(RecordKind::Mappings);
        header.first_seq = part[0].seq;
        header.last_seq = part[part.len() - 1].seq;
        header.count = part.len() as u32;
        let payload = encode_mappings(header.first_seq, part);
        out.push(encode_record(&mut compressor, header, &payload)?);
    }
    Ok(out)
}

/// One Clock record of `clock` (in order), and one Markers record of
/// `markers` (each if there are any).
pub fn clock_and_markers_of(
    clock: &[ClockSample],
    markers: &[Marker],
) -> std::io::Result<Vec<Vec<u8>>> {
    let mut compressor = record_compressor(super::events::LEVEL)?;
    let mut list = |kind, seqs: &mut dyn Iterator<Item = u64>, count: usize, payload: Vec<u8>| {
        let mut header = blank_header(kind);
        header.first_seq = seqs.next().unwrap_or(0);
        header.last_seq = seqs.last().unwrap_or(header.first_seq);
        header.count = count as u32;
        encode_record(&mut compressor, header, &payload)
    };
    let mut out = Vec::new();
    if !clock.is_empty() {
        let seqs = &mut clock.iter().map(|c| c.seq);
        out.push(list(
            RecordKind::Clock,
            seqs,
            clock.len(),
            encode_clock(clock),
        )?);
    }
    if !markers.is_empty() {
        let seqs = &mut markers.iter().map(|m| m.seq);
        let payload = encode_markers(markers);
        out.push(list(RecordKind::Markers, seqs, markers.len(), payload)?);
    }
    Ok(out)
}

/// The bytes of `rec` in the compacted trace: its header rewritten to this
/// format version (so that a reader too old for compacted records refuses
/// the whole trace rather than read a part of it), its payload as it is.
pub fn copy(rec: &RawRecord<'_>) -> Vec<u8> {
    let mut header = rec.header;
    header.version = FORMAT_VERSION;
    let mut out = header.encode().to_vec();
    out.extend_from_slice(rec.payload);
    out
}

/// Stacks records of every stack `trace` defines, under the ids its events
/// are replayed with.
pub fn stacks(trace: &Trace) -> std::io::Result<Vec<Vec<u8>>> {
    let mut compressor = record_compressor(super::events::LEVEL)?;
    let mut records = Vec::new();
    let (mut raw, mut count) = (Vec::new(), 0u32);
    let mut flush = |raw: &mut Vec<u8>, count: &mut u32| -> std::io::Result<()> {
        if *count > 0 {
            let mut header = blank_header(RecordKind::Stacks);
            header.count = std::mem::take(count);
            records.push(encode_record(&mut compressor, header, raw)?);
            raw.clear();
        }
        Ok(())
    };
    for id in trace.stacks.ids() {
        encode_stack(&mut raw, id, &trace.stacks.frames(id));
        count += 1;
        if raw.len() >= STACKS_PER_RECORD {
            flush(&mut raw, &mut count)?;
        }
    }
    flush(&mut raw, &mut count)?;
    Ok(records)
}

/// The Threads record of these per-thread event counts.
pub fn threads(threads: &BTreeMap<u32, u64>) -> std::io::Result<Vec<u8>> {
    let mut header = blank_header(RecordKind::Threads);
    header.count = threads.len() as u32;
    encode_record(&mut record_compressor(3)?, header, &encode_threads(threads))
}
