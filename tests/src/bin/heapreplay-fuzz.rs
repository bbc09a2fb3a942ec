//! `heapreplay-fuzz`: feeds hostile traces (see `heapreplay_e2e::hostile`)
//! to the reader and the whole replay, and checks what each must do.
//!
//! Every case is read in process (open, a replaying pass with the snapshot
//! rules, per-stack totals checked against the totals); every
//! `--cli-every`th case also goes through the real `heapreplay` commands
//! (`info`, `top`, `leaks`, `--at-exit`, `--format pprof`, `export`), each
//! under a time limit and a memory limit. A case that breaks a rule is a
//! finding, written to the findings folder. The case being run is always in
//! `current.zst` there, so that a crash or an abort of this process leaves
//! it behind (`scripts/fuzz` files it as a finding).
//!
//! ```text
//! heapreplay-fuzz [--seconds N] [--seed S] [--cli-every K] [--dir DIR] [--heapreplay BIN]
//! heapreplay-fuzz --write-vectors DIR    # one file per mutation, seed 1
//! ```

use heapreplay_e2e::hostile::{self, Case, Expect, Rng, Totals};
use heapreplay_engine::heap::Heap;
use heapreplay_engine::Trace;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a case may take in process, and each command out of process.
const CASE_LIMIT: Duration = Duration::from_secs(30);

/// Address space a `heapreplay` command may use: a hostile trace must not
/// make it take more than its real content needs.
const MEMORY_LIMIT: u64 = 4 << 30;

struct Options {
    seconds: u64,
    seed: u64,
    cli_every: u64,
    dir: PathBuf,
    vectors: Option<PathBuf>,
    heapreplay: PathBuf,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        seconds: 60,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs()),
        cli_every: 8,
        dir: PathBuf::from("target/fuzz"),
        vectors: None,
        heapreplay: PathBuf::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--seconds" => o.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--seed" => o.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--cli-every" => {
                o.cli_every = value()?.parse().map_err(|e| format!("--cli-every: {e}"))?
            }
            "--dir" => o.dir = PathBuf::from(value()?),
            "--write-vectors" => o.vectors = Some(PathBuf::from(value()?)),
            "--heapreplay" => o.heapreplay = PathBuf::from(value()?),
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    match run() {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(2),
        Err(e) => {
            eprintln!("heapreplay-fuzz: {e}");
            ExitCode::from(1)
        }
    }
}

fn run() -> Result<usize, String> {
    let mut o = options()?;
    if o.heapreplay.as_os_str().is_empty() {
        o.heapreplay = heapreplay_e2e::heapreplay();
    }
    if let Some(dir) = &o.vectors {
        return write_vectors(dir).map(|_| 0);
    }
    std::fs::create_dir_all(o.dir.join("findings")).map_err(|e| e.to_string())?;
    limit_memory(8 << 30);
    let current = o.dir.join("current.zst");
    let started = Arc::new(AtomicU64::new(0));
    watchdog(started.clone(), current.clone());
    let epoch = Instant::now();
    let mut rng = Rng::new(o.seed);
    let (mut cases, mut findings) = (0u64, 0usize);
    eprintln!("heapreplay-fuzz: seed {}, {} s", o.seed, o.seconds);
    while epoch.elapsed().as_secs() < o.seconds {
        let case = hostile::random_case(&mut rng);
        std::fs::write(&current, &case.bytes).map_err(|e| e.to_string())?;
        started.store(epoch.elapsed().as_millis() as u64 + 1, Ordering::SeqCst);
        let mut wrong = in_process(&current, &case);
        if wrong.is_none() && cases % o.cli_every == 0 {
            wrong = out_of_process(&o.heapreplay, &current, &case);
        }
        started.store(0, Ordering::SeqCst);
        if let Some(what) = wrong {
            findings += 1;
            let name = format!("{}-{}-{cases}.zst", case.name, o.seed);
            let path = o.dir.join("findings").join(&name);
            std::fs::write(&path, &case.bytes).map_err(|e| e.to_string())?;
            eprintln!("FINDING {}: {what}", path.display());
        }
        cases += 1;
    }
    let _ = std::fs::remove_file(&current);
    println!(
        "fuzz: {cases} cases in {} s, {findings} findings",
        o.seconds
    );
    Ok(findings)
}

/// Caps this process's address space, so that an allocation a hostile
/// trace provokes fails (and aborts, leaving `current.zst`) instead of
/// taking the machine.
fn limit_memory(bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: setrlimit reads the struct and changes only this process's limit.
    unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
}

/// Aborts if one case runs longer than [`CASE_LIMIT`] (a hang), leaving the
/// case in `current` for `scripts/fuzz` to keep.
fn watchdog(started: Arc<AtomicU64>, current: PathBuf) {
    let epoch = Instant::now();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(1));
        let s = started.load(Ordering::SeqCst);
        if s > 0 && epoch.elapsed().as_millis() as u64 > s + CASE_LIMIT.as_millis() as u64 {
            eprintln!("FINDING {}: hangs (over {CASE_LIMIT:?})", current.display());
            std::process::abort();
        }
    });
}

/// Reads the case with the library: what every command does first.
fn in_process(path: &Path, case: &Case) -> Option<String> {
    let trace = match Trace::open(path) {
        Ok(t) => t,
        Err(e) => {
            return match case.expect {
                Expect::Exact(_) => Some(format!("a valid trace was refused: {e}")),
                _ => None,
            };
        }
    };
    let mut heap = Heap::new();
    let pass = trace
        .for_each_event(false, |e| {
            heap.apply(e);
            Ok::<(), ()>(())
        })
        .ok()?;
    let damaged = !trace.problems.is_empty() || !pass.problems.is_empty();
    let t = heap.totals();
    let got = Totals {
        allocs: t.allocs,
        alloc_bytes: t.alloc_bytes,
        frees: t.frees,
        free_bytes: t.free_bytes,
    };
    let mut per_stack = Totals::default();
    for (_, c) in heap.stacks() {
        per_stack.allocs += c.allocs;
        per_stack.alloc_bytes += c.alloc_bytes;
        per_stack.frees += c.frees;
        per_stack.free_bytes += c.free_bytes;
    }
    if per_stack != got {
        return Some(format!(
            "per-stack counters {per_stack:?} do not add up to the totals {got:?}"
        ));
    }
    if got.frees > got.allocs || got.free_bytes > got.alloc_bytes {
        return Some(format!("more freed than allocated: {got:?}"));
    }
    match case.expect {
        Expect::Exact(_) if damaged => Some(format!(
            "a valid trace reported as damaged: {:?}",
            trace
                .problems
                .iter()
                .chain(&pass.problems)
                .collect::<Vec<_>>()
        )),
        Expect::Exact(want) if want != got => {
            Some(format!("totals {got:?}, the model says {want:?}"))
        }
        Expect::Damage if !damaged => Some("damage not reported".into()),
        _ => None,
    }
}

/// The commands a user runs on a trace, as `heapreplay` arguments.
fn commands(trace: &Path, out: &Path) -> Vec<Vec<String>> {
    let t = trace.display().to_string();
    let o = out.display().to_string();
    vec![
        vec!["info".into(), t.clone()],
        vec!["top".into(), t.clone()],
        vec!["leaks".into(), t.clone()],
        vec![
            "-q".into(),
            "--at-exit".into(),
            "-o".into(),
            format!("{o}/p"),
            t.clone(),
        ],
        vec![
            "-q".into(),
            "--interval".into(),
            "64KB".into(),
            "--format".into(),
            "pprof".into(),
            "-o".into(),
            format!("{o}/q"),
            t.clone(),
        ],
        vec![
            "export".into(),
            "--parquet".into(),
            "-q".into(),
            "-o".into(),
            format!("{o}/x"),
            t,
        ],
    ]
}

/// Runs every command on the case: each must end by itself, within the
/// limits, with 0 (intact), 1 (refused, one line) or 3 (damaged), and 0
/// only where no damage must be reported.
fn out_of_process(bin: &Path, path: &Path, case: &Case) -> Option<String> {
    let out = path.with_extension("out");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).ok()?;
    for args in commands(path, &out) {
        let mut cmd = Command::new(bin);
        cmd.args(&args)
            .env("RAYON_NUM_THREADS", "2")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: the closure only calls setrlimit, which is
        // async-signal-safe, between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                let limit = libc::rlimit {
                    rlim_cur: MEMORY_LIMIT,
                    rlim_max: MEMORY_LIMIT,
                };
                libc::setrlimit(libc::RLIMIT_AS, &limit);
                Ok(())
            });
        }
        let mut child = cmd.spawn().ok()?;
        let started = Instant::now();
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if started.elapsed() > CASE_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                return Some(format!("heapreplay {} hangs", args.join(" ")));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
        }
        let shown = args.join(" ");
        match status.code() {
            None => return Some(format!("heapreplay {shown} killed by a signal: {stderr}")),
            Some(0) if case.expect == Expect::Damage => {
                return Some(format!("heapreplay {shown} exits 0 on damage"))
            }
            Some(1) if stderr.lines().count() != 1 => {
                return Some(format!(
                    "heapreplay {shown}: not a one-line error: {stderr}"
                ))
            }
            Some(0 | 1 | 3) => {}
            Some(c) => return Some(format!("heapreplay {shown} exits {c}: {stderr}")),
        }
        if stderr.contains("panicked") {
            return Some(format!("heapreplay {shown} panics: {stderr}"));
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    None
}

/// Writes one vector per mutation (seed 1) into `dir`.
fn write_vectors(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    for (name, _) in hostile::MUTATIONS {
        let case = hostile::named_case(name, 1).expect("a listed mutation");
        let path = dir.join(format!("{name}.zst"));
        std::fs::write(&path, &case.bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
