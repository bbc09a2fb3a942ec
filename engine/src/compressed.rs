//! A record payload kept compressed, decompressed each time it is read:
//! what a trace holds in quantity but reads rarely (stacks, maps) costs the
//! file's bytes in memory, not the decompressed ones.

/// One zstd frame and the length it decompresses to.
#[derive(Debug, Clone, Default)]
pub struct Compressed {
    frame: Box<[u8]>,
    raw_len: usize,
}

impl Compressed {
    /// Keeps a record's payload frame, whose decompressed length is known.
    pub fn keep(frame: &[u8], raw_len: usize) -> Self {
        Self {
            frame: frame.into(),
            raw_len,
        }
    }

    /// Compresses `raw` (tests, and tables built in memory).
    pub fn of(raw: &[u8]) -> Self {
        Self {
            frame: zstd::bulk::compress(raw, 1).unwrap_or_default().into(),
            raw_len: raw.len(),
        }
    }

    /// The decompressed bytes. The frame was decompressed once already when
    /// it was kept, so this does not fail; if it did, the result is empty.
    pub fn decompress(&self) -> Vec<u8> {
        zstd::bulk::decompress(&self.frame, self.raw_len).unwrap_or_default()
    }
}
