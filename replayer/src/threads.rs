//! How many threads a replay uses.

/// Sets up the decoding pool for `threads` (default: every core) and says
/// whether to pipeline: with one thread, decoding and replaying take turns;
/// with N, one thread replays while N decode. The replaying thread waits
/// whenever it is ahead (a compacted trace's parts are applied whole), and
/// the decoders wait whenever it is behind: N + 1 threads, N of them busy
/// at most.
pub fn setup(threads: Option<usize>) -> Result<bool, String> {
    let n = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .map_err(|e| format!("cannot start {n} threads: {e}"))?;
    Ok(n > 1)
}
