//! `ekvae eval`: the command line of [`ekvae_pipeline::eval`] and its writers: `eval.json`,
//! `prediction.csv` and the figures (latent space, true-vs-predicted frame strips, error
//! against horizon, training curves), into `--out` (default: the run directory).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use ekvae_model::backend::device_from_name;
use ekvae_pipeline::eval::{
    DEFAULT_CONDITION, DEFAULT_HORIZONS, DEFAULT_MAX_TRAIN_EPISODES, EvalConfig, Evaluation,
    evaluate, write_prediction_csv,
};
use plotters::prelude::RGBColor;

use crate::figures::{Curve, TrainingRun, arm_label, color};

/// Arguments of `ekvae eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Run directory written by `ekvae train`.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// Held-out test dataset (.npz from `ekvae collect` with another seed).
    #[arg(long)]
    pub data: PathBuf,
    /// Where eval.json, prediction.csv and the figures go [default: the run directory].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Training dataset to fit the regressions on [default: the one recorded in the run's config].
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
    /// Print only the summary lines (no per-horizon lines or notes).
    #[arg(long)]
    pub quiet: bool,
}

/// Run `ekvae eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let device = device_from_name(&args.device)?;
    let config = EvalConfig {
        run: args.run.clone(),
        data: args.data.clone(),
        train_data: args.train_data.clone(),
        max_train_episodes: args.max_train_episodes,
        condition: args.condition,
        horizons: args.horizons.clone(),
    };
    let out = args.out.clone().unwrap_or_else(|| args.run.clone());
    if out != args.run {
        std::fs::create_dir_all(&out)
            .with_context(|| format!("cannot create output directory {}", out.display()))?;
    }
    let e = evaluate(&config, &device)?;
    write_evaluation(&out, &e)?;
    if let Some(report) = &e.identification {
        say!(
            "R²(cos θ, sin θ) = {:.4}   R²(θ̇) = {:.4}   (test {} frames; train fit {:.4} / {:.4})",
            report.r2_cos_sin,
            report.r2_theta_dot,
            report.test_frames,
            report.train_r2_cos_sin,
            report.train_r2_theta_dot
        );
    }
    if let (Some(report), Some(fold)) = (&e.identification, &e.fold) {
        say!(
            "R²(cos θ) = {:.4}   R²(sin θ) = {:.4}   fold diagnostic: winding {} (clearance {:.2})",
            report.r2_cos,
            report.r2_sin,
            fold.winding,
            fold.clearance
        );
    } else if e.features.is_empty() {
        say!(
            "identification skipped: the data ({}) have no true states of a registered environment; open-loop prediction only",
            if e.env.is_empty() { "recorded, no environment" } else { e.env.as_str() }
        );
    } else {
        let scores: Vec<String> =
            e.features.iter().map(|f| format!("R²({}) = {:.4}", f.name, f.r2)).collect();
        let fold = e.fold.as_ref().map_or(String::new(), |f| {
            format!("   fold diagnostic: winding {} (clearance {:.2})", f.winding, f.clearance)
        });
        say!("{}   ({}){fold}", scores.join("   "), e.env);
        if !e.features_quadratic.is_empty() {
            let q: Vec<String> = e
                .features_quadratic
                .iter()
                .map(|f| format!("R²({}) = {:.4}", f.name, f.r2))
                .collect();
            say!("  from the latent and its pairwise products (a diagnostic): {}", q.join("   "));
        }
    }
    let curves = &e.curves;
    if !args.quiet {
        for &h in &args.horizons {
            say!(
                "prediction h = {h:>2}: pixel MSE {:.5} (last frame held {:.5}), angle error {:.1}° (NaN: no angle)",
                curves.pixel_mse[h - 1],
                curves.pixel_mse_last_frame[h - 1],
                curves.angle_error_deg[h - 1]
            );
        }
    }
    if curves.diverged_windows > 0 {
        say!(
            "warning: the prediction overflowed (NaN/∞) in {} of {} windows; the errors above are over the other {}",
            curves.diverged_windows,
            curves.diverged_windows + curves.windows,
            curves.windows
        );
    }
    if e.selected_from > 1 && !args.quiet {
        say!(
            "note: this run's seed was selected from {} candidates (train --restarts)",
            e.selected_from
        );
    }
    if let Some(fold) = e.fold.as_ref().filter(|f| !f.is_ring()) {
        say!("{}", ekvae_pipeline::train::fold_warning(fold.winding, fold.clearance));
    }
    say!("wrote {} and the figures in {}", out.join("eval.json").display(), out.display());
    Ok(())
}

/// Writes an evaluation's files into `out`: `eval.json` (with the commit), `prediction.csv`,
/// `latent_space.png`, `prediction_strips.png`, `prediction_error.png`, `training_curves.png`.
pub fn write_evaluation(out: &Path, e: &Evaluation) -> Result<()> {
    let cfg = &e.run_config;
    // The latent-space figure colours the latent by the pendulum's angle and velocity.
    if e.identification.is_some() {
        let figure = out.join("latent_space.png");
        crate::figures::latent_space(&figure, &e.z_test, cfg.model.state_dim, &e.test_sequences())
            .with_context(|| format!("drawing {}", figure.display()))?;
    }
    write_prediction_csv(&out.join("prediction.csv"), &e.curves)?;
    crate::figures::prediction_strips(
        &out.join("prediction_strips.png"),
        e.test.size,
        &e.strips,
        &e.config.horizons,
    )?;
    let name = arm_label(cfg.model.inference, cfg.objective);
    let curve = |label: String, ys: &[f64], color, thin| Curve {
        label,
        ys: ys.to_vec(),
        band: None,
        color,
        thin,
    };
    crate::figures::error_vs_horizon(
        &out.join("prediction_error.png"),
        &[
            curve(name.clone(), &e.curves.pixel_mse, color(0), false),
            curve(
                "last conditioned frame held".into(),
                &e.curves.pixel_mse_last_frame,
                RGBColor(120, 120, 120),
                true,
            ),
        ],
        &[curve(name.clone(), &e.curves.angle_error_deg, color(0), false)],
        None,
    )?;
    crate::figures::training_curves(
        &out.join("training_curves.png"),
        &[TrainingRun::new(name, e.history.clone(), cfg)],
    )?;
    crate::writers::write_json(&out.join("eval.json"), &e.report())?;
    Ok(())
}
