//! Writes a synthetic heapreplay trace for replay benchmarks.
//!
//! Usage: heapreplay-synth OUT EVENTS [THREADS] [STACKS] [LIVE_PER_THREAD] [SEED]

use heapreplay_format::synth::{generate, Spec};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: heapreplay-synth OUT EVENTS [THREADS] [STACKS] [LIVE_PER_THREAD] [SEED]");
        return ExitCode::from(2);
    }
    let num = |i: usize, default: u64| -> Result<u64, String> {
        args.get(i).map_or(Ok(default), |s| {
            s.parse().map_err(|_| format!("'{s}' is not a number"))
        })
    };
    let d = Spec::default();
    let spec = (|| -> Result<Spec, String> {
        Ok(Spec {
            events: num(2, d.events)?,
            threads: num(3, u64::from(d.threads))? as u32,
            stacks: num(4, u64::from(d.stacks))?.max(1) as u32,
            live_per_thread: num(5, d.live_per_thread as u64)?.max(1) as usize,
            seed: num(6, d.seed)?,
        })
    })();
    let spec = match spec {
        Ok(s) => s,
        Err(e) => {
            eprintln!("heapreplay-synth: {e}");
            return ExitCode::from(2);
        }
    };
    let file = match std::fs::File::create(&args[1]) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("heapreplay-synth: {}: cannot write: {e}", args[1]);
            return ExitCode::from(1);
        }
    };
    let mut out = std::io::BufWriter::new(file);
    match generate(&spec, &mut out).and_then(|n| std::io::Write::flush(&mut out).map(|_| n)) {
        Ok(n) => {
            eprintln!("heapreplay-synth: wrote {n} events to {}", args[1]);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("heapreplay-synth: {}: {e}", args[1]);
            ExitCode::from(1)
        }
    }
}
