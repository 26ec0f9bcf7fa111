//! The linear-Gaussian parts of the EKVAE: the auxiliary observation p(a_t | z_t), the
//! locally-linear transition p(z_t | z_{t−1}, u_{t−1}) and the initial-state prior p(z_1).

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::{softmax, softplus, tanh};
use burn::tensor::{Device, Tensor, TensorData};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

use crate::kalman::{Emission, LinearGaussianStep, Prior, Transition};

/// The floor added to every learned variance after its softplus, `σ² = softplus(ρ) + 10⁻⁴`:
/// the auxiliary observation's R, the transition's Q (after mixing the bases), the initial
/// prior's variance and the RNN baseline's q(z_t | ·). It keeps each variance, and so each
/// Gaussian log-density and Kalman gain, away from the singular limit σ² → 0. The plain-f64 copy
/// of the model ([`crate::plain`]) adds the same constant.
pub const VARIANCE_FLOOR: f64 = 1e-4;

/// softplus⁻¹(y) = log(exp(y) − 1), to initialise a parameter whose softplus is `y`.
pub fn inverse_softplus(y: f64) -> f64 {
    if y > 20.0 { y } else { y.exp_m1().ln() }
}

/// `len` draws of N(0, std²) from a seeded ChaCha stream (Box–Muller), for parameter
/// initialisation that does not depend on the backend's random number generator.
pub fn normal_init(seed: u64, len: usize, std: f64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len)
        .map(|_| {
            let u1: f64 = rng.random::<f64>().max(1e-300);
            let u2: f64 = rng.random();
            (std * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect()
}

fn param<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Param<Tensor<D>> {
    Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
}

/// Configuration of the [`AuxObservation`] p(a_t | z_t) = N(H z_t, R).
#[derive(Config, Debug)]
pub struct AuxObservationConfig {
    /// Dimension m of a_t.
    pub aux_dim: usize,
    /// Dimension n of z_t.
    pub state_dim: usize,
    /// Initial diagonal of R.
    #[config(default = 0.05)]
    pub r_init: f64,
    /// Seed of the initial H.
    #[config(default = 0)]
    pub seed: u64,
}

/// The linear auxiliary observation p(a_t | z_t) = N(H z_t, diag r), r = softplus(ρ) + 10⁻⁴
/// ([`VARIANCE_FLOOR`]).
#[derive(Module, Debug)]
pub struct AuxObservation {
    /// H, `[m, n]`; initialised to [I_m 0] plus N(0, 0.1²).
    pub h: Param<Tensor<2>>,
    /// ρ, `[m]`, the pre-softplus diagonal of R.
    pub r_raw: Param<Tensor<1>>,
}

impl AuxObservationConfig {
    /// Build the observation model.
    pub fn init(&self, device: &Device) -> AuxObservation {
        let (m, n) = (self.aux_dim, self.state_dim);
        let mut h = normal_init(self.seed, m * n, 0.1);
        for i in 0..m.min(n) {
            h[i * n + i] += 1.0;
        }
        AuxObservation {
            h: param(h, [m, n], device),
            r_raw: param(vec![inverse_softplus(self.r_init) as f32; m], [m], device),
        }
    }
}

impl AuxObservation {
    /// The emission in the form the Kalman filter takes.
    pub fn emission(&self) -> Emission {
        Emission {
            h: self.h.val(),
            r_diag: softplus(self.r_raw.val(), 1.0).add_scalar(VARIANCE_FLOOR),
        }
    }
}

/// Configuration of the [`LocallyLinearTransition`].
#[derive(Config, Debug)]
pub struct TransitionConfig {
    /// Dimension n of z_t.
    pub state_dim: usize,
    /// Dimension k of u_t.
    #[config(default = 1)]
    pub action_dim: usize,
    /// Number K of base matrices.
    #[config(default = 8)]
    pub num_bases: usize,
    /// Width of the hidden layer of the mixing network α(z, u).
    #[config(default = 32)]
    pub hidden: usize,
    /// Initial diagonal of every Q_k.
    #[config(default = 0.02)]
    pub q_init: f64,
    /// Standard deviation of the perturbation of F_k around I.
    #[config(default = 0.05)]
    pub f_init_std: f64,
    /// Standard deviation of the initial B_k.
    #[config(default = 0.1)]
    pub b_init_std: f64,
    /// Seed of the base-matrix initialisation.
    #[config(default = 0)]
    pub seed: u64,
}

/// The locally-linear transition p(z_t | z_{t−1}, u_{t−1}) = N(F z_{t−1} + B u_{t−1}, Q) with
/// (F, B, Q) = Σ_k α_k (F_k, B_k, Q_k) and α = softmax(MLP(z_{t−1}, u_{t−1})).
///
/// F_k starts near I, Q_k = diag(softplus(q_k)); Q gets [`VARIANCE_FLOOR`] (10⁻⁴) added after
/// mixing.
#[derive(Module, Debug)]
pub struct LocallyLinearTransition {
    /// MLP layer 1: [z, u] → hidden (tanh).
    pub mix_hidden: Linear,
    /// MLP layer 2: hidden → K logits.
    pub mix_out: Linear,
    /// F_k, `[K, n·n]` row-major.
    pub f_bases: Param<Tensor<2>>,
    /// B_k, `[K, n·k]` row-major.
    pub b_bases: Param<Tensor<2>>,
    /// Pre-softplus diagonals of Q_k, `[K, n]`.
    pub q_bases: Param<Tensor<2>>,
    /// While set, α is uniform (1/K each) instead of the mixing network's output: one global
    /// linear model, the mean of the bases (KVAE's staged training; set by the trainer for
    /// the first epochs, never saved).
    pub frozen_mixing: bool,
    state_dim: usize,
    action_dim: usize,
}

impl TransitionConfig {
    /// Build the transition.
    pub fn init(&self, device: &Device) -> LocallyLinearTransition {
        let (n, k, nb) = (self.state_dim, self.action_dim, self.num_bases);
        let mut f = normal_init(self.seed.wrapping_add(1), nb * n * n, self.f_init_std);
        for b in 0..nb {
            for i in 0..n {
                f[b * n * n + i * n + i] += 1.0;
            }
        }
        let b = normal_init(self.seed.wrapping_add(2), nb * n * k, self.b_init_std);
        let q = vec![inverse_softplus(self.q_init) as f32; nb * n];
        LocallyLinearTransition {
            mix_hidden: LinearConfig::new(n + k, self.hidden).init(device),
            mix_out: LinearConfig::new(self.hidden, nb).init(device),
            f_bases: param(f, [nb, n * n], device),
            b_bases: param(b, [nb, n * k], device),
            q_bases: param(q, [nb, n], device),
            state_dim: n,
            action_dim: k,
            frozen_mixing: false,
        }
    }
}

impl LocallyLinearTransition {
    /// The mixing weights α = softmax(MLP(z, u)).
    ///
    /// # Shapes
    /// - `z`: `[B, n]`, `u`: `[B, k]`; returns `[B, K]`
    pub fn alpha(&self, z: Tensor<2>, u: Tensor<2>) -> Tensor<2> {
        if self.frozen_mixing {
            let [b, _] = z.dims();
            let [k, _] = self.f_bases.dims();
            return Tensor::ones([b, k], &z.device()).div_scalar(k as f64);
        }
        let zu = Tensor::cat(vec![z, u], 1); // [B, n + k]
        let h = tanh(self.mix_hidden.forward(zu)); // [B, hidden]
        softmax(self.mix_out.forward(h), 1) // [B, K]
    }

    /// Mean F z + B u and diagonal of Q of p(z_t | z_{t−1} = z, u_{t−1} = u).
    ///
    /// # Shapes
    /// - `z`: `[B, n]`, `u`: `[B, k]`; returns `([B, n], [B, n])`
    pub fn mean_and_var(&self, z: Tensor<2>, u: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let step = self.linearize(z.clone(), u.clone());
        let [b, n, _] = step.f.dims();
        let k = self.action_dim;
        let fz = step.f.matmul(z.reshape([b, n, 1])); // [B, n, 1]
        let bu = step.b.matmul(u.reshape([b, k, 1])); // [B, n, 1]
        ((fz + bu).reshape([b, n]), step.q_diag)
    }

    /// Dimension n of the state.
    pub fn state_dim(&self) -> usize {
        self.state_dim
    }
}

impl Transition for LocallyLinearTransition {
    fn linearize(&self, z: Tensor<2>, u: Tensor<2>) -> LinearGaussianStep {
        let [b, _] = z.dims();
        let (n, k) = (self.state_dim, self.action_dim);
        let alpha = self.alpha(z, u); // [B, K]
        let f = alpha.clone().matmul(self.f_bases.val()).reshape([b, n, n]); // [B, n, n]
        let bm = alpha.clone().matmul(self.b_bases.val()).reshape([b, n, k]); // [B, n, k]
        let q = alpha.matmul(softplus(self.q_bases.val(), 1.0)).add_scalar(VARIANCE_FLOOR); // [B, n]
        LinearGaussianStep { f, b: bm, q_diag: q }
    }
}

/// Configuration of the [`InitialPrior`] p(z_1) = N(μ_0, diag σ_0²).
#[derive(Config, Debug)]
pub struct InitialPriorConfig {
    /// Dimension n of z.
    pub state_dim: usize,
    /// Initial σ_0².
    #[config(default = 1.0)]
    pub var_init: f64,
}

/// The learned initial-state prior p(z_1) = N(μ_0, diag(softplus(ς) + 10⁻⁴)) ([`VARIANCE_FLOOR`]).
#[derive(Module, Debug)]
pub struct InitialPrior {
    /// μ_0, `[n]`.
    pub mean: Param<Tensor<1>>,
    /// ς, `[n]`, the pre-softplus variances.
    pub var_raw: Param<Tensor<1>>,
}

impl InitialPriorConfig {
    /// Build the prior (μ_0 = 0, σ_0² = `var_init`).
    pub fn init(&self, device: &Device) -> InitialPrior {
        let n = self.state_dim;
        InitialPrior {
            mean: param(vec![0.0; n], [n], device),
            var_raw: param(vec![inverse_softplus(self.var_init) as f32; n], [n], device),
        }
    }
}

impl InitialPrior {
    /// The prior in the form the Kalman filter takes.
    pub fn prior(&self) -> Prior {
        Prior {
            mean: self.mean.val(),
            var: softplus(self.var_raw.val(), 1.0).add_scalar(VARIANCE_FLOOR),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kalman::Transition;
    use burn::tensor::TensorData;

    #[test]
    fn frozen_mixing_uses_the_mean_of_the_bases() {
        let device = Device::flex();
        let mut t = TransitionConfig::new(3).with_num_bases(4).with_seed(5).init(&device);
        let z = Tensor::<2>::from_data(
            TensorData::new(vec![0.3f32, -1.0, 2.0, 1.5, 0.2, -0.7], [2, 3]),
            &device,
        );
        let u = Tensor::<2>::from_data(TensorData::new(vec![0.5f32, -2.0], [2, 1]), &device);
        let free = t.alpha(z.clone(), u.clone()).into_data().try_to_vec::<f32>().unwrap();
        // The mixing network's α differs from uniform (random initial weights) …
        assert!(free.iter().any(|a| (a - 0.25).abs() > 1e-4), "{free:?}");
        t.frozen_mixing = true;
        let alpha = t.alpha(z.clone(), u.clone()).into_data().try_to_vec::<f32>().unwrap();
        assert!(alpha.iter().all(|a| (a - 0.25).abs() < 1e-7), "{alpha:?}");
        // … and frozen, F(z, u) is the mean of the bases F_k for every z and u.
        let f = t.linearize(z, u).f.into_data().try_to_vec::<f32>().unwrap(); // [2, 3, 3]
        let bases = t.f_bases.val().into_data().try_to_vec::<f32>().unwrap(); // [4, 9]
        for b in 0..2 {
            for i in 0..9 {
                let mean = (0..4).map(|k| bases[k * 9 + i]).sum::<f32>() / 4.0;
                assert!((f[b * 9 + i] - mean).abs() < 1e-6);
            }
        }
    }
}
