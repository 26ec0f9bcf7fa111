//! Figures shared by `eval`, `reproduce`, `inspect` and `mpc`: PNGs drawn in memory and written
//! through the one atomic writer: labelled grids of frames, error-against-horizon curves,
//! training curves, swing-up trajectories and the latent space.
//!
//! Conventions: legends sit in a band below the plots (never over data); axes that count
//! (epochs, steps, horizons) have integer ticks; axis labels carry the units; text avoids
//! combining characters (a rotated "θ̇" loses its dot), so an angular velocity is "dθ/dt".

use std::f64::consts::{PI, TAU};
use std::io;
use std::path::Path;

use anyhow::Context as _;
use anyhow::Result;
use ekvae_envs::pendulum::angle_normalize;
use ekvae_model::predict::PredictionStrip;
use ekvae_model::train::{EpochRow, TrainConfig};
use ekvae_model::{Inference, Objective};
use ekvae_pipeline::swingup::StepRow;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// The font family of every figure.
const FONT: &str = "sans-serif";
/// Chart titles.
const TITLE_PX: u32 = 20;
/// Axis descriptions, legends, grid labels.
const LABEL_PX: u32 = 16;
/// Tick labels.
const TICK_PX: u32 = 14;

fn text(px: u32) -> TextStyle<'static> {
    (FONT, px).into_font().color(&BLACK)
}

fn anchored(px: u32, h: HPos, v: VPos) -> TextStyle<'static> {
    text(px).pos(Pos::new(h, v))
}

/// A mesh with readable tick labels and a quiet grid.
macro_rules! styled_mesh {
    ($chart:expr) => {
        $chart
            .configure_mesh()
            .label_style((FONT, TICK_PX))
            .axis_desc_style((FONT, LABEL_PX))
            .bold_line_style(RGBColor(215, 215, 215))
            .light_line_style(RGBColor(243, 243, 243))
    };
}

/// A tick label for a real axis: no trailing zeros, a true minus sign, scientific notation
/// only for very small or large values.
pub fn tick(v: &f64) -> String {
    let a = v.abs();
    let s = if a < 1e-12 {
        "0".to_string()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    match s.strip_prefix('-') {
        Some(rest) => format!("−{rest}"),
        None => s,
    }
}

/// A readable name of a model configuration: "EKVAE constrained", "RNN ELBO", … (from the
/// `Display` strings "ekvae"/"rnn" and "constrained"/"elbo", which are file-name spellings).
pub fn arm_label(model: Inference, objective: Objective) -> String {
    let model = match model {
        Inference::Kalman => "EKVAE",
        Inference::Rnn => "RNN",
    };
    let objective = match objective {
        Objective::Constrained => "constrained",
        Objective::Elbo => "ELBO",
    };
    format!("{model} {objective}")
}

/// Draw a `width × height` chart with `draw` into memory and write it as a PNG through the
/// workspace's one atomic writer; on failure nothing appears under `path`.
pub fn bitmap(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<()>,
) -> Result<()> {
    render(path, size, |_| Ok(()), draw)
}

/// [`bitmap`] with a first pass `pixels` over the white RGB buffer (row-major, 3 bytes a
/// pixel) before `draw` draws on it.
fn render(
    path: &Path,
    size: (u32, u32),
    pixels: impl FnOnce(&mut [u8]) -> Result<()>,
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<()>,
) -> Result<()> {
    ekvae_envs::fsio::check_output(path)?;
    let mut rgb = vec![255u8; size.0 as usize * size.1 as usize * 3];
    pixels(&mut rgb)?;
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        draw(&root)?;
        root.present().map_err(plot_err)?;
    }
    write_png(path, size, png::ColorType::Rgb, &rgb)
}

/// Write 8-bit pixels (`color` layout) as a PNG, atomically.
pub fn write_png(
    path: &Path,
    (w, h): (u32, u32),
    color: png::ColorType,
    pixels: &[u8],
) -> Result<()> {
    ekvae_envs::dataset::write_atomic(path, |out| {
        let mut enc = png::Encoder::new(out, w, h);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        // Charts are mostly flat colour: adaptive filtering keeps them small.
        enc.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
        let mut writer = enc.write_header().map_err(io::Error::other)?;
        writer.write_image_data(pixels).map_err(io::Error::other)?;
        writer.finish().map_err(io::Error::other)
    })
    .map_err(anyhow::Error::from)
}

/// Width and height in pixels of `s` drawn in the figures' font at `px`.
fn text_size(s: &str, px: u32) -> Result<(u32, u32)> {
    let mut one = [0u8; 3];
    let backend = BitMapBackend::with_buffer(&mut one, (1, 1));
    backend.estimate_text_size(s, &text(px)).map_err(plot_err)
}

/// Pixels in [0, 1] as bytes.
pub fn to_gray(frame: &[f32]) -> Vec<u8> {
    frame.iter().map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect()
}

// ---------------------------------------------------------------------------------------------
// Frame grids

/// One labelled row of a [`FrameGrid`]; `None` cells are drawn as empty placeholders.
#[derive(Debug, Clone, Default)]
pub struct GridRow {
    /// Label on the left.
    pub label: String,
    /// `size × size` grayscale frames, one per column.
    pub cells: Vec<Option<Vec<u8>>>,
    /// Leave extra space above this row (the start of a group of rows).
    pub gap_before: bool,
}

/// Frames in labelled rows and columns, drawn scaled up (nearest neighbour) so that each is
/// at least 80 pixels wide.
#[derive(Debug, Clone, Default)]
pub struct FrameGrid {
    /// A line above the grid (empty: none).
    pub title: String,
    /// Side of the square frames in pixels.
    pub size: usize,
    /// A label over each column.
    pub columns: Vec<String>,
    /// The rows.
    pub rows: Vec<GridRow>,
    /// Text in the empty cells.
    pub empty: String,
}

/// Write a [`FrameGrid`] as a PNG.
pub fn frame_grid_png(path: &Path, grid: &FrameGrid) -> Result<()> {
    let size = grid.size.max(1);
    let scale = 80usize.div_ceil(size).max(1);
    let cell = size * scale;
    const GAP: usize = 6;
    const GROUP_GAP: usize = 18;
    const MARGIN: usize = 12;
    let cols = grid.rows.iter().map(|r| r.cells.len()).max().unwrap_or(0).max(grid.columns.len());
    let mut label_w = 0;
    for r in &grid.rows {
        label_w = label_w.max(text_size(&r.label, LABEL_PX)?.0 as usize);
    }
    let left = MARGIN + label_w + 12;
    let mut col_w = cell + GAP;
    for c in &grid.columns {
        col_w = col_w.max(text_size(c, LABEL_PX)?.0 as usize + GAP);
    }
    let title_h = if grid.title.is_empty() { 0 } else { 34 };
    let header_h = if grid.columns.is_empty() { 0 } else { 26 };
    let top = MARGIN + title_h + header_h;
    let mut ys = Vec::with_capacity(grid.rows.len());
    let mut y = top;
    for (i, r) in grid.rows.iter().enumerate() {
        if i > 0 && r.gap_before {
            y += GROUP_GAP;
        }
        ys.push(y);
        y += cell + GAP;
    }
    let title_w = text_size(&grid.title, TITLE_PX)?.0 as usize;
    let width = (left + cols * col_w + MARGIN).max(title_w + 2 * MARGIN);
    let height = y + MARGIN;
    let x_of = |c: usize| left + c * col_w + (col_w - GAP - cell) / 2;
    let (w, h) = (u32::try_from(width)?, u32::try_from(height)?);
    render(
        path,
        (w, h),
        |rgb| {
            let mut put = |x: usize, y: usize, v: u8| {
                let i = 3 * (y * width + x);
                rgb[i..i + 3].fill(v);
            };
            for (r, row) in grid.rows.iter().enumerate() {
                for (c, frame) in row.cells.iter().enumerate() {
                    let (x0, y0) = (x_of(c), ys[r]);
                    // A thin frame around every cell.
                    for k in 0..cell + 2 {
                        put(x0 - 1 + k, y0 - 1, 170);
                        put(x0 - 1 + k, y0 + cell, 170);
                        put(x0 - 1, y0 - 1 + k, 170);
                        put(x0 + cell, y0 - 1 + k, 170);
                    }
                    let Some(frame) = frame else {
                        for yy in 0..cell {
                            for xx in 0..cell {
                                put(x0 + xx, y0 + yy, 238);
                            }
                        }
                        continue;
                    };
                    anyhow::ensure!(
                        frame.len() == size * size,
                        "a frame of {} pixels in a grid of {size} × {size} frames",
                        frame.len()
                    );
                    for yy in 0..cell {
                        for xx in 0..cell {
                            put(x0 + xx, y0 + yy, frame[(yy / scale) * size + xx / scale]);
                        }
                    }
                }
            }
            Ok(())
        },
        |root| {
            if !grid.title.is_empty() {
                root.draw_text(
                    &grid.title,
                    &anchored(TITLE_PX, HPos::Left, VPos::Top),
                    (MARGIN as i32, MARGIN as i32),
                )
                .map_err(plot_err)?;
            }
            for (c, label) in grid.columns.iter().enumerate() {
                let x = (x_of(c) + cell / 2) as i32;
                let y = (top - 8) as i32;
                root.draw_text(label, &anchored(LABEL_PX, HPos::Center, VPos::Bottom), (x, y))
                    .map_err(plot_err)?;
            }
            let gray = RGBColor(120, 120, 120);
            for (r, row) in grid.rows.iter().enumerate() {
                let (x, y) = ((left - 12) as i32, (ys[r] + cell / 2) as i32);
                root.draw_text(&row.label, &anchored(LABEL_PX, HPos::Right, VPos::Center), (x, y))
                    .map_err(plot_err)?;
                for (c, cell_frame) in row.cells.iter().enumerate() {
                    if cell_frame.is_none() && !grid.empty.is_empty() {
                        let style = anchored(TICK_PX, HPos::Center, VPos::Center).color(&gray);
                        root.draw_text(&grid.empty, &style, ((x_of(c) + cell / 2) as i32, y))
                            .map_err(plot_err)?;
                    }
                }
            }
            Ok(())
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Legends

/// One entry of a legend: a short line (or dashes, or a shaded band behind the line) in the
/// series' style, then the label.
#[derive(Debug, Clone)]
struct Key {
    label: String,
    color: RGBColor,
    width: u32,
    dashed: bool,
    band: bool,
}

impl Key {
    fn line(label: impl Into<String>, color: RGBColor, width: u32) -> Self {
        Key { label: label.into(), color, width, dashed: false, band: false }
    }
}

const SWATCH: i32 = 32;
const KEY_ROW: i32 = 24;

/// Reserve a legend band at the bottom of `root` wide enough for `keys` (wrapped into rows,
/// each centred) and an optional `note` line under them, draw it, and return the area above.
fn with_legend<'a>(root: &Area<'a>, keys: &[Key], note: Option<&str>) -> Result<Area<'a>> {
    let (width, height) = root.dim_in_pixel();
    let avail = width as i32 - 40;
    let mut rows: Vec<Vec<(usize, i32)>> = vec![Vec::new()];
    let mut used = 0;
    for (i, k) in keys.iter().enumerate() {
        let w = SWATCH + 8 + text_size(&k.label, LABEL_PX)?.0 as i32 + 26;
        let row = rows.last_mut().expect("one row");
        if !row.is_empty() && used + w > avail {
            rows.push(Vec::new());
            used = 0;
        }
        rows.last_mut().expect("one row").push((i, w));
        used += w;
    }
    rows.retain(|r| !r.is_empty());
    let lines = rows.len() as i32 + i32::from(note.is_some());
    let band = (lines * KEY_ROW + 16) as u32;
    let (plot, legend) = root.split_vertically(height.saturating_sub(band));
    for (r, row) in rows.iter().enumerate() {
        let total: i32 = row.iter().map(|&(_, w)| w).sum::<i32>() - 26;
        let mut x = (width as i32 - total) / 2;
        let y = 8 + KEY_ROW / 2 + r as i32 * KEY_ROW;
        for &(i, w) in row {
            draw_key(&legend, &keys[i], x, y)?;
            x += w;
        }
    }
    if let Some(note) = note {
        let y = 8 + KEY_ROW / 2 + rows.len() as i32 * KEY_ROW;
        let style = anchored(LABEL_PX, HPos::Center, VPos::Center).color(&RGBColor(90, 90, 90));
        legend.draw_text(note, &style, (width as i32 / 2, y)).map_err(plot_err)?;
    }
    Ok(plot)
}

fn draw_key(area: &Area, k: &Key, x: i32, y: i32) -> Result<()> {
    if k.band {
        area.draw(&Rectangle::new([(x, y - 7), (x + SWATCH, y + 7)], k.color.mix(0.18).filled()))
            .map_err(plot_err)?;
    }
    let style = k.color.stroke_width(k.width);
    if k.dashed {
        for x0 in (x..x + SWATCH).step_by(11) {
            let x1 = (x0 + 6).min(x + SWATCH);
            area.draw(&PathElement::new(vec![(x0, y), (x1, y)], style)).map_err(plot_err)?;
        }
    } else {
        area.draw(&PathElement::new(vec![(x, y), (x + SWATCH, y)], style)).map_err(plot_err)?;
    }
    area.draw_text(&k.label, &anchored(LABEL_PX, HPos::Left, VPos::Center), (x + SWATCH + 8, y))
        .map_err(plot_err)
}

// ---------------------------------------------------------------------------------------------
// Curves against an integer axis

/// One line of a chart: `ys[i]` at x = i + 1, with an optional ±band.
#[derive(Debug, Clone)]
pub struct Curve {
    /// Legend label.
    pub label: String,
    /// Values at x = 1, 2, …; non-finite values leave a gap.
    pub ys: Vec<f64>,
    /// Half-width of a shaded band (e.g. the standard deviation over seeds).
    pub band: Option<Vec<f64>>,
    /// Line colour.
    pub color: RGBColor,
    /// Draw thin (for baselines).
    pub thin: bool,
}

impl Curve {
    fn width(&self) -> u32 {
        if self.thin { 1 } else { 3 }
    }

    fn key(&self) -> Key {
        Key { band: self.band.is_some(), ..Key::line(&self.label, self.color, self.width()) }
    }
}

/// A dashed horizontal reference line with a label (if any) at its right end.
#[derive(Debug, Clone)]
struct RefLine {
    y: f64,
    label: String,
    color: RGBColor,
}

/// The colour of the i-th configuration (a colour-blind-aware cycle of ten).
pub fn color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    COLORS[i % COLORS.len()]
}

/// The runs of consecutive finite points of `ys` (x = i + 1), each with its band.
fn finite_runs(ys: &[f64], band: Option<&Vec<f64>>) -> Vec<Vec<(i32, f64, f64)>> {
    let mut runs = Vec::new();
    let mut cur = Vec::new();
    for (i, &y) in ys.iter().enumerate() {
        let b = band.map_or(0.0, |b| b.get(i).copied().unwrap_or(0.0));
        if y.is_finite() && b.is_finite() {
            cur.push((i as i32 + 1, y, b));
        } else if !cur.is_empty() {
            runs.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        runs.push(cur);
    }
    runs
}

fn draw_curves(
    area: &Area,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    curves: &[Curve],
    refs: &[RefLine],
) -> Result<()> {
    let xmax = curves.iter().map(|c| c.ys.len()).max().unwrap_or(1).max(2) as i32;
    let values = curves
        .iter()
        .flat_map(|c| finite_runs(&c.ys, c.band.as_ref()).into_iter().flatten())
        .flat_map(|(_, y, b)| [y - b, y + b])
        .chain(refs.iter().map(|r| r.y));
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo.is_finite() { (lo.min(0.0), hi.max(lo.min(0.0))) } else { (0.0, 1.0) };
    let pad = ((hi - lo).abs() * 0.06).max(1e-9);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, TITLE_PX))
        .margin(10)
        .margin_right(24)
        .x_label_area_size(46)
        .y_label_area_size(76)
        .build_cartesian_2d(1..xmax, lo..hi + pad)
        .map_err(plot_err)?;
    styled_mesh!(chart)
        .x_desc(x_desc)
        .y_desc(y_desc)
        .y_label_formatter(&tick)
        .draw()
        .map_err(plot_err)?;
    for c in curves {
        let runs = finite_runs(&c.ys, c.band.as_ref());
        if c.band.is_some() {
            for run in &runs {
                let upper = run.iter().map(|&(x, y, b)| (x, y + b));
                let lower = run.iter().rev().map(|&(x, y, b)| (x, y - b));
                chart
                    .draw_series(std::iter::once(Polygon::new(
                        upper.chain(lower).collect::<Vec<_>>(),
                        c.color.mix(0.15).filled(),
                    )))
                    .map_err(plot_err)?;
            }
        }
    }
    for r in refs {
        let style = r.color.stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(vec![(1, r.y), (xmax, r.y)], 9, 6, style))
            .map_err(plot_err)?;
        if !r.label.is_empty() {
            let label = Text::new(
                r.label.clone(),
                (xmax, r.y),
                anchored(TICK_PX, HPos::Right, VPos::Bottom).color(&r.color),
            );
            chart.draw_series(std::iter::once(label)).map_err(plot_err)?;
        }
    }
    for c in curves {
        for run in finite_runs(&c.ys, c.band.as_ref()) {
            let pts = run.into_iter().map(|(x, y, _)| (x, y));
            chart
                .draw_series(LineSeries::new(pts, c.color.stroke_width(c.width())))
                .map_err(plot_err)?;
        }
    }
    Ok(())
}

/// The legend entries of `curves`, one per distinct label.
fn keys_of<'c>(curves: impl IntoIterator<Item = &'c Curve>) -> Vec<Key> {
    let mut keys: Vec<Key> = Vec::new();
    for c in curves {
        if !keys.iter().any(|k| k.label == c.label) {
            keys.push(c.key());
        }
    }
    keys
}

/// Two panels against the prediction horizon: pixel MSE and angle error, one legend below
/// both; `note` (e.g. what the shaded bands are) under the legend.
pub fn error_vs_horizon(
    path: &Path,
    pixel: &[Curve],
    angle: &[Curve],
    note: Option<&str>,
) -> Result<()> {
    bitmap(path, (1300, 600), |root| {
        let plot = with_legend(root, &keys_of(pixel.iter().chain(angle)), note)?;
        let panels = plot.split_evenly((1, 2));
        let x_desc = "h (steps after the last conditioned frame)";
        draw_curves(
            &panels[0],
            "open-loop prediction: pixel error",
            x_desc,
            "pixel MSE (intensities in [0, 1])",
            pixel,
            &[],
        )?;
        draw_curves(
            &panels[1],
            "open-loop prediction: angle error",
            x_desc,
            "|angle error| (degrees)",
            angle,
            &[],
        )
    })
}

/// One run's (or one arm's mean) training history for [`training_curves`].
#[derive(Debug, Clone)]
pub struct TrainingRun {
    /// Legend label.
    pub label: String,
    /// The epochs (`metrics.csv`).
    pub rows: Vec<EpochRow>,
    /// Pixels per frame (image side squared): `EpochRow::distortion` is in nats per frame and
    /// is plotted per pixel, the unit of D0.
    pub pixels: usize,
    /// Target distortion D0 in nats per pixel of the constrained objective; `None` for the
    /// ELBO, which has none.
    pub d0: Option<f64>,
}

impl TrainingRun {
    /// The history of a run trained with `config`.
    pub fn new(label: impl Into<String>, rows: Vec<EpochRow>, config: &TrainConfig) -> Self {
        TrainingRun {
            label: label.into(),
            rows,
            pixels: config.model.image_size * config.model.image_size * config.model.image_channels,
            d0: match config.objective {
                Objective::Constrained => Some(config.lambda.d0),
                Objective::Elbo => None,
            },
        }
    }
}

/// Four panels against the epoch: λ, distortion D per pixel with the target D0 (dashed), rate
/// R and −ELBO per frame (training; validation thin), one colour per run, one legend below.
pub fn training_curves(path: &Path, runs: &[TrainingRun]) -> Result<()> {
    let mut d0s: Vec<f64> = runs.iter().filter_map(|r| r.d0).collect();
    d0s.sort_by(f64::total_cmp);
    d0s.dedup();
    let curve = |i: usize, run: &TrainingRun, get: &dyn Fn(&EpochRow) -> f64, thin| Curve {
        label: run.label.clone(),
        ys: run.rows.iter().map(get).collect(),
        band: None,
        color: color(i),
        thin,
    };
    let dark = RGBColor(60, 60, 60);
    let mut keys: Vec<Key> =
        runs.iter().enumerate().map(|(i, r)| Key::line(&r.label, color(i), 3)).collect();
    let has_val = runs.iter().any(|r| r.rows.iter().any(|e| e.val_neg_elbo.is_finite()));
    if has_val {
        keys.push(Key::line("training", dark, 3));
        keys.push(Key::line("validation (−ELBO)", dark, 1));
    }
    // One D0: named in the legend; several: each line labelled at its right end.
    let d0_key = match d0s.as_slice() {
        [] => None,
        [d0] => Some(format!("target D0 = {} nats/pixel (constrained objective)", tick(d0))),
        _ => Some("target D0 (constrained objective)".to_string()),
    };
    if let Some(label) = d0_key {
        keys.push(Key { dashed: true, ..Key::line(label, dark, 2) });
    }
    bitmap(path, (1300, 960), |root| {
        let plot = with_legend(root, &keys, None)?;
        let panels = plot.split_evenly((2, 2));
        let each = |get: &dyn Fn(&EpochRow) -> f64| -> Vec<Curve> {
            runs.iter().enumerate().map(|(i, r)| curve(i, r, get, false)).collect()
        };
        draw_curves(&panels[0], "Lagrange multiplier λ", "epoch", "λ", &each(&|r| r.lambda), &[])?;
        let refs: Vec<RefLine> = d0s
            .iter()
            .map(|&d0| RefLine {
                y: d0,
                label: if d0s.len() > 1 { format!("D0 = {}", tick(&d0)) } else { String::new() },
                color: dark,
            })
            .collect();
        let per_pixel: Vec<Curve> = runs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let px = r.pixels.max(1) as f64;
                curve(i, r, &|e| e.distortion / px, false)
            })
            .collect();
        draw_curves(
            &panels[1],
            "distortion D (training)",
            "epoch",
            "D (nats/pixel)",
            &per_pixel,
            &refs,
        )?;
        draw_curves(
            &panels[2],
            "rate R (training)",
            "epoch",
            "R (nats/frame)",
            &each(&|r| r.rate),
            &[],
        )?;
        let mut elbo = each(&|r| r.neg_elbo);
        elbo.extend(runs.iter().enumerate().map(|(i, r)| curve(i, r, &|e| e.val_neg_elbo, true)));
        draw_curves(&panels[3], "−ELBO = R + D", "epoch", "−ELBO (nats/frame)", &elbo, &[])
    })
}

/// Read a run's `metrics.csv` (the schema is [`EpochRow`]'s, owned by
/// [`ekvae_model::rundir`]).
pub fn read_metrics(path: &Path) -> Result<Vec<EpochRow>> {
    Ok(ekvae_model::rundir::read_metrics(path)?)
}

/// Pixels between the two halves of `belief.gif` (drawn mid-gray).
pub const BELIEF_GAP: usize = 2;

/// Nearest-neighbour resize of a square `from × from` frame to `to × to`.
pub fn upscale(frame: &[u8], from: usize, to: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(to * to);
    for y in 0..to {
        let sy = y * from / to;
        for x in 0..to {
            out.push(frame[sy * from + x * from / to]);
        }
    }
    out
}

/// Two `size × size` frames next to each other with a gray gap: `[size, 2·size + gap]`.
pub fn side_by_side(left: &[u8], right: &[u8], size: usize) -> Vec<u8> {
    let width = 2 * size + BELIEF_GAP;
    let mut out = Vec::with_capacity(width * size);
    for y in 0..size {
        out.extend_from_slice(&left[y * size..(y + 1) * size]);
        out.extend(std::iter::repeat_n(128u8, BELIEF_GAP));
        out.extend_from_slice(&right[y * size..(y + 1) * size]);
    }
    out
}

/// One plot panel: axis label, y range, the plotted quantity of a row, and whether it is a
/// wrapped angle (lines break where it jumps between ±π).
type Panel = (&'static str, f64, f64, fn(&StepRow) -> f64, bool);

/// The colour of episode `i` of `n`: the configuration colours up to ten episodes, else
/// evenly spaced hues dark enough to read on white.
fn episode_color(i: usize, n: usize) -> RGBColor {
    if n <= 10 {
        return color(i);
    }
    let c = HSLColor(i as f64 / n as f64, 0.75, 0.42).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// θ(t) (wrapped), dθ/dt(t) and u(t) of every episode, one panel each, against the step;
/// one colour per episode, legend below.
pub fn trajectories(path: &Path, rows: &[StepRow], episodes: usize, steps: usize) -> Result<()> {
    let keys: Vec<Key> = (0..episodes)
        .map(|ep| Key::line(format!("episode {ep}"), episode_color(ep, episodes), 2))
        .collect();
    bitmap(path, (1000, 960), |root| {
        let plot = with_legend(root, &keys, None)?;
        let panels = plot.split_evenly((3, 1));
        let series: [Panel; 3] = [
            ("θ (rad, wrapped; 0 = upright)", -PI, PI, |r| angle_normalize(r.theta), true),
            ("dθ/dt (rad/s)", -8.0, 8.0, |r| r.theta_dot, false),
            ("u (torque)", -2.2, 2.2, |r| r.u, false),
        ];
        let width = if episodes <= 5 { 2 } else { 1 };
        for (panel, (label, lo, hi, f, wrapped)) in panels.iter().zip(series) {
            let mut chart = ChartBuilder::on(panel)
                .margin(8)
                .margin_right(24)
                .x_label_area_size(40)
                .y_label_area_size(64)
                .build_cartesian_2d(0..steps.max(1) as i32, lo..hi)
                .map_err(plot_err)?;
            styled_mesh!(chart)
                .x_desc("step (50 ms)")
                .y_desc(label)
                .y_label_formatter(&tick)
                .draw()
                .map_err(plot_err)?;
            for ep in 0..episodes {
                let color = episode_color(ep, episodes);
                let pts: Vec<(i32, f64)> =
                    rows.iter().filter(|r| r.episode == ep).map(|r| (r.t as i32, f(r))).collect();
                // Break the line where the wrapped angle jumps between ±π.
                for segment in pts.chunk_by(|a, b| !wrapped || (b.1 - a.1).abs() < PI) {
                    chart
                        .draw_series(LineSeries::new(
                            segment.iter().copied(),
                            color.stroke_width(width),
                        ))
                        .map_err(plot_err)?;
                }
            }
        }
        Ok(())
    })
}

/// Writes grayscale frames (`width × height` bytes each, row-major) as an animated GIF, one
/// frame per step at the real 50 ms per step, looping.
pub fn animate(
    path: &Path,
    (width, height): (usize, usize),
    frames: impl Iterator<Item = Result<Vec<u8>>>,
) -> Result<()> {
    let w = u16::try_from(width).context("frame size too large for a GIF")?;
    let h = u16::try_from(height).context("frame size too large for a GIF")?;
    let palette: Vec<u8> = (0..=255u8).flat_map(|v| [v, v, v]).collect();
    // Frames may fail to draw (a learned decoder); that error is kept apart from I/O errors.
    let mut frame_error = None;
    let written = ekvae_envs::dataset::write_atomic(path, |out| {
        let mut enc = gif::Encoder::new(out, w, h, &palette).map_err(std::io::Error::other)?;
        enc.set_repeat(gif::Repeat::Infinite).map_err(std::io::Error::other)?;
        for pixels in frames {
            let pixels = match pixels {
                Ok(p) => p,
                Err(e) => {
                    frame_error = Some(e);
                    return Err(std::io::Error::other("a frame could not be drawn"));
                }
            };
            let mut frame = gif::Frame::from_indexed_pixels(w, h, &pixels, None);
            frame.delay = 5; // hundredths of a second: dt = 50 ms
            enc.write_frame(&frame).map_err(std::io::Error::other)?;
        }
        enc.into_inner().map(drop).map_err(std::io::Error::other)
    });
    if let Some(e) = frame_error {
        return Err(e);
    }
    // The error names the file.
    written.map_err(anyhow::Error::from)
}

/// For each strip: a row of true frames and a row of predicted frames at the last conditioned
/// frame (h = 0, truth only) and at h = 1, 2, 3 and every reported horizon; rows labelled
/// with the window's episode, columns with h.
pub fn prediction_strips(
    path: &Path,
    size: usize,
    strips: &[PredictionStrip],
    horizons: &[usize],
) -> Result<()> {
    let px = size * size;
    let hmax = strips.iter().map(|s| s.predicted.len() / px.max(1)).max().unwrap_or(0);
    let mut cols: Vec<usize> = vec![0, 1, 2, 3];
    cols.extend(horizons.iter().copied());
    cols.sort_unstable();
    cols.dedup();
    cols.retain(|&h| h <= hmax);
    let mut rows = Vec::new();
    for (i, s) in strips.iter().enumerate() {
        let have = s.predicted.len() / px.max(1);
        let (ep, start) = s.window;
        rows.push(GridRow {
            label: format!("episode {ep}, window from step {start}: true"),
            cells: cols
                .iter()
                .map(|&h| (h <= have).then(|| to_gray(&s.truth[h * px..(h + 1) * px])))
                .collect(),
            gap_before: i > 0,
        });
        rows.push(GridRow {
            label: "predicted".into(),
            cells: cols
                .iter()
                .map(|&h| (h > 0 && h <= have).then(|| to_gray(&s.predicted[(h - 1) * px..h * px])))
                .collect(),
            gap_before: false,
        });
    }
    frame_grid_png(
        path,
        &FrameGrid {
            title: "Open-loop prediction: true and predicted frames h steps after the last \
                    conditioned frame (h = 0: that frame, given)"
                .into(),
            empty: "given".into(),
            size,
            columns: cols.iter().map(|h| format!("h = {h}")).collect(),
            rows,
        },
    )
}

/// A vertical colour bar at `x` spanning the pixel rows `y` of `root` (top = `hi`), coloured
/// by `color(v)` for v in `lo..hi`, with `ticks` (value, label) and a rotated `title`.
#[allow(clippy::too_many_arguments)]
fn colorbar(
    root: &Area,
    x: i32,
    y: std::ops::Range<i32>,
    (lo, hi): (f64, f64),
    color: impl Fn(f64) -> RGBColor,
    ticks: &[(f64, String)],
    title: &str,
) -> Result<()> {
    const W: i32 = 18;
    let span = (y.end - y.start).max(1);
    let at = |v: f64| y.end - ((v - lo) / (hi - lo) * span as f64).round() as i32;
    for row in y.clone() {
        let v = lo + (y.end - row) as f64 / span as f64 * (hi - lo);
        root.draw(&Rectangle::new([(x, row), (x + W, row + 1)], color(v).filled()))
            .map_err(plot_err)?;
    }
    root.draw(&Rectangle::new([(x, y.start), (x + W, y.end)], BLACK.stroke_width(1)))
        .map_err(plot_err)?;
    for (v, label) in ticks {
        let yy = at(*v);
        root.draw(&PathElement::new(vec![(x + W, yy), (x + W + 5, yy)], BLACK.stroke_width(1)))
            .map_err(plot_err)?;
        root.draw_text(label, &anchored(TICK_PX, HPos::Left, VPos::Center), (x + W + 8, yy))
            .map_err(plot_err)?;
    }
    let style =
        text(LABEL_PX).transform(FontTransform::Rotate90).pos(Pos::new(HPos::Center, VPos::Center));
    root.draw_text(title, &style, (x + W + 62, (y.start + y.end) / 2)).map_err(plot_err)
}

/// The colour of an angle: a cyclic hue (θ = 0 and ±π opposite).
fn angle_color(theta: f64) -> RGBColor {
    let c = HSLColor(theta.rem_euclid(TAU) / TAU, 0.9, 0.5).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// The blog's figure: the latent space (two leading principal axes of the smoothed means)
/// coloured by the true angle (cyclic hue) and by the angular velocity (viridis), each panel
/// with its colour bar.
pub fn latent_space(
    path: &Path,
    z: &[f64],
    n: usize,
    data: &ekvae_model::data::Sequences,
) -> Result<()> {
    let pts = ekvae_model::fold::pca_2d(z, n);
    let rows = pts.len();
    // At most 20 000 points keep the PNG readable.
    let stride = rows.div_ceil(20_000).max(1);
    let (xmin, xmax, ymin, ymax) = pts.iter().fold(
        (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY),
        |(a, b, c, d), &(x, y)| (a.min(x), b.max(x), c.min(y), d.max(y)),
    );
    let padx = (xmax - xmin).max(1e-9) * 0.05;
    let pady = (ymax - ymin).max(1e-9) * 0.05;
    let state = |r: usize| data.state(r / data.steps, r % data.steps);
    let vmax = (0..rows).map(|r| state(r)[1].abs()).fold(1e-9, f64::max);
    let velocity_color = |v: f64| ViridisRGB::get_color_normalized(v, -vmax, vmax);
    bitmap(path, (1400, 600), |root| {
        let panels = root.split_evenly((1, 2));
        for (i, panel) in panels.iter().enumerate() {
            let (chart_area, _) = panel.split_horizontally(panel.dim_in_pixel().0 - 110);
            let title = if i == 0 {
                "latent space coloured by angle θ"
            } else {
                "coloured by angular velocity dθ/dt"
            };
            let mut chart = ChartBuilder::on(&chart_area)
                .caption(title, (FONT, TITLE_PX))
                .margin(10)
                .x_label_area_size(44)
                .y_label_area_size(60)
                .build_cartesian_2d(xmin - padx..xmax + padx, ymin - pady..ymax + pady)
                .map_err(plot_err)?;
            styled_mesh!(chart)
                .x_desc("PC 1")
                .y_desc("PC 2")
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .draw()
                .map_err(plot_err)?;
            chart
                .draw_series((0..rows).step_by(stride).map(|r| {
                    let (th, thd) = (state(r)[0], state(r)[1]);
                    let color = if i == 0 { angle_color(th) } else { velocity_color(thd) };
                    Circle::new(pts[r], 2, color.filled())
                }))
                .map_err(plot_err)?;
            let (xs, ys) = chart.plotting_area().get_pixel_range();
            let x = xs.end + 14;
            if i == 0 {
                let ticks: Vec<(f64, String)> = [(-PI, "−π"), (-PI / 2.0, "−π/2"), (0.0, "0")]
                    .into_iter()
                    .chain([(PI / 2.0, "π/2"), (PI, "π")])
                    .map(|(v, s)| (v, s.to_string()))
                    .collect();
                colorbar(root, x, ys, (-PI, PI), angle_color, &ticks, "θ (rad, 0 = upright)")?;
            } else {
                let ticks: Vec<(f64, String)> = [-1.0, -0.5, 0.0, 0.5, 1.0]
                    .into_iter()
                    .map(|f| {
                        let v = f * vmax;
                        (v, tick(&((v * 10.0).round() / 10.0)))
                    })
                    .collect();
                colorbar(root, x, ys, (-vmax, vmax), velocity_color, &ticks, "dθ/dt (rad/s)")?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ekvae-fig-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The file is a PNG of at least `min_w × min_h` pixels and a plausible size in bytes.
    fn assert_png(path: &Path, min_w: u32, min_h: u32) {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
        assert!(bytes.len() > 2_000, "{}: {} bytes", path.display(), bytes.len());
        let info = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
        let (w, h) = (info.info().width, info.info().height);
        assert!(w >= min_w && h >= min_h, "{}: {w} × {h}", path.display());
    }

    fn frame(size: usize, k: usize) -> Vec<u8> {
        (0..size * size).map(|i| if (i + k).is_multiple_of(7) { 255 } else { 0 }).collect()
    }

    #[test]
    fn metrics_csv_round_trip() {
        let dir = temp_dir("metrics");
        let path = dir.join("metrics.csv");
        let row =
            EpochRow { epoch: 1, lambda: 2.5, distortion: 30.0, rate: 4.0, ..EpochRow::default() };
        std::fs::write(&path, ekvae_model::rundir::metrics_text(&[row])).unwrap();
        let rows = read_metrics(&path).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].epoch, rows[0].lambda, rows[0].distortion, rows[0].rate),
            (1, 2.5, 30.0, 4.0)
        );
        let text = std::fs::read_to_string(&path).unwrap().replace("\n1,2.5,", "\n1,x,");
        std::fs::write(&path, text).unwrap();
        assert!(read_metrics(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn to_gray_clamps_and_rounds() {
        assert_eq!(to_gray(&[-1.0, 0.0, 0.5, 1.0, 2.0]), vec![0, 0, 128, 255, 255]);
    }

    #[test]
    fn tick_labels() {
        let t = |v: f64| tick(&v);
        assert_eq!(
            [t(0.0), t(1.0), t(-2.5), t(0.005), t(1e-17), t(12.3456789)],
            ["0", "1", "−2.5", "0.005", "0", "12.3457"].map(String::from)
        );
        assert_eq!((t(2e-5), t(-2e-5)), ("2.0e-5".into(), "−2.0e-5".into()));
    }

    #[test]
    fn arm_labels_are_readable() {
        assert_eq!(arm_label(Inference::Kalman, Objective::Constrained), "EKVAE constrained");
        assert_eq!(arm_label(Inference::Rnn, Objective::Elbo), "RNN ELBO");
    }

    #[test]
    fn training_run_units_from_config() {
        let mut config = TrainConfig::default();
        config.model.image_size = 16;
        config.lambda.d0 = 0.07;
        config.objective = Objective::Constrained;
        let run = TrainingRun::new("a", Vec::new(), &config);
        assert_eq!((run.pixels, run.d0), (256, Some(0.07)));
        config.objective = Objective::Elbo;
        assert_eq!(TrainingRun::new("b", Vec::new(), &config).d0, None);
    }

    #[test]
    fn error_vs_horizon_renders() {
        let dir = temp_dir("error");
        let path = dir.join("prediction_error.png");
        let curve = |i: usize, band: bool| Curve {
            label: arm_label(Inference::Kalman, Objective::Elbo) + &i.to_string(),
            ys: (1..=40).map(|h| (h as f64).sqrt() * (i + 1) as f64).collect(),
            band: band.then(|| vec![0.5; 40]),
            color: color(i),
            thin: i == 2,
        };
        let pixel = [curve(0, true), curve(1, true), curve(2, false)];
        let mut ys = curve(0, false);
        ys.ys[5] = f64::NAN;
        error_vs_horizon(&path, &pixel, &[ys], Some("shaded: ± 1 std")).unwrap();
        assert_png(&path, 1000, 500);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn training_curves_render_with_and_without_d0() {
        let dir = temp_dir("training");
        let rows: Vec<EpochRow> = (1..=5)
            .map(|e| EpochRow {
                epoch: e,
                lambda: 100.0 / e as f64,
                distortion: 60.0 / e as f64,
                rate: 3.0,
                neg_elbo: 63.0,
                val_neg_elbo: if e == 1 { f64::NAN } else { 60.0 },
                ..EpochRow::default()
            })
            .collect();
        let run = |label: &str, d0| TrainingRun {
            label: label.into(),
            rows: rows.clone(),
            pixels: 256,
            d0,
        };
        let path = dir.join("training_curves.png");
        training_curves(&path, &[run("EKVAE constrained", Some(0.05)), run("RNN ELBO", None)])
            .unwrap();
        assert_png(&path, 1000, 800);
        // Two targets: each dashed line labelled.
        let path = dir.join("two_d0.png");
        let runs = [run("EKVAE constrained", Some(0.05)), run("RNN constrained", Some(0.08))];
        training_curves(&path, &runs).unwrap();
        assert_png(&path, 1000, 800);
        let path = dir.join("elbo.png");
        training_curves(&path, &[run("EKVAE ELBO", None)]).unwrap();
        assert_png(&path, 1000, 800);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn trajectories_render() {
        let dir = temp_dir("traj");
        let path = dir.join("trajectories.png");
        let rows: Vec<StepRow> = (0..3)
            .flat_map(|episode| {
                (0..50).map(move |t| StepRow {
                    episode,
                    t,
                    theta: 3.0 - 0.1 * t as f64 + episode as f64,
                    theta_dot: -1.0,
                    u: 0.5,
                    reward: 0.0,
                    plan_ms: 0.0,
                    iterations: 1,
                })
            })
            .collect();
        trajectories(&path, &rows, 3, 50).unwrap();
        assert_png(&path, 900, 900);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn frame_grids_render_labelled_and_scaled() {
        let dir = temp_dir("grid");
        let path = dir.join("strips.png");
        let size = 16;
        let px = size * size;
        let strip = |ep: usize| PredictionStrip {
            window: (ep, 3),
            truth: (0..6 * px).map(|i| (i % 5) as f32 / 4.0).collect(),
            predicted: (0..5 * px).map(|i| (i % 3) as f32 / 2.0).collect(),
        };
        prediction_strips(&path, size, &[strip(0), strip(7)], &[5, 10]).unwrap();
        // Columns h = 0, 1, 2, 3, 5 (h = 10 is beyond the strips), frames at least 80 pixels.
        assert_png(&path, 5 * 80, 4 * 80);

        let path = dir.join("grid.png");
        let grid = FrameGrid {
            title: "a title".into(),
            empty: "none".into(),
            size,
            columns: vec!["step 0".into(), "step 9".into()],
            rows: vec![
                GridRow {
                    label: "episode 0".into(),
                    cells: vec![Some(frame(size, 0)), None],
                    gap_before: false,
                },
                GridRow {
                    label: "episode 4".into(),
                    cells: vec![Some(frame(size, 1)), Some(frame(size, 2))],
                    gap_before: true,
                },
            ],
        };
        frame_grid_png(&path, &grid).unwrap();
        assert_png(&path, 2 * 80, 2 * 80);
        let bad = FrameGrid {
            rows: vec![GridRow { cells: vec![Some(vec![0; 3])], ..GridRow::default() }],
            ..grid
        };
        assert!(frame_grid_png(&dir.join("bad.png"), &bad).is_err());
        assert!(!dir.join("bad.png").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn latent_space_renders() {
        let dir = temp_dir("latent");
        let path = dir.join("latent_space.png");
        let (episodes, steps, n) = (4, 25, 3);
        let states: Vec<f64> = (0..episodes * steps)
            .flat_map(|r| [r as f64 * 0.3 - 10.0, (r as f64 * 0.1).sin() * 5.0])
            .collect();
        let z: Vec<f64> = (0..episodes * steps)
            .flat_map(|r| {
                let a = r as f64 * 0.3;
                [a.cos(), a.sin(), 0.1 * (r % 3) as f64]
            })
            .collect();
        let data = ekvae_model::data::Sequences {
            images: &[],
            actions: &[],
            states: &states,
            state_dim: 2,
            episodes,
            steps,
            size: 16,
            channels: 1,
            action_dim: 1,
        };
        latent_space(&path, &z, n, &data).unwrap();
        assert_png(&path, 1200, 500);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn animations_are_gifs() {
        let dir = temp_dir("gif");
        let path = dir.join("belief.gif");
        let size = 32;
        let frames = (0..4)
            .map(|k| Ok(side_by_side(&upscale(&frame(16, k), 16, size), &frame(size, k), size)));
        animate(&path, (2 * size + BELIEF_GAP, size), frames).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..6], b"GIF89a");
        assert!(bytes.len() > 200, "{} bytes", bytes.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
