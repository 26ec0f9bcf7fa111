//! Batched, differentiable extended Kalman filter, Rauch–Tung–Striebel
//! smoother and forward-filtering backward-sampling (FFBS).
//!
//! State-space model, for a batch of `B` sequences of length `T`
//! (state `z_t ∈ Rⁿ`, observation `y_t ∈ Rᵐ`, action `u_t ∈ Rᵏ`):
//!
//! ```text
//! z_0     ~ N(prior.mean, diag prior.var)
//! z_t     ~ N(F_t z_{t−1} + B_t u_{t−1}, diag q_t),   (F_t, B_t, q_t) = linearize(μ_{t−1|t−1}, u_{t−1})
//! y_t     ~ N(H z_t, diag r)
//! ```
//!
//! The locally-linear EKVAE transition is its own linearisation, so the
//! filter uses `F_t z + B_t u` as the prediction mean (no Taylor term).
//! Time index `t = 0 … T−1` here; `actions[:, t−1]` drives `t−1 → t` and
//! `actions[:, T−1]` is not used.
//!
//! Numerics: Cholesky factorisations ([`crate::linalg`]) instead of explicit
//! inverses of covariances, jitter on the diagonals that are factorised
//! ([`KalmanConfig::jitter`]), symmetrised covariances, Joseph-form update.
//! Quantities that do not depend on the backward recursion (smoother gains,
//! backward conditional covariances and their factors, the log-likelihood
//! terms) are computed in one batched pass over all time steps, so only a
//! couple of tensor ops per step remain sequential in the smoother and FFBS.
//!
//! Everything is differentiable through burn autodiff and works in f32 and
//! f64 (the dtype of `obs` decides; all inputs must share it).

use burn::tensor::{DType, Tensor};

use crate::error::{Error, Result};
use crate::linalg::{self, Cholesky, LN_2PI};

/// A linear-Gaussian transition for one step of a batch:
/// `z_t ~ N(f z_{t−1} + b u_{t−1}, diag q_diag)`.
///
/// The leading (batch) dimension may be `B` or 1 (shared by the batch).
#[derive(Debug, Clone)]
pub struct LinearGaussianStep {
    /// Transition matrices, `[B, n, n]`.
    pub f: Tensor<3>,
    /// Control matrices, `[B, n, k]`.
    pub b: Tensor<3>,
    /// Process-noise variances (diagonal of Q), `[B, n]`, positive.
    pub q_diag: Tensor<2>,
}

/// A (possibly state-dependent) transition that the extended Kalman filter
/// linearises around the filtered mean.
pub trait Transition {
    /// The linear-Gaussian step at `(z, u)`.
    ///
    /// # Shapes
    /// - `z`: `[B, n]` (the filtered mean `μ_{t−1|t−1}`)
    /// - `u`: `[B, k]` (the action `u_{t−1}`)
    fn linearize(&self, z: Tensor<2>, u: Tensor<2>) -> LinearGaussianStep;
}

/// A fixed linear-Gaussian transition (the same for every step and sequence).
#[derive(Debug, Clone)]
pub struct LinearTransition {
    /// Transition matrix, `[n, n]`.
    pub f: Tensor<2>,
    /// Control matrix, `[n, k]`.
    pub b: Tensor<2>,
    /// Process-noise variances, `[n]`.
    pub q_diag: Tensor<1>,
}

impl Transition for LinearTransition {
    fn linearize(&self, _z: Tensor<2>, _u: Tensor<2>) -> LinearGaussianStep {
        LinearGaussianStep {
            f: self.f.clone().unsqueeze_dim(0),
            b: self.b.clone().unsqueeze_dim(0),
            q_diag: self.q_diag.clone().unsqueeze_dim(0),
        }
    }
}

/// Linear-Gaussian emission `y_t ~ N(H z_t, diag r_diag)`.
#[derive(Debug, Clone)]
pub struct Emission {
    /// Observation matrix, `[m, n]`.
    pub h: Tensor<2>,
    /// Observation-noise variances, `[m]`, positive.
    pub r_diag: Tensor<1>,
}

/// Gaussian prior of the first state, `N(mean, diag var)`.
#[derive(Debug, Clone)]
pub struct Prior {
    /// `[n]`.
    pub mean: Tensor<1>,
    /// Variances, `[n]`, positive.
    pub var: Tensor<1>,
}

/// Numerical settings of the Kalman routines.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct KalmanConfig {
    /// Added to the diagonal of every matrix that is Cholesky-factorised
    /// (predicted covariances in the smoother, backward conditional
    /// covariances in FFBS; the filter's scalar updates factorise nothing). `None`: `1e-6` in f32,
    /// `1e-10` in f64 (and other dtypes: as f32).
    pub jitter: Option<f64>,
}

impl KalmanConfig {
    /// The jitter used for tensors of `dtype`.
    pub fn jitter_for(&self, dtype: DType) -> f64 {
        self.jitter.unwrap_or(match dtype {
            DType::F64 => 1e-10,
            _ => 1e-6,
        })
    }
}

/// Output of [`filter`]. Time runs along dimension 1.
#[derive(Debug, Clone)]
pub struct FilterOutput {
    /// Predicted means `μ_{t|t−1}`, `[B, T, n]` (`t = 0`: the prior mean).
    pub mean_pred: Tensor<3>,
    /// Predicted covariances `P_{t|t−1}`, `[B, T, n, n]`.
    pub cov_pred: Tensor<4>,
    /// Filtered means `μ_{t|t}`, `[B, T, n]`.
    pub mean_filt: Tensor<3>,
    /// Filtered covariances `P_{t|t}`, `[B, T, n, n]`.
    pub cov_filt: Tensor<4>,
    /// Transition matrices used for the prediction, `[B, T, n, n]`:
    /// `f[:, t]` maps `t−1 → t`; `f[:, 0]` is the identity (unused).
    pub f: Tensor<4>,
    /// Process-noise variances of the step into `t`, `[B, T, n]`, so that
    /// `cov_pred[:, t] = f[:, t] cov_filt[:, t−1] f[:, t]ᵀ + diag q_diag[:, t]`;
    /// `q_diag[:, 0]` is the prior variance.
    pub q_diag: Tensor<3>,
    /// `log p(obs_{0:T−1})` of the (extended) model, `[B]`.
    pub log_likelihood: Tensor<1>,
    /// The settings the filter ran with (reused by the smoother and FFBS).
    pub config: KalmanConfig,
}

/// Output of [`smooth`].
#[derive(Debug, Clone)]
pub struct SmootherOutput {
    /// Smoothed means `μ_{t|T}`, `[B, T, n]`.
    pub mean_smooth: Tensor<3>,
    /// Smoothed covariances `P_{t|T}`, `[B, T, n, n]`.
    pub cov_smooth: Tensor<4>,
    /// Smoother gains `J_t = P_{t|t} F_{t+1}ᵀ P_{t+1|t}⁻¹`, `[B, T, n, n]`; the last is 0.
    pub smoother_gain: Tensor<4>,
}

/// A joint posterior sample from [`sample_posterior`].
#[derive(Debug, Clone)]
pub struct PosteriorSample {
    /// The sample `z_{0:T−1}`, `[B, T, n]`.
    pub z: Tensor<3>,
    /// Exact log-density of `z` under the sampling distribution (the sum of
    /// the backward conditionals' log-densities), `[B]`.
    pub log_q: Tensor<1>,
}

fn shape_err(what: &'static str, expected: String, got: &[usize]) -> Error {
    Error::Shape { what, expected, got: got.to_vec() }
}

fn check_dtype(what: &'static str, expected: DType, got: DType) -> Result<()> {
    if expected == got { Ok(()) } else { Err(Error::DType { what, expected, got }) }
}

/// Runs the extended Kalman filter with the default [`KalmanConfig`].
///
/// The prediction for step `t ≥ 1` uses `actions[:, t−1]` and the transition
/// linearised at `(mean_filt[:, t−1], actions[:, t−1])`; step 0 predicts from
/// the prior.
///
/// # Shapes
/// - `obs`: `[B, T, m]`, `actions`: `[B, T, k]`
/// - `prior`: `[n]`; `emission.h`: `[m, n]`, `emission.r_diag`: `[m]`
///
/// # Errors
/// [`Error::Shape`] / [`Error::DType`] on inconsistent inputs,
/// [`Error::NotPositiveDefinite`] if the log-likelihood is not finite (a
/// non-positive variance, or NaN/inf in the inputs).
pub fn filter(
    prior: &Prior,
    trans: &impl Transition,
    emission: &Emission,
    obs: Tensor<3>,
    actions: Tensor<3>,
) -> Result<FilterOutput> {
    filter_with_config(prior, trans, emission, obs, actions, KalmanConfig::default())
}

/// [`filter`] with explicit numerical settings.
pub fn filter_with_config(
    prior: &Prior,
    trans: &impl Transition,
    emission: &Emission,
    obs: Tensor<3>,
    actions: Tensor<3>,
    config: KalmanConfig,
) -> Result<FilterOutput> {
    // ---- validation -------------------------------------------------------
    let [batch, steps, m] = obs.dims();
    let [n] = prior.mean.dims();
    if batch == 0 || steps == 0 || m == 0 || n == 0 {
        return Err(shape_err(
            "obs / prior.mean",
            "non-empty [B, T, m] and [n]".into(),
            &[batch, steps, m, n],
        ));
    }
    if prior.var.dims() != [n] {
        return Err(shape_err("prior.var", format!("[{n}]"), &prior.var.dims()));
    }
    if emission.h.dims() != [m, n] {
        return Err(shape_err("emission.h", format!("[m, n] = [{m}, {n}]"), &emission.h.dims()));
    }
    if emission.r_diag.dims() != [m] {
        return Err(shape_err("emission.r_diag", format!("[{m}]"), &emission.r_diag.dims()));
    }
    let [ab, at, k] = actions.dims();
    if ab != batch || at != steps {
        return Err(shape_err(
            "actions",
            format!("[B, T, k] with B = {batch}, T = {steps}"),
            &actions.dims(),
        ));
    }
    let dtype = obs.dtype();
    check_dtype("prior.mean", dtype, prior.mean.dtype())?;
    check_dtype("prior.var", dtype, prior.var.dtype())?;
    check_dtype("emission.h", dtype, emission.h.dtype())?;
    check_dtype("emission.r_diag", dtype, emission.r_diag.dtype())?;
    check_dtype("actions", dtype, actions.dtype())?;

    // ---- constants ---------------------------------------------------------
    let eye_n = linalg::eye_like(n, &obs); // [1, n, n]
    let h = emission.h.clone().unsqueeze_dim::<3>(0); // [1, m, n]
    let h_rows: Vec<Tensor<3>> = (0..m).map(|i| h.clone().narrow(1, i, 1)).collect(); // [1, 1, n]
    let h_cols: Vec<Tensor<3>> = h_rows.iter().map(|r| r.clone().transpose()).collect(); // [1, n, 1]
    let r_all = emission.r_diag.clone().reshape([1, 1, m]);
    let r_each: Vec<Tensor<3>> = (0..m).map(|i| r_all.clone().narrow(2, i, 1)).collect(); // [1, 1, 1]
    let obs_flat = obs.reshape([batch, steps * m, 1]); // [B, T·m, 1]
    let act_steps: Vec<(Tensor<2>, Tensor<3>)> = if steps > 1 {
        actions
            .narrow(1, 0, steps - 1)
            .split(1, 1)
            .into_iter()
            .map(|u| (u.clone().reshape([batch, k]), u)) // ([B, k], [B, 1, k])
            .collect()
    } else {
        Vec::new()
    };

    let mut mean_pred = Vec::with_capacity(steps);
    let mut cov_pred = Vec::with_capacity(steps);
    let mut mean_filt = Vec::with_capacity(steps);
    let mut cov_filt = Vec::with_capacity(steps);
    let mut fs = Vec::with_capacity(steps);
    let mut qs = Vec::with_capacity(steps); // [B, n] each
    let mut innovations = Vec::with_capacity(steps * m); // [B, 1, 1] each
    let mut innovation_vars = Vec::with_capacity(steps * m); // [B, 1, 1] each

    let mut m_prev: Option<Tensor<3>> = None; // μ_{t−1|t−1}, [B, n, 1]
    let mut p_prev: Option<Tensor<3>> = None; // P_{t−1|t−1}, [B, n, n]
    for t in 0..steps {
        // ---- predict -------------------------------------------------------
        let (m_p, p_p, f_t, q_t) = match (m_prev.take(), p_prev.take()) {
            (Some(m_f), Some(p_f)) => {
                let (u, u_row) = act_steps[t - 1].clone();
                let step = trans.linearize(m_f.clone().reshape([batch, n]), u);
                check_step(&step, batch, n, k, dtype)?;
                let f = step.f;
                // Matrix–vector products as broadcast multiply + sum: burn-flex
                // runs one gemm call per matrix, far slower at n = 4.
                let m_row = m_f.reshape([batch, 1, n]);
                let m_p = (f.clone() * m_row).sum_dim(2) + (step.b * u_row).sum_dim(2); // [B, n, 1]
                let p_p = linalg::symmetrize(f.clone().matmul(p_f).matmul(f.clone().transpose()))
                    + step.q_diag.clone().unsqueeze_dim::<3>(1) * eye_n.clone(); // [B, n, n]
                (m_p, p_p, f, step.q_diag)
            }
            _ => {
                let m_p = prior.mean.clone().reshape([1, n, 1]).expand([batch, n, 1]);
                let p_p =
                    (prior.var.clone().reshape([1, 1, n]) * eye_n.clone()).expand([batch, n, n]);
                (m_p, p_p, eye_n.clone(), prior.var.clone().unsqueeze_dim(0))
            }
        };

        // ---- update: one scalar Joseph-form update per observation component
        // (exactly the joint update, since R is diagonal). With a = I − k h,
        // the Joseph form a P aᵀ + r k kᵀ expands to (P + s k kᵀ) − (k phᵀ + ph kᵀ)
        // for any gain k (s = h P hᵀ + r, ph = P hᵀ), which is evaluated here
        // with element-wise ops only and is exactly symmetric when P is.
        let mut m_f = m_p.clone();
        let mut p_f = p_p.clone();
        for i in 0..m {
            let y = obs_flat.clone().narrow(1, t * m + i, 1); // [B, 1, 1]
            let ph = (p_f.clone() * h_rows[i].clone()).sum_dim(2); // P hᵀ, [B, n, 1]
            let s = (ph.clone() * h_cols[i].clone()).sum_dim(1) + r_each[i].clone(); // [B, 1, 1]
            let gain = ph.clone() / s.clone(); // k, [B, n, 1]
            let innov = y - (m_f.clone() * h_cols[i].clone()).sum_dim(1); // v, [B, 1, 1]
            m_f = m_f + gain.clone() * innov.clone();
            let ph_row = ph.clone().reshape([batch, 1, n]);
            let gain_row = gain.clone().reshape([batch, 1, n]);
            let cross = gain.clone() * ph_row + ph * gain_row.clone(); // k phᵀ + ph kᵀ
            p_f = (p_f + (gain * gain_row) * s.clone()) - cross;
            innovations.push(innov);
            innovation_vars.push(s);
        }

        qs.push(if q_t.dims()[0] == batch { q_t } else { q_t.expand([batch, n]) });
        mean_pred.push(m_p);
        cov_pred.push(p_p);
        fs.push(if f_t.dims()[0] == batch { f_t } else { f_t.expand([batch, n, n]) });
        mean_filt.push(m_f.clone());
        cov_filt.push(p_f.clone());
        m_prev = Some(m_f);
        p_prev = Some(p_f);
    }

    // ---- log-likelihood, batched over time: Σ_{t,i} log N(v_ti; 0, s_ti) -------
    let innov = Tensor::cat(innovations, 1); // [B, T·m, 1]
    let var = Tensor::cat(innovation_vars, 1); // [B, T·m, 1]
    let log_likelihood = (innov.square() / var.clone() + var.log())
        .sum_dim(1)
        .reshape([batch])
        .mul_scalar(-0.5)
        .sub_scalar(0.5 * (steps * m) as f64 * LN_2PI);
    if !linalg::all_finite(log_likelihood.clone()) {
        return Err(Error::NotPositiveDefinite {
            what: "innovation variance (log-likelihood not finite)",
        });
    }

    let stack_vec = |v: Vec<Tensor<3>>| -> Tensor<3> {
        let t: Tensor<4> = Tensor::stack(v, 1); // [B, T, n, 1]
        t.reshape([batch, steps, n])
    };
    Ok(FilterOutput {
        mean_pred: stack_vec(mean_pred),
        cov_pred: Tensor::stack(cov_pred, 1),
        mean_filt: stack_vec(mean_filt),
        cov_filt: Tensor::stack(cov_filt, 1),
        f: Tensor::stack(fs, 1),
        q_diag: Tensor::stack(qs, 1),
        log_likelihood,
        config,
    })
}

fn check_step(
    step: &LinearGaussianStep,
    batch: usize,
    n: usize,
    k: usize,
    dtype: DType,
) -> Result<()> {
    let [fb, f1, f2] = step.f.dims();
    if (fb != batch && fb != 1) || f1 != n || f2 != n {
        return Err(shape_err(
            "transition f",
            format!("[B or 1, {n}, {n}] with B = {batch}"),
            &step.f.dims(),
        ));
    }
    let [bb, b1, b2] = step.b.dims();
    if (bb != batch && bb != 1) || b1 != n || b2 != k {
        return Err(shape_err(
            "transition b",
            format!("[B or 1, {n}, {k}] with B = {batch}"),
            &step.b.dims(),
        ));
    }
    let [qb, q1] = step.q_diag.dims();
    if (qb != batch && qb != 1) || q1 != n {
        return Err(shape_err(
            "transition q_diag",
            format!("[B or 1, {n}] with B = {batch}"),
            &step.q_diag.dims(),
        ));
    }
    check_dtype("transition f", dtype, step.f.dtype())?;
    check_dtype("transition b", dtype, step.b.dtype())?;
    check_dtype("transition q_diag", dtype, step.q_diag.dtype())
}

/// The backward kernel of the smoothing posterior, batched over time:
/// `p(z_t | z_{t+1}, y_{0:t}) = N(offset_t + J_t z_{t+1}, Σ_t)` for `t < T−1`.
struct BackwardKernel {
    /// `J_t`, `[B, T−1, n, n]`.
    gain: Tensor<4>,
    /// `μ_{t|t} − J_t μ_{t+1|t}`, `[B, T−1, n, 1]`.
    offset: Tensor<4>,
    /// `Σ_t = P_{t|t} − J_t P_{t+1|t} J_tᵀ`, evaluated as
    /// `(I − J_t F_{t+1}) P_{t|t} (I − J_t F_{t+1})ᵀ + J_t Q_{t+1} J_tᵀ` (symmetrised), `[B, T−1, n, n]`.
    cond_cov: Tensor<4>,
}

fn backward_kernel(filtered: &FilterOutput) -> Result<Option<BackwardKernel>> {
    let [batch, steps, n] = filtered.mean_filt.dims();
    if steps < 2 {
        return Ok(None);
    }
    let jitter = filtered.config.jitter_for(filtered.mean_filt.dtype());
    let rows = batch * (steps - 1);
    let p_f = filtered.cov_filt.clone().narrow(1, 0, steps - 1).reshape([rows, n, n]); // P_{t|t}
    let p_p = filtered.cov_pred.clone().narrow(1, 1, steps - 1).reshape([rows, n, n]); // P_{t+1|t}
    let f = filtered.f.clone().narrow(1, 1, steps - 1).reshape([rows, n, n]); // F_{t+1}
    let m_f = filtered.mean_filt.clone().narrow(1, 0, steps - 1).reshape([rows, n, 1]);
    let m_p = filtered.mean_pred.clone().narrow(1, 1, steps - 1).reshape([rows, n, 1]);

    let q_row = filtered.q_diag.clone().narrow(1, 1, steps - 1).reshape([rows, 1, n]); // q_{t+1}
    let cross = linalg::bmm(p_f.clone(), f.clone().transpose()); // C = P_{t|t} F_{t+1}ᵀ, [rows, n, n]
    let chol_p = linalg::try_cholesky(p_p, jitter, "predicted covariance")?;
    let linv = linalg::tril_inverse(&chol_p);
    let gain = linalg::bmm(linalg::bmm(cross, linv.clone().transpose()), linv); // C P⁻¹
    // Σ = P_{t|t} − J P_{t+1|t} Jᵀ in Joseph-like form, a sum of PSD terms
    // (no cancellation): Σ = (I − J F) P_{t|t} (I − J F)ᵀ + J Q Jᵀ.
    let a = linalg::eye_like(n, &p_f) - linalg::bmm(gain.clone(), f);
    let cond_cov = linalg::symmetrize(
        linalg::bmm(linalg::bmm(a.clone(), p_f), a.transpose())
            + linalg::bmm(gain.clone() * q_row, gain.clone().transpose()),
    );
    let offset = m_f - linalg::mat_vec(gain.clone(), m_p);
    Ok(Some(BackwardKernel {
        gain: gain.reshape([batch, steps - 1, n, n]),
        offset: offset.reshape([batch, steps - 1, n, 1]),
        cond_cov: cond_cov.reshape([batch, steps - 1, n, n]),
    }))
}

/// Solves the backward affine recursions
/// `c_t ← c_t + G_t c_{t+1}` and (optionally) `C_t ← C_t + G_t C_{t+1} G_tᵀ`
/// for `t = T−2 … 0` (with `G_{T−1} = 0`) by a Hillis–Steele suffix scan.
///
/// Each element is the affine map `x ↦ c_t + G_t x` (and `X ↦ C_t + G_t X G_tᵀ`);
/// composing two gives `(G_a G_b, c_a + G_a c_b, C_a + G_a C_b G_aᵀ)`, so after
/// `⌈log₂ T⌉` levels of batched ops element `t` holds the composition of all
/// maps `t … T−1`, whose offset is the solution. This replaces `T` sequential
/// steps, each needing a per-step slice (whose backward in burn allocates a
/// zero tensor of the full `[B, T, …]` shape), by `O(log T)` ops.
///
/// # Shapes
/// - `gain`: `[B, T, n, n]` (last step 0), `offset`: `[B, T, n, 1]`, `cov`: `[B, T, n, n]`
fn affine_suffix_scan(
    gain: Tensor<4>,
    offset: Tensor<4>,
    cov: Option<Tensor<4>>,
) -> (Tensor<4>, Option<Tensor<4>>) {
    let [batch, steps, n, _] = gain.dims();
    let (device, dtype) = (gain.device(), gain.dtype());
    let eye = linalg::eye(n, &device, dtype).unsqueeze_dim::<4>(0); // [1, 1, n, n]
    let (mut g, mut c, mut cv) = (gain, offset, cov);
    let mut stride = 1;
    while stride < steps {
        let keep = steps - stride;
        // Element t + stride, padded with the identity map past the end.
        let shift =
            |x: Tensor<4>, pad: Tensor<4>| Tensor::cat(vec![x.narrow(1, stride, keep), pad], 1);
        let zeros_vec = Tensor::<4>::zeros([batch, stride, n, 1], (&device, dtype));
        let c_next = shift(c.clone(), zeros_vec);
        c = c + linalg::mat_vec4(g.clone(), c_next);
        if let Some(cov) = cv {
            let zeros_mat = Tensor::<4>::zeros([batch, stride, n, n], (&device, dtype));
            let cov_next = shift(cov.clone(), zeros_mat);
            cv = Some(cov + linalg::bmm4(linalg::bmm4(g.clone(), cov_next), g.clone().transpose()));
        }
        if 2 * stride < steps {
            let eye_pad = eye.clone().expand([batch, stride, n, n]);
            g = linalg::bmm4(g.clone(), shift(g, eye_pad));
        }
        stride *= 2;
    }
    (c, cv)
}

/// The gains `[B, T, n, n]` with a zero last step.
fn padded_gain(kernel: &BackwardKernel) -> Tensor<4> {
    let last = kernel.gain.zeros_like().narrow(1, 0, 1);
    Tensor::cat(vec![kernel.gain.clone(), last], 1)
}

/// Rauch–Tung–Striebel smoother over the output of [`filter`].
///
/// `μ_{t|T} = μ_{t|t} + J_t (μ_{t+1|T} − μ_{t+1|t})`,
/// `P_{t|T} = Σ_t + J_t P_{t+1|T} J_tᵀ` with `Σ_t = P_{t|t} − J_t P_{t+1|t} J_tᵀ`
/// (a sum of positive semi-definite terms; symmetrised). The gains and `Σ_t`
/// are computed for all steps at once; the backward recursion itself is an
/// affine suffix scan (`⌈log₂ T⌉` batched levels).
///
/// # Errors
/// [`Error::NotPositiveDefinite`] if a predicted covariance cannot be factorised.
pub fn smooth(filtered: &FilterOutput) -> Result<SmootherOutput> {
    let [batch, steps, n] = filtered.mean_filt.dims();
    let Some(kernel) = backward_kernel(filtered)? else {
        return Ok(SmootherOutput {
            mean_smooth: filtered.mean_filt.clone(),
            cov_smooth: filtered.cov_filt.clone(),
            smoother_gain: filtered.cov_filt.zeros_like(),
        });
    };
    let gain = padded_gain(&kernel);
    let m_last = filtered.mean_filt.clone().narrow(1, steps - 1, 1).reshape([batch, 1, n, 1]);
    let p_last = filtered.cov_filt.clone().narrow(1, steps - 1, 1);
    let offset = Tensor::cat(vec![kernel.offset, m_last], 1);
    let cov = Tensor::cat(vec![kernel.cond_cov, p_last], 1);
    let (mean, cov) = affine_suffix_scan(gain.clone(), offset, Some(cov));
    let cov = cov.unwrap_or_else(|| unreachable!("the scan returns the covariance it was given"));
    let cov_smooth =
        linalg::symmetrize(cov.reshape([batch * steps, n, n])).reshape([batch, steps, n, n]);
    Ok(SmootherOutput {
        mean_smooth: mean.reshape([batch, steps, n]),
        cov_smooth,
        smoother_gain: gain,
    })
}

/// Forward-filtering backward-sampling: a reparameterised joint sample of
/// `z_{0:T−1}` from the smoothing posterior, with its exact log-density.
///
/// `z_{T−1} = μ_{T−1|T−1} + L_{T−1} ε_{T−1}` with `L_{T−1} L_{T−1}ᵀ = P_{T−1|T−1}`;
/// for `t = T−2 … 0`: `z_t = μ_{t|t} + J_t (z_{t+1} − μ_{t+1|t}) + L_t ε_t`
/// with `L_t L_tᵀ = Σ_t = P_{t|t} − J_t P_{t+1|t} J_tᵀ` (+ jitter).
/// Since `z_t − mean_t = L_t ε_t`, `log q = Σ_t [−½|ε_t|² − log det L_t] − T n/2 ln 2π`,
/// the exact log-density of the sample under the (jittered) backward
/// conditionals it was drawn from; it equals
/// [`posterior_log_prob`]`(filtered, z)`. The factors are computed for all
/// steps at once; the backward recursion is an affine suffix scan.
///
/// # Shapes
/// - `eps`: `[B, T, n]`, standard normal draws (the caller owns the RNG).
///
/// # Errors
/// [`Error::Shape`] for a wrong `eps`, [`Error::NotPositiveDefinite`] if a
/// conditional covariance cannot be factorised.
pub fn sample_posterior(filtered: &FilterOutput, eps: Tensor<3>) -> Result<PosteriorSample> {
    let [batch, steps, n] = filtered.mean_filt.dims();
    if eps.dims() != [batch, steps, n] {
        return Err(shape_err("eps", format!("[{batch}, {steps}, {n}]"), &eps.dims()));
    }
    check_dtype("eps", filtered.mean_filt.dtype(), eps.dtype())?;
    let (chol, kernel) = conditional_factors(filtered)?;
    // L_t ε_t for all t at once.
    let noise = linalg::mat_vec(chol.factor.clone(), eps.clone().reshape([batch * steps, n, 1]))
        .reshape([batch, steps, n, 1]);
    let log_q = (eps.square().mul_scalar(0.5).sum_dims(&[1, 2]).reshape([batch])
        + chol.diag.log().reshape([batch, steps * n]).sum_dim(1).reshape([batch]))
    .neg()
    .sub_scalar(0.5 * (steps * n) as f64 * LN_2PI);

    let m_last = filtered.mean_filt.clone().narrow(1, steps - 1, 1).reshape([batch, 1, n, 1]);
    let z = match kernel {
        None => m_last + noise,
        Some(kernel) => {
            let gain = padded_gain(&kernel);
            // a_t = μ_{t|t} − J_t μ_{t+1|t} + L_t ε_t; z_t = a_t + J_t z_{t+1}.
            let offset = Tensor::cat(vec![kernel.offset, m_last], 1) + noise;
            affine_suffix_scan(gain, offset, None).0
        }
    };
    Ok(PosteriorSample { z: z.reshape([batch, steps, n]), log_q })
}

/// Cholesky factors `[B·T, n, n]` of the backward conditional covariances
/// (`Σ_0 … Σ_{T−2}`, then `P_{T−1|T−1}`), and the backward kernel.
fn conditional_factors(filtered: &FilterOutput) -> Result<(Cholesky, Option<BackwardKernel>)> {
    let [batch, steps, n] = filtered.mean_filt.dims();
    let jitter = filtered.config.jitter_for(filtered.mean_filt.dtype());
    let kernel = backward_kernel(filtered)?;
    let last = filtered.cov_filt.clone().narrow(1, steps - 1, 1); // [B, 1, n, n]
    let covs = match &kernel {
        Some(k) => Tensor::cat(vec![k.cond_cov.clone(), last], 1),
        None => last,
    };
    let chol = linalg::try_cholesky(
        covs.reshape([batch * steps, n, n]),
        jitter,
        "backward conditional covariance",
    )?;
    Ok((chol, kernel))
}

/// Log-density `[B]` of given trajectories `z` `[B, T, n]` under the FFBS
/// sampling distribution of [`sample_posterior`] (for a linear-Gaussian model
/// this is the smoothing posterior `p(z_{0:T−1} | y_{0:T−1})`).
///
/// # Errors
/// As [`sample_posterior`].
pub fn posterior_log_prob(filtered: &FilterOutput, z: Tensor<3>) -> Result<Tensor<1>> {
    let [batch, steps, n] = filtered.mean_filt.dims();
    if z.dims() != [batch, steps, n] {
        return Err(shape_err("z", format!("[{batch}, {steps}, {n}]"), &z.dims()));
    }
    check_dtype("z", filtered.mean_filt.dtype(), z.dtype())?;
    let (chol, kernel) = conditional_factors(filtered)?;
    let z4 = z.clone().reshape([batch, steps, n, 1]);
    let m_last = filtered.mean_filt.clone().narrow(1, steps - 1, 1).reshape([batch, 1, n, 1]);
    let mean = match kernel {
        Some(k) => Tensor::cat(
            vec![k.offset + linalg::mat_vec4(k.gain, z4.clone().narrow(1, 1, steps - 1)), m_last],
            1,
        ),
        None => m_last,
    };
    let rows = batch * steps;
    let lp = linalg::gaussian_log_prob_chol(z.reshape([rows, n]), mean.reshape([rows, n]), &chol);
    Ok(lp.reshape([batch, steps]).sum_dim(1).reshape([batch]))
}

#[cfg(test)]
mod tests;
