//! The training objectives: the negative ELBO R + D and the constrained Lagrangian
//! R + λ (D − D0) with its multiplicative λ update (Klushyn et al. 2019; GECO, Rezende &
//! Viola 2018).
//!
//! Units: [`RateDistortion`] holds sums over a whole sequence. The losses below divide by the
//! sequence length T so that the learning rate does not depend on the subsequence length;
//! the constraint is stated per pixel, D0 in nats per pixel.

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
    /// The plain negative ELBO R + D (λ ≡ 1).
    Elbo,
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

/// Settings of the λ update.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LambdaConfig {
    /// Initial λ.
    pub init: f64,
    /// Target distortion D0 in nats per pixel.
    pub d0: f64,
    /// Step size ν of the multiplicative update (per nat per pixel).
    pub nu: f64,
    /// Weight of the newest batch in the moving average D̂ (1 − momentum).
    pub ema: f64,
    /// Lower clamp λ_min (1 by default: once the constraint holds the objective is the ELBO).
    pub min: f64,
    /// Upper clamp λ_max.
    pub max: f64,
}

impl Default for LambdaConfig {
    fn default() -> Self {
        Self { init: 1.0, d0: 0.05, nu: 1.0, ema: 0.05, min: 1.0, max: 100.0 }
    }
}

impl LambdaConfig {
    /// Check 0 < min ≤ init ≤ max, ν ≥ 0, D0 > 0, 0 < ema ≤ 1.
    pub fn check(&self) -> Result<()> {
        let ok = self.min > 0.0
            && self.min <= self.init
            && self.init <= self.max
            && self.nu >= 0.0
            && self.d0 > 0.0
            && self.ema > 0.0
            && self.ema <= 1.0
            && [self.init, self.d0, self.nu, self.ema, self.min, self.max]
                .iter()
                .all(|v| v.is_finite());
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidSetting(format!(
                "lambda settings need 0 < min ≤ init ≤ max, nu ≥ 0, d0 > 0, 0 < ema ≤ 1; got {self:?}"
            )))
        }
    }
}

/// The state of the λ update: λ ← clamp(λ · exp(ν (D̂ − D0)), λ_min, λ_max), with D̂ an
/// exponential moving average of the batch distortion per pixel.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LambdaSchedule {
    /// The settings.
    pub config: LambdaConfig,
    /// Current λ.
    pub lambda: f64,
    /// Moving average D̂ (None before the first batch).
    pub d_hat: Option<f64>,
}

impl LambdaSchedule {
    /// Start at λ = `config.init`.
    pub fn new(config: LambdaConfig) -> Self {
        Self { config, lambda: config.init, d_hat: None }
    }

    /// Fold in one batch distortion per pixel and update λ; returns the new λ.
    pub fn update(&mut self, d_per_pixel: f64) -> f64 {
        let c = self.config;
        let d_hat = match self.d_hat {
            None => d_per_pixel,
            Some(prev) => (1.0 - c.ema) * prev + c.ema * d_per_pixel,
        };
        self.d_hat = Some(d_hat);
        self.lambda = (self.lambda * (c.nu * (d_hat - c.d0)).exp()).clamp(c.min, c.max);
        self.lambda
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LambdaConfig {
        LambdaConfig { init: 2.0, d0: 0.1, nu: 5.0, ema: 0.5, min: 1.0, max: 50.0 }
    }

    #[test]
    fn lambda_grows_while_the_constraint_is_violated_and_falls_back_to_min() {
        let mut s = LambdaSchedule::new(cfg());
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
    fn lambda_is_constant_at_the_target() {
        let mut s = LambdaSchedule::new(cfg());
        for _ in 0..10 {
            s.update(0.1);
        }
        assert!((s.lambda - 2.0).abs() < 1e-12);
    }

    #[test]
    fn bad_lambda_settings_are_rejected() {
        assert!(LambdaConfig { min: 0.0, ..cfg() }.check().is_err());
        assert!(LambdaConfig { init: 100.0, ..cfg() }.check().is_err());
        assert!(LambdaConfig { d0: -1.0, ..cfg() }.check().is_err());
        assert!(LambdaConfig { ema: 0.0, ..cfg() }.check().is_err());
        assert!(cfg().check().is_ok());
    }

    #[test]
    fn objective_names_round_trip() {
        for o in [Objective::Constrained, Objective::Elbo] {
            assert_eq!(o.to_string().parse::<Objective>().unwrap(), o);
        }
        assert!("adam".parse::<Objective>().is_err());
    }
}
