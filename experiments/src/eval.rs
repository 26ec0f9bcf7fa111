//! `ekvae eval`: latent-space identification of a trained run (R² of [cos θ, sin θ] and θ̇
//! from the smoothed latent mean), open-loop prediction errors per horizon, and the figures
//! (latent space, true-vs-predicted frame strips, error against horizon, training curves).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use ekvae_model::backend::device_from_name;
use ekvae_model::identify::{Identification, identify};
use ekvae_model::predict::{
    PredictionCurves, PredictionStrip, open_loop_prediction, prediction_windows,
};
use ekvae_model::train::{RunDir, write_atomic};
use plotters::prelude::*;
use serde::Serialize;

use crate::figures::{Curve, color, gray_grid_png, to_gray};
use crate::train::{load_dataset, sequences};

/// Default of `--max-train-episodes`.
pub const DEFAULT_MAX_TRAIN_EPISODES: usize = 300;
/// Default of `--condition`.
pub const DEFAULT_CONDITION: usize = 10;
/// Default of `--horizons`.
pub const DEFAULT_HORIZONS: [usize; 4] = [5, 10, 20, 40];

/// Arguments of `ekvae eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Run directory written by `ekvae train`.
    #[arg(long)]
    pub run: PathBuf,
    /// Held-out test dataset (.npz from `ekvae collect` with another seed).
    #[arg(long)]
    pub data: PathBuf,
    /// Training dataset to fit the regressions on (default: the one recorded in the run's config).
    #[arg(long)]
    pub train_data: Option<PathBuf>,
    /// At most this many training episodes are used to fit the regressions.
    #[arg(long, default_value_t = DEFAULT_MAX_TRAIN_EPISODES)]
    pub max_train_episodes: usize,
    /// Frames conditioned on before open-loop prediction.
    #[arg(long, default_value_t = DEFAULT_CONDITION)]
    pub condition: usize,
    /// Prediction horizons reported in eval.json, comma-separated (steps after the last
    /// conditioned frame); the curves in prediction.csv go up to the largest.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_HORIZONS)]
    pub horizons: Vec<usize>,
    /// Compute device: cpu, or cuda / wgpu when compiled with that feature.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

impl EvalArgs {
    /// The arguments with every default, for a run and a test set.
    pub fn new(run: PathBuf, data: PathBuf) -> Self {
        Self {
            run,
            data,
            train_data: None,
            max_train_episodes: DEFAULT_MAX_TRAIN_EPISODES,
            condition: DEFAULT_CONDITION,
            horizons: DEFAULT_HORIZONS.to_vec(),
            device: "cpu".into(),
        }
    }
}

/// What `eval.json` holds besides the per-horizon prediction keys.
#[derive(Debug, Serialize)]
struct EvalReport<'a> {
    #[serde(flatten)]
    identification: &'a Identification,
    model: String,
    epoch: usize,
    objective: String,
    train_data: String,
    test_data: String,
    figure: String,
    prediction_condition: usize,
    prediction_windows: usize,
    prediction_diverged_windows: usize,
    /// Fold diagnostic: winding number of the encoded ring of angles (|winding| = 1: a ring).
    winding: i32,
    /// Its clearance (see `ekvae_model::fold`).
    winding_clearance: f64,
    /// Candidates the run's seed was selected from by `train --restarts` (1: no selection).
    selected_from: usize,
}

/// The eval.json keys of one horizon h: `pixel_mse_h{h}`, `pixel_mse_last_frame_h{h}` and
/// `angle_err_deg_h{h}`.
pub fn prediction_keys(h: usize) -> [String; 3] {
    [format!("pixel_mse_h{h}"), format!("pixel_mse_last_frame_h{h}"), format!("angle_err_deg_h{h}")]
}

/// Run `ekvae eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let device = device_from_name(&args.device)?;
    let run = RunDir::new(&args.run);
    let (config, state) = run.open()?;
    // Everything eval reads is read and checked before it writes anything.
    let metrics = crate::figures::read_metrics(&run.metrics_path())?;
    let model = run.load_model(&config, &state, &device)?;
    let train_path = match &args.train_data {
        Some(p) => p.clone(),
        None if config.data.trim().is_empty() => bail!(
            "{}: the run records no training data path; give it with --train-data",
            run.config_path().display()
        ),
        None => PathBuf::from(&config.data),
    };
    let train = load_dataset(&train_path)
        .context("loading the training data (override with --train-data)")?;
    let test = load_dataset(&args.data)?;
    for (what, path, d) in [("training", &train_path, &train), ("test", &args.data, &test)] {
        let s = sequences(d);
        if s.size != config.model.image_size || s.action_dim != config.model.action_dim {
            bail!(
                "{}: {what} data have {}×{} images and {}-d actions but the model in {} is for {}×{} and {}-d; collect with the model's --size",
                path.display(),
                s.size,
                s.size,
                s.action_dim,
                args.run.display(),
                config.model.image_size,
                config.model.image_size,
                config.model.action_dim
            );
        }
        s.check().with_context(|| format!("{}", path.display()))?;
    }
    let train_seqs = sequences(&train);
    let test_seqs = sequences(&test);
    let train_eps: Vec<usize> = (0..train.episodes.min(args.max_train_episodes)).collect();
    let horizon = args.horizons.iter().copied().max().unwrap_or(0);
    if args.horizons.contains(&0) || horizon == 0 || args.condition == 0 {
        bail!("--condition and every --horizons value must be positive");
    }
    let Some(len) = args.condition.checked_add(horizon) else {
        bail!("--condition {} + the largest horizon {horizon} is too large", args.condition);
    };
    if test.steps < len {
        bail!(
            "{}: test episodes have {} steps, fewer than --condition {} + the largest horizon {horizon}; lower them or collect longer episodes",
            args.data.display(),
            test.steps,
            args.condition
        );
    }
    let ident = identify(&model, &train_seqs, &train_eps, &test_seqs)?;
    let fold = ekvae_model::fold::fold_diagnostic(&model)?;
    let report = &ident.report;
    let windows = prediction_windows(test.episodes, test.steps, len);
    let (curves, strips) = open_loop_prediction(
        &model,
        &test_seqs,
        &windows,
        args.condition,
        horizon,
        &ident.angle_fit,
        4,
    )?;

    let figure = args.run.join("latent_space.png");
    plot_latents(&figure, &ident.z_test, config.model.state_dim, &test_seqs)
        .with_context(|| format!("drawing {}", figure.display()))?;
    write_prediction_csv(&args.run.join("prediction.csv"), &curves)?;
    plot_strips(&args.run.join("prediction_strips.png"), test.size, &strips, &args.horizons)?;
    let name = config.model.inference.to_string();
    crate::figures::error_vs_horizon(
        &args.run.join("prediction_error.png"),
        &[
            Curve {
                label: name.clone(),
                ys: curves.pixel_mse.clone(),
                band: None,
                color: color(0),
                thin: false,
            },
            Curve {
                label: "last conditioned frame held".into(),
                ys: curves.pixel_mse_last_frame.clone(),
                band: None,
                color: RGBColor(120, 120, 120),
                thin: true,
            },
        ],
        &[Curve {
            label: name,
            ys: curves.angle_error_deg.clone(),
            band: None,
            color: color(0),
            thin: false,
        }],
    )?;
    crate::figures::training_curves(
        &args.run.join("training_curves.png"),
        &[(format!("{} {}", config.model.inference, config.objective), metrics)],
    )?;

    let json = EvalReport {
        identification: report,
        model: config.model.inference.to_string(),
        epoch: state.epoch,
        objective: config.objective.to_string(),
        train_data: train_path.display().to_string(),
        test_data: args.data.display().to_string(),
        figure: "latent_space.png".into(),
        prediction_condition: curves.condition,
        prediction_windows: curves.windows,
        prediction_diverged_windows: curves.diverged_windows,
        winding: fold.winding,
        winding_clearance: fold.clearance,
        selected_from: selected_from(&args.run)?,
    };
    let mut value = serde_json::to_value(&json)?;
    let obj = value.as_object_mut().expect("a struct serialises to an object");
    for &h in &args.horizons {
        let [k_mse, k_last, k_angle] = prediction_keys(h);
        obj.insert(k_mse, curves.pixel_mse[h - 1].into());
        obj.insert(k_last, curves.pixel_mse_last_frame[h - 1].into());
        obj.insert(k_angle, curves.angle_error_deg[h - 1].into());
    }
    let path = args.run.join("eval.json");
    write_atomic(&path, serde_json::to_string_pretty(&value)?.as_bytes())?;
    say!(
        "R²(cos θ, sin θ) = {:.4}   R²(θ̇) = {:.4}   (test {} frames; train fit {:.4} / {:.4})",
        report.r2_cos_sin,
        report.r2_theta_dot,
        report.test_frames,
        report.train_r2_cos_sin,
        report.train_r2_theta_dot
    );
    println!(
        "R²(cos θ) = {:.4}   R²(sin θ) = {:.4}   fold diagnostic: winding {} (clearance {:.2})",
        report.r2_cos, report.r2_sin, fold.winding, fold.clearance
    );
    for &h in &args.horizons {
        say!(
            "prediction h = {h:>2}: pixel MSE {:.5} (last frame held {:.5}), angle error {:.1}°",
            curves.pixel_mse[h - 1],
            curves.pixel_mse_last_frame[h - 1],
            curves.angle_error_deg[h - 1]
        );
    }
    if curves.diverged_windows > 0 {
        say!(
            "warning: the prediction overflowed (NaN/∞) in {} of {} windows; the errors above are over the other {}",
            curves.diverged_windows,
            curves.diverged_windows + curves.windows,
            curves.windows
        );
    }
    if json.selected_from > 1 {
        say!(
            "note: this run's seed was selected from {} candidates (train --restarts)",
            json.selected_from
        );
    }
    if !fold.is_ring() {
        say!("{}", crate::train::fold_warning(fold.winding, fold.clearance));
    }
    say!("wrote {} and the figures in {}", path.display(), args.run.display());
    Ok(())
}

/// How many candidates `train --restarts` chose this run from (1 without a selection record).
fn selected_from(run: &Path) -> Result<usize> {
    let path = run.join(crate::train::SELECTION_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let s: crate::train::Selection = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a selection record", path.display()))?;
            Ok(s.candidates.len())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(1),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The header of `prediction.csv`: one row per horizon h = 1, 2, ….
const PREDICTION_HEADER: &str = "horizon,pixel_mse,pixel_mse_last_frame,angle_err_deg";

fn write_prediction_csv(path: &Path, c: &PredictionCurves) -> Result<()> {
    let mut text = format!("{PREDICTION_HEADER}\n");
    for h in 0..c.pixel_mse.len() {
        text.push_str(&format!(
            "{},{},{},{}\n",
            h + 1,
            c.pixel_mse[h],
            c.pixel_mse_last_frame[h],
            c.angle_error_deg[h]
        ));
    }
    write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// The curves of a run's `prediction.csv` (written by `ekvae eval`).
pub struct PredictionCsv {
    /// Pixel MSE per horizon.
    pub pixel_mse: Vec<f64>,
    /// Pixel MSE of the held last frame per horizon.
    pub pixel_mse_last_frame: Vec<f64>,
    /// Angle error in degrees per horizon.
    pub angle_error_deg: Vec<f64>,
}

/// Read a `prediction.csv` written by [`write_prediction_csv`].
pub fn read_prediction_csv(path: &Path) -> Result<PredictionCsv> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = text.lines();
    if lines.next() != Some(PREDICTION_HEADER) {
        bail!("{}: not a prediction.csv (expected the header {PREDICTION_HEADER})", path.display());
    }
    let mut out = PredictionCsv {
        pixel_mse: Vec::new(),
        pixel_mse_last_frame: Vec::new(),
        angle_error_deg: Vec::new(),
    };
    for (i, line) in lines.enumerate() {
        let v: Vec<f64> = line
            .split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()
            .filter(|v: &Vec<f64>| v.len() == 4)
            .with_context(|| format!("{}: malformed row {}", path.display(), i + 2))?;
        out.pixel_mse.push(v[1]);
        out.pixel_mse_last_frame.push(v[2]);
        out.angle_error_deg.push(v[3]);
    }
    Ok(out)
}

/// For each strip: a row of true frames and a row of predicted frames at the last conditioned
/// frame (h = 0, truth only) and at h = 1, 2, 3 and every reported horizon.
fn plot_strips(
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
fn plot_latents(
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
    crate::figures::bitmap(path, (1200, 560), |root| {
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
