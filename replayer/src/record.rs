//! `heapreplay record`: runs a program with the recorder preloaded.

use crate::cli::{CommonArgs, Format, RecordArgs, ReplayArgs, RuleArgs};
use crate::keep::Keeper;
use heapreplay_outputs::profile::SampleKind;
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

/// Replays the trace of `child` in follow mode as it grows, with the rules
/// it was recorded under, until the program ends (or Ctrl-C).
fn follow_beside(child: &mut std::process::Child, trace: &Path) -> std::io::Result<()> {
    while !trace.exists() {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let args = ReplayArgs {
        trace: Some(trace.to_path_buf()),
        rules: RuleArgs::default(),
        output: None,
        format: Format::Heap,
        sample: SampleKind::default(),
        follow: true,
        common: CommonArgs::default(),
    };
    if let Err(e) = crate::follow::run(&args) {
        eprintln!("heapreplay: {e}");
    }
    Ok(())
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
    // gperftools' recipe: the recorder names the trace after HEAPPROFILE
    // (and a forked child's after its own profiles).
    let heapprofile = std::env::var("HEAPPROFILE").ok().filter(|p| !p.is_empty());
    let output = match (&args.output, &heapprofile) {
        (Some(output), _) => output.clone(),
        (None, Some(prefix)) => format!("{prefix}.trace.zst"),
        (None, None) => "heapreplay.%p.zst".to_string(),
    };
    let mut command = Command::new(program);
    command.args(rest).env("LD_PRELOAD", preload);
    if args.output.is_some() || heapprofile.is_none() {
        command.env("HEAPREPLAY_OUT", &output);
    }
    // The recorder stops if the trace outgrows the size many times over
    // (should folding fail here).
    if let Some(size) = max_size {
        command.env("HEAPREPLAY_MAX_SIZE", size.to_string());
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let pid = child.id();
    let trace = output.replace("%p", &pid.to_string());
    let lost = |e: std::io::Error| format!("lost track of {program}: {e}");
    let status = match keeper.as_mut() {
        // The profiles gperftools would write, as the program runs.
        None if heapprofile.is_some() => {
            follow_beside(&mut child, Path::new(&trace)).map_err(lost)?;
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
        match &heapprofile {
            Some(_) => eprintln!("heapreplay: trace written to {trace}; its profiles are written as gperftools names them; for others: heapreplay --interval 10MB {trace}"),
            None => eprintln!("heapreplay: trace written to {trace}; replay it with: heapreplay --interval 10MB {trace}"),
        }
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code as u8),
        (None, Some(sig)) => ExitCode::from(128 + sig as u8),
        _ => ExitCode::from(1),
    })
}
