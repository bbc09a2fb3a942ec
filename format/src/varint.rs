//! LEB128 variable-length integers and zigzag signed encoding.

/// The most bytes one encoded `u64` can take.
pub const MAX_VARINT_LEN: usize = 10;

/// Appends `value` as LEB128 to `out` at `pos`, returning the new position.
/// The caller guarantees `out` has `MAX_VARINT_LEN` bytes free at `pos`.
#[inline]
pub fn put(out: &mut [u8], mut pos: usize, mut value: u64) -> usize {
    while value >= 0x80 {
        out[pos] = (value as u8) | 0x80;
        value >>= 7;
        pos += 1;
    }
    out[pos] = value as u8;
    pos + 1
}

/// Appends `value` as LEB128 to a growable vector (a byte at a time: a
/// copy of a few bytes of unknown length would call `memcpy` for each).
#[inline]
pub fn push(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Maps a signed value to an unsigned one so that small magnitudes stay small.
#[inline]
pub fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Inverse of [`zigzag`].
#[inline]
pub fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// A cursor that reads LEB128 values from a byte slice.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// Decoding ran past the end of the data or met an over-long varint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VarintError {
    /// Offset within the decoded payload where decoding failed.
    pub offset: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// True when every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// Current offset into the slice.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Reads one raw byte.
    #[inline]
    pub fn byte(&mut self) -> Result<u8, VarintError> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or(VarintError { offset: self.pos })?;
        self.pos += 1;
        Ok(b)
    }

    /// Reads one LEB128 `u64`.
    #[inline(always)]
    pub fn u64(&mut self) -> Result<u64, VarintError> {
        // Fast path: most values are one or two bytes.
        if let Some(&b0) = self.bytes.get(self.pos) {
            if b0 < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b0));
            }
            if let Some(&b1) = self.bytes.get(self.pos + 1) {
                if b1 < 0x80 {
                    self.pos += 2;
                    return Ok(u64::from(b0 & 0x7f) | (u64::from(b1) << 7));
                }
            }
        }
        self.u64_slow()
    }

    #[inline(never)]
    fn u64_slow(&mut self) -> Result<u64, VarintError> {
        // Up to eight bytes at once, when eight are there: the value's
        // length from where its last byte (high bit clear) is, then its
        // 7-bit groups packed together.
        if let Some(word) = self.bytes.get(self.pos..self.pos + 8) {
            let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            let ends = !word & 0x8080_8080_8080_8080;
            if ends != 0 {
                let len = ends.trailing_zeros() / 8 + 1;
                let mut x = word & (u64::MAX >> (64 - 8 * len)) & 0x7f7f_7f7f_7f7f_7f7f;
                x = ((x & 0x7f00_7f00_7f00_7f00) >> 1) | (x & 0x007f_007f_007f_007f);
                x = ((x & 0x3fff_0000_3fff_0000) >> 2) | (x & 0x0000_3fff_0000_3fff);
                x = ((x & 0x0fff_ffff_0000_0000) >> 4) | (x & 0x0000_0000_0fff_ffff);
                self.pos += len as usize;
                return Ok(x);
            }
        }
        let start = self.pos;
        let mut value = 0u64;
        let mut shift = 0u32;
        loop {
            let b = *self
                .bytes
                .get(self.pos)
                .ok_or(VarintError { offset: start })?;
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(VarintError { offset: start });
            }
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
            if shift > 63 {
                return Err(VarintError { offset: start });
            }
        }
    }

    /// Reads a LEB128 value that must fit in `u32`.
    #[inline(always)]
    pub fn u32(&mut self) -> Result<u32, VarintError> {
        let start = self.pos;
        u32::try_from(self.u64()?).map_err(|_| VarintError { offset: start })
    }

    /// Reads `len` raw bytes.
    pub fn bytes(&mut self, len: usize) -> Result<&'a [u8], VarintError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(VarintError { offset: self.pos })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_round_trips(
            values in proptest::collection::vec(any::<u64>().prop_map(|v| v >> (v % 64)), 0..50)
        ) {
            let mut out = Vec::new();
            for &v in &values { push(&mut out, v); }
            let mut r = Reader::new(&out);
            for &v in &values { prop_assert_eq!(r.u64().unwrap(), v); }
            prop_assert!(r.is_empty());
        }

        #[test]
        fn zigzag_round_trips(v in any::<i64>()) {
            prop_assert_eq!(unzigzag(zigzag(v)), v);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&bytes);
            while r.u64().is_ok() && !r.is_empty() {}
        }
    }

    #[test]
    fn small_values_take_one_byte() {
        let mut out = Vec::new();
        push(&mut out, 127);
        assert_eq!(out, [127]);
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }
}
