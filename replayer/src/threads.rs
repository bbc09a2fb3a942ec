//! How many threads a replay uses.

/// Sets up the decoding pool for `threads` in all (default: every core) and
/// says whether to pipeline: with one thread, decoding and replaying take
/// turns; with N, one thread replays while N-1 decode.
pub fn setup(threads: Option<usize>) -> Result<bool, String> {
    let n = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    rayon::ThreadPoolBuilder::new()
        .num_threads((n - 1).max(1))
        .build_global()
        .map_err(|e| format!("cannot start {n} threads: {e}"))?;
    Ok(n > 1)
}
