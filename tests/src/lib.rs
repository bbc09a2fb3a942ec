//! Helpers for the end-to-end tests: building test programs, running them
//! under the recorder, replaying, and reading profiles with real readers
//! (`google-pprof` from gperftools and `go tool pprof`).
//!
//! The tests use the release build of `librecord.so` and `heapreplay`
//! (`scripts/test` builds them first).

pub mod attachee;
pub mod browser;
pub mod hostile;
pub mod service;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A release artifact (`heapreplay` or `librecord.so`), which must be built.
pub fn artifact(name: &str) -> PathBuf {
    let p = root().join("target/release").join(name);
    assert!(
        p.exists(),
        "{} is missing: build with `cargo build --release` first (scripts/test does)",
        p.display()
    );
    p
}

/// The `heapreplay` binary.
pub fn heapreplay() -> PathBuf {
    artifact("heapreplay")
}

/// A TCP port free on 127.0.0.1 now (for a server a test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The recorder library.
pub fn librecord() -> PathBuf {
    artifact("librecord.so")
}

/// The header of tests/programs/sites.c's end-of-trace profile: in use
/// 2 + 1 + 1 + 1 MiB in 2048 + 64 + 1 + 16 blocks; allocated 8.5 MiB in
/// 2048 + 3072 + 64 + 2 + 16 blocks.
pub const SITES_TOTALS: [u64; 4] = [
    2048 + 64 + 1 + 16,
    5 << 20,
    2048 + 3072 + 64 + 2 + 16,
    (8 << 20) + (1 << 19),
];

/// Compiler flags under which Go 1.19's bundled `go tool pprof` can
/// symbolize C code: it reads only DWARF (version 4 here), takes the first
/// mapping of a binary as its load address (so code must share the first
/// segment), and finds functions only in the first line-table sequence.
pub const GO_PPROF_FLAGS: &[&str] = &[
    "-gdwarf-4",
    "-fno-reorder-functions",
    "-Wl,-z,noseparate-code",
];

/// A scratch directory for one test, under `target/e2e/`, emptied first.
pub struct Work {
    /// The directory.
    pub dir: PathBuf,
}

/// Output of a finished command, with helpers.
pub struct Ran {
    /// Exit status code (or 128 + signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Ran {
    fn from(o: Output) -> Self {
        use std::os::unix::process::ExitStatusExt;
        Ran {
            code: o
                .status
                .code()
                .unwrap_or_else(|| 128 + o.status.signal().unwrap_or(0)),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs a command to completion.
pub fn run(cmd: &mut Command) -> Ran {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    out.into()
}

/// Runs a command that must succeed; returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let r = run(cmd);
    assert_eq!(
        r.code, 0,
        "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        r.code, r.stdout, r.stderr
    );
    r.stdout
}

impl Work {
    /// A fresh directory named after the test.
    pub fn new(name: &str) -> Self {
        let dir = root().join("target/e2e").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Work { dir }
    }

    /// A path inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Compiles `tests/programs/<src>` into `<out>` with extra flags
    /// (C sources with gcc, C++ with g++), always with `-g`.
    pub fn compile(&self, src: &str, out: &str, flags: &[&str]) -> PathBuf {
        let compiler = if src.ends_with(".cpp") { "g++" } else { "gcc" };
        let exe = self.path(out);
        let mut cmd = Command::new(compiler);
        // Flags after the source, so that libraries (-lNAME) are linked.
        cmd.arg("-g")
            .arg(root().join("tests/programs").join(src))
            .arg("-o")
            .arg(&exe)
            .args(flags);
        if !src.ends_with(".cpp") {
            cmd.arg("-pthread").arg("-ldl");
        }
        run_ok(&mut cmd);
        exe
    }

    /// Runs `program args` with the recorder preloaded, writing `trace`.
    pub fn record(&self, program: &Path, args: &[&str], trace: &str) -> Ran {
        let trace = self.path(trace);
        run(Command::new(program)
            .args(args)
            .current_dir(&self.dir)
            .env("LD_PRELOAD", librecord())
            .env("HEAPREPLAY_OUT", &trace))
    }

    /// Like [`Work::record`], but gives up after 60 seconds (exit status
    /// 124: hung), and preloads the recorder into `program` only, not into
    /// the process that watches the time.
    pub fn record_bounded(&self, program: &Path, args: &[&OsStr], trace: &str) -> Ran {
        run(Command::new("timeout")
            .args(["60", "env"])
            .arg(format!("LD_PRELOAD={}", librecord().display()))
            .arg(format!("HEAPREPLAY_OUT={}", self.path(trace).display()))
            .arg(program)
            .args(args)
            .current_dir(&self.dir))
    }

    /// Starts `program` recorded into `trace`, its stdout piped for reading
    /// (for programs that report when they are ready and wait).
    pub fn spawn_recorded(&self, program: &Path, trace: &str) -> std::process::Child {
        Command::new(program)
            .current_dir(&self.dir)
            .env("LD_PRELOAD", librecord())
            .env("HEAPREPLAY_OUT", self.path(trace))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
    }

    /// Runs `heapreplay` with `args` in this directory.
    pub fn heapreplay(&self, args: &[&str]) -> Ran {
        run(Command::new(heapreplay()).args(args).current_dir(&self.dir))
    }

    /// Runs `heapreplay` with `args` and environment variables `env` in
    /// this directory.
    pub fn heapreplay_env(&self, env: &[(&str, &str)], args: &[&str]) -> Ran {
        let mut cmd = Command::new(heapreplay());
        cmd.args(args).current_dir(&self.dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(&mut cmd)
    }

    /// Runs `heapreplay` with `args` in this directory; it must succeed.
    pub fn heapreplay_ok(&self, args: &[&str]) -> Ran {
        let r = self.heapreplay(args);
        assert_eq!(r.code, 0, "heapreplay {args:?} failed: {}", r.stderr);
        r
    }
}

/// One row of a pprof text report: flat and cumulative values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    /// Value attributed to the function itself.
    pub flat: f64,
    /// Value including callees.
    pub cum: f64,
}

fn number(field: &str) -> Option<f64> {
    field.trim_end_matches(['B', 's']).parse().ok()
}

/// Parses `google-pprof --text` / `go tool pprof -top` rows into
/// function name -> values.
pub fn parse_report(text: &str) -> HashMap<String, Row> {
    let mut rows = HashMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 || !fields[1].ends_with('%') || !fields[4].ends_with('%') {
            continue;
        }
        let (Some(flat), Some(cum)) = (number(fields[0]), number(fields[3])) else {
            continue;
        };
        let name = fields[5..].join(" ");
        let name = name.trim_end_matches(" (inline)").to_string();
        let e = rows.entry(name).or_insert(Row {
            flat: 0.0,
            cum: 0.0,
        });
        e.flat += flat;
        e.cum = e.cum.max(cum);
    }
    rows
}

/// `google-pprof --text <view> <binary> <profile>`.
pub fn google_pprof(view: &str, binary: &Path, profile: &Path) -> HashMap<String, Row> {
    let out = run_ok(
        Command::new("google-pprof")
            .arg("--text")
            .arg(view)
            .arg(binary)
            .arg(profile),
    );
    parse_report(&out)
}

/// `go tool pprof -top -unit=B -sample_index=<index> <binary> <profile>`.
pub fn go_pprof(index: &str, binary: &Path, profile: &Path) -> HashMap<String, Row> {
    parse_report(&go_pprof_text(
        &["-top", "-unit=B", &format!("-sample_index={index}")],
        &[binary, profile],
    ))
}

/// `go tool pprof ARGS FILES...`: its standard output.
pub fn go_pprof_text(args: &[&str], files: &[&Path]) -> String {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    run_ok(
        Command::new("go")
            .args(["tool", "pprof", "-nodecount=1000"])
            .args(args)
            .args(files)
            .env("HOME", home)
            .env("PPROF_TMPDIR", std::env::temp_dir()),
    )
}

/// The GNU build id of a binary, in hex, as `readelf -n` prints it.
pub fn build_id(binary: &Path) -> String {
    let notes = run_ok(Command::new("readelf").arg("-n").arg(binary));
    notes
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .unwrap_or_else(|| panic!("{} has no build id", binary.display()))
        .to_string()
}

/// The `<title>` texts of an SVG, read with Python's XML parser (so the
/// file must be well-formed XML).
pub fn svg_titles(svg: &Path) -> Vec<String> {
    let script = "import sys, xml.etree.ElementTree as ET\n\
        for e in ET.parse(sys.argv[1]).iter():\n\
        \x20   if e.tag.rsplit('}', 1)[-1] == 'title' and e.text: print(e.text)";
    run_ok(Command::new("python3").args(["-c", script]).arg(svg))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The four numbers of a profile's header line: in-use objects, in-use
/// bytes, allocated objects, allocated bytes.
pub fn header(profile: &Path) -> [u64; 4] {
    let text = std::fs::read_to_string(profile).unwrap();
    let first = text.lines().next().unwrap_or_default();
    let rest = first
        .strip_prefix("heap profile: ")
        .unwrap_or_else(|| panic!("{}: bad header {first:?}", profile.display()));
    let nums: Vec<u64> = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(
        rest.trim_end().ends_with("@ heapprofile") && nums.len() == 4,
        "{}: bad header {first:?}",
        profile.display()
    );
    [nums[0], nums[1], nums[2], nums[3]]
}

/// Profiles `PREFIX.NNNN.heap` in number order.
pub fn profiles(prefix: &Path) -> Vec<PathBuf> {
    let dir = prefix.parent().unwrap();
    let stem = prefix.file_name().unwrap().to_string_lossy().to_string();
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(&format!("{stem}.")) && n.ends_with(".heap")
        })
        .collect();
    found.sort();
    found
}

/// Asserts a report row's flat value.
pub fn assert_flat(report: &HashMap<String, Row>, function: &str, expected: f64, what: &str) {
    let row = report
        .get(function)
        .unwrap_or_else(|| panic!("{what}: no row for {function} in {report:#?}"));
    assert_eq!(row.flat, expected, "{what}: flat value of {function}");
}

/// Asserts a report row's cumulative value.
pub fn assert_cum(report: &HashMap<String, Row>, function: &str, expected: f64, what: &str) {
    let row = report
        .get(function)
        .unwrap_or_else(|| panic!("{what}: no row for {function} in {report:#?}"));
    assert_eq!(row.cum, expected, "{what}: cumulative value of {function}");
}

/// The rows of a table `top`, `leaks --from --to` or `diff` prints under
/// the heading that starts with `heading`, down to its `all stacks` line
/// or the first blank line: its three numbers and the stack.
pub fn report_rows(text: &str, heading: &str) -> Vec<[String; 4]> {
    text.lines()
        .skip_while(|l| !l.starts_with(heading))
        .skip(2)
        .take_while(|l| !l.is_empty() && !l.ends_with("all stacks"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let mut stack = l.trim_start();
            for _ in 0..3 {
                stack = stack[stack.find(' ').unwrap_or(stack.len())..].trim_start();
            }
            [
                f[0].to_string(),
                f[1].to_string(),
                f[2].to_string(),
                stack.to_string(),
            ]
        })
        .collect()
}

/// (bytes, objects, allocating function) of each stack `leaks` lists whole.
pub fn leaked_stacks(text: &str) -> Vec<(String, String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0].ends_with("allocated at:"))
        .map(|w| {
            let f: Vec<&str> = w[0].split_whitespace().collect();
            let function = w[1].split_whitespace().nth(1).unwrap_or("").to_string();
            (f[0].to_string(), f[3].to_string(), function)
        })
        .collect()
}
