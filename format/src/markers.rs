//! Marker records: moments the program or the user pointed at (a signal
//! arriving, a call to `heapreplay_marker`).

use crate::varint::{push, Reader, VarintError};

/// What placed a marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkerSource {
    /// A marker signal arrived (its number).
    Signal(i32),
    /// The program called `heapreplay_marker(name)`.
    Named(String),
    /// The program called gperftools' `HeapProfilerStart(prefix)` (the
    /// prefix cut at [`MAX_NAME_LEN`] bytes). Version 7 on.
    ProfilerStart(String),
    /// The program called gperftools' `HeapProfilerStop()`. Version 7 on.
    ProfilerStop,
}

/// One marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// Sequence number: the marker lies after every event with a smaller one.
    pub seq: u64,
    /// Nanoseconds since the start of recording.
    pub ns: u64,
    /// Thread that received the signal or made the call.
    pub tid: u32,
    /// What placed it.
    pub source: MarkerSource,
}

/// Longest marker name kept, in bytes; longer names are cut.
pub const MAX_NAME_LEN: usize = 63;

/// Encodes markers: per marker seq, ns, tid, a tag (0 signal, 1 named,
/// 2 profiler start, 3 profiler stop), then the signal number, or the
/// name's (the prefix's) length and bytes, or nothing.
pub fn encode_markers(markers: &[Marker]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in markers {
        push(&mut out, m.seq);
        push(&mut out, m.ns);
        push(&mut out, u64::from(m.tid));
        match &m.source {
            MarkerSource::Signal(n) => {
                out.push(0);
                push(&mut out, *n as u64);
            }
            MarkerSource::Named(name) => {
                out.push(1);
                push(&mut out, name.len() as u64);
                out.extend_from_slice(name.as_bytes());
            }
            MarkerSource::ProfilerStart(prefix) => {
                out.push(2);
                push(&mut out, prefix.len() as u64);
                out.extend_from_slice(prefix.as_bytes());
            }
            MarkerSource::ProfilerStop => out.push(3),
        }
    }
    out
}

/// Decodes `count` markers.
pub fn decode_markers(payload: &[u8], count: u32) -> Result<Vec<Marker>, VarintError> {
    let mut r = Reader::new(payload);
    let mut out = Vec::with_capacity(count.min(4096) as usize);
    for _ in 0..count {
        let seq = r.u64()?;
        let ns = r.u64()?;
        let tid = r.u32()?;
        let at = r.position();
        let tag = r.byte()?;
        let text = |r: &mut Reader<'_>| -> Result<String, VarintError> {
            let len = r.u64()? as usize;
            if len > MAX_NAME_LEN {
                return Err(VarintError { offset: at });
            }
            Ok(String::from_utf8_lossy(r.bytes(len)?).into_owned())
        };
        let source = match tag {
            0 => MarkerSource::Signal(r.u32()? as i32),
            1 => MarkerSource::Named(text(&mut r)?),
            2 => MarkerSource::ProfilerStart(text(&mut r)?),
            3 => MarkerSource::ProfilerStop,
            _ => return Err(VarintError { offset: at }),
        };
        out.push(Marker {
            seq,
            ns,
            tid,
            source,
        });
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
    fn markers_round_trip() {
        let m = vec![
            Marker {
                seq: 5,
                ns: 100,
                tid: 7,
                source: MarkerSource::Signal(12),
            },
            Marker {
                seq: 9,
                ns: 200,
                tid: 8,
                source: MarkerSource::Named("phase 2".into()),
            },
            Marker {
                seq: 11,
                ns: 300,
                tid: 8,
                source: MarkerSource::ProfilerStop,
            },
            Marker {
                seq: 12,
                ns: 400,
                tid: 8,
                source: MarkerSource::ProfilerStart("/tmp/app".into()),
            },
        ];
        assert_eq!(decode_markers(&encode_markers(&m), 4).unwrap(), m);
        assert!(decode_markers(&[1, 2, 3, 9], 1).is_err());
    }
}
