//! A burn-free copy of the EKVAE's linear-Gaussian parts in plain `f64` Rust, for the
//! planner's inner loop and online filtering, where burn's per-op overhead on batch-1
//! tensors would dominate (see `docs/pixel-mpc.md` for the measured difference).
//!
//! - [`PlainTransition`]: the locally-linear transition mean `z' = F(z,u) z + B(z,u) u`,
//!   `(F, B, Q) = Σ_k α_k (F_k, B_k, Q_k)`, `α = softmax(W₂ᵀ tanh(W₁ᵀ [z; u] + b₁) + b₂)`,
//!   with the seed's Jacobians `(F(z,u), B(z,u))` ([`PlainTransition::linearize`]) and the
//!   exact ones including `∂α/∂(z,u)` ([`PlainTransition::linearize_exact`]).
//! - [`PlainModel`]: transition, auxiliary observation `(H, R)` and prior `p(z_1)`, with one
//!   step of the extended Kalman filter ([`PlainModel::predict`], [`PlainModel::update`]) —
//!   the same algorithm as [`crate::kalman::filter`] (predict at the filtered mean,
//!   Joseph-form update), for one sequence and one step at a time.
//!
//! All weights are exported once from the burn modules ([`PlainModel::from_ekvae`]); `f32`
//! parameters become `f64`.

use burn::tensor::Tensor;
use ekvae_numerics::{cholesky, cholesky_solve, symmetrize};

use crate::ssm::{LocallyLinearTransition, VARIANCE_FLOOR};
use crate::{Ekvae, Error, Result};

/// The float types of the plain paths' matrix products (`f32`, `f64`).
pub trait Gemm: Copy + Send + Sync + 'static {
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
}
impl Gemm for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}
impl Gemm for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

/// `out (r×c) [+]= op(a) · op(b)`, row-major, with `op(a)` `r×k` (`a` stored `k×r` when
/// `ta`) and `op(b)` `k×c` (`b` stored `c×k` when `tb`); the `gemm` crate, single-threaded
/// (the callers run blocks of a batch on the thread pool).
#[allow(clippy::too_many_arguments, unsafe_code)]
pub(crate) fn mm<T: Gemm>(
    a: &[T],
    ta: bool,
    b: &[T],
    tb: bool,
    r: usize,
    k: usize,
    c: usize,
    out: &mut [T],
    acc: bool,
) {
    assert!(a.len() >= r * k && b.len() >= k * c && out.len() >= r * c, "mm: sizes");
    if r == 0 || c == 0 || k == 0 {
        if !acc {
            out[..r * c].fill(T::ZERO);
        }
        return;
    }
    let (a_rs, a_cs) = if ta { (1, r as isize) } else { (k as isize, 1) };
    let (b_rs, b_cs) = if tb { (1, k as isize) } else { (c as isize, 1) };
    // The one unsafe call of the crate's numerics: gemm takes raw pointers and strides.
    // SAFETY: the strides above address only the `r·k`, `k·c` and `r·c` elements whose
    // presence the assertion checked; `out` does not alias `a` or `b` (distinct borrows).
    unsafe {
        gemm::gemm(
            r,
            c,
            k,
            out.as_mut_ptr(),
            1,
            c as isize,
            acc,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Values of a burn tensor as `f64`, row-major.
pub(crate) fn values<const D: usize>(t: Tensor<D>) -> Result<Vec<f64>> {
    t.into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .map_err(|e| Error::Numerical(format!("cannot read weights: {e:?}")))
}

/// `softplus(x) = ln(1 + eˣ)`, overflow-safe.
fn softplus(x: f64) -> f64 {
    if x > 20.0 { x } else { x.exp().ln_1p() }
}

/// The locally-linear transition's weights in `f64`, evaluated without burn.
///
/// Shapes (row-major): `w1: [n+k, H]`, `b1: [H]`, `w2: [H, K]`, `b2: [K]`,
/// `f: [K, n·n]`, `b: [K, n·k]`, `q: [K, n]` (the per-base noise variances, after softplus).
#[derive(Debug, Clone, PartialEq)]
pub struct PlainTransition {
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) hidden: usize,
    pub(crate) bases: usize,
    pub(crate) w1: Vec<f64>,
    pub(crate) b1: Vec<f64>,
    pub(crate) w2: Vec<f64>,
    pub(crate) b2: Vec<f64>,
    pub(crate) f: Vec<f64>,
    pub(crate) b: Vec<f64>,
    pub(crate) q: Vec<f64>,
}

/// The intermediate values of one evaluation, reused by the Jacobians.
pub(crate) struct Forward {
    /// tanh activations, `[H]`.
    pub(crate) h: Vec<f64>,
    /// Mixing weights α, `[K]`.
    pub(crate) alpha: Vec<f64>,
    /// Per-base means `g_k = F_k z + B_k u`, `[K, n]`.
    g: Vec<f64>,
}

impl PlainTransition {
    /// Export the weights of a burn transition.
    pub fn from_burn(t: &LocallyLinearTransition) -> Result<Self> {
        let n = t.state_dim();
        let [bases, nk] = t.b_bases.dims();
        let k = nk / n;
        let [d_in, hidden] = t.mix_hidden.weight.dims();
        if d_in != n + k {
            return Err(Error::ShapeMismatch(format!(
                "mixing network takes {d_in} inputs, expected n + k = {}",
                n + k
            )));
        }
        let bias = |b: &Option<burn::module::Param<Tensor<1>>>, len: usize| -> Result<Vec<f64>> {
            match b {
                Some(p) => values(p.val()),
                None => Ok(vec![0.0; len]),
            }
        };
        let q_raw = values(t.q_bases.val())?;
        Self::new(
            n,
            k,
            values(t.mix_hidden.weight.val())?,
            bias(&t.mix_hidden.bias, hidden)?,
            values(t.mix_out.weight.val())?,
            bias(&t.mix_out.bias, bases)?,
            values(t.f_bases.val())?,
            values(t.b_bases.val())?,
            q_raw.into_iter().map(softplus).collect(),
        )
    }

    /// Build from explicit weights (shapes in the type's documentation; `H` and `K` are
    /// read from `b1` and `b2`). Errors on inconsistent sizes or non-finite values.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        n: usize,
        k: usize,
        w1: Vec<f64>,
        b1: Vec<f64>,
        w2: Vec<f64>,
        b2: Vec<f64>,
        f: Vec<f64>,
        b: Vec<f64>,
        q: Vec<f64>,
    ) -> Result<Self> {
        let (hidden, bases) = (b1.len(), b2.len());
        let checks = [
            ("w1", &w1, (n + k) * hidden),
            ("w2", &w2, hidden * bases),
            ("f", &f, bases * n * n),
            ("b", &b, bases * n * k),
            ("q", &q, bases * n),
        ];
        if n == 0 || k == 0 || hidden == 0 || bases == 0 {
            return Err(Error::ShapeMismatch("transition sizes must be positive".into()));
        }
        for (what, v, len) in checks {
            if v.len() != len {
                return Err(Error::ShapeMismatch(format!(
                    "transition weight {what} has {} values, expected {len}",
                    v.len()
                )));
            }
        }
        for (what, v) in
            [("w1", &w1), ("b1", &b1), ("w2", &w2), ("b2", &b2), ("f", &f), ("b", &b), ("q", &q)]
        {
            if v.iter().any(|x| !x.is_finite()) {
                return Err(Error::Numerical(format!("transition weight {what} is not finite")));
            }
        }
        Ok(Self { n, k, hidden, bases, w1, b1, w2, b2, f, b, q })
    }

    /// State size n.
    pub fn state_dim(&self) -> usize {
        self.n
    }

    /// Action size k.
    pub fn action_dim(&self) -> usize {
        self.k
    }

    /// Number K of base matrices.
    pub fn num_bases(&self) -> usize {
        self.bases
    }

    pub(crate) fn forward(&self, z: &[f64], u: &[f64]) -> Forward {
        let (n, k, hd, nb) = (self.n, self.k, self.hidden, self.bases);
        let mut h = self.b1.clone();
        for (i, x) in z.iter().chain(u).enumerate() {
            let row = &self.w1[i * hd..(i + 1) * hd];
            for (hj, w) in h.iter_mut().zip(row) {
                *hj += x * w;
            }
        }
        for v in &mut h {
            *v = v.tanh();
        }
        let mut logits = self.b2.clone();
        for (j, hj) in h.iter().enumerate() {
            let row = &self.w2[j * nb..(j + 1) * nb];
            for (l, w) in logits.iter_mut().zip(row) {
                *l += hj * w;
            }
        }
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut alpha: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f64 = alpha.iter().sum();
        for a in &mut alpha {
            *a /= sum;
        }
        let mut g = vec![0.0; nb * n];
        for c in 0..nb {
            let fc = &self.f[c * n * n..(c + 1) * n * n];
            let bc = &self.b[c * n * k..(c + 1) * n * k];
            for i in 0..n {
                let mut s = 0.0;
                for j in 0..n {
                    s += fc[i * n + j] * z[j];
                }
                for j in 0..k {
                    s += bc[i * k + j] * u[j];
                }
                g[c * n + i] = s;
            }
        }
        Forward { h, alpha, g }
    }

    /// The mixing weights α(z, u), `[K]`.
    pub fn alpha(&self, z: &[f64], u: &[f64]) -> Vec<f64> {
        self.forward(z, u).alpha
    }

    /// Writes the transition mean `F(z,u) z + B(z,u) u` into `z_next: [n]`.
    pub fn mean(&self, z: &[f64], u: &[f64], z_next: &mut [f64]) {
        let fw = self.forward(z, u);
        self.mix_mean(&fw, z_next);
    }

    fn mix_mean(&self, fw: &Forward, z_next: &mut [f64]) {
        let n = self.n;
        z_next.fill(0.0);
        for (c, a) in fw.alpha.iter().enumerate() {
            for i in 0..n {
                z_next[i] += a * fw.g[c * n + i];
            }
        }
    }

    pub(crate) fn mix_matrices(&self, alpha: &[f64], f: &mut [f64], b: &mut [f64]) {
        let (n, k) = (self.n, self.k);
        f.fill(0.0);
        b.fill(0.0);
        for (c, a) in alpha.iter().enumerate() {
            for (fi, fc) in f.iter_mut().zip(&self.f[c * n * n..(c + 1) * n * n]) {
                *fi += a * fc;
            }
            for (bi, bc) in b.iter_mut().zip(&self.b[c * n * k..(c + 1) * n * k]) {
                *bi += a * bc;
            }
        }
    }

    /// The mean and the seed's linearisation: `z_next = F z + B u`, `f = F(z,u): [n, n]`,
    /// `b = B(z,u): [n, k]` (the dependence of α on (z, u) is ignored, as the EKVAE's own
    /// filter does).
    pub fn linearize(
        &self,
        z: &[f64],
        u: &[f64],
        z_next: &mut [f64],
        f: &mut [f64],
        b: &mut [f64],
    ) {
        let fw = self.forward(z, u);
        self.mix_mean(&fw, z_next);
        self.mix_matrices(&fw.alpha, f, b);
    }

    /// The mean and its exact Jacobians `a = ∂z'/∂z: [n, n]`, `b = ∂z'/∂u: [n, k]`.
    ///
    /// With `x = [z; u]`, `g_c = F_c z + B_c u`, `ℓ = W₂ᵀ tanh(W₁ᵀ x + b₁) + b₂` and
    /// `α = softmax(ℓ)`: `z' = Σ_c α_c g_c` and
    /// `∂z'/∂x = [F(z,u), B(z,u)] + Σ_c α_c (g_c − z') (∂ℓ_c/∂x)ᵀ`, because
    /// `∂α_c/∂ℓ_j = α_c (δ_cj − α_j)`; `∂ℓ_c/∂x_i = Σ_h W₁[i,h] (1 − tanh²_h) W₂[h,c]`.
    pub fn linearize_exact(
        &self,
        z: &[f64],
        u: &[f64],
        z_next: &mut [f64],
        a: &mut [f64],
        b: &mut [f64],
    ) {
        let (n, k, hd, nb) = (self.n, self.k, self.hidden, self.bases);
        let fw = self.forward(z, u);
        self.mix_mean(&fw, z_next);
        self.mix_matrices(&fw.alpha, a, b);
        // dl[c, i] = ∂ℓ_c/∂x_i.
        let d: Vec<f64> = fw.h.iter().map(|h| 1.0 - h * h).collect();
        let mut dl = vec![0.0; nb * (n + k)];
        for i in 0..n + k {
            let w1 = &self.w1[i * hd..(i + 1) * hd];
            for (hh, (w, dh)) in w1.iter().zip(&d).enumerate() {
                let s = w * dh;
                let w2 = &self.w2[hh * nb..(hh + 1) * nb];
                for c in 0..nb {
                    dl[c * (n + k) + i] += s * w2[c];
                }
            }
        }
        for c in 0..nb {
            let ac = fw.alpha[c];
            for r in 0..n {
                let coef = ac * (fw.g[c * n + r] - z_next[r]);
                let row = &dl[c * (n + k)..(c + 1) * (n + k)];
                for j in 0..n {
                    a[r * n + j] += coef * row[j];
                }
                for j in 0..k {
                    b[r * k + j] += coef * row[n + j];
                }
            }
        }
    }

    /// Diagonal of the mixed transition noise `Q(z,u) = Σ_c α_c Q_c + 10⁻⁴`
    /// ([`VARIANCE_FLOOR`]), written into `q: [n]`.
    pub fn noise(&self, alpha: &[f64], q: &mut [f64]) {
        let n = self.n;
        q.fill(VARIANCE_FLOOR);
        for (c, a) in alpha.iter().enumerate() {
            for i in 0..n {
                q[i] += a * self.q[c * n + i];
            }
        }
    }
}

/// A Gaussian belief over the latent state: mean `[n]` and covariance `[n, n]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Belief {
    /// Mean, `[n]`.
    pub mean: Vec<f64>,
    /// Covariance, `[n, n]` row-major.
    pub cov: Vec<f64>,
}

/// The EKVAE's transition, auxiliary observation and prior in plain `f64`, with a one-step
/// extended Kalman filter.
#[derive(Debug, Clone, PartialEq)]
pub struct PlainModel {
    /// The locally-linear transition.
    pub transition: PlainTransition,
    /// `H`, `[m, n]`.
    pub h: Vec<f64>,
    /// Diagonal of `R`, `[m]`.
    pub r: Vec<f64>,
    /// Mean of `p(z_1)`, `[n]`.
    pub prior_mean: Vec<f64>,
    /// Diagonal variance of `p(z_1)`, `[n]`.
    pub prior_var: Vec<f64>,
    /// Added to the diagonal of the innovation covariance before factorising it.
    pub jitter: f64,
}

impl PlainModel {
    /// Export the linear-Gaussian parts of a trained model (the conversions of `R` and the
    /// prior variance are the model's own: softplus + [`VARIANCE_FLOOR`]).
    pub fn from_ekvae(model: &Ekvae) -> Result<Self> {
        let plus =
            |v: Vec<f64>| v.into_iter().map(|x| softplus(x) + VARIANCE_FLOOR).collect::<Vec<_>>();
        let out = Self {
            transition: PlainTransition::from_burn(&model.transition)?,
            h: values(model.observation.h.val())?,
            r: plus(values(model.observation.r_raw.val())?),
            prior_mean: values(model.prior.mean.val())?,
            prior_var: plus(values(model.prior.var_raw.val())?),
            jitter: 1e-6,
        };
        out.check()?;
        Ok(out)
    }

    /// Checks sizes and finiteness.
    pub fn check(&self) -> Result<()> {
        let n = self.transition.state_dim();
        let m = self.r.len();
        if m == 0
            || self.h.len() != m * n
            || self.prior_mean.len() != n
            || self.prior_var.len() != n
        {
            return Err(Error::ShapeMismatch(format!(
                "plain model: H has {} values, R {m}, prior {} and {}, for n = {n}",
                self.h.len(),
                self.prior_mean.len(),
                self.prior_var.len()
            )));
        }
        let all = self.h.iter().chain(&self.r).chain(&self.prior_mean).chain(&self.prior_var);
        if all.clone().any(|v| !v.is_finite())
            || self.r.iter().chain(&self.prior_var).any(|v| *v <= 0.0)
        {
            return Err(Error::Numerical(
                "plain model: non-finite H/R/prior or non-positive variance".into(),
            ));
        }
        Ok(())
    }

    /// State size n.
    pub fn state_dim(&self) -> usize {
        self.transition.state_dim()
    }

    /// Auxiliary observation size m.
    pub fn aux_dim(&self) -> usize {
        self.r.len()
    }

    /// The prior `p(z_1)` as a belief (the prediction for an episode's first frame).
    pub fn prior_belief(&self) -> Belief {
        let n = self.state_dim();
        let mut cov = vec![0.0; n * n];
        for i in 0..n {
            cov[i * n + i] = self.prior_var[i];
        }
        Belief { mean: self.prior_mean.clone(), cov }
    }

    /// The EKF prediction `p(z_t | a_{1:t−1})` from the filtered `belief` of step `t − 1` and the
    /// action `u` applied since: `μ' = F μ + B u`, `P' = F P Fᵀ + Q` with `(F, B, Q)` at `(μ, u)`.
    pub fn predict(&self, belief: &Belief, u: &[f64]) -> Belief {
        let n = self.state_dim();
        let k = self.transition.action_dim();
        let mut mean = vec![0.0; n];
        let mut f = vec![0.0; n * n];
        let mut b = vec![0.0; n * k];
        let fw = self.transition.forward(&belief.mean, u);
        self.transition.mix_mean(&fw, &mut mean);
        self.transition.mix_matrices(&fw.alpha, &mut f, &mut b);
        let mut q = vec![0.0; n];
        self.transition.noise(&fw.alpha, &mut q);
        let fp = matmul(&f, &belief.cov, n, n, n);
        let mut cov = matmul_bt(&fp, &f, n, n, n);
        symmetrize(&mut cov, n);
        for i in 0..n {
            cov[i * n + i] += q[i];
        }
        Belief { mean, cov }
    }

    /// The EKF update with the auxiliary observation `a: [m]`: Kalman gain from
    /// `S = H P Hᵀ + R` (Cholesky), Joseph-form covariance. Errors if `S` is not positive definite.
    pub fn update(&self, belief: &Belief, a: &[f64]) -> Result<Belief> {
        let n = self.state_dim();
        let m = self.aux_dim();
        if a.len() != m || a.iter().any(|v| !v.is_finite()) {
            return Err(Error::ShapeMismatch(format!(
                "observation must be {m} finite values, got {:?}",
                a
            )));
        }
        let hp = matmul(&self.h, &belief.cov, m, n, n); // [m, n]
        let mut s = matmul_bt(&hp, &self.h, m, n, m); // [m, m]
        for i in 0..m {
            s[i * m + i] += self.r[i] + self.jitter;
        }
        symmetrize(&mut s, m);
        let mut l = vec![0.0; m * m];
        cholesky(&s, m, &mut l)
            .map_err(|_| Error::Numerical("innovation covariance not positive definite".into()))?;
        // K = P Hᵀ S⁻¹: solve S Kᵀ = H P.
        let mut kt = hp.clone(); // [m, n]
        for col in 0..n {
            let mut v: Vec<f64> = (0..m).map(|i| hp[i * n + col]).collect();
            cholesky_solve(&l, m, &mut v);
            for i in 0..m {
                kt[i * n + col] = v[i];
            }
        }
        let gain: Vec<f64> = (0..n * m).map(|idx| kt[(idx % m) * n + idx / m]).collect(); // [n, m]
        let hz = matmul(&self.h, &belief.mean, m, n, 1);
        let innov: Vec<f64> = a.iter().zip(&hz).map(|(a, h)| a - h).collect();
        let kv = matmul(&gain, &innov, n, m, 1);
        let mean: Vec<f64> = belief.mean.iter().zip(&kv).map(|(x, d)| x + d).collect();
        // Joseph form: (I − K H) P (I − K H)ᵀ + K R Kᵀ.
        let kh = matmul(&gain, &self.h, n, m, n);
        let mut ikh = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                ikh[i * n + j] = f64::from(u8::from(i == j)) - kh[i * n + j];
            }
        }
        let mut cov = matmul_bt(&matmul(&ikh, &belief.cov, n, n, n), &ikh, n, n, n);
        for i in 0..n {
            for j in 0..n {
                cov[i * n + j] +=
                    (0..m).map(|c| gain[i * m + c] * self.r[c] * gain[j * m + c]).sum::<f64>();
            }
        }
        symmetrize(&mut cov, n);
        Ok(Belief { mean, cov })
    }

    /// `H z`, `[m]`: the auxiliary observation the decoder turns into a frame.
    pub fn observe(&self, z: &[f64]) -> Vec<f64> {
        matmul(&self.h, z, self.aux_dim(), self.state_dim(), 1)
    }
}

/// `A B` for `A: [r, c]`, `B: [c, k]`, as a new `[r, k]` vector.
fn matmul(a: &[f64], b: &[f64], r: usize, c: usize, k: usize) -> Vec<f64> {
    let mut out = vec![0.0; r * k];
    ekvae_numerics::mat_mul(a, b, r, c, k, &mut out);
    out
}

/// `A Bᵀ` for `A: [r, c]`, `B: [k, c]`, as a new `[r, k]` vector.
fn matmul_bt(a: &[f64], b: &[f64], r: usize, c: usize, k: usize) -> Vec<f64> {
    let mut out = vec![0.0; r * k];
    ekvae_numerics::mat_mul_t(a, b, r, c, k, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssm::TransitionConfig;
    use burn::tensor::{Device, TensorData};

    /// A transition with seeded weights (set explicitly: burn's own initialisers draw from the
    /// backend's unseeded generator), with a mixing network strong enough that α varies.
    fn transition() -> (LocallyLinearTransition, PlainTransition) {
        use crate::ssm::normal_init;
        let device = Device::flex();
        let mut t = TransitionConfig::new(3)
            .with_num_bases(4)
            .with_hidden(8)
            .with_f_init_std(0.3)
            .with_seed(7)
            .init(&device);
        let set2 = |seed: u64, shape: [usize; 2], std: f64| {
            let v = normal_init(seed, shape[0] * shape[1], std);
            burn::module::Param::from_tensor(Tensor::<2>::from_data(
                TensorData::new(v, shape),
                &device,
            ))
        };
        let set1 = |seed: u64, len: usize, std: f64| {
            let v = normal_init(seed, len, std);
            burn::module::Param::from_tensor(Tensor::<1>::from_data(
                TensorData::new(v, [len]),
                &device,
            ))
        };
        t.mix_hidden.weight = set2(11, [4, 8], 1.0);
        t.mix_hidden.bias = Some(set1(12, 8, 0.3));
        t.mix_out.weight = set2(13, [8, 4], 2.0);
        t.mix_out.bias = Some(set1(14, 4, 0.3));
        let p = PlainTransition::from_burn(&t).unwrap();
        (t, p)
    }

    fn burn_row(v: &[f64], device: &Device) -> Tensor<2> {
        let f: Vec<f32> = v.iter().map(|x| *x as f32).collect();
        Tensor::from_data(TensorData::new(f, [1, v.len()]), device)
    }

    /// The plain evaluation equals burn's on the same weights (f32 burn vs f64 plain).
    #[test]
    fn plain_transition_matches_burn() {
        use crate::kalman::Transition as _;
        let (t, p) = transition();
        let device = Device::flex();
        for (z, u) in
            [([0.3, -0.7, 1.1], [0.5]), ([-1.0, 0.2, 0.0], [-2.0]), ([2.0, 1.5, -0.4], [1.3])]
        {
            let zt = burn_row(&z, &device);
            let ut = burn_row(&u, &device);
            let step = t.linearize(zt.clone(), ut.clone());
            let (mean, q) = t.mean_and_var(zt.clone(), ut.clone());
            let alpha = values(t.alpha(zt, ut)).unwrap();
            let (mut zn, mut f, mut b) = ([0.0; 3], [0.0; 9], [0.0; 3]);
            p.linearize(&z, &u, &mut zn, &mut f, &mut b);
            let mut qp = [0.0; 3];
            p.noise(&p.alpha(&z, &u), &mut qp);
            let close = |x: &[f64], y: Vec<f64>, what: &str| {
                for (a, b) in x.iter().zip(&y) {
                    assert!(
                        (a - b).abs() < 1e-5 * (1.0 + b.abs()),
                        "{what}: plain {x:?} vs burn {y:?}"
                    );
                }
            };
            close(&p.alpha(&z, &u), alpha, "alpha");
            close(&zn, values(mean).unwrap(), "mean");
            close(&f, values(step.f).unwrap(), "F");
            close(&b, values(step.b).unwrap(), "B");
            close(&qp, values(q).unwrap(), "Q");
        }
    }

    /// Exact Jacobians against central finite differences of the plain mean (f64, h = 10⁻⁶).
    #[test]
    fn exact_jacobians_match_finite_differences() {
        let (_, p) = transition();
        let (n, k) = (3, 1);
        let h = 1e-6;
        for (z, u) in
            [([0.3, -0.7, 1.1], [0.5]), ([-1.0, 0.2, 0.0], [-2.0]), ([2.0, 1.5, -0.4], [1.3])]
        {
            let (mut zn, mut a, mut b) = ([0.0; 3], [0.0; 9], [0.0; 3]);
            p.linearize_exact(&z, &u, &mut zn, &mut a, &mut b);
            let mut seed = ([0.0; 3], [0.0; 9], [0.0; 3]);
            p.linearize(&z, &u, &mut seed.0, &mut seed.1, &mut seed.2);
            assert_eq!(zn, seed.0);
            let mut x: Vec<f64> = z.iter().chain(&u).copied().collect();
            let mut max_alpha_term: f64 = 0.0;
            for j in 0..n + k {
                let x0 = x[j];
                let (mut plus, mut minus) = ([0.0; 3], [0.0; 3]);
                x[j] = x0 + h;
                p.mean(&x[..n], &x[n..], &mut plus);
                x[j] = x0 - h;
                p.mean(&x[..n], &x[n..], &mut minus);
                x[j] = x0;
                for r in 0..n {
                    let fd = (plus[r] - minus[r]) / (2.0 * h);
                    let (exact, approx) = if j < n {
                        (a[r * n + j], seed.1[r * n + j])
                    } else {
                        (b[r * k + j - n], seed.2[r * k + j - n])
                    };
                    assert!(
                        (fd - exact).abs() < 1e-6 * (1.0 + fd.abs()),
                        "∂z'_{r}/∂x_{j}: fd {fd}, exact {exact}"
                    );
                    max_alpha_term = max_alpha_term.max((exact - approx).abs());
                }
            }
            // The test would not see a missing α term if it were negligible here.
            assert!(max_alpha_term > 1e-2, "α term only {max_alpha_term}");
        }
    }

    /// A constructed case with the answer in closed form: one base (α ≡ 1), F = I, B = 0,
    /// H = I, scalar-diagonal P, Q, R. Predict: P' = P + Q. Update: K = P'/(P' + R),
    /// μ = μ' + K (a − μ'), P = P' R / (P' + R) (the scalar Kalman filter per coordinate).
    #[test]
    fn filter_step_matches_the_scalar_kalman_filter() {
        let n = 2;
        let t = PlainTransition::new(
            n,
            1,
            vec![0.0; 3],
            vec![0.0],
            vec![0.0],
            vec![0.0],
            vec![1.0, 0.0, 0.0, 1.0],
            vec![0.0, 0.0],
            vec![0.3, 0.3],
        )
        .unwrap();
        let model = PlainModel {
            transition: t,
            h: vec![1.0, 0.0, 0.0, 1.0],
            r: vec![0.5, 0.5],
            prior_mean: vec![0.0, 0.0],
            prior_var: vec![1.0, 1.0],
            jitter: 0.0,
        };
        let b0 = Belief { mean: vec![1.0, -2.0], cov: vec![0.2, 0.0, 0.0, 0.2] };
        let pred = model.predict(&b0, &[0.7]);
        let pp = 0.2 + 0.3 + VARIANCE_FLOOR;
        assert_eq!(pred.mean, vec![1.0, -2.0]);
        assert!((pred.cov[0] - pp).abs() < 1e-12 && pred.cov[1].abs() < 1e-15);
        let post = model.update(&pred, &[2.0, 0.0]).unwrap();
        let gain = pp / (pp + 0.5);
        assert!((post.mean[0] - (1.0 + gain * 1.0)).abs() < 1e-12);
        assert!((post.mean[1] - (-2.0 + gain * 2.0)).abs() < 1e-12);
        assert!((post.cov[0] - pp * 0.5 / (pp + 0.5)).abs() < 1e-12);
        assert!((post.cov[3] - pp * 0.5 / (pp + 0.5)).abs() < 1e-12);
        assert!(post.cov[1].abs() < 1e-15);
        assert!(model.update(&pred, &[f64::NAN, 0.0]).is_err());
    }

    /// The plain filter run over a short sequence equals the burn filter's filtered means.
    #[test]
    fn plain_filter_matches_burn_filter() {
        use crate::kalman;
        let device = Device::flex();
        let model =
            crate::EkvaeConfig::new().with_image_size(8).with_state_dim(3).init(&device).unwrap();
        let plain = PlainModel::from_ekvae(&model).unwrap();
        let steps = 6;
        let obs: Vec<f32> = (0..steps * 2).map(|i| ((i as f32) * 0.37).sin()).collect();
        let acts: Vec<f32> = (0..steps).map(|i| ((i as f32) * 0.9).cos() * 1.5).collect();
        let out = kalman::filter(
            &model.prior.prior(),
            &model.transition,
            &model.observation.emission(),
            Tensor::from_data(TensorData::new(obs.clone(), [1, steps, 2]), &device),
            Tensor::from_data(TensorData::new(acts.clone(), [1, steps, 1]), &device),
        )
        .unwrap();
        let burn_means = values(out.mean_filt).unwrap();
        let mut belief = plain.prior_belief();
        for t in 0..steps {
            if t > 0 {
                belief = plain.predict(&belief, &[f64::from(acts[t - 1])]);
            }
            let a = [f64::from(obs[2 * t]), f64::from(obs[2 * t + 1])];
            belief = plain.update(&belief, &a).unwrap();
            for i in 0..3 {
                let want = burn_means[t * 3 + i];
                assert!(
                    (belief.mean[i] - want).abs() < 1e-4,
                    "t {t}: plain {:?}, burn {want}",
                    belief.mean
                );
            }
        }
    }
}
