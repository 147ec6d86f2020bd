//! Training curves as PNG or SVG, and the text of grid labels, with `plotters` (the only module
//! that names it). The font is embedded (`assets/DejaVuSans-ascii.ttf`, 14 KB), so plots and
//! labels render on machines with no system fonts.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use tread_compiler::diag::{Diagnostic, Location};

use crate::metrics::Curves;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans-ascii.ttf");

fn font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The subset is checked by the tests; a failure here would only lose the text.
        let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// The x axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAxis {
    /// Training step.
    Step,
    /// Training wall time (seconds; evaluation, grids and checkpoints excluded).
    Wall,
}

/// The y axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YAxis {
    /// Training loss (a moving mean over 25 steps; log scale).
    Loss,
    /// Fréchet distance to the held-out reference images (log scale).
    Fd,
    /// Class accuracy (%).
    Accuracy,
}

impl YAxis {
    fn label(self) -> &'static str {
        match self {
            YAxis::Loss => "training loss (mean of 25 steps)",
            YAxis::Fd => "FD to held-out images (lower is better)",
            YAxis::Accuracy => "class accuracy, %",
        }
    }
}

/// One run's line: its legend and its curves.
pub struct Line<'a> {
    /// Legend text (run name, route).
    pub label: String,
    /// The run's curves.
    pub curves: &'a Curves,
}

/// The points of one line on the chosen axes.
pub fn points(c: &Curves, x: XAxis, y: YAxis) -> Vec<(f64, f64)> {
    let xv = |step: u64, wall: f64| match x {
        XAxis::Step => step as f64,
        XAxis::Wall => wall,
    };
    match y {
        YAxis::Loss => {
            let w = 25usize;
            let mut sum = 0.0;
            let mut out = Vec::with_capacity(c.loss.len());
            for (i, p) in c.loss.iter().enumerate() {
                sum += p.loss;
                if i >= w {
                    sum -= c.loss[i - w].loss;
                }
                out.push((xv(p.step, p.elapsed_s), sum / (i + 1).min(w) as f64));
            }
            out
        }
        YAxis::Fd => c
            .evals
            .iter()
            .map(|p| (xv(p.step, p.elapsed_s), p.fd))
            .collect(),
        YAxis::Accuracy => c
            .evals
            .iter()
            .map(|p| (xv(p.step, p.elapsed_s), 100.0 * p.accuracy))
            .collect(),
    }
}

/// Labelled and grid-only ticks of a log axis over `[lo, hi]`. plotters' own log ticks start
/// at the first power of ten above `lo`, so a loss falling from 3 to 0.15 had labels at 1, 2, 3
/// and none over the part of the curve that matters. Labels here are `m·10^k` for `m` in a set
/// that thins as the axis spans more decades; the grid has every `1..9·10^k`.
fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let decades = (hi / lo).log10();
    let labelled: &[f64] = if decades < 1.0 {
        &[1.0, 1.5, 2.0, 3.0, 5.0, 7.0]
    } else if decades < 2.5 {
        &[1.0, 2.0, 3.0, 5.0]
    } else if decades < 4.0 {
        &[1.0, 3.0]
    } else {
        &[1.0]
    };
    let (mut bold, mut light) = (Vec::new(), Vec::new());
    for k in lo.log10().floor() as i32..=hi.log10().ceil() as i32 {
        // m·10^k as m / 10^-k below 1, so that 0.3 is 0.3 and not 0.30000000000000004.
        let at = |m: f64| {
            if k < 0 {
                m / 10f64.powi(-k)
            } else {
                m * 10f64.powi(k)
            }
        };
        for m in 1..=9 {
            let v = at(m as f64);
            if (lo..=hi).contains(&v) {
                light.push(v);
            }
        }
        for &m in labelled {
            let v = at(m);
            if (lo..=hi).contains(&v) {
                bold.push(v);
            }
        }
    }
    (bold, light)
}

/// A y tick label: three significant digits at most, no trailing zeros ("0.15", "2", "75").
fn tick(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let decimals = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn bounds(lines: &[Vec<(f64, f64)>]) -> Option<((f64, f64), (f64, f64))> {
    let all: Vec<&(f64, f64)> = lines.iter().flatten().filter(|p| p.1.is_finite()).collect();
    let fold = |f: fn(&(f64, f64)) -> f64| {
        all.iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                (lo.min(f(p)), hi.max(f(p)))
            })
    };
    (!all.is_empty()).then(|| (fold(|p| p.0), fold(|p| p.1)))
}

/// One drawn curve: its legend, its points, and for an arm of several runs the range they
/// span (`(x, lowest, highest)`, shaded) and the x at which the arm reaches the target.
pub struct Series {
    /// Legend text.
    pub label: String,
    /// The curve (an arm's mean).
    pub points: Vec<(f64, f64)>,
    /// The runs' range around the curve (empty: a single run).
    pub range: Vec<(f64, f64, f64)>,
    /// Where the arm first reaches the target (a dashed vertical line).
    pub reach: Option<f64>,
}

impl Series {
    /// A single run's curve on the chosen axes.
    pub fn of_run(line: &Line<'_>, x: XAxis, y: YAxis) -> Self {
        Series {
            label: line.label.clone(),
            points: points(line.curves, x, y),
            range: Vec::new(),
            reach: None,
        }
    }
}

fn draw<DB: DrawingBackend, Y>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    lines: &[Series],
    (xr, yr): (RangedCoordf64, Y),
    (x_label, y): (&str, YAxis),
    target: Option<(f64, &str)>,
) -> Result<(), String>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let (x0, x1) = (xr.range().start, xr.range().end);
    let (y0, y1) = (yr.range().start, yr.range().end);
    let mut chart = ChartBuilder::on(&root)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(xr, yr)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y.label())
        // Steps and seconds are whole numbers on this scale ("500", not "500.0").
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| tick(*v))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(e)?;
    for (i, s) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        if !s.range.is_empty() {
            let outline: Vec<(f64, f64)> = s
                .range
                .iter()
                .map(|p| (p.0, p.1))
                .chain(s.range.iter().rev().map(|p| (p.0, p.2)))
                .collect();
            chart
                .draw_series(std::iter::once(Polygon::new(
                    outline,
                    color.mix(0.18).filled(),
                )))
                .map_err(e)?;
        }
        let series = chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(e)?;
        series.label(s.label.as_str()).legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(2))
        });
        // An evaluation's dot marks a measured point; an arm's mean is interpolated between them.
        if y != YAxis::Loss && s.range.is_empty() {
            chart
                .draw_series(s.points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(e)?;
        }
        if let Some(at) = s.reach {
            chart
                .draw_series(std::iter::once(DashedPathElement::new(
                    vec![(at, y0), (at, y1)],
                    6,
                    4,
                    color.stroke_width(2),
                )))
                .map_err(e)?;
        }
    }
    if let Some((level, label)) = target {
        chart
            .draw_series(std::iter::once(DashedPathElement::new(
                vec![(x0, level), (x1, level)],
                3,
                3,
                BLACK.stroke_width(1),
            )))
            .map_err(e)?
            .label(label)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], BLACK.stroke_width(1)));
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(if y == YAxis::Accuracy {
            SeriesLabelPosition::LowerRight
        } else {
            SeriesLabelPosition::UpperRight
        })
        .draw()
        .map_err(e)?;
    root.present().map_err(e)
}

/// Draws `lines` to `out` (`.png` or `.svg`, 900×560). Errors name the output file.
pub fn plot(lines: &[Line<'_>], x: XAxis, y: YAxis, out: &Path) -> Result<(), Diagnostic> {
    let series: Vec<Series> = lines.iter().map(|l| Series::of_run(l, x, y)).collect();
    plot_series(&series, x, y, None, out)
}

/// Draws `series` (runs, or arms with their ranges and reach marks) to `out` (`.png` or `.svg`,
/// 900×560), with `target` as a dashed horizontal line and its legend. Errors name the file.
pub fn plot_series(
    series: &[Series],
    x: XAxis,
    y: YAxis,
    target: Option<(f64, &str)>,
    out: &Path,
) -> Result<(), Diagnostic> {
    font();
    let bad = |m: String| Diagnostic::new(Location::File, m).in_file(out.display().to_string());
    let mut only: Vec<Vec<(f64, f64)>> = series.iter().map(|s| s.points.clone()).collect();
    only.extend(series.iter().map(|s| {
        s.range
            .iter()
            .flat_map(|p| [(p.0, p.1), (p.0, p.2)])
            .collect()
    }));
    let ((x0, x1), (mut y0, mut y1)) = bounds(&only).ok_or_else(|| {
        bad(format!(
            "nothing to plot: no run has {} values",
            match y {
                YAxis::Loss => "loss",
                YAxis::Fd => "fd",
                YAxis::Accuracy => "accuracy",
            }
        ))
    })?;
    if let Some((level, _)) = target.filter(|t| t.0.is_finite()) {
        (y0, y1) = (y0.min(level), y1.max(level));
    }
    let xr: RangedCoordf64 = (x0..x1.max(x0 + 1e-9)).into();
    let x_label = match x {
        XAxis::Step => "training step",
        XAxis::Wall => "training wall time, s",
    };
    let tmp = temp_path(out);
    let size = (900, 560);
    let svg = out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    let drawn = {
        macro_rules! on {
            ($root:expr) => {
                match y {
                    YAxis::Accuracy => {
                        let yr: RangedCoordf64 = (0.0..100.0).into();
                        draw($root, series, (xr, yr), (x_label, y), target)
                    }
                    YAxis::Loss | YAxis::Fd => {
                        let lo = (y0.max(1e-6) / 1.2).max(1e-6);
                        let hi = (y1.max(lo * 1.5)) * 1.2;
                        let (bold, light) = log_ticks(lo, hi);
                        let yr = (lo..hi)
                            .log_scale()
                            .with_key_points(bold)
                            .with_light_points(light);
                        draw($root, series, (xr, yr), (x_label, y), target)
                    }
                }
            };
        }
        if svg {
            on!(SVGBackend::new(&tmp, size).into_drawing_area())
        } else {
            on!(BitMapBackend::new(&tmp, size).into_drawing_area())
        }
    };
    let io = |what: &str, e: String| Diagnostic::io(out.display().to_string(), what, e);
    drawn.map_err(|m| io("cannot draw the plot", m))?;
    std::fs::rename(&tmp, out).map_err(|e| io("cannot write the plot", e.to_string()))
}

/// A temporary sibling of `out` with the same extension (the backends pick the format from it).
fn temp_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map_or("plot".into(), |n| n.to_string_lossy().into_owned());
    out.with_file_name(format!(".tmp-{}-{name}", std::process::id()))
}

/// `text` drawn white on black in the embedded font, in a strip `height` pixels tall: the
/// grayscale pixels and the strip's width (labels of sample grids). `None` if the font cannot
/// draw it.
pub fn text_strip(text: &str, height: usize) -> Option<(Vec<u8>, usize)> {
    font();
    let style = ("sans-serif", height as f64 * 0.75)
        .into_font()
        .color(&WHITE);
    let (w, _) = style.font.box_size(text).ok()?;
    let width = w as usize + 2;
    let mut rgb = vec![0u8; width * height * 3];
    {
        let root =
            BitMapBackend::with_buffer(&mut rgb, (width as u32, height as u32)).into_drawing_area();
        root.fill(&BLACK).ok()?;
        let top = (height as f64 * 0.1) as i32;
        root.draw_text(text, &style, (1, top)).ok()?;
        root.present().ok()?;
    }
    Some((rgb.chunks_exact(3).map(|p| p[0]).collect(), width))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{EvalPoint, LossPoint};

    fn curves(scale: f64) -> Curves {
        Curves {
            loss: (1..=100)
                .map(|s| LossPoint {
                    step: s,
                    elapsed_s: s as f64 * 0.5,
                    loss: scale / s as f64,
                })
                .collect(),
            evals: (1..=4)
                .map(|k| EvalPoint {
                    step: 25 * k,
                    elapsed_s: 12.5 * k as f64,
                    fd: 100.0 * scale / k as f64,
                    accuracy: 0.2 * k as f64,
                })
                .collect(),
        }
    }

    #[test]
    fn log_ticks_label_the_whole_range() {
        let (bold, light) = log_ticks(0.12, 3.6);
        assert_eq!(bold, [0.2, 0.3, 0.5, 1.0, 2.0, 3.0]);
        assert_eq!(light.len(), 8 + 3, "0.2..0.9 and 1, 2, 3");
        let (bold, _) = log_ticks(60.0, 330.0);
        assert_eq!(bold, [70.0, 100.0, 150.0, 200.0, 300.0]);
    }

    #[test]
    fn ticks_keep_three_significant_digits_without_trailing_zeros() {
        let got: Vec<String> = [0.15, 0.2, 2.0, 75.0, 300.0, 1234.6, 0.0123]
            .into_iter()
            .map(tick)
            .collect();
        assert_eq!(got, ["0.15", "0.2", "2", "75", "300", "1235", "0.0123"]);
    }

    #[test]
    fn png_and_svg_for_one_and_three_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let runs = [curves(1.0), curves(2.0), curves(3.0)];
        for n in [1, 3] {
            let lines: Vec<Line> = runs[..n]
                .iter()
                .enumerate()
                .map(|(i, c)| Line {
                    label: format!("run{i} (route 0.5:2-4)"),
                    curves: c,
                })
                .collect();
            for (y, x) in [
                (YAxis::Loss, XAxis::Step),
                (YAxis::Fd, XAxis::Wall),
                (YAxis::Accuracy, XAxis::Step),
            ] {
                let png = dir.join(format!("{n}-{y:?}.png"));
                plot(&lines, x, y, &png).unwrap();
                let bytes = std::fs::read(&png).unwrap();
                assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
                let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
                let info = decoder.read_info().unwrap();
                assert_eq!((info.info().width, info.info().height), (900, 560));
                let svg = dir.join(format!("{n}-{y:?}.svg"));
                plot(&lines, x, y, &svg).unwrap();
                let text = std::fs::read_to_string(&svg).unwrap();
                assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
                assert!(text.contains("run0 (route 0.5:2-4)"), "legend text missing");
            }
        }
    }

    #[test]
    fn a_metric_no_run_has_is_an_error_and_leaves_no_file() {
        let c = Curves::default();
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("empty.png");
        let e = plot(
            &[Line {
                label: "x".into(),
                curves: &c,
            }],
            XAxis::Step,
            YAxis::Fd,
            &out,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no run has fd values"), "{e}");
        assert!(!out.exists());
    }

    #[test]
    fn the_loss_is_a_moving_mean() {
        let c = curves(1.0);
        let p = points(&c, XAxis::Step, YAxis::Loss);
        assert_eq!(p[0], (1.0, 1.0));
        assert!((p[1].1 - 0.75).abs() < 1e-12);
    }
}
