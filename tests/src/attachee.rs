//! `tests/programs/attachee.c` driven from a test: a program that runs
//! before `heapreplay attach` comes to it, answering commands on stdin.

use crate::heapreplay;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// The running program.
pub struct Attachee {
    /// Its process.
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// Every line it has printed.
    pub printed: Vec<String>,
}

impl Attachee {
    /// Starts `exe` (with `n` early blocks), under `env`, and waits for
    /// its "ready".
    pub fn start(exe: &Path, n: u32, env: &[(&str, &std::ffi::OsStr)]) -> Attachee {
        let mut cmd = Command::new(exe);
        cmd.arg(n.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("cannot start the attachee");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut a = Attachee {
            child,
            stdin,
            stdout,
            printed: Vec::new(),
        };
        assert_eq!(a.line(), "ready");
        a
    }

    /// Its process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let line = line.trim_end().to_string();
        self.printed.push(line.clone());
        line
    }

    /// Sends a command; returns its answer.
    pub fn ask(&mut self, command: &str) -> String {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
        self.line()
    }

    /// Sends "exit": returns its exit status, with everything printed.
    pub fn exit(mut self) -> (i32, Vec<String>) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "exit").unwrap();
        drop(self.stdin.take());
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        self.printed.extend(rest.lines().map(String::from));
        let status = self.child.wait().unwrap();
        (
            status.code().unwrap_or(-1),
            std::mem::take(&mut self.printed),
        )
    }

    /// The signals it catches (`SigCgt` in its status), a hex mask.
    pub fn caught_signals(&self) -> String {
        proc_field(self.pid(), "SigCgt")
    }

    /// The names of its threads.
    pub fn thread_names(&self) -> Vec<String> {
        let dir = format!("/proc/{}/task", self.pid());
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
            .map(|s| s.trim_end().to_string())
            .collect()
    }
}

impl Drop for Attachee {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of `/proc/PID/status`.
pub fn proc_field(pid: i32, name: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            Some(
                l.strip_prefix(name)?
                    .trim_start_matches(':')
                    .trim()
                    .to_string(),
            )
        })
        .unwrap_or_default()
}

/// A running `heapreplay attach`.
pub struct Attach {
    /// Its process.
    pub child: Child,
    /// What it said on stderr so far.
    pub said: String,
}

/// Starts `heapreplay attach PID -o TRACE` (given up after 60 s) and waits
/// until it says it is recording, or ends. `Err` with what it said and
/// its exit status if it ended.
// The child is waited for when it ends early, else by `Attach`.
#[allow(clippy::zombie_processes)]
pub fn attach(pid: i32, trace: &Path) -> Result<Attach, (i32, String)> {
    let mut child = Command::new("timeout")
        .arg("60")
        .arg(heapreplay())
        .args(["attach", &pid.to_string(), "-o"])
        .arg(trace)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            let status = child.wait().unwrap();
            return Err((status.code().unwrap_or(-1), said));
        }
        said += &line;
        if line.contains("recording process") {
            // The rest of what it says is read when it ends.
            std::thread::spawn(move || {
                let mut rest = String::new();
                let _ = stderr.read_to_string(&mut rest);
                rest
            });
            return Ok(Attach { child, said });
        }
    }
}

impl Attach {
    /// Ctrl-C: it detaches; returns its exit status.
    pub fn interrupt(mut self) -> i32 {
        // SAFETY: sending a signal to the child's process group leader
        // (timeout passes SIGINT on to heapreplay).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "heapreplay attach did not end after Ctrl-C"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for it to end by itself (a detach from elsewhere, the
    /// process's exit); returns its exit status.
    pub fn wait(mut self) -> i32 {
        self.child.wait().unwrap().code().unwrap_or(-1)
    }
}
