// The time-travel page: the timeline of the whole run; a click (or the
// moment field) picks a moment, whose heap is shown as a flame graph and
// a table with the numbers `heapreplay top` prints. It opens at the peak.
"use strict";

// Each value: the stack counters' field, and how the table names it.
const VALUES = {
  inuse_space: ["inuse_bytes", "inuse_objects", "In use"],
  inuse_objects: ["inuse_objects", "inuse_bytes", "Objects in use"],
  alloc_space: ["alloc_bytes", "allocs", "Allocated since the start"],
  alloc_objects: ["allocs", "alloc_bytes", "Objects allocated since the start"],
};
const ROWS = 20;
let timeline = null;
let moment = null;
let plot = null;
let chart = null;

/** `n` with thousands separators, as `heapreplay top` prints it. */
const grouped = (n) => n.toLocaleString("en-US");
/** `part` of `whole` in percent with one decimal, as `heapreplay top`. */
const share = (part, whole) => (whole === 0 ? "-" : ((part * 100) / whole).toFixed(1) + "%");
const seconds = (ns) => (ns / 1e9).toFixed(3) + " s";
const frameText = (f) => (f.place ? `${f.function} (${f.place})` : f.function);

/** Orders two texts as Rust orders strings (by UTF-16 code units here,
 * which agrees for the ASCII names stacks have). */
const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

/** Orders stacks as `heapreplay top` does: frame by frame, each by its
 * function then its place (none first), a shorter stack first. */
function byFrames(a, b) {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const c = cmp(a[i].function, b[i].function) || (a[i].place === b[i].place ? 0 : a[i].place === null ? -1 : b[i].place === null ? 1 : cmp(a[i].place, b[i].place));
    if (c) return c;
  }
  return a.length - b.length;
}

async function get(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(await response.text());
  return response.json();
}

/** The data the page came with (the timeline and the first moment), so
 * that its first screen needs no request; null if it came without. */
function initial() {
  const el = document.getElementById("initial");
  return el ? JSON.parse(el.textContent) : null;
}

async function main() {
  const given = initial();
  timeline = given ? given.timeline : await get("api/timeline");
  document.getElementById("title").textContent = timeline.title;
  document.title = "heapreplay: " + timeline.title;
  document.getElementById("covers").textContent = timeline.covers || "";
  drawTimeline();
  document.getElementById("value").addEventListener("change", render);
  document.getElementById("find").addEventListener("input", find);
  document.getElementById("go").addEventListener("click", () => {
    const s = parseFloat(document.getElementById("at").value);
    if (!Number.isNaN(s)) show(Math.round(s * 1e9));
  });
  document.getElementById("peak").addEventListener("click", () => show("peak"));
  if (given) {
    moment = given.moment;
    shown();
  } else {
    await show(timeline.peak ? "peak" : "end");
  }
}

function drawTimeline() {
  const el = document.getElementById("timeline");
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
      height: 240,
      scales: { x: { time: false } },
      series,
      axes: [
        { label: "seconds", values: (u, splits) => splits.map((v) => seconds(v * 1e9).replace(" s", "")) },
        { label: "bytes", size: 90 },
      ],
      cursor: { drag: { x: true, y: false, setScale: false } },
      hooks: { drawClear: [drawMarks] },
    },
    data,
    el,
  );
  plot.over.addEventListener("click", (e) => {
    const s = plot.posToVal(e.offsetX, "x");
    show(Math.max(0, Math.round(s * 1e9)));
  });
}

/** Markers (dashed) and the chosen moment (solid), over the chart. */
function drawMarks(u) {
  u.over.querySelectorAll(".marker, .chosen").forEach((m) => m.remove());
  const line = (ns, cls, label) => {
    const d = document.createElement("div");
    d.className = cls;
    d.title = label;
    d.style.left = u.valToPos(ns / 1e9, "x") + "px";
    u.over.appendChild(d);
  };
  for (const m of timeline.markers) line(m.ns, "marker", m.label);
  if (moment) line(moment.ns, "chosen", "chosen: " + seconds(moment.ns));
}

async function show(at) {
  moment = await get("api/moment?at=" + at);
  shown();
}

/** Shows the moment just chosen. */
function shown() {
  document.getElementById("at").value = (moment.ns / 1e9).toFixed(3);
  if (plot) plot.redraw(false, false);
  render();
}

function render() {
  const [field, other, heading] = VALUES[document.getElementById("value").value];
  const t = moment.totals;
  document.getElementById("summary").textContent =
    `${moment.label.includes("(") ? moment.label : `${moment.label} (${seconds(moment.ns)})`}: ${grouped(t.inuse_bytes)} bytes in use in ${grouped(t.inuse_objects)} objects; ` +
    `${grouped(t.alloc_bytes)} bytes allocated in ${grouped(t.allocs)} objects since the start` +
    (timeline.covers ? ` (since the attach; ${grouped(moment.unseen_frees)} frees of older blocks counted apart)` : "");
  // Largest first; ties in the order `heapreplay top` breaks them (by frames).
  const rows = moment.stacks.filter((s) => s[field] > 0).sort((a, b) => b[field] - a[field] || byFrames(a.frames, b.frames));
  document.getElementById("top-caption").textContent = `${heading}: top ${Math.min(ROWS, rows.length)} of ${rows.length} stacks`;
  const tbody = document.querySelector("#top tbody");
  tbody.replaceChildren();
  for (const s of rows.slice(0, ROWS)) {
    const tr = document.createElement("tr");
    tr.tabIndex = 0;
    const cells = [grouped(s[field]), share(s[field], t[field]), grouped(s[other]), s.frames.map(frameText).join(" < ") || "[no stack]"];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.className = i < 3 ? "num" : "stack";
      td.textContent = text;
      tr.appendChild(td);
    });
    tbody.appendChild(tr);
  }
  drawFlame(rows, field);
}

/** The flame graph of the chosen value: callers at the bottom. */
function drawFlame(rows, field) {
  const root = { name: "all", value: 0, children: [] };
  for (const s of rows) {
    let node = root;
    node.value += s[field];
    for (const f of [...s.frames].reverse()) {
      const name = frameText(f);
      let child = node.children.find((c) => c.name === name);
      if (!child) {
        child = { name, value: 0, children: [] };
        node.children.push(child);
      }
      child.value += s[field];
      node = child;
    }
  }
  const el = document.getElementById("flame");
  el.replaceChildren();
  chart = flamegraph
    .default()
    .width(Math.min(1200, Math.max(600, el.clientWidth || 1200)))
    .cellHeight(18)
    .transitionDuration(0)
    .minFrameSize(1)
    .selfValue(false)
    .setSearchMatch((d, term) => !!term && d.data.name.includes(term))
    .setLabelHandler((d) => `${d.data.name}: ${grouped(d.value)} (${share(d.value, root.value)})`);
  d3.select(el).datum(root).call(chart);
  find();
}

function find() {
  const term = document.getElementById("find").value;
  if (!chart) return;
  if (term) chart.search(term);
  else chart.clear();
}

main().catch((e) => {
  document.getElementById("summary").textContent = "Error: " + e.message;
});
