//! `heapreplay serve`: the page, read in a real headless browser (Debian's
//! Chromium), shows what `heapreplay top` prints for the same moment.

use heapreplay_e2e::browser::Browser;
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
    // The address, after what it says of the trace first.
    let mut said = String::new();
    let url = loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("no address in {said:?}");
        }
        said.push_str(&line);
        if let Some(url) = line
            .split_whitespace()
            .find(|w| w.starts_with("http://127.0.0.1:"))
        {
            break url.to_string();
        }
    };
    // What it says later is read too: a closed pipe would end it.
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
        eprint!("{rest}");
    });
    Served { child, url }
}

/// The tables the page shows: (id, caption, rows of cell texts).
fn tables(browser: &mut Browser) -> Vec<(String, String, Vec<Vec<String>>)> {
    let v = browser.eval(
        "[...document.querySelectorAll('#tables table')].map(t => [t.id, t.caption.textContent, \
         [...t.tBodies[0].rows].map(r => [...r.cells].map(c => c.textContent))])",
    );
    serde_json::from_value(v).unwrap()
}

/// The rows of the page's table `id`.
fn table(browser: &mut Browser, id: &str) -> Vec<Vec<String>> {
    let all = tables(browser);
    all.iter()
        .find(|t| t.0 == id)
        .unwrap_or_else(|| panic!("no table {id} in {all:?}"))
        .2
        .clone()
}

/// Each row's three numbers and its stack as the CLI's tables print it
/// (its first four frames, then `...`).
fn numbers(rows: &[Vec<String>]) -> Vec<[String; 4]> {
    rows.iter()
        .map(|r| {
            let frames: Vec<&str> = r[3].split(" < ").collect();
            let mut short = frames[..frames.len().min(4)].join(" < ");
            if frames.len() > 4 {
                short.push_str(" < ...");
            }
            [r[0].clone(), r[1].clone(), r[2].clone(), short]
        })
        .collect()
}

/// The page's x (CSS pixels) for `seconds` into the run, and the y of
/// the chart's middle.
fn chart_at(browser: &mut Browser, seconds: f64) -> (f64, f64) {
    let (left, top, _, height) = browser.rect("#timeline .u-over");
    let x = browser.eval(&format!("plot.valToPos({seconds}, 'x')"));
    (left + x.as_f64().unwrap(), top + height / 2.0)
}

/// The time of the moment the page shows, in ns.
fn shown_ns(browser: &mut Browser) -> u64 {
    browser.eval("moment.ns").as_u64().unwrap()
}

#[test]
fn the_page_opens_at_the_peak_with_the_numbers_top_prints() {
    let work = Work::new("serve_peak");
    let exe = work.compile("sites.c", "sites", &["-O2"]);
    let ran = work.record(&exe, &[], "trace.zst");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let served = serve(&work, "trace.zst");
    let mut browser = Browser::open(&served.url, &work.dir);
    browser.settled();
    let top = work
        .heapreplay_ok(&["top", "--at", "peak", "-n", "20", "trace.zst"])
        .stdout;
    let page = numbers(&table(&mut browser, "top"));
    let cli = report_rows(&top, "In use:");
    assert!(!cli.is_empty(), "{top}");
    assert_eq!(page, cli, "top:\n{top}");
    // Its heading says which moment, with the totals top prints in bytes.
    let heading = top.lines().next().unwrap();
    assert!(heading.contains("at the peak"), "{heading}");
    let summary = browser.eval("document.getElementById('summary').textContent");
    assert!(
        summary.as_str().unwrap().starts_with("the peak ("),
        "{summary}"
    );
    // The function names are there, as text, for a screen reader as for
    // the eye; and the flame graph was drawn (an SVG of frames).
    let text = browser.eval("document.body.innerText").to_string();
    for function in ["leak_a", "aligned_e"] {
        assert!(top.contains(function), "{function} not in top: {top}");
        assert!(text.contains(function), "{function} not on the page");
    }
    let frames = browser.eval("document.querySelectorAll('#flame g.frame').length");
    assert!(frames.as_u64().unwrap() > 5, "flame graph frames: {frames}");
    // A search highlights the function in the flame graph, and only it.
    browser.eval("(() => { const f = document.getElementById('find'); f.value = 'leak_a'; f.dispatchEvent(new Event('input')); })()");
    let lit = browser.eval(
        "[...document.querySelectorAll('#flame g.frame')].filter(g => g.querySelector('rect').getAttribute('fill') === '#E600E6').map(g => g.getAttribute('name'))",
    );
    let lit: Vec<String> = serde_json::from_value(lit).unwrap();
    assert!(
        !lit.is_empty() && lit.iter().all(|n| n.contains("leak_a")),
        "{lit:?}"
    );
}

/// The phases program, recorded, and its page open in a browser.
fn phases(name: &str) -> (Work, Served, Browser) {
    let work = Work::new(name);
    let exe = work.compile("phases.c", "phases", &["-O1"]);
    let ran = work.record(&exe, &[], "trace.zst");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let served = serve(&work, "trace.zst");
    let mut browser = Browser::open(&served.url, &work.dir);
    browser.settled();
    (work, served, browser)
}

/// Where screenshots go (`HEAPREPLAY_SCREENSHOTS=docs/images` makes the
/// README's), if anywhere.
fn screenshot(browser: &mut Browser, name: &str) {
    if let Some(dir) = std::env::var_os("HEAPREPLAY_SCREENSHOTS") {
        browser.screenshot(&std::path::Path::new(&dir).join(name));
    }
}

#[test]
fn a_click_a_drag_and_two_moments_show_what_top_leaks_and_diff_print() {
    let (work, _served, mut browser) = phases("serve_views");
    views_match_the_cli(&work, &mut browser, true);
}

#[test]
fn the_report_file_shows_the_same_views_offline_and_stays_small() {
    let work = Work::new("report_file");
    let exe = work.compile("phases.c", "phases", &["-O1"]);
    let ran = work.record(&exe, &[], "trace.zst");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let made = work.heapreplay_ok(&[
        "report",
        "trace.zst",
        "-o",
        "report.html",
        "--moments",
        "40",
    ]);
    assert!(
        made.stderr.contains("wrote report.html (42 moments"),
        "{}",
        made.stderr
    );
    let page = std::fs::read_to_string(work.path("report.html")).unwrap();
    assert!(page.len() <= 10_000_000, "{} bytes", page.len());
    // One file: no script, style sheet or anything else loaded from elsewhere.
    for loads in ["<script src", "<link", "<img", "<iframe"] {
        assert!(!page.contains(loads), "the report loads something: {loads}");
    }
    let url = format!("file://{}", work.path("report.html").display());
    let mut browser = Browser::open(&url, &work.dir);
    browser.settled();
    // It opens at the peak, as top prints it.
    let top = work
        .heapreplay_ok(&["top", "--at", "peak", "-n", "20", "trace.zst"])
        .stdout;
    assert_eq!(
        numbers(&table(&mut browser, "top")),
        report_rows(&top, "In use:"),
        "{top}"
    );
    views_match_the_cli(&work, &mut browser, false);
    // Nothing was fetched: every answer came from the file.
    let fetched = browser.eval("performance.getEntriesByType('resource').length");
    assert_eq!(fetched, 0, "the report fetched something");
}

/// Drives the page of the phases program: a click, a row, a drag, two
/// moments, the keyboard; each view's numbers equal what top, leaks and
/// diff print for the moments it shows. `exact`: moments are where the
/// mouse is (a server), else the nearest a report holds at or before.
fn views_match_the_cli(work: &Work, browser: &mut Browser, exact: bool) {
    // The phases: early at 0.3 s, a marker at 0.6 s, middle at 0.9 s, a
    // marker at 1.2 s, late at 1.5 s. Quiet stretches between.
    // A click at 0.45 s: the early phase's heap, as top prints it.
    let (x, y) = chart_at(browser, 0.45);
    browser.click(x, y, false);
    browser.settled();
    let early = shown_ns(browser);
    let near = if exact { 400_000_000 } else { 330_000_000 };
    assert!((near..500_000_000).contains(&early), "{early}");
    let at = format!("{early}ns");
    let top = work
        .heapreplay_ok(&["top", "--at", &at, "-n", "20", "trace.zst"])
        .stdout;
    assert_eq!(
        numbers(&table(browser, "top")),
        report_rows(&top, "In use:")
    );
    let rows = report_rows(&top, "In use:");
    assert_eq!(rows.len(), 1, "{top}");
    assert_eq!(rows[0][..3], ["100,000", "100.0%", "100"], "{top}");
    assert!(top.contains("keep_early"), "{top}");
    if exact {
        screenshot(browser, "serve-moment.png");
    }

    // A click on a row shows its whole stack, every frame as leaks has it.
    browser.eval("document.querySelector('#top tbody tr').click()");
    let stack =
        browser.eval("[...document.querySelectorAll('#stack li')].map(li => li.textContent)");
    let stack: Vec<String> = serde_json::from_value(stack).unwrap();
    let leaks_at = work
        .heapreplay_ok(&["leaks", "--to", &at, "trace.zst"])
        .stdout;
    let whole: Vec<String> = leaks_at
        .lines()
        .skip_while(|l| !l.contains("allocated at:"))
        .skip(1)
        .take_while(|l| l.starts_with("    #"))
        .map(|l| {
            let frame = l
                .split_once(' ')
                .unwrap()
                .1
                .trim_start()
                .split_once(' ')
                .unwrap()
                .1;
            match frame.split_once(" (") {
                Some((f, place)) => format!("{f} at {}", place.trim_end_matches(')')),
                None => frame.to_string(),
            }
        })
        .collect();
    assert!(whole.len() >= 2, "{leaks_at}");
    assert_eq!(stack, whole, "{leaks_at}");

    // A drag from 0.75 s to 1.35 s: the middle phase. What it left live
    // and what it freed, as leaks --from --to prints them.
    let (x0, y) = chart_at(browser, 0.75);
    let (x1, _) = chart_at(browser, 1.35);
    browser.drag(x0, x1, y);
    browser.settled();
    let span =
        browser.eval("[view.kind, view.span && view.span.from.ns, view.span && view.span.to.ns]");
    assert_eq!(span[0], "window", "{span}");
    let (from, to) = (span[1].as_u64().unwrap(), span[2].as_u64().unwrap());
    assert!(from < 900_000_000 && to > 1_200_000_000, "{span}");
    let leaks = work
        .heapreplay_ok(&[
            "leaks",
            "--from",
            &format!("{from}ns"),
            "--to",
            &format!("{to}ns"),
            "trace.zst",
        ])
        .stdout;
    let suspects = table(browser, "suspects");
    let cli = leaked_stacks(&leaks);
    assert_eq!(
        cli,
        vec![("90,000".into(), "30".into(), "keep_mid".into())],
        "{leaks}"
    );
    assert_eq!(suspects.len(), cli.len());
    for (row, (bytes, objects, function)) in suspects.iter().zip(&cli) {
        assert_eq!((&row[0], &row[2]), (bytes, objects));
        assert!(row[3].starts_with(function.as_str()), "{row:?}");
    }
    let temporaries = numbers(&table(browser, "temporaries"));
    assert_eq!(temporaries, report_rows(&leaks, "Temporary"), "{leaks}");
    assert_eq!(temporaries[0][0], "20,000");
    assert_eq!(temporaries[0][2], "40");
    if exact {
        screenshot(browser, "serve-window.png");
    }

    // Two moments: a click at 0.45 s, then a shift-click at 1.35 s. The
    // stacks that grew and shrank, as diff prints them.
    let (x0, y) = chart_at(browser, 0.45);
    browser.click(x0, y, false);
    browser.settled();
    let (x1, y) = chart_at(browser, 1.35);
    browser.click(x1, y, true);
    browser.settled();
    let ends =
        browser.eval("[view.kind, view.before && view.before.ns, view.after && view.after.ns]");
    let summary = browser.eval("document.getElementById('summary').textContent");
    assert_eq!(ends[0], "compare", "{ends}: {summary}");
    let (before, after) = (ends[1].as_u64().unwrap(), ends[2].as_u64().unwrap());
    let diff = work
        .heapreplay_ok(&[
            "diff",
            "--from",
            &format!("{before}ns"),
            "--to",
            &format!("{after}ns"),
            "-n",
            "20",
            "trace.zst",
        ])
        .stdout;
    assert_eq!(
        numbers(&table(browser, "grew")),
        report_rows(&diff, "Grew"),
        "{diff}"
    );
    assert_eq!(
        numbers(&table(browser, "shrank")),
        report_rows(&diff, "Shrank"),
        "{diff}"
    );
    assert!(diff.contains("+90,000"), "{diff}");
    assert!(diff.contains("-20,000"), "{diff}");
    // The differential flame graph colours what is new orange and what
    // shrank blue.
    let fill = |browser: &mut Browser, function: &str| -> String {
        let fill = browser.eval(&format!(
            "[...document.querySelectorAll('#flame g.frame')].filter(g => g.getAttribute('name').startsWith('{function} ')).map(g => g.querySelector('rect').getAttribute('fill'))"
        ));
        let fills: Vec<String> = serde_json::from_value(fill).unwrap();
        assert_eq!(fills.len(), 1, "{function}: {fills:?}");
        fills[0].replace(' ', "")
    };
    assert_eq!(fill(browser, "keep_mid"), "rgb(255,190,90)");
    let shrank = fill(browser, "keep_early");
    let rgb: Vec<u32> = shrank
        .trim_start_matches("rgb(")
        .trim_end_matches(')')
        .split(',')
        .map(|c| c.parse().unwrap())
        .collect();
    assert!(
        rgb[0] == rgb[1] && rgb[0] < 220 && rgb[2] == 220,
        "{shrank}"
    );
    if exact {
        screenshot(browser, "serve-compare.png");
    }

    // The keyboard: the chart focused, the right arrow moves the moment
    // a hundredth of the run on, and the table follows.
    browser.eval("document.getElementById('timeline').focus()");
    browser.key("ArrowRight");
    browser.settled();
    let moved = shown_ns(browser);
    let step = browser
        .eval("Math.round(timeline.end_ns / 100)")
        .as_u64()
        .unwrap();
    if exact {
        assert_eq!(moved, before + step);
    } else {
        assert!(moved > before, "{moved} after {before}");
    }
    let top = work
        .heapreplay_ok(&[
            "top",
            "--at",
            &format!("{moved}ns"),
            "-n",
            "20",
            "trace.zst",
        ])
        .stdout;
    assert_eq!(
        numbers(&table(browser, "top")),
        report_rows(&top, "In use:")
    );
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

/// A python3 run with many stacks (PYTHONMALLOC=malloc: every object
/// through malloc).
const PYTHON_WORK: &str = "
import json, collections
kept = []
for i in range(200):
    kept.append(json.dumps({'a': list(range(i * 10)), 'b': str(i) * 50}))
    collections.Counter(kept[-1])
print(len(kept))
";

#[test]
fn a_report_of_a_python_run_with_many_moments_stays_under_ten_megabytes() {
    let work = Work::new("report_python");
    let ran = run(Command::new("/usr/bin/python3")
        .args(["-c", PYTHON_WORK])
        .current_dir(&work.dir)
        .env("PYTHONMALLOC", "malloc")
        .env("LD_PRELOAD", librecord())
        .env("HEAPREPLAY_OUT", work.path("py.zst")));
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let info = work.heapreplay_ok(&["info", "py.zst"]).stdout;
    let stacks: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("stacks:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{info}"));
    assert!(stacks > 500, "{info}");
    let made = work.heapreplay_ok(&["report", "py.zst", "-o", "py.html", "--moments", "200"]);
    let size = std::fs::metadata(work.path("py.html")).unwrap().len();
    assert!(size <= 10_000_000, "{size} bytes: {}", made.stderr);
    assert!(made.stderr.contains("202 moments"), "{}", made.stderr);
    // The first screen is still top's: the biggest stacks are whole.
    let url = format!("file://{}", work.path("py.html").display());
    let mut browser = Browser::open(&url, &work.dir);
    browser.settled();
    let top = work
        .heapreplay_ok(&["top", "--at", "peak", "-n", "20", "py.zst"])
        .stdout;
    assert_eq!(
        numbers(&table(&mut browser, "top")),
        report_rows(&top, "In use:"),
        "{top}"
    );
}

#[test]
fn the_page_follows_a_trace_still_being_written() {
    let work = Work::new("serve_live");
    let exe = work.compile("service.c", "service", &[]);
    let mut service = heapreplay_e2e::service::Service::start(&work, &exe);
    let pid = service.child.id();
    service.ask("grow 100");
    // More than the recorder's flush interval: the growth is in the trace.
    std::thread::sleep(std::time::Duration::from_millis(1600));
    let served = serve(&work, "trace.zst");
    let mut browser = Browser::open(&served.url, &work.dir);
    browser.settled();
    let live = browser.eval("document.getElementById('live').textContent");
    assert!(
        live.as_str()
            .unwrap()
            .contains(&format!("still being written by pid {pid}")),
        "{live}"
    );
    let first_end = browser.eval("timeline.end_ns").as_u64().unwrap();
    assert_eq!(browser.eval("timeline.markers.length"), 0);
    // It grows and places a marker: the chart follows, with the marker.
    service.ask("grow 300");
    service.ask("mark");
    browser.wait_for(
        &format!("timeline.end_ns > {first_end} && timeline.markers.length === 1"),
        "the chart to follow the trace",
    );
    let drawn = browser.eval("document.querySelectorAll('#timeline .marker').length");
    assert_eq!(drawn, 1, "the marker is not drawn");
    // It ends: the page says so, and its end is what top prints.
    service.stop();
    browser.wait_for(
        "timeline.live === false",
        "the page to see the trace finished",
    );
    let finished = browser.eval("document.getElementById('live').textContent");
    assert_eq!(finished, "The trace is finished.");
    browser.eval("document.getElementById('timeline').focus()");
    browser.key("End");
    browser.settled();
    let top = work
        .heapreplay_ok(&["top", "--at", "end", "-n", "20", "trace.zst"])
        .stdout;
    assert!(top.contains("grow (service.c"), "{top}");
    assert_eq!(
        numbers(&table(&mut browser, "top")),
        report_rows(&top, "In use:"),
        "{top}"
    );
}
