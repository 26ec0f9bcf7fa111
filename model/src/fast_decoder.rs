//! The decoder's last layer and the distortion as training runs them: the transposed
//! convolution to the pixels' logits, the Bernoulli negative log-likelihood and its gradient,
//! over a batch of frames in plain Rust with a hand-derived backward pass, and how the
//! gradient joins burn's in a training step.
//!
//! # Why
//!
//! At 32×32 the decoder's stride-2 4×4 transposed convolution to r² = 16 channels on an 8×8
//! grid is the heaviest layer of a step (about 210 M multiply-adds forward and twice that
//! backward at B = 32, T = 50), and burn-flex runs it, and the convolution its backward pass
//! needs, as direct loops per frame; the distortion after it is three more passes over the
//! 1.6 M logits (softplus, the product with the target, the sum) and as many backward. Here the
//! layer is one matrix product per block of frames (the `gemm` crate) followed by a scatter of
//! its columns onto the pixels (col2im), and the distortion and its gradient σ(l) − x come
//! from one `exp` and one `log1p` per pixel in the same pass.
//!
//! # The layer as a product
//!
//! A transposed convolution with weight `W [C, R, 4, 4]` maps the input `h [C, 4, 4]` to
//! `l[o, y, x] = b[o] + Σ_{c, i, j, ky, kx} h[c, i, j] · W[c, o, ky, kx]` over `y = 2i − 1 + ky`,
//! `x = 2j − 1 + kx` inside the 8×8 grid. With the input's 16 positions as rows,
//! `cols = h_pos [16, C] × W [C, 16·R]` holds every term, and `l` adds each column entry into
//! its pixel (the columns tap-major and the logits pixel-major, so each of the 196 (position,
//! tap) pairs that land on the grid adds R contiguous values into R contiguous values). Backward, with `G = ∂D/∂l = σ(l) − x`: the gradient of `cols` gathers `G` at the
//! same places (im2col), `∂D/∂h_pos = gcols × Wᵀ`, `∂D/∂W = h_posᵀ × gcols` and `∂D/∂b` sums
//! `G` over the pixels.
//!
//! # How it enters the training step
//!
//! The distortion of each frame `D_f` must carry the gradient its weight in the loss gives it.
//! [`Decoder::nll_deferred`] returns `D_f = value_f + (s_f − detach(s_f)) + ℓ_f` where
//! `s_f = ⟨h_f, ∂D_f/∂h_f⟩` puts the gradient into the decoder's input (and through it into the
//! dense layers, the encoder and the Kalman part, all in burn's first backward pass), and `ℓ`
//! is a zero leaf that requires a gradient: after that pass its gradient holds each frame's
//! weight `g_f`. [`DeferredDecoder::surrogate`] then forms `∂L/∂W = Σ_f g_f ∂D_f/∂W` and
//! `∂L/∂b` by hand and returns `⟨W, ∂L/∂W⟩ + ⟨b, ∂L/∂b⟩`, whose backward pass gives those two
//! parameters their gradient (they are disjoint from the first pass's; see
//! [`crate::train::Trainer::step`]).
//!
//! The frames run in fixed blocks of [`BLOCK`] on the thread pool and the blocks' weight
//! gradients are added in block order, so the result does not depend on the thread count.
//! Burn's transposed convolution and [`crate::Ekvae::bernoulli_nll`] stay the reference:
//! tests compare the distortion and every gradient with them, and the hand-derived backward
//! pass with finite differences.

use burn::tensor::{DType, Gradients, Tensor, TensorData};
use rayon::prelude::*;

use std::borrow::Cow;

use crate::nets::{Decoder, Values};
use crate::plain::{Gemm, mm};
use crate::{Error, Result};

/// Frames per block (fixed, so the result does not depend on the threads).
pub const BLOCK: usize = 32;

/// Positions of the decoder's input grid (4×4) and side of its output grid (8×8).
const POSITIONS: usize = 16;
const SIDE: usize = 8;
const PIXELS: usize = SIDE * SIDE;
/// Taps of the 4×4 kernel.
const TAPS: usize = 16;

/// The float types the plain path runs in (the model's own: `f32` in training, `f64` in the
/// gradient checks).
pub trait Real:
    Gemm
    + Default
    + PartialOrd
    + 'static
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::AddAssign
    + std::ops::Neg<Output = Self>
{
    /// To `f64`.
    fn f(self) -> f64;
    /// The Bernoulli negative log-likelihood of target `t` under logit `l` and its derivative:
    /// `(softplus(l) − t·l, σ(l) − t)`, both from one `e^{−|l|}`.
    fn bce(l: Self, t: Self) -> (Self, Self);
    /// [`Real::bce`] over a slice: `values[i]` gets the value and `logits[i]` is replaced by the
    /// gradient.
    fn bce_pass(logits: &mut [Self], target: &[Self], values: &mut [Self]);
    /// The values of a tensor in this type.
    fn read<const D: usize>(t: Tensor<D>) -> Result<Vec<Self>>;
    /// [`Values`] in this type (borrowed when they are already).
    fn of_values(v: &Values) -> Cow<'_, [Self]>;
}

macro_rules! real {
    ($t:ty, $bce:expr, $pass:expr, $same:ident, $other:ident) => {
        impl Real for $t {
            #[inline(always)]
            fn bce(l: Self, t: Self) -> (Self, Self) {
                $bce(l, t)
            }
            fn bce_pass(logits: &mut [Self], target: &[Self], values: &mut [Self]) {
                $pass(logits, target, values)
            }
            fn f(self) -> f64 {
                f64::from(self)
            }
            fn of_values(v: &Values) -> Cow<'_, [Self]> {
                match v {
                    Values::$same(v) => Cow::Borrowed(v),
                    Values::$other(v) => Cow::Owned(v.iter().map(|&x| x as $t).collect()),
                }
            }
            fn read<const D: usize>(t: Tensor<D>) -> Result<Vec<Self>> {
                t.into_data().convert::<$t>().try_into_vec::<$t>().map_err(|e| {
                    Error::ShapeMismatch(format!("cannot read a tensor's values: {e:?}"))
                })
            }
        }
    };
}
real!(f32, bce_f32, bce_pass_f32, F32, F64);
real!(
    f64,
    bce_f64,
    |l: &mut [f64], t: &[f64], v: &mut [f64]| bce_pass_with(bce_f64, l, t, v),
    F64,
    F32
);

/// The loop of [`Real::bce_pass`], inlined into each caller so that it vectorises for the
/// caller's instruction set.
#[inline(always)]
fn bce_pass_with<T: Copy>(
    bce: impl Fn(T, T) -> (T, T),
    logits: &mut [T],
    target: &[T],
    values: &mut [T],
) {
    for ((l, &t), v) in logits.iter_mut().zip(target).zip(values.iter_mut()) {
        let (d, grad) = bce(*l, t);
        *v = d;
        *l = grad;
    }
}

/// [`bce_f32`] over a slice, compiled for AVX2 (eight lanes instead of SSE's four; the same
/// operations, so the same results: no fused multiply-adds are formed).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn bce_pass_f32_avx2(logits: &mut [f32], target: &[f32], values: &mut [f32]) {
    bce_pass_with(bce_f32, logits, target, values);
}

/// [`bce_f32`] over a slice, with AVX2 where the CPU has it.
fn bce_pass_f32(logits: &mut [f32], target: &[f32], values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above), the only requirement of a
        // function compiled with `target_feature(enable = "avx2")`.
        #[allow(unsafe_code)]
        unsafe {
            bce_pass_f32_avx2(logits, target, values);
        }
        return;
    }
    bce_pass_with(bce_f32, logits, target, values);
}

/// [`Real::bce`] in `f64` with the standard library's `exp` and `ln_1p`.
#[inline(always)]
fn bce_f64(l: f64, t: f64) -> (f64, f64) {
    let e = (-l.abs()).exp();
    let inv = 1.0 / (1.0 + e);
    let s = if l >= 0.0 { inv } else { e * inv };
    (l.max(0.0) - t * l + e.ln_1p(), s - t)
}

/// [`Real::bce`] in `f32`, branch-free so that the pixel loop vectorises: `e^{−|l|}` by range
/// reduction to `r ∈ [−ln2/2, ln2/2]` and a degree-7 Taylor polynomial, and
/// `ln(1 + e) = 2·atanh(e/(2 + e))` by its odd series to the 15th power (`e/(2 + e) ≤ 1/3`,
/// so no cancellation for small `e`). Both within a few units in the last place of `f32`
/// (tested against `f64`).
#[inline(always)]
fn bce_f32(l: f32, t: f32) -> (f32, f32) {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding and subtracting it rounds to an integer
    let x = (-l.abs()).max(-87.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    let e = p * scale;
    let inv = 1.0 / (1.0 + e);
    let sig = if l >= 0.0 { inv } else { e * inv };
    let s = e / (2.0 + e);
    let s2 = s * s;
    let mut q = 1.0 / 15.0;
    q = q * s2 + 1.0 / 13.0;
    q = q * s2 + 1.0 / 11.0;
    q = q * s2 + 1.0 / 9.0;
    q = q * s2 + 1.0 / 7.0;
    q = q * s2 + 1.0 / 5.0;
    q = q * s2 + 1.0 / 3.0;
    q = q * s2 + 1.0;
    let log1p = 2.0 * s * q;
    (l.max(0.0) - t * l + log1p, sig - t)
}

/// The output pixel `(y, x)` that input position `(i, j)` and kernel tap `(ky, kx)` add into,
/// if it lies on the 8×8 grid (stride 2, padding 1).
#[inline]
fn pixel_of(p: usize, tap: usize) -> Option<usize> {
    let (i, j) = (p / 4, p % 4);
    let (ky, kx) = (tap / 4, tap % 4);
    let y = (2 * i + ky).checked_sub(1).filter(|&y| y < SIDE)?;
    let x = (2 * j + kx).checked_sub(1).filter(|&x| x < SIDE)?;
    Some(y * SIDE + x)
}

/// Where each (input position, tap) term goes, for the plain path's layouts: `cols` holds per
/// frame `[16 positions, 16 taps · R]` (tap-major: the R channels of a tap side by side) and
/// the logits `[64 pixels, R]` (pixel-major), so a term is R contiguous values added into R
/// contiguous values. Pairs `(p·16R + tap·R, pix·R)` for the 196 of the 256 (position, tap)
/// pairs that land on the grid ([`pixel_of`]).
fn scatter_pairs(r: usize) -> Vec<(usize, usize)> {
    (0..POSITIONS)
        .flat_map(|p| (0..TAPS).map(move |tap| (p, tap)))
        .filter_map(|(p, tap)| pixel_of(p, tap).map(|pix| (p * TAPS * r + tap * r, pix * r)))
        .collect()
}

/// `[C, R, 16]` (burn's layout) → `[C, 16, R]` (the plain path's tap-major columns), or back
/// with `back`.
fn permute_taps<T: Real>(w: &[T], c: usize, r: usize, back: bool) -> Vec<T> {
    let mut out = vec![T::ZERO; w.len()];
    for ch in 0..c {
        for o in 0..r {
            for tap in 0..TAPS {
                let (burn, plain) = (ch * r * TAPS + o * TAPS + tap, ch * r * TAPS + tap * r + o);
                if back {
                    out[burn] = w[plain];
                } else {
                    out[plain] = w[burn];
                }
            }
        }
    }
    out
}

/// What the forward pass of one block keeps for the weight gradient.
#[derive(Debug, Clone)]
struct BlockState<T> {
    frames: usize,
    /// The input with positions as rows: `[frames·16, C]`.
    h_pos: Vec<T>,
    /// `∂D_f/∂l` per pixel, pixel-major: `[frames, 64, R]`.
    g: Vec<T>,
}

/// The weights of the layer in the plain path's type.
#[derive(Debug, Clone)]
pub struct DeconvWeights<T> {
    /// Input channels C.
    pub c: usize,
    /// Output channels R (= r²).
    pub r: usize,
    /// `[C, R, 4, 4]` (burn's `ConvTranspose2d` layout).
    pub w: Vec<T>,
    /// `[R]`.
    pub b: Vec<T>,
}

/// The forward pass of one block: per-frame distortion (in `f64`), `∂D_f/∂h_f` in the input's
/// channel-major layout `[frames, C·16]`, and the state the weight gradient needs. `wp` is the
/// weight in tap-major columns ([`permute_taps`]); `x` the targets in the decoder's block
/// layout `[frames, R, 64]`.
fn block_forward<T: Real>(
    w: &DeconvWeights<T>,
    wp: &[T],
    h: &[T],
    x: &[T],
    pairs: &[(usize, usize)],
) -> (Vec<f64>, Vec<T>, BlockState<T>) {
    let (nll, mut cols, h_pos, g) = block_distortion(w, wp, h, x, pairs);
    let (c, r) = (w.c, w.r);
    let frames = nll.len();
    let rows = frames * POSITIONS;
    let width = r * TAPS;
    // ∂D/∂cols (im2col of g, into the dead `cols`), then ∂D/∂h_pos = gcols × Wᵀ, back to
    // channel-major.
    gather_into(&g, frames, r, pairs, &mut cols);
    let mut gh_pos = vec![T::ZERO; rows * c];
    mm(&cols, false, wp, true, rows, width, c, &mut gh_pos, false);
    let mut gh = vec![T::ZERO; frames * c * POSITIONS];
    for f in 0..frames {
        for p in 0..POSITIONS {
            for ch in 0..c {
                gh[(f * c + ch) * POSITIONS + p] = gh_pos[(f * POSITIONS + p) * c + ch];
            }
        }
    }
    (nll, gh, BlockState { frames, h_pos, g })
}

/// `D_f = −log p(x_f | l_f)` per frame of the layer on `h [N, C, 4, 4]` against the targets
/// `x [N, R, 8, 8]` (block layout), without the gradient: the forward half of
/// [`PlainDeconvNll::forward`] (the same blocks, so the same values), for evaluation.
pub fn plain_nll<T: Real>(weights: &DeconvWeights<T>, h: &[T], x: &[T]) -> Vec<f64> {
    per_block(weights, h, x, |wp, hb, xb, pairs| block_distortion(weights, wp, hb, xb, pairs).0)
        .concat()
}

/// `run` on each block of [`BLOCK`] frames of `h` and `x` on the thread pool, with the weight in
/// tap-major columns and the scatter pairs; the results in block order.
fn per_block<T: Real, R: Send>(
    weights: &DeconvWeights<T>,
    h: &[T],
    x: &[T],
    run: impl Fn(&[T], &[T], &[T], &[(usize, usize)]) -> R + Sync,
) -> Vec<R> {
    let (c, r) = (weights.c, weights.r);
    let pairs = scatter_pairs(r);
    let wp = permute_taps(&weights.w, c, r, false);
    h.par_chunks(BLOCK * c * POSITIONS)
        .zip(x.par_chunks(BLOCK * r * PIXELS))
        .map(|(hb, xb)| run(&wp, hb, xb, &pairs))
        .collect()
}

/// The distortion half of [`block_forward`]: per-frame `D_f`, and the buffers the gradient
/// needs — the product's columns (`[frames·16, 16·R]`, free to reuse), the input with positions
/// as rows and `∂D_f/∂l` per pixel. Evaluation runs only this ([`plain_nll`]).
#[allow(clippy::type_complexity)]
fn block_distortion<T: Real>(
    w: &DeconvWeights<T>,
    wp: &[T],
    h: &[T],
    x: &[T],
    pairs: &[(usize, usize)],
) -> (Vec<f64>, Vec<T>, Vec<T>, Vec<T>) {
    let (c, r) = (w.c, w.r);
    let frames = h.len() / (c * POSITIONS);
    let width = r * TAPS;
    let frame_px = r * PIXELS;
    // Positions as rows.
    let mut h_pos = vec![T::ZERO; frames * POSITIONS * c];
    for f in 0..frames {
        for ch in 0..c {
            for p in 0..POSITIONS {
                h_pos[(f * POSITIONS + p) * c + ch] = h[(f * c + ch) * POSITIONS + p];
            }
        }
    }
    let rows = frames * POSITIONS;
    let mut cols = vec![T::ZERO; rows * width];
    mm(&h_pos, false, wp, false, rows, c, width, &mut cols, false);
    // col2im and the bias, then the distortion and its gradient per pixel.
    let mut g = vec![T::ZERO; frames * frame_px];
    let mut nll = vec![0.0; frames];
    let mut values = vec![T::ZERO; frame_px];
    let mut xt = vec![T::ZERO; frame_px];
    for f in 0..frames {
        let logits = &mut g[f * frame_px..(f + 1) * frame_px];
        for px in logits.chunks_mut(r) {
            px.copy_from_slice(&w.b);
        }
        let block = &cols[f * POSITIONS * width..(f + 1) * POSITIONS * width];
        for &(col, px) in pairs {
            for (o, v) in logits[px..px + r].iter_mut().zip(&block[col..col + r]) {
                *o += *v;
            }
        }
        // The target, from its channel-major block layout to pixel-major, then one flat pass
        // (which the compiler vectorises).
        let target = &x[f * frame_px..(f + 1) * frame_px];
        for (o, plane) in target.chunks(PIXELS).enumerate() {
            for (pix, &t) in plane.iter().enumerate() {
                xt[pix * r + o] = t;
            }
        }
        T::bce_pass(logits, &xt, &mut values);
        // Eight running sums in f64, added in a fixed order.
        let mut acc = [0.0f64; 8];
        for chunk in values.chunks(8) {
            for (a, &v) in acc.iter_mut().zip(chunk) {
                *a += v.f();
            }
        }
        nll[f] = acc.iter().sum();
    }
    (nll, cols, h_pos, g)
}

/// `gcols [frames·16, 16·R]`: each column entry's pixel gradient (zero off the grid), written
/// over `out`.
fn gather_into<T: Real>(g: &[T], frames: usize, r: usize, pairs: &[(usize, usize)], out: &mut [T]) {
    let width = r * TAPS;
    out.fill(T::ZERO);
    for f in 0..frames {
        let block = &mut out[f * POSITIONS * width..(f + 1) * POSITIONS * width];
        let gf = &g[f * r * PIXELS..(f + 1) * r * PIXELS];
        for &(col, px) in pairs {
            block[col..col + r].copy_from_slice(&gf[px..px + r]);
        }
    }
}

/// The weight (tap-major, `[C, 16·R]`) and bias gradients of one block, each frame's weighted
/// by `weights[f]`.
fn block_weight_grad<T: Real>(
    w: &DeconvWeights<T>,
    state: &BlockState<T>,
    weights: &[T],
    pairs: &[(usize, usize)],
) -> (Vec<T>, Vec<T>) {
    let (c, r, frames) = (w.c, w.r, state.frames);
    let width = r * TAPS;
    let mut scaled = state.h_pos.clone();
    for f in 0..frames {
        for v in &mut scaled[f * POSITIONS * c..(f + 1) * POSITIONS * c] {
            *v = *v * weights[f];
        }
    }
    let mut gcols = vec![T::ZERO; frames * POSITIONS * width];
    gather_into(&state.g, frames, r, pairs, &mut gcols);
    let mut gw = vec![T::ZERO; c * width];
    mm(&scaled, true, &gcols, false, c, frames * POSITIONS, width, &mut gw, false);
    let mut gb = vec![T::ZERO; r];
    let mut frame_sum = vec![T::ZERO; r];
    for (g, &weight) in state.g.chunks(r * PIXELS).zip(weights) {
        frame_sum.fill(T::ZERO);
        for px in g.chunks(r) {
            for (a, &v) in frame_sum.iter_mut().zip(px) {
                *a += v;
            }
        }
        for (b, &s) in gb.iter_mut().zip(&frame_sum) {
            *b += weight * s;
        }
    }
    (gw, gb)
}

/// The forward pass of the layer and the distortion over a batch, in blocks of [`BLOCK`]
/// frames on the thread pool.
#[derive(Debug, Clone)]
pub struct PlainDeconvNll<T> {
    /// The weights it ran with.
    pub weights: DeconvWeights<T>,
    /// `D_f = −log p(x_f | l_f)` per frame.
    pub nll: Vec<f64>,
    /// `∂D_f/∂h_f`, `[N, C·16]` (the input's layout).
    pub grad_h: Vec<T>,
    blocks: Vec<BlockState<T>>,
}

impl<T: Real> PlainDeconvNll<T> {
    /// Run the layer on `h [N, C, 4, 4]` (row-major) against the targets `x [N, R, 8, 8]` in
    /// the decoder's block layout.
    pub fn forward(weights: DeconvWeights<T>, h: &[T], x: &[T]) -> Self {
        let parts = per_block(&weights, h, x, |wp, hb, xb, pairs| {
            block_forward(&weights, wp, hb, xb, pairs)
        });
        let mut nll = Vec::with_capacity(h.len() / (weights.c * POSITIONS));
        let mut grad_h = Vec::with_capacity(h.len());
        let mut blocks = Vec::with_capacity(parts.len());
        for (n, g, s) in parts {
            nll.extend_from_slice(&n);
            grad_h.extend_from_slice(&g);
            blocks.push(s);
        }
        PlainDeconvNll { weights, nll, grad_h, blocks }
    }

    /// `(Σ_f weights_f ∂D_f/∂W, Σ_f weights_f ∂D_f/∂b)`, `W` in its `[C, R, 4, 4]` layout; the
    /// blocks' parts are added in block order.
    pub fn weight_grad(&self, weights: &[T]) -> (Vec<T>, Vec<T>) {
        let pairs = scatter_pairs(self.weights.r);
        let mut starts = Vec::with_capacity(self.blocks.len());
        let mut at = 0;
        for b in &self.blocks {
            starts.push(at);
            at += b.frames;
        }
        let parts: Vec<(Vec<T>, Vec<T>)> = self
            .blocks
            .par_iter()
            .zip(&starts)
            .map(|(b, &s)| block_weight_grad(&self.weights, b, &weights[s..s + b.frames], &pairs))
            .collect();
        let w = &self.weights;
        let mut gw = vec![T::ZERO; w.c * w.r * TAPS];
        let mut gb = vec![T::ZERO; w.r];
        for (pw, pb) in parts {
            for (a, b) in gw.iter_mut().zip(pw) {
                *a += b;
            }
            for (a, b) in gb.iter_mut().zip(pb) {
                *a += b;
            }
        }
        (permute_taps(&gw, w.c, w.r, true), gb)
    }
}

/// The plain pass in the model's float type.
#[derive(Debug, Clone)]
enum Plain {
    F32(PlainDeconvNll<f32>),
    F64(PlainDeconvNll<f64>),
}

/// What [`DeferredDecoder::surrogate`] needs after the loss's backward pass.
#[derive(Debug, Clone)]
pub struct DeferredDecoder {
    plain: Plain,
    /// The zero leaf whose gradient is each frame's weight in the loss.
    leaf: Tensor<1>,
}

impl Decoder {
    /// The distortion `D_f = −log p(x_f | a_f)` of each frame, `[N]`, for a training step:
    /// with the last layer and the distortion in plain Rust (module documentation) on an
    /// autodiff device, and what [`DeferredDecoder::surrogate`] needs to give the layer's
    /// weight and bias their gradient; otherwise (evaluation, validation) the same plain
    /// forward pass ([`plain_nll`]) and nothing to defer. Burn's layers and
    /// [`crate::Ekvae::bernoulli_nll`] are the reference the tests compare both with.
    ///
    /// # Shapes
    /// - `a`: `[N, m]`; `target`: the frames' `[N, r², 8, 8]` values
    ///   ([`crate::nets::Encoder::block_values`])
    ///
    /// # Errors
    /// If a tensor's values cannot be read.
    pub fn nll_deferred(
        &self,
        a: Tensor<2>,
        target: &Values,
    ) -> Result<(Tensor<1>, Option<DeferredDecoder>)> {
        let [n, _] = a.dims();
        let h = self.hidden_grid(a); // [N, C·16]
        let (device, dtype) = (h.device(), h.dtype());
        if !device.is_autodiff() {
            let nll = match dtype {
                DType::F64 => self.plain_nll_of::<f64>(&h, target)?,
                _ => self.plain_nll_of::<f32>(&h, target)?,
            };
            return Ok((Tensor::<1>::from_data(TensorData::new(nll, [n]), (&device, dtype)), None));
        }
        let mut plain = match dtype {
            DType::F64 => Plain::F64(self.plain_forward::<f64>(&h, target)?),
            _ => Plain::F32(self.plain_forward::<f32>(&h, target)?),
        };
        // The values and ∂D/∂h go into the graph now; the weight gradient later needs only the
        // blocks' state, so they are moved out rather than copied.
        let (nll, grad_h) = match &mut plain {
            Plain::F32(p) => (
                std::mem::take(&mut p.nll),
                TensorData::new(std::mem::take(&mut p.grad_h), h.dims()),
            ),
            Plain::F64(p) => (
                std::mem::take(&mut p.nll),
                TensorData::new(std::mem::take(&mut p.grad_h), h.dims()),
            ),
        };
        let grad_h = Tensor::<2>::from_data(grad_h, (&device, dtype));
        let s = (h * grad_h).sum_dim(1).reshape([n]);
        let value = Tensor::<1>::from_data(TensorData::new(nll, [n]), (&device, dtype));
        let leaf = Tensor::<1>::zeros([n], (&device, dtype)).require_grad();
        let d = value + s.clone() - s.detach() + leaf.clone();
        Ok((d, Some(DeferredDecoder { plain, leaf })))
    }

    fn plain_forward<T: Real>(&self, h: &Tensor<2>, target: &Values) -> Result<PlainDeconvNll<T>> {
        let hv = T::read(h.clone())?;
        let x = T::of_values(target);
        Ok(PlainDeconvNll::forward(self.plain_weights()?, &hv, &x))
    }

    fn plain_nll_of<T: Real>(&self, h: &Tensor<2>, target: &Values) -> Result<Vec<f64>> {
        let hv = T::read(h.clone())?;
        let x = T::of_values(target);
        Ok(plain_nll(&self.plain_weights()?, &hv, &x))
    }

    fn plain_weights<T: Real>(&self) -> Result<DeconvWeights<T>> {
        let [c, r, _, _] = self.deconv.weight.dims();
        let w = T::read(self.deconv.weight.val())?;
        let b = match &self.deconv.bias {
            Some(b) => T::read(b.val())?,
            None => vec![T::ZERO; r],
        };
        Ok(DeconvWeights { c, r, w, b })
    }
}

impl DeferredDecoder {
    /// `⟨W, ∂L/∂W⟩ + ⟨b, ∂L/∂b⟩` for the decoder's last layer, given the loss's backward pass
    /// `grads` (which holds each frame's weight as the gradient of the zero leaf); its backward
    /// pass gives `W` and `b` their gradient. `None` if the loss did not read the distortion.
    ///
    /// # Errors
    /// If a gradient cannot be read.
    pub fn surrogate(&self, grads: &Gradients, decoder: &Decoder) -> Result<Option<Tensor<1>>> {
        let Some(g) = self.leaf.grad(grads) else {
            return Ok(None);
        };
        let weight = decoder.deconv.weight.val();
        let (device, dtype) = (weight.device(), weight.dtype());
        let dims = weight.dims();
        let (gw, gb) = match &self.plain {
            Plain::F32(p) => {
                let (gw, gb) = p.weight_grad(&f32::read(g)?);
                (TensorData::new(gw, dims), TensorData::new(gb, [p.weights.r]))
            }
            Plain::F64(p) => {
                let (gw, gb) = p.weight_grad(&f64::read(g)?);
                (TensorData::new(gw, dims), TensorData::new(gb, [p.weights.r]))
            }
        };
        let gw = Tensor::<4>::from_data(gw, (&device, dtype));
        let mut s = (weight * gw).sum();
        if let Some(b) = &decoder.deconv.bias {
            let gb = Tensor::<1>::from_data(gb, (&device, dtype));
            s = s + (b.val() * gb).sum();
        }
        Ok(Some(s))
    }
}

#[cfg(test)]
mod tests {
    //! The hand-derived backward pass against central finite differences, in `f64` without
    //! burn. (Values and gradients against burn's transposed convolution and
    //! `bernoulli_nll`, through the whole objective, are in `model/tests/gradcheck.rs`.)

    use super::*;

    fn pseudo(len: usize, scale: f64, phase: f64) -> Vec<f64> {
        (0..len).map(|i| (0.37 * i as f64 + phase).sin() * scale).collect()
    }

    /// Σ_f g_f D_f at the given input and weights.
    fn weighted(w: &DeconvWeights<f64>, h: &[f64], x: &[f64], g: &[f64]) -> f64 {
        let p = PlainDeconvNll::forward(w.clone(), h, x);
        p.nll.iter().zip(g).map(|(d, g)| d * g).sum()
    }

    #[test]
    #[allow(clippy::needless_range_loop)] // entry i is perturbed, then its gradient read
    fn backward_matches_finite_differences() {
        // Two input channels, four output channels, over more frames than one block holds.
        let (c, r, n) = (2, 4, BLOCK + 3);
        let w = DeconvWeights { c, r, w: pseudo(c * r * TAPS, 0.8, 0.3), b: pseudo(r, 0.5, 1.1) };
        let h = pseudo(n * c * POSITIONS, 1.5, 0.7);
        let x: Vec<f64> = pseudo(n * r * PIXELS, 1.0, 2.0).iter().map(|v| v.abs()).collect();
        let g = pseudo(n, 1.0, 0.4).iter().map(|v| 1.0 + v).collect::<Vec<_>>();
        let p = PlainDeconvNll::forward(w.clone(), &h, &x);
        let (gw, gb) = p.weight_grad(&g);
        // The value sums ~5,000 terms of order 1, so a smaller step loses digits to rounding.
        let eps = 1e-4;
        let mut worst: f64 = 0.0;
        let mut compare = |analytic: f64, plus: f64, minus: f64| {
            let fd = (plus - minus) / (2.0 * eps);
            worst = worst.max((analytic - fd).abs() / (1.0 + fd.abs()));
        };
        for i in 0..h.len() {
            let (mut hp, mut hm) = (h.clone(), h.clone());
            hp[i] += eps;
            hm[i] -= eps;
            let f = i / (c * POSITIONS);
            compare(g[f] * p.grad_h[i], weighted(&w, &hp, &x, &g), weighted(&w, &hm, &x, &g));
        }
        for i in 0..w.w.len() {
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp.w[i] += eps;
            wm.w[i] -= eps;
            compare(gw[i], weighted(&wp, &h, &x, &g), weighted(&wm, &h, &x, &g));
        }
        for i in 0..r {
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp.b[i] += eps;
            wm.b[i] -= eps;
            compare(gb[i], weighted(&wp, &h, &x, &g), weighted(&wm, &h, &x, &g));
        }
        eprintln!("worst relative error {worst:e}");
        assert!(worst < 1e-7, "worst relative error {worst:e}");
    }

    /// The evaluation path: [`plain_nll`] gives the training pass's values bit for bit, and
    /// `nll_deferred` off the autodiff device (what evaluation and validation run) agrees
    /// with burn's `ConvTranspose2d` + `bernoulli_nll`, the reference (here in the default
    /// `f32`: within 1e-5 relative, the softplus's own accuracy being 2e-7 per term; the
    /// whole objective's `f64` comparison is in `model/tests/gradcheck.rs`).
    #[test]
    fn evaluation_distortion_matches_the_training_pass_and_burn() {
        use crate::nets::{DecoderConfig, Values};
        use burn::tensor::Device;
        let (c, r, n) = (3, 4, BLOCK + 5);
        let w = DeconvWeights { c, r, w: pseudo(c * r * TAPS, 0.8, 0.3), b: pseudo(r, 0.5, 1.1) };
        let h = pseudo(n * c * POSITIONS, 1.5, 0.7);
        let x: Vec<f64> = pseudo(n * r * PIXELS, 1.0, 2.0).iter().map(|v| v.abs()).collect();
        assert_eq!(plain_nll(&w, &h, &x), PlainDeconvNll::forward(w, &h, &x).nll);

        let device = Device::flex();
        let dec = DecoderConfig::new(16, 3).with_channels(4).with_hidden(8).init(&device);
        let frames = BLOCK + 7;
        let a: Vec<f32> = pseudo(frames * 3, 1.2, 0.2).iter().map(|&v| v as f32).collect();
        let a = Tensor::<2>::from_data(TensorData::new(a, [frames, 3]), &device);
        let target: Vec<f32> =
            pseudo(frames * 256, 1.0, 0.9).iter().map(|v| v.abs() as f32).collect();
        let (plain, deferred) = dec.nll_deferred(a.clone(), &Values::F32(target.clone())).unwrap();
        assert!(deferred.is_none());
        let logits = dec.forward_blocks(a).reshape([frames, 4, 64]);
        let t = Tensor::<3>::from_data(TensorData::new(target, [frames, 4, 64]), &device);
        let reference = crate::Ekvae::bernoulli_nll(logits, t);
        let (p, q) = (f64::read(plain).unwrap(), f64::read(reference).unwrap());
        let worst = p.iter().zip(&q).map(|(a, b)| (a - b).abs() / b.abs()).fold(0.0, f64::max);
        assert!(worst < 1e-5, "worst relative difference {worst:e}");
    }

    #[test]
    fn scatter_gives_each_pixel_its_taps() {
        // Stride 2 with a 4×4 kernel and padding 1 on a 4×4 input: along each axis an inner
        // output row receives two taps and the two border rows one (the padding crops the
        // full 10×10 output), so 2×2 inside, 2 on the edges, 1 in the corners.
        let pairs = scatter_pairs(1);
        assert_eq!(pairs.len(), 196);
        let mut count = [0usize; PIXELS];
        for &(_, pix) in &pairs {
            count[pix] += 1;
        }
        let axis = |v: usize| if v == 0 || v == SIDE - 1 { 1 } else { 2 };
        for (pix, &c) in count.iter().enumerate() {
            assert_eq!(c, axis(pix / SIDE) * axis(pix % SIDE), "pixel {pix}: {count:?}");
        }
    }

    #[test]
    fn fast_f32_bce_matches_f64() {
        // Every logit on a grid of step 1/64 over [−40, 40] (and the extremes), three targets:
        // the value within 4·10⁻⁷ relative (below l = −87, where e^{−|l|} is clamped at
        // 1.6·10⁻³⁸, an absolute error of that size), the gradient within 2·10⁻⁷.
        let (mut worst_v, mut worst_g): (f64, f64) = (0.0, 0.0);
        let logits = (-2560..=2560).map(|i| i as f32 / 64.0).chain([-1e30, -100.0, 100.0, 1e30]);
        for l in logits {
            for t in [0.0f32, 0.3, 1.0] {
                let (v, g) = bce_f32(l, t);
                let (rv, rg) = bce_f64(f64::from(l), f64::from(t));
                let err = (f64::from(v) - rv).abs();
                assert!(err <= 4e-7 * rv.abs() + 2e-38, "l {l}, t {t}: {v} vs {rv}");
                if rv.abs() > 1e-30 {
                    worst_v = worst_v.max(err / rv.abs());
                }
                worst_g = worst_g.max((f64::from(g) - rg).abs());
            }
        }
        eprintln!("bce_f32: worst relative value error {worst_v:e}, gradient error {worst_g:e}");
        assert!(worst_v < 4e-7 && worst_g < 2e-7, "{worst_v:e} {worst_g:e}");
    }

    #[test]
    fn vectorised_bce_pass_equals_the_scalar_one_bit_for_bit() {
        // The AVX2 loop (where the CPU has it) against bce_f32 one value at a time.
        let n = 1003;
        let logits: Vec<f32> = (0..n).map(|i| (i as f32 - 500.0) / 7.3).collect();
        let target: Vec<f32> = (0..n).map(|i| (i % 5) as f32 / 4.0).collect();
        let (mut l, mut v) = (logits.clone(), vec![0.0; n]);
        f32::bce_pass(&mut l, &target, &mut v);
        for i in 0..n {
            let (d, g) = bce_f32(logits[i], target[i]);
            assert_eq!((d.to_bits(), g.to_bits()), (v[i].to_bits(), l[i].to_bits()), "at {i}");
        }
    }

    #[test]
    fn f32_and_f64_agree() {
        let (c, r, n) = (3, 1, 5);
        let w = DeconvWeights { c, r, w: pseudo(c * r * TAPS, 0.8, 0.3), b: pseudo(r, 0.5, 1.1) };
        let h = pseudo(n * c * POSITIONS, 1.5, 0.7);
        let x: Vec<f64> = pseudo(n * r * PIXELS, 1.0, 2.0).iter().map(|v| v.abs()).collect();
        let w32 = DeconvWeights {
            c,
            r,
            w: w.w.iter().map(|&v| v as f32).collect(),
            b: w.b.iter().map(|&v| v as f32).collect(),
        };
        let to32 = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        let p64 = PlainDeconvNll::forward(w, &h, &x);
        let p32 = PlainDeconvNll::forward(w32, &to32(&h), &to32(&x));
        for (a, b) in p64.nll.iter().zip(&p32.nll) {
            assert!((a - b).abs() < 1e-4 * (1.0 + a.abs()), "{a} vs {b}");
        }
        for (a, b) in p64.grad_h.iter().zip(&p32.grad_h) {
            assert!((a - f64::from(*b)).abs() < 1e-5, "{a} vs {b}");
        }
    }
}
