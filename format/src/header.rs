//! The fixed record header, carried in a zstd skippable frame.

/// Version of the format this crate writes. It reads this version and every
/// one back to [`OLDEST_READ_VERSION`]; older versions (1: events as rows;
/// 2: columns without back-references) and newer ones are refused with
/// their own messages.
pub const FORMAT_VERSION: u16 = 7;

/// The oldest version this crate reads (3: no Progress records).
pub const OLDEST_READ_VERSION: u16 = 3;

/// Magic number of the zstd skippable frame that carries a record header
/// (one of the sixteen skippable-frame magics, 0x184D2A50..=0x184D2A5F).
pub const SKIPPABLE_MAGIC: u32 = 0x184D_2A5E;

/// Magic number of a *gap*: a zstd skippable frame (magic, then a u32
/// length, then that many bytes) that holds nothing a reader uses. A fold
/// turns the records it replaced into gaps and frees their disk blocks.
pub const GAP_MAGIC: u32 = 0x184D_2A5D;

/// Signature at the start of every header, after the skippable-frame prefix.
pub const SIGNATURE: [u8; 4] = *b"HRPL";

/// Length of the header content inside the skippable frame.
pub const HEADER_LEN: usize = 44;

/// Bytes from the start of a record to its payload: the 8-byte skippable
/// frame prefix (magic, length) plus the header.
pub const RECORD_PREFIX_LEN: usize = 8 + HEADER_LEN;

/// Largest payload a record may declare; anything larger is damage.
pub const MAX_PAYLOAD_LEN: u32 = 64 << 20;

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// Process and recording metadata ([`crate::FileInfo`]); always first.
    FileInfo = 1,
    /// A run of one thread's events in sequence order.
    Events = 2,
    /// Newly interned stacks: id and return addresses.
    Stacks = 3,
    /// The text of `/proc/self/maps` as of sequence number `first_seq`.
    Maps = 4,
    /// Clock samples mapping sequence numbers to time.
    Clock = 5,
    /// Clean end of recording ([`crate::EndInfo`]).
    End = 6,
    /// Markers: signals and named points ([`crate::Marker`]).
    Markers = 7,
    /// How far the trace is complete ([`crate::ProgressInfo`]): every event
    /// and marker below a seq is in an earlier record. Version 4 on.
    Progress = 8,
    /// Events of every thread in one span of sequence numbers, in sequence
    /// order: a compacted trace's events. Version 5 on.
    Compacted = 9,
    /// Events counted per thread, for events whose records do not name
    /// their thread (compacted ones). Version 5 on.
    Threads = 10,
    /// The heap's state at a seq, replacing every record in a range of
    /// the file before it ([`crate::fold::FoldInfo`]), followed by copies
    /// of what in that range is still needed. Version 6 on.
    Folded = 11,
    /// Memory-mapping calls (`mmap`, `munmap`, `mremap`, `sbrk`, `brk`)
    /// with their stacks ([`crate::Mapping`]). Version 7 on.
    Mappings = 12,
}

impl RecordKind {
    /// Decodes a kind byte; `None` for kinds this version does not know.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::FileInfo,
            2 => Self::Events,
            3 => Self::Stacks,
            4 => Self::Maps,
            5 => Self::Clock,
            6 => Self::End,
            7 => Self::Markers,
            8 => Self::Progress,
            9 => Self::Compacted,
            10 => Self::Threads,
            11 => Self::Folded,
            12 => Self::Mappings,
            _ => return None,
        })
    }

    /// The first format version with this kind: in an older record it is
    /// an unknown kind.
    pub fn since_version(self) -> u16 {
        match self {
            Self::Progress => 4,
            Self::Compacted | Self::Threads => 5,
            Self::Folded => 6,
            Self::Mappings => 7,
            _ => 3,
        }
    }

    /// Whether records of this kind hold events.
    pub fn holds_events(self) -> bool {
        matches!(self, Self::Events | Self::Compacted)
    }
}

/// The decoded header of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// What the payload holds.
    pub kind: RecordKind,
    /// Format version the writer used.
    pub version: u16,
    /// Bytes of the zstd frame that follows the header.
    pub payload_len: u32,
    /// Bytes of the payload once decompressed.
    pub raw_len: u32,
    /// First sequence number covered (events, maps, clock).
    pub first_seq: u64,
    /// Last sequence number covered.
    pub last_seq: u64,
    /// Kernel thread id of the events' thread (events records only).
    pub tid: u32,
    /// Number of items in the payload (events, stacks or clock samples).
    pub count: u32,
}

/// Why a header could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than a header remain.
    Short,
    /// The bytes are not a heapreplay record header.
    NotAHeader,
    /// The header checksum does not match its contents.
    Checksum,
    /// The record kind byte is unknown to this version.
    UnknownKind(u8),
    /// The writer used a newer format version.
    NewerVersion(u16),
    /// The writer used an older format version this reader no longer reads.
    OlderVersion(u16),
    /// A length field is out of range.
    BadLength,
}

/// Header flag: the record is a copy a fold made (one of a Folded
/// record's members).
pub const FLAG_FOLD_MEMBER: u8 = 1;

/// The flags byte of the record starting at `record` (0 if too short).
pub fn record_flags(record: &[u8]) -> u8 {
    record.get(13).copied().unwrap_or(0)
}

/// Sets the flags byte of the record starting at `record` (its whole
/// header), keeping its checksum right.
pub fn set_record_flags(record: &mut [u8], flags: u8) {
    record[13] = flags;
    let sum = checksum(&record[8..48]);
    record[48..52].copy_from_slice(&sum.to_le_bytes());
}

/// FNV-1a over `bytes`: a cheap check that a header was not damaged.
fn checksum(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

impl RecordHeader {
    /// Encodes the header with its skippable-frame prefix.
    pub fn encode(&self) -> [u8; RECORD_PREFIX_LEN] {
        let mut out = [0u8; RECORD_PREFIX_LEN];
        out[0..4].copy_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
        out[4..8].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        let h = &mut out[8..];
        h[0..4].copy_from_slice(&SIGNATURE);
        h[4] = self.kind as u8;
        h[5] = 0;
        h[6..8].copy_from_slice(&self.version.to_le_bytes());
        h[8..12].copy_from_slice(&self.payload_len.to_le_bytes());
        h[12..16].copy_from_slice(&self.raw_len.to_le_bytes());
        h[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        h[24..32].copy_from_slice(&self.last_seq.to_le_bytes());
        h[32..36].copy_from_slice(&self.tid.to_le_bytes());
        h[36..40].copy_from_slice(&self.count.to_le_bytes());
        let sum = checksum(&h[0..40]);
        h[40..44].copy_from_slice(&sum.to_le_bytes());
        out
    }

    /// Decodes a header from the start of `bytes` (prefix included).
    pub fn decode(bytes: &[u8]) -> Result<Self, HeaderError> {
        if bytes.len() < RECORD_PREFIX_LEN {
            return Err(HeaderError::Short);
        }
        let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
        if u32_at(0) != SKIPPABLE_MAGIC
            || u32_at(4) != HEADER_LEN as u32
            || bytes[8..12] != SIGNATURE
        {
            return Err(HeaderError::NotAHeader);
        }
        if checksum(&bytes[8..48]) != u32_at(48) {
            return Err(HeaderError::Checksum);
        }
        let version = u16_at(14);
        if version > FORMAT_VERSION {
            return Err(HeaderError::NewerVersion(version));
        }
        if version < OLDEST_READ_VERSION {
            return Err(HeaderError::OlderVersion(version));
        }
        let kind = RecordKind::from_u8(bytes[12])
            .filter(|k| version >= k.since_version())
            .ok_or(HeaderError::UnknownKind(bytes[12]))?;
        let header = Self {
            kind,
            version,
            payload_len: u32_at(16),
            raw_len: u32_at(20),
            first_seq: u64_at(24),
            last_seq: u64_at(32),
            tid: u32_at(40),
            count: u32_at(44),
        };
        if header.payload_len > MAX_PAYLOAD_LEN || header.raw_len > MAX_PAYLOAD_LEN {
            return Err(HeaderError::BadLength);
        }
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RecordHeader {
        RecordHeader {
            kind: RecordKind::Events,
            version: FORMAT_VERSION,
            payload_len: 1234,
            raw_len: 5678,
            first_seq: 42,
            last_seq: 99,
            tid: 7,
            count: 3,
        }
    }

    #[test]
    fn header_round_trips() {
        let bytes = sample().encode();
        assert_eq!(RecordHeader::decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn flipped_bit_is_caught() {
        let mut bytes = sample().encode();
        bytes[30] ^= 1;
        assert_eq!(RecordHeader::decode(&bytes), Err(HeaderError::Checksum));
    }

    #[test]
    fn a_kind_in_a_version_before_it_is_unknown() {
        for (kind, byte) in [
            (RecordKind::Compacted, 9),
            (RecordKind::Threads, 10),
            (RecordKind::Folded, 11),
            (RecordKind::Mappings, 12),
        ] {
            let mut h = sample();
            h.kind = kind;
            assert_eq!(RecordHeader::decode(&h.encode()).map(|h| h.kind), Ok(kind));
            h.version = kind.since_version() - 1;
            assert_eq!(
                RecordHeader::decode(&h.encode()),
                Err(HeaderError::UnknownKind(byte))
            );
        }
    }

    #[test]
    fn newer_version_is_refused() {
        let mut h = sample();
        h.version = FORMAT_VERSION + 1;
        let bytes = h.encode();
        assert_eq!(
            RecordHeader::decode(&bytes),
            Err(HeaderError::NewerVersion(FORMAT_VERSION + 1))
        );
    }
}
