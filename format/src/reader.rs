//! Splitting a trace into records, resynchronising after damage.

use crate::header::{
    HeaderError, RecordHeader, RecordKind, HEADER_LEN, RECORD_PREFIX_LEN, SIGNATURE,
    SKIPPABLE_MAGIC,
};

/// One record found in a trace, payload still compressed.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// The decoded header.
    pub header: RecordHeader,
    /// Byte offset of the record in the file.
    pub offset: u64,
    /// The compressed payload (one zstd frame).
    pub payload: &'a [u8],
}

/// A byte range of the trace that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Offset where the damage starts.
    pub offset: u64,
    /// Number of bytes skipped.
    pub len: u64,
    /// What was wrong, in words.
    pub what: String,
}

/// What a scan found besides the records: damage and foreign versions.
#[derive(Debug, Default)]
pub struct Findings {
    /// Damaged or truncated byte ranges, in file order.
    pub damage: Vec<Damage>,
    /// Set when a record was written by a newer format version.
    pub newer_version: Option<u16>,
    /// Set when a record was written by an older format version.
    pub older_version: Option<u16>,
    /// Headers that were found but failed a check (checksum, kind, length,
    /// frame size), so that "no record" can say why.
    pub damaged_headers: usize,
    /// Where a FileInfo record after other records began another trace
    /// (the scan stopped there).
    pub another_trace_at: Option<u64>,
}

/// The result of [`scan`]: a trace's records in file order, and what else
/// the scan found.
#[derive(Debug, Default)]
pub struct Scan<'a> {
    /// Records in file order.
    pub records: Vec<RawRecord<'a>>,
    /// Damage and foreign versions.
    pub findings: Findings,
}

impl RawRecord<'_> {
    /// Decompresses the payload and checks its length against the header.
    pub fn decompress(&self) -> Result<Vec<u8>, String> {
        thread_local! {
            // One decompression context per thread: making one per record
            // cost more than decompressing a small record.
            static CONTEXT: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
                const { std::cell::RefCell::new(None) };
        }
        let raw = CONTEXT
            .with(|c| {
                let mut c = c.borrow_mut();
                if c.is_none() {
                    *c = Some(zstd::bulk::Decompressor::new()?);
                }
                c.as_mut()
                    .expect("created above")
                    .decompress(self.payload, self.header.raw_len as usize)
            })
            .map_err(|e| format!("payload does not decompress ({e})"))?;
        if raw.len() != self.header.raw_len as usize {
            return Err(format!(
                "payload is {} bytes, header says {}",
                raw.len(),
                self.header.raw_len
            ));
        }
        Ok(raw)
    }
}

/// The 12 bytes every record starts with: magic, header length, signature.
fn header_pattern() -> [u8; 12] {
    let mut p = [0u8; 12];
    p[0..4].copy_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
    p[4..8].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    p[8..12].copy_from_slice(&SIGNATURE);
    p
}

/// Finds the next plausible header start at or after `from`.
fn resync(bytes: &[u8], from: usize) -> usize {
    let pattern = header_pattern();
    bytes
        .get(from..)
        .and_then(|rest| memchr::memmem::find(rest, &pattern))
        .map_or(bytes.len(), |i| from + i)
}

/// The next offset at or after `from` where a header decodes, if any.
fn next_valid_header(bytes: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let at = resync(bytes, from);
        if at >= bytes.len() {
            return None;
        }
        if RecordHeader::decode(&bytes[at..]).is_ok() {
            return Some(at);
        }
        from = at + 1;
    }
}

/// Splits `bytes` into records. Never fails: what cannot be read is reported
/// as [`Damage`] and skipped up to the next valid header.
pub fn scan(bytes: &[u8]) -> Scan<'_> {
    let mut records = Vec::new();
    let findings = scan_with(bytes, |_| {}, |r| records.push(r));
    Scan { records, findings }
}

/// [`scan`], handing each record to `record` instead of keeping them all
/// (a trace of billions of events has hundreds of thousands of records),
/// and calling `progress(offset)` as it passes each, so that a caller
/// reading a memory map can let go of the pages behind.
///
/// A header whose zstd frame does not end exactly where the header says is
/// damage (the scan goes on at the next header, so a lying length cannot
/// hide the records after it); so is one whose payload runs past the end of
/// the file while a valid header follows. A FileInfo record after any other
/// record starts another trace (files concatenated): the scan stops there.
pub fn scan_with<'a>(
    bytes: &'a [u8],
    progress: impl FnMut(usize),
    record: impl FnMut(RawRecord<'a>),
) -> Findings {
    scan_from(bytes, 0, progress, record)
}

/// [`scan_with`] from offset `start`, a record boundary after the records
/// before it were read (from an index of them): only what follows is
/// scanned.
pub fn scan_from<'a>(
    bytes: &'a [u8],
    start: usize,
    mut progress: impl FnMut(usize),
    mut record: impl FnMut(RawRecord<'a>),
) -> Findings {
    let mut out = Findings::default();
    let mut pos = start;
    let mut seen_record = start > 0;
    while pos < bytes.len() {
        progress(pos);
        // A gap (what a fold replaced) is skipped whole, never read.
        if let Some(len) = crate::fold::gap_at(&bytes[pos..]) {
            match usize::try_from(len).ok().and_then(|l| pos.checked_add(l)) {
                Some(end) if end <= bytes.len() => {
                    pos = end;
                    continue;
                }
                _ => {
                    // Past the end: damage up to the next record, if any.
                    let next = next_valid_header(bytes, pos + 8).unwrap_or(bytes.len());
                    out.damage.push(Damage {
                        offset: pos as u64,
                        len: (next - pos) as u64,
                        what: format!("a gap of {len} bytes runs past the end of the file"),
                    });
                    pos = next;
                    continue;
                }
            }
        }
        let header = RecordHeader::decode(&bytes[pos..]);
        let problem = match header {
            Ok(header) => {
                let start = pos + RECORD_PREFIX_LEN;
                let end = start + header.payload_len as usize;
                if header.kind == RecordKind::FileInfo && seen_record {
                    out.another_trace_at = Some(pos as u64);
                    out.damage.push(Damage {
                        offset: pos as u64,
                        len: (bytes.len() - pos) as u64,
                        what: "a second trace starts here (files concatenated?); the rest of the file is not read".into(),
                    });
                    break;
                }
                if end > bytes.len() {
                    match next_valid_header(bytes, start) {
                        // A lying length: records follow.
                        Some(next) => Some((
                            next,
                            format!(
                                "{:?} record header claims {} payload bytes, past the end of the file",
                                header.kind, header.payload_len
                            ),
                        )),
                        None => {
                            out.damage.push(Damage {
                                offset: pos as u64,
                                len: (bytes.len() - pos) as u64,
                                what: format!(
                                    "truncated {:?} record: needs {} bytes, file ends after {}",
                                    header.kind,
                                    end - pos,
                                    bytes.len() - pos
                                ),
                            });
                            break;
                        }
                    }
                } else if frame_len(&bytes[start..]) != Some(header.payload_len as usize) {
                    out.damaged_headers += 1;
                    Some((
                        resync(bytes, pos + 1),
                        format!(
                            "{:?} record's payload is not one zstd frame of the {} bytes its header says",
                            header.kind, header.payload_len
                        ),
                    ))
                } else {
                    seen_record = true;
                    record(RawRecord {
                        header,
                        offset: pos as u64,
                        payload: &bytes[start..end],
                    });
                    pos = end;
                    None
                }
            }
            Err(err) => {
                match err {
                    HeaderError::NewerVersion(v) => out.newer_version = Some(v),
                    HeaderError::OlderVersion(v) => out.older_version = Some(v),
                    HeaderError::Short | HeaderError::NotAHeader => {}
                    _ => out.damaged_headers += 1,
                }
                let what = match err {
                    HeaderError::Short => "truncated record header".to_string(),
                    HeaderError::NotAHeader => "not a record header".to_string(),
                    HeaderError::Checksum => "record header checksum mismatch".to_string(),
                    HeaderError::UnknownKind(k) => format!("unknown record kind {k}"),
                    HeaderError::NewerVersion(v) => format!("record of newer format version {v}"),
                    HeaderError::OlderVersion(v) => format!("record of older format version {v}"),
                    HeaderError::BadLength => "record length out of range".to_string(),
                };
                Some((resync(bytes, pos + 1), what))
            }
        };
        if let Some((next, what)) = problem {
            out.damage.push(Damage {
                offset: pos as u64,
                len: (next - pos) as u64,
                what,
            });
            pos = next;
        }
    }
    out
}

/// The length of the zstd frame at the start of `bytes`, read from its block
/// headers (nothing is decompressed); `None` if it is not one whole frame.
fn frame_len(bytes: &[u8]) -> Option<usize> {
    zstd::zstd_safe::find_frame_compressed_size(bytes).ok()
}

/// Builds one complete record: header plus zstd-compressed payload.
pub fn encode_record(
    compressor: &mut zstd::bulk::Compressor<'_>,
    mut header: RecordHeader,
    raw: &[u8],
) -> std::io::Result<Vec<u8>> {
    let compressed = compressor.compress(raw)?;
    header.payload_len = compressed.len() as u32;
    header.raw_len = raw.len() as u32;
    let mut out = Vec::with_capacity(RECORD_PREFIX_LEN + compressed.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(&compressed);
    Ok(out)
}

/// A zstd compressor set up the way records are written (content checksums on).
pub fn record_compressor(level: i32) -> std::io::Result<zstd::bulk::Compressor<'static>> {
    let mut c = zstd::bulk::Compressor::new(level)?;
    c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
    Ok(c)
}

/// A header for `kind` with every other field zero, to fill in.
pub fn blank_header(kind: RecordKind) -> RecordHeader {
    RecordHeader {
        kind,
        version: crate::FORMAT_VERSION,
        payload_len: 0,
        raw_len: 0,
        first_seq: 0,
        last_seq: 0,
        tid: 0,
        count: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: RecordKind, raw: &[u8]) -> Vec<u8> {
        let mut c = record_compressor(1).unwrap();
        encode_record(&mut c, blank_header(kind), raw).unwrap()
    }

    #[test]
    fn scan_finds_records_and_skips_damage() {
        let mut file = record(RecordKind::Maps, b"first");
        let second_at = file.len();
        file.extend(record(RecordKind::Maps, b"second"));
        let third_at = file.len();
        file.extend(record(RecordKind::Maps, b"third"));
        file[second_at + 20] ^= 0xff; // break the second header
        let scan = scan(&file);
        assert_eq!(scan.records.len(), 2);
        assert_eq!(scan.records[1].offset, third_at as u64);
        assert_eq!(scan.records[1].decompress().unwrap(), b"third");
        assert_eq!(scan.findings.damage.len(), 1);
        assert_eq!(scan.findings.damage[0].offset, second_at as u64);
    }

    #[test]
    fn truncation_is_reported() {
        let mut file = record(RecordKind::Maps, b"first");
        let whole = file.len();
        file.extend(record(RecordKind::Maps, b"second"));
        file.truncate(file.len() - 3);
        let scan = scan(&file);
        assert_eq!(scan.records.len(), 1);
        assert_eq!(scan.findings.damage[0].offset, whole as u64);
        assert!(scan.findings.damage[0].what.contains("truncated"));
    }

    #[test]
    fn plain_zstd_tools_see_concatenated_payloads() {
        let mut file = record(RecordKind::Maps, b"ab");
        file.extend(record(RecordKind::Maps, b"cd"));
        let out = zstd::stream::decode_all(&file[..]).unwrap();
        assert_eq!(out, b"abcd");
    }
}
