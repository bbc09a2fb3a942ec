//! `heapreplay`: replays a trace written by `librecord.so` into gperftools
//! heap profiles, and runs programs under the recorder.

mod argv;
mod attach;
mod attached;
mod cli;
mod compact;
mod diff;
mod elf;
mod export;
mod follow;
mod gperftools;
mod info;
mod keep;
mod pass;
mod progress;
mod record;
mod replay;
mod report_file;
mod seek;
mod serve;
mod shrink_guard;
mod symbol_hint;
mod threads;
mod timeline;
mod top;
mod window;

use clap::{CommandFactory, Parser};
use std::process::ExitCode;

fn main() -> ExitCode {
    // Like other command-line tools, end quietly when the reader of our
    // output goes away (`heapreplay info t.zst | head`).
    // SAFETY: restoring the default action of SIGPIPE before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let mut command = cli::Cli::command();
    command.build();
    let args = match argv::arrange(&command, std::env::args_os().collect()) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("heapreplay: {message}");
            return ExitCode::from(2);
        }
    };
    let cli = cli::Cli::parse_from(args);
    let result = match cli.command {
        Some(cli::Command::Record(args)) => record::run(&args),
        Some(cli::Command::Info(args)) => info::run(&args),
        Some(cli::Command::Top(args)) => top::top(&args),
        Some(cli::Command::Leaks(args)) => top::leaks(&args),
        Some(cli::Command::Diff(args)) => diff::run(&args),
        #[cfg(feature = "chart")]
        Some(cli::Command::Timeline(args)) => timeline::run(&args),
        #[cfg(not(feature = "chart"))]
        Some(cli::Command::Timeline(_)) => {
            Err("this heapreplay was built without charts (cargo feature `chart`)".into())
        }
        Some(cli::Command::Export(args)) => export::run(&args),
        Some(cli::Command::Compact(args)) => compact::run(&args),
        Some(cli::Command::Keep(args)) => keep::run(&args),
        Some(cli::Command::Serve(args)) => serve::run(&args),
        Some(cli::Command::Report(args)) => report_file::run(&args),
        Some(cli::Command::Attach(args)) => attach::attach(&args),
        Some(cli::Command::Detach(args)) => attach::detach(&args),
        None => replay::run(&cli.replay),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            // Empty: the error was said where it was found.
            if !message.is_empty() {
                eprintln!("heapreplay: {message}");
            }
            ExitCode::from(1)
        }
    }
}
