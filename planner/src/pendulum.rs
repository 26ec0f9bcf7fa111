//! The true `Pendulum-v1` as a [`Dynamics`], on the physics in [`ekvae_envs::pendulum`].
//!
//! State `x = [θ, θ̇]` (θ unwrapped, 0 = upright), control `u = [torque]`. The step is
//! [`ekvae_envs::pendulum::step`] itself, so the planner and the environment cannot drift apart.
//!
//! Jacobians (with `a = 3g/(2l)`, `b = 3/(m l²)`, `h = dt`, `u_c = clip(u, ±max_torque)`):
//! - unclipped: `θ̇' = θ̇ + (a sin θ + b u_c) h`, `θ' = θ + θ̇' h`, so
//!   `A = [[1 + a h² cos θ, h], [a h cos θ, 1]]`, `B = [b h², b h]ᵀ`;
//! - velocity clip active (`|raw θ̇'| > max_speed`): `θ̇'` is a constant, so its row of `A` and
//!   `B` is zero and `θ' = θ + const·h` gives `A = [[1, 0], [0, 0]]`, `B = 0`;
//! - torque clip active (`|u| > max_torque`): `∂u_c/∂u = 0`, so `B = 0`. At `|u| = max_torque`
//!   exactly the clip is inactive (the one-sided derivative from inside the box), which is
//!   where iLQR with control limits `±max_torque` lives.

use crate::Dynamics;
use ekvae_envs::pendulum::{PendulumParams, accel_coeffs, step};

/// The true pendulum dynamics for the planner.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TruePendulum {
    /// Physical parameters ([`Default`]: Gymnasium's `Pendulum-v1`).
    pub params: PendulumParams,
}

impl TruePendulum {
    /// The pendulum with the given parameters.
    pub fn new(params: PendulumParams) -> Self {
        Self { params }
    }
    /// The control box `[-max_torque, max_torque]` that the planner should use, so planned
    /// controls are exactly the ones the environment applies (its own clip never fires).
    pub fn control_limits(&self) -> (Vec<f64>, Vec<f64>) {
        (vec![-self.params.max_torque], vec![self.params.max_torque])
    }
}

impl Dynamics for TruePendulum {
    fn state_dim(&self) -> usize {
        2
    }
    fn control_dim(&self) -> usize {
        1
    }
    #[inline]
    fn step(&self, x: &[f64], u: &[f64], x_next: &mut [f64]) {
        let out = step(&self.params, [x[0], x[1]], u[0]);
        x_next[..2].copy_from_slice(&out.state);
    }
    #[inline]
    fn linearize(&self, x: &[f64], u: &[f64], x_next: &mut [f64], a: &mut [f64], b: &mut [f64]) {
        let p = &self.params;
        let out = step(p, [x[0], x[1]], u[0]);
        x_next[..2].copy_from_slice(&out.state);
        if out.speed_clipped {
            a.copy_from_slice(&[1.0, 0.0, 0.0, 0.0]);
            b.copy_from_slice(&[0.0, 0.0]);
            return;
        }
        let (ca, cb) = accel_coeffs(p);
        let h = p.dt;
        let dthd_dth = ca * x[0].cos() * h;
        a.copy_from_slice(&[1.0 + dthd_dth * h, h, dthd_dth, 1.0]);
        let du = if u[0].abs() > p.max_torque { 0.0 } else { 1.0 };
        let dthd_du = cb * h * du;
        b.copy_from_slice(&[dthd_du * h, dthd_du]);
    }
    /// θ's deviation wrapped into `[−π, π)` (the cost is periodic in θ).
    fn deviation(&self, x: &[f64], reference: &[f64], dx: &mut [f64]) {
        dx[0] = ekvae_numerics::angle_normalize(x[0] - reference[0]);
        dx[1] = x[1] - reference[1];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The deviation wraps θ into [−π, π); θ̇ subtracts.
    #[test]
    fn deviation_wraps_the_angle() {
        let mut dx = [0.0; 2];
        TruePendulum::default().deviation(&[-3.0, 1.0], &[3.0, 4.0], &mut dx);
        assert!((dx[0] - (2.0 * std::f64::consts::PI - 6.0)).abs() < 1e-12, "{dx:?}");
        assert_eq!(dx[1], -3.0);
    }
    use crate::testutil::fd_dynamics;

    fn check(x: [f64; 2], u: f64) {
        let d = TruePendulum::default();
        let (mut xn, mut a, mut b) = ([0.0; 2], [0.0; 4], [0.0; 2]);
        d.linearize(&x, &[u], &mut xn, &mut a, &mut b);
        let (fa, fb) = fd_dynamics(&d, &x, &[u], 1e-6);
        for (i, (g, w)) in a.iter().zip(&fa).enumerate() {
            assert!((g - w).abs() < 1e-6, "A[{i}] at x={x:?} u={u}: analytic {g}, fd {w}");
        }
        for (i, (g, w)) in b.iter().zip(&fb).enumerate() {
            assert!((g - w).abs() < 1e-6, "B[{i}] at x={x:?} u={u}: analytic {g}, fd {w}");
        }
        let mut xs = [0.0; 2];
        d.step(&x, &[u], &mut xs);
        assert_eq!(xs, xn, "linearize and step disagree");
    }

    #[test]
    fn jacobians_match_finite_differences() {
        for &(x, u) in &[
            ([0.3, -0.7], 0.5),
            ([std::f64::consts::PI, 0.0], 1.9),
            ([-2.5, 4.0], -1.0),
            ([7.0, -3.0], 0.0),
            ([1.0, 2.0], 3.0),  // torque clip active: B = 0
            ([1.0, 2.0], -2.5), // torque clip active
        ] {
            check(x, u);
        }
    }

    #[test]
    fn jacobians_at_and_near_the_velocity_clip() {
        // θ̇ = 7.9 with a push: raw θ̇' = 7.9 + (15 sin θ + 3u)·0.05 exceeds 8 -> clip active.
        check([1.0, 7.9], 2.0);
        check([-1.0, -7.95], -2.0);
        check([0.5, 8.0], 1.0);
        // Just inside the clip (raw θ̇' = 7.999 < 8, 1e-3 from it): clip inactive.
        check([0.0, 7.999], 0.0);
        check([0.0, -7.999], 0.0);
        let d = TruePendulum::default();
        let (mut xn, mut a, mut b) = ([0.0; 2], [0.0; 4], [0.0; 2]);
        d.linearize(&[1.0, 7.9], &[2.0], &mut xn, &mut a, &mut b);
        assert_eq!(xn[1], 8.0);
        assert_eq!(a, [1.0, 0.0, 0.0, 0.0]);
        assert_eq!(b, [0.0, 0.0]);
    }
}
