//! The physics of Gymnasium's `Pendulum-v1`, as pure functions of (state, action).
//!
//! ## Description
//! An inverted pendulum: a rod of length `l` and mass `m` hinged at one end, driven by a
//! torque `u`. The goal is to swing it up and keep it upright (θ = 0).
//!
//! ## Dynamics (one step, in this order, exactly as Gymnasium's `pendulum.py`)
//! 1. clip `u` to `[-max_torque, max_torque]`;
//! 2. `cost = angle_normalize(θ)² + 0.1·θ̇² + 0.001·u²` on the state *before* the step;
//! 3. `θ̇' = clip(θ̇ + (3g/(2l)·sin θ + 3/(m l²)·u)·dt, -max_speed, max_speed)`;
//! 4. `θ' = θ + θ̇'·dt` (θ is never wrapped).
//!
//! The reward is `-cost`, so it lies in `[-(π² + 0.1·8² + 0.001·2²), 0] = [-16.2736044, 0]`.

use serde::{Deserialize, Serialize};

/// Physical parameters of the pendulum; [`Default`] gives Gymnasium's `Pendulum-v1`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PendulumParams {
    /// Gravity (Gymnasium's default `g = 10.0`).
    pub g: f64,
    /// Mass of the rod.
    pub m: f64,
    /// Length of the rod.
    pub l: f64,
    /// Integration step in seconds.
    pub dt: f64,
    /// Angular velocity limit; θ̇ is clipped to `[-max_speed, max_speed]`.
    pub max_speed: f64,
    /// Torque limit; actions are clipped to `[-max_torque, max_torque]`.
    pub max_torque: f64,
}

impl Default for PendulumParams {
    fn default() -> Self {
        Self { g: 10.0, m: 1.0, l: 1.0, dt: 0.05, max_speed: 8.0, max_torque: 2.0 }
    }
}

/// Result of one physics step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutcome {
    /// `[θ', θ̇']` after the step.
    pub state: [f64; 2],
    /// The cost of the state before the step and the clipped action (reward = `-cost`).
    pub cost: f64,
    /// The action after clipping to the torque limit.
    pub u_clipped: f64,
    /// Whether the velocity clip was active (θ̇' was limited to ±max_speed).
    pub speed_clipped: bool,
}

/// Gymnasium's `angle_normalize`: `((x + π) mod 2π) − π` with a floor modulo, in `[-π, π)`.
#[inline]
pub fn angle_normalize(x: f64) -> f64 {
    (x + std::f64::consts::PI).rem_euclid(2.0 * std::f64::consts::PI) - std::f64::consts::PI
}

/// The angular acceleration term's coefficients: `θ̇' = θ̇ + (a·sin θ + b·u)·dt`.
#[inline]
pub fn accel_coeffs(p: &PendulumParams) -> (f64, f64) {
    (3.0 * p.g / (2.0 * p.l), 3.0 / (p.m * (p.l * p.l)))
}

/// One step of `Pendulum-v1` from `state = [θ, θ̇]` with torque `u`, bit-for-bit as Gymnasium in f64.
#[inline]
pub fn step(p: &PendulumParams, state: [f64; 2], u: f64) -> StepOutcome {
    let [th, thdot] = state;
    let u = u.clamp(-p.max_torque, p.max_torque);
    let cost = cost(state, u);
    let (a, b) = accel_coeffs(p);
    let raw = thdot + (a * th.sin() + b * u) * p.dt;
    let newthdot = raw.clamp(-p.max_speed, p.max_speed);
    let newth = th + newthdot * p.dt;
    StepOutcome { state: [newth, newthdot], cost, u_clipped: u, speed_clipped: raw != newthdot }
}

/// The running cost of Gymnasium's pendulum for an already clipped action.
#[inline]
pub fn cost(state: [f64; 2], u_clipped: f64) -> f64 {
    let an = angle_normalize(state[0]);
    an * an + 0.1 * state[1] * state[1] + 0.001 * (u_clipped * u_clipped)
}

/// Observation `[cos θ, sin θ, θ̇]` of a state.
#[inline]
pub fn observation(state: [f64; 2]) -> [f64; 3] {
    [state[0].cos(), state[0].sin(), state[1]]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values from Gymnasium's Pendulum-v1 (DESIGN.md): from (π, 0) with u = 3
    /// (clipped to 2) every step. DESIGN.md prints θ̇₁ as `0.3`; Gymnasium's expression
    /// evaluated in f64 (`sin π ≈ 1.2e-16` makes the bracket `6 + 2 ulp`) gives
    /// `0.3000000000000001`, as CPython's `math` reproduces; step 2 matches DESIGN.md exactly.
    #[test]
    fn matches_gymnasium_reference() {
        let p = PendulumParams::default();
        let s1 = step(&p, [std::f64::consts::PI, 0.0], 3.0);
        assert_eq!(s1.state, [3.1565926535897932, 0.3000000000000001]);
        assert_eq!(s1.u_clipped, 2.0);
        let s2 = step(&p, s1.state, 3.0);
        assert_eq!(s2.state, [3.1860301746833057, 0.5887504218702541]);
    }

    #[test]
    fn angle_normalize_is_floor_modulo() {
        use std::f64::consts::PI;
        assert_eq!(angle_normalize(0.0), 0.0);
        assert_eq!(angle_normalize(PI), -PI);
        assert!((angle_normalize(3.0 * PI / 2.0) + PI / 2.0).abs() < 1e-12);
        assert!((angle_normalize(-3.0 * PI / 2.0) - PI / 2.0).abs() < 1e-12);
    }
}
