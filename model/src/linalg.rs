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

/// Batched product of small matrices, `[N, p, q] × [N, q, r] → [N, p, r]`
/// (either `N` may be 1 and is then broadcast).
///
/// Same result as [`Tensor::matmul`], computed as a broadcast multiply and
/// sum with the batch as the innermost (contiguous) axis: burn-flex's matmul
/// issues one gemm call per matrix, which at `n = 4` and `N = B·T = 1600`
/// is about 3× slower forward and backward (measured, see `docs/kalman.md`).
pub fn bmm(a: Tensor<3>, b: Tensor<3>) -> Tensor<3> {
    let [na, p, _] = a.dims();
    let [nb, _, r] = b.dims();
    let a_s = a.permute([1, 2, 0]).unsqueeze_dim::<4>(2); // [p, q, 1, Na]
    let b_s = b.permute([1, 2, 0]).unsqueeze_dim::<4>(0); // [1, q, r, Nb]
    (a_s * b_s).sum_dim(1).reshape([p, r, na.max(nb)]).permute([2, 0, 1])
}

/// Batched matrix–vector product `[N, p, q] × [N, q, 1] → [N, p, 1]`
/// (either `N` may be 1), as a broadcast multiply and a sum over the last axis.
pub fn mat_vec(a: Tensor<3>, x: Tensor<3>) -> Tensor<3> {
    let [nx, q, _] = x.dims();
    (a * x.reshape([nx, 1, q])).sum_dim(2)
}

/// [`mat_vec`] for `[B, T, p, q] × [B, T, q, 1]`.
pub fn mat_vec4(a: Tensor<4>, x: Tensor<4>) -> Tensor<4> {
    let [b0, b1, q, _] = x.dims();
    (a * x.reshape([b0, b1, 1, q])).sum_dim(3)
}

/// [`bmm`] for `[B, T, p, q] × [B, T, q, r]` (equal leading dimensions).
pub fn bmm4(a: Tensor<4>, b: Tensor<4>) -> Tensor<4> {
    let [b0, b1, p, q] = a.dims();
    let [_, _, _, r] = b.dims();
    bmm(a.reshape([b0 * b1, p, q]), b.reshape([b0 * b1, q, r])).reshape([b0, b1, p, r])
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
    let mut a = if jitter != 0.0 { a.clone() + eye_like(n, &a).mul_scalar(jitter) } else { a };
    let mut cols = Vec::with_capacity(n);
    let mut diag = Vec::with_capacity(n);
    for j in 0..n {
        let col = a.clone().narrow(2, j, 1); // [N, n, 1]
        let pivot = col.clone().narrow(1, j, 1).sqrt(); // [N, 1, 1]
        let l = col / pivot.clone(); // [N, n, 1]
        if j + 1 < n {
            a = a - l.clone() * l.clone().transpose(); // outer product by broadcasting
        }
        cols.push(l);
        diag.push(pivot);
    }
    Cholesky { factor: Tensor::cat(cols, 2).tril(0), diag: Tensor::cat(diag, 1) }
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
    t.detach().into_data().convert::<f64>().try_to_vec::<f64>().unwrap_or_default()
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
        x = if k == 1 { eye.clone() - nil.clone() } else { eye.clone() - bmm(nil.clone(), x) };
    }
    // Columns scaled by D⁻¹; broadcasting makes the [1, n, n] identity (n = 1) batched.
    x * dinv.transpose()
}

/// Solves `L X = B` for a batch of lower-triangular factors `L` `[N, n, n]`
/// and right-hand sides `B` `[N, n, r]` (`N` may be 1 on either side).
pub fn solve_lower(chol: &Cholesky, b: Tensor<3>) -> Tensor<3> {
    bmm(tril_inverse(chol), b)
}

/// Solves `A X = B` given the Cholesky factor of `A`: `X = L⁻ᵀ L⁻¹ B`.
pub fn cholesky_solve(chol: &Cholesky, b: Tensor<3>) -> Tensor<3> {
    let linv = tril_inverse(chol);
    bmm(linv.clone().transpose(), bmm(linv, b))
}

/// `log det A = 2 Σ log L_ii`, `[N]`.
pub fn log_det(chol: &Cholesky) -> Tensor<1> {
    let [batch, _, _] = chol.diag.dims();
    chol.diag.clone().log().sum_dim(1).mul_scalar(2.0).reshape([batch])
}

/// Log-density of `N(x; mean, diag var)` over the last dimension `d`:
/// `−½ (Σ (x − mean)² / var + Σ log var + d · ln 2π)`, the two sums taken separately.
///
/// # Shapes
/// - `x`, `mean`: `[.., d]`; `var`: `[.., d]` or broadcastable to it (e.g. `[1, .., d]`);
///   returns `[.., 1]` (the last dimension kept with size 1)
pub fn gaussian_log_prob_diag<const D: usize>(
    x: Tensor<D>,
    mean: Tensor<D>,
    var: Tensor<D>,
) -> Tensor<D> {
    let d = x.dims()[D - 1] as f64;
    let diff = x - mean;
    let maha = (diff.clone() * diff / var.clone()).sum_dim(D - 1);
    let log_det = var.log().sum_dim(D - 1);
    (maha + log_det).add_scalar(d * LN_2PI).mul_scalar(-0.5)
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ten<const D: usize>(v: Vec<f64>, shape: [usize; D], device: &Device) -> Tensor<D> {
        Tensor::from_data(TensorData::new(v, shape), (device, DType::F64))
    }

    /// The plain-f64 Cholesky factor (the reference; [`ekvae_numerics::cholesky`]).
    fn chol_ref(a: &[f64], n: usize) -> Vec<f64> {
        let mut l = vec![0.0; n * n];
        ekvae_numerics::cholesky(a, n, &mut l).expect("SPD test matrix");
        l
    }

    /// A = M Mᵀ + n·0.1·I from a random square M: SPD.
    fn spd_from(m: &[f64], n: usize) -> Vec<f64> {
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n).map(|k| m[i * n + k] * m[j * n + k]).sum::<f64>()
                    + if i == j { 0.1 } else { 0.0 };
            }
        }
        a
    }

    #[test]
    fn cholesky_of_known_matrix() {
        // A = [[4, 2], [2, 3]]: L = [[2, 0], [1, √2]] by hand.
        let d = Device::flex();
        let chol = cholesky(ten(vec![4.0, 2.0, 2.0, 3.0], [1, 2, 2], &d), 0.0);
        let l = values_f64(chol.factor.clone());
        let want = [2.0, 0.0, 1.0, 2f64.sqrt()];
        for (g, w) in l.iter().zip(want) {
            assert!((g - w).abs() < 1e-15, "{l:?}");
        }
        let ld = values_f64(log_det(&chol))[0];
        assert!((ld - 8f64.ln()).abs() < 1e-14, "log det {ld} vs ln 8");
    }

    #[test]
    fn not_positive_definite_is_an_error() {
        let d = Device::flex();
        let a = ten(vec![1.0, 2.0, 2.0, 1.0], [1, 2, 2], &d); // eigenvalues 3, −1
        assert!(matches!(
            try_cholesky(a, 0.0, "test"),
            Err(Error::NotPositiveDefinite { what: "test" })
        ));
    }

    #[test]
    fn gaussian_log_densities_match_hand_values() {
        let d = Device::flex();
        // log N(1; 0.5, 4) = −½ (0.25/4 + ln 4 + ln 2π), by hand.
        let lp = values_f64(gaussian_log_prob_diag(
            ten(vec![1.0], [1], &d),
            ten(vec![0.5], [1], &d),
            ten(vec![4.0], [1], &d),
        ))[0];
        let want = -0.5 * (0.0625 + 4f64.ln() + LN_2PI);
        assert!((lp - want).abs() < 1e-14, "{lp} vs {want}");
        // Two rows of two independent coordinates with a variance broadcast over the rows, by
        // hand: row 0 at x − μ = (0.5, −1), var (4, 1): −½ (0.0625 + 1 + ln 4 + 2 ln 2π);
        // row 1 at x − μ = (0, 2): −½ (0 + 4 + ln 4 + 2 ln 2π).
        let lp = gaussian_log_prob_diag(
            ten(vec![1.0, -1.0, 0.5, 2.0], [2, 2], &d),
            ten(vec![0.5, 0.0, 0.5, 0.0], [2, 2], &d),
            ten(vec![4.0, 1.0], [1, 2], &d),
        );
        assert_eq!(lp.dims(), [2, 1]);
        let lp = values_f64(lp);
        let want =
            [-0.5 * (1.0625 + 4f64.ln() + 2.0 * LN_2PI), -0.5 * (4.0 + 4f64.ln() + 2.0 * LN_2PI)];
        for (g, w) in lp.iter().zip(want) {
            assert!((g - w).abs() < 1e-14, "{lp:?} vs {want:?}");
        }
        // Full covariance [[2, 0.5], [0.5, 1]] at x − μ = (1, −1):
        // Σ⁻¹ = [[1, −0.5], [−0.5, 2]] / 1.75, quad = (1 + 1 + 2) / 1.75, det = 1.75.
        let lp = values_f64(
            gaussian_log_prob_full(
                ten(vec![1.5, -1.0], [1, 2], &d),
                ten(vec![0.5, 0.0], [1, 2], &d),
                ten(vec![2.0, 0.5, 0.5, 1.0], [1, 2, 2], &d),
                0.0,
            )
            .unwrap(),
        )[0];
        let want = -0.5 * (4.0 / 1.75 + 1.75f64.ln() + 2.0 * LN_2PI);
        assert!((lp - want).abs() < 1e-13, "{lp} vs {want}");
        // Shape errors are reported, not panics.
        assert!(matches!(
            gaussian_log_prob_full(
                ten(vec![0.0; 2], [1, 2], &d),
                ten(vec![0.0; 3], [1, 3], &d),
                ten(vec![1.0, 0.0, 0.0, 1.0], [1, 2, 2], &d),
                0.0
            ),
            Err(Error::Shape { what: "mean", .. })
        ));
    }

    /// `bmm` and `mat_vec` equal `matmul`, including a broadcast batch of 1.
    #[test]
    fn bmm_matches_matmul() {
        let d = Device::flex();
        let a = ten((0..24).map(|i| (i as f64 * 0.37).sin()).collect(), [2, 3, 4], &d);
        let b = ten((0..8).map(|i| (i as f64 * 0.91).cos()).collect(), [1, 4, 2], &d);
        let got = values_f64(bmm(a.clone(), b.clone()));
        let want = values_f64(a.clone().matmul(b));
        assert_eq!(got.len(), 12);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-14);
        }
        let x = ten(vec![0.3, -1.2, 0.7, 2.0], [1, 4, 1], &d);
        let got = values_f64(mat_vec(a.clone(), x.clone()));
        let want = values_f64(a.matmul(x));
        assert_eq!(got.len(), 6);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-14);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        /// Cholesky, triangular inverse, solves and log-determinant on random
        /// SPD batches (n = 1…6) against the plain-Rust reference.
        #[test]
        fn cholesky_inverse_solve_match_reference(
            n in 1usize..7,
            seed in proptest::collection::vec(-1.5f64..1.5, 3 * 36),
            rhs in proptest::collection::vec(-2.0f64..2.0, 3 * 6 * 2),
        ) {
            let d = Device::flex();
            let batch = 3;
            let mut a = Vec::new();
            for b in 0..batch {
                a.extend(spd_from(&seed[b * 36..b * 36 + n * n], n));
            }
            let chol = cholesky(ten(a.clone(), [batch, n, n], &d), 0.0);
            let l = values_f64(chol.factor.clone());
            let linv = values_f64(tril_inverse(&chol));
            let bmat = ten(rhs[..batch * n * 2].to_vec(), [batch, n, 2], &d);
            let x = values_f64(cholesky_solve(&chol, bmat));
            let ld = values_f64(log_det(&chol));
            for b in 0..batch {
                let ab = &a[b * n * n..(b + 1) * n * n];
                let want = chol_ref(ab, n);
                let lb = &l[b * n * n..(b + 1) * n * n];
                for (g, w) in lb.iter().zip(&want) {
                    prop_assert!((g - w).abs() < 1e-10 * (1.0 + w.abs()), "L {:?} vs {:?}", lb, want);
                }
                // L⁻¹ L = I
                let li = &linv[b * n * n..(b + 1) * n * n];
                for i in 0..n {
                    for j in 0..n {
                        let v: f64 = (0..n).map(|k| li[i * n + k] * lb[k * n + j]).sum();
                        let e = if i == j { 1.0 } else { 0.0 };
                        prop_assert!((v - e).abs() < 1e-9, "L⁻¹L[{},{}] = {}", i, j, v);
                    }
                }
                // A X = B
                let xb = &x[b * n * 2..(b + 1) * n * 2];
                for i in 0..n {
                    for c in 0..2 {
                        let v: f64 = (0..n).map(|k| ab[i * n + k] * xb[k * 2 + c]).sum();
                        let want = rhs[b * n * 2 + i * 2 + c];
                        prop_assert!((v - want).abs() < 1e-8 * (1.0 + want.abs()), "AX = B at ({},{}): {} vs {}", i, c, v, want);
                    }
                }
                let ld_ref: f64 = (0..n).map(|i| 2.0 * want[i * n + i].ln()).sum();
                prop_assert!((ld[b] - ld_ref).abs() < 1e-10 * (1.0 + ld_ref.abs()));
            }
        }
    }

    /// d/dA of Σ W ⊙ L (random weights) by autodiff against central differences.
    #[test]
    fn cholesky_gradient_matches_finite_differences() {
        let n = 4;
        let a = spd_from(
            &[0.9, -0.3, 0.4, 0.2, 0.1, 1.1, -0.5, 0.3, -0.2, 0.4, 0.8, 0.1, 0.3, -0.1, 0.2, 1.2],
            n,
        );
        let w: Vec<f64> = (0..n * n).map(|i| ((i * 7 % 11) as f64 - 5.0) / 3.0).collect();
        let f = |a: Tensor<3>, d: &Device| -> Tensor<1> {
            let chol = cholesky(a, 0.0);
            let x = ten(vec![0.5, -1.0, 0.3, 2.0], [1, n], d);
            let lp = gaussian_log_prob_chol(x, ten(vec![0.1; n], [1, n], d), &chol);
            tril_inverse(&chol).sum()
                + (chol.factor * ten(w.clone(), [1, n, n], d)).sum()
                + lp.sum()
        };
        let ad = Device::flex().autodiff();
        let at = ten(a.clone(), [1, n, n], &ad).require_grad();
        let grads = f(at.clone(), &ad).backward();
        let g = values_f64(at.grad(&grads).unwrap());
        let d = Device::flex();
        let h = 1e-6;
        for idx in 0..n * n {
            let (i, j) = (idx / n, idx % n);
            if j > i {
                continue; // only the lower triangle (and diagonal) is read
            }
            let mut up = a.clone();
            up[idx] += h;
            let mut dn = a.clone();
            dn[idx] -= h;
            let num = (values_f64(f(ten(up, [1, n, n], &d), &d))[0]
                - values_f64(f(ten(dn, [1, n, n], &d), &d))[0])
                / (2.0 * h);
            assert!(
                (g[idx] - num).abs() < 1e-6 * (1.0 + num.abs()),
                "dA[{i},{j}]: {} vs {num}",
                g[idx]
            );
        }
    }
}
