//! Evaluation of a trained run: latent identification (R² of [cos θ, sin θ] and θ̇ from the
//! smoothed latent mean), open-loop prediction errors per horizon, and the fold diagnostic.
//! [`evaluate`] computes; [`Evaluation::report`] is the `eval.json` record.

use std::path::PathBuf;

use ekvae_envs::Dataset;
use ekvae_model::data::Sequences;
use ekvae_model::fold::Winding;
use ekvae_model::identify::{
    FeatureScore, Identification, feature_scores, feature_targets, identify_latents,
    quadratic_features, smoothed_latents,
};
use ekvae_model::predict::{
    PredictionCurves, PredictionStrip, open_loop_prediction, prediction_windows,
};
use ekvae_model::rundir::RunDir;
use ekvae_model::train::{EpochRow, TrainConfig};
use serde::Serialize;

use crate::train::{load_dataset, selected_from};
use crate::{Context, Result, invalid};

/// Default of [`EvalConfig::max_train_episodes`].
pub const DEFAULT_MAX_TRAIN_EPISODES: usize = 300;
/// Default of [`EvalConfig::condition`].
pub const DEFAULT_CONDITION: usize = 10;
/// Default of [`EvalConfig::horizons`].
pub const DEFAULT_HORIZONS: [usize; 4] = [5, 10, 20, 40];
/// Prediction strips kept for the figures.
pub const STRIPS: usize = 4;

/// What to evaluate and how.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalConfig {
    /// The run directory.
    pub run: PathBuf,
    /// Held-out test dataset.
    pub data: PathBuf,
    /// Training dataset the regressions are fitted on (`None`: the one in the run's config).
    pub train_data: Option<PathBuf>,
    /// At most this many training episodes are used for the fit.
    pub max_train_episodes: usize,
    /// Frames conditioned on before open-loop prediction.
    pub condition: usize,
    /// Reported prediction horizons (the curves go up to the largest).
    pub horizons: Vec<usize>,
}

impl EvalConfig {
    /// The defaults for a run and a test set.
    pub fn new(run: impl Into<PathBuf>, data: impl Into<PathBuf>) -> Self {
        Self {
            run: run.into(),
            data: data.into(),
            train_data: None,
            max_train_episodes: DEFAULT_MAX_TRAIN_EPISODES,
            condition: DEFAULT_CONDITION,
            horizons: DEFAULT_HORIZONS.to_vec(),
        }
    }
}

/// The eval.json keys of one horizon h: `pixel_mse_h{h}`, `pixel_mse_last_frame_h{h}` and
/// `angle_err_deg_h{h}`.
pub fn prediction_keys(h: usize) -> [String; 3] {
    [format!("pixel_mse_h{h}"), format!("pixel_mse_last_frame_h{h}"), format!("angle_err_deg_h{h}")]
}

/// Everything [`evaluate`] found.
#[derive(Debug)]
pub struct Evaluation {
    /// The settings.
    pub config: EvalConfig,
    /// The run's config.
    pub run_config: TrainConfig,
    /// Epoch of the evaluated checkpoint.
    pub epoch: usize,
    /// The run's training history (`metrics.csv`).
    pub history: Vec<EpochRow>,
    /// The training data path used for the fit.
    pub train_data: PathBuf,
    /// The test data.
    pub test: Dataset,
    /// The environment the data come from (its registry id; empty for recorded data).
    pub env: String,
    /// The pendulum's identification scores (`Pendulum-v1` data only).
    pub identification: Option<Identification>,
    /// R² of each of the environment's identification targets (empty when the data have no
    /// states or no registered environment names them).
    pub features: Vec<FeatureScore>,
    /// R² of the same targets from the latent and its pairwise products
    /// ([`ekvae_model::identify::quadratic_features`]): whether the latent holds a target at
    /// all, when the linear readout (the identification criterion) misses it.
    pub features_quadratic: Vec<FeatureScore>,
    /// Smoothed latent means of the test episodes, `[N, T, n]` row-major.
    pub z_test: Vec<f64>,
    /// Open-loop prediction errors per horizon.
    pub curves: PredictionCurves,
    /// True and predicted frames of a few windows.
    pub strips: Vec<PredictionStrip>,
    /// The fold diagnostic (the pendulum's: it renders the pendulum).
    pub fold: Option<Winding>,
    /// Candidates the run's seed was selected from (1: no selection).
    pub selected_from: usize,
}

/// What `eval.json` holds besides the per-horizon prediction keys.
#[derive(Debug, Serialize)]
struct Report<'a> {
    env: &'a str,
    #[serde(flatten)]
    identification: Option<&'a Identification>,
    /// R² per identification target, by name.
    r2: std::collections::BTreeMap<&'a str, f64>,
    /// The same on the training sequences.
    train_r2: std::collections::BTreeMap<&'a str, f64>,
    /// R² per target from the latent and its pairwise products (a diagnostic, not the
    /// criterion).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    r2_quadratic: std::collections::BTreeMap<&'a str, f64>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    winding: Option<i32>,
    /// Its clearance (see `ekvae_model::fold`).
    #[serde(skip_serializing_if = "Option::is_none")]
    winding_clearance: Option<f64>,
    /// Candidates the run's seed was selected from by `train --restarts` (1: no selection).
    selected_from: usize,
}

impl Evaluation {
    /// The pendulum's identification and fold diagnostic, or an error naming the environment
    /// the data come from (for the pendulum-only stages: the grid, the demo).
    pub fn pendulum(&self) -> Result<(&Identification, &Winding)> {
        match (&self.identification, &self.fold) {
            (Some(i), Some(f)) => Ok((i, f)),
            _ => invalid!(
                "{}: the data come from '{}', not Pendulum-v1: this stage scores the pendulum only",
                self.config.data.display(),
                self.env
            ),
        }
    }

    /// The test sequences.
    pub fn test_sequences(&self) -> Sequences<'_> {
        Sequences::from(&self.test)
    }

    /// The `eval.json` record: identification, fold diagnostic, and the prediction errors at
    /// each reported horizon under [`prediction_keys`].
    pub fn report(&self) -> serde_json::Value {
        let r = Report {
            env: &self.env,
            identification: self.identification.as_ref(),
            r2: self.features.iter().map(|f| (f.name.as_str(), f.r2)).collect(),
            train_r2: self.features.iter().map(|f| (f.name.as_str(), f.train_r2)).collect(),
            r2_quadratic: self.features_quadratic.iter().map(|f| (f.name.as_str(), f.r2)).collect(),
            model: self.run_config.model.inference.to_string(),
            epoch: self.epoch,
            objective: self.run_config.objective.to_string(),
            train_data: self.train_data.display().to_string(),
            test_data: self.config.data.display().to_string(),
            figure: "latent_space.png".into(),
            prediction_condition: self.curves.condition,
            prediction_windows: self.curves.windows,
            prediction_diverged_windows: self.curves.diverged_windows,
            winding: self.fold.as_ref().map(|f| f.winding),
            winding_clearance: self.fold.as_ref().map(|f| f.clearance),
            selected_from: self.selected_from,
        };
        let mut value = serde_json::to_value(&r).expect("the report serialises");
        let obj = value.as_object_mut().expect("a struct serialises to an object");
        for &h in &self.config.horizons {
            let [k_mse, k_last, k_angle] = prediction_keys(h);
            obj.insert(k_mse, self.curves.pixel_mse[h - 1].into());
            obj.insert(k_last, self.curves.pixel_mse_last_frame[h - 1].into());
            obj.insert(k_angle, self.curves.angle_error_deg[h - 1].into());
        }
        value
    }
}

/// Evaluates the run in `config.run` on `config.data` on `device`. Everything is read and
/// checked before anything is computed.
pub fn evaluate(config: &EvalConfig, device: &burn::tensor::Device) -> Result<Evaluation> {
    evaluate_with(config, &ekvae_envs::Registry::builtin(), device)
}

/// [`evaluate`] with the environments of `registry` (a user's own): the test data's environment
/// names the identification targets and the angle whose prediction error is reported.
pub fn evaluate_with(
    config: &EvalConfig,
    registry: &ekvae_envs::Registry,
    device: &burn::tensor::Device,
) -> Result<Evaluation> {
    let horizon = config.horizons.iter().copied().max().unwrap_or(0);
    if config.horizons.contains(&0) || horizon == 0 || config.condition == 0 {
        invalid!("--condition and every --horizons value must be positive");
    }
    let Some(len) = config.condition.checked_add(horizon) else {
        invalid!("--condition {} + the largest horizon {horizon} is too large", config.condition);
    };
    let run = RunDir::new(&config.run);
    let (run_config, state) = run.open()?;
    let history = run.read_metrics()?;
    let model = run.load_model(&run_config, &state, device)?;
    let (train_path, train) = crate::train::given_or_recorded_data(
        config.train_data.as_deref(),
        &config.run,
        &run_config,
        "--train-data",
    )?;
    let test = load_dataset(&config.data)?;
    for (what, path, d) in [("training", &train_path, &train), ("test", &config.data, &test)] {
        let s = Sequences::from(d);
        let m = &run_config.model;
        if s.size != m.image_size || s.channels != m.image_channels || s.action_dim != m.action_dim
        {
            invalid!(
                "{}: {what} data have {}×{} images of {} channel(s) and {}-d actions but the model in {} is for {}×{} of {} and {}-d; collect with the model's --size from its environment",
                path.display(),
                s.size,
                s.size,
                s.channels,
                s.action_dim,
                config.run.display(),
                m.image_size,
                m.image_size,
                m.image_channels,
                m.action_dim
            );
        }
        s.check().with_context(|| path.display().to_string())?;
    }
    if test.steps < len {
        invalid!(
            "{}: test episodes have {} steps, fewer than --condition {} + the largest horizon {horizon}; lower them or collect longer episodes",
            config.data.display(),
            test.steps,
            config.condition
        );
    }
    if run_config.env != test.meta.env {
        invalid!(
            "{}: the test data come from '{}' but the model in {} was trained on '{}' data; evaluate on data of the model's environment",
            config.data.display(),
            test.meta.env,
            config.run.display(),
            run_config.env
        );
    }
    if train.meta.env != test.meta.env || train.state_dim != test.state_dim {
        invalid!(
            "{}: the training data come from '{}' ({} state coordinates) but the test data from '{}' ({}); evaluate on data of the model's environment",
            config.data.display(),
            train.meta.env,
            train.state_dim,
            test.meta.env,
            test.state_dim
        );
    }
    let env = test.meta.env.clone();
    // The environment's identification targets; none for data without states or without a
    // registered environment (recorded data), which are evaluated open loop only.
    let system = registry
        .get(&env)
        .ok()
        .filter(|s| test.has_states() && s.state_names().len() == test.state_dim);
    let pendulum = env == "Pendulum-v1" && test.state_dim == 2;
    let train_seqs = Sequences::from(&train);
    let test_seqs = Sequences::from(&test);
    let train_eps: Vec<usize> = (0..train.episodes.min(config.max_train_episodes)).collect();
    let test_eps: Vec<usize> = (0..test.episodes).collect();
    let n = model.state_dim();
    let z_test = smoothed_latents(&model, &test_seqs, &test_eps, 64)?;
    let (mut features, mut features_quadratic, mut angle) = (Vec::new(), Vec::new(), None);
    let (mut identification, mut fold) = (None, None);
    if let Some(sys) = &system {
        let z_train = smoothed_latents(&model, &train_seqs, &train_eps, 64)?;
        let names = sys.feature_names();
        let k = names.len();
        let f = |s: &[f64], out: &mut Vec<f64>| sys.features(s, out);
        let y_train = feature_targets(&train_seqs, &train_eps, k, &f)?;
        let y_test = feature_targets(&test_seqs, &test_eps, k, &f)?;
        features = feature_scores((&z_train, &y_train), (&z_test, &y_test), n, &names)?.0;
        let (q_train, width) = quadratic_features(&z_train, n, &z_train);
        let (q_test, _) = quadratic_features(&z_test, n, &z_train);
        // Too few training frames for the products' regression: skipped, not an error.
        if q_train.len() / width.max(1) > width {
            features_quadratic =
                feature_scores((&q_train, &y_train), (&q_test, &y_test), width, &names)?.0;
        }
        if let Some(i) = sys.angle_coordinate().filter(|_| !pendulum) {
            // latent → [cos θ, sin θ] of the angle coordinate, for the prediction's angle errors
            // (the pendulum's comes from its own identification below).
            let cs = |d: &Sequences, eps: &[usize]| {
                feature_targets(d, eps, 2, &|s: &[f64], out: &mut Vec<f64>| {
                    out.extend([s[i].cos(), s[i].sin()])
                })
            };
            let (ys_train, ys_test) = (cs(&train_seqs, &train_eps)?, cs(&test_seqs, &test_eps)?);
            let names = ["cos".to_string(), "sin".to_string()];
            let fit = feature_scores((&z_train, &ys_train), (&z_test, &ys_test), n, &names)?.1;
            angle = Some((fit, i));
        }
        if pendulum {
            let ident =
                identify_latents(n, &z_train, &train_seqs, &train_eps, z_test.clone(), &test_seqs)?;
            angle = Some((ident.angle_fit, 0));
            identification = Some(ident.report);
            if model.image_channels() == 1 {
                fold = Some(ekvae_model::fold::fold_diagnostic(&model)?);
            }
        } else {
            fold = ekvae_model::fold::fold_diagnostic_of(&model, sys.as_ref())?;
        }
    }
    finish(
        config,
        run_config,
        state.epoch,
        history,
        train_path,
        test,
        env,
        identification,
        (features, features_quadratic),
        z_test,
        angle,
        fold,
        &model,
        len,
        horizon,
    )
}

/// The prediction part of [`evaluate_with`] and the result.
#[allow(clippy::too_many_arguments)]
fn finish(
    config: &EvalConfig,
    run_config: TrainConfig,
    epoch: usize,
    history: Vec<EpochRow>,
    train_data: PathBuf,
    test: Dataset,
    env: String,
    identification: Option<Identification>,
    (features, features_quadratic): (Vec<FeatureScore>, Vec<FeatureScore>),
    z_test: Vec<f64>,
    angle: Option<(ekvae_model::metrics::LinearRegression, usize)>,
    fold: Option<Winding>,
    model: &ekvae_model::ekvae::Ekvae,
    len: usize,
    horizon: usize,
) -> Result<Evaluation> {
    let windows = prediction_windows(test.episodes, test.steps, len);
    let (curves, strips) = open_loop_prediction(
        model,
        &Sequences::from(&test),
        &windows,
        config.condition,
        horizon,
        angle.as_ref().map(|(fit, i)| (fit, *i)),
        STRIPS,
    )?;
    Ok(Evaluation {
        config: config.clone(),
        run_config,
        epoch,
        history,
        train_data,
        selected_from: selected_from(&config.run)?,
        test,
        env,
        identification,
        features,
        features_quadratic,
        z_test,
        curves,
        strips,
        fold,
    })
}

/// One row of `prediction.csv`: the errors at horizon h (steps after the last conditioned
/// frame). The file's schema is this struct.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct PredictionRow {
    /// h = 1, 2, ….
    pub horizon: usize,
    /// Mean pixel squared error of the predicted frames.
    pub pixel_mse: f64,
    /// The same for the last conditioned frame held.
    pub pixel_mse_last_frame: f64,
    /// Mean wrapped angle error (degrees) of the predicted latents, read through the
    /// identification's regression.
    pub angle_err_deg: f64,
}

/// The rows of `prediction.csv` for `curves`.
pub fn prediction_rows(curves: &PredictionCurves) -> Vec<PredictionRow> {
    (0..curves.pixel_mse.len())
        .map(|h| PredictionRow {
            horizon: h + 1,
            pixel_mse: curves.pixel_mse[h],
            pixel_mse_last_frame: curves.pixel_mse_last_frame[h],
            angle_err_deg: curves.angle_error_deg[h],
        })
        .collect()
}

/// Writes `prediction.csv` atomically.
pub fn write_prediction_csv(path: &std::path::Path, curves: &PredictionCurves) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in prediction_rows(curves) {
        w.serialize(r).map_err(|e| crate::Error::File(format!("{}: {e}", path.display())))?;
    }
    let bytes =
        w.into_inner().map_err(|e| crate::Error::File(format!("{}: {e}", path.display())))?;
    ekvae_model::rundir::write_atomic(path, &bytes)?;
    Ok(())
}

/// Reads a `prediction.csv`; the error names the file and the row.
pub fn read_prediction_csv(path: &std::path::Path) -> Result<Vec<PredictionRow>> {
    let mut r = csv::Reader::from_path(path)
        .map_err(|e| crate::Error::File(format!("cannot read {}: {e}", path.display())))?;
    let expected = ["horizon", "pixel_mse", "pixel_mse_last_frame", "angle_err_deg"];
    let header = r.headers().map_err(|e| crate::Error::File(format!("{}: {e}", path.display())))?;
    if header.iter().ne(expected) {
        invalid!(
            "{}: not a prediction.csv (expected the header {})",
            path.display(),
            expected.join(",")
        );
    }
    r.deserialize()
        .enumerate()
        .map(|(i, row)| {
            row.map_err(|e| {
                crate::Error::File(format!("{}: malformed row {}: {e}", path.display(), i + 2))
            })
        })
        .collect()
}
