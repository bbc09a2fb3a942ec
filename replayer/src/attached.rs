//! What a trace that began with `heapreplay attach` covers: said once in
//! every output, so that no one takes its profiles for the whole run.

use heapreplay_engine::trace::Trace;
use std::time::{Duration, UNIX_EPOCH};

/// When the attach was, and how long the process had run by then:
/// `2026-12-03T14:57:23Z (2h 5m after the process started)`. `None` if the
/// trace began with the process.
pub fn when(trace: &Trace) -> Option<String> {
    let attached = trace.attached?;
    let at = trace.info.start_unix_ns;
    let mut text =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_nanos(at)).to_string();
    let started = attached.process_start_unix_ns;
    if started > 0 && at >= started {
        let ran = Duration::from_secs((at - started) / 1_000_000_000);
        text += &format!(
            " ({} after the process started)",
            humantime::format_duration(ran)
        );
    }
    Some(text)
}

/// The line at the head of a report on a trace that began with an attach:
/// what it covers, and the frees of blocks from before (`unseen_frees`),
/// which no profile subtracts.
pub fn note(trace: &Trace, unseen_frees: u64) -> Option<String> {
    let when = when(trace)?;
    Some(format!(
        "Since the attach at {when}: allocations before it are not in this trace; {} of such blocks counted apart, never subtracted.",
        heapreplay_outputs::report::counted(unseen_frees, "free")
    ))
}

/// The same, for a profile's comment or a chart's title: `since the attach
/// at ...`.
pub fn since(trace: &Trace) -> Option<String> {
    when(trace).map(|when| format!("since the attach at {when}"))
}
