//! The explicit training loop: Adam on the constrained Lagrangian or the plain −ELBO,
//! global gradient-norm clipping, random subsequence minibatches, a validation split, the λ
//! update, a NaN/inf guard, per-epoch metrics and atomic checkpoints.
//!
//! # Run directory
//! Written and read only through [`crate::rundir::RunDir`] (layout and invariants there).
//!
//! # Reproducibility
//! Parameters are initialised after `device.seed(seed)` and get deterministic ids (their order
//! in the module), minibatch windows and all noise come from a ChaCha stream seeded by
//! (seed, epoch), so a run is reproducible and `--resume` continues exactly where a run
//! stopped (optimizer state included).

use std::path::Path;
use std::time::Instant;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::data::{Sequences, split_episodes};
use crate::ekvae::{Ekvae, EkvaeConfig, ObjectiveNoise, RateDistortion};
use crate::objective::{LambdaConfig, LambdaSchedule, Objective, Phase};
use crate::rundir::Plan;
pub use crate::rundir::{RunDir, RunState, load_model_file, write_atomic};
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
    /// Adam learning rate (of the first epoch).
    pub learning_rate: f64,
    /// Cosine decay: the learning rate falls from `learning_rate` in the first epoch to
    /// `learning_rate · lr_final_fraction` in the last (1 = constant).
    pub lr_final_fraction: f64,
    /// Maximal global L2 norm of the gradient (rescaled above it); 0 disables clipping.
    pub grad_clip: f64,
    /// Fraction of the episodes held out for validation (the last ones).
    pub val_fraction: f64,
    /// Seed of initialisation, minibatches and noise.
    pub seed: u64,
    /// λ schedule (used by the constrained objective).
    pub lambda: LambdaConfig,
    /// Authors' schedule: once the distortion constraint has first held (the end of the
    /// reconstruction phase), the encoder and decoder step with `learning_rate · ae_lr_factor`
    /// while the transition, prior and auxiliary observation keep the full rate (1 = one
    /// learning rate for all).
    pub ae_lr_factor: f64,
    /// Epochs at the start during which the transition's mixing weights α are frozen uniform
    /// (one global linear model, KVAE's staged training); 0 = never.
    pub freeze_mixing_epochs: usize,
    /// The training data file, recorded for `ekvae eval` (informational for the library):
    /// an absolute path since the runs that also record `data_sha256`, the path as given
    /// (relative to the folder `train` ran in) before.
    pub data: String,
    /// SHA-256 of the training data file when the run started (lowercase hex; empty, and not
    /// written, when unknown). Whoever reads the training data back through `data` refuses a
    /// file whose digest differs: another file at that path is not the run's data.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub data_sha256: String,
    /// The environment the training data come from (its registry id; empty for recorded data).
    /// The fold diagnostic, which renders the pendulum, runs for `Pendulum-v1` only. Not written
    /// for the pendulum, so that the runs made before environments were named read the same.
    #[serde(skip_serializing_if = "is_pendulum")]
    pub env: String,
    /// The git commit of the code that started the run (set by the command line; empty, and
    /// not written, when unknown). Informational: it never changes a result.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub commit: String,
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
            lr_final_fraction: 1.0,
            ae_lr_factor: 1.0,
            grad_clip: 100.0,
            val_fraction: 0.1,
            seed: 0,
            lambda: LambdaConfig::default(),
            freeze_mixing_epochs: 0,
            data: String::new(),
            data_sha256: String::new(),
            env: PENDULUM.into(),
            commit: String::new(),
        }
    }
}

/// Run-config fields added after runs had been made: a run's `config.toml` without them is
/// complete, and they take their defaults (what those runs used): `model.image_channels` = 1.
pub const ADDED_LATER: [&str; 1] = ["model.image_channels"];

/// The id of the environment whose fold diagnostic exists, and the default of
/// [`TrainConfig::env`].
pub const PENDULUM: &str = "Pendulum-v1";

fn is_pendulum(env: &String) -> bool {
    env == PENDULUM
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
        if !(self.ae_lr_factor > 0.0 && self.ae_lr_factor <= 1.0) {
            return bad(format!("ae_lr_factor must be in (0, 1], got {}", self.ae_lr_factor));
        }
        if !(self.lr_final_fraction > 0.0 && self.lr_final_fraction <= 1.0) {
            return bad(format!(
                "lr_final_fraction must be in (0, 1], got {}",
                self.lr_final_fraction
            ));
        }
        if !(self.grad_clip >= 0.0) {
            return bad(format!("grad_clip must be ≥ 0, got {}", self.grad_clip));
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return bad(format!("val_fraction must be in [0, 1), got {}", self.val_fraction));
        }
        Ok(())
    }

    /// The learning rate of epoch `epoch` (1-based): cosine from `learning_rate` at epoch 1 to
    /// `learning_rate · lr_final_fraction` at the last epoch.
    pub fn learning_rate_at(&self, epoch: usize) -> f64 {
        let f = self.lr_final_fraction;
        if f >= 1.0 || self.epochs <= 1 {
            return self.learning_rate;
        }
        let progress = (epoch.saturating_sub(1) as f64 / (self.epochs - 1) as f64).min(1.0);
        self.learning_rate * (f + (1.0 - f) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
    }

    /// Check that a dataset fits this config (image size and channels, action dimension,
    /// length).
    pub fn check_data(&self, data: &Sequences) -> Result<()> {
        data.check()?;
        if data.size != self.model.image_size {
            return Err(Error::ShapeMismatch(format!(
                "the data have {0}×{0} images but the model is for {1}×{1}; collect with --size {1}, or set image_size = {0} under [model] in the --config file",
                data.size, self.model.image_size
            )));
        }
        if data.channels != self.model.image_channels {
            return Err(Error::ShapeMismatch(format!(
                "the data have {} channel(s) per pixel but the model is for {}; set image_channels = {} under [model] in the --config file",
                data.channels, self.model.image_channels, data.channels
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

    /// Parse a run directory's `config.toml` strictly: every field must be there (as
    /// [`TrainConfig::to_toml`] writes them; but those of [`ADDED_LATER`], which take their
    /// defaults) and no string but `data` may be empty. A user's partial
    /// `--config` file goes through [`TrainConfig::from_toml`] instead.
    pub fn from_run_toml(text: &str) -> std::result::Result<Self, String> {
        fn missing(template: &toml::Value, got: &toml::Value, prefix: &str, out: &mut Vec<String>) {
            if let (toml::Value::Table(t), toml::Value::Table(g)) = (template, got) {
                for (k, v) in t {
                    let name = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    match g.get(k) {
                        None => out.push(name),
                        Some(x) => missing(v, x, &name, out),
                    }
                }
            }
        }
        fn empty(v: &toml::Value, prefix: &str, out: &mut Vec<String>) {
            match v {
                toml::Value::String(s) if s.trim().is_empty() => out.push(prefix.to_string()),
                toml::Value::Table(t) => {
                    for (k, v) in t {
                        let name =
                            if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                        empty(v, &name, out);
                    }
                }
                _ => {}
            }
        }
        let mut got: toml::Value = toml::from_str(text)
            .map_err(|e| format!("not a valid run config: {}", e.message().trim()))?;
        let template =
            toml::Value::try_from(Self::default()).expect("the default config serialises");
        let mut absent = Vec::new();
        missing(&template, &got, "", &mut absent);
        // Fields added after runs were made with their defaults, which those runs used: they may
        // be absent (grayscale frames before `image_channels` existed).
        let (later, mut absent): (Vec<String>, Vec<String>) =
            absent.into_iter().partition(|f| ADDED_LATER.contains(&f.as_str()));
        for field in later {
            // Copy the default in, from the template (both are tables down to the field).
            let path: Vec<&str> = field.split('.').collect();
            let default = path.iter().try_fold(&template, |v, k| v.get(*k)).cloned();
            let mut slot = &mut got;
            for k in &path[..path.len() - 1] {
                slot = slot.get_mut(*k).expect("the parent table exists");
            }
            if let (Some(table), Some(v)) = (slot.as_table_mut(), default) {
                table.insert(path[path.len() - 1].to_string(), v);
            }
        }
        if !absent.is_empty() {
            let n = absent.len();
            absent.truncate(4);
            return Err(format!(
                "incomplete run config: {n} field(s) missing ({}{}); a run's config.toml lists every field: restore it from a backup or train a new run",
                absent.join(", "),
                if n > 4 { ", …" } else { "" }
            ));
        }
        let mut blank = Vec::new();
        empty(&got, "", &mut blank);
        // `data` is informational for the library (runs made through the API may leave it
        // empty); `ekvae eval` says so when it needs it. `env` is empty for recorded data.
        blank.retain(|f| f != "data" && f != "env");
        if !blank.is_empty() {
            return Err(format!(
                "empty field(s) in the run config: {}; restore the run's config.toml",
                blank.join(", ")
            ));
        }
        got.try_into()
            .map_err(|e: toml::de::Error| format!("not a valid run config: {}", e.message().trim()))
    }

    /// Parse a user's TOML config (`--config`); fields it does not set (also inside `[model]`
    /// and `[lambda]`) keep their defaults.
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
///
/// The CSV schema is this struct (serde, field order = column order, `D`/`R` renamed): a field
/// added here is a new column of the header, the writer and the reader (files of older runs
/// without it read it as its default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EpochRow {
    /// Epoch (1-based).
    pub epoch: usize,
    /// λ at the end of the epoch.
    pub lambda: f64,
    /// Distortion D per frame.
    #[serde(rename = "D")]
    pub distortion: f64,
    /// Rate R per frame.
    #[serde(rename = "R")]
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

/// The header of `metrics.csv` as of this build (derived from [`EpochRow`]; see
/// [`crate::rundir::metrics_header`]).
pub fn metrics_header() -> String {
    crate::rundir::metrics_header()
}

/// Hooks for progress display; all methods do nothing by default.
pub trait Progress {
    /// An epoch with `steps` minibatches begins.
    fn start_epoch(&mut self, _epoch: usize, _epochs: usize, _steps: usize) {}
    /// A minibatch step finished.
    fn step(&mut self, _stats: &StepStats) {}
    /// An epoch finished and was checkpointed.
    fn end_epoch(&mut self, _row: &EpochRow) {}
    /// Something the user should know about the run directory (e.g. a restart from scratch).
    fn notice(&mut self, _message: &str) {}
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

/// Moves the gradients of the visited parameters from one set to another.
struct TakeGrads<'a> {
    from: &'a mut GradientsParams,
    to: &'a mut GradientsParams,
}
impl ModuleVisitor for TakeGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.from.remove::<D>(param.id) {
            self.to.register(param.id, g);
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
    pub(crate) optim: ModuleOptimizer,
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
        let schedule = config.objective.lambda_schedule(config.lambda);
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
        let [_, t, cs, s] = frames.dims();
        let pixels = cs * s; // values per frame: pixels × channels
        // Only the authors' schedule has a reconstruction phase, and only it splits the learning
        // rate (the ELBO's schedule, `Objective::lambda_schedule`, is the fast one).
        let sch = &self.schedule;
        let detach = sch.config.warm_dynamics && sch.phase == Phase::Reconstruction;
        let (terms, deferred) =
            self.model().rate_distortion_deferred(frames, actions, noise, detach)?;
        let (lambda, phase) = (self.schedule.lambda, self.schedule.phase);
        let loss = self.config.objective.loss(&terms, &self.schedule, t, pixels);
        let distortion = scalar(terms.distortion.clone().mean()) / t as f64;
        let rate = scalar(terms.rate.clone().mean()) / t as f64;
        let loss_value = scalar(loss.clone());
        let non_finite =
            |what: &str| Error::NonFinite { what: what.into(), epoch: self.epoch + 1, step: 0 };
        if !loss_value.is_finite() || !distortion.is_finite() || !rate.is_finite() {
            return Err(non_finite("loss"));
        }
        let backward = loss.backward();
        // The decoder's last layer (fast_decoder) and the RNN baseline's inference network
        // (fast_rnn) run in plain Rust: their parameters' gradients (and for the baseline the
        // encoder's) come from a second backward pass, on parameters disjoint from the first's.
        let second = deferred.backward(&backward, self.model())?;
        let mut grads = GradientsParams::from_grads(backward, self.model());
        if let Some(second) = second {
            let mut rest = GradientsParams::from_grads(second, self.model());
            self.model().visit(&mut TakeGrads { from: &mut rest, to: &mut grads });
        }
        let norm = grad_norm(self.model(), &grads);
        if !norm.is_finite() {
            return Err(non_finite("gradient"));
        }
        if self.config.grad_clip > 0.0 && norm > self.config.grad_clip {
            let mut scale = GradScale { grads: &mut grads, factor: self.config.grad_clip / norm };
            self.model().visit(&mut scale);
        }
        let lr = self.config.learning_rate_at(self.epoch + 1);
        let split = self.config.ae_lr_factor < 1.0
            && self.schedule.config.schedule == crate::objective::ScheduleKind::Authors
            && self.schedule.constraint_met;
        if split {
            // Two Adam steps on disjoint parameter sets (Adam's state, its time step included,
            // is per parameter, so this is one step with two learning rates).
            let mut ae = GradientsParams::new();
            let mut take = TakeGrads { from: &mut grads, to: &mut ae };
            self.model().encoder.visit(&mut take);
            self.model().decoder.visit(&mut take);
            let model = self.model.take().expect("model present");
            let model = self.optim.step(lr * self.config.ae_lr_factor, model, ae);
            self.model = Some(self.optim.step(lr, model, grads));
        } else {
            let model = self.model.take().expect("model present");
            self.model = Some(self.optim.step(lr, model, grads));
        }
        if self.config.objective.adapts_lambda() {
            self.schedule.update(distortion / pixels as f64);
        }
        Ok(StepStats { loss: loss_value, distortion, rate, lambda, phase, grad_norm: norm })
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
        // One copy of the model without autodiff for both end-of-epoch evaluations.
        let inference_model = self.model().valid();
        let val = validate(&inference_model, data, val_eps, self.config.seed)?;
        // The fold diagnostic: the pendulum's, or that of a built-in system with an angle (the
        // cart-pole's pole) that draws the frames the model reads; others get winding 0,
        // clearance NaN.
        let fold = if self.config.env == PENDULUM && inference_model.image_channels() == 1 {
            crate::fold::fold_diagnostic(&inference_model)?
        } else {
            let system = ekvae_envs::Registry::builtin().get(&self.config.env).ok();
            system
                .map(|s| crate::fold::fold_diagnostic_of(&inference_model, s.as_ref()))
                .transpose()?
                .flatten()
                .unwrap_or(crate::fold::Winding { winding: 0, clearance: f64::NAN })
        };
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

/// The NaN guard on validation: an epoch whose validation −ELBO is not finite (when there is
/// a validation split) stops the run before it is logged or checkpointed; `kept` is the epoch
/// of the last good checkpoint, for the message.
pub fn check_validation(row: &EpochRow, has_validation: bool, kept: Option<usize>) -> Result<()> {
    if has_validation && !row.val_neg_elbo.is_finite() {
        return Err(Error::Stopped {
            cause: format!(
                "non-finite validation −ELBO ({}) at epoch {}",
                row.val_neg_elbo, row.epoch
            ),
            kept,
        });
    }
    Ok(())
}

/// Train into the run directory `out`; what happens there is decided by [`RunDir::plan`]:
/// - no run there: a fresh one with `config`;
/// - a run that never finished an epoch: started again from scratch (reported through
///   [`Progress::notice`]), with `config` for a plain `train`, with the recorded config for
///   `resume` (then `config` only supplies the epoch count);
/// - a run with a finished epoch: refused without `resume`; with it, continued from the last
///   checkpoint (`config` only supplies the new epoch count).
///
/// The directory is locked while training. An epoch whose loss, gradient or validation −ELBO
/// is not finite stops the run before it is logged or checkpointed. Returns the rows written by
/// this call.
pub fn train(
    config: TrainConfig,
    data: &Sequences,
    out: &Path,
    resume: bool,
    device: &Device,
    progress: &mut dyn Progress,
) -> Result<Vec<EpochRow>> {
    let run = RunDir::new(out);
    if !resume {
        config.check()?;
        config.check_data(data)?;
    }
    // Refused runs create nothing; the decision is taken again under the lock.
    run.plan(resume)?;
    let _lock = run.lock()?;
    let mut trainer = match run.plan(resume)? {
        Plan::Fresh => {
            run.write_config(&config)?;
            run.truncate_metrics(0)?;
            Trainer::new(config, device)?
        }
        Plan::Restart => {
            let cfg = if resume {
                let mut c = run.read_config()?;
                c.epochs = config.epochs;
                c
            } else {
                config
            };
            cfg.check()?;
            cfg.check_data(data)?;
            progress.notice(&format!(
                "{} holds a run that never finished an epoch; starting it again from scratch{}",
                out.display(),
                if resume { " with its recorded config" } else { " with the new config" }
            ));
            run.clear_unfinished()?;
            run.write_config(&cfg)?;
            Trainer::new(cfg, device)?
        }
        Plan::Continue(state) => {
            let mut cfg = run.read_config()?;
            cfg.epochs = config.epochs;
            cfg.check()?;
            cfg.check_data(data)?;
            let t = run.resume(cfg, &state, device)?;
            run.write_config(&t.config)?;
            run.truncate_metrics(t.epoch)?;
            t
        }
    };
    let (train_eps, val_eps) = split_episodes(data.episodes, trainer.config.val_fraction);
    let mut rows = Vec::new();
    while trainer.epoch < trainer.config.epochs {
        let kept = (trainer.epoch > 0).then_some(trainer.epoch);
        let row = trainer.run_epoch(data, &train_eps, &val_eps, progress).map_err(|e| match e {
            Error::NonFinite { .. } | Error::NotPositiveDefinite { .. } => {
                Error::Stopped { cause: e.to_string(), kept }
            }
            other => other,
        })?;
        check_validation(&row, !val_eps.is_empty(), kept)?;
        // Metrics first: a crash between the two leaves a row that the resume truncates
        // (state.json still names the previous epoch), never a checkpoint without its row.
        run.append_metrics(&row)?;
        run.save_checkpoint(&trainer)?;
        progress.end_epoch(&row);
        rows.push(row);
    }
    Ok(rows)
}
