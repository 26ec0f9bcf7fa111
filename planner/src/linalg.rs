//! Small dense linear algebra on row-major slices, for the sizes iLQR sees here
//! (state n ≤ 8 or so, control m ≤ 3 or so). Hand-written, allocation-free, so a
//! horizon-30 pendulum iteration costs microseconds; no BLAS, no nalgebra.
//!
//! A matrix `A` of shape `[r, c]` is a slice with `A[i*c + j] = A_ij`.

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

/// Cholesky factor `L` (lower triangular, `S = L Lᵀ`) of the symmetric `[n, n]`
/// matrix `s`, written into `l`. Returns `false` (like nalgebra's `Cholesky::new`
/// returning `None`) when `s` is not numerically positive definite.
#[inline]
pub fn cholesky(s: &[f64], n: usize, l: &mut [f64]) -> bool {
    l[..n * n].fill(0.0);
    for j in 0..n {
        let mut d = s[j * n + j];
        for k in 0..j {
            d -= l[j * n + k] * l[j * n + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return false;
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
    true
}

/// Solve `L Lᵀ x = b` in place (`b` becomes `x`) given the Cholesky factor `l: [n, n]`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_spd_system() {
        // S = [[4, 2, 0.4], [2, 5, 1], [0.4, 1, 3]], x = [1, -2, 0.5]; b = S x by hand:
        // b = [4 - 4 + 0.2, 2 - 10 + 0.5, 0.4 - 2 + 1.5] = [0.2, -7.5, -0.1].
        let s = [4.0, 2.0, 0.4, 2.0, 5.0, 1.0, 0.4, 1.0, 3.0];
        let mut l = [0.0; 9];
        assert!(cholesky(&s, 3, &mut l));
        let mut b = [0.2, -7.5, -0.1];
        cholesky_solve(&l, 3, &mut b);
        for (got, want) in b.iter().zip([1.0, -2.0, 0.5]) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
    }

    #[test]
    fn cholesky_rejects_indefinite() {
        let s = [1.0, 2.0, 2.0, 1.0]; // eigenvalues 3 and -1
        let mut l = [0.0; 4];
        assert!(!cholesky(&s, 2, &mut l));
        assert!(!cholesky(&[f64::NAN], 1, &mut l));
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
        let mut av = [0.0; 2];
        mat_vec(&a, 2, 3, &[1.0, 1.0, 1.0], &mut av);
        assert_eq!(av, [6.0, 15.0]);
        let mut ata = [0.0; 9];
        add_mat_t_mul(&a, &a, 2, 3, 3, &mut ata);
        assert_eq!(ata, [17.0, 22.0, 27.0, 22.0, 29.0, 36.0, 27.0, 36.0, 45.0]);
    }
}
