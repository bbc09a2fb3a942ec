//! `heapreplay record`: runs a program with the recorder preloaded.

use crate::cli::{CommonArgs, Format, RecordArgs, ReplayArgs, RuleArgs};
use crate::keep::Keeper;
use heapreplay_format::settings::Settings;
use heapreplay_outputs::profile::SampleKind;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Finds librecord.so: `HEAPREPLAY_LIB`, else beside this executable (a
/// build tree), else in `../lib/heapreplay/` from it (as `scripts/install`
/// places it).
pub(crate) fn recorder_library() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("HEAPREPLAY_LIB") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own executable: {e}"))?;
    let beside = exe.with_file_name("librecord.so");
    let installed = exe
        .parent()
        .and_then(|bin| bin.parent())
        .map(|prefix| prefix.join("lib/heapreplay/librecord.so"));
    let candidates: Vec<PathBuf> = std::iter::once(beside).chain(installed).collect();
    if let Some(found) = candidates.iter().find(|p| p.exists()) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    Err(format!(
        "cannot find the recorder library librecord.so (looked for {}); install heapreplay with scripts/install, or set HEAPREPLAY_LIB to its path",
        looked.join(" and ")
    ))
}

/// The trace `child` writes under gperftools' `HEAPPROFILE` (named after
/// its profiles' prefix; or moved aside to `PATH.PID`, when another
/// process holds the path): the first of those whose first record is the
/// child's. `None` once the child has ended without one.
fn trace_of(
    child: &mut std::process::Child,
    paths: &[PathBuf],
) -> std::io::Result<Option<PathBuf>> {
    loop {
        let ended = child.try_wait()?.is_some();
        for path in paths {
            if first_pid(path) == Some(child.id()) {
                return Ok(Some(path.clone()));
            }
        }
        if ended {
            return Ok(None);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The pid the trace at `path` names in its first record, if it has one
/// (a trace being created has none yet; an older one names another).
fn first_pid(path: &Path) -> Option<u32> {
    use heapreplay_format::header::RECORD_PREFIX_LEN;
    use heapreplay_format::{FileInfo, RawRecord, RecordHeader, RecordKind};
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut prefix = [0u8; RECORD_PREFIX_LEN];
    file.read_exact(&mut prefix).ok()?;
    let header = RecordHeader::decode(&prefix).ok()?;
    if header.kind != RecordKind::FileInfo || header.payload_len > 1 << 20 {
        return None;
    }
    let mut payload = vec![0u8; header.payload_len as usize];
    file.read_exact(&mut payload).ok()?;
    let record = RawRecord {
        header,
        offset: 0,
        payload: &payload,
    };
    let raw = record.decompress().ok()?;
    heapreplay_format::info::from_bytes::<FileInfo>(&raw).map(|info| info.pid)
}

/// The replay of `trace` with the rules it was recorded under.
fn replay_args(trace: &Path, follow: bool) -> ReplayArgs {
    ReplayArgs {
        trace: Some(trace.to_path_buf()),
        rules: RuleArgs::default(),
        output: None,
        format: Format::Heap,
        sample: SampleKind::default(),
        follow,
        common: CommonArgs::default(),
    }
}

/// Writes the profiles gperftools would write for `child`'s trace as it
/// grows (follow mode), until the program ends; then, if following failed
/// or was stopped, once more from the finished trace. Returns the trace.
fn profiles_beside(
    child: &mut std::process::Child,
    paths: &[PathBuf],
) -> std::io::Result<Option<PathBuf>> {
    let Some(trace) = trace_of(child, paths)? else {
        return Ok(None);
    };
    let followed = crate::follow::run(&replay_args(&trace, true));
    child.wait()?;
    if !matches!(&followed, Ok(code) if *code == ExitCode::SUCCESS) {
        if let Err(e) = &followed {
            eprintln!("heapreplay: {e}; replaying the finished trace");
        }
        if let Err(e) = crate::replay::run(&replay_args(&trace, false)) {
            eprintln!("heapreplay: {e}");
        }
    }
    Ok(Some(trace))
}

/// Runs the program under the recorder and exits as it did.
pub fn run(args: &RecordArgs) -> Result<ExitCode, String> {
    let lib = recorder_library()?;
    let lib = std::fs::canonicalize(&lib).unwrap_or(lib);
    let preload = match std::env::var("LD_PRELOAD") {
        Ok(old) if !old.is_empty() => format!("{}:{old}", lib.display()),
        _ => lib.display().to_string(),
    };
    let (program, rest) = args.program.split_first().ok_or("no program given")?;
    // Say so rather than run a program the recorder cannot see and leave
    // an empty trace behind.
    if let Some(why) = crate::elf::find_program(program).and_then(|p| crate::elf::unrecordable(&p))
    {
        return Err(format!(
            "{why}; run it without `heapreplay record` if you only want it to run"
        ));
    }
    let max_size = match args.max_size {
        Some(size) => Some(size),
        None => crate::cli::max_size_from_env()?,
    };
    let mut keeper = max_size.map(Keeper::new).transpose()?;
    // gperftools' recipe: without -o, the recorder names the trace after
    // HEAPPROFILE, as the program's profiles are named.
    let settings = Settings::from_lookup(|name| std::env::var(name).ok());
    let by_heapprofile =
        args.output.is_none() && settings.get("HEAPPROFILE").is_some_and(|p| !p.is_empty());
    let output = args.output.as_deref().unwrap_or("heapreplay.%p.zst");
    let mut command = Command::new(program);
    command.args(rest).env("LD_PRELOAD", preload);
    match by_heapprofile {
        // Not after a HEAPREPLAY_OUT left in the environment.
        true => command.env_remove("HEAPREPLAY_OUT"),
        false => command.env("HEAPREPLAY_OUT", output),
    };
    // The recorder stops if the trace outgrows the size many times over
    // (should folding fail here).
    if let Some(size) = max_size {
        command.env("HEAPREPLAY_MAX_SIZE", size.to_string());
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let pid = child.id();
    let mut trace = match settings.profile_prefix(pid, false) {
        Some(prefix) if by_heapprofile => format!("{prefix}.trace.zst"),
        _ => output.replace("%p", &pid.to_string()),
    };
    let lost = |e: std::io::Error| format!("lost track of {program}: {e}");
    // The profiles gperftools would write, as the program runs.
    let follow = by_heapprofile && keeper.is_none();
    let status = match keeper.as_mut() {
        None if follow => {
            let named = PathBuf::from(&trace);
            let aside = PathBuf::from(format!("{trace}.{pid}"));
            let found = profiles_beside(&mut child, &[named, aside]).map_err(lost)?;
            if let Some(found) = found {
                trace = found.display().to_string();
            }
            child.wait().map_err(lost)?
        }
        None => child.wait().map_err(lost)?,
        // Beside the program, never inside it: the trace is folded here.
        Some(keeper) => loop {
            let exited = child.try_wait().map_err(lost)?;
            if let Err(e) = keeper.look(Path::new(&trace)) {
                eprintln!("heapreplay: {e}; the trace is no longer kept under the size");
                break child.wait().map_err(lost)?;
            }
            match exited {
                Some(status) => break status,
                None => std::thread::sleep(crate::keep::LOOK_EVERY),
            }
        },
    };
    if std::path::Path::new(&trace).exists() {
        match follow {
            true => eprintln!("heapreplay: trace written to {trace}, its profiles as gperftools names them; other rules: heapreplay --interval 10MB {trace}"),
            false => eprintln!("heapreplay: trace written to {trace}; replay it with: heapreplay --interval 10MB {trace}"),
        }
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code as u8),
        (None, Some(sig)) => ExitCode::from(128 + sig as u8),
        _ => ExitCode::from(1),
    })
}
