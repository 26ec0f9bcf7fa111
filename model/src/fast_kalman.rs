//! The EKVAE's extended Kalman filter and FFBS sample over a batch in plain `f64` Rust, with
//! hand-derived backward passes, and how they enter burn's autodiff graph in the training
//! objective.
//!
//! # Why
//!
//! [`crate::kalman::filter`] is the reference: generic over any [`crate::kalman::Transition`],
//! differentiated by burn. But the filter is sequential: at the default sizes (T = 50, m = 2,
//! the mixing network inside every step) it is about 50 small tensor operations per step,
//! 2,600 forward and as many backward, each paying burn's per-operation overhead for a few
//! hundred numbers. The arithmetic itself is tiny (B·T·(n³ + m n² + H (n + K)) ≈ 10⁶
//! multiply-adds), so a plain loop does it in about a millisecond (1.2 ms for the filter at
//! B = 32 on one thread, mostly the mixing network's `tanh`).
//!
//! # How it enters the graph
//!
//! Without a custom burn operation, by a linear surrogate, exactly:
//!
//! 1. [`PlainFilter::run`] filters the batch in `f64` from the current values of the
//!    auxiliary observations `a`, `H`, `R`, the prior and the transition's weights;
//!    [`PlainSample::run`] draws the FFBS sample `z` with its `log q` (backward kernel,
//!    Cholesky factors, the backward recursion). Both keep what their backward pass needs.
//! 2. The caller's other rate terms that read `z` (`log p(a|z)`, `log p(z_1)`, the transition
//!    density) are differentiated once in burn with respect to `z` alone, on a small graph
//!    with the parameters detached.
//! 3. [`PlainSample::backward`] and [`PlainFilter::backward`] carry `∂/∂z` and `∂/∂log q = 1`
//!    back by hand: to `a`, `H`, `R`, the prior's mean and variance, and to the transition's
//!    `(F_t, B_t, q_t)` at every step, including the path through the mixing network's input
//!    `μ_{t−1|t−1}`.
//! 4. The training graph gets `z` as a constant and `log q` as its value plus
//!    `s − detach(s)`, with `s = Σ ⟨ḡ, x⟩` over those inputs `x` per sequence (the
//!    transition's `(F_t, B_t, q_t)` re-evaluated in one batched call at the detached
//!    filtered means). Its value is zero and its gradient is exactly that of `log q` plus the
//!    caller's `z` terms through `z`, so burn's backward reaches the encoder and every
//!    parameter as before; the caller's `z` terms, evaluated on the constant `z` with the
//!    parameters attached, add their direct dependence on the parameters.
//!
//! Tested against the burn reference (values and the gradients of the whole objective, f64) and
//! against finite differences; see `docs/model.md` for the measured speed.

// The small matrix loops index several arrays with the same (i, j), as the formulas read.
#![allow(clippy::needless_range_loop)]

use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

use crate::kalman::{self, Emission, FilterOutput, KalmanConfig, PosteriorSample, Prior};
use crate::linalg::LN_2PI;
use crate::plain::{PlainTransition, values};
use crate::ssm::{LocallyLinearTransition, VARIANCE_FLOOR};
use crate::{Error, Result};
use ekvae_numerics::dense;

/// The inputs of [`PlainFilter::run`], as values.
#[derive(Debug, Clone)]
pub struct FilterInputs {
    /// Number of sequences B.
    pub batch: usize,
    /// Steps per sequence T.
    pub steps: usize,
    /// Mean of `p(z_0)`, `[n]`.
    pub prior_mean: Vec<f64>,
    /// Variances of `p(z_0)`, `[n]`.
    pub prior_var: Vec<f64>,
    /// `H`, `[m, n]`.
    pub h: Vec<f64>,
    /// Diagonal of `R`, `[m]`.
    pub r: Vec<f64>,
    /// Observations `a`, `[B, T, m]`.
    pub obs: Vec<f64>,
    /// Actions, `[B, T, k]` (`actions[:, t−1]` drives `t−1 → t`).
    pub actions: Vec<f64>,
    /// The transition's weights.
    pub transition: PlainTransition,
    /// α uniform (the transition's `frozen_mixing`).
    pub frozen_mixing: bool,
}

impl FilterInputs {
    /// The values of burn tensors and modules (read once; no gradient).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] on inconsistent sizes.
    pub fn from_burn(
        prior: &Prior,
        transition: &LocallyLinearTransition,
        emission: &Emission,
        obs: Tensor<3>,
        actions: Tensor<3>,
    ) -> Result<Self> {
        let [batch, steps, _] = obs.dims();
        Ok(Self {
            batch,
            steps,
            prior_mean: values(prior.mean.clone())?,
            prior_var: values(prior.var.clone())?,
            h: values(emission.h.clone())?,
            r: values(emission.r_diag.clone())?,
            obs: values(obs)?,
            actions: values(actions)?,
            transition: PlainTransition::from_burn(transition)?,
            frozen_mixing: transition.frozen_mixing,
        })
    }
}

impl FilterInputs {
    /// The inputs of the sequences in `range` only.
    pub fn sub_batch(&self, range: std::ops::Range<usize>) -> Self {
        let (t, m, k) = (self.steps, self.r.len(), self.transition.k);
        Self {
            batch: range.len(),
            steps: t,
            prior_mean: self.prior_mean.clone(),
            prior_var: self.prior_var.clone(),
            h: self.h.clone(),
            r: self.r.clone(),
            obs: self.obs[range.start * t * m..range.end * t * m].to_vec(),
            actions: self.actions[range.start * t * k..range.end * t * k].to_vec(),
            transition: self.transition.clone(),
            frozen_mixing: self.frozen_mixing,
        }
    }
}

/// Cotangents of the filter's outputs (each in the output's layout; an empty vector is zero).
#[derive(Debug, Clone, Default)]
pub struct OutputCotangents {
    /// Of `mean_pred`, `[B, T, n]`.
    pub mean_pred: Vec<f64>,
    /// Of `cov_pred`, `[B, T, n, n]`.
    pub cov_pred: Vec<f64>,
    /// Of `mean_filt`, `[B, T, n]`.
    pub mean_filt: Vec<f64>,
    /// Of `cov_filt`, `[B, T, n, n]`.
    pub cov_filt: Vec<f64>,
    /// Of `f`, `[B, T, n, n]` (step 0, the constant identity, is ignored).
    pub f: Vec<f64>,
    /// Of `q_diag`, `[B, T, n]` (step 0 is the prior variance).
    pub q: Vec<f64>,
    /// Of `log_likelihood`, `[B]`.
    pub log_likelihood: Vec<f64>,
}

/// Gradients of the filter's inputs, per sequence (the batch's sequences are independent, so
/// the gradient of a sum of per-sequence terms splits by sequence).
#[derive(Debug, Clone)]
pub struct InputGradients {
    /// Of `a`, `[B, T, m]`.
    pub obs: Vec<f64>,
    /// Of `H`, `[B, m, n]`.
    pub h: Vec<f64>,
    /// Of `R`'s diagonal, `[B, m]`.
    pub r: Vec<f64>,
    /// Of the prior mean, `[B, n]`.
    pub prior_mean: Vec<f64>,
    /// Of the prior variances, `[B, n]`.
    pub prior_var: Vec<f64>,
    /// Of the transition matrices `F_t`, `[B, T, n, n]` (step 0 zero).
    pub f: Vec<f64>,
    /// Of the control matrices `B_t`, `[B, T, n, k]` (step 0 zero).
    pub b: Vec<f64>,
    /// Of the process-noise variances `q_t`, `[B, T, n]` (step 0 zero; the prior's is in
    /// `prior_var`).
    pub q: Vec<f64>,
}

impl InputGradients {
    /// The gradients of consecutive sub-batches, as one batch.
    pub fn concat(parts: Vec<Self>) -> Self {
        let cat = |f: fn(&Self) -> &Vec<f64>| -> Vec<f64> {
            parts.iter().flat_map(|p| f(p).iter().copied()).collect()
        };
        Self {
            obs: cat(|p| &p.obs),
            h: cat(|p| &p.h),
            r: cat(|p| &p.r),
            prior_mean: cat(|p| &p.prior_mean),
            prior_var: cat(|p| &p.prior_var),
            f: cat(|p| &p.f),
            b: cat(|p| &p.b),
            q: cat(|p| &p.q),
        }
    }
}

/// A forward pass of the extended Kalman filter over a batch, with its tape.
///
/// The same algorithm as [`crate::kalman::filter`] with the [`LocallyLinearTransition`]:
/// predict with `(F, B, q) = Σ_c α_c (F_c, B_c, q_c)`, `α = softmax(MLP(μ_{t−1|t−1}, u_{t−1}))`,
/// `P_{t|t−1} = sym(F P Fᵀ) + diag q`, then one scalar Joseph-form update per component of `a_t`.
#[derive(Debug, Clone)]
pub struct PlainFilter {
    inputs: FilterInputs,
    n: usize,
    m: usize,
    /// `μ_{t|t−1}`, `[B, T, n]`.
    pub mean_pred: Vec<f64>,
    /// `P_{t|t−1}`, `[B, T, n, n]`.
    pub cov_pred: Vec<f64>,
    /// `μ_{t|t}`, `[B, T, n]`.
    pub mean_filt: Vec<f64>,
    /// `P_{t|t}`, `[B, T, n, n]`.
    pub cov_filt: Vec<f64>,
    /// `F_t`, `[B, T, n, n]` (step 0 the identity).
    pub f: Vec<f64>,
    /// `B_t`, `[B, T, n, k]` (step 0 zero).
    pub b: Vec<f64>,
    /// `q_t`, `[B, T, n]` (step 0 the prior variance).
    pub q: Vec<f64>,
    /// `log p(a_{0:T−1})`, `[B]`.
    pub log_likelihood: Vec<f64>,
    /// tanh activations of the mixing network, `[B, T, H]`.
    hidden: Vec<f64>,
    /// α, `[B, T, K]`.
    alpha: Vec<f64>,
    /// Per scalar update (b, t, i): the mean and covariance before it, `P hᵢᵀ`, the gain,
    /// the innovation variance and the innovation.
    upd_mean: Vec<f64>,
    upd_cov: Vec<f64>,
    upd_ph: Vec<f64>,
    upd_gain: Vec<f64>,
    upd_s: Vec<f64>,
    upd_v: Vec<f64>,
}

impl PlainFilter {
    /// Filters every sequence.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] on inconsistent sizes; [`Error::NotPositiveDefinite`] if the
    /// log-likelihood is not finite (as the reference filter).
    pub fn run(inputs: FilterInputs) -> Result<Self> {
        let tr = &inputs.transition;
        let (n, k, hd, nb) = (tr.n, tr.k, tr.hidden, tr.bases);
        let (batch, steps) = (inputs.batch, inputs.steps);
        let m = inputs.r.len();
        let sizes = [
            ("prior mean", inputs.prior_mean.len(), n),
            ("prior variance", inputs.prior_var.len(), n),
            ("H", inputs.h.len(), m * n),
            ("observations", inputs.obs.len(), batch * steps * m),
            ("actions", inputs.actions.len(), batch * steps * k),
        ];
        for (what, got, want) in sizes {
            if got != want || batch == 0 || steps == 0 || m == 0 {
                return Err(Error::ShapeMismatch(format!(
                    "plain filter: {what} has {got} values, expected {want} (B = {batch}, T = {steps}, m = {m}, n = {n}, k = {k})"
                )));
            }
        }
        if n > 8 {
            return Err(Error::ShapeMismatch(format!(
                "plain filter: state dimension {n} is above the model's limit of 8"
            )));
        }
        let (nn, bt_all) = (n * n, batch * steps);
        let mut out = Self {
            n,
            m,
            mean_pred: vec![0.0; bt_all * n],
            cov_pred: vec![0.0; bt_all * nn],
            mean_filt: vec![0.0; bt_all * n],
            cov_filt: vec![0.0; bt_all * nn],
            f: vec![0.0; bt_all * nn],
            b: vec![0.0; bt_all * n * k],
            q: vec![0.0; bt_all * n],
            log_likelihood: vec![0.0; batch],
            hidden: vec![0.0; bt_all * hd],
            alpha: vec![0.0; bt_all * nb],
            upd_mean: vec![0.0; bt_all * m * n],
            upd_cov: vec![0.0; bt_all * m * nn],
            upd_ph: vec![0.0; bt_all * m * n],
            upd_gain: vec![0.0; bt_all * m * n],
            upd_s: vec![0.0; bt_all * m],
            upd_v: vec![0.0; bt_all * m],
            inputs,
        };
        let mut mp = vec![0.0; n];
        let mut pp = vec![0.0; nn];
        let mut fm = vec![0.0; nn];
        let mut bm = vec![0.0; n * k];
        let mut qv = vec![0.0; n];
        let mut tmp = vec![0.0; nn];
        let mut ph = vec![0.0; n];
        let mut gain = vec![0.0; n];
        for bi in 0..batch {
            let mut ll = 0.0;
            for t in 0..steps {
                let bt = bi * steps + t;
                let inp = &out.inputs;
                if t == 0 {
                    mp.copy_from_slice(&inp.prior_mean);
                    pp.fill(0.0);
                    fm.fill(0.0);
                    bm.fill(0.0);
                    for i in 0..n {
                        pp[i * n + i] = inp.prior_var[i];
                        fm[i * n + i] = 1.0;
                    }
                    qv.copy_from_slice(&inp.prior_var);
                } else {
                    let prev = bt - 1;
                    let mprev = &out.mean_filt[prev * n..(prev + 1) * n];
                    let pprev = &out.cov_filt[prev * nn..(prev + 1) * nn];
                    let u = &inp.actions[prev * k..(prev + 1) * k];
                    let alpha = &mut out.alpha[bt * nb..(bt + 1) * nb];
                    if inp.frozen_mixing {
                        alpha.fill(1.0 / nb as f64);
                    } else {
                        let fw = tr_of(inp).forward(mprev, u);
                        alpha.copy_from_slice(&fw.alpha);
                        out.hidden[bt * hd..(bt + 1) * hd].copy_from_slice(&fw.h);
                    }
                    let tr = tr_of(inp);
                    tr.mix_matrices(alpha, &mut fm, &mut bm);
                    qv.fill(VARIANCE_FLOOR);
                    for (c, a) in alpha.iter().enumerate() {
                        for (qi, qc) in qv.iter_mut().zip(&tr.q[c * n..(c + 1) * n]) {
                            *qi += a * qc;
                        }
                    }
                    for i in 0..n {
                        let mut s = 0.0;
                        for j in 0..n {
                            s += fm[i * n + j] * mprev[j];
                        }
                        let mut su = 0.0;
                        for j in 0..k {
                            su += bm[i * k + j] * u[j];
                        }
                        mp[i] = s + su;
                    }
                    // tmp = F P, X = tmp Fᵀ, P_pred = (X + Xᵀ)/2 + diag q.
                    for i in 0..n {
                        for j in 0..n {
                            let mut s = 0.0;
                            for l in 0..n {
                                s += fm[i * n + l] * pprev[l * n + j];
                            }
                            tmp[i * n + j] = s;
                        }
                    }
                    for i in 0..n {
                        for j in 0..n {
                            let mut s = 0.0;
                            for l in 0..n {
                                s += tmp[i * n + l] * fm[j * n + l];
                            }
                            pp[i * n + j] = s;
                        }
                    }
                    for i in 0..n {
                        for j in 0..i {
                            let avg = 0.5 * (pp[i * n + j] + pp[j * n + i]);
                            pp[i * n + j] = avg;
                            pp[j * n + i] = avg;
                        }
                        pp[i * n + i] += qv[i];
                    }
                }
                out.mean_pred[bt * n..(bt + 1) * n].copy_from_slice(&mp);
                out.cov_pred[bt * nn..(bt + 1) * nn].copy_from_slice(&pp);
                out.f[bt * nn..(bt + 1) * nn].copy_from_slice(&fm);
                out.b[bt * n * k..(bt + 1) * n * k].copy_from_slice(&bm);
                out.q[bt * n..(bt + 1) * n].copy_from_slice(&qv);

                // Scalar Joseph-form updates, as the reference: with k = P hᵀ / s,
                // P ← (P + s k kᵀ) − (k phᵀ + ph kᵀ).
                let (mf, pf) = (&mut mp, &mut pp);
                for i in 0..m {
                    let u_idx = bt * m + i;
                    let h = &out.inputs.h[i * n..(i + 1) * n];
                    out.upd_mean[u_idx * n..(u_idx + 1) * n].copy_from_slice(mf);
                    out.upd_cov[u_idx * nn..(u_idx + 1) * nn].copy_from_slice(pf);
                    for j in 0..n {
                        ph[j] = (0..n).map(|l| pf[j * n + l] * h[l]).sum();
                    }
                    let s = ph.iter().zip(h).map(|(p, h)| p * h).sum::<f64>() + out.inputs.r[i];
                    for j in 0..n {
                        gain[j] = ph[j] / s;
                    }
                    let v =
                        out.inputs.obs[u_idx] - mf.iter().zip(h).map(|(x, h)| x * h).sum::<f64>();
                    for j in 0..n {
                        mf[j] += gain[j] * v;
                    }
                    for j in 0..n {
                        for l in 0..n {
                            pf[j * n + l] = (pf[j * n + l] + gain[j] * gain[l] * s)
                                - (gain[j] * ph[l] + ph[j] * gain[l]);
                        }
                    }
                    ll -= 0.5 * (v * v / s + s.ln());
                    out.upd_ph[u_idx * n..(u_idx + 1) * n].copy_from_slice(&ph);
                    out.upd_gain[u_idx * n..(u_idx + 1) * n].copy_from_slice(&gain);
                    out.upd_s[u_idx] = s;
                    out.upd_v[u_idx] = v;
                }
                out.mean_filt[bt * n..(bt + 1) * n].copy_from_slice(&mp);
                out.cov_filt[bt * nn..(bt + 1) * nn].copy_from_slice(&pp);
            }
            out.log_likelihood[bi] = ll - 0.5 * (steps * m) as f64 * LN_2PI;
        }
        if out.log_likelihood.iter().any(|l| !l.is_finite()) {
            return Err(Error::NotPositiveDefinite {
                what: "innovation variance (log-likelihood not finite)",
            });
        }
        Ok(out)
    }

    /// The batch size B.
    pub fn batch(&self) -> usize {
        self.inputs.batch
    }

    /// The steps per sequence T.
    pub fn steps(&self) -> usize {
        self.inputs.steps
    }

    /// The outputs as burn tensors of `dtype` on `device` (leaves requiring gradients when
    /// `track` is set, on an autodiff device), in the layout of [`kalman::filter`].
    pub fn to_output(&self, device: &Device, dtype: DType, track: bool) -> FilterOutput {
        let (b, t, n) = (self.inputs.batch, self.inputs.steps, self.n);
        let leaf3 = |v: &[f64]| {
            let x = Tensor::<3>::from_data(TensorData::new(v.to_vec(), [b, t, n]), (device, dtype));
            if track { x.require_grad() } else { x }
        };
        let leaf4 = |v: &[f64]| {
            let x =
                Tensor::<4>::from_data(TensorData::new(v.to_vec(), [b, t, n, n]), (device, dtype));
            if track { x.require_grad() } else { x }
        };
        FilterOutput {
            mean_pred: leaf3(&self.mean_pred),
            cov_pred: leaf4(&self.cov_pred),
            mean_filt: leaf3(&self.mean_filt),
            cov_filt: leaf4(&self.cov_filt),
            f: leaf4(&self.f),
            q_diag: leaf3(&self.q),
            log_likelihood: Tensor::from_data(
                TensorData::new(self.log_likelihood.clone(), [b]),
                (device, dtype),
            ),
            config: KalmanConfig::default(),
        }
    }

    /// Carries cotangents of the outputs back to the inputs (reverse-mode, by hand; each line
    /// below undoes one line of [`PlainFilter::run`]).
    pub fn backward(&self, cot: &OutputCotangents) -> InputGradients {
        let inp = &self.inputs;
        let tr = &inp.transition;
        let (n, m, k, hd, nb) = (self.n, self.m, tr.k, tr.hidden, tr.bases);
        let (batch, steps, nn) = (inp.batch, inp.steps, n * n);
        let at = |v: &[f64], i: usize| if v.is_empty() { 0.0 } else { v[i] };
        let mut g = InputGradients {
            obs: vec![0.0; batch * steps * m],
            h: vec![0.0; batch * m * n],
            r: vec![0.0; batch * m],
            prior_mean: vec![0.0; batch * n],
            prior_var: vec![0.0; batch * n],
            f: vec![0.0; batch * steps * nn],
            b: vec![0.0; batch * steps * n * k],
            q: vec![0.0; batch * steps * n],
        };
        let mut gm = vec![0.0; n];
        let mut gp = vec![0.0; nn];
        let mut gk = vec![0.0; n];
        let mut gph = vec![0.0; n];
        let mut sym = vec![0.0; nn];
        let mut tmp = vec![0.0; nn];
        let mut gf = vec![0.0; nn];
        let mut galpha = vec![0.0; nb];
        let mut gpre = vec![0.0; hd];
        for bi in 0..batch {
            let gl = at(&cot.log_likelihood, bi);
            // Cotangents of μ_{t|t}, P_{t|t} carried from step t + 1.
            let mut cm = vec![0.0; n];
            let mut cp = vec![0.0; nn];
            for t in (0..steps).rev() {
                let bt = bi * steps + t;
                for j in 0..n {
                    gm[j] = cm[j] + at(&cot.mean_filt, bt * n + j);
                }
                for j in 0..nn {
                    gp[j] = cp[j] + at(&cot.cov_filt, bt * nn + j);
                }
                for i in (0..m).rev() {
                    let u_idx = bt * m + i;
                    let h = &inp.h[i * n..(i + 1) * n];
                    let ph = &self.upd_ph[u_idx * n..(u_idx + 1) * n];
                    let kk = &self.upd_gain[u_idx * n..(u_idx + 1) * n];
                    let mb = &self.upd_mean[u_idx * n..(u_idx + 1) * n];
                    let pb = &self.upd_cov[u_idx * nn..(u_idx + 1) * nn];
                    let (s, v) = (self.upd_s[u_idx], self.upd_v[u_idx]);
                    // ℓ −= ½ (v²/s + ln s).
                    let mut gv = -gl * v / s;
                    let mut gs = gl * 0.5 * (v * v / (s * s) - 1.0 / s);
                    // μ' = μ + k v.
                    for j in 0..n {
                        gk[j] = gm[j] * v;
                        gv += gm[j] * kk[j];
                    }
                    // P' = P + s k kᵀ − k phᵀ − ph kᵀ (P's own cotangent passes unchanged).
                    for j in 0..n {
                        let (mut sk, mut sph) = (0.0, 0.0);
                        for l in 0..n {
                            let gsym = gp[j * n + l] + gp[l * n + j];
                            sk += gsym * kk[l];
                            sph += gsym * ph[l];
                            gs += gp[j * n + l] * kk[j] * kk[l];
                        }
                        gk[j] += s * sk - sph;
                        gph[j] = -sk;
                    }
                    // v = y − h μ.
                    g.obs[u_idx] += gv;
                    for j in 0..n {
                        gm[j] -= gv * h[j];
                        g.h[(bi * m + i) * n + j] -= gv * mb[j];
                    }
                    // k = ph / s.
                    let mut kph = 0.0;
                    for j in 0..n {
                        gph[j] += gk[j] / s;
                        kph += gk[j] * ph[j];
                    }
                    gs -= kph / (s * s);
                    // s = h·ph + r.
                    for j in 0..n {
                        g.h[(bi * m + i) * n + j] += gs * ph[j];
                        gph[j] += gs * h[j];
                    }
                    g.r[bi * m + i] += gs;
                    // ph = P hᵀ.
                    for j in 0..n {
                        for l in 0..n {
                            gp[j * n + l] += gph[j] * h[l];
                            g.h[(bi * m + i) * n + l] += gph[j] * pb[j * n + l];
                        }
                    }
                }
                for j in 0..n {
                    gm[j] += at(&cot.mean_pred, bt * n + j);
                }
                for j in 0..nn {
                    gp[j] += at(&cot.cov_pred, bt * nn + j);
                }
                if t == 0 {
                    for j in 0..n {
                        g.prior_mean[bi * n + j] += gm[j];
                        g.prior_var[bi * n + j] += gp[j * n + j] + at(&cot.q, bt * n + j);
                    }
                    continue;
                }
                let prev = bt - 1;
                let fm = &self.f[bt * nn..(bt + 1) * nn];
                let mprev = &self.mean_filt[prev * n..(prev + 1) * n];
                let pprev = &self.cov_filt[prev * nn..(prev + 1) * nn];
                let u = &inp.actions[prev * k..(prev + 1) * k];
                // P_pred = sym(F P Fᵀ) + diag q: S = (G + Gᵀ)/2.
                for i in 0..n {
                    for j in 0..n {
                        sym[i * n + j] = 0.5 * (gp[i * n + j] + gp[j * n + i]);
                    }
                }
                let gq = &mut g.q[bt * n..(bt + 1) * n];
                for j in 0..n {
                    gq[j] = gp[j * n + j] + at(&cot.q, bt * n + j);
                }
                // gF = S F Pᵀ + Sᵀ F P + gμ μ_prevᵀ (+ the output's own).
                for i in 0..n {
                    for j in 0..n {
                        let mut s = 0.0;
                        for l in 0..n {
                            s += sym[i * n + l] * fm[l * n + j];
                        }
                        tmp[i * n + j] = s; // S F
                    }
                }
                for i in 0..n {
                    for j in 0..n {
                        let mut s = 0.0;
                        for l in 0..n {
                            // (S F Pᵀ)_ij + (Sᵀ F P)_ij with S symmetric: S F (Pᵀ + P).
                            s += tmp[i * n + l] * (pprev[j * n + l] + pprev[l * n + j]);
                        }
                        gf[i * n + j] = s + gm[i] * mprev[j] + at(&cot.f, bt * nn + i * n + j);
                    }
                }
                g.f[bt * nn..(bt + 1) * nn].copy_from_slice(&gf);
                let gb = &mut g.b[bt * n * k..(bt + 1) * n * k];
                for i in 0..n {
                    for j in 0..k {
                        gb[i * k + j] = gm[i] * u[j];
                    }
                }
                // Cotangents of μ_{t−1|t−1}, P_{t−1|t−1}: Fᵀ gμ and Fᵀ S F.
                for j in 0..n {
                    cm[j] = (0..n).map(|i| fm[i * n + j] * gm[i]).sum();
                }
                for i in 0..n {
                    for j in 0..n {
                        let mut s = 0.0;
                        for l in 0..n {
                            s += fm[l * n + i] * tmp[l * n + j];
                        }
                        cp[i * n + j] = s;
                    }
                }
                // Through α = softmax(W₂ᵀ tanh(W₁ᵀ [μ; u] + b₁) + b₂) to μ_{t−1|t−1}.
                if !inp.frozen_mixing {
                    let alpha = &self.alpha[bt * nb..(bt + 1) * nb];
                    let hid = &self.hidden[bt * hd..(bt + 1) * hd];
                    let gb = &g.b[bt * n * k..(bt + 1) * n * k];
                    let gq = &g.q[bt * n..(bt + 1) * n];
                    let mut mean = 0.0;
                    for c in 0..nb {
                        let fc = &tr.f[c * nn..(c + 1) * nn];
                        let bc = &tr.b[c * n * k..(c + 1) * n * k];
                        let qc = &tr.q[c * n..(c + 1) * n];
                        galpha[c] = fc.iter().zip(&gf).map(|(a, b)| a * b).sum::<f64>()
                            + bc.iter().zip(gb).map(|(a, b)| a * b).sum::<f64>()
                            + qc.iter().zip(gq).map(|(a, b)| a * b).sum::<f64>();
                        mean += alpha[c] * galpha[c];
                    }
                    for j in 0..hd {
                        let w2 = &tr.w2[j * nb..(j + 1) * nb];
                        let gh: f64 = (0..nb).map(|c| w2[c] * alpha[c] * (galpha[c] - mean)).sum();
                        gpre[j] = gh * (1.0 - hid[j] * hid[j]);
                    }
                    for (i, cmi) in cm.iter_mut().enumerate() {
                        let w1 = &tr.w1[i * hd..(i + 1) * hd];
                        *cmi += w1.iter().zip(&gpre).map(|(a, b)| a * b).sum::<f64>();
                    }
                }
            }
        }
        g
    }
}

fn tr_of(inputs: &FilterInputs) -> &PlainTransition {
    &inputs.transition
}

// ---- small dense helpers (n × n, row-major) -------------------------------------------------

/// `a b` for `n × n` matrices.
fn mm(a: &[f64], b: &[f64], n: usize, out: &mut [f64]) {
    dense::mat_mul(a, b, n, n, n, out);
}

/// `a bᵀ`.
fn mm_t(a: &[f64], b: &[f64], n: usize, out: &mut [f64]) {
    dense::mat_mul_t(a, b, n, n, n, out);
}

/// `aᵀ b`.
fn mt_m(a: &[f64], b: &[f64], n: usize, out: &mut [f64]) {
    out[..n * n].fill(0.0);
    dense::add_mat_t_mul(a, b, n, n, n, out);
}

/// The Cholesky factor of `a + jitter I` (lower), or `None` if a pivot is not positive.
fn cholesky_jittered(a: &[f64], n: usize, jitter: f64, l: &mut [f64]) -> Option<()> {
    // n ≤ 8 (the model's limit): a stack buffer, no allocation per step.
    let mut shifted = [0.0; 64];
    shifted[..n * n].copy_from_slice(&a[..n * n]);
    for i in 0..n {
        shifted[i * n + i] += jitter;
    }
    dense::cholesky(&shifted[..n * n], n, l).ok()
}

/// The inverse of a lower-triangular `l` (forward substitution).
fn tril_inverse(l: &[f64], n: usize, out: &mut [f64]) {
    out.fill(0.0);
    for c in 0..n {
        out[c * n + c] = 1.0 / l[c * n + c];
        for i in c + 1..n {
            let s: f64 = (c..i).map(|k| l[i * n + k] * out[k * n + c]).sum();
            out[i * n + c] = -s / l[i * n + i];
        }
    }
}

/// The (symmetric) cotangent of `A` from that of its Cholesky factor `L` (`A = L Lᵀ`),
/// given `L⁻¹`: `sym(L⁻ᵀ Φ(Lᵀ L̄) L⁻¹)`, with `Φ` the lower triangle with a halved diagonal.
fn cholesky_backward(l: &[f64], linv: &[f64], gl: &[f64], n: usize, out: &mut [f64]) {
    let mut phi = vec![0.0; n * n];
    mt_m(l, gl, n, &mut phi);
    for i in 0..n {
        for j in i + 1..n {
            phi[i * n + j] = 0.0;
        }
        phi[i * n + i] *= 0.5;
    }
    let mut tmp = vec![0.0; n * n];
    mm(&phi, linv, n, &mut tmp); // Φ L⁻¹
    mt_m(linv, &tmp, n, out); // L⁻ᵀ Φ L⁻¹
    for i in 0..n {
        for j in 0..i {
            let avg = 0.5 * (out[i * n + j] + out[j * n + i]);
            out[i * n + j] = avg;
            out[j * n + i] = avg;
        }
    }
}

/// A joint FFBS sample over a [`PlainFilter`], with its tape: the same algorithm and values as
/// [`kalman::sample_posterior`] (backward kernel `J_t = P_{t|t} F_{t+1}ᵀ (P_{t+1|t} + εI)⁻¹`,
/// `Σ_t = sym((I − J F) P (I − J F)ᵀ + J Q Jᵀ)`, `z_t = μ_{t|t} + J_t (z_{t+1} − μ_{t+1|t}) +
/// chol(Σ_t + εI) ε_t`, and the exact `log q`).
#[derive(Debug, Clone)]
pub struct PlainSample {
    /// The sample, `[B, T, n]`.
    pub z: Vec<f64>,
    /// Its log-density, `[B]`.
    pub log_q: Vec<f64>,
    eps: Vec<f64>,
    /// Per (b, t): `J_t`, `(P_{t+1|t} + εI)⁻¹`, `I − J_t F_{t+1}`, `C = P_{t|t} F_{t+1}ᵀ`
    /// (zero at the last step), the factor `L_t` of the conditional covariance and `L_t⁻¹`.
    gain: Vec<f64>,
    pinv: Vec<f64>,
    a: Vec<f64>,
    cross: Vec<f64>,
    chol: Vec<f64>,
    chol_inv: Vec<f64>,
}

impl PlainSample {
    /// Draws the sample from standard normal `eps` `[B, T, n]`, with `jitter` on the diagonal
    /// of every factorised matrix.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for a wrong `eps`; [`Error::NotPositiveDefinite`] as the
    /// reference.
    pub fn run(filter: &PlainFilter, eps: Vec<f64>, jitter: f64) -> Result<Self> {
        let (batch, steps, n) = (filter.batch(), filter.steps(), filter.n);
        let nn = n * n;
        if eps.len() != batch * steps * n {
            return Err(Error::ShapeMismatch(format!(
                "FFBS noise has {} values, expected B·T·n = {}",
                eps.len(),
                batch * steps * n
            )));
        }
        let all = batch * steps;
        let mut out = Self {
            z: vec![0.0; all * n],
            log_q: vec![0.0; batch],
            gain: vec![0.0; all * nn],
            pinv: vec![0.0; all * nn],
            a: vec![0.0; all * nn],
            cross: vec![0.0; all * nn],
            chol: vec![0.0; all * nn],
            chol_inv: vec![0.0; all * nn],
            eps,
        };
        let mut lp = vec![0.0; nn];
        let mut lpinv = vec![0.0; nn];
        let mut tmp = vec![0.0; nn];
        let mut tmp2 = vec![0.0; nn];
        let mut sigma = vec![0.0; nn];
        let mut offset = vec![0.0; all * n];
        for bi in 0..batch {
            let mut lq = 0.0;
            for t in 0..steps {
                let bt = bi * steps + t;
                let pf = &filter.cov_filt[bt * nn..(bt + 1) * nn];
                let mf = &filter.mean_filt[bt * n..(bt + 1) * n];
                let off = &mut offset[bt * n..(bt + 1) * n];
                if t + 1 < steps {
                    let nx = bt + 1;
                    let f = &filter.f[nx * nn..(nx + 1) * nn];
                    let pp = &filter.cov_pred[nx * nn..(nx + 1) * nn];
                    let mp = &filter.mean_pred[nx * n..(nx + 1) * n];
                    let q = &filter.q[nx * n..(nx + 1) * n];
                    cholesky_jittered(pp, n, jitter, &mut lp)
                        .ok_or(Error::NotPositiveDefinite { what: "predicted covariance" })?;
                    tril_inverse(&lp, n, &mut lpinv);
                    let pinv = &mut out.pinv[bt * nn..(bt + 1) * nn];
                    mt_m(&lpinv, &lpinv, n, pinv); // L⁻ᵀ L⁻¹
                    let cross = &mut out.cross[bt * nn..(bt + 1) * nn];
                    mm_t(pf, f, n, cross); // P Fᵀ
                    let gain = &mut out.gain[bt * nn..(bt + 1) * nn];
                    mm(cross, pinv, n, gain);
                    let a = &mut out.a[bt * nn..(bt + 1) * nn];
                    mm(gain, f, n, a);
                    for i in 0..n {
                        for j in 0..n {
                            a[i * n + j] = f64::from(u8::from(i == j)) - a[i * n + j];
                        }
                    }
                    mm(a, pf, n, &mut tmp); // A P
                    mm_t(&tmp, a, n, &mut sigma); // A P Aᵀ
                    for i in 0..n {
                        for j in 0..n {
                            let jqj: f64 =
                                (0..n).map(|l| gain[i * n + l] * q[l] * gain[j * n + l]).sum();
                            tmp2[i * n + j] = sigma[i * n + j] + jqj;
                        }
                    }
                    for i in 0..n {
                        for j in 0..n {
                            sigma[i * n + j] = 0.5 * (tmp2[i * n + j] + tmp2[j * n + i]);
                        }
                    }
                    for i in 0..n {
                        off[i] = mf[i] - (0..n).map(|l| gain[i * n + l] * mp[l]).sum::<f64>();
                    }
                } else {
                    sigma.copy_from_slice(pf);
                    off.copy_from_slice(mf);
                }
                let chol = &mut out.chol[bt * nn..(bt + 1) * nn];
                cholesky_jittered(&sigma, n, jitter, chol).ok_or(Error::NotPositiveDefinite {
                    what: "backward conditional covariance",
                })?;
                tril_inverse(chol, n, &mut out.chol_inv[bt * nn..(bt + 1) * nn]);
                let e = &out.eps[bt * n..(bt + 1) * n];
                for i in 0..n {
                    off[i] += (0..=i).map(|l| chol[i * n + l] * e[l]).sum::<f64>();
                    lq -= 0.5 * e[i] * e[i] + chol[i * n + i].ln();
                }
            }
            out.log_q[bi] = lq - 0.5 * (steps * n) as f64 * LN_2PI;
            // z_{T−1} = a_{T−1}; z_t = a_t + J_t z_{t+1}.
            for t in (0..steps).rev() {
                let bt = bi * steps + t;
                for i in 0..n {
                    let mut v = offset[bt * n + i];
                    if t + 1 < steps {
                        let g = &out.gain[bt * nn + i * n..bt * nn + (i + 1) * n];
                        v += (0..n).map(|l| g[l] * out.z[(bt + 1) * n + l]).sum::<f64>();
                    }
                    out.z[bt * n + i] = v;
                }
            }
        }
        Ok(out)
    }

    /// Carries the cotangents of `z` `[B, T, n]` and `log q` `[B]` back to the filter's outputs.
    pub fn backward(&self, filter: &PlainFilter, gz_in: &[f64], glq: &[f64]) -> OutputCotangents {
        let (batch, steps, n) = (filter.batch(), filter.steps(), filter.n);
        let nn = n * n;
        let all = batch * steps;
        let mut cot = OutputCotangents {
            mean_pred: vec![0.0; all * n],
            cov_pred: vec![0.0; all * nn],
            mean_filt: vec![0.0; all * n],
            cov_filt: vec![0.0; all * nn],
            f: vec![0.0; all * nn],
            q: vec![0.0; all * n],
            log_likelihood: Vec::new(),
        };
        let mut gz = gz_in.to_vec();
        let mut gl = vec![0.0; nn];
        let mut gsig = vec![0.0; nn];
        let mut gj = vec![0.0; nn];
        let mut ga = vec![0.0; nn];
        let mut tmp = vec![0.0; nn];
        let mut tmp2 = vec![0.0; nn];
        for bi in 0..batch {
            // z_t = a_t + J_t z_{t+1}, forward in t: the cotangent of z_{t+1} collects J_tᵀ ḡz_t.
            for t in 0..steps.saturating_sub(1) {
                let bt = bi * steps + t;
                for j in 0..n {
                    let s: f64 =
                        (0..n).map(|i| self.gain[bt * nn + i * n + j] * gz[bt * n + i]).sum();
                    gz[(bt + 1) * n + j] += s;
                }
            }
            for t in 0..steps {
                let bt = bi * steps + t;
                let ga_t = &gz[bt * n..(bt + 1) * n]; // cotangent of a_t (and of the offset)
                let e = &self.eps[bt * n..(bt + 1) * n];
                let l = &self.chol[bt * nn..(bt + 1) * nn];
                // a_t = offset + L ε; log q −= Σ log L_ii.
                for i in 0..n {
                    for j in 0..n {
                        gl[i * n + j] = if j <= i { ga_t[i] * e[j] } else { 0.0 };
                    }
                    gl[i * n + i] -= glq[bi] / l[i * n + i];
                }
                cholesky_backward(l, &self.chol_inv[bt * nn..(bt + 1) * nn], &gl, n, &mut gsig);
                if t + 1 == steps {
                    for j in 0..n {
                        cot.mean_filt[bt * n + j] += ga_t[j];
                    }
                    for j in 0..nn {
                        cot.cov_filt[bt * nn + j] += gsig[j];
                    }
                    continue;
                }
                let nx = bt + 1;
                let jm = &self.gain[bt * nn..(bt + 1) * nn];
                let am = &self.a[bt * nn..(bt + 1) * nn];
                let pinv = &self.pinv[bt * nn..(bt + 1) * nn];
                let cross = &self.cross[bt * nn..(bt + 1) * nn];
                let pf = &filter.cov_filt[bt * nn..(bt + 1) * nn];
                let f = &filter.f[nx * nn..(nx + 1) * nn];
                let q = &filter.q[nx * n..(nx + 1) * n];
                let mp = &filter.mean_pred[nx * n..(nx + 1) * n];
                let zn = &self.z[nx * n..(nx + 1) * n];
                // z_t = a_t + J z_{t+1}: ḡJ = ḡz_t z_{t+1}ᵀ.
                for i in 0..n {
                    for j in 0..n {
                        gj[i * n + j] = ga_t[i] * zn[j];
                    }
                }
                // Σ = sym(A P Aᵀ + J Q Jᵀ), S̄ = ḡΣ (symmetric).
                mm(&gsig, am, n, &mut tmp); // S̄ A
                mm(&tmp, pf, n, &mut ga); // S̄ A P
                for v in ga.iter_mut() {
                    *v *= 2.0;
                }
                mt_m(am, &tmp, n, &mut tmp2); // Aᵀ S̄ A
                for j in 0..nn {
                    cot.cov_filt[bt * nn + j] += tmp2[j];
                }
                mm(&gsig, jm, n, &mut tmp); // S̄ J
                for i in 0..n {
                    for j in 0..n {
                        gj[i * n + j] += 2.0 * tmp[i * n + j] * q[j];
                    }
                }
                for j in 0..n {
                    // diag(Jᵀ S̄ J)_j = Σ_i J_ij (S̄ J)_ij
                    cot.q[nx * n + j] +=
                        (0..n).map(|i| jm[i * n + j] * tmp[i * n + j]).sum::<f64>();
                }
                // A = I − J F.
                mm_t(&ga, f, n, &mut tmp); // ḡA Fᵀ
                for j in 0..nn {
                    gj[j] -= tmp[j];
                }
                mt_m(jm, &ga, n, &mut tmp); // Jᵀ ḡA
                for j in 0..nn {
                    cot.f[nx * nn + j] -= tmp[j];
                }
                // offset = μ_{t|t} − J μ_{t+1|t}.
                for i in 0..n {
                    cot.mean_filt[bt * n + i] += ga_t[i];
                    for j in 0..n {
                        gj[i * n + j] -= ga_t[i] * mp[j];
                        cot.mean_pred[nx * n + j] -= jm[i * n + j] * ga_t[i];
                    }
                }
                // J = C M, M = (P_{t+1|t} + εI)⁻¹ (symmetric): ḡC = ḡJ M, ḡP_pred = −M Cᵀ ḡJ M.
                mm(&gj, pinv, n, &mut tmp); // ḡC
                mt_m(cross, &tmp, n, &mut tmp2); // Cᵀ ḡJ M
                let mut gpp = vec![0.0; nn];
                mm(pinv, &tmp2, n, &mut gpp);
                for j in 0..nn {
                    cot.cov_pred[nx * nn + j] -= gpp[j];
                }
                // C = P Fᵀ: ḡP += ḡC F, ḡF += ḡCᵀ P.
                mm(&tmp, f, n, &mut tmp2);
                for j in 0..nn {
                    cot.cov_filt[bt * nn + j] += tmp2[j];
                }
                mt_m(&tmp, pf, n, &mut tmp2);
                for j in 0..nn {
                    cot.f[nx * nn + j] += tmp2[j];
                }
            }
        }
        cot
    }
}

fn tensor<const D: usize>(v: Vec<f64>, shape: [usize; D], like: &Tensor<3>) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), (&like.device(), like.dtype()))
}

/// The FFBS sample of `z_{0:T−1}` and its `log q` for the EKVAE's rate, with the filter and
/// the sampler in plain `f64` (the module documentation gives the scheme).
///
/// `z_terms(z)` must return the caller's other rate terms that read `z`, per sequence `[B]`,
/// computed with the model's parameters detached; they are differentiated once here (with
/// respect to `z` only), to carry their dependence on `z` into the filter's inputs. On an
/// autodiff device the returned `z` is a constant and `log_q` carries, besides its own
/// gradient, that of `z_terms` through `z`; the caller must then evaluate its `z` terms on the
/// returned `z` with the parameters attached. On a plain device both are simply the values.
///
/// # Errors
/// As [`kalman::filter`] and [`kalman::sample_posterior`].
pub fn sample_posterior_plain(
    prior: &Prior,
    transition: &LocallyLinearTransition,
    emission: &Emission,
    obs: Tensor<3>,
    actions: Tensor<3>,
    eps: Tensor<3>,
    z_terms: impl FnOnce(Tensor<3>) -> Tensor<1>,
) -> Result<PosteriorSample> {
    let [b, t, _] = obs.dims();
    let device = obs.device();
    let dtype = obs.dtype();
    let inputs =
        FilterInputs::from_burn(prior, transition, emission, obs.clone(), actions.clone())?;
    let n = inputs.transition.n;
    if eps.dims() != [b, t, n] {
        return Err(Error::ShapeMismatch(format!(
            "eps has shape {:?}, expected [{b}, {t}, {n}]",
            eps.dims()
        )));
    }
    let jitter = KalmanConfig::default().jitter_for(dtype);
    let eps = values(eps)?;
    // The sequences are independent: filter and sample them in chunks on the thread pool.
    // Each sequence runs the same sequential code whatever the chunking, so the result does
    // not depend on the thread count.
    let chunks = chunk_ranges(b, rayon::current_num_threads());
    let parts: Vec<(PlainFilter, PlainSample)> = chunks
        .par_iter()
        .map(|range| -> Result<_> {
            let filter = PlainFilter::run(inputs.sub_batch(range.clone()))?;
            let sample = PlainSample::run(
                &filter,
                eps[range.start * t * n..range.end * t * n].to_vec(),
                jitter,
            )?;
            Ok((filter, sample))
        })
        .collect::<Result<_>>()?;
    let z_values: Vec<f64> = parts.iter().flat_map(|(_, s)| s.z.iter().copied()).collect();
    let lq_values: Vec<f64> = parts.iter().flat_map(|(_, s)| s.log_q.iter().copied()).collect();
    let z = tensor(z_values, [b, t, n], &obs);
    let log_q = tensor(lq_values, [b], &obs);
    if !device.is_autodiff() {
        return Ok(PosteriorSample { z, log_q });
    }

    // The gradient of the caller's z terms with respect to z (parameters detached).
    let z_leaf = z.clone().require_grad();
    let grads = z_terms(z_leaf.clone()).sum().backward();
    let gz = match z_leaf.grad(&grads) {
        Some(g) => values(g)?,
        None => vec![0.0; b * t * n],
    };
    let grads: Vec<InputGradients> = parts
        .par_iter()
        .zip(&chunks)
        .map(|((filter, sample), range)| {
            let gz = &gz[range.start * t * n..range.end * t * n];
            filter.backward(&sample.backward(filter, gz, &vec![1.0; range.len()]))
        })
        .collect();
    let g = InputGradients::concat(grads);
    let mean_filt: Vec<f64> = parts.iter().flat_map(|(f, _)| f.mean_filt.iter().copied()).collect();
    let surrogate = surrogate(n, &mean_filt, &g, prior, transition, emission, obs, actions);
    Ok(PosteriorSample { z, log_q: log_q + surrogate.clone() - surrogate.detach() })
}

/// `parts` contiguous ranges covering `0..len` (fewer when `len` is smaller).
fn chunk_ranges(len: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.clamp(1, len.max(1));
    (0..parts).map(|i| i * len / parts..(i + 1) * len / parts).filter(|r| !r.is_empty()).collect()
}

/// `Σ ⟨ḡ, x⟩` per sequence `[B]` over the filter's inputs `x` (see the module documentation).
#[allow(clippy::too_many_arguments)]
fn surrogate(
    n: usize,
    mean_filt: &[f64],
    g: &InputGradients,
    prior: &Prior,
    transition: &LocallyLinearTransition,
    emission: &Emission,
    obs: Tensor<3>,
    actions: Tensor<3>,
) -> Tensor<1> {
    let [b, t, m] = obs.dims();
    let k = actions.dims()[2];
    let like = obs.clone();
    let mut s = (tensor(g.obs.clone(), [b, t, m], &like) * obs).sum_dims(&[1, 2]).reshape([b]);
    s = s
        + (tensor(g.h.clone(), [b, m, n], &like) * emission.h.clone().unsqueeze_dim::<3>(0))
            .sum_dims(&[1, 2])
            .reshape([b]);
    s = s
        + (tensor(g.r.clone(), [b, m], &like) * emission.r_diag.clone().unsqueeze_dim::<2>(0))
            .sum_dim(1)
            .reshape([b]);
    s = s
        + (tensor(g.prior_mean.clone(), [b, n], &like) * prior.mean.clone().unsqueeze_dim::<2>(0))
            .sum_dim(1)
            .reshape([b]);
    s = s
        + (tensor(g.prior_var.clone(), [b, n], &like) * prior.var.clone().unsqueeze_dim::<2>(0))
            .sum_dim(1)
            .reshape([b]);
    if t < 2 {
        return s;
    }
    // The transition at every step t ≥ 1, at the detached μ_{t−1|t−1}, in one call.
    let rows = b * (t - 1);
    let pick = |v: &[f64], width: usize, from: usize| -> Vec<f64> {
        (0..b)
            .flat_map(|bi| {
                let start = (bi * t + from) * width;
                v[start..start + (t - 1) * width].iter().copied()
            })
            .collect()
    };
    let z_prev = tensor(pick(mean_filt, n, 0), [rows, n], &like);
    let u_prev = actions.narrow(1, 0, t - 1).reshape([rows, k]);
    let step = kalman::Transition::linearize(transition, z_prev, u_prev);
    let gf = tensor(pick(&g.f, n * n, 1), [rows, n, n], &like);
    let gb = tensor(pick(&g.b, n * k, 1), [rows, n, k], &like);
    let gq = tensor(pick(&g.q, n, 1), [rows, n], &like);
    let per_row = (gf * step.f).sum_dims(&[1, 2]).reshape([rows])
        + (gb * step.b).sum_dims(&[1, 2]).reshape([rows])
        + (gq * step.q_diag).sum_dim(1).reshape([rows]);
    s + per_row.reshape([b, t - 1]).sum_dim(1).reshape([b])
}

#[cfg(test)]
mod tests;
