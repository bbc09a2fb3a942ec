//! `heapreplay`: replays a trace written by `librecord.so` into gperftools
//! heap profiles, and runs programs under the recorder.

mod cli;
mod elf;
mod info;
mod progress;
mod record;
mod replay;
mod threads;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        Some(cli::Command::Record(args)) => record::run(&args),
        Some(cli::Command::Info(args)) => info::run(&args),
        None => replay::run(&cli.replay),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("heapreplay: {message}");
            ExitCode::from(1)
        }
    }
}
