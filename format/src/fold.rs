//! Folds: the payload of a Folded record (the heap's state at a seq, and
//! the part of the file it replaces) and the gaps a fold leaves behind.
//!
//! A fold is written as one group at the end of the file: the Folded
//! record, then `count` member records (copies of what the replaced part
//! still needs: stacks, maps, clock, markers, and the events records that
//! also hold events at or after the fold's seq). See FORMAT.md, "11
//! Folded" and "Folds and gaps".

use crate::header::GAP_MAGIC;
use crate::varint::{self, Reader};

/// The fixed part of a Folded record's payload. The heap's state follows
/// it: the live blocks and the per-stack counters, laid out as an index
/// checkpoint's state before compression (FORMAT.md, "The index").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoldInfo {
    /// The first byte of the file this fold replaces.
    pub replaces_from: u64,
    /// One past the last byte it replaces (a record boundary).
    pub replaces_to: u64,
    /// Bytes of the member records right after the Folded record.
    pub members_len: u64,
    /// Events in the state (every event below the fold's seq).
    pub events: u64,
    /// The sum of every allocation's size in the state.
    pub alloc_bytes: u64,
    /// The peak of in-use bytes before the fold's seq: the seq of the
    /// event after which, and the bytes (`(0, 0)` if nothing was live).
    pub peak: (u64, u64),
    /// Nanoseconds after the start of recording at that peak (the clock
    /// samples that placed it are not kept).
    pub peak_ns: u64,
    /// Nanoseconds after the start of recording at the fold's seq.
    pub ns: u64,
}

impl FoldInfo {
    /// The payload: this, then `state`.
    pub fn encode(&self, state: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + state.len());
        for v in [
            self.replaces_from,
            self.replaces_to,
            self.members_len,
            self.events,
            self.alloc_bytes,
            self.peak.0,
            self.peak.1,
            self.peak_ns,
            self.ns,
        ] {
            varint::push(&mut out, v);
        }
        out.extend_from_slice(state);
        out
    }

    /// The fixed part of a payload and the state after it; `None` if it is
    /// not a Folded payload.
    pub fn decode(raw: &[u8]) -> Option<(Self, &[u8])> {
        let mut r = Reader::new(raw);
        let info = Self {
            replaces_from: r.u64().ok()?,
            replaces_to: r.u64().ok()?,
            members_len: r.u64().ok()?,
            events: r.u64().ok()?,
            alloc_bytes: r.u64().ok()?,
            peak: (r.u64().ok()?, r.u64().ok()?),
            peak_ns: r.u64().ok()?,
            ns: r.u64().ok()?,
        };
        (info.replaces_from <= info.replaces_to).then_some(())?;
        let at = r.position();
        Some((info, &raw[at..]))
    }
}

/// The most bytes one gap covers, its 8-byte prefix included.
pub const MAX_GAP_LEN: u64 = 8 + u32::MAX as u64;

/// The 8-byte prefix of a gap covering `len` bytes from where it starts
/// (8 to [`MAX_GAP_LEN`]).
pub fn gap_prefix(len: u64) -> [u8; 8] {
    debug_assert!((8..=MAX_GAP_LEN).contains(&len));
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&GAP_MAGIC.to_le_bytes());
    out[4..].copy_from_slice(&((len - 8) as u32).to_le_bytes());
    out
}

/// The length of the gap at the start of `bytes` (its prefix included),
/// if one starts there.
pub fn gap_at(bytes: &[u8]) -> Option<u64> {
    let magic = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
    let len = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    (magic == GAP_MAGIC).then_some(8 + u64::from(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fold_payload_comes_back_and_a_gap_is_a_skippable_frame() {
        let info = FoldInfo {
            replaces_from: 300,
            replaces_to: 1 << 33,
            members_len: 4096,
            events: 12_345_678,
            alloc_bytes: 1 << 40,
            peak: (99, 1 << 20),
            peak_ns: 6_000_000_000,
            ns: 7_000_000_000,
        };
        let raw = info.encode(b"state");
        assert_eq!(FoldInfo::decode(&raw), Some((info, &b"state"[..])));
        assert_eq!(FoldInfo::decode(&raw[..3]), None);
        // zstd skips a gap (its content is never read) as it skips headers.
        let mut file = gap_prefix(8 + 5).to_vec();
        file.extend_from_slice(b"\0\0\0\0\0");
        assert_eq!(gap_at(&file), Some(13));
        assert_eq!(zstd::stream::decode_all(&file[..]).unwrap(), b"");
    }
}
