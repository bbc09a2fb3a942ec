//! `heapreplay export --parquet`: one replay pass feeding the three tables
//! of `heapreplay_outputs::parquet`.

use crate::cli::ExportArgs;
use std::process::ExitCode;

/// Writes the trace's events, stacks and snapshots (at the chosen rules; by
/// default one at the end) as Parquet files into the output folder.
pub fn run(args: &ExportArgs) -> Result<ExitCode, String> {
    #[cfg(feature = "parquet")]
    {
        parquet::run(args)
    }
    #[cfg(not(feature = "parquet"))]
    {
        let _ = args;
        Err("this heapreplay was built without Parquet support (cargo feature `parquet`)".into())
    }
}

#[cfg(feature = "parquet")]
mod parquet {
    use crate::cli::ExportArgs;
    use crate::pass;
    use heapreplay_engine::clock::SeqClock;
    use heapreplay_engine::trace::io_text;
    use heapreplay_format::EventKind;
    use heapreplay_outputs::parquet::{Constant, Events, Snapshots, StackRows, Table, FILES};
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;

    /// The default folder: the trace path without `.zst`, plus `.parquet`.
    fn default_dir(trace: &Path) -> PathBuf {
        let mut s = crate::replay::default_prefix(trace).into_os_string();
        s.push(".parquet");
        PathBuf::from(s)
    }

    /// Writes the three files into the output folder.
    pub(super) fn run(args: &ExportArgs) -> Result<ExitCode, String> {
        let dir = args
            .output
            .clone()
            .unwrap_or_else(|| default_dir(&args.trace));
        let (trace, pipeline) = pass::open(&args.trace, &args.common)?;
        if dir.exists() && !dir.is_dir() {
            return Err(format!("{}: not a folder", dir.display()));
        }
        // The folder itself is made, not its parents: a mistyped path is
        // refused, as every other output refuses one.
        match std::fs::create_dir(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(format!("{}: cannot create: {}", dir.display(), io_text(&e)))
            }
            _ => {}
        }
        let result = write(args, &trace, pipeline, &dir);
        if result.is_err() {
            // A file without its footer is no Parquet file: leave none
            // behind to break a query over a whole fleet's folders.
            for name in FILES {
                let _ = std::fs::remove_file(dir.join(name));
            }
        }
        result
    }

    fn write(
        args: &ExportArgs,
        trace: &heapreplay_engine::Trace,
        pipeline: bool,
        dir: &Path,
    ) -> Result<ExitCode, String> {
        let quiet = args.common.quiet;
        let name = args.trace.file_name().unwrap_or(args.trace.as_os_str());
        let constant = Constant::new(&name.to_string_lossy(), trace.info.pid);
        let [events_file, stacks_file, snapshots_file] = FILES;
        let mut events = Events::new(
            Table::create(
                dir,
                events_file,
                Events::fields(),
                &["address"],
                &["seq", "ns"],
            )?,
            &constant,
            SeqClock::new(&trace.clock),
        );
        let stack_table = Table::create(dir, stacks_file, StackRows::fields(), &["address"], &[])?;
        let mut snapshots = Snapshots::new(
            Table::create(dir, snapshots_file, Snapshots::fields(), &[], &[])?,
            &constant,
            SeqClock::new(&trace.clock),
        );

        // The pass cannot be stopped from `each`: a failed events file is
        // reported at the next snapshot, or after the pass.
        let failed = std::cell::RefCell::new(None::<String>);
        // Only the stacks that events use are written: a trace may define
        // stacks no event names, and a crafted one millions of them.
        let mut used: Vec<bool> = Vec::new();
        let plan = pass::plan(&args.rules);
        let result = pass::run(
            trace,
            &plan,
            pipeline,
            quiet,
            pass::From::Beginning,
            |heap, trigger, seq, _| {
                if let Some(message) = failed.borrow().clone() {
                    return Err(message);
                }
                snapshots.take(heap, trigger, seq)
            },
            Some(&mut |_, e| {
                if e.kind == EventKind::Alloc {
                    let id = e.stack as usize;
                    if id >= used.len() {
                        used.resize(id + 1, false);
                    }
                    used[id] = true;
                }
                if failed.borrow().is_none() {
                    if let Err(message) = events.push(e) {
                        *failed.borrow_mut() = Some(message);
                    }
                }
            }),
        );
        if let Some(message) = failed.into_inner() {
            return Err(message);
        }
        let (outcome, code) = result?;

        let ids: Vec<u32> = (0..used.len() as u32)
            .filter(|&id| used[id as usize] && trace.stacks.contains(id))
            .collect();
        let mut stacks = pass::stacks(trace, &args.common);
        let mut stack_rows = StackRows::new(stack_table, &constant);
        stack_rows.write_all(&ids, &mut stacks)?;

        let wrote = [events.close()?, stack_rows.close()?, snapshots.close()?];
        if !quiet {
            if outcome.snapshots == 0 {
                eprintln!(
                    "heapreplay: {}: no snapshot point matched; snapshots.parquet is empty",
                    args.trace.display()
                );
            }
            eprintln!("heapreplay: wrote {}", wrote.join(", "));
        }
        Ok(code)
    }
}
