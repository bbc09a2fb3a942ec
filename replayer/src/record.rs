//! `heapreplay record`: runs a program with the recorder preloaded.

use crate::cli::RecordArgs;
use crate::keep::Keeper;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Finds librecord.so: `HEAPREPLAY_LIB`, else beside this executable (a
/// build tree), else in `../lib/heapreplay/` from it (as `scripts/install`
/// places it).
fn recorder_library() -> Result<PathBuf, String> {
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
    let mut command = Command::new(program);
    command
        .args(rest)
        .env("LD_PRELOAD", preload)
        .env("HEAPREPLAY_OUT", &args.output);
    // The recorder stops if the trace outgrows the size many times over
    // (should folding fail here).
    if let Some(size) = max_size {
        command.env("HEAPREPLAY_MAX_SIZE", size.to_string());
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let pid = child.id();
    let trace = args.output.replace("%p", &pid.to_string());
    let lost = |e: std::io::Error| format!("lost track of {program}: {e}");
    let status = match keeper.as_mut() {
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
        eprintln!("heapreplay: trace written to {trace}; replay it with: heapreplay --interval 10MB {trace}");
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code as u8),
        (None, Some(sig)) => ExitCode::from(128 + sig as u8),
        _ => ExitCode::from(1),
    })
}
