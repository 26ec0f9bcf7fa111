//! The [`Cost`] trait (running + terminal cost with first and second derivatives),
//! a general [`QuadraticCost`] around a goal state, and [`PendulumCost`], the
//! `Pendulum-v1` cost with angle wrapping.

use crate::error::{check_finite, check_len};
use crate::{Error, Result};
use ekvae_numerics::angle_normalize;

/// Value, gradients and Hessians of a cost term at one point (row-major, shapes in brackets):
/// `l`, `lx: [n]`, `lu: [m]`, `lxx: [n, n]`, `luu: [m, m]`, `lux: [m, n]`.
/// For a terminal term the `u` parts are zero.
#[derive(Debug, Clone, PartialEq)]
pub struct Quadratization {
    /// Cost value.
    pub l: f64,
    /// `∂l/∂x`, `[n]`.
    pub lx: Vec<f64>,
    /// `∂l/∂u`, `[m]`.
    pub lu: Vec<f64>,
    /// `∂²l/∂x²`, `[n, n]`.
    pub lxx: Vec<f64>,
    /// `∂²l/∂u²`, `[m, m]`.
    pub luu: Vec<f64>,
    /// `∂²l/∂u∂x`, `[m, n]`.
    pub lux: Vec<f64>,
}

impl Quadratization {
    /// All zeros for state size `n` and control size `m`.
    pub fn zeros(n: usize, m: usize) -> Self {
        Self {
            l: 0.0,
            lx: vec![0.0; n],
            lu: vec![0.0; m],
            lxx: vec![0.0; n * n],
            luu: vec![0.0; m * m],
            lux: vec![0.0; m * n],
        }
    }
}

/// A trajectory cost `Σ_{t<T} l(t, x_t, u_t) + l_f(x_T)`.
///
/// iLQR needs Hessians that make `Q_uu` positive definite after regularisation; a cost
/// whose exact Hessian is indefinite should return a Gauss–Newton (positive semidefinite)
/// approximation and say so.
pub trait Cost {
    /// Running cost `l(t, x, u)`.
    fn running(&self, t: usize, x: &[f64], u: &[f64]) -> f64;
    /// Terminal cost `l_f(x)`.
    fn terminal(&self, x: &[f64]) -> f64;
    /// Value and derivatives of the running cost at `(t, x, u)`, written into `q` (every field).
    fn quadratize(&self, t: usize, x: &[f64], u: &[f64], q: &mut Quadratization);
    /// Value and derivatives of the terminal cost at `x`, written into `q` (`u` parts zeroed).
    fn quadratize_terminal(&self, x: &[f64], q: &mut Quadratization);
}

impl<C: Cost + ?Sized> Cost for &C {
    fn running(&self, t: usize, x: &[f64], u: &[f64]) -> f64 {
        (**self).running(t, x, u)
    }
    fn terminal(&self, x: &[f64]) -> f64 {
        (**self).terminal(x)
    }
    fn quadratize(&self, t: usize, x: &[f64], u: &[f64], q: &mut Quadratization) {
        (**self).quadratize(t, x, u, q)
    }
    fn quadratize_terminal(&self, x: &[f64], q: &mut Quadratization) {
        (**self).quadratize_terminal(x, q)
    }
}

/// `l = (x − x̄)ᵀ Q (x − x̄) + uᵀ R u`, `l_f = (x − x̄)ᵀ Q_f (x − x̄)` around a goal `x̄`
/// (the latent of the upright pendulum for a learned model). `Q`, `Q_f` positive semidefinite,
/// `R` positive definite; all stored symmetrised.
#[derive(Debug, Clone, PartialEq)]
pub struct QuadraticCost {
    n: usize,
    m: usize,
    goal: Vec<f64>,
    q: Vec<f64>,
    r: Vec<f64>,
    q_final: Vec<f64>,
}

impl QuadraticCost {
    /// Full weight matrices `q: [n, n]`, `r: [m, m]`, `q_final: [n, n]` (row-major) around `goal: [n]`.
    /// Errors on wrong sizes, non-finite values, or a non-positive-definite `R`.
    pub fn new(goal: Vec<f64>, q: Vec<f64>, r: Vec<f64>, q_final: Vec<f64>) -> Result<Self> {
        let n = goal.len();
        check_len("Q", n * n, q.len())?;
        check_len("Q_final", n * n, q_final.len())?;
        let m = (r.len() as f64).sqrt() as usize;
        check_len("R", m * m, r.len())?;
        for (what, v) in [("goal", &goal), ("Q", &q), ("R", &r), ("Q_final", &q_final)] {
            check_finite(what, v)?;
        }
        if n == 0 || m == 0 {
            return Err(Error::InvalidConfig {
                field: "QuadraticCost",
                reason: "empty goal or R".into(),
            });
        }
        let (mut q, mut r, mut q_final) = (q, r, q_final);
        ekvae_numerics::symmetrize(&mut q, n);
        ekvae_numerics::symmetrize(&mut q_final, n);
        ekvae_numerics::symmetrize(&mut r, m);
        let mut l = vec![0.0; m * m];
        if ekvae_numerics::cholesky(&r, m, &mut l).is_err() {
            return Err(Error::InvalidConfig {
                field: "R",
                reason: "must be positive definite".into(),
            });
        }
        Ok(Self { n, m, goal, q, r, q_final })
    }

    /// Diagonal weights: `Q = diag(q)`, `R = diag(r)`, `Q_f = diag(q_final)`.
    pub fn diagonal(goal: Vec<f64>, q: &[f64], r: &[f64], q_final: &[f64]) -> Result<Self> {
        let diag = |d: &[f64]| {
            let k = d.len();
            let mut out = vec![0.0; k * k];
            for i in 0..k {
                out[i * k + i] = d[i];
            }
            out
        };
        let n = goal.len();
        check_len("q (diagonal)", n, q.len())?;
        check_len("q_final (diagonal)", n, q_final.len())?;
        Self::new(goal, diag(q), diag(r), diag(q_final))
    }

    /// The goal state `x̄`.
    pub fn goal(&self) -> &[f64] {
        &self.goal
    }

    fn quad_form(&self, w: &[f64], x: &[f64]) -> f64 {
        let n = self.n;
        let mut s = 0.0;
        for i in 0..n {
            let di = x[i] - self.goal[i];
            for j in 0..n {
                s += di * w[i * n + j] * (x[j] - self.goal[j]);
            }
        }
        s
    }

    fn control_form(&self, u: &[f64]) -> f64 {
        let m = self.m;
        let mut s = 0.0;
        for i in 0..m {
            for j in 0..m {
                s += u[i] * self.r[i * m + j] * u[j];
            }
        }
        s
    }

    fn state_derivs(&self, w: &[f64], x: &[f64], q: &mut Quadratization) {
        let n = self.n;
        for i in 0..n {
            q.lx[i] = 2.0 * (0..n).map(|j| w[i * n + j] * (x[j] - self.goal[j])).sum::<f64>();
        }
        for (h, wv) in q.lxx.iter_mut().zip(w) {
            *h = 2.0 * wv;
        }
    }
}

impl Cost for QuadraticCost {
    fn running(&self, _t: usize, x: &[f64], u: &[f64]) -> f64 {
        self.quad_form(&self.q, x) + self.control_form(u)
    }
    fn terminal(&self, x: &[f64]) -> f64 {
        self.quad_form(&self.q_final, x)
    }
    fn quadratize(&self, t: usize, x: &[f64], u: &[f64], q: &mut Quadratization) {
        q.l = self.running(t, x, u);
        self.state_derivs(&self.q, x, q);
        let m = self.m;
        for i in 0..m {
            q.lu[i] = 2.0 * (0..m).map(|j| self.r[i * m + j] * u[j]).sum::<f64>();
        }
        for (h, r) in q.luu.iter_mut().zip(&self.r) {
            *h = 2.0 * r;
        }
        q.lux.fill(0.0);
    }
    fn quadratize_terminal(&self, x: &[f64], q: &mut Quadratization) {
        q.l = self.terminal(x);
        self.state_derivs(&self.q_final, x, q);
        q.lu.fill(0.0);
        q.luu.fill(0.0);
        q.lux.fill(0.0);
    }
}

/// The `Pendulum-v1` cost on `x = [θ, θ̇]`, `u = [torque]`, with the angle wrapped:
/// `l = w_θ·angle_normalize(θ)² + w_θ̇·θ̇² + w_u·u²`, `l_f = w_f·(w_θ·angle_normalize(θ)² + w_θ̇·θ̇²)`.
///
/// With the default weights `(1, 0.1, 0.001)` the running cost *is* the environment's cost, so
/// MPC minimises exactly what the return scores. The derivatives are exact wherever
/// `angle_normalize` is smooth (everywhere but `θ = π + 2kπ`, the hanging position, where its
/// gradient jumps between `±2π w_θ`; that jump also breaks the left/right symmetry of a start
/// hanging at rest). The Hessian `diag(2w_θ, 2w_θ̇)` is positive definite, so no Gauss–Newton
/// approximation is needed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PendulumCost {
    /// Weight on the squared wrapped angle (Gymnasium: 1).
    pub w_theta: f64,
    /// Weight on the squared angular velocity (Gymnasium: 0.1).
    pub w_theta_dot: f64,
    /// Weight on the squared torque (Gymnasium: 0.001).
    pub w_u: f64,
    /// Multiplier of the state part of the running cost applied at the final state.
    pub w_final: f64,
}

impl Default for PendulumCost {
    /// Gymnasium's weights and a terminal multiplier of 1.
    fn default() -> Self {
        Self { w_theta: 1.0, w_theta_dot: 0.1, w_u: 0.001, w_final: 1.0 }
    }
}

impl PendulumCost {
    /// Errors unless all weights are finite and non-negative and `w_u > 0`.
    pub fn check(&self) -> Result<()> {
        let w = [self.w_theta, self.w_theta_dot, self.w_u, self.w_final];
        check_finite("pendulum cost weights", &w)?;
        if w.iter().any(|v| *v < 0.0) || self.w_u <= 0.0 {
            return Err(Error::InvalidConfig {
                field: "PendulumCost",
                reason: format!("weights must be >= 0 and w_u > 0, got {w:?}"),
            });
        }
        Ok(())
    }

    #[inline]
    fn state_part(&self, x: &[f64]) -> f64 {
        let an = angle_normalize(x[0]);
        self.w_theta * an * an + self.w_theta_dot * x[1] * x[1]
    }

    #[inline]
    fn state_derivs(&self, x: &[f64], scale: f64, q: &mut Quadratization) {
        let an = angle_normalize(x[0]);
        q.lx[0] = scale * 2.0 * self.w_theta * an;
        q.lx[1] = scale * 2.0 * self.w_theta_dot * x[1];
        q.lxx[0] = scale * 2.0 * self.w_theta;
        q.lxx[1] = 0.0;
        q.lxx[2] = 0.0;
        q.lxx[3] = scale * 2.0 * self.w_theta_dot;
    }
}

impl Cost for PendulumCost {
    #[inline]
    fn running(&self, _t: usize, x: &[f64], u: &[f64]) -> f64 {
        self.state_part(x) + self.w_u * u[0] * u[0]
    }
    #[inline]
    fn terminal(&self, x: &[f64]) -> f64 {
        self.w_final * self.state_part(x)
    }
    #[inline]
    fn quadratize(&self, t: usize, x: &[f64], u: &[f64], q: &mut Quadratization) {
        q.l = self.running(t, x, u);
        self.state_derivs(x, 1.0, q);
        q.lu[0] = 2.0 * self.w_u * u[0];
        q.luu[0] = 2.0 * self.w_u;
        q.lux[0] = 0.0;
        q.lux[1] = 0.0;
    }
    #[inline]
    fn quadratize_terminal(&self, x: &[f64], q: &mut Quadratization) {
        q.l = self.terminal(x);
        self.state_derivs(x, self.w_final, q);
        q.lu[0] = 0.0;
        q.luu[0] = 0.0;
        q.lux[0] = 0.0;
        q.lux[1] = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::check_cost_derivatives;

    #[test]
    fn pendulum_cost_equals_gymnasium_cost() {
        let c = PendulumCost::default();
        for &(x, u) in &[([3.0, -2.0], 1.5), ([-7.0, 0.3], -2.0), ([0.1, 8.0], 0.0)] {
            let want = ekvae_envs::pendulum::cost(x, u);
            assert_eq!(c.running(0, &x, &[u]), want);
        }
    }

    #[test]
    fn pendulum_cost_derivatives_match_finite_differences() {
        let c = PendulumCost { w_final: 7.0, ..PendulumCost::default() };
        // Away from the wrap point θ = π (mod 2π), including wrapped angles.
        for &(x, u) in
            &[([0.3, -1.0], 0.7), ([2.9, 4.0], -1.9), ([-3.5, 0.2], 2.0), ([9.0, -6.0], 0.1)]
        {
            check_cost_derivatives(&c, &x, &[u], 1e-6);
        }
    }

    #[test]
    fn quadratic_cost_derivatives_match_finite_differences() {
        let c = QuadraticCost::new(
            vec![0.5, -1.0, 2.0],
            vec![2.0, 0.3, 0.0, 0.3, 1.0, -0.2, 0.0, -0.2, 0.5],
            vec![0.4, 0.1, 0.1, 0.3],
            vec![5.0, 0.0, 1.0, 0.0, 4.0, 0.0, 1.0, 0.0, 3.0],
        )
        .unwrap();
        check_cost_derivatives(&c, &[0.1, 0.2, -0.3], &[1.0, -0.5], 1e-6);
        check_cost_derivatives(&c, &[3.0, -2.0, 0.0], &[0.0, 2.0], 1e-6);
    }

    #[test]
    fn quadratic_cost_rejects_bad_input() {
        assert!(matches!(
            QuadraticCost::diagonal(vec![0.0, f64::NAN], &[1.0, 1.0], &[1.0], &[1.0, 1.0]),
            Err(Error::NonFinite { .. })
        ));
        assert!(matches!(
            QuadraticCost::diagonal(vec![0.0, 0.0], &[1.0, 1.0], &[0.0], &[1.0, 1.0]),
            Err(Error::InvalidConfig { .. })
        ));
        assert!(matches!(
            QuadraticCost::diagonal(vec![0.0, 0.0], &[1.0], &[1.0], &[1.0, 1.0]),
            Err(Error::Dimension { .. })
        ));
    }
}
