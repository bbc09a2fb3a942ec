//! `heapreplay attach` and `heapreplay detach`: record a process that is
//! already running (see the `heapreplay-attach` crate), until Ctrl-C.

use crate::cli::{AttachArgs, DetachArgs};
use heapreplay_attach::Detached;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// The signal that asked this command to stop (0: none yet).
static STOP: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop(sig: i32) {
    STOP.store(sig, Ordering::SeqCst);
}

/// How long a detach may take before it is given up on.
const DETACH_LIMIT: Duration = Duration::from_secs(10);

/// Catches Ctrl-C, SIGTERM and SIGHUP: from now on they end the recording,
/// never this command halfway through changing the process.
fn catch_stop_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installing a handler that only stores to an atomic.
        unsafe { libc::signal(sig, on_stop as *const () as libc::sighandler_t) };
    }
}

/// `heapreplay attach PID [-o PATH]`.
pub fn attach(args: &AttachArgs) -> Result<ExitCode, String> {
    catch_stop_signals();
    let library = crate::record::recorder_library()?;
    let pid = args.pid;
    let trace = args
        .output
        .clone()
        .unwrap_or_else(|| format!("heapreplay.{pid}.zst"));
    let waiting = || {
        eprintln!("heapreplay: waiting for process {pid} to load the recorder (a thread of it is busy in the loader)");
    };
    let recording = heapreplay_attach::attach(pid, &library, &trace, &waiting)?;
    eprintln!(
        "heapreplay: recording process {pid} to {} (its thread {} was stopped for {:.1} ms); Ctrl-C or `heapreplay detach {pid}` stops",
        recording.trace_here.display(),
        recording.tid,
        recording.paused.as_secs_f64() * 1000.0
    );
    loop {
        std::thread::sleep(Duration::from_millis(50));
        if STOP.load(Ordering::SeqCst) != 0 {
            return match heapreplay_attach::detach(pid, DETACH_LIMIT)? {
                Detached::Stopped => {
                    eprintln!(
                        "heapreplay: detached from process {pid}; the trace is {}",
                        recording.trace_here.display()
                    );
                    then(&recording.trace_here);
                    Ok(ExitCode::SUCCESS)
                }
                Detached::Exited => exited(pid, &recording.trace_here),
            };
        }
        if heapreplay_attach::target::status(pid).map_or(true, |s| s.state == 'Z') {
            return exited(pid, &recording.trace_here);
        }
        if !heapreplay_attach::recording(pid) {
            eprintln!(
                "heapreplay: process {pid} was detached; the trace is {}",
                recording.trace_here.display()
            );
            then(&recording.trace_here);
            return Ok(ExitCode::SUCCESS);
        }
    }
}

fn exited(pid: i32, trace: &std::path::Path) -> Result<ExitCode, String> {
    eprintln!(
        "heapreplay: process {pid} exited; the trace is complete: {}",
        trace.display()
    );
    then(trace);
    Ok(ExitCode::SUCCESS)
}

fn then(trace: &std::path::Path) {
    let t = trace.display();
    eprintln!("Then: heapreplay top {t}, heapreplay leaks {t}, heapreplay info {t}");
}

/// `heapreplay detach PID`.
pub fn detach(args: &DetachArgs) -> Result<ExitCode, String> {
    let pid = args.pid;
    match heapreplay_attach::detach(pid, DETACH_LIMIT)? {
        Detached::Stopped => eprintln!("heapreplay: detached from process {pid}"),
        Detached::Exited => eprintln!("heapreplay: process {pid} exited while detaching"),
    }
    Ok(ExitCode::SUCCESS)
}
