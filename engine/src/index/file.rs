//! The index file: checkpoints' states, then a table of contents, then a
//! fixed footer that says where the table is. New checkpoints are appended
//! in place of the old table, under an exclusive lock; a reader takes a
//! shared lock to read the table, and checkpoint bytes once written never
//! change. Layout (see FORMAT.md, "The index"):
//!
//! ```text
//! "HRINDEX\x01"  state  state ...  table (zstd)  footer: table offset u64 LE, table length u64 LE, "HRIXEND\x01"
//! ```

use super::{Checkpoint, Identity, Table};
use crate::trace::{EventsRef, ScanCache};
use heapreplay_format::varint::{self, Reader};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

const MAGIC: &[u8; 8] = b"HRINDEX\x01";
const FOOTER_MAGIC: &[u8; 8] = b"HRIXEND\x01";
const FOOTER_LEN: u64 = 24;
/// A table larger than this is not ours (a billion-event trace's is a few KB).
const TABLE_LIMIT: usize = 64 << 20;

/// An index file opened for reading, and its table as it was read.
pub(super) struct Opened {
    pub(super) file: File,
    pub(super) table: Table,
    /// Where the table starts: where appended checkpoints go.
    pub(super) table_offset: u64,
}

/// Reads the table of the index at `path`; `None` if there is none or it
/// is not an index this heapreplay wrote.
pub(super) fn open(path: &Path) -> Option<Opened> {
    let file = File::open(path).ok()?;
    let lock = Lock::shared(&file)?;
    let (table_offset, table) = read_table(&file)?;
    drop(lock);
    Some(Opened {
        file,
        table,
        table_offset,
    })
}

fn read_table(file: &File) -> Option<(u64, Table)> {
    let len = file.metadata().ok()?.len();
    if len < MAGIC.len() as u64 + FOOTER_LEN {
        return None;
    }
    let mut magic = [0u8; 8];
    file.read_exact_at(&mut magic, 0).ok()?;
    let mut footer = [0u8; FOOTER_LEN as usize];
    file.read_exact_at(&mut footer, len - FOOTER_LEN).ok()?;
    if &magic != MAGIC || &footer[16..] != FOOTER_MAGIC {
        return None;
    }
    let offset = u64::from_le_bytes(footer[..8].try_into().ok()?);
    let table_len = u64::from_le_bytes(footer[8..16].try_into().ok()?);
    if offset < MAGIC.len() as u64 || offset.checked_add(table_len)? != len - FOOTER_LEN {
        return None;
    }
    let mut packed = vec![
        0u8;
        usize::try_from(table_len)
            .ok()
            .filter(|&n| n <= TABLE_LIMIT)?
    ];
    file.read_exact_at(&mut packed, offset).ok()?;
    let raw = zstd::bulk::decompress(&packed, TABLE_LIMIT).ok()?;
    let table = decode_table(&raw, offset)?;
    Some((offset, table))
}

/// Reads a checkpoint's state bytes.
pub(super) fn read_state(file: &File, cp: &Checkpoint) -> Option<Vec<u8>> {
    let mut bytes = vec![0u8; usize::try_from(cp.state_len).ok()?];
    file.read_exact_at(&mut bytes, cp.state_offset).ok()?;
    Some(bytes)
}

/// Writes a new index at `path` (replacing any there) with `table`, whose
/// checkpoints' states are in `spool` in order, from its start.
/// Returns where the table is.
pub(super) fn create(path: &Path, table: &mut Table, spool: &File) -> io::Result<u64> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = (|| {
        let file = File::create(&tmp)?;
        file.write_all_at(MAGIC, 0)?;
        let (table_offset, end) = write_after(&file, MAGIC.len() as u64, table, 0, spool)?;
        file.set_len(end)?;
        std::fs::rename(&tmp, path)?;
        Ok(table_offset)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Appends the states of `table`'s checkpoints from `first_new` on (in
/// `spool`, in order) to the index at `path`, whose table was at
/// `table_offset` when it was read. Returns where the table now is, or
/// `None` (writing nothing) if the index changed since: another heapreplay
/// extended or replaced it.
pub(super) fn append(
    path: &Path,
    table_offset: u64,
    table: &mut Table,
    first_new: usize,
    spool: &File,
) -> io::Result<Option<u64>> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let Some(lock) = Lock::exclusive(&file) else {
        return Ok(None);
    };
    let unchanged = read_table(&file).is_some_and(|(offset, _)| offset == table_offset);
    let written = match unchanged {
        true => write_after(&file, table_offset, table, first_new, spool)
            .and_then(|(at, end)| file.set_len(end).map(|()| Some(at))),
        false => Ok(None),
    };
    drop(lock);
    written
}

/// Copies the states in `spool` to `at`, placing `table`'s checkpoints from
/// `first_new` on (whose offsets are into the spool) there, then writes
/// the table and the footer; returns where the table is, and the end.
fn write_after(
    file: &File,
    at: u64,
    table: &mut Table,
    first_new: usize,
    spool: &File,
) -> io::Result<(u64, u64)> {
    let mut spooled = 0;
    for cp in &mut table.checkpoints[first_new..] {
        spooled = spooled.max(cp.state_offset + cp.state_len);
        cp.state_offset += at;
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0;
    while done < spooled {
        let n = buf.len().min((spooled - done) as usize);
        spool.read_exact_at(&mut buf[..n], done)?;
        file.write_all_at(&buf[..n], at + done)?;
        done += n as u64;
    }
    let at = at + spooled;
    let mut compressor = zstd::bulk::Compressor::new(3)?;
    compressor.include_checksum(true)?;
    let packed = compressor.compress(&encode_table(table))?;
    file.write_all_at(&packed, at)?;
    let mut footer = Vec::with_capacity(FOOTER_LEN as usize);
    footer.extend_from_slice(&at.to_le_bytes());
    footer.extend_from_slice(&(packed.len() as u64).to_le_bytes());
    footer.extend_from_slice(FOOTER_MAGIC);
    file.write_all_at(&footer, at + packed.len() as u64)?;
    Ok((at, at + packed.len() as u64 + FOOTER_LEN))
}

/// A file for checkpoint states while a pass makes them, in the directory
/// an index would go in: unlinked at once, so it goes away with the pass.
pub(super) fn spool(index_path: &Path) -> io::Result<File> {
    let dir = index_path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!(
        ".heapreplay-spool-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

/// The table's version: a table of another version is not read.
const TABLE_VERSION: u64 = 2;

fn encode_table(t: &Table) -> Vec<u8> {
    let mut out = Vec::new();
    let id = &t.identity;
    for v in [
        TABLE_VERSION,
        id.covered_len,
        u64::from(id.head_crc),
        u64::from(id.tail_crc),
        t.covered_seq,
    ] {
        varint::push(&mut out, v);
    }
    push_peak(&mut out, t.end_peak);
    varint::push(&mut out, t.checkpoints.len() as u64);
    for cp in &t.checkpoints {
        for v in [
            cp.seq,
            cp.last_seq,
            cp.events,
            cp.alloc_bytes,
            cp.state_offset,
            cp.state_len,
            cp.raw_len,
        ] {
            varint::push(&mut out, v);
        }
        push_peak(&mut out, cp.peak);
    }
    push_scan(&mut out, t.scan.as_ref());
    out
}

/// The scan cache: events records by delta from the one before (offsets
/// and first seqs zigzag-encoded), then the other records' offsets.
fn push_scan(out: &mut Vec<u8>, scan: Option<&ScanCache>) {
    let Some(scan) = scan else {
        varint::push(out, 0);
        return;
    };
    varint::push(out, 1);
    varint::push(out, scan.resume);
    varint::push(out, scan.events.len() as u64);
    let (mut offset, mut first) = (0u64, 0u64);
    for r in &scan.events {
        varint::push(out, varint::zigzag(r.offset.wrapping_sub(offset) as i64));
        varint::push(out, varint::zigzag(r.first_seq.wrapping_sub(first) as i64));
        varint::push(out, r.last_seq.wrapping_sub(r.first_seq));
        varint::push(out, u64::from(r.tid));
        varint::push(out, u64::from(r.count));
        (offset, first) = (r.offset, r.first_seq);
    }
    varint::push(out, scan.others.len() as u64);
    let mut previous = 0;
    for &o in &scan.others {
        varint::push(out, o - previous);
        previous = o;
    }
}

fn read_scan(r: &mut Reader<'_>, room: usize) -> Option<Option<ScanCache>> {
    if r.u64().ok()? == 0 {
        return Some(None);
    }
    let resume = r.u64().ok()?;
    let count = r.u64().ok()?;
    if count > room as u64 / 5 {
        return None;
    }
    let mut events = Vec::with_capacity(count as usize);
    let (mut offset, mut first) = (0u64, 0u64);
    for _ in 0..count {
        offset = offset.wrapping_add(varint::unzigzag(r.u64().ok()?) as u64);
        first = first.wrapping_add(varint::unzigzag(r.u64().ok()?) as u64);
        let last_seq = first.checked_add(r.u64().ok()?)?;
        events.push(EventsRef {
            offset,
            first_seq: first,
            last_seq,
            tid: r.u32().ok()?,
            count: r.u32().ok()?,
        });
        if offset >= resume {
            return None;
        }
    }
    let count = r.u64().ok()?;
    if count > room as u64 {
        return None;
    }
    let mut others = Vec::with_capacity(count as usize);
    let mut previous = 0u64;
    for _ in 0..count {
        previous = previous.checked_add(r.u64().ok()?)?;
        if previous >= resume {
            return None;
        }
        others.push(previous);
    }
    Some(Some(ScanCache {
        resume,
        events,
        others,
    }))
}

fn push_peak(out: &mut Vec<u8>, peak: Option<(u64, u64)>) {
    match peak {
        None => varint::push(out, 0),
        Some((seq, bytes)) => {
            varint::push(out, 1);
            varint::push(out, seq);
            varint::push(out, bytes);
        }
    }
}

fn read_peak(r: &mut Reader<'_>) -> Option<Option<(u64, u64)>> {
    match r.u64().ok()? {
        0 => Some(None),
        1 => Some(Some((r.u64().ok()?, r.u64().ok()?))),
        _ => None,
    }
}

/// The table from its bytes, checked: checkpoints in ascending seq order,
/// each state inside the file before the table.
fn decode_table(raw: &[u8], table_offset: u64) -> Option<Table> {
    let mut r = Reader::new(raw);
    if r.u64().ok()? != TABLE_VERSION {
        return None;
    }
    let identity = Identity {
        covered_len: r.u64().ok()?,
        head_crc: r.u32().ok()?,
        tail_crc: r.u32().ok()?,
    };
    let covered_seq = r.u64().ok()?;
    let end_peak = read_peak(&mut r)?;
    let count = r.u64().ok()?;
    if count > raw.len() as u64 / 8 {
        return None;
    }
    let mut checkpoints: Vec<Checkpoint> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let cp = Checkpoint {
            seq: r.u64().ok()?,
            last_seq: r.u64().ok()?,
            events: r.u64().ok()?,
            alloc_bytes: r.u64().ok()?,
            state_offset: r.u64().ok()?,
            state_len: r.u64().ok()?,
            raw_len: r.u64().ok()?,
            peak: read_peak(&mut r)?,
        };
        let ordered = checkpoints.last().is_none_or(|p| {
            p.seq < cp.seq && p.state_offset.saturating_add(p.state_len) <= cp.state_offset
        });
        let inside = cp.state_offset >= MAGIC.len() as u64
            && cp.state_offset.checked_add(cp.state_len)? <= table_offset;
        if !ordered || !inside || cp.last_seq >= cp.seq || cp.seq > covered_seq {
            return None;
        }
        checkpoints.push(cp);
    }
    let scan = read_scan(&mut r, raw.len())?;
    if !r.is_empty()
        || scan
            .as_ref()
            .is_some_and(|s| s.resume > identity.covered_len)
    {
        return None;
    }
    Some(Table {
        identity,
        covered_seq,
        end_peak,
        checkpoints,
        scan,
    })
}

/// An flock held on a file until dropped (drop it before the file).
struct Lock(std::os::fd::RawFd);

impl Lock {
    fn shared(file: &File) -> Option<Self> {
        Self::take(file, libc::LOCK_SH)
    }

    fn exclusive(file: &File) -> Option<Self> {
        Self::take(file, libc::LOCK_EX)
    }

    fn take(file: &File, how: libc::c_int) -> Option<Self> {
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd();
        // SAFETY: flock on a descriptor the File owns; no memory is touched.
        (unsafe { libc::flock(fd, how) } == 0).then_some(Self(fd))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: as in `take`; the descriptor is still open (the lock is
        // dropped before its file).
        unsafe { libc::flock(self.0, libc::LOCK_UN) };
    }
}
