//! The Bernoulli negative log-likelihood of decoder logits, value and gradient in one pass over
//! plain memory (the distortion D of every training step).
//!
//! Per pixel with logit l and target x ∈ [0, 1]:
//!
//! ```text
//! nll(l, x) = softplus(l) − x·l = max(l, 0) + log1p(e) − x·l,   e = exp(−|l|)
//! ∂nll/∂l   = σ(l) − x,          σ(l) = 1/(1 + e) if l ≥ 0, e/(1 + e) otherwise
//! ```
//!
//! one `exp` and one `log1p` per pixel, no overflow (the exponent is never positive). Written
//! with burn's operations (softplus, product, difference) the same loss takes seven recorded
//! operations forward, their backward passes, and `exp` of logits far below zero, which falls
//! into libm's slow underflow path; this was 15 % of a 32×32 training step (`perf`). The caller
//! ([`crate::Ekvae::bernoulli_nll`]) puts the result back into the graph as
//! `Σ_pixels l·g + c` with g = ∂nll/∂l detached and the per-frame constant
//! c = Σ_pixels (nll − l·g): the same value, and the gradient g.

use burn::tensor::{DType, Element, TensorData};
use rayon::prelude::*;

/// Beyond this |l|, e = exp(−|l|) < 2·10⁻³⁵ is taken as 0: it changes nothing in f32 or in
/// f64 (log1p(e) ≤ e is below an ulp of max(l, 0) ≥ 80 or of the frame's sum), and keeps
/// f32's `exp` out of its subnormal range (below −87.3), where it is slow.
const NEGLIGIBLE: f64 = 80.0;

/// The float element types the kernel runs in (the model's f32, the gradient checks' f64).
trait Real: Element + Copy + Send + Sync {
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    /// Value nll(l, x) and gradient σ(l) − x of one pixel.
    fn nll(l: Self, x: Self) -> (Self, Self);
}

macro_rules! real {
    ($t:ty) => {
        impl Real for $t {
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline]
            fn nll(l: $t, x: $t) -> ($t, $t) {
                let a = l.abs();
                let e = if a > NEGLIGIBLE as $t { 0.0 } else { (-a).exp() };
                let value = l.max(0.0) + e.ln_1p() - x * l;
                let sigmoid = if l >= 0.0 { 1.0 / (1.0 + e) } else { e / (1.0 + e) };
                (value, sigmoid - x)
            }
        }
    };
}
real!(f32);
real!(f64);

/// The gradient ∂nll/∂l (shape of `logits`, in their dtype) and, per frame of `per_frame`
/// consecutive pixels, the constant c = Σ (nll − l·∂nll/∂l), accumulated in f64 in pixel
/// order (so the result does not depend on the thread count).
///
/// `logits` is F64 or is computed in f32 (the model's dtype); `x` is converted to it.
pub fn value_and_grad(
    logits: TensorData,
    x: TensorData,
    per_frame: usize,
) -> (TensorData, TensorData) {
    match logits.dtype() {
        DType::F64 => run::<f64>(logits, x, per_frame),
        _ => run::<f32>(logits, x, per_frame),
    }
}

fn run<T: Real>(logits: TensorData, x: TensorData, per_frame: usize) -> (TensorData, TensorData) {
    let shape = logits.shape().clone();
    let logits = logits.convert::<T>();
    let x = x.convert::<T>();
    let l = logits.as_slice::<T>().expect("converted to T just above");
    let x = x.as_slice::<T>().expect("converted to T just above");
    assert_eq!(l.len(), x.len(), "logits and targets have the same number of pixels");
    assert!(per_frame > 0 && l.len().is_multiple_of(per_frame), "whole frames");
    let mut grad = vec![T::from_f64(0.0); l.len()];
    let constants: Vec<T> = grad
        .par_chunks_mut(per_frame)
        .zip(l.par_chunks(per_frame).zip(x.par_chunks(per_frame)))
        .map(|(g, (l, x))| {
            let mut c = 0.0f64;
            for ((g, &l), &x) in g.iter_mut().zip(l).zip(x) {
                let (value, d) = T::nll(l, x);
                *g = d;
                c += value.to_f64() - l.to_f64() * d.to_f64();
            }
            T::from_f64(c)
        })
        .collect();
    let frames = constants.len();
    (TensorData::new(grad, shape), TensorData::new(constants, [frames]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook formulas in f64 (log(1 + exp(l)), 1/(1 + exp(−l))), for moderate logits.
    fn textbook(l: f64, x: f64) -> (f64, f64) {
        ((1.0 + l.exp()).ln() - x * l, 1.0 / (1.0 + (-l).exp()) - x)
    }

    #[test]
    fn one_pixel_matches_the_textbook_formulas() {
        for &l in &[-30.0, -5.0, -0.3, 0.0, 0.7, 4.0, 25.0] {
            for &x in &[0.0, 0.25, 1.0] {
                let (v, g) = f64::nll(l, x);
                let (tv, tg) = textbook(l, x);
                assert!((v - tv).abs() <= 1e-12 * (1.0 + tv.abs()), "value at l={l}, x={x}");
                assert!((g - tg).abs() <= 1e-15, "gradient at l={l}, x={x}");
            }
        }
    }

    #[test]
    fn gradient_is_the_finite_difference_of_the_value() {
        // Central differences in f64, h = 1e-6, over the range the decoder produces.
        let h = 1e-6;
        for i in 0..200 {
            let l = -40.0 + 0.4 * i as f64 + 0.013;
            for &x in &[0.0, 0.6, 1.0] {
                let fd = (f64::nll(l + h, x).0 - f64::nll(l - h, x).0) / (2.0 * h);
                let (_, g) = f64::nll(l, x);
                assert!((fd - g).abs() < 1e-8, "l={l}, x={x}: fd {fd} vs {g}");
            }
        }
    }

    #[test]
    fn extreme_logits_stay_finite_and_exact() {
        for &(l, x) in &[(-1e30f32, 0.0f32), (1e30, 1.0), (-100.0, 0.5), (100.0, 0.5), (-87.5, 0.0)]
        {
            let (v, g) = f32::nll(l, x);
            assert!(v.is_finite() && g.is_finite(), "l={l}");
            let want = l.max(0.0) - x * l;
            assert!((v - want).abs() <= want.abs() * 1e-6 + 1e-30, "l={l}: {v} vs {want}");
        }
        // Far below zero the gradient is −x; far above, 1 − x.
        assert_eq!(f32::nll(-200.0, 0.25).1, -0.25);
        assert_eq!(f32::nll(200.0, 0.25).1, 0.75);
    }

    #[test]
    fn frames_are_summed_separately_and_independently_of_threads() {
        let n = 5;
        let per = 37;
        let l: Vec<f32> = (0..n * per).map(|i| ((i * 7919) % 101) as f32 * 0.3 - 15.0).collect();
        let x: Vec<f32> = (0..n * per).map(|i| ((i * 31) % 5) as f32 / 4.0).collect();
        let run_with = |threads: usize| {
            rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| {
                value_and_grad(
                    TensorData::new(l.clone(), [n, per]),
                    TensorData::new(x.clone(), [n, per]),
                    per,
                )
            })
        };
        let (g1, c1) = run_with(1);
        let (g3, c3) = run_with(3);
        assert_eq!(g1.as_bytes(), g3.as_bytes());
        assert_eq!(c1.as_bytes(), c3.as_bytes());
        let g = g1.try_to_vec::<f32>().unwrap();
        let c = c1.try_to_vec::<f32>().unwrap();
        for f in 0..n {
            // c + Σ l·g is the frame's loss, computed here in f64 from the textbook formula.
            let range = f * per..(f + 1) * per;
            let want: f64 = range.clone().map(|i| textbook(l[i] as f64, x[i] as f64).0).sum();
            let lg: f64 = range.map(|i| l[i] as f64 * g[i] as f64).sum();
            let got = c[f] as f64 + lg;
            assert!((got - want).abs() <= 1e-5 * want.abs(), "frame {f}: {got} vs {want}");
        }
    }
}
