//! The explicit training loop: Adam on the constrained Lagrangian or the plain −ELBO,
//! global gradient-norm clipping, random subsequence minibatches, a validation split, the λ
//! update, a NaN/inf guard, per-epoch metrics and atomic checkpoints.
//!
//! # Run directory
//! - `config.toml`: the resolved [`TrainConfig`];
//! - `metrics.csv`: one row per epoch (see [`EpochRow`]), flushed as written;
//! - `checkpoints/epoch-NNNN/{model.safetensors, optimizer.bpk}`: model weights (safetensors
//!   through burn-store) and Adam state (burnpack) after epoch NNNN;
//! - `state.json`: the last completed epoch, its checkpoint folder and the λ schedule. It is
//!   replaced atomically (temp file + rename) after the checkpoint folder is complete, so a
//!   crash at any moment leaves a consistent last good checkpoint; older folders are removed
//!   afterwards.
//!
//! # Reproducibility
//! Parameters are initialised after `device.seed(seed)` and get deterministic ids (their order
//! in the module), minibatch windows and all noise come from a ChaCha stream seeded by
//! (seed, epoch), so a run is reproducible and `--resume` continues exactly where a run
//! stopped (optimizer state included).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Device, Tensor, TensorData};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::data::{Sequences, split_episodes};
use crate::ekvae::{Ekvae, EkvaeConfig, ObjectiveNoise, RateDistortion};
use crate::objective::{LambdaConfig, LambdaSchedule, Objective, Phase, constrained_loss, neg_elbo};
use crate::{Error, Result};

/// Everything that defines a training run; saved as `config.toml` in the run directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The model sizes.
    pub model: EkvaeConfig,
    /// Constrained Lagrangian or plain ELBO.
    pub objective: Objective,
    /// Number of epochs.
    pub epochs: usize,
    /// Sequences per minibatch.
    pub batch_size: usize,
    /// Length of the random subsequences trained on.
    pub seq_len: usize,
    /// Minibatches per epoch; 0 = as many as cover the training episodes once
    /// (⌈episodes · ⌊T / seq_len⌋ / batch⌉).
    pub steps_per_epoch: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Maximal global L2 norm of the gradient (rescaled above it); 0 disables clipping.
    pub grad_clip: f64,
    /// Fraction of the episodes held out for validation (the last ones).
    pub val_fraction: f64,
    /// Seed of initialisation, minibatches and noise.
    pub seed: u64,
    /// λ schedule (used by the constrained objective).
    pub lambda: LambdaConfig,
    /// Epochs at the start during which the transition's mixing weights α are frozen uniform
    /// (one global linear model, KVAE's staged training); 0 = never.
    pub freeze_mixing_epochs: usize,
    /// The training data file, recorded for `ekvae eval` (informational for the library).
    pub data: String,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            model: EkvaeConfig::new(),
            objective: Objective::Constrained,
            epochs: 40,
            batch_size: 32,
            seq_len: 32,
            steps_per_epoch: 0,
            learning_rate: 2e-3,
            grad_clip: 100.0,
            val_fraction: 0.1,
            seed: 0,
            lambda: LambdaConfig::default(),
            freeze_mixing_epochs: 0,
            data: String::new(),
        }
    }
}

impl TrainConfig {
    /// Check the settings and the model config.
    pub fn check(&self) -> Result<()> {
        self.model.check()?;
        self.lambda.check()?;
        let bad = |m: String| Err(Error::InvalidSetting(m));
        if self.epochs == 0 || self.batch_size == 0 {
            return bad("epochs and batch_size must be positive".into());
        }
        if self.seq_len < 2 {
            return bad(format!("seq_len must be at least 2, got {}", self.seq_len));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad(format!("learning_rate must be positive, got {}", self.learning_rate));
        }
        if !(self.grad_clip >= 0.0) {
            return bad(format!("grad_clip must be ≥ 0, got {}", self.grad_clip));
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return bad(format!("val_fraction must be in [0, 1), got {}", self.val_fraction));
        }
        Ok(())
    }

    /// Check that a dataset fits this config (image size, action dimension, length).
    pub fn check_data(&self, data: &Sequences) -> Result<()> {
        data.check()?;
        if data.size != self.model.image_size {
            return Err(Error::ShapeMismatch(format!(
                "the data have {0}×{0} images but the model is for {1}×{1}; collect with --size {1} or train with --image-size {0}",
                data.size, self.model.image_size
            )));
        }
        if data.action_dim != self.model.action_dim {
            return Err(Error::ShapeMismatch(format!(
                "the data have {}-dimensional actions but the model is for {}",
                data.action_dim, self.model.action_dim
            )));
        }
        if data.steps < self.seq_len {
            return Err(Error::ShapeMismatch(format!(
                "episodes have {} steps, fewer than seq_len = {}; lower --seq-len",
                data.steps, self.seq_len
            )));
        }
        if data.episodes < 2 && self.val_fraction > 0.0 {
            return Err(Error::ShapeMismatch(
                "need at least 2 episodes for a validation split".into(),
            ));
        }
        Ok(())
    }

    /// Parse a TOML config; fields it does not set (also inside `[model]` and `[lambda]`)
    /// keep their defaults.
    pub fn from_toml(text: &str) -> std::result::Result<Self, toml::de::Error> {
        fn merge(base: &mut toml::Value, over: toml::Value) {
            match (base, over) {
                (toml::Value::Table(b), toml::Value::Table(o)) => {
                    for (k, v) in o {
                        match b.get_mut(&k) {
                            Some(slot) => merge(slot, v),
                            None => {
                                b.insert(k, v);
                            }
                        }
                    }
                }
                (slot, v) => *slot = v,
            }
        }
        let over: toml::Value = toml::from_str(text)?;
        let mut base =
            toml::Value::try_from(Self::default()).expect("the default config serialises");
        merge(&mut base, over);
        base.try_into()
    }

    /// Serialise as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a TrainConfig always serialises")
    }
}

/// Statistics of one optimisation step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// The minimised loss (per frame).
    pub loss: f64,
    /// Distortion per frame, batch mean.
    pub distortion: f64,
    /// Rate per frame, batch mean.
    pub rate: f64,
    /// λ used for this step.
    pub lambda: f64,
    /// Phase of the λ schedule for this step.
    pub phase: Phase,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

/// One row of `metrics.csv`. D, R and −ELBO are in nats per frame, averaged over the epoch's
/// minibatches; the validation −ELBO is per frame over whole validation episodes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    /// Epoch (1-based).
    pub epoch: usize,
    /// λ at the end of the epoch.
    pub lambda: f64,
    /// Distortion D per frame.
    pub distortion: f64,
    /// Rate R per frame.
    pub rate: f64,
    /// −ELBO = R + D per frame.
    pub neg_elbo: f64,
    /// Validation −ELBO per frame (NaN without a validation split).
    pub val_neg_elbo: f64,
    /// Wall-clock seconds of the epoch (training and validation).
    pub seconds: f64,
    /// Phase of the λ schedule at the end of the epoch.
    pub phase: Phase,
    /// Fold diagnostic at the end of the epoch: winding number of the encoded ring of angles
    /// (|winding| = 1: the latent holds the angle; see [`crate::fold`]).
    pub winding: i32,
    /// Its clearance (distance of the curve to its centre over its RMS radius).
    pub clearance: f64,
}

/// The header of `metrics.csv`.
pub const METRICS_HEADER: &str =
    "epoch,lambda,D,R,neg_elbo,val_neg_elbo,seconds,phase,winding,clearance";

impl EpochRow {
    fn csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{:.3},{},{},{}",
            self.epoch,
            self.lambda,
            self.distortion,
            self.rate,
            self.neg_elbo,
            self.val_neg_elbo,
            self.seconds,
            self.phase,
            self.winding,
            self.clearance
        )
    }
}

/// Hooks for progress display; all methods do nothing by default.
pub trait Progress {
    /// An epoch with `steps` minibatches begins.
    fn start_epoch(&mut self, _epoch: usize, _epochs: usize, _steps: usize) {}
    /// A minibatch step finished.
    fn step(&mut self, _stats: &StepStats) {}
    /// An epoch finished and was checkpointed.
    fn end_epoch(&mut self, _row: &EpochRow) {}
}

/// A [`Progress`] that shows nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Gives every parameter the id of its position in the module, so that the optimizer state
/// (keyed by parameter id) can be matched to a model rebuilt from its config.
struct PositionalIds(u64);
impl ModuleMapper for PositionalIds {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (_, value, mapper) = param.consume();
        self.0 += 1;
        Param::from_mapped_value(ParamId::from(self.0), value, mapper)
    }
}

/// Give the parameters of `model` positional ids (see the module docs).
pub fn with_positional_ids(model: Ekvae) -> Ekvae {
    model.map(&mut PositionalIds(0))
}

struct GradNorm<'a> {
    grads: &'a GradientsParams,
    sum_sq: f64,
}
impl ModuleVisitor for GradNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.sum_sq += g.square().sum().into_scalar::<f64>();
        }
    }
}

struct GradScale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}
impl ModuleVisitor for GradScale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// Global L2 norm of the gradients of `model`'s parameters.
pub fn grad_norm(model: &Ekvae, grads: &GradientsParams) -> f64 {
    let mut v = GradNorm { grads, sum_sq: 0.0 };
    model.visit(&mut v);
    v.sum_sq.sqrt()
}

/// Standard-normal noise drawn from `rng` (Box–Muller), as a `[b, t, d]` tensor.
pub fn normal_tensor(rng: &mut ChaCha8Rng, shape: [usize; 3], device: &Device) -> Tensor<3> {
    let len = shape.iter().product::<usize>();
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        let u1: f64 = rng.random::<f64>().max(1e-300);
        let u2: f64 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt();
        let th = std::f64::consts::TAU * u2;
        v.push((r * th.cos()) as f32);
        if v.len() < len {
            v.push((r * th.sin()) as f32);
        }
    }
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// Noise for a batch of `b` sequences of length `t`.
pub fn draw_noise(
    model: &Ekvae,
    rng: &mut ChaCha8Rng,
    b: usize,
    t: usize,
    device: &Device,
) -> ObjectiveNoise {
    ObjectiveNoise {
        eps_a: normal_tensor(rng, [b, t, model.aux_dim()], device),
        eps_z: normal_tensor(rng, [b, t, model.state_dim()], device),
    }
}

fn epoch_rng(seed: u64, epoch: usize, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_0000_0000_0000);
    rng.set_stream(((epoch as u64) << 8) | stream);
    rng
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f64>()
}

/// The model, its optimizer and the λ schedule, advanced one minibatch at a time.
pub struct Trainer {
    /// The resolved config.
    pub config: TrainConfig,
    /// The model, on the autodiff device (`None` only inside [`Trainer::step`]).
    model: Option<Ekvae>,
    optim: ModuleOptimizer,
    /// The λ schedule (constant 1 for the ELBO objective).
    pub schedule: LambdaSchedule,
    /// Completed epochs.
    pub epoch: usize,
    device: Device,
}

impl Trainer {
    /// A fresh model on `device` (autodiff is enabled on it here), seeded by `config.seed`.
    pub fn new(config: TrainConfig, device: &Device) -> Result<Self> {
        config.check()?;
        let device = device.clone().autodiff();
        let model = with_positional_ids(config.model.init_seeded(&device, config.seed)?);
        let schedule = LambdaSchedule::new(match config.objective {
            Objective::Constrained => config.lambda,
            Objective::Elbo => config.lambda.elbo(),
        });
        Ok(Self {
            optim: AdamConfig::new().init(),
            model: Some(model),
            schedule,
            epoch: 0,
            config,
            device,
        })
    }

    /// The model being trained (on the autodiff device).
    pub fn model(&self) -> &Ekvae {
        self.model.as_ref().expect("the model is only taken during a step")
    }

    /// Replace the model (e.g. by loaded weights); its parameters get positional ids.
    pub fn set_model(&mut self, model: Ekvae) {
        self.model = Some(with_positional_ids(model));
    }

    /// The (autodiff) device the model lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The rate and distortion of a batch under the current model (with gradients).
    pub fn rate_distortion(
        &self,
        frames: Tensor<4>,
        actions: Tensor<3>,
        noise: &ObjectiveNoise,
    ) -> Result<RateDistortion> {
        self.model().rate_distortion(frames, actions, noise)
    }

    /// One Adam step on a batch: loss, backward, global-norm clipping, update, λ update.
    /// Returns [`Error::NonFinite`] (without changing the model) if the loss or the gradient
    /// is NaN or infinite.
    pub fn step(
        &mut self,
        frames: Tensor<4>,
        actions: Tensor<3>,
        noise: &ObjectiveNoise,
    ) -> Result<StepStats> {
        let [_, t, s, _] = frames.dims();
        let sch = &self.schedule;
        let detach = self.config.objective == Objective::Constrained
            && sch.config.warm_dynamics
            && sch.phase == Phase::Reconstruction;
        let terms = self.model().rate_distortion_with(frames, actions, noise, detach)?;
        let (lambda, phase) = (self.schedule.lambda, self.schedule.phase);
        let loss = match self.config.objective {
            Objective::Constrained => constrained_loss(&terms, &self.schedule, t, s * s),
            Objective::Elbo => neg_elbo(&terms, t),
        };
        let distortion = scalar(terms.distortion.clone().mean()) / t as f64;
        let rate = scalar(terms.rate.clone().mean()) / t as f64;
        let loss_value = scalar(loss.clone());
        let non_finite =
            |what: &str| Error::NonFinite { what: what.into(), epoch: self.epoch + 1, step: 0 };
        if !loss_value.is_finite() || !distortion.is_finite() || !rate.is_finite() {
            return Err(non_finite("loss"));
        }
        let mut grads = GradientsParams::from_grads(loss.backward(), self.model());
        let norm = grad_norm(self.model(), &grads);
        if !norm.is_finite() {
            return Err(non_finite("gradient"));
        }
        if self.config.grad_clip > 0.0 && norm > self.config.grad_clip {
            let mut scale = GradScale { grads: &mut grads, factor: self.config.grad_clip / norm };
            self.model().visit(&mut scale);
        }
        let model = self.model.take().expect("model present");
        self.model = Some(self.optim.step(self.config.learning_rate, model, grads));
        if self.config.objective == Objective::Constrained {
            self.schedule.update(distortion / (s * s) as f64);
        }
        Ok(StepStats { loss: loss_value, distortion, rate, lambda, phase, grad_norm: norm })
    }

    /// −ELBO per frame of whole episodes `episodes` (no gradients; fixed noise), or NaN if
    /// there are none.
    pub fn validate(&self, data: &Sequences, episodes: &[usize]) -> Result<f64> {
        validate(&self.model().valid(), data, episodes, self.config.seed)
    }

    /// Run one epoch of `steps` minibatches drawn from `train_eps`, then validate on `val_eps`.
    pub fn run_epoch(
        &mut self,
        data: &Sequences,
        train_eps: &[usize],
        val_eps: &[usize],
        progress: &mut dyn Progress,
    ) -> Result<EpochRow> {
        let started = Instant::now();
        let epoch = self.epoch + 1;
        let frozen = epoch <= self.config.freeze_mixing_epochs;
        if let Some(model) = self.model.as_mut() {
            model.transition.frozen_mixing = frozen;
        }
        let cfg = &self.config;
        let steps = steps_per_epoch(cfg, data, train_eps.len());
        progress.start_epoch(epoch, cfg.epochs, steps);
        let mut rng = epoch_rng(cfg.seed, epoch, 0);
        let (mut sum_d, mut sum_r) = (0.0, 0.0);
        let (b, len) = (cfg.batch_size, cfg.seq_len);
        for step in 0..steps {
            let windows: Vec<(usize, usize)> = (0..b)
                .map(|_| {
                    let ep = train_eps[rng.random_range(0..train_eps.len())];
                    (ep, rng.random_range(0..=data.steps - len))
                })
                .collect();
            let (frames, actions) = data.batch(&windows, len, &self.device);
            let noise = draw_noise(self.model(), &mut rng, b, len, &self.device);
            let stats = self.step(frames, actions, &noise).map_err(|e| match e {
                Error::NonFinite { what, epoch, .. } => {
                    Error::NonFinite { what, epoch, step: step + 1 }
                }
                // The filter found NaN/inf or a lost positive definiteness: the same guard.
                Error::NotPositiveDefinite { what } => Error::NonFinite {
                    what: format!("Kalman filter ({what})"),
                    epoch,
                    step: step + 1,
                },
                other => other,
            })?;
            sum_d += stats.distortion;
            sum_r += stats.rate;
            progress.step(&stats);
        }
        let val = self.validate(data, val_eps)?;
        let fold = crate::fold::fold_diagnostic(&self.model().valid())?;
        self.epoch = epoch;
        let (d, r) = (sum_d / steps as f64, sum_r / steps as f64);
        Ok(EpochRow {
            epoch,
            lambda: self.schedule.lambda,
            distortion: d,
            rate: r,
            neg_elbo: d + r,
            val_neg_elbo: val,
            seconds: started.elapsed().as_secs_f64(),
            phase: self.schedule.phase,
            winding: fold.winding,
            clearance: fold.clearance,
        })
    }
}

/// Minibatches per epoch for `cfg` on `train_episodes` episodes of `data`.
pub fn steps_per_epoch(cfg: &TrainConfig, data: &Sequences, train_episodes: usize) -> usize {
    if cfg.steps_per_epoch > 0 {
        cfg.steps_per_epoch
    } else {
        (train_episodes * (data.steps / cfg.seq_len)).div_ceil(cfg.batch_size).max(1)
    }
}

/// −ELBO per frame of whole episodes under `model` (any device), with noise from `seed`.
pub fn validate(model: &Ekvae, data: &Sequences, episodes: &[usize], seed: u64) -> Result<f64> {
    if episodes.is_empty() {
        return Ok(f64::NAN);
    }
    let device = model.device();
    let mut rng = epoch_rng(seed, 0, 1);
    let mut total = 0.0;
    for chunk in episodes.chunks(64) {
        let windows: Vec<(usize, usize)> = chunk.iter().map(|&e| (e, 0)).collect();
        let (frames, actions) = data.batch(&windows, data.steps, &device);
        let noise = draw_noise(model, &mut rng, chunk.len(), data.steps, &device);
        let terms = model.rate_distortion(frames, actions, &noise)?;
        total += scalar((terms.rate + terms.distortion).sum());
    }
    Ok(total / (episodes.len() * data.steps) as f64)
}

/// What a run directory's `state.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Completed epochs.
    pub epoch: usize,
    /// The checkpoint folder of that epoch, relative to the run directory.
    pub checkpoint: String,
    /// The λ schedule after that epoch.
    pub schedule: LambdaSchedule,
}

/// Files of a run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The run directory.
    pub root: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// Write `bytes` to `path` atomically: [`ekvae_envs::dataset::write_atomic`] (temporary file in
/// the same folder, fsync, rename; an existing file survives a failure), with its error mapped.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    ekvae_envs::dataset::write_atomic(path, |w| w.write_all(bytes)).map_err(|e| match e {
        ekvae_envs::Error::Io { path, source, .. } => Error::Io { path, source },
        other => {
            Error::Io { path: path.to_path_buf(), source: std::io::Error::other(other.to_string()) }
        }
    })
}

impl RunDir {
    /// The run directory at `root` (not created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// `config.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    /// `metrics.csv`.
    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.csv")
    }
    /// `state.json`.
    pub fn state_path(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// Whether a run (config or state) already lives here.
    pub fn holds_run(&self) -> bool {
        self.config_path().exists() || self.state_path().exists()
    }

    /// Read `config.toml`.
    pub fn read_config(&self) -> Result<TrainConfig> {
        let path = self.config_path();
        if !self.root.is_dir() {
            return Err(Error::Checkpoint {
                path: self.root.clone(),
                message: "run directory does not exist; train one with `ekvae train --out DIR`"
                    .into(),
            });
        }
        let text = fs::read_to_string(&path).map_err(|e| Error::Checkpoint {
            path: path.clone(),
            message: format!(
                "cannot read the run config ({e}); is this a run directory made by `ekvae train`?"
            ),
        })?;
        let cfg = TrainConfig::from_toml(&text).map_err(|e| Error::Checkpoint {
            path: path.clone(),
            message: format!("not a valid run config: {}", e.message()),
        })?;
        cfg.check().map_err(|e| Error::Checkpoint { path, message: e.to_string() })?;
        Ok(cfg)
    }

    /// Read `state.json`.
    pub fn read_state(&self) -> Result<RunState> {
        let path = self.state_path();
        let text = fs::read_to_string(&path).map_err(|e| Error::Checkpoint {
            path: path.clone(),
            message: format!("no checkpoint state ({e}); the run has not finished an epoch"),
        })?;
        serde_json::from_str(&text)
            .map_err(|e| Error::Checkpoint { path, message: format!("corrupt run state: {e}") })
    }

    /// Save model and optimizer of `trainer` as the checkpoint of its current epoch, then
    /// point `state.json` at it and remove older checkpoints.
    pub fn save_checkpoint(&self, trainer: &Trainer) -> Result<()> {
        let rel = format!("checkpoints/epoch-{:04}", trainer.epoch);
        let dir = self.root.join(&rel);
        let tmp = self.root.join(format!(
            "checkpoints/.epoch-{:04}.tmp-{}",
            trainer.epoch,
            std::process::id()
        ));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let model_path = tmp.join("model.safetensors");
        let mut store = SafetensorsStore::from_file(&model_path);
        trainer.model().save_into(&mut store).map_err(|e| Error::Checkpoint {
            path: model_path.clone(),
            message: format!("cannot write model weights: {e}"),
        })?;
        let optim_path = tmp.join("optimizer.bpk");
        trainer.optim.save(&optim_path).map_err(|e| Error::Checkpoint {
            path: optim_path.clone(),
            message: format!("cannot write optimizer state: {e:?}"),
        })?;
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        }
        fs::rename(&tmp, &dir).map_err(io_err(&dir))?;
        let state =
            RunState { epoch: trainer.epoch, checkpoint: rel.clone(), schedule: trainer.schedule };
        write_atomic(
            &self.state_path(),
            serde_json::to_string_pretty(&state).expect("serialisable").as_bytes(),
        )?;
        // Remove older checkpoints (best effort: they are no longer referenced).
        if let Ok(entries) = fs::read_dir(self.root.join("checkpoints")) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("epoch-") && format!("checkpoints/{name}") != rel {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(())
    }

    /// Load the model of the last checkpoint onto `device` (which decides autodiff).
    pub fn load_model(
        &self,
        config: &TrainConfig,
        state: &RunState,
        device: &Device,
    ) -> Result<Ekvae> {
        let path = self.root.join(&state.checkpoint).join("model.safetensors");
        load_model_file(&config.model, &path, device)
    }

    /// Rebuild a [`Trainer`] from the last checkpoint (model, optimizer state, λ, epoch).
    pub fn resume(&self, device: &Device) -> Result<Trainer> {
        let config = self.read_config()?;
        let state = self.read_state()?;
        let mut trainer = Trainer::new(config.clone(), device)?;
        let model = self.load_model(&config, &state, trainer.device())?;
        trainer.set_model(model);
        let optim_path = self.root.join(&state.checkpoint).join("optimizer.bpk");
        if !optim_path.is_file() {
            return Err(Error::Checkpoint {
                path: optim_path,
                message: "optimizer state missing".into(),
            });
        }
        let optim = std::mem::replace(&mut trainer.optim, AdamConfig::new().init());
        trainer.optim = optim.load(&optim_path).map_err(|e| Error::Checkpoint {
            path: optim_path.clone(),
            message: format!("corrupt optimizer state: {e:?}"),
        })?;
        trainer.schedule = state.schedule;
        trainer.epoch = state.epoch;
        Ok(trainer)
    }

    /// Rewrite `metrics.csv` keeping the header and the rows of epochs ≤ `epoch` (after a
    /// crash between checkpoint and log, or before resuming).
    pub fn truncate_metrics(&self, epoch: usize) -> Result<()> {
        let path = self.metrics_path();
        let text = fs::read_to_string(&path).unwrap_or_default();
        let mut out = String::from(METRICS_HEADER);
        out.push('\n');
        for line in text.lines().skip(1) {
            if let Some(e) = line.split(',').next().and_then(|e| e.parse::<usize>().ok())
                && e <= epoch
            {
                out.push_str(line);
                out.push('\n');
            }
        }
        write_atomic(&path, out.as_bytes())
    }

    /// Append one row to `metrics.csv` (creating it with its header) and flush.
    pub fn append_metrics(&self, row: &EpochRow) -> Result<()> {
        let path = self.metrics_path();
        let new = !path.exists();
        let mut f =
            fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io_err(&path))?;
        let mut line = String::new();
        if new {
            line.push_str(METRICS_HEADER);
            line.push('\n');
        }
        line.push_str(&row.csv());
        line.push('\n');
        f.write_all(line.as_bytes()).and_then(|_| f.flush()).map_err(io_err(&path))
    }
}

/// Load model weights saved by [`RunDir::save_checkpoint`] into a model built from `config`,
/// checking that every tensor is present with the right shape.
pub fn load_model_file(config: &EkvaeConfig, path: &Path, device: &Device) -> Result<Ekvae> {
    if !path.is_file() {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            message: "checkpoint file missing".into(),
        });
    }
    let mut model = config.init(device)?;
    let mut store = SafetensorsStore::from_file(path).allow_partial(false).validate(true);
    let result = model.load_from(&mut store).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        message: match e {
            // Tensors with other shapes: a checkpoint of another configuration.
            burn::store::SafetensorsStoreError::ValidationFailed(detail) => {
                let detail: String = detail.chars().take(300).collect();
                format!("checkpoint does not match the run's model config ({detail}…)")
            }
            other => format!("corrupt or unreadable checkpoint: {other}"),
        },
    })?;
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        let detail = result
            .errors
            .iter()
            .map(|e| format!("{e:?}"))
            .chain(result.missing.iter().map(|(p, _)| format!("missing {p}")))
            .chain(result.unused.iter().map(|p| format!("unexpected {p}")))
            .take(3)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!("checkpoint does not match the run's model config ({detail})"),
        });
    }
    Ok(model)
}

/// Train from scratch into the empty (or new) directory `out`, or continue the run there
/// when `resume` is set (then `config` only supplies a new epoch count). Returns the rows
/// written by this call.
pub fn train(
    config: TrainConfig,
    data: &Sequences,
    out: &Path,
    resume: bool,
    device: &Device,
    progress: &mut dyn Progress,
) -> Result<Vec<EpochRow>> {
    let run = RunDir::new(out);
    let mut trainer = if resume {
        let mut t = run.resume(device)?;
        t.config.epochs = config.epochs;
        t.config.check_data(data)?;
        write_atomic(&run.config_path(), t.config.to_toml().as_bytes())?;
        run.truncate_metrics(t.epoch)?;
        t
    } else {
        config.check()?;
        config.check_data(data)?;
        if run.holds_run() {
            return Err(Error::Checkpoint {
                path: out.to_path_buf(),
                message: "already holds a run; use --resume to continue it or choose another --out"
                    .into(),
            });
        }
        fs::create_dir_all(out).map_err(io_err(out))?;
        write_atomic(&run.config_path(), config.to_toml().as_bytes())?;
        let t = Trainer::new(config, device)?;
        run.truncate_metrics(0)?;
        t
    };
    let (train_eps, val_eps) = split_episodes(data.episodes, trainer.config.val_fraction);
    let mut rows = Vec::new();
    while trainer.epoch < trainer.config.epochs {
        let row = trainer.run_epoch(data, &train_eps, &val_eps, progress)?;
        // Metrics first: a crash between the two leaves a row that the resume truncates
        // (state.json still names the previous epoch), never a checkpoint without its row.
        run.append_metrics(&row)?;
        run.save_checkpoint(&trainer)?;
        progress.end_epoch(&row);
        rows.push(row);
    }
    Ok(rows)
}
