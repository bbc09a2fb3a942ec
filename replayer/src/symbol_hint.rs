//! One line after a report whose frames had no symbols (a stripped program
//! such as Debian's python3 or sqlite3): how many, in which files, and the
//! package that would name them.

use heapreplay_outputs::profile::SymbolizedStacks;
use std::process::Command;

/// Files named in the line; the rest are counted.
const NAMED: usize = 3;

/// Says on stderr how many frames had no symbols and where to get them;
/// nothing when every frame had a name, or with `quiet`.
pub fn say(stacks: &SymbolizedStacks<'_>, quiet: bool) {
    if quiet {
        return;
    }
    if let Some(line) = line(&stacks.unnamed_frames()) {
        eprintln!("heapreplay: {line}");
    }
}

fn line(files: &[(&str, usize)]) -> Option<String> {
    let total: usize = files.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    let mut shown: Vec<String> = files
        .iter()
        .take(NAMED)
        .map(|(path, n)| format!("{} ({n})", short(path)))
        .collect();
    if files.len() > NAMED {
        shown.push(format!("{} more files", files.len() - NAMED));
    }
    let packages: Vec<String> = files
        .iter()
        .take(NAMED)
        .filter_map(|(path, _)| package_of(path))
        .map(|p| format!("{p}-dbgsym"))
        .collect();
    let frames = if total == 1 { "frame" } else { "frames" };
    let install = if packages.is_empty() {
        "install their debug symbols (separate debug files are read from /usr/lib/debug, or give --debug-dir)".to_string()
    } else {
        format!(
            "install their debug symbols ({}, from Debian's debug archive) into /usr/lib/debug, or give --debug-dir",
            packages.join(", ")
        )
    };
    Some(format!(
        "{total} {frames} had no symbols, in {}; {install}",
        shown.join(", ")
    ))
}

fn short(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The Debian package that owns `path`, if dpkg knows it (as given or with
/// its symbolic links resolved).
fn package_of(path: &str) -> Option<String> {
    let real = std::fs::canonicalize(path).ok();
    let candidates = std::iter::once(path.to_string())
        .chain(real.map(|r| r.display().to_string()))
        .chain(path.strip_prefix("/usr").map(str::to_string));
    for candidate in candidates {
        let out = Command::new("dpkg-query")
            .args(["-S", &candidate])
            .output()
            .ok()?;
        if !out.status.success() {
            continue;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        // `python3.11-minimal: /usr/bin/python3.11`, or `libc6:amd64: ...`.
        let package = text.lines().next()?.split(':').next()?.trim();
        if !package.is_empty() && !package.contains(' ') {
            return Some(package.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_counts_frames_and_names_files() {
        assert_eq!(line(&[]), None);
        let said = line(&[
            ("/nonexistent/bin/app", 12),
            ("/nonexistent/lib/libx.so", 1),
        ])
        .unwrap();
        assert!(
            said.starts_with(
                "13 frames had no symbols, in app (12), libx.so (1); install their debug symbols"
            ),
            "{said}"
        );
    }
}
