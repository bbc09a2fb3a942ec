//! Small structured payloads: file metadata, end-of-trace summary, clock samples.

use crate::varint::{push, Reader, VarintError};
use serde::{Deserialize, Serialize};

/// Metadata about the recorded process, the payload of the first record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FileInfo {
    /// Process id of the recorded process.
    pub pid: u32,
    /// Parent process id (the parent's trace, after a fork).
    pub ppid: u32,
    /// Wall-clock start, nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    /// Monotonic clock at start, nanoseconds; clock samples are relative to it.
    pub start_mono_ns: u64,
    /// Path of the executable (`/proc/self/exe`).
    pub exe: String,
    /// Command line, arguments separated by spaces.
    pub cmdline: String,
    /// Version of the recorder that wrote the trace.
    pub recorder_version: String,
}

/// Summary written when recording ends cleanly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EndInfo {
    /// One past the last sequence number handed out.
    pub next_seq: u64,
    /// Events recorded (allocations plus frees).
    pub events: u64,
    /// Monotonic time at the end, nanoseconds since `start_mono_ns`.
    pub end_ns: u64,
    /// Markers lost because too many arrived at once.
    pub markers_dropped: u64,
}

/// An End record's payload: `end`, then the byte 1 if the recording ended
/// with a detach (the process went on running) rather than its exit.
pub fn encode_end(end: &EndInfo, detached: bool) -> std::io::Result<Vec<u8>> {
    let mut out = to_bytes(end)?;
    if detached {
        out.push(1);
    }
    Ok(out)
}

/// True if an End record's payload (whose `end` is decoded from it) says
/// the recording ended with a detach.
pub fn end_detached(payload: &[u8], end: &EndInfo) -> bool {
    bincode::serialized_size(end)
        .ok()
        .and_then(|len| payload.get(usize::try_from(len).ok()?))
        == Some(&1)
}

/// How far a trace still being written is complete, written at the end of
/// every periodic flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProgressInfo {
    /// Every event and marker with a smaller seq is in a record earlier in
    /// the file (with the stacks its events use).
    pub complete_below: u64,
    /// When that was true: monotonic ns since `start_mono_ns`.
    pub ns: u64,
}

/// The resident set size a Progress record carries after its
/// [`ProgressInfo`] (8 more bytes, little-endian), if its recorder sampled it.
pub fn progress_resident(payload: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = payload.get(16..24)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Encodes a bincode payload.
pub fn to_bytes<T: Serialize>(value: &T) -> std::io::Result<Vec<u8>> {
    bincode::serialize(value)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

/// Decodes a bincode payload.
pub fn from_bytes<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    bincode::deserialize(bytes).ok()
}

/// One clock sample: the sequence number handed out next at monotonic time
/// `ns` (nanoseconds since the start of recording).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSample {
    /// Next sequence number at the time of the sample.
    pub seq: u64,
    /// Nanoseconds since the start of recording.
    pub ns: u64,
}

/// Encodes clock samples (ascending) as delta pairs.
pub fn encode_clock(samples: &[ClockSample]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * 4);
    let (mut seq, mut ns) = (0u64, 0u64);
    for s in samples {
        push(&mut out, s.seq.wrapping_sub(seq));
        push(&mut out, s.ns.wrapping_sub(ns));
        seq = s.seq;
        ns = s.ns;
    }
    out
}

/// Decodes `count` clock samples.
pub fn decode_clock(payload: &[u8], count: u32) -> Result<Vec<ClockSample>, VarintError> {
    let mut r = Reader::new(payload);
    let mut out = Vec::with_capacity(count.min(1 << 20) as usize);
    let (mut seq, mut ns) = (0u64, 0u64);
    for _ in 0..count {
        seq = seq.wrapping_add(r.u64()?);
        ns = ns.wrapping_add(r.u64()?);
        out.push(ClockSample { seq, ns });
    }
    if !r.is_empty() {
        return Err(VarintError {
            offset: r.position(),
        });
    }
    Ok(out)
}

/// Encodes a Threads payload: per thread, its id and its events.
pub fn encode_threads(threads: &std::collections::BTreeMap<u32, u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(threads.len() * 6);
    for (&tid, &events) in threads {
        push(&mut out, u64::from(tid));
        push(&mut out, events);
    }
    out
}

/// Decodes a Threads payload of `count` threads.
pub fn decode_threads(payload: &[u8], count: u32) -> Result<Vec<(u32, u64)>, VarintError> {
    let mut r = Reader::new(payload);
    let mut out = Vec::with_capacity(count.min(1 << 16) as usize);
    for _ in 0..count {
        out.push((r.u32()?, r.u64()?));
    }
    if !r.is_empty() {
        return Err(VarintError {
            offset: r.position(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_round_trip_and_trailing_bytes_are_refused() {
        let threads: std::collections::BTreeMap<u32, u64> =
            [(7, 3), (u32::MAX, u64::MAX)].into_iter().collect();
        let bytes = encode_threads(&threads);
        let back = decode_threads(&bytes, 2).unwrap();
        assert_eq!(back, vec![(7, 3), (u32::MAX, u64::MAX)]);
        assert!(decode_threads(&bytes, 1).is_err());
        assert!(decode_threads(&bytes, 3).is_err());
    }

    #[test]
    fn clock_round_trips() {
        let s = vec![
            ClockSample { seq: 0, ns: 0 },
            ClockSample {
                seq: 10,
                ns: 1_000_000,
            },
            ClockSample {
                seq: 10,
                ns: 2_000_000,
            },
        ];
        assert_eq!(decode_clock(&encode_clock(&s), 3).unwrap(), s);
    }

    #[test]
    fn file_info_round_trips() {
        let info = FileInfo {
            pid: 5,
            exe: "/bin/true".into(),
            ..Default::default()
        };
        assert_eq!(
            from_bytes::<FileInfo>(&to_bytes(&info).unwrap()).unwrap(),
            info
        );
    }
}
