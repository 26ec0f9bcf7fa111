//! The true cart-pole swing-up ([`ekvae_envs::cartpole`]) as a [`Dynamics`], and a swing-up
//! cost for iLQR.
//!
//! State `x = [x, ẋ, θ, θ̇]` (θ not wrapped: the planner differentiates
//! [`ekvae_envs::cartpole::step_unwrapped`]; the cost is periodic in θ), control `u = [a]`,
//! the action in [−1, 1], force `F = force_mag · a` (the environment rounds it to f32; the
//! planner's Jacobian ignores that rounding, a relative 6e-8).
//!
//! Jacobians of one Euler step with `h = dt`: `x' = x + ẋh`, `ẋ' = ẋ + ẍh`, `θ' = θ + θ̇h`,
//! `θ̇' = θ̇ + θ̈h`, so `A = I + h·[[0,1,0,0], [0, ∂ẍ/∂ẋ, ∂ẍ/∂θ, ∂ẍ/∂θ̇], [0,0,0,1],
//! [0, ∂θ̈/∂ẋ, ∂θ̈/∂θ, ∂θ̈/∂θ̇]]` and `B = h·force_mag·[0, ∂ẍ/∂F, 0, ∂θ̈/∂F]`. With
//! `ẍ = N₁/D₁`, `θ̈ = N₂/D₂` (see the environment): `∂(N/D) = (N' D − N D')/D²`, where
//! - `∂N₁/∂θ = −2 m_p l θ̇² c + 3 m_p g (c² − s²)`, `∂D₁/∂θ = 6 m_p c s`,
//!   `∂N₁/∂θ̇ = −4 m_p l θ̇ s`, `∂N₁/∂ẋ = −4b`, `∂N₁/∂F = 4`;
//! - `∂N₂/∂θ = −3 m_p l θ̇² (c² − s²) + 6 M g c − 6 (F − bẋ) s`, `∂D₂/∂θ = 6 m_p l c s`,
//!   `∂N₂/∂θ̇ = −6 m_p l θ̇ s c`, `∂N₂/∂ẋ = −6bc`, `∂N₂/∂F = 6c`.
//!
//! Outside |a| ≤ 1 the environment clips, so `B = 0` there.

use crate::Dynamics;
use crate::cost::{Cost, Quadratization};
use ekvae_envs::cartpole::{CartPoleParams, accelerations, step_unwrapped};

/// The true cart-pole dynamics for the planner.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TrueCartPole {
    /// Physical parameters ([`Default`]: the package's).
    pub params: CartPoleParams,
}

impl TrueCartPole {
    /// The control box `[-1, 1]` of the action.
    pub fn control_limits(&self) -> (Vec<f64>, Vec<f64>) {
        (vec![-1.0], vec![1.0])
    }
}

impl Dynamics for TrueCartPole {
    fn state_dim(&self) -> usize {
        4
    }
    fn control_dim(&self) -> usize {
        1
    }
    #[inline]
    fn step(&self, x: &[f64], u: &[f64], x_next: &mut [f64]) {
        let p = &self.params;
        let f = p.force_mag * u[0].clamp(-1.0, 1.0);
        x_next[..4].copy_from_slice(&step_unwrapped(p, [x[0], x[1], x[2], x[3]], f));
    }
    fn linearize(&self, x: &[f64], u: &[f64], x_next: &mut [f64], a: &mut [f64], b: &mut [f64]) {
        self.step(x, u, x_next);
        let p = &self.params;
        let clipped = u[0].abs() > 1.0;
        let f = p.force_mag * u[0].clamp(-1.0, 1.0);
        let [_, xd, th, thd] = [x[0], x[1], x[2], x[3]];
        let (s, c) = (th.sin(), th.cos());
        let (mp, l, g, bf) = (p.pole_mass, p.pole_length, p.gravity, p.friction);
        let big_m = p.cart_mass + mp;
        let mpl = mp * l;
        let n1 = -2.0 * mpl * thd * thd * s + 3.0 * mp * g * s * c + 4.0 * f - 4.0 * bf * xd;
        let d1 = 4.0 * big_m - 3.0 * mp * c * c;
        let n2 = -3.0 * mpl * thd * thd * s * c + 6.0 * big_m * g * s + 6.0 * (f - bf * xd) * c;
        let d2 = 4.0 * l * big_m - 3.0 * mpl * c * c;
        let quot = |dn: f64, dd: f64, n: f64, d: f64| (dn * d - n * dd) / (d * d);
        let dx1_dth = quot(
            -2.0 * mpl * thd * thd * c + 3.0 * mp * g * (c * c - s * s),
            6.0 * mp * c * s,
            n1,
            d1,
        );
        let dx1_dthd = -4.0 * mpl * thd * s / d1;
        let dx1_dxd = -4.0 * bf / d1;
        let dx1_df = 4.0 / d1;
        let dx2_dth = quot(
            -3.0 * mpl * thd * thd * (c * c - s * s) + 6.0 * big_m * g * c
                - 6.0 * (f - bf * xd) * s,
            6.0 * mpl * c * s,
            n2,
            d2,
        );
        let dx2_dthd = -6.0 * mpl * thd * s * c / d2;
        let dx2_dxd = -6.0 * bf * c / d2;
        let dx2_df = 6.0 * c / d2;
        let h = p.dt;
        a.copy_from_slice(&[
            1.0,
            h,
            0.0,
            0.0,
            0.0,
            1.0 + h * dx1_dxd,
            h * dx1_dth,
            h * dx1_dthd,
            0.0,
            0.0,
            1.0,
            h,
            0.0,
            h * dx2_dxd,
            h * dx2_dth,
            1.0 + h * dx2_dthd,
        ]);
        let df = if clipped { 0.0 } else { p.force_mag };
        b.copy_from_slice(&[0.0, h * df * dx1_df, 0.0, h * df * dx2_df]);
        debug_assert!(accelerations(p, [x[0], xd, th, thd], f).0.is_finite());
    }
    /// θ's deviation wrapped into `[−π, π)` (the environment wraps θ; the cost is periodic).
    fn deviation(&self, x: &[f64], reference: &[f64], dx: &mut [f64]) {
        for i in 0..4 {
            dx[i] = x[i] - reference[i];
        }
        dx[2] = ekvae_numerics::angle_normalize(dx[2]);
    }
}

/// A swing-up cost: the squared distance of the pole's tip from its upright position over the
/// cart's rest point `(0, l)`, a pull of the cart to the centre and of the velocities to rest,
/// and the squared action:
/// `l = w_tip [(x + l sin θ)² + (l cos θ − l)²] + w_x x² + w_v (ẋ² + θ̇²) + w_u a²`,
/// and `w_final` times the state part at the end. The tip term's Hessian is the Gauss–Newton
/// one (`2 JᵀJ` of the tip residual, positive semidefinite); the others are exact.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CartPoleCost {
    /// Pole length (m), as in the dynamics.
    pub pole_length: f64,
    /// Weight of the tip's squared distance.
    pub w_tip: f64,
    /// Weight of x².
    pub w_x: f64,
    /// Weight of ẋ² + θ̇².
    pub w_v: f64,
    /// Weight of a².
    pub w_u: f64,
    /// Multiplier of the state part at the final state.
    pub w_final: f64,
}

impl Default for CartPoleCost {
    fn default() -> Self {
        Self { pole_length: 0.6, w_tip: 10.0, w_x: 0.5, w_v: 0.05, w_u: 0.05, w_final: 5.0 }
    }
}

impl CartPoleCost {
    fn state_part(&self, x: &[f64]) -> f64 {
        let l = self.pole_length;
        let (s, c) = (x[2].sin(), x[2].cos());
        let (ex, ey) = (x[0] + l * s, l * c - l);
        self.w_tip * (ex * ex + ey * ey)
            + self.w_x * x[0] * x[0]
            + self.w_v * (x[1] * x[1] + x[3] * x[3])
    }

    /// Writes `weight ×` the state part's value, gradient and (Gauss–Newton) Hessian into `q`.
    fn state_derivs(&self, x: &[f64], weight: f64, q: &mut Quadratization) {
        let l = self.pole_length;
        let (s, c) = (x[2].sin(), x[2].cos());
        let (ex, ey) = (x[0] + l * s, l * c - l);
        // Residual Jacobians: ∂ex = [1, 0, l c, 0], ∂ey = [0, 0, −l s, 0].
        let jx = [1.0, 0.0, l * c, 0.0];
        let jy = [0.0, 0.0, -l * s, 0.0];
        let wt = weight * self.w_tip;
        q.lx.iter_mut().for_each(|v| *v = 0.0);
        q.lxx.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..4 {
            q.lx[i] = 2.0 * wt * (ex * jx[i] + ey * jy[i]);
            for j in 0..4 {
                q.lxx[i * 4 + j] = 2.0 * wt * (jx[i] * jx[j] + jy[i] * jy[j]);
            }
        }
        q.lx[0] += 2.0 * weight * self.w_x * x[0];
        q.lxx[0] += 2.0 * weight * self.w_x;
        for k in [1, 3] {
            q.lx[k] += 2.0 * weight * self.w_v * x[k];
            q.lxx[k * 4 + k] += 2.0 * weight * self.w_v;
        }
    }
}

impl Cost for CartPoleCost {
    fn running(&self, _t: usize, x: &[f64], u: &[f64]) -> f64 {
        self.state_part(x) + self.w_u * u[0] * u[0]
    }
    fn terminal(&self, x: &[f64]) -> f64 {
        self.w_final * self.state_part(x)
    }
    fn quadratize(&self, t: usize, x: &[f64], u: &[f64], q: &mut Quadratization) {
        q.l = self.running(t, x, u);
        self.state_derivs(x, 1.0, q);
        q.lu[0] = 2.0 * self.w_u * u[0];
        q.luu[0] = 2.0 * self.w_u;
        q.lux.iter_mut().for_each(|v| *v = 0.0);
    }
    fn quadratize_terminal(&self, x: &[f64], q: &mut Quadratization) {
        q.l = self.terminal(x);
        self.state_derivs(x, self.w_final, q);
        q.lu[0] = 0.0;
        q.luu[0] = 0.0;
        q.lux.iter_mut().for_each(|v| *v = 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::fd_dynamics;

    /// The deviation wraps θ: a state the environment wrapped to just above −π is close to a
    /// prediction just below π; the other components subtract.
    #[test]
    fn deviation_wraps_the_angle() {
        let d = TrueCartPole::default();
        let mut dx = [0.0; 4];
        d.deviation(&[0.5, 1.0, -3.1, 2.0], &[0.25, 0.5, 3.1, 1.0], &mut dx);
        let expected = [0.25, 0.5, 2.0 * std::f64::consts::PI - 6.2, 1.0];
        for (a, b) in dx.iter().zip(expected) {
            assert!((a - b).abs() < 1e-12, "{dx:?} against {expected:?}");
        }
    }
    use crate::{ControlBounds, ExactState, Mpc, MpcAgent, MpcConfig};
    use ekvae_envs::cartpole::step;
    use ekvae_envs::pendulum::angle_normalize;

    /// The exact Jacobians against central finite differences of `step`, at states all
    /// around the circle, with velocities and inside the control box.
    #[test]
    fn jacobians_match_finite_differences() {
        let d = TrueCartPole::default();
        for (x, u) in [
            ([0.3, -0.5, 2.0, 1.5], 0.4),
            ([-1.0, 2.0, -0.7, -3.0], -0.9),
            ([0.0, 0.0, std::f64::consts::PI, 0.0], 0.0),
            ([1.5, 0.1, 0.2, 6.0], 0.99),
        ] {
            let (mut next, mut a, mut b) = ([0.0; 4], [0.0; 16], [0.0; 4]);
            d.linearize(&x, &[u], &mut next, &mut a, &mut b);
            let (fa, fb) = fd_dynamics(&d, &x, &[u], 1e-6);
            for (i, (p, q)) in a.iter().zip(&fa).chain(b.iter().zip(&fb)).enumerate() {
                assert!((p - q).abs() < 1e-6, "entry {i} at {x:?}, {u}: {p} vs {q}");
            }
        }
        // Clipped: the action has no effect.
        let (mut next, mut a, mut b) = ([0.0; 4], [0.0; 16], [0.0; 4]);
        d.linearize(&[0.0; 4], &[1.5], &mut next, &mut a, &mut b);
        assert_eq!(b, [0.0; 4]);
    }

    #[test]
    fn cost_derivatives_match_finite_differences_where_exact() {
        // The tip term's Hessian is Gauss–Newton, so compare the gradient by finite
        // differences and the Hessian where the residual is zero (upright at the centre).
        let c = CartPoleCost::default();
        let mut q = Quadratization::zeros(4, 1);
        for x in [[0.3, -0.5, 2.0, 1.5], [-1.0, 2.0, -0.7, -3.0]] {
            c.quadratize(0, &x, &[0.3], &mut q);
            for i in 0..4 {
                let (mut xp, mut xm) = (x, x);
                xp[i] += 1e-6;
                xm[i] -= 1e-6;
                let fd = (c.running(0, &xp, &[0.3]) - c.running(0, &xm, &[0.3])) / 2e-6;
                assert!((fd - q.lx[i]).abs() < 1e-5, "lx[{i}]: {fd} vs {}", q.lx[i]);
            }
        }
        let up = [0.0; 4];
        c.quadratize(0, &up, &[0.0], &mut q);
        assert_eq!(q.l, 0.0);
        let h = 1e-4;
        for i in 0..4 {
            for j in 0..4 {
                let f = |di: f64, dj: f64| {
                    let mut x = up;
                    x[i] += di;
                    x[j] += dj;
                    c.running(0, &x, &[0.0])
                };
                let fd = (f(h, h) - f(h, -h) - f(-h, h) + f(-h, -h)) / (4.0 * h * h);
                assert!(
                    (fd - q.lxx[i * 4 + j]).abs() < 1e-4,
                    "lxx[{i},{j}]: {fd} vs {}",
                    q.lxx[i * 4 + j]
                );
            }
        }
    }

    /// iLQR-MPC swings the pole up from hanging at rest and balances it, scored on the
    /// environment (with its f32 force and θ wrap): the last 50 of 150 steps upright.
    #[test]
    fn mpc_swings_up_from_hanging() {
        let d = TrueCartPole::default();
        let (lower, upper) = d.control_limits();
        let mut cfg = MpcConfig::with_bounds(ControlBounds { lower, upper });
        cfg.horizon = 30;
        let mpc = Mpc::new(d, CartPoleCost::default(), cfg).unwrap();
        let mut agent = MpcAgent::new(ExactState, mpc);
        let p = CartPoleParams::default();
        let mut state = [0.0, 0.0, std::f64::consts::PI, 0.0];
        let mut upright = Vec::new();
        for _ in 0..150 {
            let plan = agent.act(&state).unwrap();
            let out = step(&p, state, plan.u[0]);
            assert!(!out.terminated, "left the track at {state:?}");
            state = out.state;
            upright.push(angle_normalize(state[2]).abs() < 0.2);
        }
        assert!(upright[100..].iter().all(|&u| u), "not balanced: {state:?}");
    }
}
