//! Figures shared by `eval`, `reproduce`, `inspect` and `mpc`: PNGs drawn in memory and written
//! through the one atomic writer, grids of frames, error-against-horizon curves and training
//! curves.

use std::io;
use std::path::Path;

use anyhow::Result;
use ekvae_model::train::EpochRow;
use ekvae_model::predict::PredictionStrip;
use ekvae_envs::pendulum::angle_normalize;
use ekvae_pipeline::swingup::StepRow;
use std::f64::consts::PI;
use anyhow::Context as _;
use plotters::coord::Shift;
use plotters::prelude::*;

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// Draw a `width × height` chart with `draw` into memory and write it as a PNG through the
/// workspace's one atomic writer; on failure nothing appears under `path`.
pub fn bitmap(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<()>,
) -> Result<()> {
    ekvae_envs::fsio::check_output(path)?;
    let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
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

/// Write a grid of `size × size` grayscale frames (rows of cells; `None` = empty cell) as a PNG,
/// frames scaled up by an integer factor to at least 64 pixels and separated by gray lines.
pub fn gray_grid_png(path: &Path, size: usize, rows: &[Vec<Option<Vec<u8>>>]) -> Result<()> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let scale = 64usize.div_ceil(size).max(1);
    let cell = size * scale;
    const GAP: usize = 2;
    let width = cols * (cell + GAP) + GAP;
    let height = rows.len() * (cell + GAP) + GAP;
    let mut img = vec![96u8; width * height];
    for (r, row) in rows.iter().enumerate() {
        for (c, frame) in row.iter().enumerate() {
            let Some(frame) = frame else { continue };
            anyhow::ensure!(
                frame.len() == size * size,
                "a frame of {} pixels in the grid",
                frame.len()
            );
            let (x0, y0) = (GAP + c * (cell + GAP), GAP + r * (cell + GAP));
            for y in 0..cell {
                let src = &frame[(y / scale) * size..(y / scale + 1) * size];
                let dst = &mut img[(y0 + y) * width + x0..(y0 + y) * width + x0 + cell];
                for (x, px) in dst.iter_mut().enumerate() {
                    *px = src[x / scale];
                }
            }
        }
    }
    let (w, h) = (u32::try_from(width)?, u32::try_from(height)?);
    write_png(path, (w, h), png::ColorType::Grayscale, &img)
}

/// Pixels in [0, 1] as bytes.
pub fn to_gray(frame: &[f32]) -> Vec<u8> {
    frame.iter().map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect()
}

/// One line of a chart: `ys[i]` at x = i + 1, with an optional ±band.
#[derive(Debug, Clone)]
pub struct Curve {
    /// Legend label.
    pub label: String,
    /// Values at x = 1, 2, ….
    pub ys: Vec<f64>,
    /// Half-width of a shaded band (e.g. the standard deviation over seeds).
    pub band: Option<Vec<f64>>,
    /// Line colour.
    pub color: RGBColor,
    /// Draw thin (for baselines).
    pub thin: bool,
}

/// The colour of the i-th configuration.
pub fn color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    COLORS[i % COLORS.len()]
}

fn draw_curves(
    area: &DrawingArea<BitMapBackend, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    curves: &[Curve],
) -> Result<()> {
    let xmax = curves.iter().map(|c| c.ys.len()).max().unwrap_or(1).max(2) as f64;
    let values = curves.iter().flat_map(|c| {
        c.ys.iter().enumerate().flat_map(move |(i, y)| {
            let b = c.band.as_ref().map_or(0.0, |b| b[i]);
            [y - b, y + b]
        })
    });
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo.is_finite() { (lo.min(0.0), hi) } else { (0.0, 1.0) };
    let pad = ((hi - lo).abs() * 0.05).max(1e-9);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(56)
        .build_cartesian_2d(1f64..xmax, lo..hi + pad)
        .map_err(plot_err)?;
    chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw().map_err(plot_err)?;
    for c in curves {
        if let Some(band) = &c.band {
            let upper =
                c.ys.iter().zip(band).enumerate().map(|(i, (y, b))| ((i + 1) as f64, y + b));
            let lower =
                c.ys.iter().zip(band).enumerate().rev().map(|(i, (y, b))| ((i + 1) as f64, y - b));
            chart
                .draw_series(std::iter::once(Polygon::new(
                    upper.chain(lower).collect::<Vec<_>>(),
                    c.color.mix(0.15).filled(),
                )))
                .map_err(plot_err)?;
        }
        let pts = c.ys.iter().enumerate().map(|(i, &y)| ((i + 1) as f64, y));
        let (color, width) = (c.color, if c.thin { 1 } else { 2 });
        let style = color.stroke_width(width);
        chart
            .draw_series(LineSeries::new(pts, style))
            .map_err(plot_err)?
            .label(c.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(width))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

/// Two panels against the prediction horizon: pixel MSE and angle error.
pub fn error_vs_horizon(path: &Path, pixel: &[Curve], angle: &[Curve]) -> Result<()> {
    bitmap(path, (1300, 520), |root| {
        let panels = root.split_evenly((1, 2));
        draw_curves(
            &panels[0],
            "open-loop prediction: pixel error",
            "steps after conditioning",
            "pixel MSE",
            pixel,
        )?;
        draw_curves(
            &panels[1],
            "open-loop prediction: angle error",
            "steps after conditioning",
            "|angle error| (deg)",
            angle,
        )
    })
}

/// Four panels against the epoch: λ, distortion D, rate R and −ELBO (training; validation
/// thin), one line per run.
pub fn training_curves(path: &Path, runs: &[(String, Vec<EpochRow>)]) -> Result<()> {
    bitmap(path, (1300, 900), |root| {
        let panels = root.split_evenly((2, 2));
        type Get = fn(&EpochRow) -> f64;
        let specs: [(&str, Get); 4] = [
            ("λ (Lagrange multiplier)", |r| r.lambda),
            ("distortion D (nats/frame)", |r| r.distortion),
            ("rate R (nats/frame)", |r| r.rate),
            ("−ELBO (nats/frame)", |r| r.neg_elbo),
        ];
        for (panel, (title, get)) in panels.iter().zip(specs) {
            let mut curves: Vec<Curve> = runs
                .iter()
                .enumerate()
                .map(|(i, (label, rows))| Curve {
                    label: label.clone(),
                    ys: rows.iter().map(get).collect(),
                    band: None,
                    color: color(i),
                    thin: false,
                })
                .collect();
            if title.starts_with('−') {
                curves.extend(runs.iter().enumerate().map(|(i, (label, rows))| Curve {
                    label: format!("{label} (validation)"),
                    ys: rows.iter().map(|r| r.val_neg_elbo).collect(),
                    band: None,
                    color: color(i),
                    thin: true,
                }));
            }
            draw_curves(panel, title, "epoch", "", &curves)?;
        }
        Ok(())
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

/// θ(t) (wrapped), θ̇(t) and u(t) of every episode, one panel each.
pub fn trajectories(path: &Path, rows: &[StepRow], episodes: usize, steps: usize) -> Result<()> {
    bitmap(path, (900, 900), |root| {
        let panels = root.split_evenly((3, 1));
        let series: [Panel; 3] = [
            ("θ (wrapped, rad)", -PI, PI, |r| angle_normalize(r.theta), true),
            ("θ̇ (rad/s)", -8.0, 8.0, |r| r.theta_dot, false),
            ("u (torque)", -2.2, 2.2, |r| r.u, false),
        ];
        for (panel, (label, lo, hi, f, wrapped)) in panels.iter().zip(series) {
            let mut chart = ChartBuilder::on(panel)
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(0f64..steps as f64, lo..hi)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            chart
                .configure_mesh()
                .x_desc("step")
                .y_desc(label)
                .draw()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for ep in 0..episodes {
                let color = Palette99::pick(ep).mix(0.8);
                let pts: Vec<(f64, f64)> =
                    rows.iter().filter(|r| r.episode == ep).map(|r| (r.t as f64, f(r))).collect();
                // Break the line where the wrapped angle jumps between ±π.
                for segment in pts.chunk_by(|a, b| !wrapped || (b.1 - a.1).abs() < PI) {
                    chart
                        .draw_series(LineSeries::new(
                            segment.iter().copied(),
                            color.stroke_width(1),
                        ))
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
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
/// frame (h = 0, truth only) and at h = 1, 2, 3 and every reported horizon.
pub fn prediction_strips(
    path: &Path,
    size: usize,
    strips: &[PredictionStrip],
    horizons: &[usize],
) -> Result<()> {
    let px = size * size;
    let mut cols: Vec<usize> = vec![0, 1, 2, 3];
    cols.extend(horizons.iter().copied());
    cols.sort_unstable();
    cols.dedup();
    let mut rows = Vec::new();
    for s in strips {
        let hmax = s.predicted.len() / px;
        let cols: Vec<usize> = cols.iter().copied().filter(|&h| h <= hmax).collect();
        rows.push(cols.iter().map(|&h| Some(to_gray(&s.truth[h * px..(h + 1) * px]))).collect());
        rows.push(
            cols.iter()
                .map(|&h| (h > 0).then(|| to_gray(&s.predicted[(h - 1) * px..h * px])))
                .collect(),
        );
    }
    gray_grid_png(path, size, &rows)
}

/// The blog's figure: the latent space (two leading principal axes of the smoothed means)
/// coloured by the true angle (cyclic hue) and by the angular velocity (viridis).
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
    bitmap(path, (1200, 560), |root| {
        let panels = root.split_evenly((1, 2));
        for (i, panel) in panels.iter().enumerate() {
            let title = if i == 0 {
                "latent space coloured by angle θ"
            } else {
                "coloured by angular velocity dθ/dt"
            };
            let mut chart = ChartBuilder::on(panel)
                .caption(title, ("sans-serif", 20))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(40)
                .build_cartesian_2d(xmin - padx..xmax + padx, ymin - pady..ymax + pady)?;
            chart.configure_mesh().x_desc("PC 1").y_desc("PC 2").draw()?;
            chart.draw_series((0..rows).step_by(stride).map(|r| {
                let [th, thd] = state(r);
                let color: RGBColor = if i == 0 {
                    let h = (th.rem_euclid(std::f64::consts::TAU)) / std::f64::consts::TAU;
                    let c = HSLColor(h, 0.9, 0.5).to_rgba();
                    RGBColor(c.0, c.1, c.2)
                } else {
                    ViridisRGB::get_color_normalized(thd, -vmax, vmax)
                };
                Circle::new(pts[r], 2, color.filled())
            }))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_csv_round_trip() {
        let dir = std::env::temp_dir().join(format!("ekvae-fig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
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
}
