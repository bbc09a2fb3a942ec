//! Drawing a [`Timeline`] as an SVG or PNG chart (plotters): the bytes in
//! use, markers, snapshots and the peak, with labels that do not overlap.

use super::{Mark, Timeline};
use crate::report::human;
use heapreplay_engine::clock::seconds;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;
use std::sync::OnceLock;

/// Width and height of the image, in pixels.
pub const IMAGE_SIZE: (u32, u32) = (1200, 600);

/// The font PNG text is drawn with (Debian package fonts-dejavu-core).
pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// The image formats [`render`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Scalable vector graphics.
    Svg,
    /// A PNG bitmap of [`IMAGE_SIZE`].
    Png,
}

/// The format for an output file name: `.svg` or `.png` (any case).
pub fn format_of(path: &Path) -> Result<Format, String> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("svg") => Ok(Format::Svg),
        Some("png") => Ok(Format::Png),
        _ => Err(format!(
            "{}: cannot tell which image to write: name the file .svg or .png",
            path.display()
        )),
    }
}

/// Checks, before a long pass, that `path` can be drawn into: a known
/// extension, a directory that takes new files, and for PNG the font.
pub fn check_output(path: &Path) -> Result<Format, String> {
    let format = format_of(path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let probe = dir.join(format!(".heapreplay-timeline.{}", std::process::id()));
    std::fs::File::create(&probe)
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    if format == Format::Png {
        load_font()?;
    }
    Ok(format)
}

/// Registers [`FONT_PATH`] with plotters, once per process.
fn load_font() -> Result<(), String> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let missing = |why: String| {
                format!(
                    "PNG needs the font {FONT_PATH} (Debian package fonts-dejavu-core): {why}; write .svg instead"
                )
            };
            let bytes = std::fs::read(FONT_PATH).map_err(|e| missing(e.to_string()))?;
            // plotters keeps fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| missing("not a font plotters can read".into()))
        })
        .clone()
}

/// Draws `timeline` into `path`, SVG or PNG by the file's extension.
pub fn render(timeline: &Timeline, path: &Path, title: &str) -> Result<(), String> {
    let failed = |e: String| format!("cannot write {}: {e}", path.display());
    match format_of(path)? {
        Format::Svg => {
            // Only used to measure labels; SVG viewers bring their own fonts.
            let _ = load_font();
            let root = SVGBackend::new(path, IMAGE_SIZE).into_drawing_area();
            draw(&root, timeline, title, true).map_err(failed)?;
            root.present().map_err(|e| failed(e.to_string()))
        }
        Format::Png => {
            load_font()?;
            let root = BitMapBackend::new(path, IMAGE_SIZE).into_drawing_area();
            draw(&root, timeline, title, false).map_err(failed)?;
            root.present().map_err(|e| failed(e.to_string()))
        }
    }
}

/// A binary unit for the y axis: its name and size in bytes.
fn unit_for(bytes: u64) -> (&'static str, f64) {
    match bytes {
        b if b >= 1 << 30 => ("GiB", (1u64 << 30) as f64),
        b if b >= 1 << 20 => ("MiB", (1u64 << 20) as f64),
        b if b >= 1 << 10 => ("KiB", 1024.0),
        _ => ("B", 1.0),
    }
}

/// A tick value without floating-point noise: `0.3`, `2`, `0.0005`.
fn tick(v: f64) -> String {
    let r = (v * 1e9).round() / 1e9;
    if r == 0.0 {
        "0".into()
    } else {
        format!("{r}")
    }
}

const LINE: RGBColor = RGBColor(31, 119, 180);
const MARKER: RGBColor = RGBColor(214, 95, 0);
const SNAPSHOT: RGBColor = RGBColor(44, 140, 44);
const PEAK: RGBColor = RGBColor(200, 30, 30);
/// The mapped-memory curve: a purple apart from the others.
const MAPPED: RGBColor = RGBColor(120, 60, 160);
const LABEL_SIZE: f64 = 16.0;
const ROW_HEIGHT: i32 = 18;
const MAX_ROWS: usize = 3;
/// Up to this many snapshots get a dashed line, a dot and a label each;
/// more are shown as ticks on the time axis and counted.
const MAX_SNAPSHOT_LINES: usize = 40;

/// Width of `text` in pixels: measured with the font when plotters has one,
/// else estimated.
fn text_width<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    text: &str,
    style: &TextStyle,
) -> i32 {
    match root.estimate_text_size(text, style) {
        Ok((w, _)) => w as i32,
        Err(_) => (text.chars().count() as f64 * style.font.get_size() * 0.55) as i32,
    }
}

/// Labels placed in rows so that none overlaps another.
#[derive(Clone)]
struct Rows {
    /// The labels' spans `(left, right)` in each row.
    taken: Vec<Vec<(i32, i32)>>,
    left: i32,
    right: i32,
}

impl Rows {
    fn new(rows: usize, left: i32, right: i32) -> Self {
        Rows {
            taken: vec![Vec::new(); rows],
            left,
            right,
        }
    }

    /// Room for a label `width` wide next to `x` (right of it, or left of
    /// it at the right edge): the row and the label's left edge.
    fn place(&mut self, x: i32, width: i32) -> Option<(usize, i32)> {
        const GAP: i32 = 8;
        let start = if x + 4 + width <= self.right {
            x + 4
        } else {
            (x - 4 - width).max(self.left)
        };
        let end = start + width;
        let row = self.taken.iter().position(|spans| {
            spans
                .iter()
                .all(|&(l, r)| end + GAP <= l || r + GAP <= start)
        })?;
        self.taken[row].push((start, end));
        Some((row, start))
    }
}

/// Text on a translucent white box, `(x, y)` being its top left corner.
fn label<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    text: &str,
    (x, y): (i32, i32),
    width: i32,
    color: RGBColor,
) -> Result<(), String> {
    let style = TextStyle::from(("sans-serif", LABEL_SIZE).into_font())
        .color(&color)
        .pos(Pos::new(HPos::Left, VPos::Top));
    root.draw(&Rectangle::new(
        [(x - 2, y - 1), (x + width + 2, y + ROW_HEIGHT - 2)],
        WHITE.mix(0.8).filled(),
    ))
    .map_err(|e| e.to_string())?;
    root.draw(&Text::new(text.to_string(), (x, y), style))
        .map_err(|e| e.to_string())
}

/// Draws the plot; `one_path`: the curve as one path (SVG), else as
/// segments (bitmaps).
fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    t: &Timeline,
    title: &str,
    one_path: bool,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let (width, _) = root.dim_in_pixel();
    root.draw(&Text::new(
        title.to_string(),
        (width as i32 / 2, 10),
        TextStyle::from(("sans-serif", 22).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top)),
    ))
    .map_err(err)?;

    let points = t.points();
    let peak = t.peak().unwrap_or((0, 0));
    let end_ns = points.last().map_or(0, |p| p.0).max(t.end_ns()).max(1);
    let start_ns = t.start_ns().min(end_ns - 1);
    let x_min = start_ns as f64 / 1e9;
    let x_max = end_ns as f64 / 1e9;
    let mapped = t.mapped();
    let highest = mapped.and_then(|m| m.peak()).map_or(0, |p| p.1).max(peak.1);
    let (unit, scale) = unit_for(highest);
    // Headroom above the peak for its label and the rows of labels.
    let y_max = (highest as f64 / scale / 0.72).max(1.0);

    let area = root.margin(44, 10, 10, 30);
    let mut chart = ChartBuilder::on(&area)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(x_min..x_max, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(215, 215, 215))
        .label_style(("sans-serif", 15))
        .x_labels(10)
        .y_labels(8)
        .x_label_formatter(&|x| format!("{} s", tick(*x)))
        .y_label_formatter(&|y| format!("{} {unit}", tick(*y)))
        .draw()
        .map_err(err)?;

    let xy = |(ns, bytes): (u64, u64)| (ns as f64 / 1e9, bytes as f64 / scale);
    let curve: Vec<(f64, f64)> = points.iter().copied().map(xy).collect();
    let mut outline = curve.clone();
    outline.push((x_max, 0.0));
    outline.push((x_min, 0.0));
    chart
        .draw_series(std::iter::once(Polygon::new(
            outline,
            LINE.mix(0.18).filled(),
        )))
        .map_err(err)?;

    // Markers: solid lines across the plot (over the snapshots' dashed
    // ones), labelled in the top rows.
    let mut markers: Vec<&Mark> = t.markers().iter().collect();
    markers.sort_by_key(|m| m.ns);
    let vertical = |ns: u64| {
        let x = ns.min(end_ns) as f64 / 1e9;
        vec![(x, 0.0), (x, y_max)]
    };
    // Snapshots: when there are few, a dashed line and a dot on the curve;
    // when there are many, ticks on the time axis.
    let snapshots = t.snapshots();
    let few = snapshots.len() <= MAX_SNAPSHOT_LINES;
    if few {
        for s in snapshots {
            chart
                .draw_series(std::iter::once(DashedPathElement::new(
                    vertical(s.ns),
                    6,
                    4,
                    SNAPSHOT.stroke_width(1),
                )))
                .map_err(err)?;
        }
    }
    for m in &markers {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vertical(m.ns),
                MARKER.stroke_width(1),
            )))
            .map_err(err)?;
    }
    if let Some(m) = mapped {
        let curve: Vec<(f64, f64)> = m.points().into_iter().map(xy).collect();
        chart
            .draw_series(LineSeries::new(curve, MAPPED.stroke_width(2)))
            .map_err(err)?;
        let legend = |text: &str, color: RGBColor, y: i32| {
            root.draw(&Text::new(
                text.to_string(),
                (100, y),
                TextStyle::from(("sans-serif", 15).into_font()).color(&color),
            ))
        };
        legend("heap in use (malloc, new)", LINE, 40).map_err(err)?;
        legend(
            "mapped by the program itself (mmap, mremap, sbrk)",
            MAPPED,
            58,
        )
        .map_err(err)?;
    }
    // The curve goes over the lines.
    if one_path {
        chart
            .draw_series(LineSeries::new(curve, LINE.stroke_width(2)))
            .map_err(err)?;
    } else {
        // plotters fills a thick path as one polygon, which breaks where the
        // path turns back on itself (a spike narrower than a pixel) or
        // stands still: draw it a segment at a time, in pixels.
        let mut pixels: Vec<(i32, i32)> = curve.iter().map(|p| chart.backend_coord(p)).collect();
        pixels.dedup();
        for pair in pixels.windows(2) {
            root.draw(&PathElement::new(pair.to_vec(), LINE.stroke_width(2)))
                .map_err(err)?;
        }
    }
    for s in snapshots {
        if few {
            chart
                .draw_series(std::iter::once(Circle::new(
                    xy((s.ns.min(end_ns), s.bytes)),
                    4,
                    SNAPSHOT.filled(),
                )))
                .map_err(err)?;
        } else {
            let x = s.ns.min(end_ns) as f64 / 1e9;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, 0.0), (x, y_max * 0.025)],
                    SNAPSHOT.stroke_width(1),
                )))
                .map_err(err)?;
        }
    }

    let (x_range, y_range) = chart.plotting_area().get_pixel_range();
    let mut rows = Rows::new(MAX_ROWS, x_range.start, x_range.end);
    let row_y = |row: usize| y_range.start + 4 + row as i32 * ROW_HEIGHT;
    let label_style = TextStyle::from(("sans-serif", LABEL_SIZE).into_font());
    let x_of = |ns: u64| chart.backend_coord(&(ns.min(end_ns) as f64 / 1e9, 0.0)).0;
    // Markers first: they take the rows before snapshots do, as many as fit.
    for m in &markers {
        let w = text_width(root, &m.label, &label_style);
        if let Some((row, left)) = rows.place(x_of(m.ns), w) {
            label(root, &m.label, (left, row_y(row)), w, MARKER)?;
        }
    }
    // Snapshots: each labelled if all fit, else one count for them all (a
    // few labels far from their points would only mislead).
    let mut trial = rows.clone();
    let placed: Option<Vec<_>> = snapshots
        .iter()
        .map(|s| {
            let w = text_width(root, &s.label, &label_style);
            trial.place(x_of(s.ns), w).map(|at| (at, w, &s.label))
        })
        .collect();
    match placed {
        Some(placed) if few => {
            for ((row, left), w, text) in placed {
                label(root, text, (left, row_y(row)), w, SNAPSHOT)?;
            }
        }
        _ => {
            let n = snapshots.len() as u64 + t.merged_snapshots();
            let text = if few {
                format!("{n} snapshots (dots)")
            } else {
                format!("{n} snapshots (ticks on the time axis)")
            };
            let w = text_width(root, &text, &label_style);
            if let Some((row, left)) = rows.place(x_range.start + 2, w) {
                label(root, &text, (left, row_y(row)), w, SNAPSHOT)?;
            }
        }
    }

    // The peak: a dot and its value above it.
    if let Some((ns, bytes)) = t.peak() {
        let at = xy((ns, bytes));
        chart
            .draw_series(std::iter::once(Circle::new(at, 5, PEAK.filled())))
            .map_err(err)?;
        let text = format!("peak {} at {}", human(bytes), seconds(ns));
        let (px, py) = chart.backend_coord(&at);
        let w = text_width(root, &text, &label_style);
        let left = if px + 8 + w <= x_range.end {
            px + 8
        } else {
            (px - 8 - w).max(x_range.start)
        };
        label(root, &text, (left, py - ROW_HEIGHT - 4), w, PEAK)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_extension() {
        assert_eq!(format_of(Path::new("a.svg")), Ok(Format::Svg));
        assert_eq!(format_of(Path::new("a.PNG")), Ok(Format::Png));
        let e = format_of(Path::new("a.jpg")).unwrap_err();
        assert!(e.contains(".svg or .png"), "{e}");
        assert!(render(&Timeline::new(1), Path::new("x"), "t").is_err());
    }

    #[test]
    fn units_and_ticks() {
        assert_eq!(unit_for(10 << 20), ("MiB", 1048576.0));
        assert_eq!(unit_for(1000).0, "B");
        assert_eq!(unit_for(3 << 30).0, "GiB");
        assert_eq!(tick(0.1 + 0.2), "0.3");
        assert_eq!(tick(2.0), "2");
        assert_eq!(tick(0.0005), "0.0005");
    }

    #[test]
    fn labels_do_not_overlap() {
        let mut rows = Rows::new(2, 0, 1000);
        assert_eq!(rows.place(100, 50), Some((0, 104)));
        assert_eq!(rows.place(120, 50), Some((1, 124)));
        assert_eq!(rows.place(130, 50), None);
        // Room left of the labels already placed is used.
        assert_eq!(rows.place(10, 30), Some((0, 14)));
        assert_eq!(rows.place(40, 30), Some((1, 44)));
        assert_eq!(rows.place(400, 50), Some((0, 404)));
        // At the right edge the label goes to the left of its line.
        assert_eq!(rows.place(990, 50), Some((0, 936)));
    }

    #[test]
    fn draws_an_svg() {
        let mut t = Timeline::new(2_000_000_000);
        t.push(100_000_000, 1 << 20);
        t.push(1_000_000_000, 10 << 20);
        t.push(1_500_000_000, 2 << 20);
        t.marker(500_000_000, "SIGUSR2".into());
        t.snapshot(1_200_000_000, 2 << 20, "at 1.200 s".into());
        let path = std::env::temp_dir().join(format!("timeline-{}.svg", std::process::id()));
        render(&t, &path, "test").unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(svg.contains("<polyline"), "{svg}");
        assert!(svg.contains("peak 10.0 MiB at 1.000 s"), "{svg}");
        assert!(svg.contains("\nSIGUSR2\n"), "{svg}");
        assert!(svg.contains("\nat 1.200 s\n"), "{svg}");
    }
}
