//! `heapreplay serve`: the time-travel page on 127.0.0.1. The timeline of
//! the whole run is replayed once; each moment the page asks for is
//! replayed from the nearest checkpoint of the trace's index, and its heap
//! sent as JSON with the numbers `heapreplay top` prints.

use crate::cli::ServeArgs;
use crate::pass;
use heapreplay_engine::plan::{Plan, Point, TimePoint};
use heapreplay_engine::trace::being_recorded;
use heapreplay_engine::Trace;
use heapreplay_outputs::profile::SymbolizedStacks;
use heapreplay_outputs::web;
use std::process::ExitCode;

type Response = tiny_http::Response<std::io::Cursor<Vec<u8>>>;

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response {
    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes())
        .expect("a valid header");
    tiny_http::Response::from_data(body)
        .with_status_code(status)
        .with_header(header)
}

fn error(status: u16, message: &str) -> Response {
    respond(
        status,
        "text/plain; charset=utf-8",
        message.as_bytes().to_vec(),
    )
}

/// The title of the page: the program, its pid, the trace.
fn title(trace: &Trace) -> String {
    let program = std::path::Path::new(&trace.info.exe)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| trace.path.display().to_string());
    format!(
        "{program} (pid {}), {}",
        trace.info.pid,
        trace.path.display()
    )
}

/// The point `at` names: nanoseconds since the start, or anything `top
/// --at` takes (`peak`, `end`, `30s`, `marker:usr2`).
fn point(at: &str) -> Result<Point, String> {
    match at.parse::<u64>() {
        Ok(ns) => Ok(Point::Time(TimePoint::Offset(ns))),
        Err(_) => Point::parse(at),
    }
}

/// The heap at the moment `query` names (`at=...`), as JSON.
fn moment(
    trace: &Trace,
    pipeline: bool,
    query: &str,
    stacks: &mut SymbolizedStacks<'_>,
) -> Response {
    let at = param(query, "at").unwrap_or("peak");
    let point = match point(at) {
        Ok(p) => p,
        Err(e) => return error(400, &e),
    };
    match pass::capture(trace, std::slice::from_ref(&point), pipeline, true) {
        Ok((snapshots, _)) => {
            let snapshot = &snapshots[0];
            let label = point.describe_at(snapshot.ns);
            let body = web::moment(snapshot, &label, stacks).to_string();
            respond(200, "application/json", body.into_bytes())
        }
        Err(e) => error(400, &e),
    }
}

/// The value of `key` in `query` (`a=1&b=2`).
fn param<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// What the window of `query` (`from=...&to=...`) allocated, as JSON.
fn window(
    trace: &Trace,
    pipeline: bool,
    query: &str,
    stacks: &mut SymbolizedStacks<'_>,
) -> Response {
    let ends = param(query, "from")
        .zip(param(query, "to"))
        .ok_or_else(|| "give the window as from=...&to=...".to_string())
        .and_then(|(from, to)| Ok((point(from)?, point(to)?)));
    let (from, to) = match ends {
        Ok(ends) => ends,
        Err(e) => return error(400, &e),
    };
    match crate::window::capture(trace, &from, &to, pipeline, true) {
        Ok((w, _)) => {
            let body = web::window(
                (&from.describe_at(w.from.ns), w.from.ns),
                (&to.describe_at(w.to.ns), w.to.ns),
                &w.allocated,
                stacks,
            );
            respond(200, "application/json", body.to_string().into_bytes())
        }
        Err(e) => error(400, &e),
    }
}

/// The whole run's timeline, as the page's chart shows it; for a trace
/// still being written, with what `live_note` says of it.
pub fn timeline(trace: &Trace, pipeline: bool, quiet: bool) -> Result<serde_json::Value, String> {
    let end_ns = crate::timeline::end_ns(trace);
    let (timeline, _) = crate::timeline::collect(
        trace,
        &Plan::default(),
        pipeline,
        quiet,
        (0, end_ns.max(1)),
        false,
        false,
    )?;
    let covers = crate::attached::since(trace).map(|s| format!("Allocations {s} only."));
    let state = match pass::live_note(trace) {
        Some(note) => format!("The trace is {note}."),
        None if trace.end.is_none() => {
            "The recording stopped without its end (the process was killed or crashed).".into()
        }
        None => "The trace is finished.".into(),
    };
    let mut json = web::timeline(&timeline, &title(trace), covers.as_deref());
    json["live"] = serde_json::json!(trace.live.is_some());
    json["state"] = serde_json::json!(state);
    // Which recording: a new one at the same path is another run.
    json["run"] = serde_json::json!(format!("{}@{}", trace.info.pid, trace.info.start_unix_ns));
    Ok(json)
}

/// The page, with its first screen: the timeline and the heap at the peak
/// (or the end).
fn page(
    trace: &Trace,
    pipeline: bool,
    timeline: &serde_json::Value,
    stacks: &mut SymbolizedStacks<'_>,
) -> Result<String, String> {
    let first = if timeline["peak"].is_null() {
        Point::End
    } else {
        Point::Peak
    };
    let (snapshots, _) = pass::capture(trace, std::slice::from_ref(&first), pipeline, true)?;
    let moment = web::moment(&snapshots[0], &first.describe_at(snapshots[0].ns), stacks);
    Ok(web::page_with(
        &serde_json::json!({"timeline": timeline, "moment": moment}),
    ))
}

/// The size of the file at `path` (0 if it cannot be read).
fn size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Serves the page until interrupted. A trace still being written is
/// opened again when the page asks for the timeline and the file has grown
/// or its recorder has let go of it, so that the page follows it.
pub fn run(args: &ServeArgs) -> Result<ExitCode, String> {
    let mut opened_at = size(&args.trace);
    let (mut trace, pipeline) = pass::open(&args.trace, &args.common)?;
    let quiet = args.common.quiet;
    // When the trace was last opened again, and how long that took: it is
    // opened again at most once per four times that (a replay of the whole
    // timeline), and never more often than every 3 s.
    let mut reopened_at = std::time::Instant::now();
    let mut timeline = timeline(&trace, pipeline, quiet)?;
    let mut reopen_cost = reopened_at.elapsed();
    let mut page = {
        let mut stacks = pass::stacks(&trace, &args.common);
        Some(self::page(&trace, pipeline, &timeline, &mut stacks)?)
    };
    let server = tiny_http::Server::http(("127.0.0.1", args.port))
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
    let port = server.server_addr().to_ip().map_or(args.port, |a| a.port());
    eprintln!(
        "heapreplay: serving {} at http://127.0.0.1:{port}/ (Ctrl-C stops)",
        trace.path.display()
    );
    let mut waiting: Option<tiny_http::Request> = None;
    loop {
        let mut stacks = pass::stacks(&trace, &args.common);
        let text = timeline.to_string();
        // Requests until the page asks for the timeline of a trace grown
        // since it was opened.
        let grown = loop {
            // The request that made the trace be opened again is answered
            // from it, however much the file has grown since.
            let (request, reopened) = match waiting.take() {
                Some(r) => (r, true),
                None => match server.recv() {
                    Ok(r) => (r, false),
                    Err(_) => return Ok(ExitCode::SUCCESS),
                },
            };
            let url = request.url().to_string();
            let (path, query) = url.split_once('?').unwrap_or((&url, ""));
            let response = match path.trim_start_matches('/') {
                "api/timeline"
                    if !reopened
                        && trace.live.is_some()
                        && reopened_at.elapsed()
                            >= (reopen_cost * 4).max(std::time::Duration::from_secs(3))
                        && (size(&args.trace) != opened_at || !being_recorded(&args.trace)) =>
                {
                    break request;
                }
                "api/timeline" => respond(200, "application/json", text.clone().into_bytes()),
                "api/moment" => moment(&trace, pipeline, query, &mut stacks),
                "api/window" => window(&trace, pipeline, query, &mut stacks),
                "" => {
                    let made = match page.take() {
                        Some(p) => Ok(p),
                        None => self::page(&trace, pipeline, &timeline, &mut stacks),
                    };
                    match made {
                        Ok(p) => {
                            let response =
                                respond(200, "text/html; charset=utf-8", p.clone().into_bytes());
                            page = Some(p);
                            response
                        }
                        Err(e) => error(500, &e),
                    }
                }
                _ => error(404, "not found"),
            };
            let _ = request.respond(response);
        };
        drop(stacks);
        reopened_at = std::time::Instant::now();
        opened_at = size(&args.trace);
        let reopened = pass::open_trace(&args.trace)
            .and_then(|t| Ok((self::timeline(&t, pipeline, true)?, t)));
        reopen_cost = reopened_at.elapsed();
        match reopened {
            Ok((t, reopened)) => {
                trace = reopened;
                timeline = t;
                page = None;
                waiting = Some(grown);
            }
            Err(e) => {
                let _ = grown.respond(error(500, &e));
            }
        }
    }
}
