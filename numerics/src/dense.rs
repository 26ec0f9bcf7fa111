//! Small dense linear algebra on row-major slices, for the sizes the workspace sees (latent
//! state n ≤ 8 or so, control m ≤ 3 or so, a least-squares system of a few features).
//! Hand-written and allocation-free, so a horizon-30 iLQR iteration costs microseconds; no
//! BLAS, no nalgebra.
//!
//! A matrix `A` of shape `[r, c]` is a slice with `A[i·c + j] = A_ij`; outputs are written into
//! caller-owned slices. Only the leading elements a routine's sizes name are read or written,
//! so longer scratch buffers can be passed.

use std::fmt;

/// `out = Aᵀ v` for `A: [r, c]`, `v: [r]`, `out: [c]`; `out` is added to when `add`.
#[inline]
pub fn mat_t_vec(a: &[f64], r: usize, c: usize, v: &[f64], out: &mut [f64], add: bool) {
    if !add {
        out[..c].fill(0.0);
    }
    for i in 0..r {
        let vi = v[i];
        let row = &a[i * c..(i + 1) * c];
        for j in 0..c {
            out[j] += row[j] * vi;
        }
    }
}

/// `out = A v` for `A: [r, c]`, `v: [c]`, `out: [r]`.
#[inline]
pub fn mat_vec(a: &[f64], r: usize, c: usize, v: &[f64], out: &mut [f64]) {
    for i in 0..r {
        let row = &a[i * c..(i + 1) * c];
        out[i] = row.iter().zip(v).map(|(x, y)| x * y).sum();
    }
}

/// `out = A B` for `A: [r, k]`, `B: [k, c]`, `out: [r, c]`.
///
/// Each `out_ij` is accumulated from `+0` in the order `l = 0, 1, …`; terms with `A_il = 0` are
/// skipped (which changes nothing for finite `B`).
#[inline]
pub fn mat_mul(a: &[f64], b: &[f64], r: usize, k: usize, c: usize, out: &mut [f64]) {
    out[..r * c].fill(0.0);
    for i in 0..r {
        for l in 0..k {
            let ail = a[i * k + l];
            if ail == 0.0 {
                continue;
            }
            let brow = &b[l * c..(l + 1) * c];
            let orow = &mut out[i * c..(i + 1) * c];
            for j in 0..c {
                orow[j] += ail * brow[j];
            }
        }
    }
}

/// `out = A Bᵀ` for `A: [r, k]`, `B: [c, k]`, `out: [r, c]` (each entry a dot product of two
/// rows).
#[inline]
pub fn mat_mul_t(a: &[f64], b: &[f64], r: usize, k: usize, c: usize, out: &mut [f64]) {
    for i in 0..r {
        let arow = &a[i * k..(i + 1) * k];
        for j in 0..c {
            let brow = &b[j * k..(j + 1) * k];
            out[i * c + j] = arow.iter().zip(brow).map(|(x, y)| x * y).sum();
        }
    }
}

/// `out += Aᵀ B` for `A: [k, r]`, `B: [k, c]`, `out: [r, c]`.
#[inline]
pub fn add_mat_t_mul(a: &[f64], b: &[f64], k: usize, r: usize, c: usize, out: &mut [f64]) {
    for l in 0..k {
        let arow = &a[l * r..(l + 1) * r];
        let brow = &b[l * c..(l + 1) * c];
        for i in 0..r {
            let ali = arow[i];
            if ali == 0.0 {
                continue;
            }
            let orow = &mut out[i * c..(i + 1) * c];
            for j in 0..c {
                orow[j] += ali * brow[j];
            }
        }
    }
}

/// In place `S ← (S + Sᵀ)/2` for a square `[n, n]` matrix.
#[inline]
pub fn symmetrize(s: &mut [f64], n: usize) {
    for i in 0..n {
        for j in (i + 1)..n {
            let v = 0.5 * (s[i * n + j] + s[j * n + i]);
            s[i * n + j] = v;
            s[j * n + i] = v;
        }
    }
}

/// Whether the square `[n, n]` matrix `s` is symmetric to the tolerance `rel_tol`:
/// `|S_ij − S_ji| ≤ rel_tol · (1 + |S_ij|)` for every pair (false if an entry is NaN).
pub fn is_symmetric(s: &[f64], n: usize, rel_tol: f64) -> bool {
    (0..n).all(|i| {
        ((i + 1)..n).all(|j| {
            let (a, b) = (s[i * n + j], s[j * n + i]);
            (a - b).abs() <= rel_tol * (1.0 + a.abs())
        })
    })
}

/// The matrix handed to [`cholesky`] is not numerically positive definite (a pivot was zero,
/// negative, infinite or NaN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotPositiveDefinite;

impl fmt::Display for NotPositiveDefinite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("matrix is not positive definite")
    }
}

impl std::error::Error for NotPositiveDefinite {}

/// Cholesky factor `L` (lower triangular, `S = L Lᵀ`) of the symmetric `[n, n]` matrix `s`,
/// written into `l: [n, n]` (its upper triangle set to zero). Only the lower triangle of `s`
/// is read.
///
/// Column by column (Cholesky–Crout): `L_jj = √(S_jj − Σ_{k<j} L_jk²)`,
/// `L_ij = (S_ij − Σ_{k<j} L_ik L_jk) / L_jj`, each sum subtracted term by term in the order
/// `k = 0, 1, …`. Errors with [`NotPositiveDefinite`] (leaving `l` partly written) when a pivot
/// `S_jj − Σ L_jk²` is not a finite positive number.
#[inline]
pub fn cholesky(s: &[f64], n: usize, l: &mut [f64]) -> Result<(), NotPositiveDefinite> {
    l[..n * n].fill(0.0);
    for j in 0..n {
        let mut d = s[j * n + j];
        for k in 0..j {
            d -= l[j * n + k] * l[j * n + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return Err(NotPositiveDefinite);
        }
        let d = d.sqrt();
        l[j * n + j] = d;
        for i in (j + 1)..n {
            let mut v = s[i * n + j];
            for k in 0..j {
                v -= l[i * n + k] * l[j * n + k];
            }
            l[i * n + j] = v / d;
        }
    }
    Ok(())
}

/// Solves `L Lᵀ x = b` in place (`b: [n]` becomes `x`) given the Cholesky factor `l: [n, n]`
/// from [`cholesky`]: forward substitution with `L`, then back substitution with `Lᵀ`.
#[inline]
pub fn cholesky_solve(l: &[f64], n: usize, b: &mut [f64]) {
    for i in 0..n {
        let mut v = b[i];
        for k in 0..i {
            v -= l[i * n + k] * b[k];
        }
        b[i] = v / l[i * n + i];
    }
    for i in (0..n).rev() {
        let mut v = b[i];
        for k in (i + 1)..n {
            v -= l[k * n + i] * b[k];
        }
        b[i] = v / l[i * n + i];
    }
}

/// Eigen-decomposition of a symmetric `a: [n, n]` (row-major; only its symmetric part is used)
/// by cyclic Jacobi rotations: returns the eigenvalues in ascending order and the eigenvectors
/// as the columns of a row-major `[n, n]` matrix `V`, so that `A = V diag(λ) Vᵀ`. Meant for the
/// small matrices of this project (n ≤ 8); converges to machine precision in a few sweeps.
pub fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(a.len(), n * n, "symmetric_eigen: a is not [n, n]");
    let mut m = a.to_vec();
    symmetrize(&mut m, n);
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let scale = m.iter().fold(0.0f64, |s, x| s.max(x.abs()));
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i * n + j].powi(2))
            .sum();
        if off.sqrt() <= f64::EPSILON * scale.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..n {
            for q in (p + 1)..n {
                let apq = m[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                // The rotation that zeroes m[p][q] (Golub & Van Loan, Algorithm 8.5.1).
                let tau = (m[q * n + q] - m[p * n + p]) / (2.0 * apq);
                let t = tau.signum() / (tau.abs() + (1.0 + tau * tau).sqrt());
                let t = if tau == 0.0 { 1.0 } else { t };
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (mkp, mkq) = (m[k * n + p], m[k * n + q]);
                    m[k * n + p] = c * mkp - s * mkq;
                    m[k * n + q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let (mpk, mqk) = (m[p * n + k], m[q * n + k]);
                    m[p * n + k] = c * mpk - s * mqk;
                    m[q * n + k] = s * mpk + c * mqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| m[i * n + i].total_cmp(&m[j * n + j]));
    let values = order.iter().map(|&i| m[i * n + i]).collect();
    let mut vectors = vec![0.0; n * n];
    for (col, &i) in order.iter().enumerate() {
        for k in 0..n {
            vectors[k * n + col] = v[k * n + i];
        }
    }
    (values, vectors)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn symmetric_eigen_reconstructs_and_orders() {
        // A diagonal matrix: its entries, ascending; then a dense 4×4 with known spectrum
        // (Q diag(d) Qᵀ for a rotation Q), and a repeated eigenvalue.
        let (l, _) = symmetric_eigen(&[3.0, 0.0, 0.0, -1.0], 2);
        assert_eq!(l, vec![-1.0, 3.0]);
        let d = [-2.0, 0.5, 0.5, 4.0];
        let n = 4;
        let (c, s) = (0.6f64, 0.8f64);
        // Q = R01(c, s) · R23(c, s) · R12(c, s): orthogonal, dense enough.
        let rot = |i: usize, j: usize| {
            let mut r = vec![0.0; n * n];
            for k in 0..n {
                r[k * n + k] = 1.0;
            }
            r[i * n + i] = c;
            r[j * n + j] = c;
            r[i * n + j] = -s;
            r[j * n + i] = s;
            r
        };
        let mut q1 = vec![0.0; n * n];
        mat_mul(&rot(0, 1), &rot(2, 3), n, n, n, &mut q1);
        let mut q = vec![0.0; n * n];
        mat_mul(&q1, &rot(1, 2), n, n, n, &mut q);
        let mut qd = q.clone();
        for i in 0..n {
            for j in 0..n {
                qd[i * n + j] *= d[j];
            }
        }
        let mut a = vec![0.0; n * n];
        mat_mul_t(&qd, &q, n, n, n, &mut a);
        let (l, v) = symmetric_eigen(&a, n);
        for (x, y) in l.iter().zip([-2.0, 0.5, 0.5, 4.0]) {
            assert!((x - y).abs() < 1e-12, "{l:?}");
        }
        // A V = V Λ and Vᵀ V = I.
        let mut av = vec![0.0; n * n];
        mat_mul(&a, &v, n, n, n, &mut av);
        let mut vtv = vec![0.0; n * n];
        let mut vt = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                vt[i * n + j] = v[j * n + i];
            }
        }
        mat_mul(&vt, &v, n, n, n, &mut vtv);
        for i in 0..n {
            for j in 0..n {
                assert!((av[i * n + j] - v[i * n + j] * l[j]).abs() < 1e-12);
                let id = if i == j { 1.0 } else { 0.0 };
                assert!((vtv[i * n + j] - id).abs() < 1e-12);
            }
        }
    }

    /// S = [[4, 2, 0.4], [2, 5, 1], [0.4, 1, 3]], x = [1, −2, 0.5]; b = S x by hand:
    /// b = [4 − 4 + 0.2, 2 − 10 + 0.5, 0.4 − 2 + 1.5] = [0.2, −7.5, −0.1].
    #[test]
    fn cholesky_solves_spd_system() {
        let s = [4.0, 2.0, 0.4, 2.0, 5.0, 1.0, 0.4, 1.0, 3.0];
        let mut l = [0.0; 9];
        cholesky(&s, 3, &mut l).unwrap();
        let mut b = [0.2, -7.5, -0.1];
        cholesky_solve(&l, 3, &mut b);
        for (got, want) in b.iter().zip([1.0, -2.0, 0.5]) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
    }

    /// The factor itself, by hand: for S = [[4, 2, 0.4], [2, 5, 1], [0.4, 1, 3]],
    /// L_00 = 2, L_10 = 2/2 = 1, L_20 = 0.4/2 = 0.2, L_11 = √(5 − 1) = 2,
    /// L_21 = (1 − 0.2·1)/2 = 0.4, L_22 = √(3 − 0.04 − 0.16) = √2.8; the upper triangle is zero.
    #[test]
    fn cholesky_factor_matches_hand_values() {
        let s = [4.0, 2.0, 0.4, 2.0, 5.0, 1.0, 0.4, 1.0, 3.0];
        let mut l = [f64::NAN; 9];
        cholesky(&s, 3, &mut l).unwrap();
        let want = [2.0, 0.0, 0.0, 1.0, 2.0, 0.0, 0.2, 0.4, 2.8f64.sqrt()];
        for (got, want) in l.iter().zip(want) {
            assert!((got - want).abs() < 1e-15, "{l:?}");
        }
        // A longer scratch buffer is fine; only the leading n·n entries are used.
        let mut long = [7.0; 12];
        cholesky(&s, 3, &mut long).unwrap();
        assert_eq!(long[..9], l);
        assert_eq!(long[9..], [7.0; 3]);
    }

    #[test]
    fn cholesky_rejects_indefinite() {
        let mut l = [0.0; 4];
        // Eigenvalues 3 and −1: the second pivot is 1 − 2² = −3.
        assert_eq!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2, &mut l), Err(NotPositiveDefinite));
        // Positive semi-definite but singular ([[1, 1], [1, 1]]: second pivot exactly 0).
        assert!(cholesky(&[1.0, 1.0, 1.0, 1.0], 2, &mut l).is_err());
        // Negative diagonal, NaN and infinite pivots.
        assert!(cholesky(&[-1.0], 1, &mut l).is_err());
        assert!(cholesky(&[f64::NAN], 1, &mut l).is_err());
        assert!(cholesky(&[f64::INFINITY], 1, &mut l).is_err());
        assert_eq!(NotPositiveDefinite.to_string(), "matrix is not positive definite");
    }

    #[test]
    fn products_match_hand_values() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // [2, 3]
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]; // [3, 2]
        let mut ab = [0.0; 4];
        mat_mul(&a, &b, 2, 3, 2, &mut ab);
        assert_eq!(ab, [4.0, 5.0, 10.0, 11.0]);
        let mut atv = [0.0; 3];
        mat_t_vec(&a, 2, 3, &[1.0, -1.0], &mut atv, false);
        assert_eq!(atv, [-3.0, -3.0, -3.0]);
        mat_t_vec(&a, 2, 3, &[1.0, 0.0], &mut atv, true);
        assert_eq!(atv, [-2.0, -1.0, 0.0]);
        let mut av = [0.0; 2];
        mat_vec(&a, 2, 3, &[1.0, 1.0, 1.0], &mut av);
        assert_eq!(av, [6.0, 15.0]);
        let mut ata = [0.0; 9];
        add_mat_t_mul(&a, &a, 2, 3, 3, &mut ata);
        assert_eq!(ata, [17.0, 22.0, 27.0, 22.0, 29.0, 36.0, 27.0, 36.0, 45.0]);
        // A Aᵀ by hand: [[1+4+9, 4+10+18], [32, 16+25+36]].
        let mut aat = [0.0; 4];
        mat_mul_t(&a, &a, 2, 3, 2, &mut aat);
        assert_eq!(aat, [14.0, 32.0, 32.0, 77.0]);
        // A bᵀ with b: [2, 3] gives the same as A (bᵀ as [3, 2]).
        let bt = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0]; // the transpose of b
        mat_mul_t(&a, &bt, 2, 3, 2, &mut aat);
        assert_eq!(aat, ab);
    }

    #[test]
    fn symmetrize_and_symmetry_check() {
        // [[1, 2], [4, 3]] → off-diagonal (2 + 4)/2 = 3.
        let mut s = [1.0, 2.0, 4.0, 3.0];
        assert!(!is_symmetric(&s, 2, 1e-12));
        symmetrize(&mut s, 2);
        assert_eq!(s, [1.0, 3.0, 3.0, 3.0]);
        assert!(is_symmetric(&s, 2, 0.0));
        // Relative tolerance: 1000 against 1000.5 is within 1e-3·(1 + 1000), not within 1e-4·….
        let t = [0.0, 1000.0, 1000.5, 0.0];
        assert!(is_symmetric(&t, 2, 1e-3));
        assert!(!is_symmetric(&t, 2, 1e-4));
        assert!(!is_symmetric(&[0.0, f64::NAN, 0.0, 0.0], 2, 1.0));
    }
}
