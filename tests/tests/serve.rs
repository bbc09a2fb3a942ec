//! `heapreplay serve`: the page, read in a real headless browser (Debian's
//! Chromium), shows what `heapreplay top` prints for the same moment.

use heapreplay_e2e::*;
use std::io::BufRead;
use std::process::{Command, Stdio};

/// A running `heapreplay serve` and its address.
struct Served {
    child: std::process::Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(work: &Work, trace: &str) -> Served {
    let mut child = Command::new(heapreplay())
        .args(["serve", "--port", "0", trace])
        .current_dir(&work.dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    // What it says later is read too: a closed pipe would end it.
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
        eprint!("{rest}");
    });
    Served { child, url }
}

/// The page's DOM once its scripts have run, from headless Chromium.
fn rendered(url: &str, work: &Work) -> String {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "chromium is missing: install Debian's chromium (scripts/install-deps does)"
    );
    // Written to a file, with no pipe: Chromium's helper processes may
    // outlive it, holding any pipe it was given open. The page brings its
    // first screen's data with it, so its DOM is whole once it has loaded,
    // with no request to wait for. Given up after 20 s, and tried again,
    // at most five times (a headless Chromium here has been seen to hang).
    let dom = work.path("dom.html");
    let profile = work.path("chromium");
    for _ in 0..5 {
        let status = Command::new("timeout")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &profile)
            .args(["20", "/usr/bin/chromium"])
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1280,800",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(["--dump-dom", url])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&dom).unwrap())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        // Its helper processes, which outlive it, go too: a later browser
        // on the same profile would hand its page over to them and wait.
        let _ = Command::new("pkill")
            .arg("-f")
            .arg(format!("--user-data-dir={}", profile.display()))
            .status();
        std::thread::sleep(std::time::Duration::from_millis(200));
        if status.success() {
            return std::fs::read_to_string(dom).unwrap();
        }
        eprintln!("chromium: {status}; again");
    }
    panic!("headless chromium did not load the page in five tries");
}

/// The text of every `<td class="num">` of the page's table, three a row.
fn table_numbers(dom: &str) -> Vec<[String; 3]> {
    let cells: Vec<String> = dom
        .split("<td class=\"num\">")
        .skip(1)
        .map(|s| s[..s.find('<').unwrap()].to_string())
        .collect();
    cells
        .chunks(3)
        .map(|c| [c[0].clone(), c[1].clone(), c[2].clone()])
        .collect()
}

/// The (bytes, share, objects) columns of `heapreplay top`'s first table.
fn top_numbers(top: &str) -> Vec<[String; 3]> {
    top.lines()
        .skip_while(|l| !l.starts_with("In use:"))
        .skip(2)
        .take_while(|l| !l.ends_with("all stacks"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            [f[0].to_string(), f[1].to_string(), f[2].to_string()]
        })
        .collect()
}

#[test]
fn the_page_opens_at_the_peak_with_the_numbers_top_prints() {
    let work = Work::new("serve_peak");
    let exe = work.compile("sites.c", "sites", &["-O2"]);
    let ran = work.record(&exe, &[], "trace.zst");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let served = serve(&work, "trace.zst");
    let dom = rendered(&served.url, &work);
    let top = work
        .heapreplay_ok(&["top", "--at", "peak", "-n", "20", "trace.zst"])
        .stdout;
    let page = table_numbers(&dom);
    let cli = top_numbers(&top);
    assert!(!cli.is_empty(), "{top}");
    assert_eq!(page, cli, "page:\n{dom}\ntop:\n{top}");
    // Its heading says which moment, with the totals top prints in bytes.
    let heading = top.lines().next().unwrap();
    assert!(heading.contains("at the peak"), "{heading}");
    assert!(dom.contains("the peak ("), "{dom}");
    // The function names are there, for a screen reader as for the eye.
    for function in ["leak_a", "aligned_e"] {
        assert!(top.contains(function), "{function} not in top: {top}");
        assert!(dom.contains(function), "{function} not on the page");
    }
    // The flame graph was drawn (an SVG of frames).
    assert!(dom.contains("class=\"frame\""), "no flame graph frames");
}

#[test]
fn a_moment_asked_for_is_the_one_top_gives() {
    let work = Work::new("serve_moment");
    let exe = work.compile("sites.c", "sites", &["-O2"]);
    let ran = work.record(&exe, &[], "trace.zst");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let served = serve(&work, "trace.zst");
    let json =
        run_ok(Command::new("curl").args(["-s", &format!("{}api/moment?at=end", served.url)]));
    let top = work
        .heapreplay_ok(&["top", "--at", "end", "trace.zst"])
        .stdout;
    // "N in use in M objects" from the heading, in bytes from the JSON.
    let inuse = json
        .split("\"inuse_bytes\":")
        .last()
        .and_then(|s| s.split([',', '}']).next())
        .unwrap();
    let all = top
        .lines()
        .skip_while(|l| !l.starts_with("In use:"))
        .find(|l| l.ends_with("all stacks"))
        .unwrap();
    assert_eq!(
        all.split_whitespace().next().unwrap().replace(',', ""),
        inuse
    );
    let bad = run(Command::new("curl").args([
        "-s",
        "-w",
        "%{http_code}",
        &format!("{}api/moment?at=nonsense", served.url),
    ]));
    assert!(bad.stdout.ends_with("400"), "{}", bad.stdout);
}
