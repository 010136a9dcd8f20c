//! Charts of training and of the latent space, written as PNG (feature `charts`, on by
//! default): the training curves every run directory holds (`curves.png`), one chart
//! of several models' curves, and a labelled scatter plot of 2-D latent points.
//!
//! Every chart has a title, labelled axes and a legend. Text is set in DejaVu Sans Mono,
//! compiled into the library (`assets/fonts/`), so no system font is needed. Files are
//! written atomically.

use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::train::metrics::EpochMetrics;

/// The font family the charts use, registered once from the bytes compiled in.
const FONT: &str = "sans-serif";

/// The ten colours of matplotlib's `tab10`, in order (classes and models).
pub const COLOURS: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

fn colour(i: usize) -> RGBColor {
    let (r, g, b) = COLOURS[i % COLOURS.len()];
    RGBColor(r, g, b)
}

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let bytes = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");
        // A font that fails to parse leaves the text undrawn: the charts stay valid PNGs.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, bytes);
    });
}

/// Draws with `draw` on a white `w × h` canvas and writes it to `path` as an RGB PNG.
fn render(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> std::result::Result<(), String>,
) -> Result<()> {
    register_font();
    let failed = |reason: String| Error::Image {
        path: path.to_path_buf(),
        reason,
    };
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| failed(e.to_string()))?;
        draw(&root).map_err(failed)?;
        root.present().map_err(|e| failed(e.to_string()))?;
    }
    crate::train::run_dir::write_atomically(path, |out| {
        let mut enc = png::Encoder::new(out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(|e| failed(e.to_string()))?;
        writer
            .write_image_data(&buf)
            .map_err(|e| failed(e.to_string()))?;
        writer.finish().map_err(|e| failed(e.to_string()))
    })
}

/// Draws the legend of `chart`'s labelled series at its upper right.
fn legend<'b>(
    chart: &mut ChartContext<'b, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
) -> std::result::Result<(), String> {
    chart
        .configure_series_labels()
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| e.to_string())
}

/// `lo..hi` covering the finite `values`, with 5% room on each side.
fn span(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return 0.0..1.0;
    }
    let pad = 0.05 * (hi - lo).max(1e-6 * hi.abs().max(1.0));
    (lo - pad)..(hi + pad)
}

/// One series of a line chart: its name and its `(x, y)` points.
type Series<'a> = (String, Vec<(f64, f64)>);

/// A line chart of `series` with markers at the points, on `area`.
fn lines(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    series: &[Series<'_>],
    colour_of: impl Fn(usize) -> RGBColor,
) -> std::result::Result<(), String> {
    let all = || series.iter().flat_map(|(_, p)| p.iter());
    let last = all().map(|p| p.0).fold(1.0, f64::max);
    let x_range = 0.5..(last + 0.5);
    let y_range = span(all().map(|p| p.1));
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x_range, y_range)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .light_line_style(TRANSPARENT)
        .x_labels(last.min(10.0) as usize + 1)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (name, points)) in series.iter().enumerate() {
        let c = colour_of(i);
        let finite: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.1.is_finite()).collect();
        chart
            .draw_series(LineSeries::new(finite.clone(), c.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart
            .draw_series(finite.into_iter().map(|p| Circle::new(p, 3, c.filled())))
            .map_err(|e| e.to_string())?;
    }
    legend(&mut chart)
}

/// Writes the training curves of one run to `path` (PNG, 1000 × 420): on the left the
/// training loss and the test (or validation) negative ELBO per epoch, on the right the
/// test KL per epoch, in nats per example, under `title`.
///
/// # Errors
/// [`Error::Image`] if the chart cannot be drawn or encoded; [`Error::Io`] if it cannot
/// be written.
pub fn training_curves(path: impl AsRef<Path>, title: &str, epochs: &[EpochMetrics]) -> Result<()> {
    let by = |f: fn(&EpochMetrics) -> f64| -> Vec<(f64, f64)> {
        epochs.iter().map(|m| (m.epoch as f64, f(m))).collect()
    };
    let objective = [
        ("training loss".to_string(), by(|m| m.train_loss)),
        ("test −ELBO".to_string(), by(|m| -m.test_elbo)),
    ];
    let kl = [("test KL".to_string(), by(|m| m.test_kl))];
    render(path.as_ref(), (1000, 420), |root| {
        let (left, right) = root.split_horizontally(600);
        lines(
            &left,
            &format!("{title}: loss and −ELBO"),
            ("epoch", "nats per example"),
            &objective,
            colour,
        )?;
        lines(
            &right,
            &format!("{title}: KL"),
            ("epoch", "nats per example"),
            &kl,
            |_| colour(2),
        )
    })
}

/// Writes several runs' curves on one chart to `path` (PNG, 1000 × 420): the test (or
/// validation) negative ELBO per epoch on the left and the test KL on the right, one
/// colour per run, named in the legend.
///
/// # Errors
/// As [`training_curves`].
pub fn compare_curves(path: impl AsRef<Path>, runs: &[(&str, &[EpochMetrics])]) -> Result<()> {
    let series = |f: fn(&EpochMetrics) -> f64| -> Vec<Series<'_>> {
        runs.iter()
            .map(|(name, epochs)| {
                let points = epochs.iter().map(|m| (m.epoch as f64, f(m))).collect();
                (name.to_string(), points)
            })
            .collect()
    };
    render(path.as_ref(), (1000, 420), |root| {
        let (left, right) = root.split_horizontally(600);
        lines(
            &left,
            "test −ELBO by model",
            ("epoch", "nats per example"),
            &series(|m| -m.test_elbo),
            colour,
        )?;
        lines(
            &right,
            "test KL by model",
            ("epoch", "nats per example"),
            &series(|m| m.test_kl),
            colour,
        )
    })
}

/// Writes a scatter plot of 2-D `points` to `path` (PNG, 720 × 640), coloured by
/// `classes` (each below 10), with a legend naming each class present (`names[c]`, or
/// its number) and the axes labelled `x_desc` and `y_desc`.
///
/// # Errors
/// [`Error::ShapeMismatch`] if `classes` and `points` differ in length; as
/// [`training_curves`].
pub fn scatter(
    path: impl AsRef<Path>,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    points: &[(f64, f64)],
    classes: &[u8],
    names: &[&str],
) -> Result<()> {
    if points.len() != classes.len() {
        return Err(Error::shape(
            "scatter (points, classes)",
            &[points.len()],
            &[classes.len()],
        ));
    }
    render(path.as_ref(), (720, 640), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(
                span(points.iter().map(|p| p.0)),
                span(points.iter().map(|p| p.1)),
            )
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(|e| e.to_string())?;
        for class in 0..10u8 {
            let members: Vec<(f64, f64)> = points
                .iter()
                .zip(classes)
                .filter(|(_, &c)| c == class)
                .map(|(p, _)| *p)
                .collect();
            if members.is_empty() {
                continue;
            }
            let c = colour(class as usize);
            let name = names
                .get(class as usize)
                .map_or_else(|| class.to_string(), |n| n.to_string());
            chart
                .draw_series(members.into_iter().map(|p| Circle::new(p, 2, c.filled())))
                .map_err(|e| e.to_string())?
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, c.filled()));
        }
        legend(&mut chart)
    })
}
