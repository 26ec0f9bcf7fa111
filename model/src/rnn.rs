//! The RNN-inference baseline (`docs/design.md`, section 2): a structured
//! inference network in the style of the deep Kalman smoother (Krishnan et al. 2017, "ST-R"
//! with the combiner function), the model the EKVAE is compared with.
//!
//! The baseline model ([`crate::Inference::Rnn`]) has one latent layer: p(x_t | z_t) is the
//! EKVAE's decoder applied to H z_t, with the same locally-linear transition and initial prior;
//! the frames are encoded by the same encoder network (its mean, deterministically), and
//! q(z_{1:T} | x_{1:T}) is this module:
//!
//! ```text
//! g_t = GRU_backward([e_t, u_t], g_{t+1})                       (e_t = encoder mean of x_t)
//! c_t = ½ (tanh(W_c [z_{t−1}, u_{t−1}] + b_c) + g_t)           (z_0 = 0, u_0 = 0)
//! q(z_t | z_{t−1}, x_{t:T}) = N(W_μ c_t + b_μ, diag(softplus(W_σ c_t + b_σ) + 10⁻⁴))
//! ```
//!
//! (10⁻⁴ is [`VARIANCE_FLOOR`], the floor of every learned variance.)
//!
//! z is drawn ancestrally, z_t = μ_t + σ_t ε_t, so log q(z_{1:T}) is the sum of the
//! per-step Gaussian log-densities at the drawn noise.

use burn::config::Config;
use burn::module::Module;
use burn::nn::gru::{Gru, GruConfig};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::{softplus, tanh};
use burn::tensor::{Device, Tensor};

use crate::linalg::{LN_2PI, gaussian_log_prob_diag};
use crate::ssm::VARIANCE_FLOOR;

/// Sizes of an [`RnnSmoother`].
#[derive(Config, Debug)]
pub struct RnnSmootherConfig {
    /// Dimension of the encoded frame e_t (the encoder's output, m; the GRU's input with u_t).
    pub aux_dim: usize,
    /// Dimension k of the action u_t.
    pub action_dim: usize,
    /// Dimension n of the state z_t.
    pub state_dim: usize,
    /// Width of the GRU state and of the combiner.
    #[config(default = 64)]
    pub hidden: usize,
}

impl RnnSmootherConfig {
    /// Build the network (burn's default initialisers, drawn from the device's generator).
    pub fn init(&self, device: &Device) -> RnnSmoother {
        let (m, k, n, h) = (self.aux_dim, self.action_dim, self.state_dim, self.hidden);
        RnnSmoother {
            gru: GruConfig::new(m + k, h, true).init(device),
            combine: LinearConfig::new(n + k, h).init(device),
            out_mean: LinearConfig::new(h, n).init(device),
            out_var: LinearConfig::new(h, n).init(device),
        }
    }
}

/// q(z_{1:T} | e_{1:T}, u_{1:T}) by a backward GRU and a combiner; see the module docs.
#[derive(Module, Debug)]
pub struct RnnSmoother {
    /// The backward GRU over [e_t, u_t].
    pub gru: Gru,
    /// W_c, b_c: [z_{t−1}, u_{t−1}] → combiner width.
    pub combine: Linear,
    /// W_μ, b_μ.
    pub out_mean: Linear,
    /// W_σ, b_σ (pre-softplus variances).
    pub out_var: Linear,
}

/// A draw (or the mean path) of [`RnnSmoother::posterior`].
#[derive(Debug, Clone)]
pub struct RnnPosterior {
    /// z_{1:T}, `[B, T, n]`.
    pub z: Tensor<3>,
    /// log q(z_{1:T}) at the drawn noise, `[B]` (at ε = 0 for the mean path).
    pub log_q: Tensor<1>,
}

impl RnnSmoother {
    /// Dimension n of z.
    pub fn state_dim(&self) -> usize {
        self.out_mean.weight.dims()[1]
    }

    /// The backward summaries g_t of [e_t, u_t] for t = T … 1.
    ///
    /// # Shapes
    /// - `a`: `[B, T, m]`, `u`: `[B, T, k]`; returns `[B, T, hidden]` in forward time order
    pub fn backward_summaries(&self, a: Tensor<3>, u: Tensor<3>) -> Tensor<3> {
        let input = Tensor::cat(vec![a, u], 2).flip([1]); // time reversed
        self.gru.forward(input, None).flip([1])
    }

    /// Ancestral draw z_t = μ_t + σ_t ε_t through the combiner, or the mean path
    /// (z_t = μ_t given the previous mean) when `eps` is `None`.
    ///
    /// # Shapes
    /// - `a`: `[B, T, m]`, `u`: `[B, T, k]` (`u[:, t]` drives t → t + 1), `eps`: `[B, T, n]`
    pub fn posterior(&self, a: Tensor<3>, u: Tensor<3>, eps: Option<Tensor<3>>) -> RnnPosterior {
        let [b, t, _] = a.dims();
        let k = u.dims()[2];
        let n = self.state_dim();
        let device = a.device();
        let g = self.backward_summaries(a, u.clone()); // [B, T, h]
        let h = g.dims()[2];
        let mut z_prev = Tensor::<2>::zeros([b, n], &device);
        let mut u_prev = Tensor::<2>::zeros([b, k], &device);
        let mut zs = Vec::with_capacity(t);
        let mut log_q_terms = Vec::with_capacity(t);
        for step in 0..t {
            let g_t = g.clone().narrow(1, step, 1).reshape([b, h]);
            let c = (tanh(self.combine.forward(Tensor::cat(vec![z_prev, u_prev], 1))) + g_t)
                .mul_scalar(0.5);
            let mean = self.out_mean.forward(c.clone()); // [B, n]
            let var = softplus(self.out_var.forward(c), 1.0).add_scalar(VARIANCE_FLOOR); // [B, n]
            let z_t = match &eps {
                Some(eps) => {
                    let e = eps.clone().narrow(1, step, 1).reshape([b, n]);
                    // log N(z; μ, σ²) at z = μ + σ ε: −½ Σ (log 2π + log σ² + ε²).
                    log_q_terms.push(
                        (var.clone().log() + e.clone().powi_scalar(2))
                            .add_scalar(LN_2PI)
                            .sum_dim(1)
                            .mul_scalar(-0.5),
                    ); // [B, 1]
                    mean + var.sqrt() * e
                }
                None => {
                    log_q_terms.push(var.log().add_scalar(LN_2PI).sum_dim(1).mul_scalar(-0.5));
                    mean
                }
            };
            zs.push(z_t.clone());
            z_prev = z_t;
            u_prev = u.clone().narrow(1, step, 1).reshape([b, k]);
        }
        let z = Tensor::stack(zs, 1); // [B, T, n]
        let log_q = Tensor::cat(log_q_terms, 1).sum_dim(1).reshape([b]);
        RnnPosterior { z, log_q }
    }

    /// log q(z_{1:T} | a, u) of a given path, teacher-forced: every step's combiner sees the
    /// given z_{t−1}, all steps in one batched pass.
    ///
    /// # Shapes
    /// - `a`: `[B, T, m]`, `u`: `[B, T, k]`, `z`: `[B, T, n]`; returns `[B]`
    pub fn log_prob(&self, a: Tensor<3>, u: Tensor<3>, z: Tensor<3>) -> Tensor<1> {
        let [b, t, n] = z.dims();
        let k = u.dims()[2];
        let device = z.device();
        let g = self.backward_summaries(a, u.clone()); // [B, T, h]
        let h = g.dims()[2];
        let z_prev = Tensor::cat(
            vec![Tensor::<3>::zeros([b, 1, n], &device), z.clone().narrow(1, 0, t - 1)],
            1,
        );
        let u_prev =
            Tensor::cat(vec![Tensor::<3>::zeros([b, 1, k], &device), u.narrow(1, 0, t - 1)], 1);
        let zu = Tensor::cat(vec![z_prev, u_prev], 2).reshape([b * t, n + k]);
        let c = (tanh(self.combine.forward(zu)) + g.reshape([b * t, h])).mul_scalar(0.5);
        let mean = self.out_mean.forward(c.clone());
        let var = softplus(self.out_var.forward(c), 1.0).add_scalar(VARIANCE_FLOOR);
        gaussian_log_prob_diag(z.reshape([b * t, n]), mean, var) // [B·T, 1]
            .reshape([b, t])
            .sum_dim(1)
            .reshape([b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn device() -> Device {
        Device::flex()
    }

    fn smoother(seed: u64) -> RnnSmoother {
        let device = device();
        device.seed(seed);
        RnnSmootherConfig::new(2, 1, 3).with_hidden(8).init(&device)
    }

    fn tensor3(v: Vec<f32>, shape: [usize; 3]) -> Tensor<3> {
        Tensor::from_data(TensorData::new(v, shape), &device())
    }

    #[test]
    fn log_q_is_the_sum_of_the_stepwise_gaussian_densities() {
        // The mean path at ε = 0 and a draw with ε: log q differs by −½ Σ ε² exactly.
        let s = smoother(1);
        let (b, t) = (2, 5);
        let a = tensor3((0..b * t * 2).map(|i| (i as f32 * 0.37).sin()).collect(), [b, t, 2]);
        let u = tensor3((0..b * t).map(|i| (i as f32 * 0.71).cos()).collect(), [b, t, 1]);
        let zero = Tensor::<3>::zeros([b, t, 3], &device());
        let at_zero = s.posterior(a.clone(), u.clone(), Some(zero));
        let mean = s.posterior(a.clone(), u.clone(), None);
        let diff = (at_zero.z.clone() - mean.z.clone()).abs().max().into_scalar::<f64>();
        assert!(diff < 1e-6, "ε = 0 must follow the mean path ({diff})");
        let lq0 = at_zero.log_q.clone().into_data().try_to_vec::<f32>().unwrap();
        let lqm = mean.log_q.into_data().try_to_vec::<f32>().unwrap();
        for (x, y) in lq0.iter().zip(&lqm) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
        // With ε: the sequential draw's log q must equal the density of the returned path
        // evaluated teacher-forced in one batched pass (a different code path).
        let eps_v: Vec<f32> = (0..b * t * 3).map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0).collect();
        let draw = s.posterior(a.clone(), u.clone(), Some(tensor3(eps_v, [b, t, 3])));
        let lq = draw.log_q.into_data().try_to_vec::<f32>().unwrap();
        let reference = s.log_prob(a, u, draw.z).into_data().try_to_vec::<f32>().unwrap();
        for (x, y) in lq.iter().zip(&reference) {
            assert!((x - y).abs() < 1e-3 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn the_summary_at_t_only_sees_the_future() {
        // Changing a at the last step changes g_t for every t; changing a at step 0 changes
        // only g_0 (the backward GRU runs from T down to 1).
        let s = smoother(2);
        let (b, t) = (1, 6);
        let base: Vec<f32> = (0..t * 2).map(|i| (i as f32 * 0.3).sin()).collect();
        let u = tensor3(vec![0.1; t], [b, t, 1]);
        let g0 = s.backward_summaries(tensor3(base.clone(), [b, t, 2]), u.clone());
        let mut first = base.clone();
        first[0] += 1.0;
        let g1 = s.backward_summaries(tensor3(first, [b, t, 2]), u.clone());
        let d = (g1 - g0.clone()).abs().sum_dim(2).into_data().try_to_vec::<f32>().unwrap();
        assert!(d[0] > 1e-4);
        assert!(d[1..].iter().all(|&x| x == 0.0), "{d:?}");
        let mut last = base;
        last[(t - 1) * 2] += 1.0;
        let g2 = s.backward_summaries(tensor3(last, [b, t, 2]), u);
        let d = (g2 - g0).abs().sum_dim(2).into_data().try_to_vec::<f32>().unwrap();
        assert!(d.iter().all(|&x| x > 1e-6), "{d:?}");
    }
}
