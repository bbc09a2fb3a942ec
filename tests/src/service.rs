//! `tests/programs/service.c` driven from a test: a service that runs until
//! its input ends, growing and placing markers on command.

use crate::{librecord, Work};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// The running service, its commands and answers.
pub struct Service {
    /// The service's process.
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Service {
    /// Starts `exe` recorded into `trace.zst` in `work`'s directory.
    pub fn start(work: &Work, exe: &std::path::Path) -> Service {
        let mut child = Command::new(exe)
            .current_dir(&work.dir)
            .env("LD_PRELOAD", librecord())
            .env("HEAPREPLAY_OUT", work.path("trace.zst"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the service");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Service {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one command and waits for its "ok".
    pub fn ask(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ok", "answer to {command}");
    }

    /// Ends the input and waits for a normal exit.
    pub fn stop(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the service ended with {status}");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
