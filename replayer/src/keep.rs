//! `heapreplay keep`, and `heapreplay record --max-size`: the process
//! beside a recorded program that keeps its trace under a size on disk by
//! folding the trace's oldest part (`heapreplay_compact::fold`).

use crate::cli::KeepArgs;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// How often the trace's size is looked at.
pub const LOOK_EVERY: Duration = Duration::from_millis(100);

/// Folds a trace when its size on disk passes 3/4 of a limit, down to
/// about half of it.
pub struct Keeper {
    max_size: u64,
    pipeline: bool,
    folds: u64,
}

impl Keeper {
    /// A keeper for `max_size` bytes on disk.
    pub fn new(max_size: u64) -> Result<Self, String> {
        Ok(Self {
            max_size,
            pipeline: crate::threads::setup(None)?,
            folds: 0,
        })
    }

    /// Folds the trace at `path` if it has grown past the limit's 3/4.
    pub fn look(&mut self, path: &Path) -> Result<(), String> {
        if disk_use(path) <= self.max_size / 4 * 3 {
            return Ok(());
        }
        if heapreplay_compact::fold::fold(path, self.max_size / 2, self.pipeline)?.is_some() {
            self.folds += 1;
        }
        Ok(())
    }

    /// Folds made so far.
    pub fn folds(&self) -> u64 {
        self.folds
    }
}

/// Bytes the file at `path` takes on disk (0 if it does not exist).
pub fn disk_use(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

/// True if a recorder holds the trace at `path`: it keeps an exclusive
/// lock on it while it records. Read from `/proc/locks`, not by taking a
/// lock, which a recorder claiming the path at that moment would find taken
/// (and write elsewhere).
fn recording(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    let dev = meta.dev();
    let file = format!(
        "{:02x}:{:02x}:{}",
        libc::major(dev),
        libc::minor(dev),
        meta.ino()
    );
    std::fs::read_to_string("/proc/locks").is_ok_and(|locks| {
        locks.lines().any(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields.contains(&"FLOCK")
                && fields.contains(&"WRITE")
                && fields.contains(&file.as_str())
        })
    })
}

/// Keeps the trace under the size until its recording ends.
pub fn run(args: &KeepArgs) -> Result<ExitCode, String> {
    let max_size = match args.max_size {
        Some(size) => size,
        None => crate::cli::max_size_from_env()?
            .ok_or("no size given: --max-size SIZE, or HEAPREPLAY_MAX_SIZE")?,
    };
    let mut keeper = Keeper::new(max_size)?;
    let path = &args.trace;
    // Wait for the recording to start, then keep it until it ends.
    while !recording(path) && !path.exists() {
        std::thread::sleep(LOOK_EVERY);
    }
    loop {
        let ended = !recording(path);
        keeper.look(path)?;
        if ended {
            break;
        }
        std::thread::sleep(LOOK_EVERY);
    }
    eprintln!(
        "heapreplay: {}: recording ended; {} on disk after {} fold{}",
        path.display(),
        heapreplay_outputs::report::human(disk_use(path)),
        keeper.folds(),
        if keeper.folds() == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}
