// The time-travel page. The chart shows the whole run; what is below it
// is one of three views, each with the numbers the CLI prints:
// - a moment (a click): flame graph and top stacks, as `heapreplay top`;
// - a window (a drag): what it allocated and left live, and what it
//   allocated and freed, as `heapreplay leaks --from --to`;
// - two moments (a shift-click): a differential flame graph and the stacks
//   that grew and shrank most, as `heapreplay diff`.
// It opens at the peak. Every control works from the keyboard too.
"use strict";

// Each value: the stack counters' field, the other column's, how tables
// name it.
const VALUES = {
  inuse_space: ["inuse_bytes", "inuse_objects", "In use", "bytes", "objects"],
  inuse_objects: ["inuse_objects", "inuse_bytes", "Objects in use", "objects", "bytes"],
  alloc_space: ["alloc_bytes", "allocs", "Allocated since the start", "bytes", "objects"],
  alloc_objects: ["allocs", "alloc_bytes", "Objects allocated since the start", "objects", "bytes"],
};
const ROWS = 20;
let timeline = null;
/** The moment shown, or the first of two compared. */
let moment = null;
/** What is shown: {kind: "moment"}, {kind: "window", span}, or
 * {kind: "compare", before, after}. */
let view = null;
let plot = null;
let chart = null;
/** The flame graph's tree, to find a clicked frame's whole stack. */
let flameRoot = null;

/** `n` with thousands separators, as the CLI prints it. */
const grouped = (n) => n.toLocaleString("en-US");
/** `+1,024` / `-512`, as `heapreplay diff` prints changes. */
const signed = (n) => (n < 0 ? "-" : "+") + grouped(Math.abs(n));
/** `part` of `whole` in percent with one decimal, as `heapreplay top`
 * prints it: an exact tie (a quarter: 0.25, 1.75) goes to the even
 * digit, as Rust rounds it, where `toFixed` would round it up. */
function share(part, whole) {
  if (whole === 0) return "-";
  const x = (part * 100) / whole;
  if (Number.isInteger(4 * x) && (4 * x) % 2 === 1) {
    const n = Math.floor(x * 10);
    return ((n % 2 === 0 ? n : n + 1) / 10).toFixed(1) + "%";
  }
  return x.toFixed(1) + "%";
}
/** `+1 object`, `-2 objects`, as `heapreplay diff` counts changes. */
const signedCounted = (n, noun) => `${signed(n)} ${noun}${Math.abs(n) === 1 ? "" : "s"}`;
const seconds = (ns) => (ns / 1e9).toFixed(3) + " s";
const frameText = (f) => (f.place ? `${f.function} (${f.place})` : f.function);
const stackText = (frames) => frames.map(frameText).join(" < ") || "[no stack]";
const $ = (id) => document.getElementById(id);

/** Orders two texts as Rust orders strings (by UTF-16 code units here,
 * which agrees for the ASCII names stacks have). */
const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

/** Orders stacks as the CLI does: frame by frame, each by its function
 * then its place (none first), a shorter stack first. */
function byFrames(a, b) {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const c = cmp(a[i].function, b[i].function) || (a[i].place === b[i].place ? 0 : a[i].place === null ? -1 : b[i].place === null ? 1 : cmp(a[i].place, b[i].place));
    if (c) return c;
  }
  return a.length - b.length;
}

/** `rows` with `value(row) > 0` (or `counted(row) > 0`), largest value
 * first, ties by frames. */
const largest = (rows, value, counted = value) => rows.filter((r) => counted(r) > 0).sort((a, b) => value(b) - value(a) || byFrames(a.frames, b.frames));

/** The precomputed moments of a report file (`heapreplay report`), or
 * null when a server answers. */
let report = null;

async function get(path) {
  if (report) return offline(path);
  const response = await fetch(path);
  if (!response.ok) throw new Error(await response.text());
  return response.json();
}

/** A report's answer to what a server would be asked (`api/moment?at=`,
 * `api/window?from=&to=`), from its moments: the nearest at or before
 * each time asked for. */
function offline(path) {
  const query = new URLSearchParams(path.split("?")[1] || "");
  const moments = report.moments;
  const nearest = (at) => {
    const end = moments.findIndex((m) => m.label.startsWith("the end"));
    if (at === "peak") {
      const peak = moments.findIndex((m) => m.label.startsWith("the peak"));
      return peak < 0 ? end : peak;
    }
    if (at === "end") return end;
    const ns = Number(at);
    let best = 0;
    moments.forEach((m, i) => {
      if (m.ns <= ns && m.ns > moments[best].ns) best = i;
    });
    return best;
  };
  if (path.startsWith("api/moment")) return expand(moments[Math.max(0, nearest(query.get("at")))]);
  let [i, j] = [nearest(query.get("from")), nearest(query.get("to"))];
  if (moments[i].ns > moments[j].ns) [i, j] = [j, i];
  return spanOf(moments[i], moments[j]);
}

/** A report's moment in the shape the server sends. */
function expand(m) {
  const stacks = m.rows.map(([id, inuse_bytes, inuse_objects, alloc_bytes, allocs]) => ({ frames: report.stacks[id], inuse_bytes, inuse_objects, alloc_bytes, allocs, other: id === report.other }));
  return { label: m.label, ns: m.ns, totals: m.totals, unseen_frees: m.unseen_frees, count: m.count, stacks };
}

/** The window between two of a report's moments, in the shape the server
 * sends: what was allocated after `a` and is still live at `b` (the
 * periods after a's, counted at b), and the rest of what was allocated in
 * between (allocated at b minus at a), which was freed within it. */
function spanOf(a, b) {
  const first = report.moments.indexOf(a) + 1;
  const last = report.moments.indexOf(b);
  const per = new Map();
  const row = (id) => {
    if (!per.has(id)) per.set(id, { frames: report.stacks[id], other: id === report.other, live_bytes: 0, live_objects: 0, temporary_bytes: 0, temporary_objects: 0 });
    return per.get(id);
  };
  for (const [id, period, bytes, objects] of b.born) {
    if (period >= first && period <= last) {
      row(id).live_bytes += bytes;
      row(id).live_objects += objects;
    }
  }
  const allocated = new Map();
  for (const [id, , , bytes, objects] of b.rows) allocated.set(id, [bytes, objects]);
  for (const [id, , , bytes, objects] of a.rows) {
    const [later, laterObjects] = allocated.get(id) || [0, 0];
    allocated.set(id, [later - bytes, laterObjects - objects]);
  }
  for (const [id, [bytes, objects]] of allocated) {
    const r = row(id);
    r.temporary_bytes = Math.max(0, bytes - r.live_bytes);
    r.temporary_objects = Math.max(0, objects - r.live_objects);
  }
  return { from: { label: a.label, ns: a.ns }, to: { label: b.label, ns: b.ns }, stacks: [...per.values()] };
}

/** The data the page came with (the timeline and the first moment), so
 * that its first screen needs no request; null if it came without. */
function initial() {
  const el = $("initial");
  return el ? JSON.parse(el.textContent) : null;
}

/** Seconds typed in a field, as nanoseconds; null if not a number. */
function typed(id) {
  const s = parseFloat($(id).value);
  return Number.isNaN(s) || s < 0 ? null : Math.round(s * 1e9);
}

async function main() {
  const given = initial();
  report = given && given.report ? given.report : null;
  if (report) {
    given.moment = expand(report.moments[given.first]);
    $("hint").append(
      ` This file holds ${report.moments.length} moments: a click shows the nearest at or before it. ` +
        `Each lists its ${report.keep} biggest stacks whole (by bytes in use, and by bytes allocated), the rest as [other stacks].`,
    );
  }
  timeline = given ? given.timeline : await get("api/timeline");
  $("title").textContent = timeline.title;
  document.title = "heapreplay: " + timeline.title;
  $("covers").textContent = timeline.covers || "";
  drawTimeline();
  following();
  $("value").addEventListener("change", render);
  $("find").addEventListener("input", find);
  $("moment-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const ns = typed("at");
    if (ns !== null) act(showMoment(ns));
  });
  $("peak").addEventListener("click", () => act(showMoment("peak")));
  $("window-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const [a, b] = [typed("from"), typed("to")];
    if (a !== null && b !== null) act(showWindow(Math.min(a, b), Math.max(a, b)));
  });
  $("compare-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const [a, b] = [typed("before"), typed("after")];
    if (a !== null && b !== null) act(showCompare(a, b));
  });
  if (given) {
    moment = given.moment;
    view = { kind: "moment" };
    shown();
  } else {
    await showMoment(timeline.peak ? "peak" : "end");
  }
  document.body.dataset.ready = "true";
}

/** Runs a request's promise, saying on the page if it fails. */
function act(promise) {
  document.body.dataset.ready = "false";
  promise
    .catch((e) => {
      $("summary").textContent = "Error: " + e.message;
    })
    .finally(() => {
      document.body.dataset.ready = "true";
    });
}

function drawTimeline() {
  const el = $("timeline");
  const xs = timeline.points.map((p) => p[0] / 1e9);
  const ys = timeline.points.map((p) => p[1]);
  const series = [{ label: "seconds" }, { label: "bytes in use", stroke: "#1f5fbf", fill: "rgba(31,95,191,0.15)" }];
  const data = [xs, ys];
  if (timeline.mapped) {
    series.push({ label: "bytes mapped", stroke: "#8a4f00", dash: [6, 4] });
    data.push(timeline.mapped);
  }
  plot = new uPlot(
    {
      width: Math.min(1200, Math.max(600, el.clientWidth || 1200)),
      height: 220,
      scales: { x: { time: false } },
      series,
      axes: [
        { label: "seconds", values: (u, splits) => splits.map((v) => seconds(v * 1e9).replace(" s", "")) },
        { label: "bytes", size: 90 },
      ],
      cursor: { drag: { x: true, y: false, setScale: false } },
      hooks: { drawClear: [drawMarks], setSelect: [selected] },
    },
    data,
    el,
  );
  const at = (e) => Math.max(0, Math.round(plot.posToVal(e.offsetX, "x") * 1e9));
  plot.over.addEventListener("click", (e) => {
    if (e.shiftKey && moment) act(showCompare(moment.ns, at(e)));
    else act(showMoment(at(e)));
  });
  el.tabIndex = 0;
  el.setAttribute("role", "slider");
  el.setAttribute("aria-label", "The chosen moment: left and right arrows move it, Home and End go to the start and the end, P to the peak");
  el.setAttribute("aria-valuemin", "0");
  el.setAttribute("aria-valuemax", String(timeline.end_ns / 1e9));
  el.addEventListener("keydown", stepped);
}

/** A trace still being written: says so, and asks for its timeline
 * again three seconds after each answer until the recording ends,
 * redrawing the chart as it grows. A new recording at the same path is
 * another run: the page starts again. */
function following() {
  const say = () => {
    $("live").textContent = timeline.live ? timeline.state + " The chart follows it as it grows." : following.seen ? timeline.state : "";
  };
  if (report) {
    $("live").textContent = timeline.live ? "The trace was still being written when this file was made." : "";
    return;
  }
  say();
  if (!timeline.live) return;
  following.seen = true;
  const poll = async () => {
    let t = null;
    try {
      t = await get("api/timeline");
    } catch (e) {
      $("live").textContent = "The server does not answer: " + e.message;
    }
    if (t && t.run !== timeline.run) {
      location.reload();
      return;
    }
    if (t && (t.end_ns !== timeline.end_ns || t.live !== timeline.live || t.markers.length !== timeline.markers.length)) {
      const series = plot.series.length - 1;
      timeline = t;
      const data = [t.points.map((p) => p[0] / 1e9), t.points.map((p) => p[1])];
      if (series > 1) data.push(t.mapped || t.points.map(() => null));
      plot.setData(data);
      $("timeline").setAttribute("aria-valuemax", String(t.end_ns / 1e9));
    }
    if (t) say();
    if (!t || t.live) setTimeout(poll, 3000);
  };
  setTimeout(poll, 3000);
}

/** Keyboard on the chart: arrows move the moment by a hundredth of the
 * run (a tenth with Shift; in a report, to the next moment it holds, or
 * the tenth), Home and End go to either end, P to the peak. */
function stepped(e) {
  const end = timeline.end_ns;
  const now = moment ? moment.ns : 0;
  let step = Math.max(1, Math.round(end / (e.shiftKey ? 10 : 100)));
  if (report) {
    // A report's moments one by one (ten with Shift).
    const times = [...new Set(report.moments.map((m) => m.ns))].sort((a, b) => a - b);
    const here = Math.max(0, times.findLastIndex((ns) => ns <= now));
    const by = e.shiftKey ? 10 : 1;
    const to = { ArrowLeft: times[Math.max(0, here - by)], ArrowRight: times[Math.min(times.length - 1, here + by)] }[e.key];
    if (to !== undefined) step = Math.abs(to - now);
  }
  const to = {
    ArrowLeft: Math.max(0, now - step),
    ArrowRight: Math.min(end, now + step),
    Home: 0,
    End: "end",
    p: "peak",
    P: "peak",
  }[e.key];
  if (to === undefined) return;
  e.preventDefault();
  act(showMoment(to));
}

/** A drag on the chart: the window it covers. */
function selected(u) {
  if (u.select.width <= 0) return;
  const a = Math.max(0, Math.round(u.posToVal(u.select.left, "x") * 1e9));
  const b = Math.max(0, Math.round(u.posToVal(u.select.left + u.select.width, "x") * 1e9));
  act(showWindow(a, b));
}

/** Markers (dashed), the moments shown (solid) and the window (shaded),
 * over the chart. */
function drawMarks(u) {
  u.over.querySelectorAll(".marker, .chosen, .span").forEach((m) => m.remove());
  const x = (ns) => u.valToPos(ns / 1e9, "x");
  const line = (ns, cls, label) => {
    const d = document.createElement("div");
    d.className = cls;
    d.title = label;
    d.style.left = x(ns) + "px";
    u.over.appendChild(d);
  };
  for (const m of timeline.markers) line(m.ns, "marker", m.label);
  if (!view) return;
  if (view.kind === "moment") line(moment.ns, "chosen", "chosen: " + seconds(moment.ns));
  if (view.kind === "compare") {
    line(view.before.ns, "chosen", "before: " + seconds(view.before.ns));
    line(view.after.ns, "chosen", "after: " + seconds(view.after.ns));
  }
  if (view.kind === "window") {
    const d = document.createElement("div");
    d.className = "span";
    d.style.left = x(view.span.from.ns) + "px";
    d.style.width = Math.max(1, x(view.span.to.ns) - x(view.span.from.ns)) + "px";
    u.over.appendChild(d);
  }
}

async function showMoment(at) {
  moment = await get("api/moment?at=" + at);
  view = { kind: "moment" };
  shown();
}

async function showWindow(from, to) {
  const span = await get(`api/window?from=${from}&to=${to}`);
  view = { kind: "window", span };
  $("from").value = (span.from.ns / 1e9).toFixed(3);
  $("to").value = (span.to.ns / 1e9).toFixed(3);
  shown();
}

async function showCompare(a, b) {
  const [x, y] = await Promise.all([get("api/moment?at=" + a), get("api/moment?at=" + b)]);
  const [before, after] = x.ns <= y.ns ? [x, y] : [y, x];
  moment = before;
  view = { kind: "compare", before, after };
  $("before").value = (before.ns / 1e9).toFixed(3);
  $("after").value = (after.ns / 1e9).toFixed(3);
  shown();
}

/** Shows the view just chosen. */
function shown() {
  if (view.kind === "moment") $("at").value = (moment.ns / 1e9).toFixed(3);
  if (plot) {
    plot.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
    plot.redraw(false, false);
  }
  const el = $("timeline");
  el.setAttribute("aria-valuenow", String((moment ? moment.ns : 0) / 1e9));
  el.setAttribute("aria-valuetext", moment ? moment.label : "");
  $("stack").replaceChildren();
  render();
}

function render() {
  $("value-label").hidden = view.kind === "window";
  if (view.kind === "moment") renderMoment();
  else if (view.kind === "window") renderWindow();
  else renderCompare();
  find();
}

/** The moment's label with its time, once. */
const when = (m) => (m.label.includes("(") || m.label === seconds(m.ns) ? m.label : `${m.label} (${seconds(m.ns)})`);
/** `1 stack`, `2 stacks`. */
const stacksCounted = (n) => `${grouped(n)} stack${n === 1 ? "" : "s"}`;

function renderMoment() {
  const [field, other, heading, column, otherColumn] = VALUES[$("value").value];
  const t = moment.totals;
  $("view-heading").textContent = "The heap at the chosen moment";
  $("summary").textContent =
    `${when(moment)}: ${grouped(t.inuse_bytes)} bytes in use in ${grouped(t.inuse_objects)} objects; ` +
    `${grouped(t.alloc_bytes)} bytes allocated in ${grouped(t.allocs)} objects since the start` +
    (timeline.covers ? ` (since the attach; ${grouped(moment.unseen_frees)} frees of older blocks counted apart)` : "");
  // A report's stacks beyond those it lists whole are one row: in the
  // flame graph, not in the table.
  const all = largest(moment.stacks, (s) => s[field]);
  const rows = all.filter((s) => !s.other);
  tables([
    {
      id: "top",
      // In a report, the count is of every stack, listed whole or not.
      caption: `${heading}: top ${Math.min(ROWS, rows.length)} of ${moment.count === undefined ? rows.length : moment.count[field]} stacks`,
      columns: [column, "share", otherColumn],
      rows: rows.slice(0, ROWS).map((s) => ({ frames: s.frames, cells: [grouped(s[field]), share(s[field], t[field]), grouped(s[other])] })),
    },
  ]);
  drawFlame(all.map((s) => ({ frames: s.frames, value: s[field] })));
}

function renderWindow() {
  const span = view.span;
  // As leaks lists them: every stack with a block live (even of 0 bytes).
  const liveAll = largest(span.stacks, (s) => s.live_bytes, (s) => s.live_objects);
  const temporaryAll = largest(span.stacks, (s) => s.temporary_bytes);
  // A report's [other stacks]: in the totals and the flame graph only.
  const live = liveAll.filter((s) => !s.other);
  const temporary = temporaryAll.filter((s) => !s.other);
  const sum = (rows, f) => rows.reduce((acc, s) => acc + s[f], 0);
  const [liveBytes, liveObjects] = [sum(liveAll, "live_bytes"), sum(liveAll, "live_objects")];
  const [tempBytes, tempObjects] = [sum(temporaryAll, "temporary_bytes"), sum(temporaryAll, "temporary_objects")];
  $("view-heading").textContent = "What a window of the run allocated";
  $("summary").textContent =
    `From ${when(span.from)} to ${when(span.to)}: ${grouped(liveBytes)} bytes in ${grouped(liveObjects)} objects ` +
    `allocated in the window and still live at its end, from ${stacksCounted(live.length)}; ` +
    `${grouped(tempBytes)} bytes in ${grouped(tempObjects)} objects allocated and freed within it.`;
  tables([
    {
      id: "suspects",
      caption: `Allocated in the window and still live at its end (leak suspects): top ${Math.min(ROWS, live.length)} of ${live.length} stacks`,
      columns: ["bytes", "share", "objects"],
      rows: live.slice(0, ROWS).map((s) => ({ frames: s.frames, cells: [grouped(s.live_bytes), share(s.live_bytes, liveBytes), grouped(s.live_objects)] })),
    },
    {
      id: "temporaries",
      caption: `Temporary (allocated and freed within the window): top ${Math.min(ROWS, temporary.length)} of ${temporary.length} stacks`,
      columns: ["bytes", "share", "objects"],
      rows: temporary.slice(0, ROWS).map((s) => ({ frames: s.frames, cells: [grouped(s.temporary_bytes), share(s.temporary_bytes, tempBytes), grouped(s.temporary_objects)] })),
    },
  ]);
  drawFlame(liveAll.map((s) => ({ frames: s.frames, value: s.live_bytes })));
}

/** What changed per stack from `before` to `after`, in the order
 * `heapreplay diff` lists it: in-use bytes grown most first, then bytes
 * allocated, then by frames. */
function changes(before, after) {
  const zero = () => ({ inuse_bytes: 0, inuse_objects: 0, alloc_bytes: 0, allocs: 0 });
  const byKey = new Map();
  for (const [side, m] of [["before", before], ["after", after]]) {
    for (const s of m.stacks) {
      const key = JSON.stringify(s.frames);
      if (!byKey.has(key)) byKey.set(key, { frames: s.frames, other: !!s.other, before: zero(), after: zero() });
      const c = byKey.get(key)[side];
      for (const f of Object.keys(c)) c[f] += s[f];
    }
  }
  const out = [...byKey.values()].map((c) => {
    c.delta = {};
    for (const f of Object.keys(c.after)) c.delta[f] = c.after[f] - c.before[f];
    return c;
  });
  return out.sort((a, b) => b.delta.inuse_bytes - a.delta.inuse_bytes || b.delta.alloc_bytes - a.delta.alloc_bytes || byFrames(a.frames, b.frames));
}

function renderCompare() {
  const [field] = VALUES[$("value").value];
  const all = changes(view.before, view.after);
  const total = (f) => all.reduce((acc, c) => acc + c.delta[f], 0);
  $("view-heading").textContent = "What changed between two moments";
  $("summary").textContent =
    `From ${when(view.before)} to ${when(view.after)}: in use ${signed(total("inuse_bytes"))} bytes (${signedCounted(total("inuse_objects"), "object")}); ` +
    `allocated ${signed(total("alloc_bytes"))} bytes (${signedCounted(total("allocs"), "object")}) in between. ` +
    "In the flame graph, widths are the later moment's; red grew, blue shrank, orange is new.";
  const grew = all.filter((c) => c.delta.inuse_bytes > 0 && !c.other);
  const shrank = all.filter((c) => c.delta.inuse_bytes < 0 && !c.other).reverse();
  const row = (c) => ({ frames: c.frames, cells: [signed(c.delta.inuse_bytes), signed(c.delta.inuse_objects), signed(c.delta.alloc_bytes)] });
  const columns = ["in use bytes", "objects", "allocated"];
  tables([
    { id: "grew", caption: `Grew most: top ${Math.min(ROWS, grew.length)} of ${grew.length} stacks`, columns, rows: grew.slice(0, ROWS).map(row) },
    { id: "shrank", caption: `Shrank most: top ${Math.min(ROWS, shrank.length)} of ${shrank.length} stacks`, columns, rows: shrank.slice(0, ROWS).map(row) },
  ]);
  // Widths are the later moment's; colours the change (red grew, blue shrank).
  drawFlame(
    all.filter((c) => c.after[field] > 0 || c.delta[field] !== 0).map((c) => ({ frames: c.frames, value: Math.max(0, c.after[field]), delta: c.delta[field] })),
    true,
  );
}

/** Replaces the view's tables: each with an id, a caption, the number
 * columns' headings, and rows of {frames, cells}. A row's stack is shown
 * whole on a click or Enter. */
function tables(specs) {
  const holder = $("tables");
  holder.replaceChildren();
  for (const spec of specs) {
    const table = document.createElement("table");
    table.id = spec.id;
    const caption = table.createCaption();
    caption.textContent = spec.caption;
    const head = table.createTHead().insertRow();
    for (const text of [...spec.columns, "stack (allocating function first)"]) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = text;
      head.appendChild(th);
    }
    const body = table.createTBody();
    for (const r of spec.rows) {
      const tr = body.insertRow();
      tr.tabIndex = 0;
      r.cells.forEach((text) => {
        const td = tr.insertCell();
        td.className = "num";
        td.textContent = text;
      });
      const td = tr.insertCell();
      td.className = "stack";
      td.textContent = stackText(r.frames);
      const open = () => showStack(r.frames, spec.caption);
      tr.addEventListener("click", open);
      tr.addEventListener("keydown", (e) => {
        if (e.key === "Enter") open();
      });
    }
    holder.appendChild(table);
  }
}

/** One stack, whole: every frame with its file:line, allocating first. */
function showStack(frames, from) {
  const el = $("stack");
  el.replaceChildren();
  const h = document.createElement("h3");
  h.textContent = "Whole stack (" + from.replace(/:.*/, "") + ")";
  const list = document.createElement("ol");
  list.start = 0;
  for (const f of frames) {
    const li = document.createElement("li");
    const name = document.createElement("code");
    name.textContent = f.function;
    li.appendChild(name);
    if (f.place) li.append(" at " + f.place);
    list.appendChild(li);
  }
  el.append(h, list);
  el.focus();
}

/** The flame graph of `rows` ({frames, value, delta?}), callers at the
 * bottom; `differential` colours each frame by its change. */
function drawFlame(rows, differential = false) {
  const root = { name: "all", value: 0, delta: 0, children: [], frames: [] };
  for (const s of rows) {
    let node = root;
    node.value += s.value;
    node.delta += s.delta || 0;
    const path = [...s.frames].reverse();
    path.forEach((f, depth) => {
      const name = frameText(f);
      let child = node.children.find((c) => c.name === name);
      if (!child) {
        child = { name, value: 0, delta: 0, children: [], frames: path.slice(0, depth + 1).reverse() };
        node.children.push(child);
      }
      child.value += s.value;
      child.delta += s.delta || 0;
      node = child;
    });
  }
  flameRoot = root;
  const el = $("flame");
  el.replaceChildren();
  const label = differential
    ? (d) => `${d.data.name}: ${grouped(d.value)} now, ${signed(d.data.delta)}`
    : (d) => `${d.data.name}: ${grouped(d.value)} (${share(d.value, root.value)})`;
  chart = flamegraph
    .default()
    .width(Math.min(1200, Math.max(600, el.clientWidth || 1200)))
    .cellHeight(18)
    .transitionDuration(0)
    .minFrameSize(1)
    .selfValue(false)
    .setSearchMatch((d, term) => !!term && d.data.name.includes(term))
    .setLabelHandler(label)
    .onClick((d) => {
      if (d && d.data.frames && d.data.frames.length) showStack(d.data.frames, "flame graph");
    });
  if (differential) chart.setColorMapper(flamegraph.colorMapper.differentialColorMapper);
  d3.select(el).datum(root).call(chart);
}

function find() {
  const term = $("find").value;
  if (!chart) return;
  if (term) chart.search(term);
  else chart.clear();
}

main().catch((e) => {
  $("summary").textContent = "Error: " + e.message;
});
