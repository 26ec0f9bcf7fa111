//! Figures shared by `eval`, `reproduce`, `inspect` and `mpc`: PNGs drawn in memory and written
//! through the one atomic writer, grids of frames, error-against-horizon curves and training
//! curves.

use std::io;
use std::path::Path;

use anyhow::Result;
use ekvae_model::train::EpochRow;
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
