//! `heapreplay --follow`: replaying a trace as it grows, gperftools' live
//! dumping with the rules chosen at replay time.
//!
//! Each round opens the trace again and, while its process still writes it,
//! replays the part whose events are on disk and whose times are final
//! ([`Live::timed_below`](heapreplay_engine::Live)): every snapshot point
//! decided there is the one a replay of the finished trace decides, so its
//! file is that replay's file. Snapshots already handled are counted and
//! skipped; a file already there with the same bytes is not written again,
//! so a restart writes nothing twice. Once the trace is finished (an End
//! record, or its process gone), one last pass writes the rest, the
//! end-of-trace snapshot included, and reports as a plain replay does.
//!
//! Each round goes on from where the last one stood (the live blocks and
//! the snapshot engine's state are kept between rounds), so a round costs
//! only the events new since the last; only the records that can hold them
//! are decoded.

use crate::cli::ReplayArgs;
use crate::pass::{self, Followed};
use crate::replay::{write, Rules, Span};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often the trace is looked at for new progress.
const POLL: Duration = Duration::from_millis(200);

/// Exit status after Ctrl-C (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

/// Set by the first Ctrl-C.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Lets Ctrl-C end the follow after the current round instead of killing
/// it in the middle of a file.
fn catch_interrupt() {
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_interrupt as *const () as usize;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
    }
}

/// Follows the trace until it is finished or Ctrl-C.
pub fn run(args: &ReplayArgs) -> Result<ExitCode, String> {
    let path = args.trace.as_deref().ok_or("no trace given")?;
    if args.rules.at_peak {
        return Err(
            "--at-peak needs the whole run, which --follow does not have yet: replay the trace once it is finished"
                .into(),
        );
    }
    let mut rules = None;
    let quiet = args.common.quiet;
    let pipeline = crate::threads::setup(args.common.threads)?;
    catch_interrupt();
    let mut followed = Followed::default();
    let mut said = false;
    loop {
        let trace = pass::open_trace(path)?;
        let rules = rules.get_or_insert_with(|| Rules::of(args, &trace.settings));
        let Some(live) = trace.live else {
            // Finished: the rest, the end-of-trace snapshot and the report.
            let span = Span::Rest {
                followed: &mut followed,
            };
            let done = write(&trace, rules, args, pipeline, span)?;
            if !quiet {
                eprintln!(
                    "heapreplay: {}: the trace is finished; {} snapshots in all",
                    path.display(),
                    done.count
                );
            }
            return Ok(done.code);
        };
        if !said && !quiet {
            eprintln!(
                "heapreplay: following {} (written by pid {}); Ctrl-C to stop",
                path.display(),
                live.pid
            );
            said = true;
        }
        if live.timed_below > followed.replayed_below() {
            let span = Span::Until {
                until: live.timed_below,
                followed: &mut followed,
            };
            write(&trace, rules, args, pipeline, span)?;
        }
        drop(trace);
        if INTERRUPTED.load(Ordering::SeqCst) {
            if !quiet {
                eprintln!(
                    "heapreplay: {}: stopped; {} snapshots so far (run again to go on)",
                    path.display(),
                    followed.snapshots()
                );
            }
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
        std::thread::sleep(POLL);
    }
}
