//! Small batched linear algebra for `n ≤ 8`, built from differentiable burn
//! tensor ops.
//!
//! burn 0.22.1 has no Cholesky factorisation or triangular solve (burn-linalg
//! offers LU/QR/determinant, without autodiff), so the Kalman filter uses the
//! routines here. Every routine works on a batch of matrices `[N, n, n]`,
//! issues `O(n)` tensor ops whatever `N` is (burn's per-op overhead, not the
//! flops, dominates at these sizes), and is differentiable through burn
//! autodiff in f32 and f64.
//!
//! The routines do not read tensor data back: a matrix that is not positive
//! definite yields NaN in the factor ([`cholesky`]); [`try_cholesky`] and the
//! Kalman functions check finiteness once and return
//! [`Error::NotPositiveDefinite`](crate::Error::NotPositiveDefinite).

use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::error::{Error, Result};

/// `ln(2π)`.
pub const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// The identity `[1, n, n]` with the given device and dtype (a constant, not
/// tracked by autodiff).
pub fn eye(n: usize, device: &Device, dtype: DType) -> Tensor<3> {
    let mut v = vec![0.0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    Tensor::from_data(TensorData::new(v, [1, n, n]), (device, dtype))
}

/// The identity `[1, n, n]` with the device and dtype of `like`.
pub fn eye_like<const D: usize>(n: usize, like: &Tensor<D>) -> Tensor<3> {
    eye(n, &like.device(), like.dtype())
}

/// `(A + Aᵀ) / 2` for a batch `[N, n, n]`.
pub fn symmetrize(a: Tensor<3>) -> Tensor<3> {
    (a.clone() + a.transpose()).mul_scalar(0.5)
}

/// The diagonal matrices `[N, n, n]` of a batch of vectors `[N, n]`.
pub fn diag_embed(v: Tensor<2>) -> Tensor<3> {
    let [_, n] = v.dims();
    let eye = eye_like(n, &v);
    v.unsqueeze_dim::<3>(1) * eye
}

/// The diagonals `[N, n]` of a batch of matrices `[N, n, n]`.
pub fn diagonal(a: Tensor<3>) -> Tensor<2> {
    let [_, n, _] = a.dims();
    let eye = eye_like(n, &a);
    (a * eye).sum_dim(2).squeeze_dim(2)
}

/// A batch of lower-triangular Cholesky factors `L` with `L Lᵀ = A + jitter·I`.
#[derive(Debug, Clone)]
pub struct Cholesky {
    /// The factors, `[N, n, n]`, exactly zero above the diagonal.
    pub factor: Tensor<3>,
    /// Their diagonals as columns, `[N, n, 1]` (positive where `A` is positive definite).
    pub diag: Tensor<3>,
}

/// Cholesky factorisation of a batch `[N, n, n]` of symmetric positive
/// definite matrices, after adding `jitter` to the diagonal.
///
/// Right-looking (outer-product) algorithm: column `j` of `L` is column `j` of
/// the current Schur complement divided by the square root of its pivot, and
/// the complement is updated by `− l lᵀ`; 7 tensor ops per column. Only the
/// lower triangle is meaningful during the loop and the factor is masked with
/// `tril` at the end. A non-positive pivot gives NaN (no data is read back);
/// use [`try_cholesky`] for a checked version.
pub fn cholesky(a: Tensor<3>, jitter: f64) -> Cholesky {
    let [_, n, _] = a.dims();
    let mut a = if jitter != 0.0 {
        a.clone() + eye_like(n, &a).mul_scalar(jitter)
    } else {
        a
    };
    let mut cols = Vec::with_capacity(n);
    let mut diag = Vec::with_capacity(n);
    for j in 0..n {
        let col = a.clone().narrow(2, j, 1); // [N, n, 1]
        let pivot = col.clone().narrow(1, j, 1).sqrt(); // [N, 1, 1]
        let l = col / pivot.clone(); // [N, n, 1]
        if j + 1 < n {
            a = a - l.clone().matmul(l.clone().transpose());
        }
        cols.push(l);
        diag.push(pivot);
    }
    Cholesky {
        factor: Tensor::cat(cols, 2).tril(0),
        diag: Tensor::cat(diag, 1),
    }
}

/// [`cholesky`], then a check (one read-back of the `[N, n]` diagonal) that
/// every pivot is finite and positive.
pub fn try_cholesky(a: Tensor<3>, jitter: f64, what: &'static str) -> Result<Cholesky> {
    let chol = cholesky(a, jitter);
    if all_positive_finite(chol.diag.clone()) {
        Ok(chol)
    } else {
        Err(Error::NotPositiveDefinite { what })
    }
}

/// Whether every element is finite and `> 0` (reads the tensor back).
pub(crate) fn all_positive_finite<const D: usize>(t: Tensor<D>) -> bool {
    values_f64(t).iter().all(|v| v.is_finite() && *v > 0.0)
}

/// Whether every element is finite (reads the tensor back).
pub(crate) fn all_finite<const D: usize>(t: Tensor<D>) -> bool {
    values_f64(t).iter().all(|v| v.is_finite())
}

/// The elements of a float tensor as `f64` (reads back; detached).
pub fn values_f64<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.detach()
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .unwrap_or_default()
}

/// The inverse `L⁻¹` of a batch of lower-triangular factors.
///
/// Writes `L = D (I + N)` with `D` the diagonal and `N` strictly lower
/// triangular, hence nilpotent, so `(I + N)⁻¹ = Σ_{k<n} (−N)^k` exactly
/// (evaluated by Horner's rule: `n − 1` matmuls), and
/// `L⁻¹ = (I + N)⁻¹ D⁻¹`. About `2n + 4` tensor ops, against `O(n)` ops per
/// row for forward substitution; the sum of path products it forms is the
/// one substitution forms, in another order.
pub fn tril_inverse(chol: &Cholesky) -> Tensor<3> {
    let [_, n, _] = chol.factor.dims();
    let eye = eye_like(n, &chol.factor);
    let dinv = chol.diag.clone().recip(); // [N, n, 1]
    let nil = chol.factor.clone() * dinv.clone() - eye.clone(); // D⁻¹L − I, [N, n, n]
    let mut x = eye.clone();
    for k in 1..n {
        x = if k == 1 {
            eye.clone() - nil.clone()
        } else {
            eye.clone() - nil.clone().matmul(x)
        };
    }
    // Columns scaled by D⁻¹; broadcasting makes the [1, n, n] identity (n = 1) batched.
    x * dinv.transpose()
}

/// Solves `L X = B` for a batch of lower-triangular factors `L` `[N, n, n]`
/// and right-hand sides `B` `[N, n, r]` (`N` may be 1 on either side).
pub fn solve_lower(chol: &Cholesky, b: Tensor<3>) -> Tensor<3> {
    tril_inverse(chol).matmul(b)
}

/// Solves `A X = B` given the Cholesky factor of `A`: `X = L⁻ᵀ L⁻¹ B`.
pub fn cholesky_solve(chol: &Cholesky, b: Tensor<3>) -> Tensor<3> {
    let linv = tril_inverse(chol);
    linv.clone().transpose().matmul(linv.matmul(b))
}

/// `log det A = 2 Σ log L_ii`, `[N]`.
pub fn log_det(chol: &Cholesky) -> Tensor<1> {
    let [batch, _, _] = chol.diag.dims();
    chol.diag
        .clone()
        .log()
        .sum_dim(1)
        .mul_scalar(2.0)
        .reshape([batch])
}

/// Element-wise log-density of independent normals `N(x; mean, var)`, same
/// shape as the inputs (sum over the dimensions you need).
pub fn gaussian_log_prob_diag<const D: usize>(
    x: Tensor<D>,
    mean: Tensor<D>,
    var: Tensor<D>,
) -> Tensor<D> {
    let diff = x - mean;
    (diff.square() / var.clone() + var.log() + LN_2PI).mul_scalar(-0.5)
}

/// Log-density `[N]` of `N(x; mean, L Lᵀ)` for a batch of points `x` `[N, n]`,
/// means `[N, n]` and Cholesky factors `[N, n, n]` of the covariances.
pub fn gaussian_log_prob_chol(x: Tensor<2>, mean: Tensor<2>, chol: &Cholesky) -> Tensor<1> {
    let [batch, n] = x.dims();
    let diff = (x - mean).reshape([batch, n, 1]);
    let white = solve_lower(chol, diff); // [N, n, 1]
    let quad = white.square().sum_dim(1).reshape([batch]);
    (quad + log_det(chol) + (n as f64) * LN_2PI).mul_scalar(-0.5)
}

/// Log-density `[N]` of `N(x; mean, cov)` with full covariances `[N, n, n]`
/// (factorised with [`try_cholesky`] after adding `jitter`).
pub fn gaussian_log_prob_full(
    x: Tensor<2>,
    mean: Tensor<2>,
    cov: Tensor<3>,
    jitter: f64,
) -> Result<Tensor<1>> {
    let [batch, n] = x.dims();
    if mean.dims() != [batch, n] {
        return Err(Error::Shape {
            what: "mean",
            expected: format!("[{batch}, {n}] like x"),
            got: mean.dims().to_vec(),
        });
    }
    if cov.dims() != [batch, n, n] {
        return Err(Error::Shape {
            what: "cov",
            expected: format!("[{batch}, {n}, {n}]"),
            got: cov.dims().to_vec(),
        });
    }
    let chol = try_cholesky(cov, jitter, "covariance")?;
    Ok(gaussian_log_prob_chol(x, mean, &chol))
}
