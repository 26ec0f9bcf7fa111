//! Box-constrained quadratic programme for the iLQR control update (Tassa, Mansard &
//! Todorov 2014, "Control-limited differential dynamic programming", Algorithm 1):
//!
//! `min_k ½ kᵀ H k + gᵀ k   subject to   lower ≤ k ≤ upper`
//!
//! solved by projected Newton: at each iterate the *clamped* set holds the dimensions at a
//! bound whose gradient pushes outwards; a Newton step over the *free* dimensions (with the
//! clamped ones fixed) is projected back onto the box with an Armijo line search. For one
//! control dimension this is exactly `k = clamp(−g/H, lower, upper)` (computed in closed form).
//! The Cholesky factor of `H_ff` (free block) is returned for the feedback gains
//! `K_f = −H_ff⁻¹ Q_ux,f`, whose clamped rows are zero.

use ekvae_numerics::{cholesky, cholesky_solve};

/// Reusable buffers and the result of one box-QP solve, for control size `m`.
#[derive(Debug, Clone)]
pub struct BoxQp {
    m: usize,
    /// The solution `k: [m]`.
    pub k: Vec<f64>,
    /// `free[i]`: dimension `i` is not clamped at the solution.
    pub free: Vec<bool>,
    /// Number of free dimensions.
    pub n_free: usize,
    /// Cholesky factor of `H_ff` (`[n_free, n_free]`, leading part of the buffer).
    pub chol_free: Vec<f64>,
    grad: Vec<f64>,
    search: Vec<f64>,
    candidate: Vec<f64>,
    h_ff: Vec<f64>,
    rhs: Vec<f64>,
    prev_free: Vec<bool>,
}

/// Iteration cap of the projected Newton method (Tassa's default is 100; the pendulum needs 1).
const MAX_ITER: usize = 100;
/// Stop when the free-subspace gradient norm falls below this.
const MIN_GRAD: f64 = 1e-8;
/// Armijo sufficient-decrease ratio and backtracking factor (Tassa's defaults 0.1 and 0.6).
const ARMIJO: f64 = 0.1;
const STEP_DEC: f64 = 0.6;
const MIN_STEP: f64 = 1e-22;

impl BoxQp {
    /// Buffers for control size `m`.
    pub fn new(m: usize) -> Self {
        Self {
            m,
            k: vec![0.0; m],
            free: vec![true; m],
            n_free: m,
            chol_free: vec![0.0; m * m],
            grad: vec![0.0; m],
            search: vec![0.0; m],
            candidate: vec![0.0; m],
            h_ff: vec![0.0; m * m],
            rhs: vec![0.0; m],
            prev_free: vec![true; m],
        }
    }

    fn value(&self, h: &[f64], g: &[f64], x: &[f64]) -> f64 {
        let m = self.m;
        let mut v = 0.0;
        for i in 0..m {
            let hx: f64 = (0..m).map(|j| h[i * m + j] * x[j]).sum();
            v += x[i] * (0.5 * hx + g[i]);
        }
        v
    }

    fn factor_free(&mut self, h: &[f64]) -> bool {
        let m = self.m;
        let idx: Vec<usize> = (0..m).filter(|&i| self.free[i]).collect();
        let nf = idx.len();
        self.n_free = nf;
        for (a, &i) in idx.iter().enumerate() {
            for (b, &j) in idx.iter().enumerate() {
                self.h_ff[a * nf + b] = h[i * m + j];
            }
        }
        cholesky(&self.h_ff[..nf * nf], nf, &mut self.chol_free).is_ok()
    }

    /// Solves the box-QP with Hessian `h: [m, m]` (symmetric), gradient `g: [m]` and bounds
    /// (±∞ allowed), starting from `warm: [m]`. Returns `false` if `H_ff` is not positive
    /// definite (the caller raises its regularisation).
    pub fn solve(
        &mut self,
        h: &[f64],
        g: &[f64],
        lower: &[f64],
        upper: &[f64],
        warm: &[f64],
    ) -> bool {
        let m = self.m;
        if m == 1 {
            // Closed form: the 1-D box-QP minimiser is the clamped unconstrained minimiser.
            if h[0] <= 0.0 || !h[0].is_finite() {
                return false;
            }
            let unc = -g[0] / h[0];
            let k = unc.clamp(lower[0], upper[0]);
            self.k[0] = k;
            self.free[0] = k == unc;
            self.n_free = usize::from(self.free[0]);
            self.chol_free[0] = h[0].sqrt();
            return true;
        }
        for i in 0..m {
            self.k[i] = warm[i].clamp(lower[i], upper[i]);
        }
        let mut value = self.value(h, g, &self.k);
        let mut factored = false;
        for iter in 0..MAX_ITER {
            for i in 0..m {
                self.grad[i] = g[i] + (0..m).map(|j| h[i * m + j] * self.k[j]).sum::<f64>();
            }
            self.prev_free.copy_from_slice(&self.free);
            for i in 0..m {
                let clamped = (self.k[i] <= lower[i] && self.grad[i] > 0.0)
                    || (self.k[i] >= upper[i] && self.grad[i] < 0.0);
                self.free[i] = !clamped;
            }
            if self.free.iter().all(|f| !f) {
                self.n_free = 0;
                return true;
            }
            if iter == 0 || !factored || self.free != self.prev_free {
                if !self.factor_free(h) {
                    return false;
                }
                factored = true;
            }
            let gnorm: f64 = (0..m)
                .filter(|&i| self.free[i])
                .map(|i| self.grad[i] * self.grad[i])
                .sum::<f64>()
                .sqrt();
            if gnorm < MIN_GRAD {
                return true;
            }
            // Newton step over the free dimensions with the clamped ones held:
            // search_f = −H_ff⁻¹ (g_f + H_fc k_c) − k_f.
            let mut a = 0;
            for i in 0..m {
                if self.free[i] {
                    self.rhs[a] = g[i]
                        + (0..m)
                            .filter(|&j| !self.free[j])
                            .map(|j| h[i * m + j] * self.k[j])
                            .sum::<f64>();
                    a += 1;
                }
            }
            let nf = self.n_free;
            cholesky_solve(&self.chol_free[..nf * nf], nf, &mut self.rhs[..nf]);
            let mut a = 0;
            for i in 0..m {
                if self.free[i] {
                    self.search[i] = -self.rhs[a] - self.k[i];
                    a += 1;
                } else {
                    self.search[i] = 0.0;
                }
            }
            let sdotg: f64 = (0..m).map(|i| self.search[i] * self.grad[i]).sum();
            if sdotg >= 0.0 {
                return true; // no descent left (numerically converged)
            }
            let mut step = 1.0;
            loop {
                for i in 0..m {
                    self.candidate[i] =
                        (self.k[i] + step * self.search[i]).clamp(lower[i], upper[i]);
                }
                let v_new = self.value(h, g, &self.candidate);
                if (v_new - value) / (step * sdotg) > ARMIJO {
                    self.k.copy_from_slice(&self.candidate);
                    value = v_new;
                    break;
                }
                step *= STEP_DEC;
                if step < MIN_STEP {
                    return true; // cannot improve further: current k is the answer
                }
            }
        }
        // Refresh the free set and factor at the final iterate.
        for i in 0..m {
            self.grad[i] = g[i] + (0..m).map(|j| h[i * m + j] * self.k[j]).sum::<f64>();
            self.free[i] = !((self.k[i] <= lower[i] && self.grad[i] > 0.0)
                || (self.k[i] >= upper[i] && self.grad[i] < 0.0));
        }
        self.factor_free(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute-force minimum of the QP over a fine grid on the box (reference for m = 2).
    fn grid_min(h: &[f64], g: &[f64], lo: &[f64], hi: &[f64]) -> (f64, [f64; 2]) {
        let mut best = (f64::INFINITY, [0.0; 2]);
        let steps = 2000;
        for a in 0..=steps {
            for b in 0..=steps {
                let x = [
                    lo[0] + (hi[0] - lo[0]) * a as f64 / steps as f64,
                    lo[1] + (hi[1] - lo[1]) * b as f64 / steps as f64,
                ];
                let v = 0.5 * (h[0] * x[0] * x[0] + 2.0 * h[1] * x[0] * x[1] + h[3] * x[1] * x[1])
                    + g[0] * x[0]
                    + g[1] * x[1];
                if v < best.0 {
                    best = (v, x);
                }
            }
        }
        best
    }

    #[test]
    fn one_dimension_is_a_clamp() {
        let mut qp = BoxQp::new(1);
        assert!(qp.solve(&[2.0], &[-10.0], &[-1.0], &[3.0], &[0.0]));
        assert_eq!(qp.k[0], 3.0); // unconstrained 5 -> clamped to 3
        assert!(!qp.free[0]);
        assert!(qp.solve(&[2.0], &[-1.0], &[-1.0], &[3.0], &[0.0]));
        assert_eq!(qp.k[0], 0.5);
        assert!(qp.free[0]);
        assert!(!qp.solve(&[-1.0], &[0.0], &[-1.0], &[1.0], &[0.0]));
    }

    #[test]
    fn two_dimensions_match_grid_search() {
        let h = [2.0, 0.8, 0.8, 1.0];
        for (g, lo, hi) in [
            ([-4.0, 3.0], [-1.0, -1.0], [1.0, 1.0]), // both clamped
            ([0.2, -0.1], [-1.0, -1.0], [1.0, 1.0]), // interior
            ([-6.0, 0.0], [-1.0, -2.0], [1.0, 2.0]), // one clamped, the other free
        ] {
            let mut qp = BoxQp::new(2);
            assert!(qp.solve(&h, &g, &lo, &hi, &[0.0, 0.0]));
            let (v_ref, x_ref) = grid_min(&h, &g, &lo, &hi);
            let v = 0.5
                * (h[0] * qp.k[0] * qp.k[0]
                    + 2.0 * h[1] * qp.k[0] * qp.k[1]
                    + h[3] * qp.k[1] * qp.k[1])
                + g[0] * qp.k[0]
                + g[1] * qp.k[1];
            assert!(v <= v_ref + 1e-9, "box-QP value {v} worse than grid {v_ref} at {x_ref:?}");
            for i in 0..2 {
                assert!((qp.k[i] - x_ref[i]).abs() < 2e-3, "k={:?} grid={x_ref:?}", qp.k);
                assert!(qp.k[i] >= lo[i] && qp.k[i] <= hi[i]);
            }
        }
    }
}
