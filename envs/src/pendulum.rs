//! Gymnasium's `Pendulum-v1`: the physics as pure functions of (state, action), and the
//! stateful environment [`Pendulum`] built on them.
//!
//! ## Description
//! The inverted pendulum swing-up problem: a rod of length `l` and mass `m` hinged at one end,
//! driven by a torque `u` at the hinge. It starts at a random angle; the goal is to swing it up
//! and keep it upright (θ = 0). The pure functions ([`step`], [`cost`], [`angle_normalize`],
//! [`observation`]) are the physics once and for all; the planner reuses them.
//!
//! ## Action space
//! `Box(-2.0, 2.0, shape=(1,), float64)`: the torque. Actions outside are clipped, as Gymnasium does.
//!
//! ## Observation space
//! `Box([-1, -1, -8], [1, 1, 8], shape=(3,))`: `[cos θ, sin θ, θ̇]`. The pixel view is
//! [`crate::wrappers::PixelObservation`] over [`crate::render`].
//!
//! ## Dynamics (one step, in this order, exactly as Gymnasium's `pendulum.py`)
//! 1. clip `u` to `[-max_torque, max_torque]`;
//! 2. `cost = angle_normalize(θ)² + 0.1·θ̇² + 0.001·u²` on the state *before* the step;
//! 3. `θ̇' = clip(θ̇ + (3g/(2l)·sin θ + 3/(m l²)·u)·dt, -max_speed, max_speed)`;
//! 4. `θ' = θ + θ̇'·dt` (θ is never wrapped).
//!
//! ## Rewards
//! The reward is `-cost`, so it lies in `[-(π² + 0.1·8² + 0.001·2²), 0] = [-16.2736044, 0]`:
//! 0 upright at rest with no torque, most negative hanging down at full speed and torque.
//!
//! ## Starting state
//! [`Pendulum::reset`] draws θ ~ U(−π, π) and θ̇ ~ U(−1, 1) from the environment's `ChaCha8Rng`
//! (re-seeded by `reset(Some(seed))`); [`Pendulum::reset_to`] starts from a given state.
//!
//! ## Episode truncation
//! The pendulum itself never terminates. Gymnasium's registration truncates at 200 steps; [`make`]
//! returns the same thing: `TimeLimit(Pendulum, 200)`.
//!
//! ## Arguments
//! [`PendulumParams`]: `g` (default 10.0), `m` (1.0), `l` (1.0), `dt` (0.05), `max_speed` (8.0),
//! `max_torque` (2.0). `Pendulum::new(params)` or `Pendulum::default()`.
//!
//! ## Version history
//! - v1 (Gymnasium): the dynamics above, reproduced to the last bit in f64.

use crate::env::{Env, Frame, Info, ResetTo, Step};
use crate::space::{BoxSpace, uniform};
use crate::wrappers::TimeLimit;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

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
/// The workspace's one angle wrap lives in `ekvae-numerics`; it is re-exported here, next to
/// the physics whose cost uses it.
pub use ekvae_numerics::angle_normalize;

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

/// A random starting state as Gymnasium draws it: θ ~ U(−π, π), then θ̇ ~ U(−1, 1)
/// (two draws of [`uniform`], in that order).
pub fn sample_initial_state<R: Rng + ?Sized>(rng: &mut R) -> [f64; 2] {
    let th = uniform(rng, -PI, PI);
    let thdot = uniform(rng, -1.0, 1.0);
    [th, thdot]
}

/// The stateful `Pendulum-v1` environment (see the module docs for the full specification).
///
/// Unlike Gymnasium, an environment that was never seeded is not seeded from the operating
/// system: [`Pendulum::new`] seeds its generator with 0, so every run is reproducible.
#[derive(Debug, Clone)]
pub struct Pendulum {
    params: PendulumParams,
    state: [f64; 2],
    rng: ChaCha8Rng,
    action_space: BoxSpace,
    observation_space: BoxSpace,
}

impl Default for Pendulum {
    fn default() -> Self {
        Self::new(PendulumParams::default())
    }
}

impl Pendulum {
    /// A pendulum with `params`, hanging at rest (θ = π, θ̇ = 0) until the first reset.
    pub fn new(params: PendulumParams) -> Self {
        let t = params.max_torque;
        let v = params.max_speed;
        Self {
            params,
            state: [PI, 0.0],
            rng: ChaCha8Rng::seed_from_u64(0),
            // Bounds are finite and ordered for any non-negative limits; fall back to an
            // unbounded box rather than panic if someone passes negative or NaN limits.
            action_space: BoxSpace::new(vec![-t], vec![t], vec![1])
                .unwrap_or_else(|_| unbounded(vec![1])),
            observation_space: BoxSpace::new(vec![-1.0, -1.0, -v], vec![1.0, 1.0, v], vec![3])
                .unwrap_or_else(|_| unbounded(vec![3])),
        }
    }

    /// The physical parameters.
    pub fn params(&self) -> &PendulumParams {
        &self.params
    }

    /// The current state `[θ, θ̇]` (θ not wrapped).
    pub fn state(&self) -> [f64; 2] {
        self.state
    }

    /// The current observation `[cos θ, sin θ, θ̇]`.
    pub fn obs(&self) -> [f64; 3] {
        observation(self.state)
    }
}

fn unbounded(shape: Vec<usize>) -> BoxSpace {
    BoxSpace::uniform_bounds(f64::NEG_INFINITY, f64::INFINITY, shape)
        .expect("infinite bounds are ordered")
}

impl Env for Pendulum {
    type Obs = [f64; 3];
    type Action = [f64; 1];

    fn reset(&mut self, seed: Option<u64>) -> ([f64; 3], Info) {
        if let Some(seed) = seed {
            self.rng = ChaCha8Rng::seed_from_u64(seed);
        }
        self.state = sample_initial_state(&mut self.rng);
        (self.obs(), Info::new())
    }

    fn step(&mut self, action: &[f64; 1]) -> Step<[f64; 3]> {
        let out = step(&self.params, self.state, action[0]);
        self.state = out.state;
        Step {
            obs: self.obs(),
            reward: -out.cost,
            terminated: false,
            truncated: false,
            info: Info::new(),
        }
    }

    fn action_space(&self) -> &BoxSpace {
        &self.action_space
    }

    fn observation_space(&self) -> &BoxSpace {
        &self.observation_space
    }

    fn render(&self, size: usize) -> Frame {
        Frame { size, pixels: crate::render::render(self.state[0], size) }
    }
}

impl ResetTo for Pendulum {
    type State = [f64; 2];

    fn reset_to(&mut self, state: [f64; 2]) -> ([f64; 3], Info) {
        self.state = state;
        (self.obs(), Info::new())
    }
}

/// `Pendulum-v1` as `gymnasium.make` builds it: the default pendulum under a 200-step time limit.
pub fn make() -> TimeLimit<Pendulum> {
    TimeLimit::new(Pendulum::default(), 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values from Gymnasium's Pendulum-v1 (`docs/design.md`, section 1): from
    /// (π, 0) with u = 3 (clipped to 2) every step. θ̇₁ is not `0.3`: Gymnasium's expression
    /// evaluated in f64 (`sin π ≈ 1.2e-16` makes the bracket `6 + 2 ulp`) gives
    /// `0.3000000000000001`, as CPython's `math` reproduces.
    #[test]
    fn matches_gymnasium_reference() {
        let p = PendulumParams::default();
        let s1 = step(&p, [std::f64::consts::PI, 0.0], 3.0);
        assert_eq!(s1.state, [3.1565926535897932, 0.3000000000000001]);
        assert_eq!(s1.u_clipped, 2.0);
        let s2 = step(&p, s1.state, 3.0);
        assert_eq!(s2.state, [3.1860301746833057, 0.5887504218702541]);
    }

    /// Velocity clip: from (π/2, 7.9) with u = 2, the raw update 7.9 + (15·1 + 6)·0.05 = 8.95
    /// exceeds 8, so θ̇' = 8 exactly and θ' = π/2 + 0.4 (Gymnasium: `np.clip(newthdot, -8, 8)`).
    #[test]
    fn velocity_clip_active() {
        let p = PendulumParams::default();
        let s = step(&p, [PI / 2.0, 7.9], 2.0);
        assert!(s.speed_clipped);
        assert_eq!(s.state[1], 8.0);
        assert_eq!(s.state[0], PI / 2.0 + 8.0 * 0.05);
        let s = step(&p, [-PI / 2.0, -7.9], -2.0);
        assert!(s.speed_clipped);
        assert_eq!(s.state[1], -8.0);
        let s = step(&p, [0.0, 0.0], 0.0);
        assert!(!s.speed_clipped);
    }

    /// Torque clip: u = ±5 behaves exactly as ±2, and the cost uses the clipped torque
    /// (0.001·2² = 0.004 from rest upright).
    #[test]
    fn torque_clip() {
        let p = PendulumParams::default();
        for (u, clipped) in [(5.0, 2.0), (-5.0, -2.0), (1e300, 2.0)] {
            let a = step(&p, [0.3, -0.2], u);
            let b = step(&p, [0.3, -0.2], clipped);
            assert_eq!(a, b);
            assert_eq!(a.u_clipped, clipped);
        }
        assert_eq!(step(&p, [0.0, 0.0], 5.0).cost, 0.004);
    }

    /// θ is never wrapped: a pendulum pumped with `u = 2·sign(θ̇)` goes round many times, θ runs
    /// far past ±π and every step is exactly `θ' = θ + θ̇'·dt`; rewards always lie in
    /// [-16.2736044, 0] (the bound π² + 0.1·64 + 0.004).
    #[test]
    fn theta_never_wrapped_and_reward_bounded() {
        let bound = PI * PI + 0.1 * 64.0 + 0.004;
        assert!((bound - 16.2736044).abs() < 1e-7);
        let mut env = Pendulum::default();
        env.reset(Some(3));
        let mut max_abs: f64 = 0.0;
        for _ in 0..2000 {
            let [th, thd] = env.state();
            let s = env.step(&[if thd >= 0.0 { 2.0 } else { -2.0 }]);
            assert!(s.reward <= 0.0 && s.reward >= -bound, "reward {}", s.reward);
            let [th1, thd1] = env.state();
            assert_eq!(th1, th + thd1 * 0.05);
            max_abs = max_abs.max(th1.abs());
        }
        assert!(max_abs > 20.0 * PI, "|θ| reached only {max_abs}");
        // Random torques: rewards stay in bounds as well.
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for _ in 0..5000 {
            let u = uniform(&mut rng, -3.0, 3.0);
            let s = env.step(&[u]);
            assert!(s.reward <= 0.0 && s.reward >= -bound);
        }
    }

    /// The env's step is exactly the pure step (no duplicated physics), and observations are
    /// `[cos θ, sin θ, θ̇]`.
    #[test]
    fn env_matches_pure_step_and_reference() {
        let mut env = Pendulum::default();
        let (obs, _) = env.reset_to([PI, 0.0]);
        assert_eq!(obs, [PI.cos(), PI.sin(), 0.0]);
        let s = env.step(&[3.0]);
        assert_eq!(env.state(), [3.1565926535897932, 0.3000000000000001]);
        assert_eq!(s.reward, -(angle_normalize(PI).powi(2) + 0.001 * 4.0));
        assert!(!s.terminated && !s.truncated);
        env.step(&[3.0]);
        assert_eq!(env.state(), [3.1860301746833057, 0.5887504218702541]);
    }

    #[test]
    fn reset_is_seeded_and_in_range() {
        let mut a = Pendulum::default();
        let mut b = Pendulum::default();
        let (oa, _) = a.reset(Some(42));
        let (ob, _) = b.reset(Some(42));
        assert_eq!(oa, ob);
        assert_eq!(a.state(), b.state());
        // reset(None) continues the generator: a new state, equal on both.
        a.reset(None);
        b.reset(None);
        assert_eq!(a.state(), b.state());
        for seed in 0..500 {
            let (o, _) = a.reset(Some(seed));
            let [th, thd] = a.state();
            assert!((-PI..PI).contains(&th) && (-1.0..1.0).contains(&thd));
            assert!(a.observation_space().contains(&o));
        }
        assert!(a.action_space().contains(&[2.0]) && !a.action_space().contains(&[2.1]));
    }

    proptest::proptest! {
        /// For any state and any action: |θ̇'| ≤ max_speed, θ' = θ + θ̇'·dt, the clipped torque is
        /// within the limit, and the reward lies in [-16.2736044, 0] whenever |θ̇| ≤ max_speed.
        #[test]
        fn step_invariants(th in -100.0f64..100.0, thd in -8.0f64..8.0, u in -10.0f64..10.0) {
            let p = PendulumParams::default();
            let s = step(&p, [th, thd], u);
            proptest::prop_assert!(s.state[1].abs() <= 8.0);
            proptest::prop_assert_eq!(s.state[0], th + s.state[1] * p.dt);
            proptest::prop_assert!(s.u_clipped.abs() <= 2.0);
            proptest::prop_assert!(s.cost >= 0.0 && s.cost <= PI * PI + 0.1 * 64.0 + 0.004);
        }
    }
}
