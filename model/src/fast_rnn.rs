//! The RNN baseline's inference network ([`crate::rnn::RnnSmoother`]: the backward GRU and
//! the ancestral combiner) over a batch in plain `f64` Rust, with a hand-derived backward pass,
//! and how its gradient joins burn's in a training step.
//!
//! # Why
//!
//! The GRU and the combiner are sequential: at T = 50 burn runs about 50 small operations per
//! step forward (six matrix products, the gates, the write of the step's state into the output)
//! and as many backward, each paying burn's per-operation overhead on a `[32, 64]` block. Here
//! each step is one or two matrix products (the `gemm` crate, single-threaded) and a loop over
//! the gates.
//!
//! # How it enters the training step
//!
//! Unlike the EKVAE's `z`, which only the rate terms read (see [`crate::fast_kalman`]), the
//! baseline's `z` feeds the decoder, so the cotangent of `z` needs the backward pass of the
//! whole loss. A training step therefore runs two backward passes:
//!
//! 1. [`posterior_deferred`] runs the network forward on the values of the encoder means `a`
//!    and the weights and returns `z` and `log q` built on **leaves** that require a gradient
//!    (`z` read through one node that is not a leaf, so that burn frees the terms a loss
//!    leaves out; see the comment in [`posterior_deferred`]), with a [`DeferredRnn`] holding
//!    what the backward pass needs and the encoder's graph.
//! 2. The loss is built on those leaves; its backward pass gives the gradients of the decoder,
//!    transition, prior and `H`, and the cotangents of the leaves.
//! 3. [`DeferredRnn::backward`] carries them back by hand to `a` and the network's weights,
//!    then runs burn's backward pass once more from `s = ⟨ḡ_a, a⟩ + Σ ⟨ḡ_w, w⟩`: the gradient
//!    of the encoder through `a`, and of the network's weights (`s` is linear in them).
//! 4. The two sets of parameter gradients are disjoint and are merged
//!    ([`crate::train::Trainer::step`]).
//!
//! The batch runs in fixed blocks of [`BLOCK`] sequences on the thread pool; the blocks'
//! weight gradients are added in block order, so the result does not depend on the thread
//! count. [`crate::rnn::RnnSmoother::posterior`] stays the reference (tests compare the
//! values and every gradient, in `f64`, and the backward pass against finite differences).

// The gate loops index several arrays with the same (i, j), as the formulas read.
#![allow(clippy::needless_range_loop)]

use burn::nn::Linear;
use burn::tensor::Gradients;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use crate::linalg::LN_2PI;
use crate::plain::{mm, values};
use crate::rnn::{RnnPosterior, RnnSmoother};
use crate::ssm::VARIANCE_FLOOR;
use crate::{Error, Result};

/// Sequences per block of the batch (fixed, so the result does not depend on the threads).
pub const BLOCK: usize = 8;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn softplus(x: f64) -> f64 {
    if x > 30.0 { x } else { x.exp().ln_1p() }
}

/// The network's weights in `f64`, the three gates side by side (update `z`, reset `r`, new
/// `n`), row-major, `x · W` convention (burn's `Linear` layout).
#[derive(Debug, Clone, PartialEq)]
pub struct RnnWeights {
    /// Encoded-frame dimension m.
    pub m: usize,
    /// Action dimension k.
    pub k: usize,
    /// State dimension n.
    pub n: usize,
    /// GRU and combiner width H.
    pub h: usize,
    /// `[m+k, 3H]`: the gates' input weights.
    pub wx: Vec<f64>,
    /// `[3H]`.
    pub bx: Vec<f64>,
    /// `[H, 3H]`: the gates' hidden weights.
    pub wh: Vec<f64>,
    /// `[3H]`.
    pub bh: Vec<f64>,
    /// `[n+k, H]`: the combiner's `W_c`.
    pub wc: Vec<f64>,
    /// `[H]`.
    pub bc: Vec<f64>,
    /// `[H, 2n]`: `W_μ` and `W_σ` side by side.
    pub wo: Vec<f64>,
    /// `[2n]`.
    pub bo: Vec<f64>,
}

fn weight(l: &Linear) -> Result<Vec<f64>> {
    values(l.weight.val())
}

fn bias(l: &Linear, width: usize) -> Result<Vec<f64>> {
    match &l.bias {
        Some(b) => values(b.val()),
        None => Ok(vec![0.0; width]),
    }
}

/// `[rows, w]` blocks side by side → `[rows, Σw]`.
fn side_by_side(parts: &[&[f64]], rows: usize) -> Vec<f64> {
    let widths: Vec<usize> = parts.iter().map(|p| p.len() / rows).collect();
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for i in 0..rows {
        for (p, &w) in parts.iter().zip(&widths) {
            out.extend_from_slice(&p[i * w..(i + 1) * w]);
        }
    }
    out
}

/// Column block `[from, from + w)` of a `[rows, total]` matrix.
fn columns(v: &[f64], rows: usize, total: usize, from: usize, w: usize) -> Vec<f64> {
    (0..rows).flat_map(|i| v[i * total + from..i * total + from + w].iter().copied()).collect()
}

impl RnnWeights {
    /// The current values of `rnn`'s weights.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if the GRU was not built as [`crate::rnn::RnnSmootherConfig`]
    /// builds it.
    pub fn from_burn(rnn: &RnnSmoother) -> Result<Self> {
        let g = &rnn.gru;
        let [input, h] = g.update_gate.input_transform.weight.dims();
        let [nk, hc] = rnn.combine.weight.dims();
        let n = rnn.state_dim();
        if hc != h || nk < n || input < nk - n || !g.reset_after || g.clip.is_some() {
            return Err(Error::ShapeMismatch(format!(
                "the plain RNN path needs the GRU of RnnSmootherConfig (reset after, no clip, combiner width = GRU width); got GRU input {input}, width {h}, combiner [{nk}, {hc}], n = {n}"
            )));
        }
        let k = nk - n;
        let m = input - k;
        let gates = [&g.update_gate, &g.reset_gate, &g.new_gate];
        let wx: Vec<Vec<f64>> =
            gates.iter().map(|c| weight(&c.input_transform)).collect::<Result<_>>()?;
        let bx: Vec<Vec<f64>> =
            gates.iter().map(|c| bias(&c.input_transform, h)).collect::<Result<_>>()?;
        let wh: Vec<Vec<f64>> =
            gates.iter().map(|c| weight(&c.hidden_transform)).collect::<Result<_>>()?;
        let bh: Vec<Vec<f64>> =
            gates.iter().map(|c| bias(&c.hidden_transform, h)).collect::<Result<_>>()?;
        let cat = |v: &[Vec<f64>], rows| {
            side_by_side(&v.iter().map(Vec::as_slice).collect::<Vec<_>>(), rows)
        };
        Ok(Self {
            m,
            k,
            n,
            h,
            wx: cat(&wx, input),
            bx: cat(&bx, 1),
            wh: cat(&wh, h),
            bh: cat(&bh, 1),
            wc: weight(&rnn.combine)?,
            bc: bias(&rnn.combine, h)?,
            wo: side_by_side(&[&weight(&rnn.out_mean)?, &weight(&rnn.out_var)?], h),
            bo: side_by_side(&[&bias(&rnn.out_mean, n)?, &bias(&rnn.out_var, n)?], 1),
        })
    }

    /// Zeros of the same shapes (a gradient accumulator).
    fn zeros_like(&self) -> Self {
        let z = |v: &Vec<f64>| vec![0.0; v.len()];
        Self {
            m: self.m,
            k: self.k,
            n: self.n,
            h: self.h,
            wx: z(&self.wx),
            bx: z(&self.bx),
            wh: z(&self.wh),
            bh: z(&self.bh),
            wc: z(&self.wc),
            bc: z(&self.bc),
            wo: z(&self.wo),
            bo: z(&self.bo),
        }
    }

    fn fields_mut(&mut self) -> [&mut Vec<f64>; 8] {
        [
            &mut self.wx,
            &mut self.bx,
            &mut self.wh,
            &mut self.bh,
            &mut self.wc,
            &mut self.bc,
            &mut self.wo,
            &mut self.bo,
        ]
    }

    fn fields(&self) -> [&Vec<f64>; 8] {
        [&self.wx, &self.bx, &self.wh, &self.bh, &self.wc, &self.bc, &self.wo, &self.bo]
    }

    /// `self += other`, element by element.
    fn add(&mut self, other: &Self) {
        for (a, b) in self.fields_mut().into_iter().zip(other.fields()) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
    }
}

/// One block's forward pass with what its backward pass needs. Arrays marked "time-major"
/// are `[T, rows, ·]`.
#[derive(Debug, Clone)]
pub struct RnnBlock {
    rows: usize,
    steps: usize,
    /// `[T, rows, m+k]` time-major: the GRU's inputs `[a_t, u_t]`.
    x: Vec<f64>,
    /// `[T, rows, H]` time-major: update gate, reset gate, new gate, `h W_hn + b_hn`.
    zg: Vec<f64>,
    rg: Vec<f64>,
    ng: Vec<f64>,
    phn: Vec<f64>,
    /// `[T, rows, H]` time-major: the backward summaries `g_t`.
    g: Vec<f64>,
    /// `[T, rows, n+k]` time-major: the combiner's inputs `[z_{t−1}, u_{t−1}]`.
    zu: Vec<f64>,
    /// `[T, rows, H]` time-major: `tanh(W_c [z, u] + b_c)` and the combined `c_t`.
    tc: Vec<f64>,
    c: Vec<f64>,
    /// `[T, rows, n]` time-major: pre-softplus variances, variances, noise.
    pv: Vec<f64>,
    var: Vec<f64>,
    eps: Vec<f64>,
    /// `[rows, T, n]`: the draw.
    pub z: Vec<f64>,
    /// `[rows]`: its log-density.
    pub log_q: Vec<f64>,
}

/// The gradients of one block.
#[derive(Debug, Clone)]
pub struct RnnBlockGradients {
    /// `[rows, T, m]`: with respect to the encoded frames `a`.
    pub a: Vec<f64>,
    /// With respect to the weights (summed over the block's sequences).
    pub weights: RnnWeights,
}

impl RnnBlock {
    /// The forward pass of `rows` sequences: `a` `[rows, T, m]`, `u` `[rows, T, k]`, `eps`
    /// `[rows, T, n]` (batch-major, as the tensors).
    pub fn run(
        w: &RnnWeights,
        rows: usize,
        steps: usize,
        a: &[f64],
        u: &[f64],
        eps: &[f64],
    ) -> Self {
        let (m, k, n, h) = (w.m, w.k, w.n, w.h);
        let (t_n, mk, nk, h3) = (steps, m + k, n + k, 3 * h);
        let tm = |t: usize, i: usize| t * rows + i; // time-major row index
        let mut x = vec![0.0; t_n * rows * mk];
        for i in 0..rows {
            for t in 0..t_n {
                let row = &mut x[tm(t, i) * mk..(tm(t, i) + 1) * mk];
                row[..m].copy_from_slice(&a[(i * t_n + t) * m..(i * t_n + t + 1) * m]);
                row[m..].copy_from_slice(&u[(i * t_n + t) * k..(i * t_n + t + 1) * k]);
            }
        }
        // The input projections of every step at once.
        let mut px = vec![0.0; t_n * rows * h3];
        mm(&x, false, &w.wx, false, t_n * rows, mk, h3, &mut px, false);
        for r in px.chunks_exact_mut(h3) {
            for (p, b) in r.iter_mut().zip(&w.bx) {
                *p += b;
            }
        }
        let size = t_n * rows * h;
        let (mut zg, mut rg, mut ng, mut phn, mut g) =
            (vec![0.0; size], vec![0.0; size], vec![0.0; size], vec![0.0; size], vec![0.0; size]);
        let mut ph = vec![0.0; rows * h3];
        let zero = vec![0.0; rows * h];
        // The GRU runs backward in time: g_t from [a_t, u_t] and g_{t+1} (g_T = 0).
        for t in (0..t_n).rev() {
            let prev: &[f64] =
                if t + 1 < t_n { &g[tm(t + 1, 0) * h..tm(t + 2, 0) * h] } else { &zero };
            let prev = prev.to_vec();
            mm(&prev, false, &w.wh, false, rows, h, h3, &mut ph, false);
            for i in 0..rows {
                let pxr = &px[tm(t, i) * h3..(tm(t, i) + 1) * h3];
                let phr = &ph[i * h3..(i + 1) * h3];
                let base = tm(t, i) * h;
                for j in 0..h {
                    let zv = sigmoid(pxr[j] + phr[j] + w.bh[j]);
                    let rv = sigmoid(pxr[h + j] + phr[h + j] + w.bh[h + j]);
                    let hn = phr[2 * h + j] + w.bh[2 * h + j];
                    let nv = (pxr[2 * h + j] + rv * hn).tanh();
                    zg[base + j] = zv;
                    rg[base + j] = rv;
                    ng[base + j] = nv;
                    phn[base + j] = hn;
                    g[base + j] = (1.0 - zv) * nv + zv * prev[i * h + j];
                }
            }
        }
        // The combiner, forward in time, drawing z_t = μ_t + σ_t ε_t.
        let mut zu = vec![0.0; t_n * rows * nk];
        let mut tc = vec![0.0; size];
        let mut c = vec![0.0; size];
        let nsz = t_n * rows * n;
        let (mut pv, mut var, mut e_tm) = (vec![0.0; nsz], vec![0.0; nsz], vec![0.0; nsz]);
        let mut z = vec![0.0; rows * t_n * n];
        let mut log_q = vec![0.0; rows];
        let mut pc = vec![0.0; rows * h];
        let mut out = vec![0.0; rows * 2 * n];
        for t in 0..t_n {
            if t > 0 {
                for i in 0..rows {
                    let row = &mut zu[tm(t, i) * nk..(tm(t, i) + 1) * nk];
                    row[..n].copy_from_slice(&z[(i * t_n + t - 1) * n..(i * t_n + t) * n]);
                    row[n..].copy_from_slice(&u[(i * t_n + t - 1) * k..(i * t_n + t) * k]);
                }
            }
            mm(
                &zu[tm(t, 0) * nk..tm(t + 1, 0) * nk],
                false,
                &w.wc,
                false,
                rows,
                nk,
                h,
                &mut pc,
                false,
            );
            for i in 0..rows {
                let base = tm(t, i) * h;
                for j in 0..h {
                    let tv = (pc[i * h + j] + w.bc[j]).tanh();
                    tc[base + j] = tv;
                    c[base + j] = 0.5 * (tv + g[base + j]);
                }
            }
            mm(
                &c[tm(t, 0) * h..tm(t + 1, 0) * h],
                false,
                &w.wo,
                false,
                rows,
                h,
                2 * n,
                &mut out,
                false,
            );
            for i in 0..rows {
                let mut lq = 0.0;
                for j in 0..n {
                    let mean = out[i * 2 * n + j] + w.bo[j];
                    let p = out[i * 2 * n + n + j] + w.bo[n + j];
                    let v = softplus(p) + VARIANCE_FLOOR;
                    let e = eps[(i * t_n + t) * n + j];
                    let at = tm(t, i) * n + j;
                    pv[at] = p;
                    var[at] = v;
                    e_tm[at] = e;
                    z[(i * t_n + t) * n + j] = mean + v.sqrt() * e;
                    lq += v.ln() + e * e + LN_2PI;
                }
                log_q[i] -= 0.5 * lq;
            }
        }
        Self { rows, steps, x, zg, rg, ng, phn, g, zu, tc, c, pv, var, eps: e_tm, z, log_q }
    }

    /// The gradients of `Σ ⟨gz, z⟩ + Σ glq · log q` (`gz` `[rows, T, n]`, `glq` `[rows]`).
    pub fn backward(&self, w: &RnnWeights, gz: &[f64], glq: &[f64]) -> RnnBlockGradients {
        let (rows, t_n) = (self.rows, self.steps);
        let (m, k, n, h) = (w.m, w.k, w.n, w.h);
        let (mk, nk, h3) = (m + k, n + k, 3 * h);
        let tm = |t: usize, i: usize| t * rows + i;
        let size = t_n * rows * h;
        // Combiner, backward in time.
        let mut d_out = vec![0.0; t_n * rows * 2 * n]; // [T, rows, 2n]: ∂/∂(μ, pre-σ²)
        let mut d_pc = vec![0.0; size]; // ∂/∂(W_c [z,u] + b_c)
        let mut d_g = vec![0.0; size];
        let mut carry = vec![0.0; rows * n]; // ∂/∂z_t through step t+1's combiner
        let mut dc = vec![0.0; rows * h];
        let mut dzu = vec![0.0; rows * nk];
        for t in (0..t_n).rev() {
            for i in 0..rows {
                for j in 0..n {
                    let at = tm(t, i) * n + j;
                    let dz = gz[(i * t_n + t) * n + j] + carry[i * n + j];
                    let v = self.var[at];
                    let dvar = dz * self.eps[at] / (2.0 * v.sqrt()) - 0.5 * glq[i] / v;
                    let o = tm(t, i) * 2 * n;
                    d_out[o + j] = dz;
                    d_out[o + n + j] = dvar * sigmoid(self.pv[at]);
                }
            }
            let d_out_t = &d_out[tm(t, 0) * 2 * n..tm(t + 1, 0) * 2 * n];
            mm(d_out_t, false, &w.wo, true, rows, 2 * n, h, &mut dc, false);
            for i in 0..rows {
                let base = tm(t, i) * h;
                for j in 0..h {
                    let half = 0.5 * dc[i * h + j];
                    d_g[base + j] = half;
                    let tv = self.tc[base + j];
                    d_pc[base + j] = half * (1.0 - tv * tv);
                }
            }
            if t > 0 {
                mm(
                    &d_pc[tm(t, 0) * h..tm(t + 1, 0) * h],
                    false,
                    &w.wc,
                    true,
                    rows,
                    h,
                    nk,
                    &mut dzu,
                    false,
                );
                for i in 0..rows {
                    carry[i * n..(i + 1) * n].copy_from_slice(&dzu[i * nk..i * nk + n]);
                }
            }
        }
        // GRU, backward through its steps (it ran t = T−1 … 0, so this goes t = 0 … T−1).
        let mut d_px = vec![0.0; t_n * rows * h3];
        let mut d_ph = vec![0.0; t_n * rows * h3];
        let mut dh_carry = vec![0.0; rows * h];
        let mut dprev = vec![0.0; rows * h];
        for t in 0..t_n {
            for i in 0..rows {
                let base = tm(t, i) * h;
                let o = tm(t, i) * h3;
                for j in 0..h {
                    let dh = d_g[base + j] + dh_carry[i * h + j];
                    let (zv, rv, nv) = (self.zg[base + j], self.rg[base + j], self.ng[base + j]);
                    let prev = if t + 1 < t_n { self.g[tm(t + 1, i) * h + j] } else { 0.0 };
                    let dn = dh * (1.0 - zv);
                    let dzv = dh * (prev - nv);
                    dprev[i * h + j] = dh * zv;
                    let dpn = dn * (1.0 - nv * nv);
                    let drv = dpn * self.phn[base + j];
                    let dpz = dzv * zv * (1.0 - zv);
                    let dpr = drv * rv * (1.0 - rv);
                    d_px[o + j] = dpz;
                    d_px[o + h + j] = dpr;
                    d_px[o + 2 * h + j] = dpn;
                    d_ph[o + j] = dpz;
                    d_ph[o + h + j] = dpr;
                    d_ph[o + 2 * h + j] = dpn * rv;
                }
            }
            if t + 1 < t_n {
                let d_ph_t = &d_ph[tm(t, 0) * h3..tm(t + 1, 0) * h3];
                mm(d_ph_t, false, &w.wh, true, rows, h3, h, &mut dh_carry, false);
                for (c, p) in dh_carry.iter_mut().zip(&dprev) {
                    *c += p;
                }
            }
        }
        // The weights' gradients, every step at once.
        let mut gw = w.zeros_like();
        let all = t_n * rows;
        mm(&self.x, true, &d_px, false, mk, all, h3, &mut gw.wx, false);
        // The hidden state each step read: g_{t+1}, and 0 at the last step.
        let mut prev = vec![0.0; size];
        if t_n > 1 {
            prev[..(t_n - 1) * rows * h].copy_from_slice(&self.g[rows * h..]);
        }
        mm(&prev, true, &d_ph, false, h, all, h3, &mut gw.wh, false);
        for (r_px, r_ph) in d_px.chunks_exact(h3).zip(d_ph.chunks_exact(h3)) {
            for j in 0..h3 {
                gw.bx[j] += r_px[j];
                gw.bh[j] += r_ph[j];
            }
        }
        mm(&self.zu, true, &d_pc, false, nk, all, h, &mut gw.wc, false);
        for r in d_pc.chunks_exact(h) {
            for (b, d) in gw.bc.iter_mut().zip(r) {
                *b += d;
            }
        }
        mm(&self.c, true, &d_out, false, h, all, 2 * n, &mut gw.wo, false);
        for r in d_out.chunks_exact(2 * n) {
            for (b, d) in gw.bo.iter_mut().zip(r) {
                *b += d;
            }
        }
        // The inputs' gradient: ∂/∂[a, u] = ∂/∂px · W_xᵀ; keep a, batch-major.
        let mut dx = vec![0.0; all * mk];
        mm(&d_px, false, &w.wx, true, all, h3, mk, &mut dx, false);
        let mut da = vec![0.0; rows * t_n * m];
        for i in 0..rows {
            for t in 0..t_n {
                let src = &dx[tm(t, i) * mk..tm(t, i) * mk + m];
                da[(i * t_n + t) * m..(i * t_n + t + 1) * m].copy_from_slice(src);
            }
        }
        RnnBlockGradients { a: da, weights: gw }
    }
}

/// The blocks of a batch of `b` sequences.
fn blocks(b: usize) -> Vec<std::ops::Range<usize>> {
    (0..b.div_ceil(BLOCK)).map(|i| i * BLOCK..((i + 1) * BLOCK).min(b)).collect()
}

/// The forward pass over a whole batch, in blocks on the thread pool.
///
/// # Errors
/// [`Error::ShapeMismatch`] on inconsistent sizes.
pub fn run_batch(
    w: &RnnWeights,
    a: &[f64],
    u: &[f64],
    eps: &[f64],
    batch: usize,
    steps: usize,
) -> Result<Vec<RnnBlock>> {
    let (m, k, n) = (w.m, w.k, w.n);
    let per = batch * steps;
    if a.len() != per * m || u.len() != per * k || eps.len() != per * n {
        return Err(Error::ShapeMismatch(format!(
            "plain RNN: a {} u {} eps {} values for B = {batch}, T = {steps}, m = {m}, k = {k}, n = {n}",
            a.len(),
            u.len(),
            eps.len()
        )));
    }
    Ok(blocks(batch)
        .par_iter()
        .map(|r| {
            let s = |v: &[f64], d: usize| v[r.start * steps * d..r.end * steps * d].to_vec();
            RnnBlock::run(w, r.len(), steps, &s(a, m), &s(u, k), &s(eps, n))
        })
        .collect())
}

/// The backward pass over a whole batch: `∂/∂a` `[B, T, m]` and the weights' gradient (the
/// blocks' sums added in block order).
pub fn backward_batch(
    w: &RnnWeights,
    parts: &[RnnBlock],
    gz: &[f64],
    glq: &[f64],
) -> (Vec<f64>, RnnWeights) {
    let steps = parts.first().map_or(0, |p| p.steps);
    let n = w.n;
    let mut start = 0;
    let ranges: Vec<std::ops::Range<usize>> = parts
        .iter()
        .map(|p| {
            start += p.rows;
            start - p.rows..start
        })
        .collect();
    let grads: Vec<RnnBlockGradients> = parts
        .par_iter()
        .zip(&ranges)
        .map(|(p, r)| p.backward(w, &gz[r.start * steps * n..r.end * steps * n], &glq[r.clone()]))
        .collect();
    let mut total = w.zeros_like();
    let mut da = Vec::with_capacity(start * steps * w.m);
    for g in &grads {
        total.add(&g.weights);
        da.extend_from_slice(&g.a);
    }
    (da, total)
}

/// What [`DeferredRnn::backward`] needs: the forward pass, the leaves the loss was built on,
/// and the tensors its gradient goes into.
pub struct DeferredRnn {
    weights: RnnWeights,
    parts: Vec<RnnBlock>,
    z_leaf: Tensor<3>,
    log_q_leaf: Tensor<1>,
    /// The encoder means (with their graph).
    a: Tensor<3>,
    rnn: RnnSmoother,
}

impl std::fmt::Debug for DeferredRnn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeferredRnn").field("blocks", &self.parts.len()).finish_non_exhaustive()
    }
}

/// The draw of [`RnnSmoother::posterior`] by the plain pass. On an autodiff device `log_q` is a
/// leaf that requires a gradient and `z` is one node (× 1) on such a leaf, and the
/// [`DeferredRnn`] carries the leaves' cotangents to `a` and the weights after the loss's
/// backward pass (module documentation); otherwise they are the values and there is nothing
/// to defer.
///
/// # Errors
/// [`Error::ShapeMismatch`] on inconsistent shapes or a GRU this path does not cover.
pub fn posterior_deferred(
    rnn: &RnnSmoother,
    a: Tensor<3>,
    u: Tensor<3>,
    eps: Tensor<3>,
) -> Result<(RnnPosterior, Option<DeferredRnn>)> {
    let [b, t, _] = a.dims();
    let weights = RnnWeights::from_burn(rnn)?;
    if eps.dims() != [b, t, weights.n] || u.dims()[..2] != [b, t] {
        return Err(Error::ShapeMismatch(format!(
            "plain RNN: a {:?}, u {:?}, eps {:?}",
            a.dims(),
            u.dims(),
            eps.dims()
        )));
    }
    let parts =
        run_batch(&weights, &values(a.clone().detach())?, &values(u)?, &values(eps)?, b, t)?;
    let z: Vec<f64> = parts.iter().flat_map(|p| p.z.iter().copied()).collect();
    let log_q: Vec<f64> = parts.iter().flat_map(|p| p.log_q.iter().copied()).collect();
    let (device, dtype) = (a.device(), a.dtype());
    let z = Tensor::<3>::from_data(TensorData::new(z, [b, t, weights.n]), (&device, dtype));
    let log_q = Tensor::<1>::from_data(TensorData::new(log_q, [b]), (&device, dtype));
    if !device.is_autodiff() {
        return Ok((RnnPosterior { z, log_q }, None));
    }
    let (z, log_q) = (z.require_grad(), log_q.require_grad());
    let deferred = DeferredRnn {
        weights,
        parts,
        z_leaf: z.clone(),
        log_q_leaf: log_q.clone(),
        a,
        rnn: rnn.clone(),
    };
    // The caller reads `z` through one node that is not a leaf. The rate's terms in `z` (and
    // the transition's and prior's parameters) are left out of the loss in the authors'
    // reconstruction phase, so no backward pass consumes them; burn frees such dangling
    // nodes once one of their parents has been consumed, but a consumed leaf does not count
    // (`unavailable_propagation` in burn-autodiff's memory management). Built on the leaf
    // itself, they would stay in the graph of those parameters, which get no gradient in
    // that phase and so never change, and burn's bookkeeping would grow by about 70 nodes a
    // step (`model/examples/rnn_step_drift.rs`: 19 → 525 ms per step over 800 steps).
    let z = z.mul_scalar(1.0);
    Ok((RnnPosterior { z, log_q }, Some(deferred)))
}

impl DeferredRnn {
    /// The gradients of the encoder (through `a`) and of the network's weights, given the
    /// loss's backward pass `grads` (which holds the cotangents of `z` and `log q`): a second
    /// burn backward pass from `⟨ḡ_a, a⟩ + Σ ⟨ḡ_w, w⟩` ([`DeferredRnn::surrogate`]).
    ///
    /// # Errors
    /// If a cotangent cannot be read.
    pub fn backward(self, grads: &Gradients) -> Result<Gradients> {
        Ok(self.surrogate(grads)?.backward())
    }

    /// `⟨ḡ_a, a⟩ + Σ ⟨ḡ_w, w⟩`, whose backward pass is [`DeferredRnn::backward`]'s (a training
    /// step adds it to the other deferred parts' and runs one pass).
    ///
    /// # Errors
    /// If a cotangent cannot be read.
    pub fn surrogate(self, grads: &Gradients) -> Result<Tensor<1>> {
        let [b, t, n] = self.z_leaf.dims();
        let gz = match self.z_leaf.grad(grads) {
            Some(g) => values(g)?,
            None => vec![0.0; b * t * n],
        };
        let glq = match self.log_q_leaf.grad(grads) {
            Some(g) => values(g)?,
            None => vec![0.0; b],
        };
        let (da, gw) = backward_batch(&self.weights, &self.parts, &gz, &glq);
        let like = &self.a;
        let m = self.weights.m;
        let dot = |g: Vec<f64>, x: Tensor<2>| -> Tensor<1> {
            let dims = x.dims();
            (Tensor::<2>::from_data(TensorData::new(g, dims), (&like.device(), like.dtype())) * x)
                .sum()
        };
        let dot1 = |g: Vec<f64>, x: Tensor<1>| -> Tensor<1> {
            let dims = x.dims();
            (Tensor::<1>::from_data(TensorData::new(g, dims), (&like.device(), like.dtype())) * x)
                .sum()
        };
        let ga =
            Tensor::<3>::from_data(TensorData::new(da, [b, t, m]), (&like.device(), like.dtype()));
        let mut s = (ga * self.a.clone()).sum();
        let w = &self.weights;
        let h = w.h;
        let rnn = &self.rnn;
        let g = &rnn.gru;
        let gates = [&g.update_gate, &g.reset_gate, &g.new_gate];
        let mk = w.m + w.k;
        for (gi, gate) in gates.iter().enumerate() {
            s = s + dot(columns(&gw.wx, mk, 3 * h, gi * h, h), gate.input_transform.weight.val());
            s = s + dot(columns(&gw.wh, h, 3 * h, gi * h, h), gate.hidden_transform.weight.val());
            if let Some(bias) = &gate.input_transform.bias {
                s = s + dot1(gw.bx[gi * h..(gi + 1) * h].to_vec(), bias.val());
            }
            if let Some(bias) = &gate.hidden_transform.bias {
                s = s + dot1(gw.bh[gi * h..(gi + 1) * h].to_vec(), bias.val());
            }
        }
        s = s + dot(gw.wc.clone(), rnn.combine.weight.val());
        if let Some(bias) = &rnn.combine.bias {
            s = s + dot1(gw.bc.clone(), bias.val());
        }
        let out: [(&Linear, usize); 2] = [(&rnn.out_mean, 0), (&rnn.out_var, n)];
        for (lin, from) in out {
            s = s + dot(columns(&gw.wo, h, 2 * n, from, n), lin.weight.val());
            if let Some(bias) = &lin.bias {
                s = s + dot1(gw.bo[from..from + n].to_vec(), bias.val());
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests;
