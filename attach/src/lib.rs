//! `heapreplay attach` and `detach`: loads the recorder into a process that
//! is already running and starts a trace there, then stops it again.
//!
//! Attaching checks what would make it fail or harm the process and
//! refuses first ([`Refusal`]); then it stops one thread for a moment
//! ([`inject`]), preferably one blocked in an idle system call (never one
//! inside the allocator or the loader), has it call `dlopen` on
//! `librecord.so` and the recorder's entry point `heapreplay_attach`, and
//! lets it go. The recorder then puts its hooks in every loaded object's
//! table (see the recorder's `got.rs`). Detaching writes a request into
//! the recorder's control block, which its writer thread takes within a
//! tick; no thread is stopped for it.

pub mod inject;
pub mod symbols;
pub mod target;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use symbols::Loaded;
use target::Mapping;

/// The recorder's states, as its control block holds them.
const INERT: u32 = 0;
const PRELOADED: u32 = 1;
const ATTACHED: u32 = 2;
const DETACHING: u32 = 3;
/// `heapreplay_attach`'s own error codes (errno values are above 0).
const BUSY: i64 = -1;
const NO_ALLOCATOR: i64 = -2;
const NO_THREAD: i64 = -3;
/// Bytes of stack a thread must have below its stack pointer to make the
/// calls in.
const STACK_NEEDED: u64 = 64 * 1024;
/// glibc's flag that `__libc_dlopen_mode` needs to behave as `dlopen`.
const RTLD_DLOPEN: u64 = 0x8000_0000;

/// A recording started by [`attach`].
#[derive(Debug, Clone)]
pub struct Recording {
    /// The process.
    pub pid: i32,
    /// The trace, as the process names it.
    pub trace: String,
    /// The trace, as this process reaches it.
    pub trace_here: PathBuf,
    /// The thread that made the calls.
    pub tid: i32,
    /// How long that thread was stopped.
    pub paused: Duration,
    /// The recorder library, as the process names it.
    pub library: String,
}

/// System calls a thread waits in when it holds nothing the loader or the
/// allocator need: read, poll, select, pause, nanosleep, accept, recvfrom,
/// recvmsg, wait4, rt_sigtimedwait, clock_nanosleep,
/// epoll_wait, waitid, pselect6, ppoll, epoll_pwait, accept4, recvmmsg,
/// epoll_pwait2, readv.
const IDLE_SYSCALLS: [i64; 20] = [
    0, 7, 23, 34, 35, 43, 45, 47, 61, 128, 230, 232, 247, 270, 271, 281, 288, 299, 441, 19,
];

/// True if a thread waiting in system call `nr` with these registers holds
/// a signal mask of the call's own, which the kernel puts back when the
/// call returns (pselect6, ppoll, epoll_pwait, epoll_pwait2 given one):
/// its mask cannot be saved and put back from outside.
fn swaps_signal_mask(nr: i64, regs: &libc::user_regs_struct) -> bool {
    match nr {
        270 => regs.r9 != 0,
        271 => regs.r10 != 0,
        281 | 441 => regs.r8 != 0,
        _ => false,
    }
}

fn is_allocator_or_loader(m: &Mapping) -> bool {
    let name = m.file_name();
    name.starts_with("libc.so")
        || name.starts_with("libc-")
        || name.starts_with("ld-linux")
        || name.contains("malloc")
}

/// Reads `len` bytes at `addr` in process `pid`.
fn read_memory(pid: i32, addr: u64, len: usize) -> Option<Vec<u8>> {
    let mut out = vec![0u8; len];
    let local = libc::iovec {
        iov_base: out.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: one local buffer of `len` bytes, one remote range.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    (n == len as isize).then_some(out)
}

/// Writes a u32 at `addr` in process `pid`.
fn write_u32(pid: i32, addr: u64, value: u32) -> std::io::Result<()> {
    let bytes = value.to_ne_bytes();
    let local = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: 4,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: 4,
    };
    // SAFETY: one local buffer of 4 bytes, one remote range.
    match unsafe { libc::process_vm_writev(pid, &local, 1, &remote, 1, 0) } {
        4 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// True for the recorder library's file name (its copy's too, and after
/// it was replaced on disk).
fn is_recorder(file: &str) -> bool {
    file.strip_suffix(" (deleted)").unwrap_or(file) == "librecord.so"
}

/// The recorder loaded in a process: its control block's address.
struct Recorder {
    library: String,
    control: u64,
    attach: Option<u64>,
}

impl Recorder {
    /// The recorder among the process's mappings, if one is loaded.
    fn find(pid: i32, maps: &[Mapping]) -> Result<Option<Recorder>, String> {
        let Some(m) = maps.iter().find(|m| is_recorder(m.file_name())) else {
            return Ok(None);
        };
        // Through map_files first: it reads the mapped file even if the
        // library was replaced on disk since (its path then ends in
        // " (deleted)").
        let mapped = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
        let loaded = Loaded::find(maps, &m.path, Path::new(&mapped))
            .or_else(|| Loaded::find(maps, &m.path, &target::seen_from_here(pid, &m.path)))
            .ok_or_else(|| {
                format!(
                    "cannot read the recorder library it has loaded ({})",
                    m.path
                )
            })?;
        let Some((control, _)) = loaded.symbol(&["heapreplay_control"]) else {
            return Err(format!(
                "it has an older librecord.so loaded ({}), which cannot be attached or detached",
                m.path
            ));
        };
        Ok(Some(Recorder {
            library: m.path.clone(),
            control,
            attach: loaded.symbol(&["heapreplay_attach"]).map(|(a, _)| a),
        }))
    }

    /// Its state (INERT, PRELOADED, ATTACHED or DETACHING).
    fn state(&self, pid: i32) -> Option<u32> {
        let bytes = read_memory(pid, self.control, 4)?;
        Some(u32::from_ne_bytes(bytes.try_into().ok()?))
    }
}

/// Why a process cannot be attached to (or detached from), in one line.
fn refuse_status(pid: i32) -> Result<target::Status, String> {
    let status = target::status(pid).map_err(|_| format!("no process {pid}"))?;
    match status.state {
        'T' | 't' => Err(format!(
            "process {pid} ({}) is stopped (state {}); continue it first (kill -CONT {pid})",
            status.name, status.state
        )),
        'Z' | 'X' => Err(format!("process {pid} ({}) has exited", status.name)),
        _ if status.tracer != 0 => Err(format!(
            "process {pid} ({}) is being traced by process {} (a debugger?); detach that first",
            status.name, status.tracer
        )),
        _ if !is_x86_64(pid) => Err(format!(
            "process {pid} ({}) is not an x86-64 program, the only kind heapreplay attach can call into",
            status.name
        )),
        _ if status.ignored & (1 << (libc::SIGSEGV - 1)) != 0 => Err(format!(
            "process {pid} ({}) ignores SIGSEGV, which the injected calls use to return",
            status.name
        )),
        _ if status.shadow_stack => Err(format!(
            "process {pid} ({}) runs with a shadow stack (CET), which a call injected from outside would break",
            status.name
        )),
        _ => Ok(status),
    }
}

/// True if the process's program is a 64-bit x86 ELF file (unknown: true;
/// what cannot be read is refused later, with the reason).
fn is_x86_64(pid: i32) -> bool {
    use std::io::Read;
    let mut head = [0u8; 20];
    let read =
        std::fs::File::open(format!("/proc/{pid}/exe")).and_then(|mut f| f.read_exact(&mut head));
    read.is_err() || (head[4] == 2 && u16::from_le_bytes([head[18], head[19]]) == 62)
}

/// What to do when ptrace is not permitted, from the system's settings.
fn ptrace_advice(pid: i32, status: &target::Status) -> String {
    // SAFETY: getuid has no preconditions.
    let me = unsafe { libc::getuid() };
    if me != 0 && me != status.uid {
        return format!(
            "process {pid} belongs to uid {}, not to you (uid {me}): run heapreplay attach as that user or as root",
            status.uid
        );
    }
    let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    match scope {
        Some(1) if me != 0 => "kernel.yama.ptrace_scope is 1 (only a parent may trace its children): run as root (sudo heapreplay attach), grant CAP_SYS_PTRACE, or set sysctl kernel.yama.ptrace_scope=0".to_string(),
        Some(2) => "kernel.yama.ptrace_scope is 2 (only CAP_SYS_PTRACE may trace): run as root or grant CAP_SYS_PTRACE".to_string(),
        Some(3) => "kernel.yama.ptrace_scope is 3 (no process may be traced until reboot)".to_string(),
        _ => "missing the CAP_SYS_PTRACE capability (a container drops it by default: add --cap-add=SYS_PTRACE), or a security module forbids it".to_string(),
    }
}

/// The library's path as the process can open it: the same file under
/// its root directory, else a copy placed in its `/tmp` (a container).
fn library_for(pid: i32, library: &Path) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let library = library.canonicalize().map_err(|e| {
        format!(
            "cannot find the recorder library {}: {e}",
            library.display()
        )
    })?;
    let text = library.to_string_lossy().into_owned();
    let ours = std::fs::metadata(&library).map_err(|e| format!("{}: {e}", library.display()))?;
    let theirs = std::fs::metadata(target::seen_from_here(pid, &text));
    if theirs.is_ok_and(|t| t.dev() == ours.dev() && t.ino() == ours.ino()) {
        return Ok(text);
    }
    // Another filesystem root: place a copy where the process can read it,
    // in a directory of its own that no one else can have prepared.
    let copy = || -> std::io::Result<String> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let dir = format!("/tmp/heapreplay-{}-{}", std::process::id(), unique());
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(target::seen_from_here(pid, &dir))?;
        let name = format!("{dir}/librecord.so");
        let bytes = std::fs::read(&library)?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .custom_flags(libc::O_NOFOLLOW)
            .open(target::seen_from_here(pid, &name))?
            .write_all(&bytes)?;
        Ok(name)
    };
    copy().map_err(|e| {
        format!(
            "process {pid} runs under another root directory (a container) where {text} does not exist, and a copy cannot be placed in its /tmp: {e}"
        )
    })
}

/// A number unlikely to repeat: the clock's nanoseconds.
fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Stops a thread of the process that holds nothing the loader or the
/// allocator need, trying for a while.
fn stop_a_quiet_thread(pid: i32, maps: &[Mapping]) -> Result<inject::Stopped, inject::CallError> {
    let busy = |rip: u64| {
        maps.iter()
            .any(|m| rip >= m.start && rip < m.end && is_allocator_or_loader(m))
    };
    // Room a call needs below the stack pointer (the loader and the
    // recorder's setup), in the mapping that holds it.
    let roomy = |sp: u64| {
        maps.iter()
            .any(|m| sp >= m.start && sp < m.end && sp - m.start >= STACK_NEEDED)
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(3);
    loop {
        // Threads running in user space only after a second of waiting for
        // one in an idle system call.
        let patient = started.elapsed() < Duration::from_secs(1);
        let mut threads = target::threads(pid);
        if threads.is_empty() {
            return Err(inject::CallError::Exited);
        }
        threads.retain(|t| t.name != "heapreplay-wr");
        // Threads waiting in an idle system call first.
        threads.sort_by_key(|t| !t.syscall.is_some_and(|nr| IDLE_SYSCALLS.contains(&nr)));
        for t in &threads {
            if patient && !t.syscall.is_some_and(|nr| IDLE_SYSCALLS.contains(&nr)) {
                continue;
            }
            let stopped = match inject::stop(t.tid) {
                Ok(s) => s,
                Err(inject::CallError::Exited) => continue,
                Err(e) => return Err(e),
            };
            let nr = stopped.regs.orig_rax as i64;
            let quiet = roomy(stopped.regs.rsp)
                && if nr >= 0 {
                    IDLE_SYSCALLS.contains(&nr) && !swaps_signal_mask(nr, &stopped.regs)
                } else {
                    !busy(stopped.regs.rip)
                };
            if quiet {
                return Ok(stopped);
            }
            drop(stopped);
        }
        if Instant::now() > deadline {
            return Err(inject::CallError::Ptrace(
                "find a quiet thread",
                std::io::Error::other(
                    "every thread stayed busy inside the C library or the allocator for 3 s; try again",
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts recording process `pid` into `trace` (a path as the process
/// sees it, `%p` its pid) with the recorder `library`. `waiting` is told
/// if the process takes long to answer.
pub fn attach(
    pid: i32,
    library: &Path,
    trace: &str,
    waiting: &dyn Fn(),
) -> Result<Recording, String> {
    let status = refuse_status(pid)?;
    // Whatever step failed, a process that is gone by now exited during
    // the attach: that is what failed.
    attach_to(pid, &status, library, trace, waiting).map_err(|e| {
        match target::status(pid).map_or(true, |s| matches!(s.state, 'Z' | 'X')) {
            true => format!("process {pid} ({}) exited during attach", status.name),
            false => e,
        }
    })
}

/// [`attach`], once the process's status allows it.
fn attach_to(
    pid: i32,
    status: &target::Status,
    library: &Path,
    trace: &str,
    waiting: &dyn Fn(),
) -> Result<Recording, String> {
    let name = status.name.clone();
    let maps = target::maps(pid).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("no process {pid}"),
        _ => format!(
            "cannot read the memory map of process {pid}: {}",
            ptrace_advice(pid, status)
        ),
    })?;
    let Some(libc_map) = maps
        .iter()
        .find(|m| m.file_name().starts_with("libc.so") || m.file_name().starts_with("libc-"))
    else {
        // A process in its exit has no mappings left: not a static one.
        if maps.is_empty() {
            return Err(format!("process {pid} ({name}) exited during attach"));
        }
        let dynamic = maps.iter().any(|m| m.file_name().starts_with("ld-linux"));
        return Err(match dynamic {
            true => format!("process {pid} ({name}) has no C library (libc.so.6) loaded; heapreplay attach needs glibc"),
            false => format!("process {pid} ({name}) is statically linked: there is no dynamic loader to load the recorder; record it from its start (heapreplay record) with a dynamically linked build"),
        });
    };
    let existing = Recorder::find(pid, &maps)?;
    if let Some(r) = &existing {
        match r.state(pid) {
            Some(INERT) => {}
            Some(PRELOADED) => return Err(format!("process {pid} ({name}) is already recorded: librecord.so was preloaded into it (LD_PRELOAD)")),
            Some(ATTACHED) | Some(DETACHING) => return Err(format!("process {pid} ({name}) is already recorded by an earlier heapreplay attach; heapreplay detach {pid} stops that")),
            _ => return Err(format!("cannot read the recorder's state in process {pid}: {}", ptrace_advice(pid, status))),
        }
    }
    let library_path = match &existing {
        Some(r) => r.library.clone(),
        None => library_for(pid, library)?,
    };
    // A copy placed for the process goes once it is loaded (its mapping
    // stays; a later attach reuses that), or once loading it failed.
    struct Placed(Option<PathBuf>);
    impl Drop for Placed {
        fn drop(&mut self) {
            if let Some(file) = self.0.take() {
                let _ = std::fs::remove_file(&file);
                if let Some(dir) = file.parent() {
                    let _ = std::fs::remove_dir(dir);
                }
            }
        }
    }
    let _placed = Placed(
        (existing.is_none()
            && Path::new(&library_path) != library.canonicalize().unwrap_or_default())
        .then(|| target::seen_from_here(pid, &library_path)),
    );
    let libc = Loaded::find(
        &maps,
        &libc_map.path,
        &target::seen_from_here(pid, &libc_map.path),
    )
    .ok_or_else(|| format!("cannot read process {pid}'s C library ({})", libc_map.path))?;
    let dlopen = libc.symbol(&["dlopen", "__libc_dlopen_mode"]);
    let dlerror = libc.symbol(&["dlerror"]).map(|(a, _)| a);
    let trace = absolute(trace);
    let exited = || format!("process {pid} ({name}) exited during attach");
    let gone = || target::status(pid).map_or(true, |s| matches!(s.state, 'Z' | 'X'));
    let call_error = |e: inject::CallError| match e {
        inject::CallError::Exited => exited(),
        _ if gone() => exited(),
        inject::CallError::Ptrace(_, ref io) if io.raw_os_error() == Some(libc::EPERM) => {
            format!(
                "ptrace not permitted on process {pid}: {}",
                ptrace_advice(pid, status)
            )
        }
        e => format!("attaching to process {pid} failed: {e}"),
    };
    let mut stopped = stop_a_quiet_thread(pid, &maps).map_err(call_error)?;
    let paused_at = Instant::now();
    let tid = stopped.tid;
    let attach_at = match existing.as_ref().and_then(|r| r.attach) {
        Some(at) => at,
        None => {
            let (dlopen, which) = dlopen.ok_or_else(|| {
                format!(
                    "process {pid}'s C library ({}) has no dlopen",
                    libc_map.path
                )
            })?;
            let mode = match which.as_str() {
                "dlopen" => libc::RTLD_NOW as u64,
                _ => libc::RTLD_NOW as u64 | RTLD_DLOPEN,
            };
            let handle = stopped
                .call(dlopen, Some(&library_path), &[mode], waiting)
                .map_err(call_error)?;
            if handle == 0 {
                let why = dlerror
                    .and_then(|f| stopped.call(f, None, &[], waiting).ok())
                    .filter(|&p| p != 0)
                    .and_then(|p| read_memory(pid, p, 512))
                    .map(|b| {
                        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
                        String::from_utf8_lossy(&b[..end]).into_owned()
                    })
                    .unwrap_or_else(|| "no reason given".into());
                return Err(format!(
                    "process {pid} could not load {library_path}: {why}"
                ));
            }
            let maps = target::maps(pid).map_err(|_| exited())?;
            let r = Recorder::find(pid, &maps)?.ok_or_else(|| {
                format!("process {pid} loaded {library_path}, but it is not in its memory map")
            })?;
            r.attach
                .ok_or_else(|| format!("{library_path} has no heapreplay_attach"))?
        }
    };
    let code = stopped
        .call(attach_at, Some(&trace), &[], waiting)
        .map_err(call_error)? as i64 as i32 as i64;
    stopped.resume().map_err(call_error)?;
    let paused = paused_at.elapsed();
    match code {
        0 => Ok(Recording {
            pid,
            trace_here: match target::same_root(pid) {
                true => PathBuf::from(&trace),
                false => target::seen_from_here(pid, &trace),
            }
            .to_string_lossy()
            .replace("%p", &pid.to_string())
            .into(),
            trace: trace.replace("%p", &pid.to_string()),
            tid,
            paused,
            library: library_path,
        }),
        BUSY => Err(format!("process {pid} ({name}) is already being recorded")),
        NO_ALLOCATOR => Err(format!(
            "the recorder found no allocator in process {pid} ({name})"
        )),
        NO_THREAD => Err(format!(
            "the recorder could not start its writer thread in process {pid} ({name})"
        )),
        errno => Err(format!(
            "process {pid} ({name}) cannot create the trace {trace}: {}",
            std::io::Error::from_raw_os_error(errno as i32)
        )),
    }
}

/// `path` made absolute from this process's working directory.
fn absolute(path: &str) -> String {
    match Path::new(path).is_absolute() {
        true => path.to_string(),
        false => std::env::current_dir()
            .map(|d| d.join(path).to_string_lossy().into_owned())
            .unwrap_or_else(|_| path.to_string()),
    }
}

/// What [`detach`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Detached {
    /// The recording stopped and its trace is complete.
    Stopped,
    /// The process exited first (its trace was completed at exit).
    Exited,
}

/// Stops the recording an attach started in process `pid`, waiting at
/// most `limit` for the recorder to finish its trace.
pub fn detach(pid: i32, limit: Duration) -> Result<Detached, String> {
    let status = target::status(pid).map_err(|_| format!("no process {pid}"))?;
    let maps = target::maps(pid).map_err(|_| {
        format!(
            "cannot read the memory map of process {pid}: {}",
            ptrace_advice(pid, &status)
        )
    })?;
    let recorder = Recorder::find(pid, &maps)?.ok_or_else(|| {
        format!(
            "process {pid} ({}) is not recorded (no librecord.so loaded)",
            status.name
        )
    })?;
    match recorder.state(pid) {
        Some(ATTACHED) => {}
        Some(DETACHING) => {}
        Some(PRELOADED) => {
            return Err(format!(
            "process {pid} ({}) is recorded from its start (LD_PRELOAD), which cannot be detached",
            status.name
        ))
        }
        Some(_) => {
            return Err(format!(
                "process {pid} ({}) is not recorded (detached already)",
                status.name
            ))
        }
        None => {
            return Err(format!(
                "cannot read the recorder's state in process {pid}: {}",
                ptrace_advice(pid, &status)
            ))
        }
    }
    // The `detach` field follows `state` in the control block.
    write_u32(pid, recorder.control + 4, 1)
        .map_err(|e| format!("cannot ask process {pid} to detach: {e}"))?;
    wait_inert(pid, &recorder, limit)
}

fn wait_inert(pid: i32, recorder: &Recorder, limit: Duration) -> Result<Detached, String> {
    let deadline = Instant::now() + limit;
    loop {
        match recorder.state(pid) {
            Some(INERT) => return Ok(Detached::Stopped),
            None if target::status(pid).ok().is_none_or(|s| s.state == 'Z') => {
                return Ok(Detached::Exited)
            }
            _ => {}
        }
        if Instant::now() > deadline {
            return Err(format!(
                "process {pid} did not finish detaching within {} s (is it stopped?)",
                limit.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True while process `pid` is recorded by an attach.
pub fn recording(pid: i32) -> bool {
    let Ok(maps) = target::maps(pid) else {
        return false;
    };
    matches!(Recorder::find(pid, &maps), Ok(Some(r)) if r.state(pid) == Some(ATTACHED))
}
