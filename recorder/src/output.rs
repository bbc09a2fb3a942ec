//! The trace file: claiming it (never two recorders in one file, never the
//! program's descriptor), and writing records to it. Depends only on leaf
//! modules (clock, queue's `Chunk`, maps, report); the writer thread owns
//! the one [`Output`].

use crate::clock;
use crate::queue::Chunk;
use heapreplay_format::info::{encode_clock, to_bytes};
use heapreplay_format::reader::{blank_header, encode_record, record_compressor};
use heapreplay_format::settings::{encode_file_info, Attached, Settings};
use heapreplay_format::{
    ClockSample, EndInfo, FileInfo, Marker, ProgressInfo, RecordHeader, RecordKind,
};
use std::sync::atomic::{AtomicU64, Ordering};

/// What a trace's first record says: the process, and the profiling
/// settings it runs with (made once the trace's path is claimed).
pub type FirstRecord = (FileInfo, Settings, Option<Attached>);

/// zstd level for records: fast, and the writer runs beside the program.
const ZSTD_LEVEL: i32 = 1;

/// An open trace file and what its records still need.
pub struct Output {
    fd: i32,
    /// The trace file's (device, inode): the descriptor must still be it.
    identity: (u64, u64),
    path: String,
    compressor: zstd::bulk::Compressor<'static>,
    /// Events written so far (for the end record).
    events: u64,
    /// Clock samples not written yet.
    clock: Vec<ClockSample>,
    /// Past this size on disk, no keeper is folding the trace
    /// (`HEAPREPLAY_MAX_SIZE` times [`UNKEPT_FACTOR`]): recording stops.
    disk_limit: Option<u64>,
}

/// How far past `HEAPREPLAY_MAX_SIZE` a trace may grow before the recorder
/// decides that nothing folds it (`heapreplay keep` holds it at the size).
const UNKEPT_FACTOR: u64 = 4;

/// The error the writer gives up with when the trace outgrew its cap.
const UNKEPT: i32 = libc::EFBIG;

/// `HEAPREPLAY_MAX_SIZE` times [`UNKEPT_FACTOR`], if the variable is set
/// (a value that is not a size is said once and ignored).
fn disk_limit() -> Option<u64> {
    let text = std::env::var("HEAPREPLAY_MAX_SIZE").ok()?;
    match heapreplay_format::units::parse_size(&text) {
        Ok(size) => Some(size.saturating_mul(UNKEPT_FACTOR)),
        Err(e) => {
            crate::say!("HEAPREPLAY_MAX_SIZE: {e}; ignored");
            None
        }
    }
}

impl Output {
    /// Claims the trace file at `path` and writes its first records (the
    /// file info, the memory maps and a clock sample at `seq`). On failure,
    /// says why on stderr once and returns `None`: the program then runs
    /// unrecorded.
    pub fn start(path: &str, first: &dyn Fn(&str) -> FirstRecord, seq: u64) -> Option<Output> {
        let (fd, path) = match claim(path) {
            Ok(claimed) => claimed,
            Err(err) => {
                crate::say!(
                    "cannot write trace to {path}: {}; the program runs unrecorded",
                    crate::report::strerror(err)
                );
                return None;
            }
        };
        let Ok(compressor) = record_compressor(ZSTD_LEVEL) else {
            crate::say!("cannot start the trace compressor; the program runs unrecorded");
            // SAFETY: fd is ours.
            unsafe { libc::close(fd) };
            return None;
        };
        // What the first record says may depend on the path claimed.
        let info = first(&path);
        clock::set_start(info.0.start_mono_ns);
        let mut out = Output {
            fd,
            identity: identity(fd).unwrap_or((0, 0)),
            path,
            compressor,
            events: 0,
            clock: Vec::new(),
            disk_limit: disk_limit(),
        };
        let result = encode_file_info(&info.0, &info.1, info.2.as_ref())
            .map_err(|_| libc::EINVAL)
            .and_then(|info| out.record(blank_header(RecordKind::FileInfo), &info))
            .and_then(|_| out.maps(&crate::maps::read(), seq));
        out.clock.push(ClockSample { seq, ns: 0 });
        if let Err(err) = result {
            out.give_up(err);
            return None;
        }
        Some(out)
    }

    /// The trace's path (`PATH.<pid>` when another process held `PATH`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Says once why the trace cannot be written, and closes it.
    pub fn give_up(&self, err: i32) {
        let why = if err == libc::EBADF {
            "the program closed its descriptor".to_string()
        } else if err == UNKEPT {
            format!("it takes over {UNKEPT_FACTOR} times HEAPREPLAY_MAX_SIZE on disk, so nothing is folding it (run `heapreplay keep` beside the program)")
        } else {
            crate::report::strerror(err)
        };
        crate::say!(
            "cannot write trace to {}: {why}; recording stopped, the program runs on unrecorded",
            self.path
        );
        self.close();
    }

    /// Closes the trace's descriptor, unless the program has taken its
    /// number over (then it is the program's to close, not ours).
    pub fn close(&self) {
        if identity(self.fd) == Some(self.identity) {
            // SAFETY: the descriptor is still our trace file.
            unsafe { libc::close(self.fd) };
        }
    }

    fn write_all(&mut self, mut bytes: &[u8]) -> Result<(), i32> {
        // A program may close descriptors it did not open (daemons close
        // them all) and reuse the number: never write into its file.
        if identity(self.fd) != Some(self.identity) {
            return Err(libc::EBADF);
        }
        while !bytes.is_empty() {
            // SAFETY: bytes is a valid readable slice.
            let n = unsafe { libc::write(self.fd, bytes.as_ptr().cast(), bytes.len()) };
            if n < 0 {
                let err = crate::guard::errno();
                if err == libc::EINTR {
                    continue;
                }
                return Err(err);
            }
            if n == 0 {
                return Err(libc::ENOSPC);
            }
            bytes = &bytes[n as usize..];
        }
        Ok(())
    }

    fn record(&mut self, header: RecordHeader, raw: &[u8]) -> Result<(), i32> {
        let bytes = encode_record(&mut self.compressor, header, raw).map_err(|_| libc::ENOMEM)?;
        self.write_all(&bytes)
    }

    /// Writes the stacks interned since the last call (`count` of them).
    pub fn stacks(&mut self, payload: &[u8], count: u32) -> Result<(), i32> {
        let mut h = blank_header(RecordKind::Stacks);
        h.count = count;
        self.record(h, payload)
    }

    /// Writes one thread's chunk of events as an events record.
    pub fn chunk(&mut self, c: &Chunk) -> Result<(), i32> {
        let mut h = blank_header(RecordKind::Events);
        h.first_seq = c.first_seq;
        h.last_seq = c.last_seq;
        h.tid = c.tid;
        h.count = c.count;
        // Rows are cheap for recording threads to append; records store
        // columns, which compress better. The writer thread does the turn.
        let columns =
            heapreplay_format::events::rows_to_columns(&c.bytes, c.first_seq, c.last_seq, c.count)
                .map_err(|_| libc::EINVAL)?;
        self.record(h, &columns)?;
        self.events += u64::from(c.count);
        Ok(())
    }

    /// Writes the clock samples taken since the last call.
    pub fn clock(&mut self) -> Result<(), i32> {
        if self.clock.is_empty() {
            return Ok(());
        }
        let samples = std::mem::take(&mut self.clock);
        let mut h = blank_header(RecordKind::Clock);
        h.first_seq = samples[0].seq;
        h.last_seq = samples[samples.len() - 1].seq;
        h.count = samples.len() as u32;
        self.record(h, &encode_clock(&samples))
    }

    /// Writes the memory maps as they are at `seq`.
    pub fn maps(&mut self, text: &[u8], seq: u64) -> Result<(), i32> {
        let mut h = blank_header(RecordKind::Maps);
        h.first_seq = seq;
        h.last_seq = seq;
        self.record(h, text)
    }

    /// Writes markers (in seq order; at least one).
    pub fn markers(&mut self, markers: &[Marker]) -> Result<(), i32> {
        let mut h = blank_header(RecordKind::Markers);
        h.first_seq = markers[0].seq;
        h.last_seq = markers[markers.len() - 1].seq;
        h.count = markers.len() as u32;
        self.record(h, &heapreplay_format::markers::encode_markers(markers))
    }

    /// Writes a Mappings record of `mappings` (non-empty, in seq order).
    pub fn mappings(&mut self, mappings: &[heapreplay_format::Mapping]) -> Result<(), i32> {
        let mut h = blank_header(RecordKind::Mappings);
        h.first_seq = mappings[0].seq;
        h.last_seq = mappings[mappings.len() - 1].seq;
        h.count = mappings.len() as u32;
        self.record(
            h,
            &heapreplay_format::mappings::encode_mappings(h.first_seq, mappings),
        )
    }

    /// Samples the clock against the sequence counter `seq` (read after the
    /// clock), unless the last sample is younger than `every_ns` (with
    /// `every_ns` 0, always).
    pub fn sample_clock(&mut self, seq: &AtomicU64, every_ns: u64) {
        let ns = clock::since_start_ns();
        if self.clock.last().is_none_or(|s| ns >= s.ns + every_ns) {
            let seq = seq.load(Ordering::SeqCst);
            self.clock.push(ClockSample { seq, ns });
        }
    }

    /// Writes a Progress record: every event and marker below
    /// `complete_below` is in an earlier record; that was so `ns` after the
    /// start, when the process had `resident` bytes in memory.
    pub fn progress(
        &mut self,
        complete_below: u64,
        ns: u64,
        resident: Option<u64>,
    ) -> Result<(), i32> {
        let progress = ProgressInfo { complete_below, ns };
        let mut h = blank_header(RecordKind::Progress);
        h.first_seq = complete_below;
        h.last_seq = complete_below;
        let mut payload = to_bytes(&progress).map_err(|_| libc::EINVAL)?;
        if let Some(resident) = resident {
            payload.extend_from_slice(&resident.to_le_bytes());
        }
        self.record(h, &payload)?;
        self.check_disk_use()
    }

    /// Fails with [`UNKEPT`] if the trace takes more disk than its cap
    /// allows (checked once a second, with the Progress record).
    fn check_disk_use(&self) -> Result<(), i32> {
        let Some(limit) = self.disk_limit else {
            return Ok(());
        };
        // SAFETY: fstat on our descriptor writes only `st`.
        let used = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(self.fd, &mut st) != 0 {
                return Ok(());
            }
            st.st_blocks as u64 * 512
        };
        if used > limit {
            Err(UNKEPT)
        } else {
            Ok(())
        }
    }

    /// Events written so far, and the trace's size in bytes.
    pub fn written(&self) -> (u64, u64) {
        // SAFETY: fstat writes only `st`.
        let size = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            match libc::fstat(self.fd, &mut st) {
                0 => st.st_size as u64,
                _ => 0,
            }
        };
        (self.events, size)
    }

    /// Writes the end record: the next seq, and what was written.
    pub fn end(&mut self, next_seq: u64, markers_dropped: u64, detached: bool) -> Result<(), i32> {
        let end = EndInfo {
            next_seq,
            events: self.events,
            markers_dropped,
            end_ns: clock::since_start_ns(),
        };
        let mut h = blank_header(RecordKind::End);
        h.first_seq = end.next_seq;
        h.last_seq = end.next_seq;
        let end = heapreplay_format::encode_end(&end, detached).map_err(|_| libc::EINVAL)?;
        self.record(h, &end)
    }
}

/// The (device, inode) of what `fd` refers to.
fn identity(fd: i32) -> Option<(u64, u64)> {
    // SAFETY: fstat writes only `st`.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut st) == 0).then_some((st.st_dev, st.st_ino))
    }
}

/// Opens `path` and takes an exclusive lock on it. If another live process
/// holds the lock (it records to the same path, as a parent and its child do
/// when the path has no `%p`), the trace goes to `PATH.<pid>` instead, and
/// that is said on stderr, so two recorders never write into one file.
fn claim(path: &str) -> Result<(i32, String), i32> {
    if let Some(fd) = claim_at(path)? {
        return Ok((fd, path.to_string()));
    }
    let own = format!("{path}.{}", std::process::id());
    let fd = claim_at(&own)?.ok_or(libc::EBUSY)?;
    crate::say!("{path} is being written by another process; this one records to {own}");
    Ok((fd, own))
}

/// Opens `path` for a new trace and locks it: `None` if another process
/// holds the lock. Records are appended (`O_APPEND`), so that a fold
/// (`heapreplay keep`) can append its own between them. An earlier trace there is replaced by a new file, not
/// emptied in place: a replayer still reading it keeps its copy (emptying it
/// would pull the pages from under that reader's memory map).
fn claim_at(path: &str) -> Result<Option<i32>, i32> {
    let c = std::ffi::CString::new(path).map_err(|_| libc::EINVAL)?;
    let open = |flags: i32| -> Result<i32, i32> {
        // SAFETY: c is NUL-terminated.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                flags | libc::O_WRONLY | libc::O_APPEND | libc::O_CLOEXEC,
                0o644,
            )
        };
        if fd < 0 {
            Err(crate::guard::errno())
        } else {
            Ok(fd)
        }
    };
    // SAFETY: fd is ours; fstat writes only `st`; flock has no memory effects.
    let inspect = |fd: i32| unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        let regular = libc::fstat(fd, &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG;
        let locked = regular && libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) == 0;
        (regular, locked, st.st_size)
    };
    // SAFETY: fd is ours.
    let close = |fd: i32| unsafe { libc::close(fd) };
    let fd = open(libc::O_CREAT)?;
    let (regular, locked, size) = inspect(fd);
    if !regular {
        // A device or a pipe (/dev/null, /dev/full, a FIFO) is written as it is.
        return Ok(Some(fd));
    }
    if !locked {
        close(fd);
        return Ok(None);
    }
    if size == 0 {
        return Ok(Some(fd));
    }
    // SAFETY: c is NUL-terminated.
    if unsafe { libc::unlink(c.as_ptr()) } == 0 {
        close(fd);
        let fd = match open(libc::O_CREAT | libc::O_EXCL) {
            Ok(fd) => fd,
            // Another recorder made it first: it is theirs.
            Err(libc::EEXIST) => return Ok(None),
            Err(e) => return Err(e),
        };
        return Ok(inspect(fd).1.then_some(fd).or_else(|| {
            close(fd);
            None
        }));
    }
    // The folder does not let us replace the file: empty it in place.
    // SAFETY: fd is ours; ftruncate has no memory effects.
    if unsafe { libc::ftruncate(fd, 0) } == 0 {
        Ok(Some(fd))
    } else {
        let e = crate::guard::errno();
        close(fd);
        Err(e)
    }
}
