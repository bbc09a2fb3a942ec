//! A progress bar on stderr for replays that take more than a second; none
//! when stderr is not a terminal or with `--quiet`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Events between updates: cheap enough to check on every event.
const EVERY: u64 = 1 << 16;

/// Counts events through a pass and shows it once the pass is slow enough
/// to be worth watching.
pub struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
    shown: bool,
    pending: u64,
}

impl Progress {
    /// A progress over `total` events, labelled `what`.
    pub fn new(total: u64, what: &str, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:40}] {human_pos}/{human_len} events, {eta} left",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(what.to_string());
            bar
        });
        Self {
            bar,
            started: Instant::now(),
            shown: false,
            pending: 0,
        }
    }

    /// Prints a line on stderr without tearing the bar.
    pub fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// `n` more events.
    pub fn add(&mut self, n: u64) {
        self.pending += n;
        self.flush();
    }

    /// One more event.
    #[inline]
    pub fn tick(&mut self) {
        self.pending += 1;
        if self.pending >= EVERY {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if let Some(bar) = &self.bar {
            bar.inc(self.pending);
            if !self.shown && self.started.elapsed() > Duration::from_secs(1) {
                bar.set_draw_target(ProgressDrawTarget::stderr());
                self.shown = true;
            }
        }
        self.pending = 0;
    }

    /// The pass is over: the bar goes away.
    pub fn finish(&mut self) {
        self.flush();
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
