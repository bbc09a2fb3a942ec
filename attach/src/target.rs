//! What `/proc` says about the process attached to: its mappings, its
//! status and its threads.

use std::io;
use std::path::PathBuf;

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// `r-xp` and the like.
    pub perms: String,
    /// Offset in the file.
    pub offset: u64,
    /// The file's inode (0 for anonymous memory).
    pub inode: u64,
    /// The file's path, as the process sees it (empty if none).
    pub path: String,
}

impl Mapping {
    /// The file's name, after the last `/`.
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// The mappings of process `pid`.
pub fn maps(pid: i32) -> io::Result<Vec<Mapping>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    Ok(text.lines().filter_map(parse_mapping).collect())
}

fn parse_mapping(line: &str) -> Option<Mapping> {
    let mut fields = line.split_ascii_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?.to_string();
    let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
    let _dev = fields.next()?;
    let inode = fields.next()?.parse().ok()?;
    let path = fields.collect::<Vec<_>>().join(" ");
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        perms,
        offset,
        inode,
        path,
    })
}

/// What `/proc/PID/status` says that matters here.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// The command name.
    pub name: String,
    /// `R`, `S`, `T`, `Z` and the like.
    pub state: char,
    /// The process tracing it (0: none).
    pub tracer: i32,
    /// Its real user id.
    pub uid: u32,
    /// True if its shadow stack (CET) is on.
    pub shadow_stack: bool,
    /// The signals it ignores (`SigIgn`), bit N-1 for signal N.
    pub ignored: u64,
}

/// The status of process `pid`.
pub fn status(pid: i32) -> io::Result<Status> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let mut status = Status::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "Name" => status.name = value.to_string(),
            "State" => status.state = value.chars().next().unwrap_or('?'),
            "TracerPid" => status.tracer = value.parse().unwrap_or(0),
            "Uid" => {
                status.uid = value
                    .split_ascii_whitespace()
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            }
            "SigIgn" => status.ignored = u64::from_str_radix(value, 16).unwrap_or(0),
            "x86_Thread_features" => {
                status.shadow_stack = value.split_ascii_whitespace().any(|f| f == "shstk")
            }
            _ => {}
        }
    }
    Ok(status)
}

/// One thread of the process.
#[derive(Debug, Clone)]
pub struct Thread {
    /// Its id.
    pub tid: i32,
    /// Its name.
    pub name: String,
    /// The system call it is blocked in, if `/proc` says so.
    pub syscall: Option<i64>,
}

/// The threads of process `pid`.
pub fn threads(pid: i32) -> Vec<Thread> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out: Vec<Thread> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .map(|tid| {
            let at = |file: &str| format!("/proc/{pid}/task/{tid}/{file}");
            let name = std::fs::read_to_string(at("comm"))
                .map(|s| s.trim_end().to_string())
                .unwrap_or_default();
            let syscall = std::fs::read_to_string(at("syscall"))
                .ok()
                .and_then(|s| s.split_ascii_whitespace().next()?.parse::<i64>().ok())
                .filter(|&nr| nr >= 0);
            Thread { tid, name, syscall }
        })
        .collect();
    out.sort_by_key(|t| t.tid);
    out
}

/// A path as process `pid` sees it, from here: under its root directory
/// (`/proc/PID/root`, which differs in a container).
pub fn seen_from_here(pid: i32, path: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root{path}"))
}

/// True if process `pid` sees the same root directory as this one.
pub fn same_root(pid: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let theirs = std::fs::metadata(format!("/proc/{pid}/root"));
    let ours = std::fs::metadata("/");
    matches!((theirs, ours), (Ok(a), Ok(b)) if a.dev() == b.dev() && a.ino() == b.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_parse_with_and_without_paths() {
        let m = parse_mapping(
            "7f1c2a400000-7f1c2a428000 r--p 00000000 08:01 1234 /usr/lib/x86_64-linux-gnu/libc.so.6",
        )
        .unwrap();
        assert_eq!(
            (m.start, m.end, m.offset, m.inode),
            (0x7f1c2a400000, 0x7f1c2a428000, 0, 1234)
        );
        assert_eq!(m.file_name(), "libc.so.6");
        let anon = parse_mapping("7ffd1000-7ffd2000 rw-p 00000000 00:00 0").unwrap();
        assert_eq!(anon.path, "");
        let spaced = parse_mapping("1000-2000 r-xp 00001000 08:01 9 /tmp/a b/lib.so").unwrap();
        assert_eq!(spaced.path, "/tmp/a b/lib.so");
    }

    #[test]
    fn this_process_reads_as_itself() {
        let me = std::process::id() as i32;
        let s = status(me).unwrap();
        assert!(matches!(s.state, 'R' | 'S'), "{}", s.state);
        assert!(same_root(me));
        assert!(threads(me).iter().any(|t| t.tid == me));
        assert!(maps(me)
            .unwrap()
            .iter()
            .any(|m| m.file_name().starts_with("libc")));
    }
}
