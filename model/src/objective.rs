//! The training objectives: the negative ELBO R + D and the constrained optimisation
//! min R subject to D ≤ D0 (Klushyn et al. 2019, "Learning Hierarchical Priors in VAEs";
//! GECO, Rezende & Viola 2018), with its λ schedules.
//!
//! Units: [`RateDistortion`] holds sums over a whole sequence. The losses below divide by the
//! sequence length T so that the learning rate does not depend on the subsequence length;
//! the constraint is stated per pixel, D0 in nats per pixel.
//!
//! # The λ schedules (`[lambda] schedule`)
//! - [`ScheduleKind::Authors`] (default), the algorithm of Klushyn et al.:
//!   1. *Reconstruction phase*: the loss is D alone until the moving average D̂ of the batch
//!      distortion per pixel first falls below D0.
//!   2. *Lagrangian phase*: the loss is the normalised Lagrangian D + R/λ (the same stationary
//!      points as R + λ(D − D0), its gradient divided by λ, so the gradient scale stays
//!      bounded and Adam's moment estimates are not thrown off as λ moves). Every U optimiser
//!      steps λ ← λ · clamp(exp(ν · f · (D̂ − D0)), c_lo, c_hi) with f = 1 while D̂ > D0 and
//!      f = tanh(τ (1 − 1/λ)) once the constraint holds, so λ grows only while the
//!      reconstruction is worse than D0 and returns smoothly to 1 (the ELBO) when it is met;
//!      λ stays in [λ_min, λ_max].
//! - [`ScheduleKind::Fast`], the project's earlier schedule, kept for comparison: the loss is
//!   R + λ (D − D0) from the first step and λ ← clamp(λ · exp(ν (D̂ − D0)), λ_min, λ_max) after
//!   every step.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::ekvae::RateDistortion;
use crate::{Error, Result};

/// Which objective to minimise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// R + λ (D − D0) with λ adapted by [`LambdaSchedule`].
    Constrained,
    /// The plain negative ELBO R + D (λ ≡ 1, see [`Objective::lambda_schedule`]).
    Elbo,
}

impl Objective {
    /// Whether λ follows a schedule: true for the constrained objective; false for the ELBO,
    /// whose λ is held at 1 by [`LambdaConfig::elbo`] and whose schedule is never advanced.
    /// With [`Objective::lambda_schedule`], the one place that says "the ELBO means λ ≡ 1".
    pub fn adapts_lambda(self) -> bool {
        match self {
            Objective::Constrained => true,
            Objective::Elbo => false,
        }
    }

    /// The λ schedule a run with this objective starts from: `lambda` as configured when λ
    /// adapts, else [`LambdaConfig::elbo`]`(lambda)` (λ ≡ 1, the fast schedule's single phase, so
    /// neither the reconstruction phase nor anything keyed to it ever happens).
    pub fn lambda_schedule(self, lambda: LambdaConfig) -> LambdaSchedule {
        LambdaSchedule::new(if self.adapts_lambda() { lambda } else { lambda.elbo() })
    }

    /// The training loss of a batch, per time step and averaged over the batch (a scalar `[1]`):
    /// [`constrained_loss`] for the schedule's current phase, or [`neg_elbo`].
    pub fn loss(
        self,
        terms: &RateDistortion,
        schedule: &LambdaSchedule,
        steps: usize,
        pixels: usize,
    ) -> Tensor<1> {
        match self {
            Objective::Constrained => constrained_loss(terms, schedule, steps, pixels),
            Objective::Elbo => neg_elbo(terms, steps),
        }
    }
}

impl std::fmt::Display for Objective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Objective::Constrained => "constrained",
            Objective::Elbo => "elbo",
        })
    }
}

impl std::str::FromStr for Objective {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "constrained" => Ok(Self::Constrained),
            "elbo" => Ok(Self::Elbo),
            other => Err(Error::InvalidSetting(format!(
                "unknown objective {other:?}; use constrained or elbo"
            ))),
        }
    }
}

/// −ELBO per time step, averaged over the batch: mean_b (R_b + D_b) / T. A scalar `[1]`.
pub fn neg_elbo(terms: &RateDistortion, steps: usize) -> Tensor<1> {
    (terms.rate.clone() + terms.distortion.clone()).mean().div_scalar(steps as f64)
}

/// The constrained Lagrangian per time step, averaged over the batch:
/// mean_b [R_b + λ (D_b − D0·T·S²)] / T. A scalar `[1]`; λ is a constant (no gradient).
pub fn lagrangian(
    terms: &RateDistortion,
    lambda: f64,
    d0_per_pixel: f64,
    steps: usize,
    pixels: usize,
) -> Tensor<1> {
    let d0 = d0_per_pixel * (steps * pixels) as f64;
    (terms.rate.clone() + terms.distortion.clone().sub_scalar(d0).mul_scalar(lambda))
        .mean()
        .div_scalar(steps as f64)
}

/// The constrained loss for a phase of the schedule (see the module docs), per time step and
/// averaged over the batch. A scalar `[1]`; λ is a constant (no gradient).
pub fn constrained_loss(
    terms: &RateDistortion,
    schedule: &LambdaSchedule,
    steps: usize,
    pixels: usize,
) -> Tensor<1> {
    match (schedule.config.schedule, schedule.phase) {
        (ScheduleKind::Fast, _) => {
            lagrangian(terms, schedule.lambda, schedule.config.d0, steps, pixels)
        }
        (ScheduleKind::Authors, Phase::Reconstruction) if schedule.config.warm_dynamics => {
            // The rate's gradient reaches only the dynamics here (see `warm_dynamics`).
            neg_elbo(terms, steps)
        }
        (ScheduleKind::Authors, Phase::Reconstruction) => reconstruction(terms, steps),
        (ScheduleKind::Authors, Phase::Lagrangian) => {
            normalised_lagrangian(terms, schedule.lambda, steps)
        }
    }
}

/// The distortion alone per time step, averaged over the batch: mean_b D_b / T.
pub fn reconstruction(terms: &RateDistortion, steps: usize) -> Tensor<1> {
    terms.distortion.clone().mean().div_scalar(steps as f64)
}

/// The normalised Lagrangian per time step, averaged over the batch: mean_b (D_b + R_b/λ) / T.
/// Its gradient is that of [`lagrangian`] divided by λ.
pub fn normalised_lagrangian(terms: &RateDistortion, lambda: f64, steps: usize) -> Tensor<1> {
    (terms.distortion.clone() + terms.rate.clone().div_scalar(lambda))
        .mean()
        .div_scalar(steps as f64)
}

/// Which λ schedule the constrained objective follows (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Klushyn et al.: reconstruction phase, then D + R/λ with a slow, clamped λ update.
    Authors,
    /// R + λ (D − D0) with λ updated after every step (the project's earlier schedule).
    Fast,
}

impl std::fmt::Display for ScheduleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ScheduleKind::Authors => "authors",
            ScheduleKind::Fast => "fast",
        })
    }
}

impl std::str::FromStr for ScheduleKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "authors" => Ok(Self::Authors),
            "fast" => Ok(Self::Fast),
            other => Err(Error::InvalidSetting(format!(
                "unknown lambda schedule {other:?}; use authors or fast"
            ))),
        }
    }
}

/// Settings of the λ schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LambdaConfig {
    /// Which schedule.
    pub schedule: ScheduleKind,
    /// λ when the rate enters (authors) or at the first step (fast).
    pub init: f64,
    /// Target distortion D0 in nats per pixel.
    pub d0: f64,
    /// Step size ν of the multiplicative update (per nat per pixel).
    pub nu: f64,
    /// Weight of the newest batch in the moving average D̂ (1 − momentum).
    pub ema: f64,
    /// Lower clamp λ_min (1: once the constraint holds the objective is the ELBO).
    pub min: f64,
    /// Upper clamp λ_max.
    pub max: f64,
    /// Authors' schedule: λ is updated every `update_every` optimiser steps (U).
    pub update_every: usize,
    /// Authors' schedule: lower clamp c_lo of the update factor.
    pub factor_min: f64,
    /// Authors' schedule: upper clamp c_hi of the update factor.
    pub factor_max: f64,
    /// Authors' schedule: slope τ of the pull-back f = tanh(τ (1 − 1/λ)) once D̂ ≤ D0.
    pub tau: f64,
    /// Authors' schedule, EKVAE only: during the reconstruction phase, also fit the dynamics
    /// (transition, prior, auxiliary observation) to the current embedding by adding the rate
    /// with the encoder cut out of its gradient, so the encoder still learns from D alone
    /// and the rate is already small when it enters the encoder's objective.
    pub warm_dynamics: bool,
    /// Authors' schedule: start with the reconstruction phase (true) or directly in the
    /// Lagrangian phase at λ = `init` (false; with a large `init` the rate then enters with a
    /// small weight 1/λ from the first step and λ falls to 1 once D̂ ≤ D0).
    pub reconstruction: bool,
}

impl Default for LambdaConfig {
    fn default() -> Self {
        Self {
            schedule: ScheduleKind::Authors,
            init: 1.0,
            d0: 0.05,
            nu: 1.0,
            ema: 0.01,
            min: 1.0,
            max: 1e4,
            update_every: 10,
            factor_min: 0.9,
            factor_max: 1.05,
            tau: 1.0,
            warm_dynamics: false,
            reconstruction: true,
        }
    }
}

impl LambdaConfig {
    /// The earlier fast schedule with its settings (ν = 1, EMA weight 0.05, λ ∈ [1, 100]).
    pub fn fast() -> Self {
        Self { schedule: ScheduleKind::Fast, ema: 0.05, max: 100.0, ..Self::default() }
    }

    /// The settings that make the constrained objective the plain ELBO (λ ≡ 1, no phases):
    /// the one place that encodes "ELBO means λ ≡ 1" (applied by
    /// [`Objective::lambda_schedule`]).
    pub fn elbo(self) -> Self {
        Self { schedule: ScheduleKind::Fast, init: 1.0, min: 1.0, max: 1.0, nu: 0.0, ..self }
    }

    /// Check 0 < min ≤ init ≤ max, ν ≥ 0, D0 > 0, 0 < ema ≤ 1, U ≥ 1,
    /// 0 < c_lo ≤ 1 ≤ c_hi, τ > 0.
    pub fn check(&self) -> Result<()> {
        let ok = self.min > 0.0
            && self.min <= self.init
            && self.init <= self.max
            && self.nu >= 0.0
            && self.d0 > 0.0
            && self.ema > 0.0
            && self.ema <= 1.0
            && self.update_every >= 1
            && self.factor_min > 0.0
            && self.factor_min <= 1.0
            && self.factor_max >= 1.0
            && self.tau > 0.0
            && [
                self.init,
                self.d0,
                self.nu,
                self.ema,
                self.min,
                self.max,
                self.factor_min,
                self.factor_max,
                self.tau,
            ]
            .iter()
            .all(|v| v.is_finite());
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidSetting(format!(
                "lambda settings need 0 < min ≤ init ≤ max, nu ≥ 0, d0 > 0, 0 < ema ≤ 1, update_every ≥ 1, 0 < factor_min ≤ 1 ≤ factor_max, tau > 0, all finite; got {self:?}"
            )))
        }
    }
}

/// The phase of the authors' schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The loss is D alone (until D̂ first falls below D0).
    Reconstruction,
    /// The loss is D + R/λ (authors) or R + λ(D − D0) (fast); the ELBO's only phase.
    #[default]
    Lagrangian,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Reconstruction => "reconstruction",
            Phase::Lagrangian => "lagrangian",
        })
    }
}

/// The state of the λ schedule: phase, λ, the moving average D̂ of the batch distortion per
/// pixel and the optimiser steps since the last λ update.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LambdaSchedule {
    /// The settings.
    pub config: LambdaConfig,
    /// Current phase (the fast schedule starts in the Lagrangian phase).
    pub phase: Phase,
    /// Current λ.
    pub lambda: f64,
    /// Moving average D̂ (None before the first batch).
    pub d_hat: Option<f64>,
    /// Optimiser steps since λ was last updated (authors' schedule).
    pub since_update: usize,
    /// Whether D̂ has fallen below D0 at least once (the end of the reconstruction phase, or
    /// without one the first time the constraint held).
    #[serde(default)]
    pub constraint_met: bool,
}

impl LambdaSchedule {
    /// Start at λ = `config.init`, in the reconstruction phase for the authors' schedule.
    pub fn new(config: LambdaConfig) -> Self {
        let phase = match config.schedule {
            ScheduleKind::Authors if config.reconstruction => Phase::Reconstruction,
            _ => Phase::Lagrangian,
        };
        Self {
            config,
            phase,
            lambda: config.init,
            d_hat: None,
            since_update: 0,
            constraint_met: false,
        }
    }

    /// Fold in one batch distortion per pixel (after the optimiser step on that batch) and
    /// advance the schedule; returns the λ for the next step.
    pub fn update(&mut self, d_per_pixel: f64) -> f64 {
        let c = self.config;
        let d_hat = match self.d_hat {
            None => d_per_pixel,
            Some(prev) => (1.0 - c.ema) * prev + c.ema * d_per_pixel,
        };
        self.d_hat = Some(d_hat);
        let gap = d_hat - c.d0;
        self.constraint_met |= gap < 0.0;
        match (c.schedule, self.phase) {
            (ScheduleKind::Fast, _) => {
                self.lambda = (self.lambda * (c.nu * gap).exp()).clamp(c.min, c.max);
            }
            (ScheduleKind::Authors, Phase::Reconstruction) => {
                if gap < 0.0 {
                    self.phase = Phase::Lagrangian;
                    self.lambda = c.init;
                    self.since_update = 0;
                }
            }
            (ScheduleKind::Authors, Phase::Lagrangian) => {
                self.since_update += 1;
                if self.since_update >= c.update_every {
                    self.since_update = 0;
                    let f =
                        if gap > 0.0 { 1.0 } else { (c.tau * (1.0 - 1.0 / self.lambda)).tanh() };
                    let factor = (c.nu * f * gap).exp().clamp(c.factor_min, c.factor_max);
                    self.lambda = (self.lambda * factor).clamp(c.min, c.max);
                }
            }
        }
        self.lambda
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> LambdaConfig {
        LambdaConfig {
            init: 2.0,
            d0: 0.1,
            nu: 5.0,
            ema: 0.5,
            min: 1.0,
            max: 50.0,
            ..LambdaConfig::fast()
        }
    }

    #[test]
    fn fast_lambda_grows_while_the_constraint_is_violated_and_falls_back_to_min() {
        let mut s = LambdaSchedule::new(fast());
        assert_eq!(s.phase, Phase::Lagrangian);
        // First batch: D̂ = 0.3, λ = 2·exp(5·0.2) = 2e (hand computation).
        let l1 = s.update(0.3);
        assert!((l1 - 2.0 * 1f64.exp()).abs() < 1e-12);
        // Second batch 0.1: D̂ = 0.5·0.3 + 0.5·0.1 = 0.2, λ = 2e·exp(0.5) (hand computation).
        let l2 = s.update(0.1);
        assert!((s.d_hat.unwrap() - 0.2).abs() < 1e-12);
        assert!((l2 - 2.0 * 1.5f64.exp()).abs() < 1e-9);
        // Far above the target: λ saturates at λ_max.
        for _ in 0..100 {
            s.update(5.0);
        }
        assert_eq!(s.lambda, 50.0);
        // Below the target for long: λ decays to λ_min and stays there.
        for _ in 0..1000 {
            s.update(0.0);
        }
        assert_eq!(s.lambda, 1.0);
    }

    #[test]
    fn fast_lambda_is_constant_at_the_target() {
        let mut s = LambdaSchedule::new(fast());
        for _ in 0..10 {
            s.update(0.1);
        }
        assert!((s.lambda - 2.0).abs() < 1e-12);
    }

    fn authors() -> LambdaConfig {
        LambdaConfig {
            schedule: ScheduleKind::Authors,
            init: 1.0,
            d0: 0.1,
            nu: 2.0,
            ema: 0.5,
            min: 1.0,
            max: 1e4,
            update_every: 2,
            factor_min: 0.9,
            factor_max: 1.05,
            tau: 1.0,
            warm_dynamics: false,
            reconstruction: true,
        }
    }

    #[test]
    fn authors_schedule_without_reconstruction_starts_at_init() {
        let c = LambdaConfig {
            reconstruction: false,
            init: 100.0,
            update_every: 1,
            nu: 1.0,
            ..authors()
        };
        let mut s = LambdaSchedule::new(c);
        assert_eq!((s.phase, s.lambda), (Phase::Lagrangian, 100.0));
        // D̂ = 0.0 < D0 = 0.1: pull-back factor exp(1·tanh(1 − 1/100)·(−0.1)) = 0.927, inside
        // the band [0.9, 1.05].
        let l = s.update(0.0);
        assert!((l - 100.0 * ((0.99f64).tanh() * -0.1).exp()).abs() < 1e-9, "λ = {l}");
    }

    #[test]
    fn authors_schedule_phase_switch_clamped_factor_and_pull_back() {
        let mut s = LambdaSchedule::new(authors());
        assert_eq!(s.phase, Phase::Reconstruction);
        // Reconstruction phase: D̂ = 0.4, then 0.5·0.4 + 0.5·0.0 = 0.2 > 0.1: no switch, λ = 1.
        assert_eq!(s.update(0.4), 1.0);
        assert_eq!(s.update(0.0), 1.0);
        assert_eq!(s.phase, Phase::Reconstruction);
        // D̂ = 0.5·0.2 + 0.5·0.0 = 0.1, not below D0: still reconstruction.
        s.update(0.0);
        assert_eq!(s.phase, Phase::Reconstruction);
        // D̂ = 0.05 < 0.1: the rate enters with λ = init = 1, the step counter restarts.
        s.update(0.0);
        assert_eq!((s.phase, s.lambda, s.since_update), (Phase::Lagrangian, 1.0, 0));
        // Lagrangian phase, constraint violated: D̂ = 0.5·0.05 + 0.5·0.55 = 0.3, gap 0.2.
        // U = 2: no update after the first step.
        assert_eq!(s.update(0.55), 1.0);
        // D̂ = 0.5·0.3 + 0.5·0.3 = 0.3; update: exp(2·1·0.2) = 1.4918 clamped to c_hi = 1.05.
        assert!((s.update(0.3) - 1.05).abs() < 1e-15);
        // A small violation stays inside the band: bring D̂ to 0.5·0.3 + 0.5·(−0.08) = 0.11
        // (first step of the next pair, no update), then hold it (gap 0.01).
        s.update(-0.08);
        let l = s.update(0.11); // D̂ = 0.11, factor exp(2·0.01) = 1.0202 (inside the band)
        assert!((l - 1.05 * (0.02f64).exp()).abs() < 1e-12, "λ = {l}");
        // Constraint holds: D̂ = 0.5·0.11 + 0.5·(−0.19) = −0.04, then −0.04 again (gap −0.14).
        // f = tanh(1 − 1/λ), factor = exp(2·f·(−0.14)), not clamped (> 0.9).
        s.update(-0.19);
        let before = s.lambda;
        let after = s.update(-0.04);
        let f = (1.0 - 1.0 / before).tanh();
        assert!((after - before * (2.0 * f * -0.14f64).exp()).abs() < 1e-12);
        assert!(after < before && after > 1.0);
        // Held below the target for long, λ returns to 1 (never below) and stays there.
        for _ in 0..10_000 {
            s.update(-0.04);
        }
        assert!((s.lambda - 1.0).abs() < 1e-3 && s.lambda >= 1.0, "λ = {}", s.lambda);
        assert_eq!(s.phase, Phase::Lagrangian);
    }

    #[test]
    fn authors_factor_is_clamped_below_too() {
        // A large λ and a deep constraint margin: exp(ν f gap) < c_lo, clamped to 0.9.
        let mut s = LambdaSchedule::new(LambdaConfig { nu: 100.0, update_every: 1, ..authors() });
        s.phase = Phase::Lagrangian;
        s.lambda = 50.0;
        s.d_hat = Some(-1.0);
        let l = s.update(-1.0);
        assert!((l - 45.0).abs() < 1e-12, "λ = {l}");
    }

    #[test]
    fn normalised_and_unnormalised_lagrangians_give_parallel_gradients() {
        use burn::tensor::{Device, TensorData};
        let device = Device::flex().autodiff();
        let w0 = [0.3f32, -1.2, 0.7, 2.0];
        let grad = |which: u8| -> Vec<f32> {
            let w =
                Tensor::<1>::from_data(TensorData::new(w0.to_vec(), [4]), &device).require_grad();
            // A batch of two "sequences" with rate and distortion that depend on w differently.
            let rate = (w.clone() * w.clone()).reshape([2, 2]).sum_dim(1).reshape([2]);
            let distortion =
                w.clone().sin().add_scalar(3.0).reshape([2, 2]).sum_dim(1).reshape([2]);
            let terms = RateDistortion { rate, distortion };
            let loss = match which {
                0 => lagrangian(&terms, 7.5, 0.05, 3, 4),
                _ => normalised_lagrangian(&terms, 7.5, 3),
            };
            let g = loss.backward();
            w.grad(&g).unwrap().into_data().try_to_vec::<f32>().unwrap()
        };
        let (gu, gn) = (grad(0), grad(1));
        for (u, n) in gu.iter().zip(&gn) {
            // ∇(D + R/λ) = ∇(R + λ(D − D0)) / λ.
            assert!((u / 7.5 - n).abs() < 1e-6, "{u} / 7.5 vs {n}");
        }
        assert!(gn.iter().any(|g| g.abs() > 1e-3));
    }

    #[test]
    fn elbo_settings_keep_lambda_at_one() {
        let mut s = LambdaSchedule::new(LambdaConfig::default().elbo());
        assert_eq!(s.phase, Phase::Lagrangian);
        for d in [5.0, 0.0, 1.0] {
            assert_eq!(s.update(d), 1.0);
        }
    }

    /// The objective picks the schedule: the ELBO's is λ ≡ 1 in the single Lagrangian phase
    /// whatever the configured λ settings (here the authors' schedule starting at λ = 5 with a
    /// reconstruction phase and warm dynamics); the constrained objective's is the configured one.
    #[test]
    fn the_elbo_objective_holds_lambda_at_one() {
        let cfg = LambdaConfig { init: 5.0, warm_dynamics: true, ..authors() };
        let elbo = Objective::Elbo.lambda_schedule(cfg);
        assert!(!Objective::Elbo.adapts_lambda());
        assert_eq!((elbo.lambda, elbo.phase), (1.0, Phase::Lagrangian));
        assert_eq!(elbo.config, cfg.elbo());
        assert_eq!(elbo.config.schedule, ScheduleKind::Fast);
        let constrained = Objective::Constrained.lambda_schedule(cfg);
        assert!(Objective::Constrained.adapts_lambda());
        assert_eq!((constrained.lambda, constrained.phase), (5.0, Phase::Reconstruction));
        assert_eq!(constrained.config, cfg);
    }

    #[test]
    fn bad_lambda_settings_are_rejected() {
        assert!(LambdaConfig { min: 0.0, ..fast() }.check().is_err());
        assert!(LambdaConfig { init: 100.0, ..fast() }.check().is_err());
        assert!(LambdaConfig { d0: -1.0, ..fast() }.check().is_err());
        assert!(LambdaConfig { ema: 0.0, ..fast() }.check().is_err());
        assert!(LambdaConfig { update_every: 0, ..authors() }.check().is_err());
        assert!(LambdaConfig { factor_min: 1.5, ..authors() }.check().is_err());
        assert!(LambdaConfig { factor_max: 0.5, ..authors() }.check().is_err());
        assert!(LambdaConfig { tau: 0.0, ..authors() }.check().is_err());
        assert!(fast().check().is_ok());
        assert!(authors().check().is_ok());
        assert!(LambdaConfig::default().check().is_ok());
    }

    #[test]
    fn objective_and_schedule_names_round_trip() {
        for o in [Objective::Constrained, Objective::Elbo] {
            assert_eq!(o.to_string().parse::<Objective>().unwrap(), o);
        }
        for k in [ScheduleKind::Authors, ScheduleKind::Fast] {
            assert_eq!(k.to_string().parse::<ScheduleKind>().unwrap(), k);
        }
        assert!("adam".parse::<Objective>().is_err());
        assert!("slow".parse::<ScheduleKind>().is_err());
    }
}
