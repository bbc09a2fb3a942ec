//! Mappings records: the memory-mapping calls a program made (`mmap`,
//! `mmap64`, `munmap`, `mremap`, `sbrk`, `brk`), recorded with
//! `HEAP_PROFILE_MMAP` apart from the heap's events.

use crate::varint::{push, Reader, VarintError};

/// What a mapping call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MappingOp {
    /// `mmap` or `mmap64` mapped `len` bytes at `addr`, called from `stack`.
    Map = 0,
    /// `munmap` unmapped `len` bytes at `addr`.
    Unmap = 1,
    /// `mremap` moved or resized `old_len` bytes at `old_addr` to `len`
    /// bytes at `addr`, called from `stack`.
    Remap = 2,
    /// `sbrk` or `brk` raised the program break by `len` bytes from `addr`,
    /// called from `stack`.
    Grow = 3,
    /// `sbrk` or `brk` lowered the program break to `addr`, giving back
    /// `len` bytes.
    Shrink = 4,
}

impl MappingOp {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Map,
            1 => Self::Unmap,
            2 => Self::Remap,
            3 => Self::Grow,
            4 => Self::Shrink,
            _ => return None,
        })
    }

    /// Whether the call adds memory, and so has a stack.
    pub fn adds(self) -> bool {
        matches!(self, Self::Map | Self::Remap | Self::Grow)
    }
}

/// One mapping call that succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// Global sequence number, from the same counter as the heap's events.
    pub seq: u64,
    /// What the call did.
    pub op: MappingOp,
    /// Start of the range added or removed.
    pub addr: u64,
    /// Bytes added or removed.
    pub len: u64,
    /// For [`MappingOp::Remap`], the range it replaced (else 0).
    pub old_addr: u64,
    /// For [`MappingOp::Remap`], the length it replaced (else 0).
    pub old_len: u64,
    /// Interned stack id of the caller (calls that add memory; else 0).
    pub stack: u32,
}

impl Mapping {
    /// A call that is not a remap (`old_addr` and `old_len` 0).
    pub fn new(seq: u64, op: MappingOp, addr: u64, len: u64, stack: u32) -> Self {
        Self {
            seq,
            op,
            addr,
            len,
            old_addr: 0,
            old_len: 0,
            stack,
        }
    }
}

/// Encodes mappings in ascending seq order: per mapping the seq's delta
/// from the previous one (the first from the record's `first_seq`), the op
/// byte, `addr` and `len`, then `old_addr` and `old_len` for a remap, then
/// the stack id for the ops that add memory; all varints.
pub fn encode_mappings(first_seq: u64, mappings: &[Mapping]) -> Vec<u8> {
    let mut out = Vec::with_capacity(mappings.len() * 12);
    let mut prev = first_seq;
    for m in mappings {
        push(&mut out, m.seq.wrapping_sub(prev));
        prev = m.seq;
        out.push(m.op as u8);
        push(&mut out, m.addr);
        push(&mut out, m.len);
        if m.op == MappingOp::Remap {
            push(&mut out, m.old_addr);
            push(&mut out, m.old_len);
        }
        if m.op.adds() {
            push(&mut out, u64::from(m.stack));
        }
    }
    out
}

/// Decodes the `count` mappings of a record whose header says
/// `first_seq..=last_seq`. Seqs must rise strictly and stay in that range.
pub fn decode_mappings(
    payload: &[u8],
    first_seq: u64,
    last_seq: u64,
    count: u32,
) -> Result<Vec<Mapping>, VarintError> {
    // Every mapping takes at least four bytes: a larger count is damage.
    if count as usize > payload.len() / 4 {
        return Err(VarintError {
            offset: payload.len(),
        });
    }
    let mut r = Reader::new(payload);
    let mut out = Vec::with_capacity(count as usize);
    let mut seq = first_seq;
    for i in 0..count {
        let at = r.position();
        let delta = r.u64()?;
        seq = match seq.checked_add(delta) {
            Some(s) if (delta > 0 || i == 0) && s <= last_seq => s,
            _ => return Err(VarintError { offset: at }),
        };
        let at = r.position();
        let op = MappingOp::from_u8(r.byte()?).ok_or(VarintError { offset: at })?;
        let addr = r.u64()?;
        let len = r.u64()?;
        let (old_addr, old_len) = if op == MappingOp::Remap {
            (r.u64()?, r.u64()?)
        } else {
            (0, 0)
        };
        let stack = if op.adds() { r.u32()? } else { 0 };
        out.push(Mapping {
            seq,
            op,
            addr,
            len,
            old_addr,
            old_len,
            stack,
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

    fn m(seq: u64, op: MappingOp, addr: u64, len: u64, stack: u32) -> Mapping {
        Mapping::new(seq, op, addr, len, stack)
    }

    #[test]
    fn layout_is_as_specified() {
        let maps = [
            m(10, MappingOp::Map, 0x1000, 0x2000, 3),
            Mapping {
                old_addr: 0x1000,
                old_len: 0x2000,
                ..m(12, MappingOp::Remap, 0x8000, 0x3000, 4)
            },
            m(13, MappingOp::Unmap, 0x8000, 0x3000, 0),
        ];
        let bytes = encode_mappings(10, &maps);
        assert_eq!(
            bytes,
            [
                0, 0, 0x80, 0x20, 0x80, 0x40, 3, // seq +0, Map, 0x1000, 0x2000, stack 3
                2, 2, 0x80, 0x80, 2, 0x80, 0x60, 0x80, 0x20, 0x80, 0x40, 4, // Remap
                1, 1, 0x80, 0x80, 2, 0x80, 0x60, // Unmap
            ]
        );
        assert_eq!(decode_mappings(&bytes, 10, 13, 3).unwrap(), maps);
    }

    #[test]
    fn damage_is_refused() {
        let bytes = encode_mappings(10, &[m(12, MappingOp::Map, 0, 4096, 1)]);
        assert!(decode_mappings(&bytes, 10, 12, 1).is_ok());
        // Past the header's last seq, a repeated seq, an unknown op, a count too large.
        assert!(decode_mappings(&bytes, 10, 11, 1).is_err());
        let twice = encode_mappings(
            10,
            &[
                m(10, MappingOp::Unmap, 0, 1, 0),
                m(10, MappingOp::Unmap, 0, 1, 0),
            ],
        );
        assert!(decode_mappings(&twice, 10, 10, 2).is_err());
        assert!(decode_mappings(&[0, 9, 0, 0, 0], 0, 0, 1).is_err());
        assert!(decode_mappings(&bytes, 10, 10, 100).is_err());
        assert!(decode_mappings(&bytes, 10, 10, 0).is_err());
    }
}
